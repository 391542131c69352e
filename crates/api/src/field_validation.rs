//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore`): unknown and duplicate
//! fields in a request body, found by walking the decoded JSON against the OpenAPI schema of
//! its kind ([`schema_for`]: generated for built-in kinds, the CRD's structural schema for
//! custom resources).
//!
//! Unknown fields are always removed (upstream's decoder drops them); the directive decides
//! whether they are an error (`Strict`), a `Warning` header (`Warn`, the default) or nothing
//! (`Ignore`). Findings read as upstream's strict decoder writes them: `unknown field
//! "spec.template.spec.containers[0].foo"`, `duplicate field "spec.replicas"`.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::openapi::{ref_name, validation_schemas};
use crate::resources::ResourceInfo;

/// What to do with unknown and duplicate fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    Strict,
    Warn,
    Ignore,
}

impl Directive {
    /// The `fieldValidation` query parameter; absent or empty means `Warn`, as upstream.
    pub fn parse(v: Option<&str>) -> Result<Directive, String> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(Directive::Warn),
            "Strict" => Ok(Directive::Strict),
            "Ignore" => Ok(Directive::Ignore),
            other => Err(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )),
        }
    }
}

/// `strict decoding error: unknown field "x", duplicate field "y"`: upstream's
/// `runtime.NewStrictDecodingError` text.
pub fn strict_error(findings: &[String]) -> String {
    format!("strict decoding error: {}", findings.join(", "))
}

/// The generated schema of a built-in kind.
pub fn builtin_schema(group: &str, version: &str, kind: &str) -> Option<&'static Value> {
    let s = validation_schemas();
    let name = s
        .kinds
        .get(&(group.to_string(), version.to_string(), kind.to_string()))?;
    s.defs.get(name)
}

/// The schema objects of a resource are checked against: the generated one of a built-in
/// kind, or the custom resource's own ([`structural`]). `None`: nothing to check.
pub fn schema_for(info: &ResourceInfo) -> Option<Cow<'static, Value>> {
    if let Some(s) = builtin_schema(&info.group, &info.version, &info.kind) {
        return Some(Cow::Borrowed(s));
    }
    info.schema.as_deref().map(|s| Cow::Owned(structural(s)))
}

/// A custom resource's schema as the server applies it: `apiVersion`, `kind` and `metadata`
/// (an `ObjectMeta`) are known at the root and in every `x-kubernetes-embedded-resource`, and
/// an object schema that names no fields keeps none (structural pruning), unless it has
/// `x-kubernetes-preserve-unknown-fields`.
pub fn structural(schema: &Value) -> Value {
    let mut s = schema.clone();
    add_object_fields(&mut s);
    embed(&mut s);
    s
}

fn add_object_fields(s: &mut Value) {
    let Some(m) = s.as_object_mut() else { return };
    let props = m
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string"}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string"}));
        props.insert(
            "metadata".into(),
            json!({"$ref": format!("{}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", crate::openapi::REF_PREFIX)}),
        );
    }
}

fn embed(s: &mut Value) {
    match s {
        Value::Object(m) => {
            if m.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
                let mut v = Value::Object(std::mem::take(m));
                add_object_fields(&mut v);
                if let Value::Object(back) = v {
                    *m = back;
                }
            }
            let closed_object = m.get("type").and_then(Value::as_str) == Some("object")
                && !m.contains_key("properties")
                && !m.contains_key("additionalProperties")
                && m.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true));
            if closed_object {
                m.insert("properties".into(), json!({}));
            }
            m.values_mut().for_each(embed);
        }
        Value::Array(a) => a.iter_mut().for_each(embed),
        _ => {}
    }
}

/// Remove the fields of `obj` that `schema` does not know, and return one finding per
/// removed field.
pub fn prune_unknown(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = String::new();
    walk(schema, obj, &mut path, false, &mut out);
    out
}

/// As [`prune_unknown`] for a JSON merge patch or a strategic merge patch: the patch has the
/// object's shape, `$`-directives (`$patch`, `$setElementOrder/...`, `$retainKeys`, ...) are
/// not fields.
pub fn prune_unknown_in_patch(schema: &Value, patch: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = String::new();
    walk(schema, patch, &mut path, true, &mut out);
    out
}

/// As [`prune_unknown`] for a JSON patch (`[{"op":"add","path":"/spec/x","value":...}]`):
/// operations whose path names an unknown field are dropped, and unknown fields inside
/// values are removed.
pub fn prune_unknown_in_json_patch(root: &Value, ops: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(list) = ops.as_array_mut() else {
        return out;
    };
    list.retain_mut(|op| {
        let Some(pointer) = op.get("path").and_then(Value::as_str).map(str::to_string) else {
            return true;
        };
        let mut schema = Some(root);
        let mut path = String::new();
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            let Some(s) = schema.map(resolve) else { break };
            if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                schema = None;
                break;
            }
            if let Some(items) = s.get("items") {
                push_index_token(&mut path, &token);
                schema = Some(items);
            } else if let Some(props) = s.get("properties").and_then(Value::as_object) {
                push_key(&mut path, &token);
                match props.get(&token) {
                    Some(p) => schema = Some(p),
                    None => match additional(s) {
                        Some(a) => schema = Some(a),
                        None => {
                            out.push(format!("unknown field {path:?}"));
                            return false;
                        }
                    },
                }
            } else if let Some(a) = additional(s) {
                push_key(&mut path, &token);
                schema = Some(a);
            } else {
                schema = None;
                break;
            }
        }
        if let (Some(s), Some(v)) = (schema, op.get_mut("value")) {
            walk(s, v, &mut path, false, &mut out);
        }
        true
    });
    out
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn push_index_token(path: &mut String, token: &str) {
    path.push('[');
    path.push_str(token);
    path.push(']');
}

/// Follow a `$ref` (or a one-element `allOf` around one) to the named schema.
fn resolve(schema: &Value) -> &Value {
    let mut s = schema;
    for _ in 0..8 {
        match ref_name(s).and_then(|n| validation_schemas().defs.get(n)) {
            Some(next) => s = next,
            None => break,
        }
    }
    s
}

/// The schema of a map's values, when the schema is a map.
fn additional(schema: &Value) -> Option<&Value> {
    match schema.get("additionalProperties") {
        Some(Value::Bool(true)) => Some(&Value::Bool(true)),
        Some(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// For `oneOf`/`anyOf` schemas, the branch that fits `value`'s JSON type.
fn branch<'a>(schema: &'a Value, value: &Value) -> Option<&'a Value> {
    let alts = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))?
        .as_array()?;
    let want = match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        _ => return None,
    };
    alts.iter().map(resolve).find(|a| {
        let t = a.get("type").and_then(Value::as_str);
        t == Some(want)
            || (want == "object" && t.is_none() && a.get("properties").is_some())
            || (want == "array" && t.is_none() && a.get("items").is_some())
    })
}

fn walk(schema: &Value, value: &mut Value, path: &mut String, patch: bool, out: &mut Vec<String>) {
    let schema = resolve(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
    {
        return;
    }
    if let Some(b) = branch(schema, value) {
        return walk(b, value, path, patch, out);
    }
    match value {
        Value::Object(map) => walk_object(schema, map, path, patch, out),
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else {
                return;
            };
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item_schema, item, path, patch, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &mut String,
    patch: bool,
    out: &mut Vec<String>,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let extra = additional(schema);
    if props.is_none() && extra.is_none() {
        // A free-form object (RawExtension, JSON, FieldsV1): anything goes.
        return;
    }
    let mut unknown = Vec::new();
    for (k, v) in map.iter_mut() {
        if patch && k.starts_with('$') {
            continue;
        }
        let len = path.len();
        push_key(path, k);
        match props.and_then(|p| p.get(k)).or(extra) {
            Some(s) => walk(s, v, path, patch, out),
            None => {
                out.push(format!("unknown field {:?}", path.as_str()));
                unknown.push(k.clone());
            }
        }
        path.truncate(len);
    }
    for k in unknown {
        map.remove(&k);
    }
}

/// Keys that appear twice in the same JSON object of `body`, as upstream's strict decoder
/// reports them. Returns nothing for a body that is not well-formed JSON (the decoder
/// reports that).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut p = Scanner {
        b: body,
        i: 0,
        out: Vec::new(),
    };
    let mut path = String::new();
    p.ws();
    if p.value(&mut path, 0).is_none() {
        return Vec::new();
    }
    p.out
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    out: Vec<String>,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, path: &mut String, depth: usize) -> Option<()> {
        if depth > 512 {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut seen = std::collections::HashSet::new();
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    let len = path.len();
                    push_key(path, &key);
                    if !seen.insert(key) {
                        self.out
                            .push(format!("duplicate field {:?}", path.as_str()));
                    }
                    self.ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    self.ws();
                    self.value(path, depth + 1)?;
                    path.truncate(len);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                let mut n = 0;
                loop {
                    self.ws();
                    let len = path.len();
                    path.push_str(&format!("[{n}]"));
                    self.value(path, depth + 1)?;
                    path.truncate(len);
                    n += 1;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                // A number, true, false or null: up to the next delimiter.
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i;
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_slice(&self.b[start..self.i]).ok();
                }
                _ => self.i += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prune_kind(group: &str, version: &str, kind: &str, obj: &mut Value) -> Vec<String> {
        match builtin_schema(group, version, kind) {
            Some(s) => prune_unknown(s, obj),
            None => Vec::new(),
        }
    }

    #[test]
    fn directive_defaults_to_warn() {
        assert_eq!(Directive::parse(None), Ok(Directive::Warn));
        assert_eq!(Directive::parse(Some("Strict")), Ok(Directive::Strict));
        assert_eq!(Directive::parse(Some("Ignore")), Ok(Directive::Ignore));
        assert!(Directive::parse(Some("strict")).is_err());
    }

    #[test]
    fn nested_objects_and_arrays() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "bogus": 1},
            "spec": {"replicas": 1, "foo": "x",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "hostPortt": 1}]},
                        {"name": "b", "image": "nginx", "imagePullPolicyy": "Always"}]}}}});
        let found = prune_kind("apps", "v1", "Deployment", &mut d);
        assert_eq!(
            found,
            vec![
                r#"unknown field "metadata.bogus""#,
                r#"unknown field "spec.foo""#,
                r#"unknown field "spec.template.spec.containers[0].ports[0].hostPortt""#,
                r#"unknown field "spec.template.spec.containers[1].imagePullPolicyy""#,
            ]
        );
        assert!(d["spec"].get("foo").is_none());
        assert!(d["metadata"].get("bogus").is_none());
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["labels"]["app"], "web");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1],
            json!({"name": "b", "image": "nginx"})
        );
        assert_eq!(
            strict_error(&found[..1]),
            r#"strict decoding error: unknown field "metadata.bogus""#
        );
    }

    #[test]
    fn maps_int_or_string_and_quantities() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"any-key": "v", "other": "w"}, "binaryData": {"k": "AAAA"}});
        assert!(prune_kind("", "v1", "ConfigMap", &mut cm).is_empty());
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8080}],
                     "selector": {"app": "x"}}});
        assert!(prune_kind("", "v1", "Service", &mut svc).is_empty());
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": "100m", "memory": 1024}, "requests": {"cpu": 1}},
                "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}}]}});
        assert!(prune_kind("", "v1", "Pod", &mut pod).is_empty());
        // A map of objects: unknown fields inside the values are found.
        let mut pv = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
            "spec": {"hard": {"pods": "10"}, "scopeSelectorr": {}}});
        assert_eq!(
            prune_kind("", "v1", "ResourceQuota", &mut pv),
            vec![r#"unknown field "spec.scopeSelectorr""#]
        );
    }

    #[test]
    fn embedded_raw_extension_and_free_form_json() {
        // ControllerRevision.data is a RawExtension: anything goes inside.
        let mut cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "r"}, "revision": 1,
            "data": {"spec": {"whatever": {"deep": [1, 2]}}, "x": 1}});
        assert!(prune_kind("apps", "v1", "ControllerRevision", &mut cr).is_empty());
        assert_eq!(cr["data"]["x"], 1);
        // managedFields[].fieldsV1 is free-form too.
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {"f:a": {}}}}]}});
        assert!(prune_kind("", "v1", "ConfigMap", &mut cm).is_empty());
    }

    #[test]
    fn preserve_unknown_fields_and_crd_schemas() {
        // A CRD's own schema (JSONSchemaProps) nests itself and takes defaults of any type.
        let mut crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "foos.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "foos", "kind": "Foo"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"spec": {"type": "object", "default": {"a": 1},
                            "properties": {"n": {"type": "integer", "default": 3}},
                            "items": {"type": "string"}, "bogusKeyword": true}}}}}]}});
        let found = prune_kind(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            &mut crd,
        );
        assert_eq!(
            found,
            vec![
                r#"unknown field "spec.versions[0].schema.openAPIV3Schema.properties.spec.bogusKeyword""#
            ]
        );
        // A schema marked x-kubernetes-preserve-unknown-fields keeps everything.
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"a": {"type": "string"}}});
        let mut v = json!({"a": "x", "b": {"c": 1}});
        let mut out = Vec::new();
        walk(&schema, &mut v, &mut String::new(), false, &mut out);
        assert!(out.is_empty());
        assert_eq!(v["b"]["c"], 1);
    }

    #[test]
    fn custom_resources_use_their_structural_schema() {
        let mut info = crate::resources::builtin()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .unwrap();
        info.group = "example.com".into();
        info.kind = "Foo".into();
        info.schema = Some(std::sync::Arc::new(
            json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "properties": {"spec": {"type": "object"}}},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}}}),
        ));
        let schema = schema_for(&info).unwrap();
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Foo",
            "metadata": {"name": "f", "labels": {"a": "b"}, "bogus": 1},
            "spec": {"size": 1, "port": "http", "extra": true,
                "free": {"anything": {"goes": 1}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}, "y": 2},
                "tags": [{"k": "v", "z": 1}]}});
        let found = prune_unknown(&schema, &mut obj);
        assert_eq!(
            found,
            vec![
                r#"unknown field "metadata.bogus""#,
                r#"unknown field "spec.extra""#,
                r#"unknown field "spec.tags[0].z""#,
                r#"unknown field "spec.template.spec.x""#,
                r#"unknown field "spec.template.y""#,
            ]
        );
        assert_eq!(obj["spec"]["free"]["anything"]["goes"], 1);
        assert_eq!(obj["spec"]["template"]["kind"], "Pod");
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
        // A resource with neither kind of schema is not checked.
        info.schema = None;
        assert!(schema_for(&info).is_none());
    }

    #[test]
    fn unknown_kinds_are_left_alone() {
        let mut v = json!({"spec": {"anything": 1}});
        assert!(prune_kind("example.com", "v1", "Foo", &mut v).is_empty());
        assert_eq!(v["spec"]["anything"], 1);
    }

    #[test]
    fn patches_skip_directives() {
        let mut p = json!({"metadata": {"labels": {"a": null}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "image": "x", "imagee": "y"}, {"name": "b", "$patch": "delete"}]}},
                "$retainKeys": ["strategy"], "foo": 1}});
        let found =
            prune_unknown_in_patch(builtin_schema("apps", "v1", "Deployment").unwrap(), &mut p);
        assert_eq!(
            found,
            vec![
                r#"unknown field "spec.foo""#,
                r#"unknown field "spec.template.spec.containers[0].imagee""#,
            ]
        );
        assert!(p["spec"].get("$retainKeys").is_some());
        assert!(p["spec"]["template"]["spec"]
            .get("$setElementOrder/containers")
            .is_some());

        let mut ops = json!([
            {"op": "add", "path": "/spec/foo", "value": 1},
            {"op": "replace", "path": "/spec/template/spec/containers/0", "value": {"name": "a", "bad": 1}},
            {"op": "add", "path": "/metadata/labels/x~1y", "value": "z"},
            {"op": "remove", "path": "/spec/replicas"}]);
        let found = prune_unknown_in_json_patch(
            builtin_schema("apps", "v1", "Deployment").unwrap(),
            &mut ops,
        );
        assert_eq!(
            found,
            vec![
                r#"unknown field "spec.foo""#,
                r#"unknown field "spec.template.spec.containers[0].bad""#,
            ]
        );
        assert_eq!(ops.as_array().unwrap().len(), 3);
        assert_eq!(ops[0]["value"], json!({"name": "a"}));
    }

    #[test]
    fn duplicates_in_json_bodies() {
        let body = br#"{"kind":"Deployment","spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"a","name":"b"}]}},"replicas":2},"kind":"Deployment"}"#;
        assert_eq!(
            duplicate_fields(body),
            vec![
                r#"duplicate field "spec.template.spec.containers[0].name""#,
                r#"duplicate field "spec.replicas""#,
                r#"duplicate field "kind""#,
            ]
        );
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":{"b":2},"s":"x\"y"}"#).is_empty());
        assert!(duplicate_fields(b"{not json").is_empty());
        assert!(duplicate_fields(b"").is_empty());
    }
}
