"""The Python `kubernetes` client against a real skiff server: a Deployment and a custom object.

Run by crates/skiff/tests/python_client.rs with the server's kubeconfig as argv[1]. Prints
one line per check and exits non-zero on the first failure.
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
apps = client.AppsV1Api()
core = client.CoreV1Api()
ns = "py"


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL {what} {detail}", flush=True)
        sys.exit(1)
    print(f"ok {what}", flush=True)


core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

# Watch first, so the create below must arrive as an event.
events = []
ready = threading.Event()


def watch_deployments():
    w = watch.Watch()
    ready.set()
    for ev in w.stream(apps.list_namespaced_deployment, ns, timeout_seconds=20):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].spec.replicas))
        if len(events) >= 3:
            w.stop()


t = threading.Thread(target=watch_deployments)
t.start()
ready.wait()
time.sleep(0.5)

body = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="nginx",
                        image="nginx:1.26",
                        env=[client.V1EnvVar(name="A", value="1")],
                    )
                ]
            ),
        ),
    ),
)
created = apps.create_namespaced_deployment(ns, body)
check("create", created.metadata.uid and created.spec.strategy.type == "RollingUpdate")

# Strategic merge: the container list merges by name, so env gains B and keeps A.
patched = apps.patch_namespaced_deployment(
    "web",
    ns,
    {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "image": "nginx:1.27", "env": [{"name": "B", "value": "2"}]}]}}}},
    _content_type="application/strategic-merge-patch+json",
)
c = patched.spec.template.spec.containers
check("strategic merge", len(c) == 1 and c[0].image == "nginx:1.27"
      and sorted(e.name for e in c[0].env) == ["A", "B"], str(c))

# Merge patch: lists are replaced whole.
patched = apps.patch_namespaced_deployment(
    "web", ns, {"spec": {"replicas": 3}, "metadata": {"labels": {"tier": "fe"}}},
    _content_type="application/merge-patch+json",
)
check("merge patch", patched.spec.replicas == 3 and patched.metadata.labels["tier"] == "fe")

# Scale through the subresource, as patch_namespaced_deployment_scale does.
scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 2}})
check("scale", scale.spec.replicas == 2)

lst = apps.list_namespaced_deployment(ns, label_selector="tier=fe")
check("list with selector", [d.metadata.name for d in lst.items] == ["web"])

t.join(timeout=25)
check("watch", events[:1] == [("ADDED", "web", 1)] and all(e[0] == "MODIFIED" for e in events[1:3]),
      str(events))

try:
    apps.read_namespaced_deployment("nope", ns)
    check("not found", False)
except ApiException as e:
    check("not found", e.status == 404 and 'deployments.apps \\"nope\\" not found' in e.body, e.body)

apps.delete_namespaced_deployment("web", ns)

# A custom resource: the CRD through ApiextensionsV1Api, objects through CustomObjectsApi.
ext = client.ApiextensionsV1Api()
crd = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "cronSpec": {"type": "string"},
                                   "replicas": {"type": "integer", "default": 1}}}}}}}]}}
ext.create_custom_resource_definition(crd)
for _ in range(100):
    got = ext.read_custom_resource_definition("crontabs.stable.example.com")
    conds = {c.type: c.status for c in ((got.status and got.status.conditions) or [])}
    if conds.get("Established") == "True":
        break
    time.sleep(0.1)
check("crd established", conds.get("Established") == "True", str(conds))

co = client.CustomObjectsApi()
group, version, plural = "stable.example.com", "v1", "crontabs"
seen = []


def watch_crontabs():
    w = watch.Watch()
    for ev in w.stream(co.list_namespaced_custom_object, group, version, ns, plural,
                       timeout_seconds=20):
        seen.append((ev["type"], ev["object"]["metadata"]["name"]))
        if len(seen) >= 2:
            w.stop()


t2 = threading.Thread(target=watch_crontabs)
t2.start()
time.sleep(0.5)
obj = co.create_namespaced_custom_object(group, version, ns, plural, {
    "apiVersion": "stable.example.com/v1", "kind": "CronTab",
    "metadata": {"name": "tab"}, "spec": {"cronSpec": "* * * * */5"}})
check("custom create with default", obj["spec"]["replicas"] == 1, str(obj))
obj = co.patch_namespaced_custom_object(group, version, ns, plural, "tab",
                                        {"spec": {"replicas": 3}},
                                        _content_type="application/merge-patch+json")
check("custom merge patch", obj["spec"]["replicas"] == 3 and obj["spec"]["cronSpec"] == "* * * * */5")
items = co.list_namespaced_custom_object(group, version, ns, plural)["items"]
check("custom list", [i["metadata"]["name"] for i in items] == ["tab"])
t2.join(timeout=25)
check("custom watch", seen[:2] == [("ADDED", "tab"), ("MODIFIED", "tab")], str(seen))
co.delete_namespaced_custom_object(group, version, ns, plural, "tab")
print("all ok")
