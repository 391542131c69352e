//! Upstream v1 defaulting (`pkg/apis/*/v1/defaults.go`), plus the few values upstream's
//! strategies and admission fill in that every user sees (pod priority, namespace
//! finalizers, service IP families). Idempotent: defaulting a defaulted object changes
//! nothing.

use serde_json::{json, Map, Value};

/// Fills in defaults for an object of `group`/`plural`, in place. Unknown resources (custom
/// resources) are left alone.
pub fn apply_defaults(group: &str, plural: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (group, plural) {
        ("", "pods") => default_pod(obj),
        ("", "podtemplates") => default_template(obj.get_mut("template")),
        ("", "replicationcontrollers") => default_replication_controller(obj),
        ("", "services") => default_service(obj),
        ("", "namespaces") => default_namespace(obj),
        ("", "secrets") => {
            default_str(obj_mut(obj), "type", "Opaque");
        }
        ("", "persistentvolumeclaims") => {
            let spec = child(obj, "spec");
            default_str(spec, "volumeMode", "Filesystem");
            default_str(child(obj, "status"), "phase", "Pending");
        }
        ("", "persistentvolumes") => {
            let spec = child(obj, "spec");
            default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            default_str(spec, "volumeMode", "Filesystem");
            default_str(child(obj, "status"), "phase", "Pending");
        }
        ("", "endpoints") => {
            for subset in array_mut(obj, "subsets") {
                for port in array_mut(subset, "ports") {
                    default_str(obj_mut(port), "protocol", "TCP");
                }
            }
        }
        ("", "nodes") => {
            // Allocatable defaults to capacity.
            if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
                if let Some(cap) = status.get("capacity").cloned() {
                    default_val(status, "allocatable", cap);
                }
            }
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            // Stored as autoscaling/v2: defaults as upstream's v2 defaulting.
            let spec = child(obj, "spec");
            default_val(spec, "minReplicas", Value::from(1));
            if spec
                .get("metrics")
                .and_then(Value::as_array)
                .is_none_or(|m| m.is_empty())
            {
                spec.insert(
                    "metrics".into(),
                    serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                );
            }
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            default_str(obj_mut(obj), "preemptionPolicy", "PreemptLowerPriority");
        }
        ("apps", "deployments") => default_deployment(obj),
        ("apps", "replicasets") => {
            default_val(child(obj, "spec"), "replicas", json!(1));
            default_template(obj.pointer_mut("/spec/template"));
        }
        ("apps", "statefulsets") => default_statefulset(obj),
        ("apps", "daemonsets") => default_daemonset(obj),
        ("batch", "jobs") => default_job(obj),
        ("batch", "cronjobs") => default_cronjob(obj),
        ("networking.k8s.io", "networkpolicies") => {
            let spec = child(obj, "spec");
            if !spec.contains_key("policyTypes") {
                let mut types = vec![json!("Ingress")];
                if spec.get("egress").is_some_and(|e| !e.is_null()) {
                    types.push(json!("Egress"));
                }
                spec.insert("policyTypes".into(), Value::Array(types));
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            for s in array_mut(obj, "subjects") {
                let s = obj_mut(s);
                let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
                let api_group = match kind {
                    "ServiceAccount" => "",
                    "User" | "Group" => "rbac.authorization.k8s.io",
                    _ => continue,
                };
                if !s.contains_key("apiGroup") {
                    s.insert("apiGroup".into(), json!(api_group));
                }
            }
        }
        ("storage.k8s.io", "storageclasses") => {
            let o = obj_mut(obj);
            default_str(o, "reclaimPolicy", "Delete");
            default_str(o, "volumeBindingMode", "Immediate");
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

fn obj_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// The object at `key`, created when missing or null.
fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    obj_mut(child_value(v, key))
}

fn child_value<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let m = obj_mut(v);
    let e = m.entry(key.to_string()).or_insert(Value::Null);
    if !e.is_object() {
        *e = Value::Object(Map::new());
    }
    e
}

/// The elements of the array at `key`, or none.
fn array_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn is_unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// Sets `key` when missing or null.
fn default_val(m: &mut Map<String, Value>, key: &str, val: Value) {
    if is_unset(m.get(key)) {
        m.insert(key.to_string(), val);
    }
}

/// Sets a string `key` when missing, null or empty (Go's zero value).
fn default_str(m: &mut Map<String, Value>, key: &str, val: &str) {
    match m.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => return,
    }
    m.insert(key.to_string(), json!(val));
}

/// Sets an integer `key` when missing, null or 0 (Go's zero value).
fn default_nonzero(m: &mut Map<String, Value>, key: &str, val: i64) {
    match m.get(key) {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(0) => {}
        Some(_) => return,
    }
    m.insert(key.to_string(), json!(val));
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates
// ---------------------------------------------------------------------------------------------

fn default_pod(obj: &mut Value) {
    let spec_v = child_value(obj, "spec");
    default_pod_spec(spec_v);
    let spec = obj_mut(spec_v);
    // SetDefaults_Pod: requests default to limits.
    for key in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in cs {
                default_requests_from_limits(c);
            }
        }
    }
    default_val(spec, "enableServiceLinks", json!(true));
    // What the Priority admission plugin sets when no PriorityClass applies.
    if is_unset(spec.get("priorityClassName")) || spec["priorityClassName"] == "" {
        default_val(spec, "priority", json!(0));
    }
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
}

fn default_requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let requests = child(child_value(c, "resources"), "requests");
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// Defaults a `PodTemplateSpec` (`{metadata, spec}`) as upstream does for every workload.
fn default_template(t: Option<&mut Value>) {
    let Some(t) = t else { return };
    if !t.is_object() {
        return;
    }
    default_pod_spec(child_value(t, "spec"));
}

/// `SetDefaults_PodSpec` plus the container, port, probe and volume defaults beneath it.
pub fn default_pod_spec(spec_v: &mut Value) {
    let spec = obj_mut(spec_v);
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_val(spec, "securityContext", json!({}));
    default_val(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c, host_network && key != "ephemeralContainers");
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            default_volume(v);
        }
    }
}

/// `latest` when the image names no tag and no digest, as the kubelet's image parser.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_some() || image.is_empty() => "",
        None => "latest",
    }
}

fn default_container(c: &mut Value, host_network: bool) {
    let m = obj_mut(c);
    let image = m.get("image").and_then(Value::as_str).unwrap_or_default();
    let policy = if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    };
    default_str(m, "imagePullPolicy", policy);
    default_str(m, "terminationMessagePath", "/dev/termination-log");
    default_str(m, "terminationMessagePolicy", "File");
    default_val(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let p = obj_mut(p);
            default_str(p, "protocol", "TCP");
            if host_network {
                if let Some(cp) = p.get("containerPort").cloned() {
                    default_nonzero(p, "hostPort", cp.as_i64().unwrap_or(0));
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).filter(|p| p.is_object()) {
            let pm = obj_mut(p);
            default_nonzero(pm, "timeoutSeconds", 1);
            default_nonzero(pm, "periodSeconds", 10);
            default_nonzero(pm, "successThreshold", 1);
            default_nonzero(pm, "failureThreshold", 3);
            if let Some(h) = pm.get_mut("httpGet").filter(|h| h.is_object()) {
                let hm = obj_mut(h);
                default_str(hm, "path", "/");
                default_str(hm, "scheme", "HTTP");
            }
        }
    }
    if let Some(lc) = m.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc
                .get_mut(hook)
                .and_then(|h| h.get_mut("httpGet"))
                .filter(|h| h.is_object())
            {
                let hm = obj_mut(h);
                default_str(hm, "path", "/");
                default_str(hm, "scheme", "HTTP");
            }
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e
                .pointer_mut("/valueFrom/fieldRef")
                .filter(|f| f.is_object())
            {
                default_str(obj_mut(fr), "apiVersion", "v1");
            }
        }
    }
}

/// Every volume source a pod volume may name (one per volume).
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Value) {
    let m = obj_mut(v);
    if !VOLUME_SOURCES.iter().any(|k| !is_unset(m.get(*k))) {
        m.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = m.get_mut(src).filter(|s| s.is_object()) {
            let sm = obj_mut(s);
            default_val(sm, "defaultMode", json!(420));
            if src == "downwardAPI" {
                for item in sm
                    .get_mut("items")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(fr) = item.get_mut("fieldRef").filter(|f| f.is_object()) {
                        default_str(obj_mut(fr), "apiVersion", "v1");
                    }
                }
            }
            if src == "projected" {
                for s in sm
                    .get_mut("sources")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = s.get_mut("serviceAccountToken").filter(|t| t.is_object()) {
                        default_val(obj_mut(t), "expirationSeconds", json!(3600));
                    }
                }
            }
        }
    }
    if let Some(h) = m.get_mut("hostPath").filter(|h| h.is_object()) {
        default_val(obj_mut(h), "type", json!(""));
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn template_labels(obj: &Value) -> Option<Map<String, Value>> {
    obj.pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned()
}

fn default_replication_controller(obj: &mut Value) {
    let labels = template_labels(obj);
    if let Some(labels) = &labels {
        let spec = child(obj, "spec");
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), Value::Object(labels.clone()));
        }
        let meta = child(obj, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), Value::Object(labels.clone()));
        }
    }
    default_val(child(obj, "spec"), "replicas", json!(1));
    default_template(obj.pointer_mut("/spec/template"));
}

fn default_deployment(obj: &mut Value) {
    let spec_v = child_value(obj, "spec");
    let spec = obj_mut(spec_v);
    default_val(spec, "replicas", json!(1));
    let strategy = obj_mut(spec.entry("strategy").or_insert(json!({})));
    default_str(strategy, "type", "RollingUpdate");
    if strategy["type"] == "RollingUpdate" {
        let ru = obj_mut(strategy.entry("rollingUpdate").or_insert(json!({})));
        default_val(ru, "maxUnavailable", json!("25%"));
        default_val(ru, "maxSurge", json!("25%"));
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    default_val(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec.get_mut("template"));
}

fn default_statefulset(obj: &mut Value) {
    let spec = child(obj, "spec");
    default_str(spec, "podManagementPolicy", "OrderedReady");
    let strategy = obj_mut(spec.entry("updateStrategy").or_insert(json!({})));
    if is_unset(strategy.get("type")) || strategy["type"] == "" {
        strategy.insert("type".into(), json!("RollingUpdate"));
        default_val(strategy, "rollingUpdate", json!({}));
    }
    if strategy["type"] == "RollingUpdate" {
        if let Some(ru) = strategy.get_mut("rollingUpdate").filter(|r| r.is_object()) {
            default_val(obj_mut(ru), "partition", json!(0));
        }
    }
    default_val(spec, "replicas", json!(1));
    default_val(spec, "revisionHistoryLimit", json!(10));
    let policy = obj_mut(
        spec.entry("persistentVolumeClaimRetentionPolicy")
            .or_insert(json!({})),
    );
    default_str(policy, "whenDeleted", "Retain");
    default_str(policy, "whenScaled", "Retain");
    if let Some(vcts) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for pvc in vcts {
            default_str(child(pvc, "spec"), "volumeMode", "Filesystem");
            default_str(child(pvc, "status"), "phase", "Pending");
        }
    }
    default_template(spec.get_mut("template"));
}

fn default_daemonset(obj: &mut Value) {
    let spec = child(obj, "spec");
    let strategy = obj_mut(spec.entry("updateStrategy").or_insert(json!({})));
    default_str(strategy, "type", "RollingUpdate");
    if strategy["type"] == "RollingUpdate" {
        let ru = obj_mut(strategy.entry("rollingUpdate").or_insert(json!({})));
        default_val(ru, "maxUnavailable", json!(1));
        default_val(ru, "maxSurge", json!(0));
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    default_template(spec.get_mut("template"));
}

fn default_job(obj: &mut Value) {
    let labels = template_labels(obj);
    let spec = child(obj, "spec");
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_val(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    default_val(spec, "backoffLimit", json!(backoff));
    default_str(spec, "completionMode", "NonIndexed");
    default_val(spec, "suspend", json!(false));
    default_val(spec, "manualSelector", json!(false));
    let has_failure_policy = !is_unset(spec.get("podFailurePolicy"));
    if let Some(rules) = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            for pattern in array_mut(rule, "onPodConditions") {
                default_str(obj_mut(pattern), "status", "True");
            }
        }
    }
    default_str(
        spec,
        "podReplacementPolicy",
        if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        },
    );
    default_template(spec.get_mut("template"));
    if let Some(labels) = labels {
        let meta = child(obj, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
}

/// What the job strategy adds on create when `manualSelector` is not true: the
/// controller-uid selector and the template labels it selects (`batch.kubernetes.io/...`
/// and their legacy twins).
pub fn job_selector_defaults(obj: &mut Value, uid: &str) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let tmpl_meta = child(
        child_value(child_value(obj, "spec"), "template"),
        "metadata",
    );
    let labels = obj_mut(tmpl_meta.entry("labels").or_insert(json!({})));
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name.as_str()),
        ("controller-uid", uid),
        ("job-name", name.as_str()),
    ] {
        labels.insert(k.into(), json!(v));
    }
    let spec = child(obj, "spec");
    if is_unset(spec.get("selector")) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

fn default_cronjob(obj: &mut Value) {
    let spec = child(obj, "spec");
    default_str(spec, "concurrencyPolicy", "Allow");
    default_val(spec, "suspend", json!(false));
    default_val(spec, "successfulJobsHistoryLimit", json!(3));
    default_val(spec, "failedJobsHistoryLimit", json!(1));
    default_template(obj.pointer_mut("/spec/jobTemplate/spec/template"));
}

// ---------------------------------------------------------------------------------------------
// Services and namespaces
// ---------------------------------------------------------------------------------------------

fn default_service(obj: &mut Value) {
    let spec = child(obj, "spec");
    default_str(spec, "sessionAffinity", "None");
    default_str(spec, "type", "ClusterIP");
    if spec["sessionAffinity"] == "ClientIP" {
        let cfg = obj_mut(spec.entry("sessionAffinityConfig").or_insert(json!({})));
        let cip = obj_mut(cfg.entry("clientIP").or_insert(json!({})));
        default_val(cip, "timeoutSeconds", json!(10800));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let p = obj_mut(p);
            default_str(p, "protocol", "TCP");
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                _ => false,
            };
            if unset {
                if let Some(port) = p.get("port").cloned() {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if ty == "LoadBalancer" {
        default_val(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        default_str(spec, "internalTrafficPolicy", "Cluster");
        // The service REST storage picks families; skiff is single-stack IPv4.
        default_str(spec, "ipFamilyPolicy", "SingleStack");
        default_val(spec, "ipFamilies", json!(["IPv4"]));
    }
}

fn default_namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !name.is_empty() {
        let labels = obj_mut(child(obj, "metadata").entry("labels").or_insert(json!({})));
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let spec = child(obj, "spec");
    default_val(spec, "finalizers", json!(["kubernetes"]));
    default_str(child(obj, "status"), "phase", "Active");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(group: &str, plural: &str, mut v: Value) -> Value {
        apply_defaults(group, plural, &mut v);
        let again = {
            let mut w = v.clone();
            apply_defaults(group, plural, &mut w);
            w
        };
        assert_eq!(v, again, "defaulting must be idempotent");
        v
    }

    #[test]
    fn pod_defaults() {
        let p = defaulted(
            "",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                 "resources": {"limits": {"cpu": "1"}},
                 "readinessProbe": {"httpGet": {"port": 80}}},
                {"name": "b", "image": "nginx:1.27"},
                {"name": "c", "image": "reg:5000/x/nginx:latest"},
                {"name": "d", "image": "reg:5000/nginx"},
                {"name": "e", "image": "nginx@sha256:abcd"}],
                "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}),
        );
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["securityContext"], json!({}));
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["priority"], 0);
        assert_eq!(s["preemptionPolicy"], "PreemptLowerPriority");
        let c = &s["containers"];
        let pulls: Vec<_> = (0..5).map(|i| c[i]["imagePullPolicy"].clone()).collect();
        assert_eq!(
            pulls,
            vec!["Always", "IfNotPresent", "Always", "Always", "IfNotPresent"]
        );
        assert_eq!(c[0]["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c[0]["terminationMessagePolicy"], "File");
        assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
        assert_eq!(c[0]["resources"]["requests"]["cpu"], "1");
        assert_eq!(c[1]["resources"], json!({}));
        assert_eq!(
            c[0]["readinessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(s["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(s["volumes"][1]["secret"]["defaultMode"], 420);
    }

    #[test]
    fn explicit_values_are_kept() {
        let p = defaulted(
            "",
            "pods",
            json!({"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never"}]}}),
        );
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn deployment_defaults() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {
                "metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        );
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            s["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        // Template pod specs don't get pod-only defaults.
        assert!(s["template"]["spec"].get("priority").is_none());
        let r = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn statefulset_daemonset_replicaset_defaults() {
        let s = defaulted("apps", "statefulsets", json!({"spec": {}}));
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(s["spec"]["replicas"], 1);
        assert_eq!(s["spec"]["revisionHistoryLimit"], 10);
        let ds = defaulted("apps", "daemonsets", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let rs = defaulted("apps", "replicasets", json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn job_and_cronjob_defaults() {
        let j = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"name": "pi"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl:5"}]}}}}),
        );
        let s = &j["spec"];
        assert_eq!(
            (s["completions"].clone(), s["parallelism"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(s["backoffLimit"], 6);
        assert_eq!(s["completionMode"], "NonIndexed");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(j["metadata"]["labels"], json!({"a": "b"}));
        let j2 = defaulted("batch", "jobs", json!({"spec": {"parallelism": 3}}));
        assert!(j2["spec"].get("completions").is_none());
        let mut j3 = j.clone();
        job_selector_defaults(&mut j3, "u-1");
        assert_eq!(
            j3["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            j3["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        let cj = defaulted(
            "batch",
            "cronjobs",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        );
        let s = &cj["spec"];
        assert_eq!(s["concurrencyPolicy"], "Allow");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["successfulJobsHistoryLimit"], 3);
        assert_eq!(s["failedJobsHistoryLimit"], 1);
        assert_eq!(
            s["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
    }

    #[test]
    fn service_namespace_secret_defaults() {
        let svc = defaulted(
            "",
            "services",
            json!({"spec": {"selector": {"app": "x"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        let s = &svc["spec"];
        assert_eq!(s["type"], "ClusterIP");
        assert_eq!(s["sessionAffinity"], "None");
        assert_eq!(
            s["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(s["ports"][1]["targetPort"], "https");
        assert_eq!(s["internalTrafficPolicy"], "Cluster");
        assert_eq!(s["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        assert!(s.get("externalTrafficPolicy").is_none());
        let np = defaulted(
            "",
            "services",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        let en = defaulted(
            "",
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "x.com"}}),
        );
        assert!(en["spec"].get("ipFamilies").is_none());
        let ns = defaulted("", "namespaces", json!({"metadata": {"name": "dev"}}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
        let sec = defaulted("", "secrets", json!({"data": {}}));
        assert_eq!(sec["type"], "Opaque");
        let pvc = defaulted("", "persistentvolumeclaims", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        let cr = defaulted("example.com", "widgets", json!({"spec": {}}));
        assert_eq!(cr, json!({"spec": {}}));
    }
}
