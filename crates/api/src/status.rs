//! Kubernetes `Status` errors with upstream's codes, reasons and message wording, and field
//! errors (`field.Error` upstream) that become the causes of 422 Invalid.

use serde_json::{json, Value};

/// The kind of a field error, as upstream's `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl FieldErrorType {
    /// The `StatusCause.reason` upstream uses.
    pub fn cause_type(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::NotFound => "FieldValueNotFound",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Duplicate => "Duplicate value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::NotFound => "Not found",
        }
    }
}

/// One validation failure at a field path such as `spec.template.metadata.labels`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    /// The offending value, when upstream shows one.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Invalid,
            field: field.into(),
            value: Some(value),
            detail: detail.into(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self {
            kind: FieldErrorType::Duplicate,
            field: field.into(),
            value: Some(value),
            detail: String::new(),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            kind: FieldErrorType::NotSupported,
            field: field.into(),
            value: Some(value),
            detail: format!("supported values: {list}"),
        }
    }

    /// `Unsupported value` with the supported values already rendered (`"a"`, `1`).
    pub fn not_supported_values(
        field: impl Into<String>,
        value: Value,
        supported: &[String],
    ) -> Self {
        Self {
            kind: FieldErrorType::NotSupported,
            field: field.into(),
            value: Some(value),
            detail: format!("supported values: {}", supported.join(", ")),
        }
    }

    /// `Too many: <n>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Self {
            kind: FieldErrorType::TooMany,
            field: field.into(),
            value: None,
            detail: format!("{actual}: must have at most {max} items"),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            kind: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    /// Upstream's `ErrorBody`: the type label, the value where shown, and the detail.
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        match self.kind {
            FieldErrorType::Required
            | FieldErrorType::Forbidden
            | FieldErrorType::TooLong
            | FieldErrorType::TooMany => {}
            _ => {
                if let Some(v) = &self.value {
                    s.push_str(": ");
                    s.push_str(&render_value(v));
                }
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Values as upstream prints them in field errors: strings quoted, numbers and booleans
/// bare, `null` for none, other values as compact JSON.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// A Kubernetes API error: an HTTP code and the `Status` object sent with it.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details`, when upstream sends them.
    pub details: Option<Value>,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for StatusError {}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    Value::Object(d)
}

/// `plural.group` or `plural` for the core group, as upstream's `GroupResource.String()`.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl StatusError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404: `deployments.apps "web" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self {
            details: Some(details(name, group, resource)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", qualified(group, resource)),
            )
        }
    }

    /// 409: `pods "p1" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self {
            details: Some(details(name, group, resource)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", qualified(group, resource)),
            )
        }
    }

    /// 409 Conflict for a stale resourceVersion, with upstream's wording.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict_msg(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict from a server-side apply: other managers own fields it would change.
    pub fn apply_conflict(conflicts: &[crate::managed::Conflict]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"reason": "FieldManagerConflict",
                       "message": format!("conflict with {}", c.manager), "field": c.field})
            })
            .collect();
        Self {
            code: 409,
            reason: "Conflict",
            message: crate::managed::conflict_message(conflicts),
            details: Some(json!({ "causes": causes })),
        }
    }

    /// 409 Conflict: `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict_msg(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(name, group, resource)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: {why}",
                    qualified(group, resource)
                ),
            )
        }
    }

    /// 422 Invalid: `Deployment.apps "x" is invalid: spec.replicas: Invalid value: -1: ...`.
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = match errs {
            [] => format!("{qualified_kind} {name:?} is invalid"),
            [one] => format!("{qualified_kind} {name:?} is invalid: {one}"),
            many => format!(
                "{qualified_kind} {name:?} is invalid: [{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({"reason": e.kind.cause_type(), "message": e.body(), "field": e.field}))
            .collect();
        let mut d = details(name, group, kind);
        d["causes"] = Value::Array(causes);
        Self {
            details: Some(d),
            ..Self::new(422, "Invalid", message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 for a path nothing serves.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 410 Expired: the requested resourceVersion is older than what is kept.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 410 Gone: what watch streams say when their start is too old.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Gone", message)
    }

    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"),
        )
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object to send.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// A `Status` with `status: Success`, as returned by some deletes.
pub fn success_status(group: &str, resource: &str, name: &str, uid: Option<&str>) -> Value {
    let mut d = details(name, group, resource);
    if let Some(uid) = uid {
        d["uid"] = json!(uid);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_upstream() {
        assert_eq!(
            StatusError::not_found("apps", "deployments", "web").message,
            r#"deployments.apps "web" not found"#
        );
        assert_eq!(
            StatusError::already_exists("", "pods", "p1").message,
            r#"pods "p1" already exists"#
        );
        assert_eq!(
            StatusError::conflict("apps", "deployments", "web").message,
            r#"Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again"#
        );
    }

    #[test]
    fn invalid_aggregates_causes_like_upstream() {
        let one = StatusError::invalid(
            "",
            "Pod",
            "",
            &[FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        );
        assert_eq!(
            one.message,
            r#"Pod "" is invalid: metadata.name: Required value: name or generateName is required"#
        );
        let st = one.to_status();
        assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(st["details"]["kind"], "Pod");
        let two = StatusError::invalid(
            "apps",
            "Deployment",
            "x",
            &[
                FieldError::invalid(
                    "spec.replicas",
                    json!(-1),
                    "must be greater than or equal to 0",
                ),
                FieldError::not_supported(
                    "spec.strategy.type",
                    json!("Foo"),
                    &["Recreate", "RollingUpdate"],
                ),
            ],
        );
        assert_eq!(
            two.message,
            r#"Deployment.apps "x" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.strategy.type: Unsupported value: "Foo": supported values: "Recreate", "RollingUpdate"]"#
        );
    }
}
