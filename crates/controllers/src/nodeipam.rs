//! Node IPAM: every Node without a podCIDR gets the lowest free subnet of the cluster CIDR
//! (10.42.0.0/16 cut into /24s by default, as k3s), as upstream's range allocator. When the
//! range is used up the node gets a `CIDRNotAvailable` event and waits until a node holding a
//! subnet is deleted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::{api_err, is_gone_or_conflict, Result};

/// The range node subnets are cut from, as kube-controller-manager's `--cluster-cidr` and
/// `--node-cidr-mask-size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: Ipv4Addr,
    pub prefix: u8,
    pub node_mask: u8,
}

impl Default for Range {
    fn default() -> Self {
        Range {
            base: Ipv4Addr::new(10, 42, 0, 0),
            prefix: 16,
            node_mask: 24,
        }
    }
}

impl Range {
    /// Parses `--cluster-cidr` with a node mask size.
    pub fn parse(cidr: &str, node_mask: u8) -> Result<Range, String> {
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = len.parse().map_err(|_| format!("{cidr:?} is not a CIDR"))?;
        if prefix > 30 || node_mask > 30 || node_mask < prefix {
            return Err(format!(
                "node CIDR mask size {node_mask} must be between the cluster CIDR's prefix {prefix} and 30"
            ));
        }
        if node_mask - prefix > 20 {
            return Err("the cluster CIDR holds more than 2^20 node subnets".into());
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        if u32::from(ip) & !mask != 0 {
            return Err(format!("{cidr:?} has host bits set"));
        }
        Ok(Range {
            base: ip,
            prefix,
            node_mask,
        })
    }

    /// How many node subnets the range holds.
    pub fn size(&self) -> u32 {
        1 << (self.node_mask - self.prefix)
    }

    /// The index of a node subnet inside the range, if `cidr` is one.
    pub fn index(&self, cidr: &str) -> Option<u32> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if len.parse::<u8>().ok()? != self.node_mask {
            return None;
        }
        let off = u32::from(ip).checked_sub(u32::from(self.base))?;
        let idx = off >> (32 - self.node_mask);
        (idx < self.size()).then_some(idx)
    }

    pub fn subnet(&self, idx: u32) -> String {
        let ip = Ipv4Addr::from(u32::from(self.base) + (idx << (32 - self.node_mask)));
        format!("{ip}/{}", self.node_mask)
    }

    /// The lowest subnet not in `used`.
    pub fn next_free(&self, used: &BTreeSet<u32>) -> Option<String> {
        // `used` is sorted: the first gap is where the index stops matching the position.
        let idx = used
            .iter()
            .enumerate()
            .find(|(pos, i)| *pos as u32 != **i)
            .map(|(pos, _)| pos as u32)
            .unwrap_or(used.len() as u32);
        (idx < self.size()).then(|| self.subnet(idx))
    }
}

#[derive(Default)]
struct State {
    /// Subnets in use, from the cache and from this process's own writes.
    used: BTreeSet<u32>,
    /// Node name -> its subnet, as the cache shows it.
    by_node: HashMap<String, u32>,
    /// Nodes that found the range full; retried when a subnet is freed.
    waiting: HashSet<String>,
}

struct Ctl {
    client: Client,
    range: Range,
    nodes: Store<Node>,
    state: Mutex<State>,
    queue: Queue,
    recorder: Recorder,
}

pub fn start(informers: &Arc<Informers>, range: Range) {
    let inf = informers.nodes();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        range,
        nodes: inf.store(),
        state: Mutex::new(State::default()),
        queue: Queue::new(),
        recorder: Recorder::new(informers.client(), "node-ipam-controller"),
    });
    let w = Arc::downgrade(&ctl);
    inf.on_change(move |c| {
        if let Some(ctl) = w.upgrade() {
            ctl.on_node(c);
        }
    });
    tokio::spawn(async move {
        inf.synced().await;
        // One worker: allocation must not race with itself.
        let c = ctl.clone();
        skiff_client::run_workers(ctl.queue.clone(), 1, "nodeipam", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

impl Ctl {
    fn on_node(&self, c: Change<'_, Node>) {
        let (n, deleted) = match c {
            Change::Applied(n) => (n, false),
            Change::Deleted(n) => (n, true),
        };
        let name = n.name_any();
        let idx = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| self.range.index(c));
        let mut s = self.state.lock().unwrap();
        let freed = match (deleted, idx) {
            (false, Some(i)) => {
                s.waiting.remove(&name);
                if let Some(old) = s.by_node.insert(name, i) {
                    if old != i {
                        s.used.remove(&old);
                    }
                }
                s.used.insert(i);
                false
            }
            (false, None) => {
                let has_cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some();
                if !has_cidr && !s.waiting.contains(&name) {
                    drop(s);
                    self.queue.add(name);
                }
                return;
            }
            (true, _) => {
                s.waiting.remove(&name);
                match s.by_node.remove(&name) {
                    Some(old) => s.used.remove(&old),
                    None => false,
                }
            }
        };
        if freed {
            let waiting: Vec<String> = s.waiting.drain().collect();
            drop(s);
            for w in waiting {
                self.queue.add(w);
            }
        }
    }

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
        let cidr = {
            let mut s = self.state.lock().unwrap();
            match self.range.next_free(&s.used) {
                Some(c) => {
                    // Reserved now; the cache confirms it (or a delete frees it) later.
                    s.used.insert(self.range.index(&c).unwrap_or(0));
                    c
                }
                None => {
                    s.waiting.insert(name.to_string());
                    drop(s);
                    tracing::warn!(node = name, "no pod CIDR left in the cluster CIDR");
                    self.recorder.publish(
                        node.as_ref(),
                        EventType::Normal,
                        "CIDRNotAvailable",
                        format!("Node {name} status is now: CIDRNotAvailable"),
                    );
                    return Ok(());
                }
            }
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // Not taken after all.
                if let Some(i) = self.range.index(&cidr) {
                    let mut s = self.state.lock().unwrap();
                    if !s.by_node.values().any(|v| *v == i) {
                        s.used.remove(&i);
                    }
                }
                if is_gone_or_conflict(&e) {
                    Ok(())
                } else {
                    Err(api_err(format!("assigning podCIDR to {name}"))(e))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_the_lowest_free_subnet() {
        let r = Range::default();
        let mut used = BTreeSet::new();
        assert_eq!(r.next_free(&used).unwrap(), "10.42.0.0/24");
        used.insert(0);
        used.insert(2);
        assert_eq!(r.next_free(&used).unwrap(), "10.42.1.0/24");
        used.insert(1);
        assert_eq!(r.next_free(&used).unwrap(), "10.42.3.0/24");
        assert_eq!(r.index("10.42.7.0/24"), Some(7));
        assert_eq!(r.index("10.43.0.0/24"), None);
        assert_eq!(r.index("10.42.7.0/25"), None);
        let all: BTreeSet<u32> = (0..256).collect();
        assert_eq!(r.next_free(&all), None);
    }

    #[test]
    fn ranges_follow_the_flags() {
        let r = Range::parse("10.128.0.0/11", 24).unwrap();
        assert_eq!(r.size(), 8192);
        assert_eq!(r.subnet(8191), "10.159.255.0/24");
        assert_eq!(r.index("10.159.255.0/24"), Some(8191));
        let r = Range::parse("10.42.0.0/16", 26).unwrap();
        assert_eq!(r.size(), 1024);
        assert_eq!(r.subnet(5), "10.42.1.64/26");
        assert!(Range::parse("10.42.0.1/16", 24).is_err());
        assert!(Range::parse("10.42.0.0/24", 16).is_err());
        assert!(Range::parse("10.42.0.0", 24).is_err());
    }
}
