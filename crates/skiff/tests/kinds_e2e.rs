//! End-to-end: every resource kind skiff serves, created, read and deleted from YAML with the
//! real kubectl 1.33, 1.30 and 1.27, plus the output formats and list options users reach for.

mod common;

use common::{kubectl, start, versioned};

/// One object of every served kind. `V` is replaced per kubectl version so the runs do not
/// collide; the node is tainted and unschedulable so no controller places pods on it, and the
/// hand-made Endpoints and EndpointSlice belong to a Service without a selector, which the
/// endpoints controllers leave alone (as upstream's do).
const ALL_KINDS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kinds-V}
---
apiVersion: v1
kind: Pod
metadata: {name: pod-V, namespace: kinds-V, labels: {app: web, tier: "fe"}}
spec:
  containers: [{name: c, image: "nginx:1.27"}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-V, namespace: kinds-V, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ep-V, namespace: kinds-V}
spec:
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ep-V, namespace: kinds-V}
subsets: [{addresses: [{ip: 10.42.0.5}], ports: [{port: 8080}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-V, namespace: kinds-V, labels: {app: web}}
data: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: secret-V, namespace: kinds-V}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa-V, namespace: kinds-V}
---
apiVersion: v1
kind: Node
metadata: {name: node-V}
spec:
  unschedulable: true
  taints: [{key: skiff.test/no-pods, effect: NoSchedule}]
---
apiVersion: v1
kind: Event
metadata: {name: event-V, namespace: kinds-V}
involvedObject: {kind: Pod, name: pod-V, namespace: kinds-V}
reason: Testing
message: an event
type: Normal
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-V}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: pvc-V, namespace: kinds-V}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits-V, namespace: kinds-V}
spec:
  limits: [{type: Container, default: {cpu: 500m}}]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota-V, namespace: kinds-V}
spec:
  hard: {pods: "10"}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc-V, namespace: kinds-V}
spec:
  replicas: 0
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: PodTemplate
metadata: {name: podtemplate-V, namespace: kinds-V}
template:
  metadata: {labels: {app: t}}
  spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: deploy-V, namespace: kinds-V}
spec:
  replicas: 0
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs-V, namespace: kinds-V}
spec:
  replicas: 0
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts-V, namespace: kinds-V}
spec:
  replicas: 0
  serviceName: svc-V
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds-V, namespace: kinds-V}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: rev-V, namespace: kinds-V}
revision: 1
data: {spec: {template: {}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: job-V, namespace: kinds-V}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron-V, namespace: kinds-V}
spec:
  schedule: "*/5 * * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing-V, namespace: kinds-V}
spec:
  rules:
  - host: web.example
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: svc-V, port: {number: 80}}}}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: ingclass-V}
spec: {controller: example.com/ingress}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: netpol-V, namespace: kinds-V}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: slice-V, namespace: kinds-V, labels: {kubernetes.io/service-name: ep-V}}
addressType: IPv4
endpoints: [{addresses: [10.42.0.5]}]
ports: [{port: 8080}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: lease-V, namespace: kinds-V}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-V, namespace: kinds-V}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb-V, namespace: kinds-V}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-V}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: crole-V}
rules: [{apiGroups: [""], resources: [nodes], verbs: [list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: crb-V}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: crole-V}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: ev2-V, namespace: kinds-V}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: example.com/ctl
reportingInstance: ctl-0
action: Testing
reason: Tested
type: Normal
note: a new-style event
regarding: {kind: Pod, name: pod-V, namespace: kinds-V}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb-V, namespace: kinds-V}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: pc-V}
value: 1000
description: a test priority
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: sc-V}
provisioner: example.com/none
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa-V, namespace: kinds-V}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: deploy-V}
  maxReplicas: 3
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: hpa1-V, namespace: kinds-V}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: deploy-V}
  maxReplicas: 3
  targetCPUUtilizationPercentage: 70
"#;

/// (the `kubectl get` type, the object name, the `kind/name` kubectl prints) for each object.
fn objects(v: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for doc in ALL_KINDS.split("\n---\n") {
        let api_version = field(doc, "apiVersion");
        let kind = field(doc, "kind");
        let name = doc
            .split("name: ")
            .nth(1)
            .unwrap()
            .split([',', '}'])
            .next()
            .unwrap()
            .replace('V', v);
        let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        let version = api_version.rsplit('/').next().unwrap();
        // Fully qualified, so events.k8s.io and autoscaling/v1 are read in their own version.
        let resource = if group.is_empty() {
            // kubectl resolves a bare kind to the core group first.
            kind.to_lowercase()
        } else {
            format!("{}.{version}.{group}", kind.to_lowercase())
        };
        let printed_group = if group.is_empty() {
            String::new()
        } else {
            format!(".{group}")
        };
        out.push((
            resource,
            name.clone(),
            format!("{}{printed_group}/{name}", kind.to_lowercase()),
        ));
    }
    out
}

fn field(doc: &str, key: &str) -> String {
    doc.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {doc}"))
        .trim()
        .to_string()
}

#[test]
fn every_kind_is_created_read_and_deleted_from_yaml_by_each_kubectl() {
    let s = start();
    for (minor, bin) in [
        ("133", "kubectl".to_string()),
        ("130", versioned("1.30")),
        ("127", versioned("1.27")),
    ] {
        let bin = bin.as_str();
        let yaml = ALL_KINDS.replace("-V", &format!("-{minor}"));
        let objs = objects(minor);
        let (ok, out, err) = kubectl(
            &s,
            bin,
            &["create", "--validate=false", "-f", "-"],
            Some(&yaml),
        );
        assert!(ok, "{bin} create: {err}");
        for (_, _, printed) in &objs {
            assert!(
                out.contains(&format!("{printed} created")),
                "{bin}: no '{printed} created' in:\n{out}"
            );
        }
        let ns = format!("kinds-{minor}");
        let refs: Vec<String> = objs.iter().map(|(r, n, _)| format!("{r}/{n}")).collect();
        let mut args: Vec<&str> = vec!["get", "-n", &ns];
        args.extend(refs.iter().map(String::as_str));
        // One table per kind, each with a header and the object's row.
        let (ok, tables, err) = kubectl(&s, bin, &args, None);
        assert!(ok, "{bin} get: {err}");
        for (resource, name, _) in &objs {
            // Event tables name the involved object, not the event.
            let shown = if resource.starts_with("event") {
                format!("pod/pod-{minor}")
            } else {
                name.clone()
            };
            assert!(tables.contains(&shown), "{bin} {resource}: {tables}");
        }
        let headers = tables
            .lines()
            .filter(|l| l.starts_with("NAME") || l.starts_with("LAST SEEN"))
            .count();
        assert!(headers >= 30, "{bin}: {headers} tables in\n{tables}");
        args.extend([
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.apiVersion}{\"\\n\"}{end}",
        ]);
        let (ok, out, err) = kubectl(&s, bin, &args, None);
        assert!(ok, "{bin} get -o jsonpath: {err}");
        let got: Vec<&str> = out.lines().collect();
        let want: Vec<String> = objs
            .iter()
            .map(|(resource, name, _)| {
                let group_version = match resource.split_once('.') {
                    None => "v1".to_string(),
                    Some((_, rest)) => {
                        let (version, group) = rest.split_once('.').unwrap();
                        format!("{group}/{version}")
                    }
                };
                format!("{name} {group_version}")
            })
            .collect();
        assert_eq!(got, want, "{bin}");
        // Dependents go before what they belong to (an Endpoints before its Service, which
        // the endpoints controller would otherwise clean up first), and the namespace last:
        // deleting it first would take its contents with it.
        let (_, contents) = yaml.split_once("\n---\n").unwrap();
        let mut docs: Vec<&str> = contents.split("\n---\n").collect();
        docs.reverse();
        let reversed = docs.join("\n---\n");
        let (ok, out, err) = kubectl(&s, bin, &["delete", "-f", "-"], Some(&reversed));
        assert!(ok, "{bin} delete: {err}");
        let (ok, ns_out, err) = kubectl(&s, bin, &["delete", "ns", &ns], None);
        assert!(ok, "{bin} delete ns: {err}");
        let out = out + &ns_out;
        for (_, name, printed) in &objs {
            let kind = printed.split('/').next().unwrap();
            assert!(
                out.contains(&format!("{kind} \"{name}\" deleted")),
                "{bin}: no {kind} {name} deleted in:\n{out}"
            );
        }
        let (ok, _, err) = kubectl(&s, bin, &["get", "node", &format!("node-{minor}")], None);
        assert!(!ok && err.contains("NotFound"), "{err}");
    }
}

const THREE_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: b-pod, namespace: default, labels: {app: web, rank: "2"}}
spec: {containers: [{name: c, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a-pod, namespace: kube-public, labels: {app: web, rank: "3"}}
spec: {containers: [{name: c, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c-pod, namespace: default, labels: {app: db, rank: "1"}}
spec: {containers: [{name: c, image: "redis:7"}]}
"#;

#[test]
fn output_formats_list_options_annotate_and_client_errors() {
    let s = start();
    let run = |bin: &str, args: &[&str]| {
        let (ok, out, err) = kubectl(&s, bin, args, None);
        assert!(ok, "{bin} {args:?}: {err}");
        out
    };
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some(THREE_PODS),
    );
    assert!(ok, "{err}");
    for bin in ["kubectl".to_string(), versioned("1.30"), versioned("1.27")] {
        let bin = bin.as_str();
        let out = run(bin, &["version"]);
        assert!(
            out.contains("Server Version: v1.33") || out.contains(r#"GitVersion:"v1.33"#),
            "{bin}: {out}"
        );
        let out = run(bin, &["api-versions"]);
        for gv in [
            "v1",
            "apps/v1",
            "batch/v1",
            "autoscaling/v1",
            "autoscaling/v2",
            "events.k8s.io/v1",
            "networking.k8s.io/v1",
            "rbac.authorization.k8s.io/v1",
        ] {
            assert!(out.lines().any(|l| l == gv), "{bin}: {gv} not in {out}");
        }
        // -A adds the NAMESPACE column from the rows' metadata.
        let out = run(bin, &["get", "pods", "-A", "-l", "app=web"]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"), "{out}");
        assert_eq!(lines.len(), 3, "{out}");
        assert!(out.contains("kube-public") && out.contains("a-pod") && !out.contains("c-pod"));
        // --sort-by asks for whole objects in the rows.
        let out = run(
            bin,
            &[
                "get",
                "pods",
                "-A",
                "--sort-by=.metadata.labels.rank",
                "-o",
                "name",
            ],
        );
        assert_eq!(out, "pod/c-pod\npod/b-pod\npod/a-pod\n", "{bin}");
        let out = run(bin, &["get", "pods", "--sort-by=.metadata.name"]);
        let names: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["b-pod", "c-pod"], "{bin}: {out}");
        let out = run(
            bin,
            &[
                "get",
                "pods",
                "--field-selector",
                "metadata.name=c-pod",
                "-o",
                "name",
            ],
        );
        assert_eq!(out, "pod/c-pod\n");
        let out = run(bin, &["get", "pods", "-o", "wide"]);
        let header = out.lines().next().unwrap();
        for col in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
            assert!(header.contains(col), "{bin}: {header}");
        }
        let out = run(bin, &["get", "pods", "-L", "rank"]);
        assert!(out.lines().next().unwrap().ends_with("RANK"), "{out}");
        let out = run(bin, &["get", "pod", "b-pod", "-o", "json"]);
        assert!(out.contains(r#""kind": "Pod""#), "{out}");
        let out = run(bin, &["get", "pods", "-o", "yaml"]);
        assert!(
            out.starts_with("apiVersion: v1\nitems:") && out.contains("kind: List"),
            "{out}"
        );
    }
    // annotate sends a merge patch; `key-` removes it.
    run("kubectl", &["annotate", "pod", "b-pod", "team=blue"]);
    let out = run(
        "kubectl",
        &[
            "get",
            "pod",
            "b-pod",
            "-o",
            "jsonpath={.metadata.annotations.team}",
        ],
    );
    assert_eq!(out, "blue");
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["annotate", "pod", "b-pod", "team=red"],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("--overwrite is false but found the following declared annotation(s): 'team' already has a value (blue)"),
        "{err}"
    );
    run(
        "kubectl",
        &["annotate", "pod", "b-pod", "team=red", "--overwrite"],
    );
    run("kubectl", &["annotate", "pod", "b-pod", "team-"]);
    let out = run(
        "kubectl",
        &[
            "get",
            "pod",
            "b-pod",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    );
    assert!(!out.contains("team"), "{out}");

    // Errors users meet before and at the server.
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n"),
    );
    assert!(!ok);
    assert!(err.contains("error converting YAML to JSON"), "{err}");
    // Bodies over the limit are refused (413) before they are read whole.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{x: {}}}\n",
        "a".repeat(4 * 1024 * 1024)
    );
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some(&big),
    );
    assert!(!ok);
    assert!(
        err.contains("Error from server (RequestEntityTooLarge)"),
        "{}",
        &err[..err.len().min(500)]
    );
    let (ok, _, err) = kubectl(&s, "kubectl", &["get", "foos"], None);
    assert!(!ok);
    assert!(
        err.contains(r#"the server doesn't have a resource type "foos""#),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: nowhere}\n"),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (NotFound): error when creating "STDIN": namespaces "nowhere" not found"#),
        "{err}"
    );
}
