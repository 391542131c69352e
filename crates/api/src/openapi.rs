//! OpenAPI v3 for the built-in resources: `/openapi/v3` and `/openapi/v3/<group-version>`.
//!
//! The component schemas are generated from the API types (`k8s-openapi`'s `schemars`
//! support, so descriptions, types and `required` are upstream's), named as upstream names
//! them (`io.k8s.api.apps.v1.Deployment`), with what `k8s-openapi` leaves out added here:
//! `x-kubernetes-group-version-kind` on each kind, and the patch extensions
//! (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`) taken from the same table strategic merge patch uses
//! ([`crate::strategic::list_strategy`]). The `paths` carry one operation per verb with
//! `x-kubernetes-group-version-kind`, `x-kubernetes-action` and, on writes, the
//! `fieldValidation` parameter that makes kubectl leave validation to the server.
//!
//! Documents are built on first use and cached as bytes; the schemas for field validation
//! ([`validation_schemas`]) are kept without descriptions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta_v1;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::resources::ResourceInfo;
use crate::strategic::{list_strategy, ListStrategy};

/// Where component schemas live in a v3 document.
pub const REF_PREFIX: &str = "#/components/schemas/";

macro_rules! builtin_kinds {
    ($($g:literal $v:literal $k:literal => $t:ty;)*) => {
        /// Add the schema of a built-in kind (and all it references) to `gen`; its name.
        fn add_kind(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
            match (group, version, kind) {
                $(($g, $v, $k) => {
                    gen.subschema_for::<$t>();
                    Some(<$t as JsonSchema>::schema_name().into_owned())
                })*
                _ => None,
            }
        }

        /// Every group/version/kind with a generated schema.
        pub const KINDS: &[(&str, &str, &str)] = &[$(($g, $v, $k)),*];
    };
}

builtin_kinds! {
    "" "v1" "Namespace" => api::core::v1::Namespace;
    "" "v1" "Pod" => api::core::v1::Pod;
    "" "v1" "Binding" => api::core::v1::Binding;
    "" "v1" "Service" => api::core::v1::Service;
    "" "v1" "Endpoints" => api::core::v1::Endpoints;
    "" "v1" "ConfigMap" => api::core::v1::ConfigMap;
    "" "v1" "Secret" => api::core::v1::Secret;
    "" "v1" "ServiceAccount" => api::core::v1::ServiceAccount;
    "" "v1" "Node" => api::core::v1::Node;
    "" "v1" "Event" => api::core::v1::Event;
    "" "v1" "PersistentVolume" => api::core::v1::PersistentVolume;
    "" "v1" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim;
    "" "v1" "LimitRange" => api::core::v1::LimitRange;
    "" "v1" "ResourceQuota" => api::core::v1::ResourceQuota;
    "" "v1" "ReplicationController" => api::core::v1::ReplicationController;
    "" "v1" "PodTemplate" => api::core::v1::PodTemplate;
    "apps" "v1" "Deployment" => api::apps::v1::Deployment;
    "apps" "v1" "ReplicaSet" => api::apps::v1::ReplicaSet;
    "apps" "v1" "StatefulSet" => api::apps::v1::StatefulSet;
    "apps" "v1" "DaemonSet" => api::apps::v1::DaemonSet;
    "apps" "v1" "ControllerRevision" => api::apps::v1::ControllerRevision;
    "batch" "v1" "Job" => api::batch::v1::Job;
    "batch" "v1" "CronJob" => api::batch::v1::CronJob;
    "networking.k8s.io" "v1" "Ingress" => api::networking::v1::Ingress;
    "networking.k8s.io" "v1" "IngressClass" => api::networking::v1::IngressClass;
    "networking.k8s.io" "v1" "NetworkPolicy" => api::networking::v1::NetworkPolicy;
    "discovery.k8s.io" "v1" "EndpointSlice" => api::discovery::v1::EndpointSlice;
    "coordination.k8s.io" "v1" "Lease" => api::coordination::v1::Lease;
    "rbac.authorization.k8s.io" "v1" "Role" => api::rbac::v1::Role;
    "rbac.authorization.k8s.io" "v1" "RoleBinding" => api::rbac::v1::RoleBinding;
    "rbac.authorization.k8s.io" "v1" "ClusterRole" => api::rbac::v1::ClusterRole;
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding;
    "events.k8s.io" "v1" "Event" => api::events::v1::Event;
    "policy" "v1" "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget;
    "policy" "v1" "Eviction" => api::policy::v1::Eviction;
    "scheduling.k8s.io" "v1" "PriorityClass" => api::scheduling::v1::PriorityClass;
    "storage.k8s.io" "v1" "StorageClass" => api::storage::v1::StorageClass;
    "autoscaling" "v2" "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler;
    "autoscaling" "v1" "HorizontalPodAutoscaler" => api::autoscaling::v1::HorizontalPodAutoscaler;
    "autoscaling" "v1" "Scale" => api::autoscaling::v1::Scale;
    "authentication.k8s.io" "v1" "TokenRequest" => api::authentication::v1::TokenRequest;
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => apiextensions_v1::CustomResourceDefinition;
}

fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3().into_generator()
}

/// A group/version/kind as the extensions spell it.
fn gvk_value(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// `api/v1` or `apis/<group>/<version>`: how the v3 root names a group version.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The component schemas for `kinds`, with kinds tagged by their group/version/kind and the
/// patch extensions added; and the schema name of each kind.
fn components(kinds: &[(&str, &str, &str)]) -> (Map<String, Value>, Vec<(String, Value)>) {
    let mut gen = generator();
    let mut roots = Vec::new();
    for (g, v, k) in kinds {
        if let Some(name) = add_kind(&mut gen, g, v, k) {
            roots.push((name, gvk_value(g, v, k)));
        }
    }
    gen.subschema_for::<meta_v1::DeleteOptions>();
    gen.subschema_for::<meta_v1::Status>();
    gen.subschema_for::<meta_v1::ObjectMeta>();
    let mut defs = gen.take_definitions(true);
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    for (name, gvk) in &roots {
        if let Some(Value::Object(s)) = defs.get_mut(name) {
            match s.get_mut("x-kubernetes-group-version-kind") {
                Some(Value::Array(list)) if !list.contains(gvk) => list.push(gvk.clone()),
                Some(_) => {}
                None => {
                    s.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
                }
            }
            // k8s-openapi marks `metadata` required because its Rust field is not optional;
            // upstream's kinds require none.
            if let Some(Value::Array(req)) = s.get_mut("required") {
                req.retain(|r| r != "metadata");
                if req.is_empty() {
                    s.remove("required");
                }
            }
        }
    }
    add_patch_extensions(&mut defs, &roots);
    (defs, roots)
}

/// The name a `$ref` (possibly wrapped in a one-element `allOf`) points to.
pub fn ref_name(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(REF_PREFIX);
    }
    match schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([one]) => ref_name(one),
        _ => None,
    }
}

/// Add the strategic-merge list extensions, walking every kind from its root with the path of
/// field names strategic merge sees, so the extensions say what the server does.
fn add_patch_extensions(defs: &mut Map<String, Value>, roots: &[(String, Value)]) {
    let mut found: BTreeMap<(String, String), ListStrategy> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (name, _) in roots {
        let mut path = Vec::new();
        walk_strategies(defs, name, &mut path, &mut found, &mut seen);
    }
    for ((def, field), strategy) in found {
        let Some(prop) = defs
            .get_mut(&def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(&field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        match strategy {
            ListStrategy::MergeKey(key) => {
                // Server-side apply keys a few lists by more than the merge key, on purpose
                // (a port is unique per protocol).
                let map_keys = match key {
                    "port" | "containerPort" => json!([key, "protocol"]),
                    "topologyKey" => json!([key, "whenUnsatisfiable"]),
                    _ => json!([key]),
                };
                prop.insert("x-kubernetes-list-type".into(), json!("map"));
                prop.insert("x-kubernetes-list-map-keys".into(), map_keys);
                prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                prop.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            }
            ListStrategy::MergePrimitives => {
                prop.insert("x-kubernetes-list-type".into(), json!("set"));
                prop.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            }
            ListStrategy::Replace => {}
        }
    }
}

fn walk_strategies(
    defs: &Map<String, Value>,
    def: &str,
    path: &mut Vec<String>,
    found: &mut BTreeMap<(String, String), ListStrategy>,
    seen: &mut HashSet<(String, String)>,
) {
    // `list_strategy` looks at the last field name and at one-element paths, so that is all
    // that distinguishes two visits of the same schema.
    let context = if path.len() <= 1 {
        path.join(".")
    } else {
        format!("..{}", path.last().map(String::as_str).unwrap_or(""))
    };
    if !seen.insert((def.to_string(), context)) {
        return;
    }
    let Some(props) = defs
        .get(def)
        .and_then(|d| d.get("properties"))
        .and_then(Value::as_object)
    else {
        return;
    };
    for (field, schema) in props {
        let target = if schema.get("type").and_then(Value::as_str) == Some("array") {
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            let strategy = list_strategy(&refs, field);
            if strategy != ListStrategy::Replace {
                found
                    .entry((def.to_string(), field.clone()))
                    .or_insert(strategy);
            }
            schema.get("items").and_then(ref_name)
        } else if let Some(r) = ref_name(schema) {
            Some(r)
        } else {
            schema.get("additionalProperties").and_then(ref_name)
        };
        if let Some(t) = target {
            path.push(field.clone());
            walk_strategies(defs, t, path, found, seen);
            path.pop();
        }
    }
}

/// Every schema name `start` references, itself included.
fn closure(defs: &Map<String, Value>, start: &[String]) -> HashSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(REF_PREFIX))
                {
                    out.push(r.to_string());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all: HashSet<String> = HashSet::new();
    let mut todo: Vec<String> = start.to_vec();
    while let Some(n) = todo.pop() {
        if !all.insert(n.clone()) {
            continue;
        }
        if let Some(d) = defs.get(&n) {
            refs(d, &mut todo);
        }
    }
    all
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the group-version part of upstream's operation
/// ids.
fn op_gv(group: &str, version: &str) -> String {
    let mut s = String::new();
    let group = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    for part in group.split(['.', '-']) {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            s.extend(f.to_uppercase());
            s.push_str(c.as_str());
        }
    }
    let mut c = version.chars();
    if let Some(f) = c.next() {
        s.extend(f.to_uppercase());
        s.push_str(c.as_str());
    }
    s
}

fn query_param(name: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query_param("dryRun", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed", "string"),
        query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.", "string"),
        query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.", "string"),
    ];
    if patch {
        p.push(query_param("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", "boolean"));
    }
    p
}

fn list_params() -> Vec<Value> {
    vec![
        query_param("continue", "The continue option should be set when retrieving more results from the server.", "string"),
        query_param("fieldSelector", "A selector to restrict the list of returned objects by their fields. Defaults to everything.", "string"),
        query_param("labelSelector", "A selector to restrict the list of returned objects by their labels. Defaults to everything.", "string"),
        query_param("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
        query_param("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from.", "string"),
        query_param("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
        query_param("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.", "boolean"),
    ]
}

fn json_content(schema: Option<&str>) -> Value {
    let schema = match schema {
        Some(s) => json!({"$ref": format!("{REF_PREFIX}{s}")}),
        None => json!({"type": "object"}),
    };
    json!({
        "application/json": {"schema": schema},
        "application/yaml": {"schema": schema},
    })
}

struct OpSpec<'a> {
    method: &'static str,
    action: &'static str,
    id: String,
    gvk: Value,
    schema: Option<&'a str>,
    description: String,
}

fn operation(op: &OpSpec, tag: &str) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([tag]));
    o.insert("description".into(), json!(op.description));
    o.insert("operationId".into(), json!(op.id));
    let ok = json!({"description": "OK", "content": json_content(op.schema)});
    match op.method {
        "post" | "put" => {
            o.insert("parameters".into(), Value::Array(write_params(false)));
            o.insert(
                "requestBody".into(),
                json!({"content": {"*/*": {"schema": {"$ref": format!("{REF_PREFIX}{}", op.schema.unwrap_or("io.k8s.apimachinery.pkg.apis.meta.v1.Patch"))}}}, "required": true}),
            );
            let mut responses = json!({"200": ok, "201": {"description": "Created", "content": json_content(op.schema)}, "401": {"description": "Unauthorized"}});
            if op.method == "post" {
                responses["202"] =
                    json!({"description": "Accepted", "content": json_content(op.schema)});
            }
            o.insert("responses".into(), responses);
        }
        "patch" => {
            o.insert("parameters".into(), Value::Array(write_params(true)));
            let patch_schema = json!({"schema": {"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.Patch")}});
            o.insert(
                "requestBody".into(),
                json!({"content": {
                    "application/apply-patch+yaml": patch_schema,
                    "application/json-patch+json": patch_schema,
                    "application/merge-patch+json": patch_schema,
                    "application/strategic-merge-patch+json": patch_schema,
                }, "required": true}),
            );
            o.insert(
                "responses".into(),
                json!({"200": ok, "201": {"description": "Created", "content": json_content(op.schema)}, "401": {"description": "Unauthorized"}}),
            );
        }
        "delete" => {
            o.insert(
                "parameters".into(),
                json!([
                    query_param(
                        "dryRun",
                        "When present, indicates that modifications should not be persisted.",
                        "string"
                    ),
                    query_param(
                        "gracePeriodSeconds",
                        "The duration in seconds before the object should be deleted.",
                        "integer"
                    ),
                    query_param(
                        "propagationPolicy",
                        "Whether and how garbage collection will be performed.",
                        "string"
                    ),
                ]),
            );
            o.insert(
                "requestBody".into(),
                json!({"content": {"*/*": {"schema": {"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")}}}}),
            );
            o.insert(
                "responses".into(),
                json!({"200": ok, "202": {"description": "Accepted", "content": json_content(op.schema)}, "401": {"description": "Unauthorized"}}),
            );
        }
        _ => {
            if op.action == "list" {
                o.insert("parameters".into(), Value::Array(list_params()));
            }
            o.insert(
                "responses".into(),
                json!({"200": ok, "401": {"description": "Unauthorized"}}),
            );
        }
    }
    o.insert("x-kubernetes-action".into(), json!(op.action));
    o.insert("x-kubernetes-group-version-kind".into(), op.gvk.clone());
    Value::Object(o)
}

fn path_params(namespaced: bool, named: bool) -> Value {
    let mut p = Vec::new();
    if named {
        p.push(json!({"name": "name", "in": "path", "description": "name of the resource", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    if namespaced {
        p.push(json!({"name": "namespace", "in": "path", "description": "object name and auth scope, such as for teams and projects", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    p.push(json!({"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty printed.", "schema": {"type": "string", "uniqueItems": true}}));
    Value::Array(p)
}

fn add_resource_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, schema: Option<&str>) {
    let prefix = format!("/{}", gv_path(&r.group, &r.version));
    let gv = op_gv(&r.group, &r.version);
    let tag = gv.clone();
    let gvk = gvk_value(&r.group, &r.version, &r.kind);
    let ns_word = if r.namespaced() { "Namespaced" } else { "" };
    let (collection, item) = if r.namespaced() {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{prefix}/{}", r.plural),
            format!("{prefix}/{}/{{name}}", r.plural),
        )
    };
    let has = |v: &str| r.verbs.contains(&v);
    let kind = &r.kind;
    let op = |method: &'static str, action: &'static str, verb: &str, suffix: &str| OpSpec {
        method,
        action,
        id: format!("{verb}{gv}{ns_word}{kind}{suffix}"),
        gvk: gvk.clone(),
        schema,
        description: format!("{verb} the specified {kind}"),
    };
    let mut coll = Map::new();
    if has("list") {
        coll.insert(
            "get".into(),
            operation(&op("get", "list", "list", ""), &tag),
        );
    }
    if has("create") {
        coll.insert(
            "post".into(),
            operation(&op("post", "post", "create", ""), &tag),
        );
    }
    if has("deletecollection") {
        coll.insert(
            "delete".into(),
            operation(
                &op("delete", "deletecollection", "deleteCollection", ""),
                &tag,
            ),
        );
    }
    if !coll.is_empty() {
        coll.insert("parameters".into(), path_params(r.namespaced(), false));
        paths.insert(collection, Value::Object(coll));
    }
    let mut one = Map::new();
    if has("get") {
        one.insert("get".into(), operation(&op("get", "get", "read", ""), &tag));
    }
    if has("update") {
        one.insert(
            "put".into(),
            operation(&op("put", "put", "replace", ""), &tag),
        );
    }
    if has("patch") {
        one.insert(
            "patch".into(),
            operation(&op("patch", "patch", "patch", ""), &tag),
        );
    }
    if has("delete") {
        one.insert(
            "delete".into(),
            operation(&op("delete", "delete", "delete", ""), &tag),
        );
    }
    if !one.is_empty() {
        one.insert("parameters".into(), path_params(r.namespaced(), true));
        paths.insert(item.clone(), Value::Object(one));
    }
    if r.namespaced() && has("list") {
        let mut all = Map::new();
        let mut o = op("get", "list", "list", "ForAllNamespaces");
        o.id = format!("list{gv}{kind}ForAllNamespaces");
        all.insert("get".into(), operation(&o, &tag));
        all.insert("parameters".into(), path_params(false, false));
        paths.insert(format!("{prefix}/{}", r.plural), Value::Object(all));
    }
    for sub in &r.subresources {
        let (sub_gvk, sub_schema, word) = match &*sub.name {
            "status" => (gvk.clone(), schema, "Status"),
            "scale" => (
                gvk_value("autoscaling", "v1", "Scale"),
                Some("io.k8s.api.autoscaling.v1.Scale"),
                "Scale",
            ),
            _ => continue,
        };
        let mut p = Map::new();
        for (method, action, verb) in [
            ("get", "get", "read"),
            ("put", "put", "replace"),
            ("patch", "patch", "patch"),
        ] {
            let v = if method == "put" { "update" } else { action };
            if !sub.verbs.contains(&v) {
                continue;
            }
            let o = OpSpec {
                method,
                action,
                id: format!("{verb}{gv}{ns_word}{kind}{word}"),
                gvk: sub_gvk.clone(),
                schema: sub_schema,
                description: format!("{verb} {} of the specified {kind}", sub.name),
            };
            p.insert(method.into(), operation(&o, &tag));
        }
        p.insert("parameters".into(), path_params(r.namespaced(), true));
        paths.insert(format!("{item}/{}", sub.name), Value::Object(p));
    }
}

/// `com.example.stable.v1.CronTab` for `stable.example.com/v1 CronTab`: how upstream names a
/// custom resource's schema.
pub fn custom_schema_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// The OpenAPI v3 document of one group version, for the resources given (all of which
/// must be in that group version). Custom resources bring their schema in
/// [`ResourceInfo::schema`].
pub fn gv_document(resources: &[&ResourceInfo]) -> Value {
    let mut kinds: Vec<(&str, &str, &str)> = resources
        .iter()
        .map(|r| (&*r.group, &*r.version, &*r.kind))
        .collect();
    if resources.iter().any(|r| r.subresource("scale").is_some()) {
        kinds.push(("autoscaling", "v1", "Scale"));
    }
    let (mut defs, mut roots) = components(&kinds);
    for r in resources {
        let gvk = gvk_value(&r.group, &r.version, &r.kind);
        if roots.iter().any(|(_, g)| *g == gvk) {
            continue;
        }
        if let Some(schema) = &r.schema {
            let name = custom_schema_name(&r.group, &r.version, &r.kind);
            let mut s = crate::field_validation::structural(schema);
            if let Some(m) = s.as_object_mut() {
                m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
            }
            defs.insert(name.clone(), s);
            roots.push((name, gvk));
        }
    }
    let by_kind: HashMap<&Value, &str> = roots.iter().map(|(n, g)| (g, n.as_str())).collect();
    let mut paths = Map::new();
    for r in resources {
        let gvk = gvk_value(&r.group, &r.version, &r.kind);
        let schema = by_kind.get(&gvk).copied();
        add_resource_paths(&mut paths, r, schema);
    }
    let mut start: Vec<String> = roots.iter().map(|(n, _)| n.clone()).collect();
    start.extend([
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".to_string(),
    ]);
    let keep = closure(&defs, &start);
    let schemas: BTreeMap<String, Value> =
        defs.into_iter().filter(|(k, _)| keep.contains(k)).collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::openapi::KUBE_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    })
}

/// The Kubernetes version the documents describe.
pub const KUBE_VERSION: &str = "v1.33.0";

/// A generated document, serialized, with its content hash.
#[derive(Debug)]
pub struct Document {
    pub bytes: Vec<u8>,
    /// Upper-case hex of a hash of `bytes`, as `?hash=` and the `Etag` use it.
    pub hash: String,
}

impl Document {
    fn new(bytes: Vec<u8>) -> Self {
        let hash = format!("{:016X}{:016X}", fnv1a(&bytes, 0), fnv1a(&bytes, 1));
        Document { bytes, hash }
    }
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

type Cache = Mutex<HashMap<String, Arc<Document>>>;

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// The group versions of `resources`, in order of first appearance.
fn group_versions(resources: &[ResourceInfo]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in resources {
        let gv = (r.group.to_string(), r.version.to_string());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// The cached document of one group version (`api/v1`, `apis/apps/v1`), built on first use.
/// `None` when no resource is served there.
pub fn v3_document(resources: &[ResourceInfo], gv: &str) -> Option<Arc<Document>> {
    let (group, version) = group_versions(resources)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == gv)?;
    let members: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    // The cache key names every member (and custom schemas), so resources that come and go
    // get a fresh document.
    let key = format!(
        "{gv}|{}",
        members
            .iter()
            .map(|r| match &r.schema {
                Some(s) => format!("{}:{:016x}", r.plural, fnv1a(s.to_string().as_bytes(), 0)),
                None => r.plural.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    if let Some(d) = cache().lock().ok()?.get(&key) {
        return Some(d.clone());
    }
    let doc = gv_document(&members);
    let d = Arc::new(Document::new(serde_json::to_vec(&doc).ok()?));
    cache().lock().ok()?.insert(key, d.clone());
    Some(d)
}

/// `/openapi/v3`: every group version with the URL (and hash) of its document.
pub fn v3_root(resources: &[ResourceInfo]) -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions(resources) {
        let gv = gv_path(&g, &v);
        if let Some(d) = v3_document(resources, &gv) {
            paths.insert(
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", d.hash)}),
            );
        }
    }
    json!({ "paths": paths })
}

/// The schemas field validation walks: every built-in kind and what it references, without
/// descriptions, and the schema name of each kind.
pub struct ValidationSchemas {
    pub defs: Map<String, Value>,
    pub kinds: HashMap<(String, String, String), String>,
}

/// The validation schemas, built once on first use.
pub fn validation_schemas() -> &'static ValidationSchemas {
    static S: OnceLock<ValidationSchemas> = OnceLock::new();
    S.get_or_init(|| {
        let mut gen = generator();
        let mut kinds = HashMap::new();
        for (g, v, k) in KINDS {
            if let Some(name) = add_kind(&mut gen, g, v, k) {
                kinds.insert((g.to_string(), v.to_string(), k.to_string()), name);
            }
        }
        let mut defs = gen.take_definitions(true);
        for d in defs.values_mut() {
            strip_docs(d);
        }
        ValidationSchemas { defs, kinds }
    })
}

/// Drop the docs of a schema node and of the schemas under it. A `properties` map names
/// fields, so a field called `description` (JSONSchemaProps has one) stays.
fn strip_docs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("description");
            for (k, child) in m.iter_mut() {
                if k == "properties" {
                    if let Some(props) = child.as_object_mut() {
                        props.values_mut().for_each(strip_docs);
                    }
                } else {
                    strip_docs(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_docs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    fn apps_doc() -> Value {
        let all = builtin();
        let d = v3_document(&all, "apis/apps/v1").unwrap();
        serde_json::from_slice(&d.bytes).unwrap()
    }

    #[test]
    fn every_builtin_kind_has_a_schema() {
        for r in builtin() {
            assert!(
                KINDS.contains(&(&*r.group, &*r.version, &*r.kind)),
                "{}/{} {} has no schema",
                r.group,
                r.version,
                r.kind
            );
        }
    }

    #[test]
    fn root_lists_every_group_version_with_a_hash() {
        let all = builtin();
        let root = v3_root(&all);
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(root["paths"]["api/v1"].is_object());
        assert!(root["paths"]["apis/autoscaling/v2"].is_object());
        assert!(root["paths"]["apis/rbac.authorization.k8s.io/v1"].is_object());
    }

    #[test]
    fn kinds_carry_gvk_and_refs_point_into_components() {
        let doc = apps_doc();
        let schemas = &doc["components"]["schemas"];
        let d = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(d.get("required").is_none());
        assert_eq!(
            ref_name(&d["properties"]["metadata"]),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(schemas["io.k8s.api.core.v1.PodSpec"].is_object());
        assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert!(strategy["description"].as_str().unwrap().len() > 10);
        // Every reference resolves.
        let text = serde_json::to_string(&doc).unwrap();
        for part in text.split("\"$ref\":\"").skip(1) {
            let name = part.split('"').next().unwrap();
            let name = name.strip_prefix(REF_PREFIX).unwrap();
            assert!(schemas[name].is_object(), "dangling {name}");
        }
    }

    #[test]
    fn patch_extensions_come_from_the_strategic_merge_table() {
        let all = builtin();
        let core: Value =
            serde_json::from_slice(&v3_document(&all, "api/v1").unwrap().bytes).unwrap();
        let s = &core["components"]["schemas"];
        let containers = &s["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        let ports = &s["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let sports = &s["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(sports["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(
            sports["x-kubernetes-list-map-keys"],
            json!(["port", "protocol"])
        );
        let env = &s["io.k8s.api.core.v1.Container"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        let fin = &s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
        assert_eq!(fin["x-kubernetes-list-type"], "set");
        // Lists strategic merge replaces carry no merge key.
        let args = &s["io.k8s.api.core.v1.Container"]["properties"]["args"];
        assert!(args.get("x-kubernetes-patch-merge-key").is_none());
    }

    #[test]
    fn custom_resources_bring_their_schema() {
        let mut foo = builtin()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .unwrap();
        foo.group = "stable.example.com".into();
        foo.kind = "CronTab".into();
        foo.plural = "crontabs".into();
        foo.schema = Some(std::sync::Arc::new(
            json!({"type": "object", "properties": {
            "spec": {"type": "object", "description": "The cron spec.",
                "properties": {"cronSpec": {"type": "string"}}}}}),
        ));
        let d = v3_document(&[foo], "apis/stable.example.com/v1").unwrap();
        let doc: Value = serde_json::from_slice(&d.bytes).unwrap();
        let s = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert_eq!(
            ref_name(&s["properties"]["metadata"]),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
                .is_object()
        );
        let p = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"];
        assert_eq!(
            ref_name(&p["get"]["responses"]["200"]["content"]["application/json"]["schema"]),
            Some("com.example.stable.v1.CronTab")
        );
    }

    #[test]
    fn patch_operations_take_field_validation() {
        let doc = apps_doc();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            p["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert_eq!(p["x-kubernetes-action"], "patch");
        assert_eq!(p["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(p["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "fieldValidation"));
        let post = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(post["x-kubernetes-action"], "post");
        assert!(doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object());
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        // Cluster-scoped resources have no namespace in their paths.
        let all = builtin();
        let rbac: Value = serde_json::from_slice(
            &v3_document(&all, "apis/rbac.authorization.k8s.io/v1")
                .unwrap()
                .bytes,
        )
        .unwrap();
        assert!(
            rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]
                .is_object()
        );
        assert_eq!(
            op_gv("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(op_gv("", "v1"), "CoreV1");
    }
}

/// The patch operations of `/openapi/v2`: for each resource its item path, operation id and
/// group/version/kind.
fn v2_patch_ops(resources: &[ResourceInfo]) -> Vec<(String, String, (String, String, String))> {
    let mut out = Vec::new();
    for r in resources.iter().filter(|r| r.verbs.contains(&"patch")) {
        let prefix = format!("/{}", gv_path(&r.group, &r.version));
        let (path, ns) = if r.namespaced() {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
                "Namespaced",
            )
        } else {
            (format!("{prefix}/{}/{{name}}", r.plural), "")
        };
        let id = format!("patch{}{ns}{}", op_gv(&r.group, &r.version), r.kind);
        let gvk = (
            r.group.to_string(),
            r.version.to_string(),
            r.kind.to_string(),
        );
        out.push((path, id, gvk));
    }
    out
}

const V2_WRITE_PARAMS: &[(&str, &str)] = &[
    ("dryRun", "string"),
    ("fieldManager", "string"),
    ("fieldValidation", "string"),
    ("force", "boolean"),
];

/// `/openapi/v2` as JSON (Swagger 2.0): the patch operation of every resource, tagged with
/// its group/version/kind and taking `fieldValidation`. No definitions: clients use v3 for
/// schemas.
pub fn v2_json(resources: &[ResourceInfo]) -> Value {
    let mut paths = Map::new();
    for (path, id, (g, v, k)) in v2_patch_ops(resources) {
        let params: Vec<Value> = V2_WRITE_PARAMS
            .iter()
            .map(|(n, t)| json!({"uniqueItems": true, "type": t, "name": n, "in": "query"}))
            .collect();
        paths.insert(
            path,
            json!({"patch": {
                "operationId": id,
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk_value(&g, &v, &k),
            }}),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "definitions": {},
    })
}

/// Protobuf encoding, just enough for gnostic's `openapi.v2.Document`.
mod pb {
    pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    /// A length-delimited field (string, bytes or message).
    pub fn bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(buf, u64::from(field) << 3 | 2);
        varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }

    pub fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
        bytes(buf, field, s.as_bytes());
    }

    pub fn boolean(buf: &mut Vec<u8>, field: u32, v: bool) {
        varint(buf, u64::from(field) << 3);
        varint(buf, u64::from(v));
    }
}

/// A `NamedAny` vendor extension whose value is given as YAML.
fn pb_extension(name: &str, yaml: &str) -> Vec<u8> {
    let mut any = Vec::new();
    pb::string(&mut any, 2, yaml); // Any.yaml
    let mut named = Vec::new();
    pb::string(&mut named, 1, name); // NamedAny.name
    pb::bytes(&mut named, 2, &any); // NamedAny.value
    named
}

/// A YAML string scalar, quoted when it would not read back as the same string.
fn yaml_str(s: &str) -> String {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/".contains(c))
    {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

/// `/openapi/v2` in the gnostic protobuf form (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`)
/// that kubectl 1.27 and 1.28 read to decide whether the server validates fields: the same
/// content as [`v2_json`].
pub fn v2_protobuf(resources: &[ResourceInfo]) -> Vec<u8> {
    let mut paths = Vec::new();
    for (path, id, (g, v, k)) in v2_patch_ops(resources) {
        let mut op = Vec::new();
        pb::string(&mut op, 5, &id); // Operation.operation_id
        for (name, ty) in V2_WRITE_PARAMS {
            let mut q = Vec::new();
            pb::string(&mut q, 2, "query"); // QueryParameterSubSchema.in
            pb::string(&mut q, 4, name); // .name
            pb::string(&mut q, 6, ty); // .type
            pb::boolean(&mut q, 20, true); // .unique_items
            let mut non_body = Vec::new();
            pb::bytes(&mut non_body, 3, &q); // NonBodyParameter.query_parameter_sub_schema
            let mut param = Vec::new();
            pb::bytes(&mut param, 2, &non_body); // Parameter.non_body_parameter
            let mut item = Vec::new();
            pb::bytes(&mut item, 1, &param); // ParametersItem.parameter
            pb::bytes(&mut op, 8, &item); // Operation.parameters
        }
        let mut response = Vec::new();
        pb::string(&mut response, 1, "OK"); // Response.description
        let mut response_value = Vec::new();
        pb::bytes(&mut response_value, 1, &response); // ResponseValue.response
        let mut named_response = Vec::new();
        pb::string(&mut named_response, 1, "200");
        pb::bytes(&mut named_response, 2, &response_value);
        let mut responses = Vec::new();
        pb::bytes(&mut responses, 1, &named_response); // Responses.response_code
        pb::bytes(&mut op, 9, &responses); // Operation.responses
        pb::bytes(&mut op, 13, &pb_extension("x-kubernetes-action", "patch\n"));
        let gvk = format!(
            "group: {}\nkind: {}\nversion: {}\n",
            yaml_str(&g),
            yaml_str(&k),
            yaml_str(&v)
        );
        pb::bytes(
            &mut op,
            13,
            &pb_extension("x-kubernetes-group-version-kind", &gvk),
        ); // Operation.vendor_extension
        let mut item = Vec::new();
        pb::bytes(&mut item, 8, &op); // PathItem.patch
        let mut named = Vec::new();
        pb::string(&mut named, 1, &path); // NamedPathItem.name
        pb::bytes(&mut named, 2, &item); // NamedPathItem.value
        pb::bytes(&mut paths, 2, &named); // Paths.path
    }
    let mut info = Vec::new();
    pb::string(&mut info, 1, "Kubernetes");
    pb::string(&mut info, 2, KUBE_VERSION);
    let mut doc = Vec::new();
    pb::string(&mut doc, 1, "2.0"); // Document.swagger
    pb::bytes(&mut doc, 2, &info); // Document.info
    pb::bytes(&mut doc, 8, &paths); // Document.paths
    doc
}

#[cfg(test)]
mod v2_tests {
    use super::*;
    use crate::resources::builtin;

    /// Read back (field, wire type, payload) triples of one protobuf message.
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            match key & 7 {
                0 => {
                    let v = varint(&mut b);
                    out.push((key >> 3, vec![v as u8]));
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    out.push((key >> 3, b[..n].to_vec()));
                    b = &b[n..];
                }
                w => panic!("wire type {w}"),
            }
        }
        out
    }

    fn get(b: &[u8], field: u64) -> Vec<Vec<u8>> {
        fields(b)
            .into_iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn v2_protobuf_has_deployment_patch_with_field_validation() {
        let doc = v2_protobuf(&builtin());
        assert_eq!(get(&doc, 1), vec![b"2.0".to_vec()]);
        let paths = &get(&doc, 8)[0];
        let deploy = get(paths, 2)
            .into_iter()
            .find(|p| get(p, 1)[0] == b"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .expect("deployments path");
        let op = &get(&get(&deploy, 2)[0], 8)[0];
        let names: Vec<String> = get(op, 8)
            .iter()
            .map(|item| {
                let param = &get(item, 1)[0];
                let non_body = &get(param, 2)[0];
                let q = &get(non_body, 3)[0];
                String::from_utf8(get(q, 4)[0].clone()).unwrap()
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_string()), "{names:?}");
        let exts: Vec<(String, String)> = get(op, 13)
            .iter()
            .map(|e| {
                (
                    String::from_utf8(get(e, 1)[0].clone()).unwrap(),
                    String::from_utf8(get(&get(e, 2)[0], 2)[0].clone()).unwrap(),
                )
            })
            .collect();
        assert!(exts.contains(&(
            "x-kubernetes-group-version-kind".into(),
            "group: apps\nkind: Deployment\nversion: v1\n".into()
        )));
        // The core group is an empty, quoted string.
        let text = String::from_utf8_lossy(&doc);
        assert!(text.contains("group: \"\"\nkind: Pod\nversion: v1\n"));
        let json = v2_json(&builtin());
        assert_eq!(
            json["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
                ["x-kubernetes-group-version-kind"]["kind"],
            "Pod"
        );
    }
}
