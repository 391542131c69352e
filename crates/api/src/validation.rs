//! Validation of objects before they are stored, with upstream's field paths and messages
//! (`pkg/apis/*/validation` and `apimachinery/pkg/util/validation`).
//!
//! The string-format checks (`is_*`) return upstream's list of problems, empty when the value
//! is fine; the object validators return [`FieldError`]s that become a 422 `Invalid` status.

// ---------------------------------------------------------------------------------------------
// String formats (apimachinery/pkg/util/validation)
// ---------------------------------------------------------------------------------------------

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream's `RegexError`: the message, examples and the regular expression used.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push('\'');
        s.push_str(e);
        s.push_str("', ");
    }
    s.push_str("regex used for validation is '");
    s.push_str(fmt);
    s.push_str("')");
    s
}

/// Upstream's `MaxLenError`.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Upstream's `InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?` exactly.
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// Matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` exactly.
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// A DNS (RFC 1123) label: `my-name`.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// A DNS (RFC 1123) subdomain: `example.com`.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// A DNS (RFC 1035) label: starts with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-');
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// A qualified name (label keys, annotation keys, finalizers): `[prefix/]name`.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label value: empty, or a qualified-name part of at most 63 characters.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// A ConfigMap or Secret key.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if !ok {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match value {
        "." => errs.push("must not be '.'".to_string()),
        ".." => errs.push("must not be '..'".to_string()),
        v if v.starts_with("..") => errs.push("must not start with '..'".to_string()),
        _ => {}
    }
    errs
}

/// A named port (`http`): IANA_SVC_NAME.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// A port number 1-65535.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// A name usable as one URL path segment (RBAC objects and a few others).
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// An environment variable name.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_');
    let mut errs = Vec::new();
    if !ok {
        errs.push(regex_error(
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
            "[-._a-zA-Z][-._a-zA-Z0-9]*",
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    match value {
        "." => errs.push("must not be '.'".to_string()),
        ".." => errs.push("must not be '..'".to_string()),
        v if v.starts_with("..") => errs.push("must not start with '..'".to_string()),
        _ => {}
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Object validation
// ---------------------------------------------------------------------------------------------

use serde_json::{json, Map, Value};

use crate::quantity::Quantity;
use crate::selector::from_label_selector;
use crate::status::{FieldError, FieldErrorType};

/// Upstream's `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";
const IS_NEGATIVE: &str = "must be greater than or equal to 0";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Validates an object about to be created (after defaulting). Unknown resources (custom
/// resources) get the metadata checks only.
pub fn validate_create(group: &str, plural: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(group, plural, obj);
    errs.extend(validate_kind(group, plural, obj));
    errs
}

/// Validates an update (after defaulting): the create rules on the new object plus what may
/// not change.
pub fn validate_update(group: &str, plural: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_create(group, plural, new);
    errs.extend(validate_object_meta_update(new, old));
    let p = |v: &'_ Value, ptr: &str| v.pointer(ptr).cloned().unwrap_or(Value::Null);
    match (group, plural) {
        ("", "pods") => errs.extend(validate_pod_update(new, old)),
        ("apps", "deployments" | "replicasets" | "daemonsets")
            if p(new, "/spec/selector") != p(old, "/spec/selector") =>
        {
            errs.push(raw_invalid(
                "spec.selector",
                &go_label_selector(new.pointer("/spec/selector")),
                FIELD_IMMUTABLE,
            ));
        }
        ("apps", "statefulsets") => errs.extend(validate_statefulset_update(new, old)),
        ("batch", "jobs") => {
            for (ptr, path) in [
                ("/spec/selector", "spec.selector"),
                ("/spec/completionMode", "spec.completionMode"),
            ] {
                if !p(old, ptr).is_null() && p(new, ptr) != p(old, ptr) {
                    errs.push(FieldError::invalid(path, p(new, ptr), FIELD_IMMUTABLE));
                }
            }
            // Upstream lets suspended jobs change scheduling directives; skiff keeps the
            // template fully immutable except for its labels and annotations.
            let strip = |v: &Value| {
                let mut t = p(v, "/spec/template");
                if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("labels");
                    m.remove("annotations");
                }
                t
            };
            if strip(new) != strip(old) {
                errs.push(FieldError::invalid(
                    "spec.template",
                    p(new, "/spec/template"),
                    FIELD_IMMUTABLE,
                ));
            }
        }
        ("", "services") => errs.extend(validate_service_update(new, old)),
        ("", "configmaps") | ("", "secrets") => {
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                    errs.push(FieldError::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
                for key in ["data", "binaryData", "stringData"] {
                    if key != "stringData"
                        && p(new, &format!("/{key}")) != p(old, &format!("/{key}"))
                    {
                        errs.push(FieldError::forbidden(
                            key,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
            if plural == "secrets" {
                let (nt, ot) = (str_of(new, "/type"), str_of(old, "/type"));
                if nt != ot {
                    errs.push(FieldError::invalid("type", json!(nt), FIELD_IMMUTABLE));
                }
            }
        }
        _ => {}
    }
    errs
}

fn validate_kind(group: &str, plural: &str, obj: &Value) -> Vec<FieldError> {
    match (group, plural) {
        ("", "pods") => validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec", true),
        ("", "podtemplates") => validate_pod_template(obj.get("template"), "template"),
        ("", "replicationcontrollers") => validate_replication_controller(obj),
        ("apps", "deployments") => validate_deployment(obj),
        ("apps", "replicasets") => validate_replica_set(obj),
        ("apps", "statefulsets") => validate_statefulset(obj),
        ("apps", "daemonsets") => validate_daemonset(obj),
        ("batch", "jobs") => validate_job_spec(obj.get("spec"), "spec", true),
        ("batch", "cronjobs") => validate_cronjob(obj),
        ("", "services") => validate_service(obj),
        ("", "configmaps") => validate_config_map(obj),
        ("", "secrets") => validate_secret(obj),
        _ => Vec::new(),
    }
}

// --- helpers ---------------------------------------------------------------------------------

fn str_of<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn int_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn obj_of(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

/// An `Invalid` error whose value is shown exactly as `rendered` (Go's `%#v` or `String()`
/// output that JSON rendering cannot reproduce, such as `map[string]string{"app":"x"}`).
pub fn raw_invalid(field: impl Into<String>, rendered: &str, detail: &str) -> FieldError {
    FieldError {
        kind: FieldErrorType::Invalid,
        field: field.into(),
        value: None,
        detail: format!("{rendered}: {detail}"),
    }
}

fn not_found(field: impl Into<String>, value: Value) -> FieldError {
    FieldError {
        kind: FieldErrorType::NotFound,
        field: field.into(),
        value: Some(value),
        detail: String::new(),
    }
}

fn invalid_each(field: &str, value: &str, msgs: Vec<String>) -> Vec<FieldError> {
    msgs.into_iter()
        .map(|m| FieldError::invalid(field, json!(value), m))
        .collect()
}

fn nonnegative(errs: &mut Vec<FieldError>, v: Option<&Value>, path: &str) {
    if let Some(n) = int_of(v) {
        if n < 0 {
            errs.push(FieldError::invalid(path, json!(n), IS_NEGATIVE));
        }
    }
}

/// Go's `%#v` of a `map[string]string`.
fn go_string_map(v: Option<&Value>) -> String {
    match obj_of(v) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{k:?}:{:?}", m[*k].as_str().unwrap_or_default()))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// Go's `%#v` of a `v1.LabelSelector`, as upstream prints it in immutable-selector errors.
fn go_label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| v.is_object()) else {
        return "null".into();
    };
    let ml = match sel.get("matchLabels") {
        Some(m) if m.is_object() => go_string_map(Some(m)),
        _ => "map[string]string(nil)".into(),
    };
    let me = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(exprs) => {
            let inner: Vec<String> = exprs
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => format!(
                            "[]string{{{}}}",
                            vs.iter()
                                .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}",
                        str_of(e, "/key"),
                        str_of(e, "/operator")
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", inner.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}")
}

/// Go's `String()` of an IntOrString: `25%` or `1`.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// --- metadata --------------------------------------------------------------------------------

/// How a resource's object names are checked.
fn name_checker(group: &str, plural: &str) -> fn(&str) -> Vec<String> {
    match (group, plural) {
        ("", "namespaces") => is_dns1123_label,
        ("", "services") => is_dns1035_label,
        ("rbac.authorization.k8s.io", _)
        | ("autoscaling", "horizontalpodautoscalers")
        | ("", "persistentvolumes") => is_valid_path_segment_name,
        _ => is_dns1123_subdomain,
    }
}

fn scope_of(group: &str, plural: &str) -> Option<crate::resources::Scope> {
    crate::resources::builtin()
        .into_iter()
        .find(|r| r.group == group && r.plural == plural)
        .map(|r| r.scope)
}

/// Labels (`ValidateLabels`): keys are qualified names, values label values.
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in obj_of(labels).into_iter().flatten() {
        errs.extend(invalid_each(path, k, is_qualified_name(k)));
        let v = v.as_str().unwrap_or_default();
        errs.extend(invalid_each(path, v, is_valid_label_value(v)));
    }
    errs
}

/// Annotations (`ValidateAnnotations`): qualified-name keys and 256 KiB in total.
pub fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in obj_of(annotations).into_iter().flatten() {
        errs.extend(invalid_each(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_object_meta(group: &str, plural: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let name = str_of(meta, "/name");
    let generate_name = str_of(meta, "/generateName");
    let check = name_checker(group, plural);
    if !generate_name.is_empty() {
        // A prefix may end in '-' (upstream's maskTrailingDash).
        let masked = match generate_name.strip_suffix('-') {
            Some(p) if p.len() > 1 => format!("{p}a"),
            _ => generate_name.to_string(),
        };
        errs.extend(invalid_each(
            "metadata.generateName",
            generate_name,
            check(&masked),
        ));
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        errs.extend(invalid_each("metadata.name", name, check(name)));
    }
    let ns = str_of(meta, "/namespace");
    match scope_of(group, plural) {
        Some(crate::resources::Scope::Namespaced) => {
            if ns.is_empty() {
                errs.push(FieldError::required("metadata.namespace", ""));
            } else {
                errs.extend(invalid_each("metadata.namespace", ns, is_dns1123_label(ns)));
            }
        }
        Some(crate::resources::Scope::Cluster) if !ns.is_empty() => {
            errs.push(FieldError::forbidden(
                "metadata.namespace",
                "not allowed on this type",
            ));
        }
        _ => {}
    }
    nonnegative(&mut errs, meta.get("generation"), "metadata.generation");
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        "metadata.annotations",
    ));
    for (i, f) in arr(meta.get("finalizers")).iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        errs.extend(invalid_each(
            &format!("metadata.finalizers[{i}]"),
            f,
            is_qualified_name(f),
        ));
    }
    errs
}

fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (ptr, path) in [
        ("/metadata/name", "metadata.name"),
        ("/metadata/namespace", "metadata.namespace"),
        ("/metadata/uid", "metadata.uid"),
        ("/metadata/creationTimestamp", "metadata.creationTimestamp"),
    ] {
        let (n, o) = (str_of(new, ptr), str_of(old, ptr));
        if !o.is_empty() && n != o {
            errs.push(FieldError::invalid(path, json!(n), FIELD_IMMUTABLE));
        }
    }
    errs
}

// --- label selectors -------------------------------------------------------------------------

/// `ValidateLabelSelector` for a `metav1.LabelSelector`.
fn validate_label_selector(sel: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(validate_labels(
        sel.get("matchLabels"),
        &format!("{path}.matchLabels"),
    ));
    for (i, e) in arr(sel.get("matchExpressions")).iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let op = str_of(e, "/operator");
        let has_values = !arr(e.get("values")).is_empty();
        match op {
            "In" | "NotIn" if !has_values => errs.push(FieldError::required(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if has_values => errs.push(FieldError::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                json!(op),
                "not a valid selector operator",
            )),
        }
        let key = str_of(e, "/key");
        errs.extend(invalid_each(
            &format!("{p}.key"),
            key,
            is_qualified_name(key),
        ));
    }
    errs
}

// --- pods ------------------------------------------------------------------------------------

fn validate_pod_template(t: Option<&Value>, path: &str) -> Vec<FieldError> {
    let Some(t) = t.filter(|t| t.is_object()) else {
        return vec![FieldError::required(path, "")];
    };
    let mut errs = validate_labels(
        t.pointer("/metadata/labels"),
        &format!("{path}.metadata.labels"),
    );
    errs.extend(validate_annotations(
        t.pointer("/metadata/annotations"),
        &format!("{path}.metadata.annotations"),
    ));
    errs.extend(validate_pod_spec(
        t.get("spec").unwrap_or(&Value::Null),
        &format!("{path}.spec"),
        false,
    ));
    errs
}

use crate::defaults::VOLUME_SOURCES as VOLUME_TYPES;

/// `ValidatePodSpec` (the parts users hit). `is_pod` adds the checks upstream only makes on
/// pods, not on templates (image required).
pub fn validate_pod_spec(spec: &Value, path: &str, is_pod: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    // Volumes.
    let mut volume_names = Vec::new();
    for (i, v) in arr(spec.get("volumes")).iter().enumerate() {
        let p = format!("{path}.volumes[{i}]");
        let name = str_of(v, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            errs.extend(invalid_each(
                &format!("{p}.name"),
                name,
                is_dns1123_label(name),
            ));
            if volume_names.contains(&name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
            }
            volume_names.push(name);
        }
        let types: Vec<&str> = VOLUME_TYPES
            .iter()
            .copied()
            .filter(|t| v.get(*t).is_some_and(|s| !s.is_null()))
            .collect();
        match types.as_slice() {
            [] => errs.push(FieldError::required(
                p.clone(),
                "must specify a volume type",
            )),
            [_] => {}
            [_, rest @ ..] => {
                for t in rest {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{t}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if let Some(pvc) = v.get("persistentVolumeClaim").filter(|x| x.is_object()) {
            if str_of(pvc, "/claimName").is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.persistentVolumeClaim.claimName"),
                    "",
                ));
            }
        }
        if let Some(hp) = v.get("hostPath").filter(|x| x.is_object()) {
            if str_of(hp, "/path").is_empty() {
                errs.push(FieldError::required(format!("{p}.hostPath.path"), ""));
            }
        }
        if let Some(s) = v.get("secret").filter(|x| x.is_object()) {
            let n = str_of(s, "/secretName");
            if !n.is_empty() {
                errs.extend(invalid_each(
                    &format!("{p}.secret.secretName"),
                    n,
                    is_dns1123_subdomain(n),
                ));
            }
        }
        if let Some(c) = v.get("configMap").filter(|x| x.is_object()) {
            let n = str_of(c, "/name");
            if !n.is_empty() {
                errs.extend(invalid_each(
                    &format!("{p}.configMap.name"),
                    n,
                    is_dns1123_subdomain(n),
                ));
            }
        }
    }

    // Containers.
    let containers = arr(spec.get("containers"));
    let mut names: Vec<&str> = Vec::new();
    for (key, list) in [
        ("initContainers", arr(spec.get("initContainers"))),
        ("containers", containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = format!("{path}.{key}[{i}]");
            errs.extend(validate_container(
                c,
                &p,
                &volume_names,
                is_pod,
                key == "initContainers",
            ));
            let name = str_of(c, "/name");
            if !name.is_empty() {
                if names.contains(&name) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
                }
                names.push(name);
            }
        }
    }
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }

    match spec.get("restartPolicy").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(format!("{path}.restartPolicy"), "")),
        Some("Always" | "OnFailure" | "Never") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            json!(other),
            &["Always", "Never", "OnFailure"],
        )),
    }
    match spec.get("dnsPolicy").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(format!("{path}.dnsPolicy"), "")),
        Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            json!(other),
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    if let Some(ads) = int_of(spec.get("activeDeadlineSeconds")) {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                json!(ads),
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
    ));
    for (ptr, field) in [
        ("/serviceAccountName", "serviceAccountName"),
        ("/nodeName", "nodeName"),
    ] {
        let v = str_of(spec, ptr);
        if !v.is_empty() {
            errs.extend(invalid_each(
                &format!("{path}.{field}"),
                v,
                is_dns1123_subdomain(v),
            ));
        }
    }
    for (ptr, field) in [("/hostname", "hostname"), ("/subdomain", "subdomain")] {
        let v = str_of(spec, ptr);
        if !v.is_empty() {
            errs.extend(invalid_each(
                &format!("{path}.{field}"),
                v,
                is_dns1123_label(v),
            ));
        }
    }
    errs
}

fn validate_container(
    c: &Value,
    p: &str,
    volumes: &[&str],
    is_pod: bool,
    is_init: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_of(c, "/name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{p}.name"), ""));
    } else {
        errs.extend(invalid_each(
            &format!("{p}.name"),
            name,
            is_dns1123_label(name),
        ));
    }
    let image = str_of(c, "/image");
    if is_pod {
        if image.is_empty() {
            errs.push(FieldError::required(format!("{p}.image"), ""));
        } else if image.trim() != image {
            errs.push(FieldError::invalid(
                format!("{p}.image"),
                json!(image),
                "must not have leading or trailing whitespace",
            ));
        }
    }
    match c.get("imagePullPolicy").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(format!("{p}.imagePullPolicy"), "")),
        Some("Always" | "IfNotPresent" | "Never") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{p}.imagePullPolicy"),
            json!(other),
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match c.get("terminationMessagePolicy").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(
            format!("{p}.terminationMessagePolicy"),
            "",
        )),
        Some("File" | "FallbackToLogsOnError") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{p}.terminationMessagePolicy"),
            json!(other),
            &["FallbackToLogsOnError", "File"],
        )),
    }
    if is_init {
        if let Some(rp) = c.get("restartPolicy").and_then(Value::as_str) {
            if rp != "Always" {
                errs.push(FieldError::not_supported(
                    format!("{p}.restartPolicy"),
                    json!(rp),
                    &["Always"],
                ));
            }
        }
    }
    // Ports.
    let mut port_names: Vec<&str> = Vec::new();
    for (i, port) in arr(c.get("ports")).iter().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        let pname = str_of(port, "/name");
        if !pname.is_empty() {
            errs.extend(invalid_each(
                &format!("{pp}.name"),
                pname,
                is_valid_port_name(pname),
            ));
            if port_names.contains(&pname) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), json!(pname)));
            }
            port_names.push(pname);
        }
        match int_of(port.get("containerPort")) {
            None | Some(0) => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            Some(n) => {
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid(
                        format!("{pp}.containerPort"),
                        json!(n),
                        m,
                    ));
                }
            }
        }
        if let Some(hp) = int_of(port.get("hostPort")).filter(|&h| h != 0) {
            for m in is_valid_port_num(hp) {
                errs.push(FieldError::invalid(format!("{pp}.hostPort"), json!(hp), m));
            }
        }
        errs.extend(validate_protocol(
            port.get("protocol"),
            &format!("{pp}.protocol"),
        ));
    }
    // Environment.
    for (i, e) in arr(c.get("env")).iter().enumerate() {
        let ename = str_of(e, "/name");
        let ep = format!("{p}.env[{i}].name");
        if ename.is_empty() {
            errs.push(FieldError::required(ep, ""));
        } else if ename
            .bytes()
            .any(|b| !(0x20..0x7f).contains(&b) || b == b'=')
        {
            errs.push(FieldError::invalid(
                ep,
                json!(ename),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    // Volume mounts.
    let mut mount_paths: Vec<&str> = Vec::new();
    for (i, m) in arr(c.get("volumeMounts")).iter().enumerate() {
        let mp = format!("{p}.volumeMounts[{i}]");
        let vname = str_of(m, "/name");
        if vname.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        } else if !volumes.contains(&vname) {
            errs.push(not_found(format!("{mp}.name"), json!(vname)));
        }
        let path = str_of(m, "/mountPath");
        if path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        } else {
            if mount_paths.contains(&path) {
                errs.push(FieldError::invalid(
                    format!("{mp}.mountPath"),
                    json!(path),
                    "must be unique",
                ));
            }
            mount_paths.push(path);
        }
    }
    errs.extend(validate_resources(
        c.get("resources"),
        &format!("{p}.resources"),
    ));
    errs
}

fn validate_protocol(v: Option<&Value>, path: &str) -> Vec<FieldError> {
    match v.and_then(Value::as_str) {
        None | Some("") => vec![FieldError::required(path, "")],
        Some("TCP" | "UDP" | "SCTP") => Vec::new(),
        Some(other) => vec![FieldError::not_supported(
            path,
            json!(other),
            &["SCTP", "TCP", "UDP"],
        )],
    }
}

/// Requests and limits: valid non-negative quantities, requests no more than limits.
pub fn validate_resources(res: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let parse_all = |key: &str, errs: &mut Vec<FieldError>| {
        let mut out = Vec::new();
        for (name, v) in obj_of(res.and_then(|r| r.get(key))).into_iter().flatten() {
            let p = format!("{path}.{key}[{name}]");
            match Quantity::from_json(v) {
                Ok(q) if q.is_negative() => {
                    errs.push(FieldError::invalid(p, json!(int_or_string(v)), IS_NEGATIVE))
                }
                Ok(q) => out.push((name.clone(), q, int_or_string(v))),
                Err(e) => errs.push(FieldError::invalid(p, json!(int_or_string(v)), e)),
            }
        }
        out
    };
    let limits = parse_all("limits", &mut errs);
    let requests = parse_all("requests", &mut errs);
    for (name, q, raw) in &requests {
        if let Some((_, lq, lraw)) = limits.iter().find(|(n, _, _)| n == name) {
            if q > lq {
                errs.push(FieldError::invalid(
                    format!("{path}.requests[{name}]"),
                    json!(raw),
                    format!("must be less than or equal to {name} limit of {lraw}"),
                ));
            }
        }
    }
    errs
}

fn validate_pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let (Some(ns), Some(os)) = (new.get("spec"), old.get("spec")) else {
        return Vec::new();
    };
    // Take the updatable fields from the new spec into a copy of the old one; anything else
    // that differs is forbidden.
    let mut munged = os.clone();
    for key in ["containers", "initContainers"] {
        let (Some(nc), Some(mc)) = (
            ns.get(key).and_then(Value::as_array),
            munged.get_mut(key).and_then(Value::as_array_mut),
        ) else {
            continue;
        };
        if nc.len() == mc.len() {
            for (m, n) in mc.iter_mut().zip(nc) {
                if let Some(img) = n.get("image") {
                    m["image"] = img.clone();
                }
            }
        }
    }
    let mut errs = Vec::new();
    match (
        ns.get("activeDeadlineSeconds"),
        os.get("activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !n.is_null() => munged["activeDeadlineSeconds"] = n.clone(),
        (None | Some(Value::Null), Some(o)) if !o.is_null() => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    // Tolerations may only be added to.
    let old_tol = arr(os.get("tolerations"));
    let new_tol = arr(ns.get("tolerations"));
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        if let Some(t) = ns.get("tolerations") {
            munged["tolerations"] = t.clone();
        }
    }
    if int_of(os.get("terminationGracePeriodSeconds")).is_some_and(|g| g < 0)
        && int_of(ns.get("terminationGracePeriodSeconds")) == Some(1)
    {
        munged["terminationGracePeriodSeconds"] = json!(1);
    }
    if &munged != ns {
        let changed: Vec<String> = obj_of(Some(ns))
            .into_iter()
            .flatten()
            .filter(|(k, v)| munged.get(k.as_str()) != Some(*v))
            .map(|(k, _)| k.clone())
            .chain(
                obj_of(Some(&munged))
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| ns.get(k.as_str()).is_none())
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n  changed: {}",
                changed.join(", ")
            ),
        ));
    }
    errs
}

// --- workloads -------------------------------------------------------------------------------

/// Selector present and valid, non-empty, and matching the template's labels; template valid
/// with `restartPolicy: Always` (`ValidatePodTemplateSpecForReplicaSet`).
fn validate_selector_and_template(obj: &Value, kind: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sel = obj.pointer("/spec/selector").filter(|s| !s.is_null());
    let template = obj.pointer("/spec/template");
    match sel {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            let empty = obj_of(sel.get("matchLabels")).is_none_or(Map::is_empty)
                && arr(sel.get("matchExpressions")).is_empty();
            if empty {
                errs.push(raw_invalid(
                    "spec.selector",
                    &go_label_selector(Some(sel)),
                    &format!("empty selector is invalid for {kind}"),
                ));
            }
            match from_label_selector(sel) {
                Err(_) => errs.push(raw_invalid(
                    "spec.selector",
                    &go_label_selector(Some(sel)),
                    "invalid label selector",
                )),
                Ok(s) if !s.is_empty() => {
                    let labels = template.and_then(|t| t.pointer("/metadata/labels"));
                    if !s.matches_object(template.unwrap_or(&Value::Null)) {
                        errs.push(raw_invalid(
                            "spec.template.metadata.labels",
                            &go_string_map(labels),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                Ok(_) => {}
            }
        }
    }
    // A StatefulSet's containers may mount its volumeClaimTemplates: its controller adds them
    // to each pod as claims, so validate the template as the pod will be.
    let with_claims = (kind == "StatefulSet")
        .then(|| statefulset_template_with_claims(obj))
        .flatten();
    errs.extend(validate_pod_template(
        with_claims.as_ref().or(template),
        "spec.template",
    ));
    if let Some(t) = template.filter(|t| t.is_object()) {
        let rp = str_of(t, "/spec/restartPolicy");
        if rp != "Always" {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                json!(rp),
                &["Always"],
            ));
        }
        if let Some(ads) = t
            .pointer("/spec/activeDeadlineSeconds")
            .filter(|v| !v.is_null())
        {
            errs.push(FieldError::invalid(
                "spec.template.spec.activeDeadlineSeconds",
                ads.clone(),
                format!("activeDeadlineSeconds in {kind} is not Supported"),
            ));
        }
    }
    errs
}

/// `maxUnavailable`/`maxSurge`: a non-negative int or a percentage, not both zero, and
/// `maxUnavailable` at most 100%.
fn validate_rolling_update(ru: &Value, path: &str, surge_allowed: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let value_of = |key: &str, errs: &mut Vec<FieldError>| -> Option<i64> {
        let v = ru.get(key).filter(|v| !v.is_null())?;
        let p = format!("{path}.{key}");
        match v {
            Value::String(s) => {
                let ok = s.len() > 1
                    && s.ends_with('%')
                    && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    errs.push(FieldError::invalid(
                        p,
                        json!(s),
                        regex_error(
                            "a valid percent string must be a numeric string followed by an ending '%'",
                            "[0-9]+%",
                            &["1%", "93%"],
                        ),
                    ));
                    return None;
                }
                let n: i64 = s[..s.len() - 1].parse().ok()?;
                if key == "maxUnavailable" && n > 100 {
                    errs.push(raw_invalid(p, s, "must not be greater than 100%"));
                }
                Some(n)
            }
            other => {
                let n = other.as_i64().unwrap_or(0);
                if n < 0 {
                    errs.push(FieldError::invalid(p, json!(n), IS_NEGATIVE));
                }
                Some(n)
            }
        }
    };
    let unavailable = value_of("maxUnavailable", &mut errs);
    let surge = if surge_allowed {
        value_of("maxSurge", &mut errs)
    } else {
        None
    };
    if unavailable.unwrap_or(0) == 0 && surge.unwrap_or(0) == 0 {
        let rendered = ru
            .get("maxUnavailable")
            .filter(|v| !v.is_null())
            .map(int_or_string)
            .unwrap_or_else(|| "null".into());
        errs.push(raw_invalid(
            format!("{path}.maxUnavailable"),
            &rendered,
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    errs
}

fn validate_deployment(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    nonnegative(&mut errs, spec.get("replicas"), "spec.replicas");
    errs.extend(validate_selector_and_template(obj, "Deployment"));
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    match str_of(strategy, "/type") {
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|r| r.is_object()) {
                errs.extend(validate_rolling_update(
                    ru,
                    "spec.strategy.rollingUpdate",
                    true,
                ));
            }
        }
        "" => errs.push(FieldError::required("spec.strategy.type", "")),
        other => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            json!(other),
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonnegative(
        &mut errs,
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
    );
    nonnegative(
        &mut errs,
        spec.get("minReadySeconds"),
        "spec.minReadySeconds",
    );
    if let Some(pds) = int_of(spec.get("progressDeadlineSeconds")) {
        if pds < 0 {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                json!(pds),
                IS_NEGATIVE,
            ));
        } else if pds <= int_of(spec.get("minReadySeconds")).unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                json!(pds),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

fn validate_replica_set(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    nonnegative(&mut errs, obj.pointer("/spec/replicas"), "spec.replicas");
    nonnegative(
        &mut errs,
        obj.pointer("/spec/minReadySeconds"),
        "spec.minReadySeconds",
    );
    errs.extend(validate_selector_and_template(obj, "ReplicaSet"));
    errs
}

fn validate_replication_controller(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    nonnegative(&mut errs, obj.pointer("/spec/replicas"), "spec.replicas");
    let sel = obj.pointer("/spec/selector");
    if obj_of(sel).is_none_or(Map::is_empty) {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(validate_labels(sel, "spec.selector"));
        let s = crate::selector::LabelSelector::from_set(obj_of(sel).expect("checked"));
        let template = obj.pointer("/spec/template");
        if !s.matches_object(template.unwrap_or(&Value::Null)) {
            errs.push(raw_invalid(
                "spec.template.metadata.labels",
                &go_string_map(template.and_then(|t| t.pointer("/metadata/labels"))),
                "`selector` does not match template `labels`",
            ));
        }
    }
    let template = obj.pointer("/spec/template");
    errs.extend(validate_pod_template(template, "spec.template"));
    if let Some(t) = template.filter(|t| t.is_object()) {
        let rp = str_of(t, "/spec/restartPolicy");
        if rp != "Always" {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                json!(rp),
                &["Always"],
            ));
        }
    }
    errs
}

/// The StatefulSet's template with a claim volume for each volumeClaimTemplate it lacks.
fn statefulset_template_with_claims(obj: &Value) -> Option<Value> {
    let claims = arr(obj.pointer("/spec/volumeClaimTemplates"));
    let mut t = obj.pointer("/spec/template")?.clone();
    if claims.is_empty() || !t.is_object() {
        return None;
    }
    let spec = t.as_object_mut()?.entry("spec").or_insert(json!({}));
    let vols = spec.as_object_mut()?.entry("volumes").or_insert(json!([]));
    let vols = vols.as_array_mut()?;
    for c in claims {
        let name = str_of(c, "/metadata/name").to_string();
        if !vols.iter().any(|v| str_of(v, "/name") == name) {
            vols.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
        }
    }
    Some(t)
}

fn validate_statefulset(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    nonnegative(&mut errs, spec.get("replicas"), "spec.replicas");
    nonnegative(
        &mut errs,
        spec.get("minReadySeconds"),
        "spec.minReadySeconds",
    );
    match str_of(spec, "/podManagementPolicy") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    match str_of(spec, "/updateStrategy/type") {
        "RollingUpdate" => {
            nonnegative(
                &mut errs,
                spec.pointer("/updateStrategy/rollingUpdate/partition"),
                "spec.updateStrategy.rollingUpdate.partition",
            );
        }
        "OnDelete" => {
            if spec
                .pointer("/updateStrategy/rollingUpdate")
                .is_some_and(|r| !r.is_null())
            {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    spec.pointer("/updateStrategy/rollingUpdate")
                        .cloned()
                        .unwrap_or_default(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        other => errs.push(FieldError::invalid(
            "spec.updateStrategy.type",
            json!(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let sn = str_of(spec, "/serviceName");
    if !sn.is_empty() {
        errs.extend(invalid_each("spec.serviceName", sn, is_dns1123_label(sn)));
    }
    errs.extend(validate_selector_and_template(obj, "StatefulSet"));
    errs
}

fn validate_statefulset_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let strip = |v: &Value| {
        let mut s = v.get("spec").cloned().unwrap_or(json!({}));
        if let Some(m) = s.as_object_mut() {
            for k in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(k);
            }
        }
        s
    };
    if strip(new) != strip(old) {
        vec![FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )]
    } else {
        Vec::new()
    }
}

fn validate_daemonset(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = validate_selector_and_template(obj, "DaemonSet");
    nonnegative(
        &mut errs,
        spec.get("minReadySeconds"),
        "spec.minReadySeconds",
    );
    nonnegative(
        &mut errs,
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
    );
    match str_of(spec, "/updateStrategy/type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            if let Some(ru) = spec
                .pointer("/updateStrategy/rollingUpdate")
                .filter(|r| r.is_object())
            {
                errs.extend(validate_rolling_update(
                    ru,
                    "spec.updateStrategy.rollingUpdate",
                    true,
                ));
            }
        }
        "" => errs.push(FieldError::required("spec.updateStrategy.type", "")),
        other => errs.push(FieldError::not_supported(
            "spec.updateStrategy.type",
            json!(other),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errs
}

fn validate_job_spec(spec: Option<&Value>, path: &str, check_selector: bool) -> Vec<FieldError> {
    let spec = spec.unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    for f in ["parallelism", "completions", "backoffLimit"] {
        nonnegative(&mut errs, spec.get(f), &format!("{path}.{f}"));
    }
    if let Some(ads) = int_of(spec.get("activeDeadlineSeconds")) {
        if ads <= 0 {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                json!(ads),
                "must be greater than 0",
            ));
        }
    }
    match str_of(spec, "/completionMode") {
        "" | "NonIndexed" => {}
        "Indexed" => {
            if spec.get("completions").is_none_or(Value::is_null) {
                errs.push(FieldError::required(
                    format!("{path}.completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.completionMode"),
            json!(other),
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(pfp) = spec.get("podFailurePolicy").filter(|p| !p.is_null()) {
        errs.extend(validate_pod_failure_policy(
            spec,
            pfp,
            &format!("{path}.podFailurePolicy"),
        ));
    }
    let template = spec.get("template");
    if check_selector {
        // The job strategy generates the selector unless `manualSelector` is true
        // (`defaults::job_selector_defaults`); a selector present must match.
        match spec.get("selector").filter(|s| !s.is_null()) {
            None if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) => {
                errs.push(FieldError::required(format!("{path}.selector"), ""))
            }
            None => {}
            Some(sel) => {
                errs.extend(validate_label_selector(sel, &format!("{path}.selector")));
                if let Ok(s) = from_label_selector(sel) {
                    if !s.is_empty() && !s.matches_object(template.unwrap_or(&Value::Null)) {
                        errs.push(raw_invalid(
                            format!("{path}.template.metadata.labels"),
                            &go_string_map(template.and_then(|t| t.pointer("/metadata/labels"))),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
        }
    }
    errs.extend(validate_pod_template(template, &format!("{path}.template")));
    if let Some(t) = template.filter(|t| t.is_object()) {
        let rp = str_of(t, "/spec/restartPolicy");
        if rp != "OnFailure" && rp != "Never" {
            errs.push(FieldError::not_supported(
                format!("{path}.template.spec.restartPolicy"),
                json!(rp),
                &["OnFailure", "Never"],
            ));
        } else if rp != "Never" && !spec.get("podFailurePolicy").is_none_or(Value::is_null) {
            errs.push(FieldError::invalid(
                format!("{path}.template.spec.restartPolicy"),
                json!(rp),
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
    }
    errs
}

/// Upstream's validatePodFailurePolicyRule: a known action (`FailIndex` only with
/// `backoffLimitPerIndex`), exactly one of `onExitCodes` and `onPodConditions`, and exit-code
/// requirements with a known operator and at least one value, never 0 for `In`.
fn validate_pod_failure_policy(spec: &Value, pfp: &Value, path: &str) -> Vec<FieldError> {
    const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
    let mut errs = Vec::new();
    let rules = pfp.get("rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        match str_of(rule, "/action") {
            "" => errs.push(FieldError::required(
                format!("{rp}.action"),
                format!("valid values: [{}]", go_quoted(&ACTIONS)),
            )),
            "FailIndex" if spec.get("backoffLimitPerIndex").is_none_or(Value::is_null) => errs
                .push(FieldError::invalid(
                    format!("{rp}.action"),
                    json!("FailIndex"),
                    "requires the backoffLimitPerIndex to be set",
                )),
            a if !ACTIONS.contains(&a) => errs.push(FieldError::not_supported(
                format!("{rp}.action"),
                json!(a),
                &ACTIONS,
            )),
            _ => {}
        }
        let exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let conditions = rule
            .get("onPodConditions")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if let Some(ec) = exit_codes {
            let ep = format!("{rp}.onExitCodes");
            let op = str_of(ec, "/operator");
            match op {
                "" => errs.push(FieldError::required(
                    format!("{ep}.operator"),
                    format!("valid values: [{}]", go_quoted(&["In", "NotIn"])),
                )),
                "In" | "NotIn" => {}
                other => errs.push(FieldError::not_supported(
                    format!("{ep}.operator"),
                    json!(other),
                    &["In", "NotIn"],
                )),
            }
            let values = ec.get("values").and_then(Value::as_array);
            if values.is_none_or(|v| v.is_empty()) {
                errs.push(raw_invalid(
                    format!("{ep}.values"),
                    "[]int32{}",
                    "at least one value is required",
                ));
            }
            for (j, v) in values.into_iter().flatten().enumerate() {
                if op == "In" && v.as_i64() == Some(0) {
                    errs.push(FieldError::invalid(
                        format!("{ep}.values[{j}]"),
                        json!(0),
                        "must not be 0 for the In operator",
                    ));
                }
            }
        }
        if exit_codes.is_some() && conditions {
            errs.push(FieldError {
                kind: FieldErrorType::Invalid,
                field: rp.clone(),
                value: None,
                detail: "specifying both OnExitCodes and OnPodConditions is not supported".into(),
            });
        } else if exit_codes.is_none() && !conditions {
            errs.push(FieldError {
                kind: FieldErrorType::Invalid,
                field: rp,
                value: None,
                detail: "specifying one of OnExitCodes and OnPodConditions is required".into(),
            });
        }
    }
    errs
}

/// Go's `%q` of a string slice, without the brackets: `"a" "b"`.
fn go_quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn validate_cronjob(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_of(obj, "/metadata/name");
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            max_len_error(52),
        ));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let schedule = str_of(spec, "/schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else if schedule.contains("TZ") {
        errs.push(FieldError::invalid(
            "spec.schedule",
            json!(schedule),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if let Err(e) = parse_cron(schedule) {
        errs.push(FieldError::invalid("spec.schedule", json!(schedule), e));
    }
    match str_of(spec, "/concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        other => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            json!(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(&mut errs, spec.get(f), &format!("spec.{f}"));
    }
    errs.extend(validate_job_spec(
        spec.pointer("/jobTemplate/spec"),
        "spec.jobTemplate.spec",
        false,
    ));
    errs
}

/// Parses a standard 5-field cron schedule or a descriptor (`@hourly`, `@every 1h`) as the
/// cron library upstream uses, returning its error text.
pub fn parse_cron(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if let Some(d) = spec.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => {
                let dur = &d["every ".len()..];
                if parse_go_duration(dur) {
                    Ok(())
                } else {
                    Err(format!(
                        "failed to parse duration @every {dur}: time: invalid duration {dur:?}"
                    ))
                }
            }
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u32, u32, &[&str], u32); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names, offset)) in fields.iter().zip(bounds) {
        for expr in field.split(',') {
            parse_cron_range(expr, min, max, names, offset)?;
        }
    }
    Ok(())
}

fn parse_cron_range(
    expr: &str,
    min: u32,
    max: u32,
    names: &[&str],
    offset: u32,
) -> Result<(), String> {
    let parts: Vec<&str> = expr.split('/').collect();
    if parts.len() > 2 {
        return Err(format!("too many slashes: {expr}"));
    }
    let range: Vec<&str> = parts[0].split('-').collect();
    if range.len() > 2 {
        return Err(format!("too many hyphens: {expr}"));
    }
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + offset);
        }
        s.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })
    };
    let (start, end) = if range[0] == "*" || range[0] == "?" {
        (min, max)
    } else {
        let start = value(range[0])?;
        let end = match range.get(1) {
            Some(e) => value(e)?,
            None => start,
        };
        (start, end)
    };
    if parts.len() == 2 {
        let step: u32 = parts[1].parse().map_err(|_| {
            format!(
                "failed to parse int from {}: strconv.Atoi: parsing {:?}: invalid syntax",
                parts[1], parts[1]
            )
        })?;
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

/// Go's `time.ParseDuration` syntax (`1h30m`, `90s`, `1.5h`).
fn parse_go_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    if rest == "0" {
        return true;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(&rest[..u], "ns" | "us" | "µs" | "ms" | "s" | "m" | "h") {
            return false;
        }
        rest = &rest[u..];
    }
    true
}

// --- services --------------------------------------------------------------------------------

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn validate_service(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let ty = str_of(spec, "/type");
    match ty {
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        "" => errs.push(FieldError::required("spec.type", "")),
        other => errs.push(FieldError::not_supported(
            "spec.type",
            json!(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let cluster_ip = str_of(spec, "/clusterIP");
    let headless = cluster_ip == "None";
    let ports = arr(spec.get("ports"));
    if ty == "ExternalName" {
        let en = str_of(spec, "/externalName");
        if en.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            let trimmed = en.strip_suffix('.').unwrap_or(en);
            errs.extend(invalid_each(
                "spec.externalName",
                en,
                is_dns1123_subdomain(trimmed),
            ));
        }
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        let name = str_of(port, "/name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if !name.is_empty() {
            errs.extend(invalid_each(
                &format!("{p}.name"),
                name,
                is_dns1123_label(name),
            ));
            if names.contains(&name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
            }
            names.push(name);
        }
        let num = int_of(port.get("port")).unwrap_or(0);
        for m in is_valid_port_num(num) {
            errs.push(FieldError::invalid(format!("{p}.port"), json!(num), m));
        }
        errs.extend(validate_protocol(
            port.get("protocol"),
            &format!("{p}.protocol"),
        ));
        match port.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid(format!("{p}.targetPort"), json!(n), m));
                }
            }
            Some(Value::String(s)) => {
                errs.extend(invalid_each(
                    &format!("{p}.targetPort"),
                    s,
                    is_valid_port_name(s),
                ));
            }
            _ => {}
        }
        if let Some(np) = int_of(port.get("nodePort")).filter(|&n| n != 0) {
            if ty == "ClusterIP" || ty == "ExternalName" {
                errs.push(FieldError::forbidden(
                    format!("{p}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !(30000..=32767).contains(&np) {
                errs.push(FieldError::invalid(
                    format!("{p}.nodePort"),
                    json!(np),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            }
        }
    }
    match str_of(spec, "/sessionAffinity") {
        "" | "None" | "ClientIP" => {}
        other => errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            json!(other),
            &["ClientIP", "None"],
        )),
    }
    errs.extend(validate_labels(spec.get("selector"), "spec.selector"));
    for (i, ip) in arr(spec.get("clusterIPs")).iter().enumerate() {
        let ip = ip.as_str().unwrap_or_default();
        if ip != "None" && !ip.is_empty() && !is_ip(ip) {
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if !cluster_ip.is_empty() && !headless && !is_ip(cluster_ip) && spec.get("clusterIPs").is_none()
    {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            json!(cluster_ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    for (i, ip) in arr(spec.get("externalIPs")).iter().enumerate() {
        let ip = ip.as_str().unwrap_or_default();
        if !is_ip(ip) {
            errs.push(FieldError::invalid(
                format!("spec.externalIPs[{i}]"),
                json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    for (ptr, path, ok) in [
        (
            "/externalTrafficPolicy",
            "spec.externalTrafficPolicy",
            &["Cluster", "Local"],
        ),
        (
            "/internalTrafficPolicy",
            "spec.internalTrafficPolicy",
            &["Cluster", "Local"],
        ),
    ] {
        let v = str_of(spec, ptr);
        if !v.is_empty() && !ok.contains(&v) {
            errs.push(FieldError::not_supported(path, json!(v), ok));
        }
    }
    errs
}

fn validate_service_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let primary = |v: &Value| {
        let ips = str_of(v, "/spec/clusterIPs/0");
        if ips.is_empty() {
            str_of(v, "/spec/clusterIP").to_string()
        } else {
            ips.to_string()
        }
    };
    let (n, o) = (primary(new), primary(old));
    let changing_external =
        str_of(new, "/spec/type") == "ExternalName" || str_of(old, "/spec/type") == "ExternalName";
    if !o.is_empty() && !n.is_empty() && n != o && !changing_external {
        let ips: Vec<String> = match new.pointer("/spec/clusterIPs").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                .collect(),
            None => vec![format!("{n:?}")],
        };
        return vec![raw_invalid(
            "spec.clusterIPs[0]",
            &format!("[]string{{{}}}", ips.join(", ")),
            "may not change once set",
        )];
    }
    Vec::new()
}

// --- config ----------------------------------------------------------------------------------

fn validate_config_map(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    let data = obj_of(obj.get("data"));
    let binary = obj_of(obj.get("binaryData"));
    for (bag, other, other_name) in [("data", binary, "binaryData"), ("binaryData", data, "data")] {
        for (k, v) in obj_of(obj.get(bag)).into_iter().flatten() {
            let p = format!("{bag}[{k}]");
            errs.extend(invalid_each(&p, k, is_config_map_key(k)));
            if other.is_some_and(|o| o.contains_key(k)) && bag == "data" {
                errs.push(FieldError::invalid(
                    p,
                    json!(k),
                    format!("duplicate of key present in {other_name}"),
                ));
            }
            let len = v.as_str().map_or(0, str::len);
            total += if bag == "binaryData" {
                len * 3 / 4
            } else {
                len
            };
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = obj_of(obj.get("data"));
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        errs.extend(invalid_each(&format!("data[{k}]"), k, is_config_map_key(k)));
        total += v.as_str().map_or(0, |s| s.len() * 3 / 4);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| {
        data.is_some_and(|d| d.contains_key(k))
            || obj_of(obj.get("stringData")).is_some_and(|d| d.contains_key(k))
    };
    match str_of(obj, "/type") {
        "kubernetes.io/service-account-token"
            if str_of(
                obj,
                "/metadata/annotations/kubernetes.io~1service-account.name",
            )
            .is_empty() =>
        {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(FieldError::required("data[.dockercfg]", ""))
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""))
        }
        "kubernetes.io/tls" => {
            for k in ["tls.key", "tls.crt"] {
                if !has(k) {
                    errs.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn subdomain_message_is_upstreams() {
        assert_eq!(
            is_dns1123_subdomain("Foo"),
            vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        assert!(is_dns1123_subdomain("a.b-c.d0").is_empty());
        assert!(!is_dns1123_subdomain("a..b").is_empty());
        assert!(!is_dns1123_subdomain("").is_empty());
        assert_eq!(is_dns1123_subdomain(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn labels_and_names() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert!(!is_dns1123_label("-a").is_empty());
        assert!(is_dns1035_label("abc-123").is_empty());
        assert!(!is_dns1035_label("1abc").is_empty());
        assert!(is_qualified_name("example.com/MyName").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        );
        assert_eq!(is_qualified_name("").len(), 2);
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_x-y").is_empty());
        assert!(!is_valid_label_value("-x").is_empty());
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec![max_len_error(63)]
        );
    }

    #[test]
    fn keys_ports_paths() {
        assert!(is_config_map_key("key.name").is_empty());
        assert_eq!(is_config_map_key("..a"), vec!["must not start with '..'"]);
        assert!(!is_config_map_key("a/b").is_empty());
        assert!(is_valid_port_name("http").is_empty());
        assert!(!is_valid_port_name("80").is_empty());
        assert!(!is_valid_port_name("a--b").is_empty());
        assert!(is_valid_port_num(80).is_empty());
        assert_eq!(
            is_valid_port_num(0),
            vec!["must be between 1 and 65535, inclusive"]
        );
        assert_eq!(is_valid_path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(
            is_valid_path_segment_name("a/b%"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
        assert!(is_env_var_name("MY_ENV.NAME").is_empty());
        assert!(!is_env_var_name("1A").is_empty());
    }
}

#[cfg(test)]
mod object_tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::status::StatusError;

    fn defaulted(group: &str, plural: &str, mut v: Value) -> Value {
        apply_defaults(group, plural, &mut v);
        v
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                  "ports": [{"containerPort": 80}],
                  "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}}]}}}})
    }

    #[test]
    fn defaulted_everyday_objects_are_valid() {
        let cases = [
            ("apps", "deployments", deployment()),
            (
                "",
                "pods",
                json!({"metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"],
                  "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                  "volumes": [{"name": "v", "emptyDir": {}}]}}),
            ),
            (
                "",
                "services",
                json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                  {"name": "https", "port": 443, "targetPort": "https"}]}}),
            ),
            (
                "",
                "services",
                json!({"metadata": {"name": "np", "namespace": "default"},
                "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}),
            ),
            (
                "",
                "services",
                json!({"metadata": {"name": "headless", "namespace": "default"},
                "spec": {"clusterIP": "None", "selector": {"app": "x"}}}),
            ),
            (
                "apps",
                "statefulsets",
                json!({"metadata": {"name": "db", "namespace": "default"},
                "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                  "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}}),
            ),
            (
                "apps",
                "daemonsets",
                json!({"metadata": {"name": "agent", "namespace": "kube-system"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                  "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}}}}),
            ),
            (
                "batch",
                "jobs",
                json!({"metadata": {"name": "pi", "namespace": "default"},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
            ),
            (
                "batch",
                "cronjobs",
                json!({"metadata": {"name": "hello", "namespace": "default"},
                "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                  "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
            ),
            (
                "",
                "configmaps",
                json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a.b-c_d": "x"}}),
            ),
            (
                "",
                "secrets",
                json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"k": "dg=="}}),
            ),
            ("", "namespaces", json!({"metadata": {"name": "dev"}})),
            ("", "nodes", json!({"metadata": {"name": "node-1.example"}})),
            (
                "rbac.authorization.k8s.io",
                "clusterroles",
                json!({"metadata": {"name": "system:aggregate-to-view"}}),
            ),
            (
                "example.com",
                "widgets",
                json!({"metadata": {"name": "w", "namespace": "default"}, "spec": {}}),
            ),
        ];
        for (g, p, obj) in cases {
            let obj = defaulted(g, p, obj);
            assert_eq!(
                msgs(&validate_create(g, p, &obj)),
                Vec::<String>::new(),
                "{g}/{p}"
            );
            assert!(
                validate_update(g, p, &obj, &obj).is_empty(),
                "{g}/{p} update"
            );
        }
    }

    #[test]
    fn metadata_messages() {
        let errs = validate_create(
            "",
            "configmaps",
            &json!({"metadata": {"namespace": "default"}}),
        );
        assert_eq!(
            StatusError::invalid("", "ConfigMap", "", &errs).message,
            r#"ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required"#
        );
        let errs = validate_create(
            "",
            "pods",
            &json!({"metadata": {"name": "Bad_Name", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}],
              "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}),
        );
        assert_eq!(msgs(&errs), vec!["metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]);
        let errs = validate_create(
            "",
            "services",
            &defaulted(
                "",
                "services",
                json!({"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
            ),
        );
        assert!(msgs(&errs)[0].starts_with(
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of"
        ));
        let errs = validate_create("", "namespaces", &json!({"metadata": {"name": "a.b"}}));
        assert_eq!(
            msgs(&errs),
            vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        let errs = validate_create(
            "",
            "configmaps",
            &json!({"metadata": {"generateName": "cfg-", "name": "cfg-x1", "namespace": "default",
            "labels": {"bad key": "v", "ok": "bad value!"}, "annotations": {"a": "x".repeat(262_145)}}}),
        );
        let m = msgs(&errs);
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0]
            .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of"));
        assert!(m[1]
            .starts_with("metadata.labels: Invalid value: \"bad value!\": a valid label must be"));
        assert_eq!(
            m[2],
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        let errs = validate_create("", "configmaps", &json!({"metadata": {"name": "c"}}));
        assert_eq!(msgs(&errs), vec!["metadata.namespace: Required value"]);
        let errs = validate_create(
            "",
            "nodes",
            &json!({"metadata": {"name": "n", "namespace": "x"}}),
        );
        assert_eq!(
            msgs(&errs),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let old = json!({"metadata": {"name": "c", "namespace": "default", "uid": "1"}});
        let new = json!({"metadata": {"name": "c", "namespace": "default", "uid": "2"}});
        assert_eq!(
            msgs(&validate_update("", "configmaps", &new, &old)),
            vec!["metadata.uid: Invalid value: \"2\": field is immutable"]
        );
    }

    #[test]
    fn pod_spec_messages() {
        let pod = |spec: Value| {
            defaulted(
                "",
                "pods",
                json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
            )
        };
        assert_eq!(
            msgs(&validate_create("", "pods", &pod(json!({})))),
            vec!["spec.containers: Required value"]
        );
        assert_eq!(
            msgs(&validate_create(
                "",
                "pods",
                &pod(json!({"containers": [{"name": "c"}]}))
            )),
            vec!["spec.containers[0].image: Required value"]
        );
        let errs = validate_create(
            "",
            "pods",
            &pod(json!({"restartPolicy": "Sometimes", "containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 70000, "protocol": "ICMP"}],
             "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
             "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
            {"name": "c", "image": "i", "imagePullPolicy": "Sometimes"}]})),
        );
        assert_eq!(msgs(&errs), vec![
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[1].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            "spec.containers[1].name: Duplicate value: \"c\"",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
        ]);
        let errs = validate_create(
            "",
            "pods",
            &pod(json!({"containers": [{"name": "c", "image": "i"}],
            "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}, "hostPath": {"path": "/"}}]})),
        );
        assert_eq!(
            msgs(&errs),
            vec![
                "spec.volumes[1].name: Duplicate value: \"v\"",
                "spec.volumes[1].emptyDir: Forbidden: may not specify more than 1 volume type",
            ]
        );
    }

    #[test]
    fn pod_updates() {
        let old = defaulted(
            "",
            "pods",
            json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}),
        );
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["metadata"]["labels"] = json!({"a": "b"});
        assert!(validate_update("", "pods", &new, &old).is_empty());
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
        let errs = validate_update("", "pods", &new, &old);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"));
    }

    #[test]
    fn deployment_messages_match_upstream() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
        let d = defaulted("apps", "deployments", d);
        let errs = validate_create("apps", "deployments", &d);
        assert_eq!(
            StatusError::invalid("apps", "Deployment", "web", &errs).message,
            "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
        );
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let d = defaulted("apps", "deployments", d);
        assert_eq!(msgs(&validate_create("apps", "deployments", &d)), vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ]);
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "Blue"});
        d["spec"]["selector"] = json!(null);
        let d = defaulted("apps", "deployments", d);
        assert_eq!(msgs(&validate_create("apps", "deployments", &d)), vec![
            "spec.selector: Required value",
            "spec.strategy.type: Unsupported value: \"Blue\": supported values: \"Recreate\", \"RollingUpdate\"",
        ]);
        let old = defaulted("apps", "deployments", deployment());
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
        new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web2"});
        assert_eq!(msgs(&validate_update("apps", "deployments", &new, &old)), vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        ]);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(validate_update("apps", "deployments", &scaled, &old).is_empty());
    }

    #[test]
    fn statefulset_job_cronjob_rules() {
        let sts = defaulted(
            "apps",
            "statefulsets",
            json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
              "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "pg"}]}}}}),
        );
        let mut changed = sts.clone();
        changed["spec"]["serviceName"] = json!("other");
        assert!(
            msgs(&validate_update("apps", "statefulsets", &changed, &sts))[0].starts_with(
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
            )
        );
        let job = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        );
        assert_eq!(msgs(&validate_create("batch", "jobs", &job)), vec![
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ]);
        let mut ok = job.clone();
        ok["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        crate::defaults::job_selector_defaults(&mut ok, "uid-1");
        assert!(validate_create("batch", "jobs", &ok).is_empty());
        let mut new = ok.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        assert_eq!(
            validate_update("batch", "jobs", &new, &ok)[0].field,
            "spec.template"
        );
        let cj = |s: &str| {
            defaulted(
                "batch",
                "cronjobs",
                json!({"metadata": {"name": "c", "namespace": "default"},
            "spec": {"schedule": s, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
              "containers": [{"name": "c", "image": "i"}]}}}}}}),
            )
        };
        for good in [
            "@hourly",
            "0 0 * * 0",
            "*/15 9-17 * * MON-FRI",
            "0 0 1,15 * *",
            "@every 1h30m",
            "5 4 * jan ?",
        ] {
            assert!(
                validate_create("batch", "cronjobs", &cj(good)).is_empty(),
                "{good}"
            );
        }
        assert_eq!(msgs(&validate_create("batch", "cronjobs", &cj("* * *"))),
            vec!["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"]);
        assert_eq!(msgs(&validate_create("batch", "cronjobs", &cj("61 * * * *"))),
            vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]);
        assert_eq!(
            msgs(&validate_create("batch", "cronjobs", &cj("@often"))),
            vec!["spec.schedule: Invalid value: \"@often\": unrecognized descriptor: @often"]
        );
        assert_eq!(
            msgs(&validate_create("batch", "cronjobs", &cj(""))),
            vec!["spec.schedule: Required value"]
        );
    }

    #[test]
    fn service_messages() {
        let svc = |spec: Value| {
            defaulted(
                "",
                "services",
                json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec}),
            )
        };
        assert_eq!(
            msgs(&validate_create("", "services", &svc(json!({})))),
            vec!["spec.ports: Required value"]
        );
        assert_eq!(
            msgs(&validate_create(
                "",
                "services",
                &svc(json!({"ports": [{"port": 0}, {"port": 80, "nodePort": 30001}]}))
            )),
            vec![
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].name: Required value",
            "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ]
        );
        assert_eq!(msgs(&validate_create("", "services", &svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]})))), vec![
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ]);
        assert_eq!(msgs(&validate_create("", "services", &svc(json!({"type": "Magic", "ports": [{"port": 80}]})))), vec![
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ]);
        let old = svc(
            json!({"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"], "ports": [{"port": 80}]}),
        );
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.43.0.11");
        new["spec"]["clusterIPs"] = json!(["10.43.0.11"]);
        assert_eq!(
            msgs(&validate_update("", "services", &new, &old)),
            vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.11\"}: may not change once set",
        ]
        );
    }

    #[test]
    fn config_and_secret_messages() {
        let errs = validate_create(
            "",
            "configmaps",
            &json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a/b": "x"}}),
        );
        assert_eq!(msgs(&errs), vec!["data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]);
        let errs = validate_create(
            "",
            "secrets",
            &json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}),
        );
        assert_eq!(msgs(&errs), vec!["data[tls.key]: Required value"]);
        let old = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
        assert_eq!(
            msgs(&validate_update("", "configmaps", &new, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }
}
