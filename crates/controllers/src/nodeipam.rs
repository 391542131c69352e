//! Node IPAM: every Node without a podCIDR gets the lowest free /24 of the cluster CIDR
//! (10.42.0.0/16 by default), as upstream's range allocator.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue};

use crate::{api_err, is_gone_or_conflict, Error, Result};

/// The cluster CIDR: 10.42.0.0/16, cut into /24s.
pub const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 42, 0, 0), 16);
pub const NODE_MASK: u8 = 24;

/// The index of a /24 inside the cluster CIDR, if `cidr` is one.
pub fn subnet_index(cidr: &str) -> Option<u32> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    if len != NODE_MASK.to_string() {
        return None;
    }
    let base = u32::from(CLUSTER_CIDR.0);
    let off = u32::from(ip).checked_sub(base)?;
    let idx = off >> (32 - NODE_MASK);
    (idx < 1 << (NODE_MASK - CLUSTER_CIDR.1)).then_some(idx)
}

/// The lowest /24 not in `used`.
pub fn next_free(used: &BTreeSet<u32>) -> Option<String> {
    let count = 1u32 << (NODE_MASK - CLUSTER_CIDR.1);
    let idx = (0..count).find(|i| !used.contains(i))?;
    let ip = Ipv4Addr::from(u32::from(CLUSTER_CIDR.0) + (idx << (32 - NODE_MASK)));
    Some(format!("{ip}/{NODE_MASK}"))
}

struct Ctl {
    client: Client,
    nodes: Store<Node>,
    /// Subnets handed out by this process whose node update the cache may not show yet.
    pending: Mutex<BTreeSet<u32>>,
}

pub fn start(informers: &Arc<Informers>) {
    let inf = informers.nodes();
    let queue = Queue::new();
    let q = queue.clone();
    inf.on_change(move |c| {
        if let Change::Applied(n) = c {
            if n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none() {
                q.add(n.name_any());
            }
        }
    });
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        nodes: inf.store(),
        pending: Mutex::new(BTreeSet::new()),
    });
    tokio::spawn(async move {
        inf.synced().await;
        // One worker: allocation must not race with itself.
        skiff_client::run_workers(queue, 1, "nodeipam", move |key| {
            let c = ctl.clone();
            async move { c.sync(&key).await }
        });
    });
}

impl Ctl {
    async fn sync(&self, name: &str) -> Result<()> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            return Ok(());
        };
        if node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some()
        {
            return Ok(());
        }
        let mut used: BTreeSet<u32> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(subnet_index))
            .collect();
        {
            let mut pending = self.pending.lock().unwrap();
            // Allocations the cache shows now need no extra memory.
            pending.retain(|i| !used.contains(i));
            used.extend(pending.iter().copied());
        }
        let cidr = next_free(&used)
            .ok_or_else(|| Error::NotReady("no free pod CIDR in 10.42.0.0/16".into()))?;
        let idx = subnet_index(&cidr).unwrap_or(0);
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.pending.lock().unwrap().insert(idx);
                Ok(())
            }
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("assigning podCIDR to {name}"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_the_lowest_free_24() {
        let mut used = BTreeSet::new();
        assert_eq!(next_free(&used).unwrap(), "10.42.0.0/24");
        used.insert(0);
        used.insert(2);
        assert_eq!(next_free(&used).unwrap(), "10.42.1.0/24");
        assert_eq!(subnet_index("10.42.7.0/24"), Some(7));
        assert_eq!(subnet_index("10.43.0.0/24"), None);
        assert_eq!(subnet_index("10.42.7.0/25"), None);
        let all: BTreeSet<u32> = (0..256).collect();
        assert_eq!(next_free(&all), None);
    }
}
