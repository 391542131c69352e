//! Reading a resource request's path and query, as upstream's `RequestInfoFactory` does.

use std::collections::HashMap;

/// Where a resource request points.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path is, for routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// `/api` or `/apis`.
    DiscoveryRoot {
        legacy: bool,
    },
    /// `/apis/<group>`.
    DiscoveryGroup {
        group: String,
    },
    /// `/api/v1` or `/apis/<group>/<version>`.
    DiscoveryGroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    Other,
}

/// Classify a request path.
pub fn parse_path(path: &str) -> PathKind {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return PathKind::DiscoveryRoot { legacy: true },
        ["apis"] => return PathKind::DiscoveryRoot { legacy: false },
        ["api", v] => {
            return PathKind::DiscoveryGroupVersion {
                group: String::new(),
                version: v.to_string(),
            }
        }
        ["apis", g] => {
            return PathKind::DiscoveryGroup {
                group: g.to_string(),
            }
        }
        ["apis", g, v] => {
            return PathKind::DiscoveryGroupVersion {
                group: g.to_string(),
                version: v.to_string(),
            }
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return PathKind::Other,
    };
    if rest.iter().any(|p| p.is_empty()) {
        return PathKind::Other;
    }
    let mut rp = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    // /namespaces/{ns}/{resource}/... is namespaced, except /namespaces/{name}[/status|finalize]
    // which is the namespace object itself.
    let rest: &[&str] = match rest {
        ["namespaces", ns, resource, tail @ ..]
            if !(tail.is_empty() && (*resource == "status" || *resource == "finalize")) =>
        {
            rp.namespace = Some(ns.to_string());
            rp.resource = resource.to_string();
            tail
        }
        [resource, tail @ ..] => {
            rp.resource = resource.to_string();
            tail
        }
        [] => return PathKind::Other,
    };
    match rest {
        [] => {}
        [name] => rp.name = Some(name.to_string()),
        [name, sub] => {
            rp.name = Some(name.to_string());
            rp.subresource = Some(sub.to_string());
        }
        // proxy subresources carry a path after them.
        [name, sub, ..] if *sub == "proxy" => {
            rp.name = Some(name.to_string());
            rp.subresource = Some(sub.to_string());
        }
        _ => return PathKind::Other,
    }
    PathKind::Resource(rp)
}

/// The query string as upstream reads it: last value wins, except where lists are needed.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query {
            pairs: form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// This query with `key=value` added unless `key` is already given (or `value` is empty).
    pub fn with_default(mut self, key: &str, value: &str) -> Query {
        if !value.is_empty() && self.get(key).is_none() {
            self.pairs.push((key.to_string(), value.to_string()));
        }
        self
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some(""))
    }

    pub fn map(&self) -> HashMap<&str, &str> {
        self.pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(path: &str) -> ResourcePath {
        match parse_path(path) {
            PathKind::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = rp("/api/v1/namespaces/default/pods/p1/log");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("p1"));
        assert_eq!(r.subresource.as_deref(), Some("log"));

        let r = rp("/api/v1/namespaces/kube-system");
        assert_eq!(r.namespace, None);
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));

        let r = rp("/api/v1/namespaces/x/status");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("namespaces", Some("x"))
        );
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = rp("/api/v1/namespaces/x/configmaps");
        assert_eq!(r.namespace.as_deref(), Some("x"));
        assert_eq!(r.name, None);

        let r = rp("/apis/apps/v1/deployments");
        assert_eq!((r.group.as_str(), r.namespace.clone()), ("apps", None));

        assert_eq!(
            parse_path("/apis/apps"),
            PathKind::DiscoveryGroup {
                group: "apps".into()
            }
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/a/pods/b/c/d"),
            PathKind::Other
        );
    }
}
