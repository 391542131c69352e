//! Which objects each controller owns, kept from an informer's changes, so a controller's
//! sync looks at its own pods (and the namespace's orphans it may adopt) instead of scanning
//! every pod in the cluster. Upstream's controllers get the same from indexers.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Default)]
struct Inner {
    /// Controlling owner uid -> object keys.
    by_owner: HashMap<String, HashSet<String>>,
    /// Object key -> its controlling owner's uid.
    owner_of: HashMap<String, String>,
    /// Namespace -> keys of objects without a controlling owner.
    orphans: HashMap<String, HashSet<String>>,
}

#[derive(Default)]
pub struct OwnerIndex {
    inner: Mutex<Inner>,
}

impl OwnerIndex {
    /// Records an object's current controller (or its removal).
    pub fn update(&self, meta: &ObjectMeta, deleted: bool) {
        let key = skiff_client::key_of(meta);
        let ns = meta.namespace.clone().unwrap_or_default();
        let owner = (!deleted)
            .then(|| skiff_client::controller_of(meta).map(|r| r.uid.clone()))
            .flatten();
        let mut i = self.inner.lock().unwrap();
        if let Some(old) = i.owner_of.remove(&key) {
            if let Some(set) = i.by_owner.get_mut(&old) {
                set.remove(&key);
                if set.is_empty() {
                    i.by_owner.remove(&old);
                }
            }
        }
        if let Some(set) = i.orphans.get_mut(&ns) {
            set.remove(&key);
            if set.is_empty() {
                i.orphans.remove(&ns);
            }
        }
        if deleted {
            return;
        }
        match owner {
            Some(uid) => {
                i.by_owner
                    .entry(uid.clone())
                    .or_default()
                    .insert(key.clone());
                i.owner_of.insert(key, uid);
            }
            None => {
                i.orphans.entry(ns).or_default().insert(key);
            }
        }
    }

    /// Keys of the objects `uid` controls.
    pub fn owned(&self, uid: &str) -> Vec<String> {
        let i = self.inner.lock().unwrap();
        i.by_owner
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Keys of the objects in `ns` that no controller owns.
    pub fn orphans(&self, ns: &str) -> Vec<String> {
        let i = self.inner.lock().unwrap();
        i.orphans
            .get(ns)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, owner: Option<&str>) -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "name": name, "namespace": "ns",
            "ownerReferences": owner.map(|uid| vec![serde_json::json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid,
                "controller": true,
            })]),
        }))
        .unwrap()
    }

    #[test]
    fn follows_adoption_release_and_deletion() {
        let idx = OwnerIndex::default();
        idx.update(&meta("a", None), false);
        idx.update(&meta("b", Some("u1")), false);
        assert_eq!(idx.orphans("ns"), vec!["ns/a"]);
        assert_eq!(idx.owned("u1"), vec!["ns/b"]);
        idx.update(&meta("a", Some("u1")), false);
        assert!(idx.orphans("ns").is_empty());
        let mut owned = idx.owned("u1");
        owned.sort();
        assert_eq!(owned, vec!["ns/a", "ns/b"]);
        idx.update(&meta("b", None), false);
        assert_eq!(idx.owned("u1"), vec!["ns/a"]);
        assert_eq!(idx.orphans("ns"), vec!["ns/b"]);
        idx.update(&meta("a", Some("u1")), true);
        idx.update(&meta("b", None), true);
        assert!(idx.owned("u1").is_empty() && idx.orphans("ns").is_empty());
    }
}
