//! What skiff's API clients share: informers over one watch per kind, work queues, an event
//! recorder, and small helpers over pods, selectors and owner references.

pub mod events;
pub mod informer;
pub mod leader;
pub mod queue;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use events::{EventType, Recorder};
pub use informer::{Change, Informer, Informers};
pub use queue::{run_workers, Queue};

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, kube::Error> {
    let kc = Kubeconfig::read_from(path).map_err(kube::Error::InferKubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(kube::Error::InferKubeconfig)?;
    kube::Client::try_from(config)
}

/// The current time as an API timestamp (second precision, as upstream serialises `Time`).
pub fn now() -> Time {
    let t = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// Whether a node selector requirement holds for the value `have` of its key (a label, or
/// `metadata.name` for a field requirement), as upstream's nodeSelector requirements: `Gt`
/// and `Lt` compare integers, and an unknown operator matches nothing.
pub fn node_requirement_matches(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => have.is_some_and(|v| vals.iter().any(|x| x == v)),
        "NotIn" => !have.is_some_and(|v| vals.iter().any(|x| x == v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                vals.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                h > v
            } else {
                h < v
            }
        }
        _ => false,
    }
}

/// Whether one toleration tolerates a taint given by its parts, as upstream's
/// `Toleration.ToleratesTaint`: an empty effect or key matches any, a missing operator means
/// `Equal`, and an unknown operator tolerates nothing.
pub fn toleration_tolerates_parts(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != effect)
    {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != key) {
        return false;
    }
    match t.operator.as_deref() {
        None | Some("") | Some("Equal") => t.value.as_deref().unwrap_or("") == value,
        Some("Exists") => true,
        Some(_) => false,
    }
}

/// Whether one toleration tolerates `taint`.
pub fn toleration_tolerates(t: &Toleration, taint: &Taint) -> bool {
    toleration_tolerates_parts(
        t,
        &taint.key,
        taint.value.as_deref().unwrap_or(""),
        &taint.effect,
    )
}

/// Whether any of `tols` tolerates `taint`.
pub fn tolerates(tols: &[Toleration], taint: &Taint) -> bool {
    tols.iter().any(|t| toleration_tolerates(t, taint))
}

/// `namespace/name`, or `name` for cluster-scoped objects.
pub fn key_of(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        _ => meta.name.clone().unwrap_or_default(),
    }
}

/// Splits a key from `key_of` into (namespace, name).
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, key),
    }
}

/// Whether `labels` match a LabelSelector. An empty selector matches everything; callers that
/// must treat it as "nothing" (controllers) check that first.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| vals.contains(v)),
            "NotIn" => !have.is_some_and(|v| vals.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a selector has no requirements at all.
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// A selector as the query-string form (`a=b,c in (d)`).
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// An owner reference marking `controller` as the managing controller.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The node a pod is bound to, if any.
pub fn pod_node(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// Pod phase is neither Succeeded nor Failed and it is not being deleted.
pub fn pod_is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed")) && p.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition, if True.
pub fn pod_ready_since(p: &Pod) -> Option<Option<&Time>> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref())
}

pub fn pod_is_ready(p: &Pod) -> bool {
    pod_ready_since(p).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's IsPodAvailable).
pub fn pod_is_available(p: &Pod, min_ready_seconds: i32, now: &Time) -> bool {
    match pod_ready_since(p) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t.0.as_second() + min_ready_seconds as i64 <= now.0.as_second(),
    }
}

/// Upstream's `rand.String`: lowercase consonants and digits without vowels or look-alikes.
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHANUMS[rng.random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

/// Upstream's `rand.SafeEncodeString`: maps each byte to the same alphabet.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "fe".into())].into();
        let mut sel = LabelSelector {
            match_labels: Some([("app".into(), "web".into())].into()),
            match_expressions: None,
        };
        assert!(selector_matches(&sel, &labels));
        sel.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: Some(vec!["fe".into()]),
        }]);
        assert!(!selector_matches(&sel, &labels));
        assert_eq!(selector_string(&sel), "app=web,tier notin (fe)");
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let yes = [
            serde_json::json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}),
            serde_json::json!({"key": "dedicated", "operator": "Equal", "value": "db"}),
            serde_json::json!({"key": "dedicated", "operator": "Exists"}),
            serde_json::json!({"operator": "Exists"}),
        ];
        let no = [
            serde_json::json!({"key": "dedicated", "value": "web"}),
            serde_json::json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
            serde_json::json!({"key": "other", "operator": "Exists"}),
            serde_json::json!({"key": "dedicated", "operator": "Bogus", "value": "db"}),
        ];
        for t in yes {
            assert!(toleration_tolerates(&tol(t.clone()), &taint), "{t}");
        }
        for t in no {
            assert!(!toleration_tolerates(&tol(t.clone()), &taint), "{t}");
        }
    }
}
