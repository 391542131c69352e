//! Per-resource behaviour on top of the generic registry, like upstream's
//! `pkg/registry/<group>/<resource>/strategy.go`: what a create resets, what an update keeps,
//! extra validation, graceful deletion and allocations.

use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::{FieldError, StatusError};

use super::Registry;

pub trait Strategy: Sync {
    /// Before defaulting and validation of a new object.
    fn prepare_create(&self, _obj: &mut Value) {}

    /// Before defaulting and validation of an update of the main resource.
    fn prepare_update(&self, _new: &mut Value, _old: &Value) {}

    /// Validation beyond the shared rules.
    fn validate_create(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    fn validate_status_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// The grace period a delete gets: `None` or 0 deletes at once.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Allocate what the object needs from shared pools (Service addresses and ports).
    fn allocate(
        &self,
        _reg: &Registry,
        _obj: &mut Value,
        _old: Option<&Value>,
        _dry_run: bool,
    ) -> Result<(), StatusError> {
        Ok(())
    }
}

/// The strategy of a resource.
pub fn for_resource(group: &str, plural: &str) -> &'static dyn Strategy {
    match (group, plural) {
        ("", "pods") => &Pods,
        ("", "services") => &Services,
        ("", "namespaces") => &Namespaces,
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "cronjobs")
        | ("", "replicationcontrollers")
        | ("policy", "poddisruptionbudgets")
        | ("autoscaling", "horizontalpodautoscalers") => &ClearStatusOnCreate,
        ("apiextensions.k8s.io", "customresourcedefinitions") => &CustomResourceDefinitions,
        ("batch", "jobs") => &Jobs,
        _ => &Plain,
    }
}

/// CRDs: checked as upstream checks them, status cleared on create, and the cleanup
/// finalizer added so deleting a CRD first deletes its objects.
struct CustomResourceDefinitions;

impl Strategy for CustomResourceDefinitions {
    fn prepare_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        let meta = &mut obj["metadata"];
        let mut fins = meta["finalizers"].as_array().cloned().unwrap_or_default();
        if !fins.iter().any(|f| f == skiff_api::crd::CLEANUP_FINALIZER) {
            fins.push(json!(skiff_api::crd::CLEANUP_FINALIZER));
        }
        meta["finalizers"] = json!(fins);
    }

    fn validate_create(&self, obj: &Value) -> Vec<FieldError> {
        skiff_api::crd::validate_crd(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = skiff_api::crd::validate_crd(new);
        for field in ["group", "scope"] {
            if new["spec"][field] != old["spec"][field] {
                errs.push(FieldError::invalid(
                    format!("spec.{field}"),
                    new["spec"][field].clone(),
                    "field is immutable",
                ));
            }
        }
        if new["spec"]["names"]["plural"] != old["spec"]["names"]["plural"] {
            errs.push(FieldError::invalid(
                "spec.names.plural",
                new["spec"]["names"]["plural"].clone(),
                "field is immutable",
            ));
        }
        errs
    }
}

/// Resources with no special behaviour.
struct Plain;
impl Strategy for Plain {}

/// Workloads: status is the controllers' to write; a create starts with none.
struct ClearStatusOnCreate;
impl Strategy for ClearStatusOnCreate {
    fn prepare_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
}

/// Jobs: as upstream's job strategy, a create gets the `controller-uid` selector and the
/// template labels it selects (unless `manualSelector`), so pods are found by the Job's uid.
struct Jobs;
impl Strategy for Jobs {
    fn prepare_create(&self, obj: &mut Value) {
        ClearStatusOnCreate.prepare_create(obj);
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        skiff_api::defaults::job_selector_defaults(obj, &uid);
    }
}

struct Pods;
impl Strategy for Pods {
    fn prepare_create(&self, obj: &mut Value) {
        let qos = qos_class(obj);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        default_toleration_seconds(obj);
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        // A pod no node has taken, or one that finished, has nothing to stop.
        let scheduled = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = obj.pointer("/status/phase").and_then(Value::as_str);
        if !scheduled || matches!(phase, Some("Succeeded" | "Failed")) {
            return Some(0);
        }
        Some(requested.unwrap_or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        }))
    }
}

/// Upstream's `DefaultTolerationSeconds` admission: a new pod tolerates its node being
/// not-ready or unreachable for 300 s (unless it says otherwise), after which the node
/// lifecycle controller evicts it and its controller replaces it elsewhere.
pub fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (t_key == key || (t_key.is_empty() && op == "Exists"))
        });
        if !covered {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}),
            );
        }
    }
}

/// Upstream's QoS class: Guaranteed when every container has equal cpu and memory requests
/// and limits, BestEffort when none has any, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        for r in ["cpu", "memory"] {
            let rq = req.and_then(|v| v.get(r));
            let lm = lim.and_then(|v| v.get(r));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            // Requests default to limits when only limits are given.
            match (rq, lm) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a != b => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

struct Services;
impl Strategy for Services {
    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn allocate(
        &self,
        reg: &Registry,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        reg.alloc
            .allocate(&reg.cache, obj, old, dry_run)
            .map_err(|errs| {
                StatusError::invalid(
                    "",
                    "Service",
                    obj.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    &errs,
                )
            })
    }
}

struct Namespaces;
impl Strategy for Namespaces {
    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        // Upstream labels every namespace with its own name.
        if let Some(name) = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            let meta = super::object::meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers change only through /finalize.
        if let Some(f) = old.pointer("/spec/finalizers") {
            new["spec"] = json!({"finalizers": f});
        }
        if let Some(name) = old
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            let meta = super::object::meta_mut(new);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }
}

/// Strategic merge patch, using the merge keys of the built-in types.
pub fn strategic_merge(
    info: &ResourceInfo,
    cur: &Value,
    patch: &Value,
) -> Result<Value, StatusError> {
    if info.group.contains('.') && !is_builtin_group(&info.group) {
        return Err(StatusError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: "strategic merge patch is not supported for custom resources; use a merge patch or a JSON patch instead".into(),
            details: None,
        });
    }
    skiff_api::strategic::merge(cur, patch).map_err(StatusError::bad_request)
}

fn is_builtin_group(g: &str) -> bool {
    g.ends_with(".k8s.io") || g == "apps" || g == "batch" || g == "policy" || g == "autoscaling"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_tolerate_unready_nodes_for_five_minutes_unless_they_say_otherwise() {
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        default_toleration_seconds(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        let mut pod = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_toleration_seconds(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0]["tolerationSeconds"], 5,
            "the pod's own toleration stays"
        );
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"].as_array().unwrap().len(),
            1,
            "tolerates everything"
        );
    }
}
