//! Field selectors (`fieldSelector=spec.nodeName=n1,status.phase!=Failed`): upstream's parser
//! with `\` escaping (`apimachinery/pkg/fields/selector.go`), the field labels each resource
//! accepts (the `AddFieldLabelConversionFunc`s) and the values each object exposes
//! (the strategies' `ToSelectableFields`).

use serde_json::Value;

/// `=`/`==` or `!=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One `field op value` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    /// The value with escapes removed.
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals | FieldOperator::DoubleEquals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

/// A parsed field selector; the default selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses a field selector. Terms are split on unescaped commas; values may escape `\`,
    /// `,` and `=` with a backslash. The empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                operator: op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(Self { requirements })
    }

    /// Selects objects whose `field` equals `value`.
    pub fn one_term_equal(field: &str, value: &str) -> Self {
        Self {
            requirements: vec![FieldRequirement {
                field: field.to_string(),
                operator: FieldOperator::Equals,
                value: value.to_string(),
            }],
        }
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value the selector pins `field` to, if any (upstream's `RequiresExactMatch`),
    /// e.g. `metadata.name` for a single-object watch.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }

    /// Checks every field label against what the resource supports, with upstream's error.
    pub fn validate(&self, group: &str, plural: &str) -> Result<(), String> {
        for r in &self.requirements {
            if !supported(group, plural, &r.field) {
                return Err(unsupported_message(group, plural, &r.field));
            }
        }
        Ok(())
    }

    /// Whether an object is selected. Fields the object lacks compare as `""`.
    pub fn matches(&self, group: &str, plural: &str, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(&field_value(group, plural, obj, &r.field)))
    }
}

impl std::fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::NotEquals => "!=",
                _ => "=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Upstream's `EscapeValue`.
pub fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

fn unescape_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::DoubleEquals),
            ("=", FieldOperator::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], kind, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// The per-resource field labels (beyond `metadata.name`/`metadata.namespace`), and whether
/// the resource registers its own conversion (which changes the error message and, for
/// nodes and namespaces, drops `metadata.namespace`).
fn specific_fields(group: &str, plural: &str) -> Option<&'static [&'static str]> {
    Some(match (group, plural) {
        ("", "pods") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            "spec.host",
        ],
        ("", "nodes") => &["metadata.name", "spec.unschedulable"],
        ("", "replicationcontrollers") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("events.k8s.io", "events") => &[
            "reason",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reportingController",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("", "namespaces") => &["status.phase", "metadata.name"],
        ("", "secrets") => &["type", "metadata.namespace", "metadata.name"],
        ("", "services") => &[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ],
        ("batch", "jobs") => &["metadata.name", "metadata.namespace", "status.successful"],
        _ => return None,
    })
}

/// Whether `field` may be used in a field selector on this resource. Every resource accepts
/// `metadata.name`; all but nodes and namespaces accept `metadata.namespace`.
pub fn supported(group: &str, plural: &str, field: &str) -> bool {
    match specific_fields(group, plural) {
        Some(list) => list.contains(&field),
        None => field == "metadata.name" || field == "metadata.namespace",
    }
}

/// Upstream's error for a field label the resource does not accept.
fn unsupported_message(group: &str, plural: &str, field: &str) -> String {
    match (group, plural) {
        ("batch", "jobs") => format!("field label {field:?} not supported for batchv1.Job"),
        _ if specific_fields(group, plural).is_some() => {
            format!("field label not supported: {field}")
        }
        _ => format!(
            "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ),
    }
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn int_field(v: Option<&Value>) -> String {
    v.and_then(Value::as_i64).unwrap_or(0).to_string()
}

/// The value of a selectable field as upstream renders it (booleans `true`/`false`, counts
/// as decimal numbers, missing strings as `""`).
pub fn field_value(group: &str, plural: &str, obj: &Value, field: &str) -> String {
    let p = |ptr: &str| obj.pointer(ptr);
    match field {
        "metadata.name" => return s(p("/metadata/name")),
        "metadata.namespace" => return s(p("/metadata/namespace")),
        _ => {}
    }
    match (group, plural) {
        ("", "pods") => match field {
            "spec.nodeName" | "spec.host" => s(p("/spec/nodeName")),
            "spec.restartPolicy" => s(p("/spec/restartPolicy")),
            "spec.schedulerName" => s(p("/spec/schedulerName")),
            "spec.serviceAccountName" => s(p("/spec/serviceAccountName")),
            "spec.hostNetwork" => p("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            "status.phase" => s(p("/status/phase")),
            // Upstream takes the first of podIPs; `status.podIPs` is accepted but not in
            // the field set, so it always compares as empty.
            "status.podIP" => s(p("/status/podIPs/0/ip").or(p("/status/podIP"))),
            "status.nominatedNodeName" => s(p("/status/nominatedNodeName")),
            _ => String::new(),
        },
        ("", "nodes") => match field {
            "spec.unschedulable" => p("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            _ => String::new(),
        },
        ("", "replicationcontrollers") => match field {
            "status.replicas" => int_field(p("/status/replicas")),
            _ => String::new(),
        },
        ("", "events") | ("events.k8s.io", "events") => event_field(obj, field),
        ("", "namespaces") => match field {
            "status.phase" => s(p("/status/phase")),
            _ => String::new(),
        },
        ("", "secrets") => match field {
            "type" => s(p("/type")),
            _ => String::new(),
        },
        ("", "services") => match field {
            "spec.clusterIP" => s(p("/spec/clusterIP")),
            "spec.type" => s(p("/spec/type")),
            _ => String::new(),
        },
        ("batch", "jobs") => match field {
            // Upstream's job field set carries `status.successful` as the succeeded count.
            "status.successful" => int_field(p("/status/succeeded")),
            _ => String::new(),
        },
        // Custom resources and everything else: a dotted path into the object, which is
        // what CRD `selectableFields` name.
        _ => dotted(obj, field),
    }
}

/// A value by dotted path (`spec.color`), rendered as a field selector compares it.
pub fn dotted(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    s(Some(cur))
}

/// Event fields, reading either the core/v1 shape (`involvedObject`, `source.component`) or
/// the events.k8s.io/v1 one (`regarding`, `reportingController`).
fn event_field(obj: &Value, field: &str) -> String {
    let field = match field {
        f if f.starts_with("regarding.") => {
            return event_field(obj, &f.replacen("regarding.", "involvedObject.", 1))
        }
        "reportingController" => "reportingComponent",
        f => f,
    };
    if let Some(sub) = field.strip_prefix("involvedObject.") {
        let r = obj.get("involvedObject").or_else(|| obj.get("regarding"));
        return s(r.and_then(|r| r.get(sub)));
    }
    let reporting = || {
        let v = s(obj.get("reportingComponent"));
        if v.is_empty() {
            s(obj.get("reportingController"))
        } else {
            v
        }
    };
    match field {
        "reason" => s(obj.get("reason")),
        "type" => s(obj.get("type")),
        "reportingComponent" => reporting(),
        "source" => {
            let v = s(obj
                .pointer("/source/component")
                .or(obj.pointer("/deprecatedSource/component")));
            if v.is_empty() {
                reporting()
            } else {
                v
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_escapes_like_upstream() {
        let f = FieldSelector::parse("b=2,a==1,c!=3").unwrap();
        let got: Vec<_> = f
            .requirements()
            .iter()
            .map(|r| (r.field.as_str(), r.operator, r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", FieldOperator::DoubleEquals, "1"),
                ("b", FieldOperator::Equals, "2"),
                ("c", FieldOperator::NotEquals, "3")
            ]
        );
        let f = FieldSelector::parse(r"x=a\,b\=c\\d").unwrap();
        assert_eq!(f.requirements()[0].value, r"a,b=c\d");
        assert_eq!(f.to_string(), r"x=a\,b\=c\\d");
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse("a=").unwrap().requirements()[0]
            .value
            .is_empty());
        assert_eq!(
            FieldSelector::parse("a").unwrap_err(),
            "invalid selector: 'a'; can't understand 'a'"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse(r"a=\x").unwrap_err(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err(),
            r"invalid field selector: invalid escape sequence: \"
        );
    }

    #[test]
    fn supported_labels_and_messages() {
        assert!(supported("", "pods", "spec.nodeName"));
        assert!(supported("apps", "deployments", "metadata.namespace"));
        assert!(!supported("", "nodes", "metadata.namespace"));
        assert!(supported("", "events", "involvedObject.uid"));
        assert!(supported("events.k8s.io", "events", "regarding.name"));
        let f = FieldSelector::parse("foo=bar").unwrap();
        assert_eq!(
            f.validate("", "pods").unwrap_err(),
            "field label not supported: foo"
        );
        assert_eq!(
            f.validate("apps", "deployments").unwrap_err(),
            r#""foo" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        assert_eq!(
            f.validate("batch", "jobs").unwrap_err(),
            r#"field label "foo" not supported for batchv1.Job"#
        );
        assert!(FieldSelector::parse("metadata.name=x")
            .unwrap()
            .validate("", "configmaps")
            .is_ok());
    }

    #[test]
    fn matches_pods_and_events() {
        let pod = json!({"metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches("", "pods", &pod);
        assert!(m("metadata.name=p1,metadata.namespace=default"));
        assert!(m("spec.nodeName=n1,status.phase!=Failed"));
        assert!(m("spec.hostNetwork=false"));
        assert!(m("status.podIP=10.42.0.5"));
        assert!(m("spec.schedulerName="));
        assert!(!m("status.phase=Pending"));
        let ev = json!({"metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default", "uid": "u1"},
            "source": {"component": "kubelet"}, "reason": "Pulled", "type": "Normal"});
        let f = FieldSelector::parse(
            "involvedObject.name=p1,involvedObject.namespace=default,involvedObject.uid=u1",
        )
        .unwrap();
        assert!(f.matches("", "events", &ev));
        assert!(FieldSelector::parse("source=kubelet,type=Normal")
            .unwrap()
            .matches("", "events", &ev));
        assert!(FieldSelector::parse("regarding.kind=Pod").unwrap().matches(
            "events.k8s.io",
            "events",
            &ev
        ));
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(FieldSelector::parse("spec.unschedulable=true")
            .unwrap()
            .matches("", "nodes", &node));
        let rc = json!({"metadata": {"name": "r"}, "status": {"replicas": 3}});
        assert!(FieldSelector::parse("status.replicas=3").unwrap().matches(
            "",
            "replicationcontrollers",
            &rc
        ));
        let cr = json!({"metadata": {"name": "c"}, "spec": {"color": "red", "n": 2}});
        assert!(FieldSelector::parse("spec.color=red,spec.n=2")
            .unwrap()
            .matches("example.com", "widgets", &cr));
    }
}
