//! Discovery: aggregated (`apidiscovery.k8s.io` v2 and v2beta1) and legacy documents, built
//! from the registry's resources.

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::resources::{preferred_version, ResourceInfo};

/// Groups in serving order, each with its versions (preferred first).
fn groups(resources: &[Arc<ResourceInfo>]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources {
        if r.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version.to_string()) {
                    vs.push(r.version.to_string());
                }
            }
            None => out.push((r.group.to_string(), vec![r.version.to_string()])),
        }
    }
    for (g, vs) in &mut out {
        let pref = preferred_of(resources, g);
        vs.sort_by_key(|v| (v != &pref, std::cmp::Reverse(v.clone())));
    }
    out
}

/// A group's preferred version: the built-in choice, or the first served (CRDs list their
/// storage version first).
fn preferred_of(resources: &[Arc<ResourceInfo>], group: &str) -> String {
    let builtin = preferred_version(group);
    if resources
        .iter()
        .any(|r| r.group == group && r.version == builtin)
    {
        builtin.to_string()
    } else {
        resources
            .iter()
            .find(|r| r.group == group)
            .map(|r| r.version.to_string())
            .unwrap_or_default()
    }
}

fn scope(r: &ResourceInfo) -> &'static str {
    if r.namespaced() {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope(r),
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = Value::Array(
            r.subresources
                .iter()
                .map(|s| {
                    json!({
                        "subresource": s.name,
                        "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                        "verbs": s.verbs,
                    })
                })
                .collect(),
        );
    }
    v
}

/// `APIGroupDiscoveryList` for `/api` (legacy = core group only) or `/apis`.
pub fn aggregated(resources: &[Arc<ResourceInfo>], legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if legacy {
        vec![json!({
            "metadata": {"name": "", "creationTimestamp": null},
            "versions": [{
                "version": "v1",
                "resources": resources.iter().filter(|r| r.group.is_empty())
                    .map(|r| aggregated_resource(r)).collect::<Vec<_>>(),
                "freshness": "Current",
            }],
        })]
    } else {
        groups(resources)
            .into_iter()
            .map(|(g, versions)| {
                json!({
                    "metadata": {"name": g, "creationTimestamp": null},
                    "versions": versions.iter().map(|v| json!({
                        "version": v,
                        "resources": resources.iter().filter(|r| r.group == g && &r.version == v)
                            .map(|r| aggregated_resource(r)).collect::<Vec<_>>(),
                        "freshness": "Current",
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(resources: &[Arc<ResourceInfo>], g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let pref = preferred_of(resources, g);
    json!({
        "name": g,
        "versions": vs,
        "preferredVersion": {"groupVersion": format!("{g}/{pref}"), "version": pref},
    })
}

/// Legacy `/apis`.
pub fn api_group_list(resources: &[Arc<ResourceInfo>]) -> Value {
    let groups: Vec<Value> = groups(resources)
        .iter()
        .map(|(g, vs)| api_group(resources, g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`, or `None` when the group is not served.
pub fn group(resources: &[Arc<ResourceInfo>], g: &str) -> Option<Value> {
    let (_, vs) = groups(resources).into_iter().find(|(name, _)| name == g)?;
    let mut v = api_group(resources, g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`, or `None` when not served.
pub fn resource_list(resources: &[Arc<ResourceInfo>], g: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Arc<ResourceInfo>> = resources
        .iter()
        .filter(|r| r.group == g && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in rs {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        out.push(v);
        for s in &r.subresources {
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group || s.version != r.version {
                sv["group"] = json!(s.group);
                sv["version"] = json!(s.version);
            }
            out.push(sv);
        }
    }
    let gv = if g.is_empty() {
        version.to_string()
    } else {
        format!("{g}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": out,
    }))
}
