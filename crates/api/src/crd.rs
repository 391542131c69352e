//! CustomResourceDefinitions: checking a CRD, the resources it serves, and what its structural
//! schema does to custom objects (validation, defaults, pruning), plus the columns
//! `kubectl get` shows for them (`additionalPrinterColumns`).
//!
//! The messages follow upstream's (`spec.replicas in body should be greater than or equal to
//! 0`, `Unsupported value: "x": supported values: ...`), since kubectl prints them verbatim.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::resources::{ResourceInfo, Scope, Subresource, ALL_VERBS};
use crate::status::FieldError;

/// The finalizer the API server puts on every CRD so its objects are deleted with it.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// What a served version of a CRD adds to its [`ResourceInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomInfo {
    /// `additionalPrinterColumns` of this version.
    pub printer_columns: Vec<Value>,
    /// The scale subresource's JSON paths, when declared.
    pub scale: Option<ScalePaths>,
    /// The version objects are stored in (all versions share storage; no conversion).
    pub storage_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first
/// (`v2`, `v1`, `v1beta2`, `v1beta1`, `v1alpha1`), then anything else by name.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (stage, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(stage) {
                let minor: i64 = n.parse().ok()?;
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((rank, major, minor)) => (rank, major, minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// Problems with a CRD itself, as upstream's validation reports them.
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    if group.is_none() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.is_some_and(|g| g.contains('.')) {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_none() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if s(crd, "/spec/names/kind").is_none() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if let (Some(g), Some(p)) = (group, plural) {
        let name = s(crd, "/metadata/name").unwrap_or("");
        if name != format!("{p}.{g}") {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
    }
    match s(crd, "/spec/scope") {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
        None => errs.push(FieldError::required("spec.scope", "")),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!(null),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                Value::Array(versions.clone()),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            if s(v, "/name").is_none() {
                errs.push(FieldError::required(format!("spec.versions[{i}].name"), ""));
            }
            if v.pointer("/schema/openAPIV3Schema").is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
    }
    errs
}

/// The resources a CRD serves: one per served version, best version first.
pub fn resources(crd: &Value) -> Vec<ResourceInfo> {
    let group = s(crd, "/spec/group").unwrap_or("").to_string();
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let plural = s(&names, "/plural").unwrap_or("").to_string();
    let kind = s(&names, "/kind").unwrap_or("").to_string();
    let singular = s(&names, "/singular")
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |key: &str| -> Vec<Cow<'static, str>> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| Cow::Owned(s.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let scope = if s(crd, "/spec/scope") == Some("Cluster") {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage") == Some(&json!(true)))
        .and_then(|v| s(v, "/name"))
        .unwrap_or("")
        .to_string();
    let mut out: Vec<ResourceInfo> = versions
        .iter()
        .filter(|v| v.get("served") != Some(&json!(false)))
        .filter_map(|v| {
            let version = s(v, "/name")?.to_string();
            let mut subresources = Vec::new();
            let subs = v.get("subresources").cloned().unwrap_or(json!({}));
            let gpu = vec!["get", "patch", "update"];
            if subs.get("status").is_some() {
                subresources.push(Subresource {
                    name: Cow::Borrowed("status"),
                    group: Cow::Owned(group.clone()),
                    version: Cow::Owned(version.clone()),
                    kind: Cow::Owned(kind.clone()),
                    verbs: gpu.clone(),
                });
            }
            let scale = subs.get("scale").map(|sc| ScalePaths {
                spec_replicas: s(sc, "/specReplicasPath")
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas: s(sc, "/statusReplicasPath")
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector: s(sc, "/labelSelectorPath").map(str::to_string),
            });
            if scale.is_some() {
                subresources.push(Subresource {
                    name: Cow::Borrowed("scale"),
                    group: Cow::Borrowed("autoscaling"),
                    version: Cow::Borrowed("v1"),
                    kind: Cow::Borrowed("Scale"),
                    verbs: gpu,
                });
            }
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Some(ResourceInfo {
                group: Cow::Owned(group.clone()),
                version: Cow::Owned(version),
                kind: Cow::Owned(kind.clone()),
                plural: Cow::Owned(plural.clone()),
                singular: Cow::Owned(singular.clone()),
                scope,
                short_names: strings("shortNames"),
                categories: strings("categories"),
                subresources,
                verbs: ALL_VERBS.to_vec(),
                stored_as: None,
                schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
                custom: Some(Arc::new(CustomInfo {
                    printer_columns,
                    scale,
                    storage_version: storage_version.clone(),
                })),
            })
        })
        .collect();
    out.sort_by_key(|r| version_priority(&r.version));
    out
}

// ---------------------------------------------------------------- structural schemas

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Check an object against a structural schema; errors name fields as upstream does.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    // apiVersion, kind and metadata are the API server's business.
    if let (Some(props), Some(o)) = (
        schema.get("properties").and_then(Value::as_object),
        obj.as_object(),
    ) {
        for (k, sub) in props {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(v) = o.get(k) {
                check(sub, v, k, &mut errs);
            }
        }
        for r in required(schema) {
            if !matches!(r, "apiVersion" | "kind" | "metadata") && o.get(r).is_none() {
                errs.push(FieldError::required(r, ""));
            }
        }
    }
    errs
}

fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn check(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema.get("nullable") != Some(&json!(true)) {
            errs.push(FieldError::invalid(
                path,
                Value::Null,
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    declared(schema)
                ),
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if int_or_string {
        if !matches!(type_name(v), "integer" | "string") {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!(
                    "{path} in body must be of type integer,string: \"{}\"",
                    type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body must be of type {t}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                })
                .collect();
            errs.push(FieldError::not_supported_values(path, v.clone(), &list));
        }
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let shown = v.clone();
            if let Some(min) = num(schema, "minimum") {
                let exclusive = schema.get("exclusiveMinimum") == Some(&json!(true));
                if x < min || (exclusive && x == min) {
                    let rel = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        shown.clone(),
                        format!("{path} in body should be {rel} {}", fmt_num(min)),
                    ));
                }
            }
            if let Some(max) = num(schema, "maximum") {
                let exclusive = schema.get("exclusiveMaximum") == Some(&json!(true));
                if x > max || (exclusive && x == max) {
                    let rel = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        shown.clone(),
                        format!("{path} in body should be {rel} {}", fmt_num(max)),
                    ));
                }
            }
            if let Some(m) = num(schema, "multipleOf") {
                if m > 0.0 && (x / m).fract() != 0.0 {
                    errs.push(FieldError::invalid(
                        path,
                        shown,
                        format!("{path} in body should be a multiple of {}", fmt_num(m)),
                    ));
                }
            }
        }
        Value::String(st) => {
            let len = st.chars().count() as f64;
            if let Some(max) = num(schema, "maxLength") {
                if len > max {
                    errs.push(FieldError::too_long(path, max as usize));
                }
            }
            if let Some(min) = num(schema, "minLength") {
                if len < min {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!(
                            "{path} in body should be at least {} chars long",
                            fmt_num(min)
                        ),
                    ));
                }
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(st) => errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body should match '{p}'"),
                    )),
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = num(schema, "minItems") {
                if (items.len() as f64) < min {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!("{path} in body should have at least {} items", fmt_num(min)),
                    ));
                }
            }
            if let Some(max) = num(schema, "maxItems") {
                if (items.len() as f64) > max {
                    errs.push(FieldError::too_many(path, items.len(), max as usize));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    check(sub, child, &field_path(path, k), errs);
                }
            }
            for r in required(schema) {
                if !m.contains_key(r) {
                    errs.push(FieldError::required(field_path(path, r), ""));
                }
            }
            if let Some(min) = num(schema, "minProperties") {
                if (m.len() as f64) < min {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!(
                            "{path} in body should have at least {} properties",
                            fmt_num(min)
                        ),
                    ));
                }
            }
            if let Some(max) = num(schema, "maxProperties") {
                if (m.len() as f64) > max {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        format!(
                            "{path} in body should have at most {} properties",
                            fmt_num(max)
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn declared(schema: &Value) -> &str {
    schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Fill in `default`s from the schema where the object leaves a field out, as upstream's
/// structural defaulting does (recursively, into items and additional properties).
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if matches!(k.as_str(), "metadata") {
                        continue;
                    }
                    if !m.contains_key(k) {
                        if let Some(d) = sub.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = m.get_mut(k) {
                        apply_defaults(sub, child);
                    }
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let known = schema.get("properties").and_then(Value::as_object);
                for (k, child) in m.iter_mut() {
                    if known.is_none_or(|p| !p.contains_key(k)) {
                        apply_defaults(extra, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Remove the fields the schema does not declare (unless it preserves unknown fields there),
/// returning their paths (`spec.foo`) for field validation to report.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(m) = obj {
        let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        let props = schema.get("properties").and_then(Value::as_object);
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(sub) => prune_at(sub, m.get_mut(&k), &k, &mut pruned),
                None if preserve => {}
                None => {
                    m.remove(&k);
                    pruned.push(k);
                }
            }
        }
    }
    pruned
}

fn prune_at(schema: &Value, v: Option<&mut Value>, path: &str, pruned: &mut Vec<String>) {
    let Some(v) = v else { return };
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&json!(true));
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child_path = field_path(path, &k);
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(&k)) {
                    prune_at(sub, m.get_mut(&k), &child_path, pruned);
                } else if let Some(sub) = extra.filter(|e| e.is_object()) {
                    prune_at(sub, m.get_mut(&k), &child_path, pruned);
                } else if preserve || extra == Some(&json!(true)) {
                    continue;
                } else {
                    m.remove(&k);
                    pruned.push(child_path);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(item_schema, Some(item), &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- printer columns

/// Evaluate the JSONPath subset CRD printer columns use: `.a.b`, `.a[0]`, `.a[*].b` and
/// `.a[?(@.type=="Ready")].status`. Returns every match.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(key)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            let sel = &r[..end];
            rest = &r[end + 1..];
            let items = cur.iter().filter_map(|v| v.as_array());
            cur = if sel == "*" {
                items.flatten().collect()
            } else if let Ok(i) = sel.parse::<usize>() {
                items.filter_map(|a| a.get(i)).collect()
            } else if let Some(f) = sel.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((key, want)) = f.split_once("==") else {
                    break;
                };
                let want = want.trim().trim_matches(['"', '\'']);
                items
                    .flatten()
                    .filter(|item| {
                        jsonpath(item, &format!(".{}", key.trim()))
                            .first()
                            .is_some_and(|v| match v {
                                Value::String(s) => s == want,
                                other => other.to_string() == want,
                            })
                    })
                    .collect()
            } else {
                Vec::new()
            };
        } else {
            break;
        }
    }
    cur
}

/// The Table column definitions of a custom resource version: NAME, its printer columns, and
/// AGE when it declares none (as upstream).
pub fn columns_json(info: &CustomInfo) -> Value {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    if info.printer_columns.is_empty() {
        cols.push(json!({"name": "Age", "type": "date", "format": "",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
            "priority": 0}));
    }
    for c in &info.printer_columns {
        cols.push(json!({
            "name": c.get("name").cloned().unwrap_or(json!("")),
            "type": c.get("type").cloned().unwrap_or(json!("string")),
            "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    Value::Array(cols)
}

/// The Table cells of one custom object.
pub fn cells(info: &CustomInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(json!(""));
    let mut out = vec![name];
    if info.printer_columns.is_empty() {
        let ts = obj
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str);
        out.push(json!(crate::table::age(ts, now)));
    }
    for c in &info.printer_columns {
        let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
        let found = jsonpath(obj, path);
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
        let cell = match (found.as_slice(), ty) {
            ([], _) => Value::Null,
            ([v], "date") => json!(crate::table::age(v.as_str(), now)),
            ([v], "integer" | "number" | "boolean") => (*v).clone(),
            ([Value::String(s)], _) => json!(s),
            ([v], _) => json!(v.to_string()),
            (many, _) => json!(many
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")),
        };
        out.push(cell);
    }
    out
}

/// The value at a scale path (`.spec.replicas`) of an object.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    jsonpath(obj, path).into_iter().next()
}

/// Set the value at a plain dotted path (`.spec.replicas`), creating objects on the way.
pub fn set_path(obj: &mut Value, path: &str, value: Value) {
    let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let m = cur.as_object_mut().expect("made an object above");
        if i + 1 == keys.len() {
            m.insert((*k).to_string(), value);
            return;
        }
        cur = m.entry((*k).to_string()).or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
          "metadata": {"name": "widgets.example.com"},
          "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
              {"name": "v1beta1", "served": true, "storage": false,
               "schema": {"openAPIV3Schema": {"type": "object"}}},
              {"name": "v1", "served": true, "storage": true,
               "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                  "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
               "additionalPrinterColumns": [
                  {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                  {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                  {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}],
               "schema": {"openAPIV3Schema": schema()}}]}})
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "string", "enum": ["small", "medium"], "default": "small"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                "conditions": {"type": "array", "items": {"type": "object",
                    "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}}})
    }

    #[test]
    fn crd_checks_and_served_resources() {
        assert!(
            validate_crd(&crd()).is_empty(),
            "{:?}",
            validate_crd(&crd())
        );
        let mut bad = crd();
        bad["metadata"]["name"] = json!("widgets");
        bad["spec"]["versions"][0]["storage"] = json!(true);
        let errs = validate_crd(&bad);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "spec.versions"]);

        let rs = resources(&crd());
        let versions: Vec<&str> = rs.iter().map(|r| &*r.version).collect();
        assert_eq!(versions, ["v1", "v1beta1"], "GA first");
        let v1 = &rs[0];
        assert_eq!(
            v1.key(Some("ns"), "w"),
            "/registry/example.com/widgets/ns/w"
        );
        assert_eq!(&*v1.short_names[0], "wd");
        assert!(v1.subresource("status").is_some() && v1.subresource("scale").is_some());
        assert!(rs[1].subresource("status").is_none());
        assert_eq!(v1.custom.as_ref().unwrap().storage_version, "v1");
    }

    #[test]
    fn version_priority_orders_like_upstream() {
        let mut v = vec![
            "v1alpha1", "v2beta1", "v1", "foo", "v1beta2", "v2", "v1beta1",
        ];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(
            v,
            ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn validation_messages_follow_upstream() {
        let obj = json!({"spec": {"size": "huge", "replicas": -1, "name": "ABCDEFGHIJ",
            "port": true, "tags": [], "labels": {"a": 1}}});
        let errs = validate(&schema(), &obj);
        let shown: Vec<String> = errs.iter().map(FieldError::to_string).collect();
        assert_eq!(
            shown,
            [
                "spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: \"integer\"",
                "spec.name: Too long: may not be more than 8 bytes",
                "spec.name: Invalid value: \"ABCDEFGHIJ\": spec.name in body should match '^[a-z]+$'",
                "spec.port: Invalid value: true: spec.port in body must be of type integer,string: \"boolean\"",
                "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
                "spec.size: Unsupported value: \"huge\": supported values: \"small\", \"medium\"",
                "spec.tags: Invalid value: []: spec.tags in body should have at least 1 items",
            ]
        );
        let errs = validate(&schema(), &json!({"spec": {}}));
        assert_eq!(errs[0].to_string(), "spec.size: Required value");
        assert!(validate(
            &schema(),
            &json!({"spec": {"size": "small", "port": "http"}})
        )
        .is_empty());
    }

    #[test]
    fn defaults_and_pruning() {
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "unknownMeta": 1},
            "spec": {"bogus": 1, "labels": {"x": "y"}, "extra": {"anything": {"goes": true}}},
            "junk": true});
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(pruned, ["junk", "spec.bogus"]);
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"]["size"], "small");
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["extra"]["anything"]["goes"], true);
        assert_eq!(
            obj["metadata"]["unknownMeta"], 1,
            "metadata is not the schema's"
        );
    }

    #[test]
    fn printer_columns_and_jsonpath() {
        let rs = resources(&crd());
        let info = rs[0].custom.as_ref().unwrap();
        let cols = columns_json(info);
        let names: Vec<&str> = cols
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Size", "Replicas", "Ready"]);
        let obj = json!({"metadata": {"name": "w"}, "spec": {"size": "small", "replicas": 2},
            "status": {"conditions": [{"type": "Synced", "status": "False"},
                                      {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            cells(info, &obj, Utc::now()),
            vec![json!("w"), json!("small"), json!(2), json!("True")]
        );
        assert_eq!(jsonpath(&obj, ".status.conditions[*].type").len(), 2);
        assert_eq!(jsonpath(&obj, ".status.conditions[1].type")[0], "Ready");
        let mut o = json!({});
        set_path(&mut o, ".spec.replicas", json!(3));
        assert_eq!(get_path(&o, ".spec.replicas"), Some(&json!(3)));
    }
}
