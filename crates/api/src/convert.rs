//! Conversion between the versions of one resource that share storage, as upstream's
//! conversion functions do: `events.k8s.io/v1` Events are stored as core `v1` Events, and
//! `autoscaling/v1` HorizontalPodAutoscalers as `autoscaling/v2`.
//!
//! `to_external` turns a stored object into the version a client asked for; `to_storage` turns
//! a client's object into the stored version. Fields only one side knows are kept where
//! upstream keeps them (the v1 HPA carries v2-only metrics and conditions in annotations).

use serde_json::{json, Map, Value};

/// Annotations the autoscaling/v1 form uses to carry what only v2 can express.
const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// Whether objects of this group/version/kind are stored in another version.
pub fn converts(group: &str, version: &str, kind: &str) -> bool {
    matches!(
        (group, version, kind),
        ("events.k8s.io", "v1", "Event") | ("autoscaling", "v1", "HorizontalPodAutoscaler")
    )
}

/// A stored object as `group/version` presents it.
pub fn to_external(group: &str, version: &str, kind: &str, stored: Value) -> Value {
    match (group, version, kind) {
        ("events.k8s.io", "v1", "Event") => core_event_to_events_v1(stored),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => hpa_v2_to_v1(stored),
        _ => stored,
    }
}

/// A client's object in `group/version` as it is stored.
pub fn to_storage(group: &str, version: &str, kind: &str, external: Value) -> Value {
    match (group, version, kind) {
        ("events.k8s.io", "v1", "Event") => events_v1_to_core_event(external),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => hpa_v1_to_v2(external),
        _ => external,
    }
}

fn take(m: &mut Map<String, Value>, k: &str) -> Option<Value> {
    m.remove(k).filter(|v| !v.is_null())
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v);
    }
}

/// Field renames between core/v1 Event (left) and events.k8s.io/v1 Event (right).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn core_event_to_events_v1(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    for (core, ev) in EVENT_RENAMES {
        let value = take(&mut m, core);
        put(&mut m, ev, value);
    }
    // events.k8s.io names the controller that reported the event; older core events carry it
    // only in source.component.
    if !m.contains_key("reportingController") {
        let from_source = m
            .get("deprecatedSource")
            .and_then(|s| s.get("component"))
            .cloned();
        put(&mut m, "reportingController", from_source);
    }
    if let Some(series) = m.get_mut("series").and_then(Value::as_object_mut) {
        series.remove("state");
    }
    m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    Value::Object(m)
}

fn events_v1_to_core_event(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    for (core, ev) in EVENT_RENAMES {
        let value = take(&mut m, ev);
        put(&mut m, core, value);
    }
    m.insert("apiVersion".into(), json!("v1"));
    Value::Object(m)
}

fn annotations(m: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let ann = &mut meta["annotations"];
    if !ann.is_object() {
        *ann = json!({});
    }
    ann.as_object_mut()
        .expect("annotations was just made an object")
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v2_to_v1(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    m.insert("apiVersion".into(), json!("autoscaling/v1"));
    let mut other_metrics = Vec::new();
    if let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(Value::Array(metrics)) = spec.remove("metrics") {
            for metric in metrics {
                if is_cpu_utilization(&metric)
                    && !spec.contains_key("targetCPUUtilizationPercentage")
                {
                    let target = metric["resource"]["target"]["averageUtilization"].clone();
                    spec.insert("targetCPUUtilizationPercentage".into(), target);
                } else {
                    other_metrics.push(metric);
                }
            }
        }
        spec.remove("behavior");
    }
    let mut other_current = Vec::new();
    let mut conditions = None;
    if let Some(status) = m.get_mut("status").and_then(Value::as_object_mut) {
        if let Some(Value::Array(current)) = status.remove("currentMetrics") {
            for metric in current {
                let cpu = metric["type"] == "Resource" && metric["resource"]["name"] == "cpu";
                let util = metric["resource"]["current"]["averageUtilization"].clone();
                if cpu && !util.is_null() {
                    status.insert("currentCPUUtilizationPercentage".into(), util);
                } else {
                    other_current.push(metric);
                }
            }
        }
        conditions = status.remove("conditions");
    }
    let mut notes = Vec::new();
    if !other_metrics.is_empty() {
        notes.push((HPA_METRICS, Value::Array(other_metrics)));
    }
    if !other_current.is_empty() {
        notes.push((HPA_CURRENT_METRICS, Value::Array(other_current)));
    }
    if let Some(c) = conditions.filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
        notes.push((HPA_CONDITIONS, c));
    }
    if !notes.is_empty() {
        let ann = annotations(&mut m);
        for (k, v) in notes {
            ann.insert(k.into(), json!(v.to_string()));
        }
    }
    Value::Object(m)
}

fn hpa_v1_to_v2(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    m.insert("apiVersion".into(), json!("autoscaling/v2"));
    // Metrics and conditions a v1 client carried over in annotations come back as fields.
    let mut carried = |key: &str| -> Vec<Value> {
        let ann = m
            .get_mut("metadata")
            .and_then(|meta| meta.get_mut("annotations"))
            .and_then(Value::as_object_mut);
        let Some(ann) = ann else { return Vec::new() };
        let raw = ann.remove(key);
        if ann.is_empty() {
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("annotations");
            }
        }
        raw.and_then(|r| r.as_str().and_then(|s| serde_json::from_str(s).ok()))
            .and_then(|v: Value| v.as_array().cloned())
            .unwrap_or_default()
    };
    let extra_metrics = carried(HPA_METRICS);
    let extra_current = carried(HPA_CURRENT_METRICS);
    let conditions = carried(HPA_CONDITIONS);
    if let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut) {
        let mut metrics = Vec::new();
        if let Some(target) = take(spec, "targetCPUUtilizationPercentage") {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target}}}));
        }
        metrics.extend(extra_metrics);
        if !metrics.is_empty() {
            spec.insert("metrics".into(), Value::Array(metrics));
        }
    }
    let has_status = m.contains_key("status");
    if has_status || !extra_current.is_empty() || !conditions.is_empty() {
        let status = m
            .entry("status")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(status) = status {
            let mut current = Vec::new();
            if let Some(util) = take(status, "currentCPUUtilizationPercentage") {
                current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": util}}}));
            }
            current.extend(extra_current);
            if !current.is_empty() {
                status.insert("currentMetrics".into(), Value::Array(current));
            }
            if !conditions.is_empty() {
                status.insert("conditions".into(), Value::Array(conditions));
            }
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_between_core_and_events_k8s_io() {
        let core = json!({"apiVersion":"v1","kind":"Event",
            "metadata":{"name":"e1","namespace":"default"},
            "involvedObject":{"kind":"Pod","name":"p1","namespace":"default"},
            "reason":"Scheduled","message":"Successfully assigned default/p1 to n1",
            "source":{"component":"default-scheduler"},"type":"Normal","count":3,
            "firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:01:00Z"});
        let ev = to_external("events.k8s.io", "v1", "Event", core.clone());
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "p1");
        assert_eq!(ev["note"], "Successfully assigned default/p1 to n1");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["deprecatedSource"]["component"], "default-scheduler");
        assert_eq!(ev["reportingController"], "default-scheduler");
        assert!(ev.get("involvedObject").is_none() && ev.get("message").is_none());
        let back = to_storage("events.k8s.io", "v1", "Event", ev);
        let mut expected = core;
        expected["reportingComponent"] = json!("default-scheduler");
        assert_eq!(back, expected);
    }

    #[test]
    fn hpa_v1_cpu_target_is_a_v2_resource_metric_and_back() {
        let v1 = json!({"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler",
            "metadata":{"name":"web"},
            "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},
                    "minReplicas":1,"maxReplicas":5,"targetCPUUtilizationPercentage":70},
            "status":{"currentReplicas":2,"desiredReplicas":2,"currentCPUUtilizationPercentage":40}});
        let v2 = to_storage("autoscaling", "v1", "HorizontalPodAutoscaler", v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type":"Resource","resource":{"name":"cpu",
                "target":{"type":"Utilization","averageUtilization":70}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        let back = to_external("autoscaling", "v1", "HorizontalPodAutoscaler", v2);
        assert_eq!(back, v1);
    }

    #[test]
    fn hpa_v2_only_metrics_survive_a_v1_round_trip_in_annotations() {
        let v2 = json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
            "metadata":{"name":"web"},
            "spec":{"maxReplicas":5,"metrics":[
                {"type":"Resource","resource":{"name":"memory",
                    "target":{"type":"AverageValue","averageValue":"100Mi"}}}]},
            "status":{"conditions":[{"type":"AbleToScale","status":"True"}]}});
        let v1 = to_external("autoscaling", "v1", "HorizontalPodAutoscaler", v2.clone());
        assert!(v1["spec"].get("metrics").is_none());
        assert!(v1["metadata"]["annotations"][HPA_METRICS]
            .as_str()
            .unwrap()
            .contains("memory"));
        let back = to_storage("autoscaling", "v1", "HorizontalPodAutoscaler", v1);
        assert_eq!(back, v2);
    }
}
