//! Strategic merge patch for the built-in types (`application/strategic-merge-patch+json`).
//!
//! Maps merge recursively and `null` deletes a key, as in a JSON merge patch; lists whose
//! upstream field carries `patchStrategy:"merge"` merge element by element on their merge key
//! (`containers` by `name`, container `ports` by `containerPort`, Service `ports` by `port`,
//! ...), other lists are replaced. The directives `$patch` (replace / delete / merge),
//! `$setElementOrder/<field>`, `$retainKeys` and `$deleteFromPrimitiveList/<field>` are
//! honoured.

use serde_json::{Map, Value};

/// How a list field merges. This table is also where OpenAPI's patch extensions
/// (`x-kubernetes-patch-merge-key`, ...) come from (see [`crate::openapi`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListStrategy {
    /// Replace the whole list (the default).
    Replace,
    /// Merge objects by this key.
    MergeKey(&'static str),
    /// A list of scalars merged as a set (metadata.finalizers).
    MergePrimitives,
}

/// The strategy of list field `field` found under the object path `path` (field names from
/// the root, list elements not counted).
pub fn list_strategy(path: &[&str], field: &str) -> ListStrategy {
    use ListStrategy::*;
    let in_container = path
        .last()
        .is_some_and(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "volumes" => MergeKey("name"),
        "env" if in_container => MergeKey("name"),
        "volumeMounts" => MergeKey("mountPath"),
        "volumeDevices" => MergeKey("devicePath"),
        "ports" if in_container => MergeKey("containerPort"),
        // A Service's spec.ports.
        "ports" if path == ["spec"] => MergeKey("port"),
        "conditions" => MergeKey("type"),
        "ownerReferences" => MergeKey("uid"),
        "hostAliases" | "podIPs" | "hostIPs" => MergeKey("ip"),
        "addresses" if path == ["status"] => MergeKey("type"),
        "topologySpreadConstraints" => MergeKey("topologyKey"),
        "finalizers" if path == ["metadata"] => MergePrimitives,
        _ => Replace,
    }
}

/// Apply a strategic merge patch to `original`.
pub fn merge(original: &Value, patch: &Value) -> Result<Value, String> {
    let mut path = Vec::new();
    match merge_value(Some(original), patch, &mut path)? {
        Some(v) => Ok(v),
        None => Ok(Value::Object(Map::new())),
    }
}

/// Merge `patch` into `orig`; `None` means the value is deleted.
fn merge_value<'a>(
    orig: Option<&Value>,
    patch: &'a Value,
    path: &mut Vec<&'a str>,
) -> Result<Option<Value>, String> {
    match patch {
        Value::Null => Ok(None),
        Value::Object(pm) => {
            match pm.get("$patch").and_then(Value::as_str) {
                Some("replace") => {
                    let mut m = pm.clone();
                    m.remove("$patch");
                    return Ok(Some(strip_directives(&Value::Object(m))));
                }
                Some("delete") => return Ok(None),
                Some("merge") | None => {}
                Some(other) => return Err(format!("unknown patch type: {other:?}")),
            }
            let mut out = match orig {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            let mut retain: Option<Vec<String>> = None;
            for (k, pv) in pm {
                if k == "$patch" {
                    continue;
                }
                if k == "$retainKeys" {
                    retain = Some(
                        pv.as_array()
                            .ok_or("$retainKeys must be a list")?
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect(),
                    );
                    continue;
                }
                if k.starts_with("$setElementOrder/") {
                    continue;
                }
                if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    let remove = pv
                        .as_array()
                        .ok_or("$deleteFromPrimitiveList must be a list")?;
                    if let Some(Value::Array(items)) = out.get_mut(field) {
                        items.retain(|i| !remove.contains(i));
                    }
                    continue;
                }
                let merged = match pv {
                    Value::Array(items) => {
                        let strategy = list_strategy(path, k);
                        path.push(k);
                        let r = merge_list(out.get(k.as_str()), items, strategy, path);
                        path.pop();
                        r?
                    }
                    _ => {
                        path.push(k);
                        let r = merge_value(out.get(k.as_str()), pv, path);
                        path.pop();
                        r?
                    }
                };
                match merged {
                    Some(v) => {
                        out.insert(k.clone(), v);
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            // Order merged lists as the client asked.
            for (k, order) in pm {
                if let Some(field) = k.strip_prefix("$setElementOrder/") {
                    let strategy = list_strategy(path, field);
                    if let (Some(Value::Array(items)), Some(order)) =
                        (out.get_mut(field), order.as_array())
                    {
                        reorder(items, order, strategy);
                    }
                }
            }
            if let Some(keys) = retain {
                out.retain(|k, _| keys.contains(k));
            }
            Ok(Some(Value::Object(out)))
        }
        scalar => Ok(Some(scalar.clone())),
    }
}

fn merge_list<'a>(
    orig: Option<&Value>,
    patch: &'a [Value],
    strategy: ListStrategy,
    path: &mut Vec<&'a str>,
) -> Result<Option<Value>, String> {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    let replace_all = patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let orig_items: Vec<Value> = match orig {
        Some(Value::Array(a)) if !replace_all => a.clone(),
        _ => Vec::new(),
    };
    match strategy {
        ListStrategy::Replace => Ok(Some(Value::Array(
            patch
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        ))),
        ListStrategy::MergePrimitives => {
            let mut out = orig_items;
            for p in patch {
                if p.get("$patch").is_some() {
                    continue;
                }
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(Some(Value::Array(out)))
        }
        ListStrategy::MergeKey(key) => {
            let mut out = orig_items;
            for p in patch {
                let directive = p.get("$patch").and_then(Value::as_str);
                if directive == Some("replace") && p.get(key).is_none() {
                    continue;
                }
                let Some(kv) = p.get(key) else {
                    return Err(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ));
                };
                let pos = out.iter().position(|o| o.get(key) == Some(kv));
                if directive == Some("delete") {
                    if let Some(i) = pos {
                        out.remove(i);
                    }
                    continue;
                }
                match pos {
                    Some(i) => {
                        if let Some(v) = merge_value(Some(&out[i]), p, path)? {
                            out[i] = v;
                        }
                    }
                    None => {
                        if let Some(v) = merge_value(None, p, path)? {
                            out.push(v);
                        }
                    }
                }
            }
            Ok(Some(Value::Array(out)))
        }
    }
}

/// Put `items` in the order of `order` (elements named by merge key, or scalars); items the
/// order does not name keep their relative order after the named ones.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let rank = |item: &Value| -> usize {
        order
            .iter()
            .position(|o| match strategy {
                ListStrategy::MergeKey(k) => o.get(k).is_some() && o.get(k) == item.get(k),
                _ => o == item,
            })
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(rank);
}

/// Remove `$`-directives from a value that is taken as is.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_keep_others() {
        let orig = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}]}}}});
        let got = merge(&orig, &patch).unwrap();
        let cs = &got["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])
        );
        assert_eq!(cs[1], json!({"name": "b", "image": "b:1"}));
    }

    #[test]
    fn delete_directive_and_null_remove() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"metadata": {"labels": {"a": null}},
            "spec": {"containers": [{"name": "b", "$patch": "delete"}]}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(got["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(got["spec"]["containers"], json!([{"name": "a"}]));
    }

    #[test]
    fn service_ports_merge_by_port_and_container_ports_by_container_port() {
        let orig = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let patch = json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}, {"port": 8080}]}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 8080}])
        );

        let orig =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
        let patch =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}]}]}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(
            got["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
    }

    #[test]
    fn replace_directives() {
        let orig =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "x": {"p": 1, "q": 2}}});
        let patch = json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}], "x": {"$patch": "replace", "r": 3}}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(got["spec"]["containers"], json!([{"name": "c"}]));
        assert_eq!(got["spec"]["x"], json!({"r": 3}));
    }

    #[test]
    fn retain_keys_and_primitive_lists() {
        let orig = json!({"metadata": {"finalizers": ["a", "b"]},
            "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(got["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn unlisted_lists_are_replaced() {
        let orig = json!({"spec": {"tolerations": [{"key": "a"}], "args": ["x"]}});
        let patch = json!({"spec": {"tolerations": [{"key": "b"}]}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(got["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(got["spec"]["args"], json!(["x"]));
    }
    // The cases below follow the examples in upstream's strategicpatch tests
    // (staging/src/k8s.io/apimachinery/pkg/util/strategicpatch/patch_test.go).

    #[test]
    fn set_element_order_places_new_and_existing_elements() {
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "new"}, {"name": "a"}, {"name": "b"}],
            "containers": [{"name": "new", "image": "n"}]}});
        let got = merge(&orig, &patch).unwrap();
        let names: Vec<&str> = got["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "new", "a", "b"]);
        // And for a primitive list merged as a set.
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}});
        assert_eq!(
            merge(&orig, &patch).unwrap()["metadata"]["finalizers"],
            json!(["b", "c", "a"])
        );
    }

    #[test]
    fn conditions_merge_by_type_and_mounts_by_mount_path() {
        let orig = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(
            merge(&orig, &patch).unwrap()["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
        let orig = json!({"spec": {"containers": [{"name": "c", "volumeMounts": [
            {"name": "a", "mountPath": "/a"}, {"name": "b", "mountPath": "/b"}],
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c",
            "volumeMounts": [{"mountPath": "/b", "readOnly": true}, {"mountPath": "/a", "$patch": "delete"}],
            "env": [{"name": "X", "$patch": "delete"}]}]}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(
            got["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "b", "mountPath": "/b", "readOnly": true}])
        );
        assert_eq!(
            got["spec"]["containers"][0]["env"],
            json!([{"name": "Y", "value": "2"}])
        );
    }

    #[test]
    fn delete_directive_on_a_map_and_untouched_elements() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate"}, "replicas": 2,
            "containers": [{"name": "a", "image": "x"}]}});
        let patch = json!({"spec": {"strategy": {"$patch": "delete"},
            "containers": [{"name": "a"}]}});
        let got = merge(&orig, &patch).unwrap();
        assert_eq!(
            got["spec"],
            json!({"replicas": 2, "containers": [{"name": "a", "image": "x"}]}),
            "naming an element by its key alone changes nothing"
        );
    }

    #[test]
    fn retain_keys_switches_a_volume_source() {
        let orig = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        let patch = json!({"spec": {"volumes": [
            {"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]}});
        assert_eq!(
            merge(&orig, &patch).unwrap()["spec"]["volumes"],
            json!([{"name": "v", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn malformed_patches_are_errors_with_upstreams_wording() {
        let orig = json!({"spec": {"containers": [{"name": "a"}]}});
        let err = merge(&orig, &json!({"spec": {"containers": [{"image": "x"}]}})).unwrap_err();
        assert_eq!(
            err,
            r#"map: {"image":"x"} does not contain declared merge key: name"#
        );
        let err = merge(&orig, &json!({"spec": {"$patch": "explode"}})).unwrap_err();
        assert!(err.contains("unknown patch type"), "{err}");
    }
}
