//! The built-in resources skiff serves: group, version, kind, names, scope and subresources.
//!
//! This table drives discovery, routing and storage keys; adding a built-in resource starts
//! with one entry here.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

/// Whether a resource lives in a namespace or at cluster scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A subresource such as `status` or `scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: Cow<'static, str>,
    /// The group/version/kind the subresource speaks (e.g. `autoscaling/v1 Scale`).
    pub group: Cow<'static, str>,
    pub version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    pub verbs: Vec<&'static str>,
}

/// Everything the API server needs to know about a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: Cow<'static, str>,
    pub version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    /// The plural, lower-case resource name used in URLs (`deployments`).
    pub plural: Cow<'static, str>,
    pub singular: Cow<'static, str>,
    pub scope: Scope,
    pub short_names: Vec<Cow<'static, str>>,
    pub categories: Vec<Cow<'static, str>>,
    pub subresources: Vec<Subresource>,
    /// The verbs on the main resource.
    pub verbs: Vec<&'static str>,
    /// The resource this one is stored as when it is another version or group of the same
    /// objects (events.k8s.io/v1 events are core events; autoscaling/v1 HPAs are v2 ones).
    /// `None` for the storage version itself.
    pub stored_as: Option<(Cow<'static, str>, Cow<'static, str>)>,
    /// The OpenAPI v3 schema of a custom resource's version (its CRD's `openAPIV3Schema`),
    /// used for OpenAPI and field validation. `None` for built-in kinds, whose schemas are
    /// generated from the API types ([`crate::openapi`]).
    pub schema: Option<Arc<Value>>,
    /// What a CRD adds for a custom resource's version (printer columns, scale paths).
    pub custom: Option<Arc<crate::crd::CustomInfo>>,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: how upstream names a resource in
    /// error messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The group and plural whose storage holds these objects.
    pub fn storage_resource(&self) -> (&str, &str) {
        match &self.stored_as {
            Some((g, r)) => (g, r),
            None => (&self.group, &self.plural),
        }
    }

    /// The storage key prefix for this resource: `/registry/<group>/<plural>/`
    /// (`/registry/core/pods/` for the core group).
    pub fn key_prefix(&self) -> String {
        let (group, plural) = self.storage_resource();
        let group = if group.is_empty() { "core" } else { group };
        format!("/registry/{group}/{plural}/")
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

/// All verbs of an ordinary resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const GPU: &[&str] = &["get", "patch", "update"];

struct Def {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    scope: Scope,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    /// Subresources: (name, verbs). `status` and `scale` get their usual kinds.
    subs: &'static [(&'static str, &'static [&'static str])],
    stored_as: Option<(&'static str, &'static str)>,
}

use Scope::{Cluster, Namespaced};

const ALL: &[&str] = &["all"];
const STATUS: &[(&str, &[&str])] = &[("status", GPU)];
const STATUS_SCALE: &[(&str, &[&str])] = &[("status", GPU), ("scale", GPU)];

#[rustfmt::skip]
const DEFS: &[Def] = &[
    // core/v1
    Def { group: "", version: "v1", kind: "Namespace", plural: "namespaces", scope: Cluster, short: &["ns"], categories: &[], subs: &[("status", GPU), ("finalize", &["update"])], stored_as: None },
    Def { group: "", version: "v1", kind: "Pod", plural: "pods", scope: Namespaced, short: &["po"], categories: ALL,
          subs: &[("status", GPU), ("binding", &["create"]), ("eviction", &["create"]), ("log", &["get"]),
                  ("exec", &["create", "get"]), ("attach", &["create", "get"]), ("portforward", &["create", "get"]),
                  ("proxy", &["create", "delete", "get", "patch", "update"]), ("ephemeralcontainers", GPU), ("resize", GPU)],
          stored_as: None },
    Def { group: "", version: "v1", kind: "Binding", plural: "bindings", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    Def { group: "", version: "v1", kind: "Service", plural: "services", scope: Namespaced, short: &["svc"], categories: ALL, subs: &[("status", GPU), ("proxy", &["create", "delete", "get", "patch", "update"])], stored_as: None },
    Def { group: "", version: "v1", kind: "Endpoints", plural: "endpoints", scope: Namespaced, short: &["ep"], categories: &[], subs: &[], stored_as: None },
    Def { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", scope: Namespaced, short: &["cm"], categories: &[], subs: &[], stored_as: None },
    Def { group: "", version: "v1", kind: "Secret", plural: "secrets", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    Def { group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", scope: Namespaced, short: &["sa"], categories: &[], subs: &[("token", &["create"])], stored_as: None },
    Def { group: "", version: "v1", kind: "Node", plural: "nodes", scope: Cluster, short: &["no"], categories: &[], subs: &[("status", GPU), ("proxy", &["create", "delete", "get", "patch", "update"])], stored_as: None },
    Def { group: "", version: "v1", kind: "Event", plural: "events", scope: Namespaced, short: &["ev"], categories: &[], subs: &[], stored_as: None },
    Def { group: "", version: "v1", kind: "PersistentVolume", plural: "persistentvolumes", scope: Cluster, short: &["pv"], categories: &[], subs: STATUS, stored_as: None },
    Def { group: "", version: "v1", kind: "PersistentVolumeClaim", plural: "persistentvolumeclaims", scope: Namespaced, short: &["pvc"], categories: &[], subs: STATUS, stored_as: None },
    Def { group: "", version: "v1", kind: "LimitRange", plural: "limitranges", scope: Namespaced, short: &["limits"], categories: &[], subs: &[], stored_as: None },
    Def { group: "", version: "v1", kind: "ResourceQuota", plural: "resourcequotas", scope: Namespaced, short: &["quota"], categories: &[], subs: STATUS, stored_as: None },
    Def { group: "", version: "v1", kind: "ReplicationController", plural: "replicationcontrollers", scope: Namespaced, short: &["rc"], categories: ALL, subs: STATUS_SCALE, stored_as: None },
    Def { group: "", version: "v1", kind: "PodTemplate", plural: "podtemplates", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    // apps/v1
    Def { group: "apps", version: "v1", kind: "Deployment", plural: "deployments", scope: Namespaced, short: &["deploy"], categories: ALL, subs: STATUS_SCALE, stored_as: None },
    Def { group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets", scope: Namespaced, short: &["rs"], categories: ALL, subs: STATUS_SCALE, stored_as: None },
    Def { group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets", scope: Namespaced, short: &["sts"], categories: ALL, subs: STATUS_SCALE, stored_as: None },
    Def { group: "apps", version: "v1", kind: "DaemonSet", plural: "daemonsets", scope: Namespaced, short: &["ds"], categories: ALL, subs: STATUS, stored_as: None },
    Def { group: "apps", version: "v1", kind: "ControllerRevision", plural: "controllerrevisions", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    // batch/v1
    Def { group: "batch", version: "v1", kind: "Job", plural: "jobs", scope: Namespaced, short: &[], categories: ALL, subs: STATUS, stored_as: None },
    Def { group: "batch", version: "v1", kind: "CronJob", plural: "cronjobs", scope: Namespaced, short: &["cj"], categories: ALL, subs: STATUS, stored_as: None },
    // networking.k8s.io/v1
    Def { group: "networking.k8s.io", version: "v1", kind: "Ingress", plural: "ingresses", scope: Namespaced, short: &["ing"], categories: &[], subs: STATUS, stored_as: None },
    Def { group: "networking.k8s.io", version: "v1", kind: "IngressClass", plural: "ingressclasses", scope: Cluster, short: &[], categories: &[], subs: &[], stored_as: None },
    Def { group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies", scope: Namespaced, short: &["netpol"], categories: &[], subs: &[], stored_as: None },
    // discovery.k8s.io/v1
    Def { group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", plural: "endpointslices", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    // coordination.k8s.io/v1
    Def { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    // rbac.authorization.k8s.io/v1
    Def { group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", plural: "roles", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    Def { group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding", plural: "rolebindings", scope: Namespaced, short: &[], categories: &[], subs: &[], stored_as: None },
    Def { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole", plural: "clusterroles", scope: Cluster, short: &[], categories: &[], subs: &[], stored_as: None },
    Def { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRoleBinding", plural: "clusterrolebindings", scope: Cluster, short: &[], categories: &[], subs: &[], stored_as: None },
    // events.k8s.io/v1: the same objects as core events, seen through the newer schema.
    Def { group: "events.k8s.io", version: "v1", kind: "Event", plural: "events", scope: Namespaced, short: &["ev"], categories: &[], subs: &[], stored_as: Some(("", "events")) },
    // policy/v1
    Def { group: "policy", version: "v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", scope: Namespaced, short: &["pdb"], categories: &[], subs: STATUS, stored_as: None },
    // storage.k8s.io/v1
    Def { group: "scheduling.k8s.io", version: "v1", kind: "PriorityClass", plural: "priorityclasses", scope: Cluster, short: &["pc"], categories: &[], subs: &[], stored_as: None },
    Def { group: "storage.k8s.io", version: "v1", kind: "StorageClass", plural: "storageclasses", scope: Cluster, short: &["sc"], categories: &[], subs: &[], stored_as: None },
    // autoscaling: v2 is the storage version; v1 is served from the same objects.
    Def { group: "autoscaling", version: "v2", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers", scope: Namespaced, short: &["hpa"], categories: ALL, subs: STATUS, stored_as: None },
    Def { group: "autoscaling", version: "v1", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers", scope: Namespaced, short: &["hpa"], categories: ALL, subs: STATUS, stored_as: Some(("autoscaling", "horizontalpodautoscalers")) },
    // apiextensions.k8s.io/v1
    Def { group: "apiextensions.k8s.io", version: "v1", kind: "CustomResourceDefinition", plural: "customresourcedefinitions", scope: Cluster, short: &["crd", "crds"], categories: &["api-extensions"], subs: STATUS, stored_as: None },
];

fn singular_of(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

fn build(d: &Def) -> ResourceInfo {
    let subresources = d
        .subs
        .iter()
        .map(|(name, verbs)| {
            let (group, version, kind) = match *name {
                "scale" => ("autoscaling", "v1", "Scale"),
                "binding" => ("", "v1", "Binding"),
                "eviction" => ("policy", "v1", "Eviction"),
                "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
                "exec" | "attach" | "portforward" | "proxy" => ("", "v1", "Status"),
                "log" => ("", "v1", "Pod"),
                _ => (d.group, d.version, d.kind),
            };
            let kind = match (*name, d.kind) {
                ("exec", _) => "PodExecOptions",
                ("attach", _) => "PodAttachOptions",
                ("portforward", _) => "PodPortForwardOptions",
                ("proxy", "Pod") => "PodProxyOptions",
                ("proxy", "Service") => "ServiceProxyOptions",
                ("proxy", "Node") => "NodeProxyOptions",
                _ => kind,
            };
            Subresource {
                name: Cow::Borrowed(name),
                group: Cow::Borrowed(group),
                version: Cow::Borrowed(version),
                kind: Cow::Borrowed(kind),
                verbs: verbs.to_vec(),
            }
        })
        .collect();
    let verbs = match d.kind {
        "Binding" => vec!["create"],
        _ => ALL_VERBS.to_vec(),
    };
    ResourceInfo {
        group: Cow::Borrowed(d.group),
        version: Cow::Borrowed(d.version),
        kind: Cow::Borrowed(d.kind),
        plural: Cow::Borrowed(d.plural),
        singular: Cow::Owned(singular_of(d.kind)),
        scope: d.scope,
        short_names: d.short.iter().map(|s| Cow::Borrowed(*s)).collect(),
        categories: d.categories.iter().map(|s| Cow::Borrowed(*s)).collect(),
        subresources,
        verbs,
        stored_as: d
            .stored_as
            .map(|(g, r)| (Cow::Borrowed(g), Cow::Borrowed(r))),
        schema: None,
        custom: None,
    }
}

/// Every built-in resource, in discovery order.
pub fn builtin() -> Vec<ResourceInfo> {
    DEFS.iter().map(build).collect()
}

/// The group versions served, in discovery order, each with its preferred flag.
pub fn preferred_version(group: &str) -> &'static str {
    match group {
        "autoscaling" => "v2",
        _ => "v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_upstream_layout() {
        let all = builtin();
        let pods = all.iter().find(|r| r.plural == "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "p1"),
            "/registry/core/pods/default/p1"
        );
        let ns = all.iter().find(|r| r.plural == "namespaces").unwrap();
        assert_eq!(
            ns.key(None, "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
        let ev = all
            .iter()
            .find(|r| r.group == "events.k8s.io" && r.plural == "events")
            .unwrap();
        assert_eq!(ev.key_prefix(), "/registry/core/events/");
        assert_eq!(
            all.iter()
                .find(|r| r.plural == "deployments")
                .unwrap()
                .qualified_name(),
            "deployments.apps"
        );
    }

    #[test]
    fn scale_subresources_speak_autoscaling_v1() {
        for r in builtin() {
            if let Some(s) = r.subresource("scale") {
                assert_eq!(
                    (&*s.group, &*s.version, &*s.kind),
                    ("autoscaling", "v1", "Scale")
                );
            }
        }
    }
}
