//! Server-side field validation on writes (`fieldValidation=Strict|Warn|Ignore`, `Warn` when
//! absent): unknown fields are removed from what is stored, and reported as upstream does —
//! an error under `Strict`, `Warning` headers under `Warn`, nothing under `Ignore`.
//! Duplicate fields of JSON bodies are reported the same way. The schema walking is in
//! `skiff_api::field_validation`.

use http::HeaderValue;
use serde_json::Value;
use skiff_api::field_validation::{
    duplicate_fields, prune_unknown, prune_unknown_in_json_patch, prune_unknown_in_patch,
    schema_for, strict_error, Directive,
};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::{FieldError, StatusError};

use crate::http::Response;
use crate::request::Query;

fn directive(query: &Query) -> Result<Directive, StatusError> {
    Directive::parse(query.get("fieldValidation")).map_err(StatusError::bad_request)
}

fn is_json(media: &str) -> bool {
    media.is_empty() || media.ends_with("json")
}

/// A create or update body (`obj`, decoded from `body`): unknown fields removed; the
/// warnings to send.
pub fn check_object(
    info: &ResourceInfo,
    query: &Query,
    media: &str,
    body: &[u8],
    obj: &mut Value,
) -> Result<Vec<String>, StatusError> {
    let directive = directive(query)?;
    let Some(schema) = schema_for(info) else {
        return Ok(Vec::new());
    };
    let mut findings = prune_unknown(&schema, obj);
    if directive == Directive::Ignore {
        return Ok(Vec::new());
    }
    if is_json(media) {
        findings.extend(duplicate_fields(body));
    }
    if directive == Directive::Strict && !findings.is_empty() {
        return Err(StatusError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {}",
            strict_error(&findings),
            kind = info.kind,
            version = info.version,
        )));
    }
    Ok(findings)
}

/// A patch body: unknown fields removed from `patch`; the warnings to send. Under `Strict`
/// the error shows what upstream shows: the patch as Go prints a map for strategic merge
/// patches, the patched object (rendered by `patched`, called only then) for JSON and merge
/// patches.
pub fn check_patch(
    info: &ResourceInfo,
    query: &Query,
    media: &str,
    body: &[u8],
    patch: &mut Value,
    patched: impl FnOnce(&Value) -> Option<String>,
) -> Result<Vec<String>, StatusError> {
    let directive = directive(query)?;
    let Some(schema) = schema_for(info) else {
        return Ok(Vec::new());
    };
    let original = patch.clone();
    let mut findings = match media {
        "application/json-patch+json" => prune_unknown_in_json_patch(&schema, patch),
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            // Server-side apply types the whole configuration, whatever fieldValidation says.
            let unknown = prune_unknown(&schema, patch);
            if !unknown.is_empty() {
                return Err(apply_typing_error(info, &original, &unknown));
            }
            Vec::new()
        }
        _ => prune_unknown_in_patch(&schema, patch),
    };
    if directive == Directive::Ignore {
        return Ok(Vec::new());
    }
    if is_json(media) && media != "application/json-patch+json" {
        findings.extend(duplicate_fields(body));
    }
    if directive == Directive::Strict && !findings.is_empty() {
        let shown = if media == "application/strategic-merge-patch+json" {
            go_value(&original)
        } else {
            patched(&original).unwrap_or_else(|| original.to_string())
        };
        return Err(StatusError::invalid(
            "",
            "",
            "",
            &[FieldError::invalid(
                "patch",
                Value::String(shown),
                strict_error(&findings),
            )],
        ));
    }
    Ok(findings)
}

/// Server-side apply's refusal of fields its schema does not declare.
fn apply_typing_error(info: &ResourceInfo, obj: &Value, unknown: &[String]) -> StatusError {
    let meta = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let paths: Vec<String> = unknown
        .iter()
        .map(|u| {
            let p = u
                .strip_prefix("unknown field \"")
                .and_then(|p| p.strip_suffix('"'))
                .unwrap_or(u);
            format!(".{p}: field not declared in schema")
        })
        .collect();
    let what = match paths.as_slice() {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    StatusError {
        code: 500,
        reason: "",
        message: format!(
            "failed to create typed patch object ({}/{}; {}/{}, Kind={}): {what}",
            meta("namespace"),
            meta("name"),
            info.group,
            info.version,
            info.kind
        ),
        details: None,
    }
}

/// A JSON value as Go's `fmt` prints the `map[string]interface{}` it decodes to (`%+v`):
/// `map[spec:map[replicas:3]]`, keys sorted, strings bare.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", go_value(&m[k.as_str()])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Add one `Warning: 299 - "..."` header per warning.
pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append("warning", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> ResourceInfo {
        skiff_api::resources::builtin()
            .into_iter()
            .find(|r| r.plural == "deployments")
            .unwrap()
    }

    #[test]
    fn strict_create_is_upstreams_bad_request() {
        let q = Query::parse(Some("fieldValidation=Strict"));
        let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"w"},"spec":{"foo":1}}"#;
        let mut obj: Value = serde_json::from_slice(body).unwrap();
        let e = check_object(&deployments(), &q, "application/json", body, &mut obj).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo""#
        );
    }

    #[test]
    fn warn_and_ignore_drop_the_field() {
        let body = br#"{"metadata":{"name":"w"},"spec":{"foo":1,"replicas":1,"replicas":2}}"#;
        for (q, n) in [
            ("", 2),
            ("fieldValidation=Warn", 2),
            ("fieldValidation=Ignore", 0),
        ] {
            let mut obj: Value = serde_json::from_slice(body).unwrap();
            let w = check_object(
                &deployments(),
                &Query::parse(Some(q)),
                "application/json",
                body,
                &mut obj,
            )
            .unwrap();
            assert_eq!(w.len(), n, "{q}: {w:?}");
            assert_eq!(obj["spec"], json!({"replicas": 2}));
        }
    }

    #[test]
    fn strict_patches_are_invalid_with_the_patch_shown() {
        let q = Query::parse(Some("fieldValidation=Strict"));
        let body = br#"{"spec":{"foo":1,"replicas":3}}"#;
        let mut p: Value = serde_json::from_slice(body).unwrap();
        let e = check_patch(
            &deployments(),
            &q,
            "application/strategic-merge-patch+json",
            body,
            &mut p,
            |_| None,
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            r#" "" is invalid: patch: Invalid value: "map[spec:map[foo:1 replicas:3]]": strict decoding error: unknown field "spec.foo""#
        );
        let mut p: Value = serde_json::from_slice(body).unwrap();
        let e = check_patch(
            &deployments(),
            &q,
            "application/merge-patch+json",
            body,
            &mut p,
            |_| Some(r#"{"spec":{"foo":1}}"#.into()),
        )
        .unwrap_err();
        assert!(
            e.message
                .contains(r#"Invalid value: "{\"spec\":{\"foo\":1}}""#),
            "{}",
            e.message
        );
    }

    #[test]
    fn apply_refuses_undeclared_fields() {
        let q = Query::parse(Some("fieldValidation=Ignore"));
        let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"w","namespace":"default"},"spec":{"foo":1}}"#;
        let mut p: Value = serde_json::from_slice(body).unwrap();
        let e = check_patch(
            &deployments(),
            &q,
            "application/apply-patch+yaml",
            body,
            &mut p,
            |_| None,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "failed to create typed patch object (default/w; apps/v1, Kind=Deployment): .spec.foo: field not declared in schema"
        );
    }
}
