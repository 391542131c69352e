//! Pod keys by the node they are bound to, kept from a pod informer's changes, for
//! controllers that act on a node's pods (node lifecycle, pod GC) without scanning every pod.
//! Keys may outlive their pods (a relist does not report the deletions it missed), so
//! readers look each pod up again.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, Default)]
pub struct PodsByNode {
    /// The node each bound pod is on.
    node_of: HashMap<String, String>,
    by_node: HashMap<String, HashSet<String>>,
}

impl PodsByNode {
    /// Records where the pod under `key` is bound now (a pod recreated under the same key on
    /// another node moves).
    pub fn apply(&mut self, key: &str, pod: &Pod) {
        let node = skiff_client::pod_node(pod);
        if self.node_of.get(key).map(String::as_str) == node {
            return;
        }
        self.remove(key);
        if let Some(n) = node {
            self.node_of.insert(key.to_string(), n.to_string());
            self.by_node
                .entry(n.to_string())
                .or_default()
                .insert(key.to_string());
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(old) = self.node_of.remove(key) {
            if let Some(keys) = self.by_node.get_mut(&old) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_node.remove(&old);
                }
            }
        }
    }

    /// Names of the nodes that have pods.
    pub fn nodes(&self) -> Vec<String> {
        self.by_node.keys().cloned().collect()
    }

    pub fn has_pods(&self, node: &str) -> bool {
        self.by_node.contains_key(node)
    }

    pub fn pods_on(&self, node: &str) -> Vec<String> {
        self.by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }
}
