//! Node lifecycle, as upstream's node lifecycle and taint eviction controllers.
//!
//! - Health: a node whose Lease (in `kube-node-lease`) and Ready heartbeat both stop changing
//!   for the grace period gets its Ready, MemoryPressure, DiskPressure and PIDPressure
//!   conditions set to `Unknown` ("Kubelet stopped posting node status."), a `NodeNotReady`
//!   event, and its pods marked not Ready so Services stop sending them traffic.
//! - Taints by condition: `NoSchedule` taints follow the node's conditions and cordon
//!   (`not-ready`, `unreachable`, `memory-pressure`, `disk-pressure`, `pid-pressure`,
//!   `network-unavailable`, `unschedulable`), and a `NoExecute` `not-ready` or `unreachable`
//!   taint follows Ready. New `NoExecute` taints are rate-limited per zone as upstream
//!   (0.1 node/s; none while a small zone is mostly down), and when every zone is fully down
//!   none are kept at all: a cluster that lost every node keeps its pods.
//! - Taint eviction: a pod on a node with a `NoExecute` taint it does not tolerate is deleted
//!   at once; one it tolerates for `tolerationSeconds` (300 s by default, added at admission)
//!   is deleted when that time has passed since the taint was added. Its controller then
//!   replaces it on another node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::pods_by_node::PodsByNode;
use crate::{api_err, Result};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The `NoSchedule` taints this controller owns.
const NO_SCHEDULE_KEYS: [&str; 7] = [
    NOT_READY,
    UNREACHABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    PID_PRESSURE,
    NETWORK_UNAVAILABLE,
    UNSCHEDULABLE,
];

/// Conditions set to Unknown when the kubelet stops reporting.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Upstream's defaults: --node-eviction-rate, --secondary-node-eviction-rate,
/// --unhealthy-zone-threshold and --large-cluster-size-threshold.
const EVICTION_QPS: f64 = 0.1;
const SECONDARY_EVICTION_QPS: f64 = 0.01;
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
const LARGE_CLUSTER_SIZE: usize = 50;

/// Timing, as kube-controller-manager's flags of the same names.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--node-monitor-grace-period`: how long a node may go without a heartbeat (Lease
    /// renewal or Ready condition) before it is marked Unknown. 50 s, as upstream since 1.32.
    pub grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted Ready.
    pub startup_grace_period: Duration,
    /// `--node-monitor-period`: how often node health is checked.
    pub monitor_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
            monitor_period: Duration::from_secs(5),
        }
    }
}

// ------------------------------------------------------------------ pure logic

/// How a zone is doing, as upstream's ComputeZoneState.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The rate at which a zone's nodes may get new `NoExecute` taints, as upstream's
/// HealthyQPSFunc / ReducedQPSFunc.
pub fn zone_qps(state: ZoneState, zone_size: usize) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => EVICTION_QPS,
        ZoneState::PartialDisruption if zone_size > LARGE_CLUSTER_SIZE => SECONDARY_EVICTION_QPS,
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A token bucket with a burst of one, as upstream's eviction rate limiter.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            tokens: 1.0,
            last: now,
        }
    }

    fn take(&mut self, qps: f64, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * qps).min(1.0);
        if qps > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A node's zone key: region and zone labels, as upstream's GetZoneKey.
fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

fn condition<'a>(node: &'a Node, t: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

/// The `NoSchedule` taint keys a node should carry: from its conditions (with Ready as
/// `ready`, which is Unknown once the node is stale) and its cordon.
pub fn no_schedule_keys(node: &Node, ready: &str) -> Vec<&'static str> {
    let mut keys = Vec::new();
    match ready {
        "False" => keys.push(NOT_READY),
        "Unknown" => keys.push(UNREACHABLE),
        _ => {}
    }
    if ready != "Unknown" {
        for (cond, key) in [
            ("MemoryPressure", MEMORY_PRESSURE),
            ("DiskPressure", DISK_PRESSURE),
            ("PIDPressure", PID_PRESSURE),
            ("NetworkUnavailable", NETWORK_UNAVAILABLE),
        ] {
            if condition(node, cond).is_some_and(|c| c.status == "True") {
                keys.push(key);
            }
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The `NoExecute` taint Ready calls for.
pub fn no_execute_key(ready: &str) -> Option<&'static str> {
    match ready {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    }
}

fn is_ours_no_execute(t: &Taint) -> bool {
    t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE)
}

fn is_ours_no_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" && NO_SCHEDULE_KEYS.contains(&t.key.as_str())
}

/// The node's taints with ours replaced by `no_schedule` and `no_execute`, or None when
/// nothing changes. Taints that stay keep their `timeAdded`; only `NoExecute` ones get one.
pub fn reconcile_taints(
    current: &[Taint],
    no_schedule: &[&str],
    no_execute: Option<&str>,
    now: &Time,
) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            if is_ours_no_schedule(t) {
                no_schedule.contains(&t.key.as_str())
            } else if is_ours_no_execute(t) {
                no_execute == Some(t.key.as_str())
            } else {
                true
            }
        })
        .cloned()
        .collect();
    for k in no_schedule {
        if !out.iter().any(|t| t.key == *k && t.effect == "NoSchedule") {
            out.push(Taint {
                key: (*k).into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    if let Some(k) = no_execute {
        if !out.iter().any(|t| t.key == k && t.effect == "NoExecute") {
            out.push(Taint {
                key: k.into(),
                effect: "NoExecute".into(),
                time_added: Some(now.clone()),
                ..Default::default()
            });
        }
    }
    (out != current).then_some(out)
}

/// How long a pod may stay given the tolerations it uses, as upstream's
/// getMinTolerationTime: the least `tolerationSeconds` (zero or less: none), or None when
/// none sets it (forever).
pub fn min_toleration(used: &[&Toleration]) -> Option<Duration> {
    let secs = used.iter().filter_map(|t| t.toleration_seconds).min()?;
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// What to do with a pod on a node with these `NoExecute` taints.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Stay,
    EvictNow,
    /// Evict once this much time has passed since the taints were added.
    EvictAfter(Duration),
}

pub fn verdict(tolerations: &[Toleration], no_execute: &[&Taint]) -> Verdict {
    if no_execute.is_empty() {
        return Verdict::Stay;
    }
    let mut used = Vec::new();
    for taint in no_execute {
        let matching: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| skiff_client::toleration_tolerates(t, taint))
            .collect();
        if matching.is_empty() {
            return Verdict::EvictNow;
        }
        used.extend(matching);
    }
    match min_toleration(&used) {
        None => Verdict::Stay,
        Some(d) if d.is_zero() => Verdict::EvictNow,
        Some(d) => Verdict::EvictAfter(d),
    }
}

// ------------------------------------------------------------------ the controller

#[derive(Debug)]
struct Health {
    /// When a heartbeat was last seen to change.
    probe: Instant,
    heartbeat: Option<Time>,
    renew: Option<MicroTime>,
    /// The Ready status last acted on.
    ready: String,
}

struct Ctl {
    client: Client,
    config: Config,
    nodes: Store<Node>,
    pods: Store<Pod>,
    leases: Store<Lease>,
    health: Mutex<HashMap<String, Health>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Pod keys by node name.
    pods_by_node: Mutex<PodsByNode>,
    /// Each node's `NoExecute` taints as last seen, to requeue its pods when they change.
    no_execute: Mutex<HashMap<String, Vec<Taint>>>,
    evictions: Queue,
    recorder: Recorder,
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

pub fn start(informers: &Arc<Informers>, config: Config) {
    let pods = informers.pods();
    let nodes = informers.nodes();
    let leases = informers.leases();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        config,
        nodes: nodes.store(),
        pods: pods.store(),
        leases: leases.store(),
        health: Default::default(),
        buckets: Default::default(),
        pods_by_node: Default::default(),
        no_execute: Default::default(),
        evictions: Queue::new(),
        recorder: Recorder::new(informers.client(), "node-controller"),
    });
    let w = Arc::downgrade(&ctl);
    pods.on_change(move |c| {
        if let Some(ctl) = w.upgrade() {
            ctl.on_pod(c);
        }
    });
    let w = Arc::downgrade(&ctl);
    nodes.on_change(move |c| {
        if let Some(ctl) = w.upgrade() {
            ctl.on_node(c);
        }
    });
    let i = informers.clone();
    tokio::spawn(async move {
        i.pods().synced().await;
        i.nodes().synced().await;
        i.leases().synced().await;
        let c = ctl.clone();
        skiff_client::run_workers(ctl.evictions.clone(), 4, "taint-eviction", move |key| {
            let c = c.clone();
            async move { c.sync_pod(&key).await }
        });
        let mut tick = tokio::time::interval(ctl.config.monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ctl.monitor().await;
        }
    });
}

impl Ctl {
    fn on_pod(&self, c: Change<'_, Pod>) {
        let (p, deleted) = match c {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        let key = skiff_client::key_of(&p.metadata);
        if deleted {
            self.pods_by_node.lock().unwrap().remove(&key);
            return;
        }
        self.pods_by_node.lock().unwrap().apply(&key, p);
        let Some(node) = skiff_client::pod_node(p) else {
            return;
        };
        if p.metadata.deletion_timestamp.is_none()
            && self
                .no_execute
                .lock()
                .unwrap()
                .get(node)
                .is_some_and(|t| !t.is_empty())
        {
            self.evictions.add(key);
        }
    }

    fn on_node(&self, c: Change<'_, Node>) {
        let (name, taints) = match c {
            Change::Applied(n) => (n.name_any(), no_execute_taints(n)),
            Change::Deleted(n) => {
                self.no_execute.lock().unwrap().remove(&n.name_any());
                return;
            }
        };
        let changed = {
            let mut seen = self.no_execute.lock().unwrap();
            let changed = seen.get(&name) != Some(&taints);
            seen.insert(name.clone(), taints.clone());
            changed
        };
        if changed && !taints.is_empty() {
            let keys = self.pods_by_node.lock().unwrap().pods_on(&name);
            for k in keys {
                self.evictions.add(k);
            }
        }
    }

    /// One pass over every node: staleness, conditions, taints.
    async fn monitor(&self) {
        let nodes = self.nodes.state();
        let now = Instant::now();
        // (node, effective Ready, stale, became not ready)
        let mut seen: Vec<(Arc<Node>, String, bool, bool)> = Vec::with_capacity(nodes.len());
        let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        {
            let mut health = self.health.lock().unwrap();
            let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
            health.retain(|n, _| names.contains(n));
            for node in nodes {
                let name = node.name_any();
                let ready = condition(&node, "Ready");
                let heartbeat = ready.and_then(|c| c.last_heartbeat_time.clone());
                let renew = self
                    .leases
                    .get(&ObjectRef::new(&name).within("kube-node-lease"))
                    .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()));
                let h = health.entry(name).or_insert_with(|| Health {
                    probe: now,
                    heartbeat: heartbeat.clone(),
                    renew: renew.clone(),
                    ready: String::new(),
                });
                if h.heartbeat != heartbeat || h.renew != renew {
                    h.probe = now;
                    h.heartbeat = heartbeat;
                    h.renew = renew;
                }
                let grace = if ready.is_some() {
                    self.config.grace_period
                } else {
                    self.config.startup_grace_period
                };
                let stale = now.duration_since(h.probe) > grace;
                let status = match ready {
                    _ if stale => "Unknown".to_string(),
                    Some(c) => c.status.clone(),
                    None => "Unknown".to_string(),
                };
                let became_not_ready = h.ready == "True" && status != "True";
                h.ready = status.clone();
                let z = zones.entry(zone_of(&node)).or_default();
                if status == "True" {
                    z.0 += 1;
                } else {
                    z.1 += 1;
                }
                seen.push((node, status, stale, became_not_ready));
            }
        }
        let states: BTreeMap<String, (ZoneState, usize)> = zones
            .iter()
            .map(|(z, (r, n))| (z.clone(), (zone_state(*r, *n), r + n)))
            .collect();
        let all_down = !states.is_empty()
            && states
                .values()
                .all(|(s, _)| *s == ZoneState::FullDisruption);
        if all_down {
            tracing::debug!("every zone is fully disrupted; no NoExecute taints");
        }
        let api_now = skiff_client::now();
        let mut writes = Vec::new();
        for (node, ready, stale, became_not_ready) in seen {
            if stale {
                writes.push(Write::Unknown(node.clone()));
            }
            if became_not_ready {
                writes.push(Write::NotReady(node.clone(), ready.clone()));
            }
            let current = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let want = if all_down {
                None
            } else {
                no_execute_key(&ready)
            };
            let have = current
                .iter()
                .find(|t| is_ours_no_execute(t))
                .map(|t| t.key.as_str());
            let no_execute = match (have, want) {
                (_, None) => None,
                // Swapping not-ready and unreachable is not rate-limited, as upstream.
                (Some(_), Some(w)) => Some(w),
                (None, Some(w)) => {
                    let zone = zone_of(&node);
                    let (state, size) = states[&zone];
                    let mut buckets = self.buckets.lock().unwrap();
                    let bucket = buckets.entry(zone).or_insert_with(|| Bucket::new(now));
                    bucket.take(zone_qps(state, size), now).then_some(w)
                }
            };
            let no_schedule = no_schedule_keys(&node, &ready);
            if let Some(taints) = reconcile_taints(&current, &no_schedule, no_execute, &api_now) {
                writes.push(Write::Taints(node.clone(), taints));
            }
        }
        futures::stream::iter(writes)
            .for_each_concurrent(16, |w| async move {
                if let Err(e) = self.write(w).await {
                    tracing::debug!(error = %e, "node lifecycle write failed");
                }
            })
            .await;
    }

    async fn write(&self, w: Write) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match w {
            Write::Unknown(node) => {
                let Some(patch) = unknown_conditions(&node) else {
                    return Ok(());
                };
                tracing::info!(node = %node.name_any(), "node stopped posting status; marking it Unknown");
                nodes
                    .patch_status(
                        &node.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                    .map_err(api_err(format!("marking node {} Unknown", node.name_any())))?;
            }
            Write::NotReady(node, _ready) => {
                let name = node.name_any();
                self.recorder.publish(
                    node.as_ref(),
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                self.mark_pods_not_ready(&name).await;
            }
            Write::Taints(node, taints) => {
                let name = node.name_any();
                tracing::debug!(node = %name, ?taints, "updating node taints");
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": node.resource_version()},
                    "spec": {"taints": taints},
                });
                nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(api_err(format!("tainting node {name}")))?;
            }
        }
        Ok(())
    }

    /// Sets Ready=False on the node's pods, as upstream's MarkPodsNotReady.
    async fn mark_pods_not_ready(&self, node: &str) {
        let keys = self.pods_by_node.lock().unwrap().pods_on(node);
        let now = skiff_client::now();
        futures::stream::iter(keys)
            .for_each_concurrent(16, |key| {
                let now = now.clone();
                async move {
                    let (ns, name) = skiff_client::split_key(&key);
                    let ns = ns.unwrap_or("default");
                    let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
                        return;
                    };
                    if !skiff_client::pod_is_ready(&pod) {
                        return;
                    }
                    let patch = serde_json::json!({"status": {"conditions": [
                        {"type": "Ready", "status": "False", "lastTransitionTime": now},
                    ]}});
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                    if let Err(e) = api
                        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        tracing::debug!(pod = %key, error = %e, "marking pod not ready failed");
                    }
                }
            })
            .await;
    }

    async fn sync_pod(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(node) =
            skiff_client::pod_node(&pod).and_then(|n| self.nodes.get(&ObjectRef::new(n)))
        else {
            return Ok(());
        };
        let taints = no_execute_taints(&node);
        let refs: Vec<&Taint> = taints.iter().collect();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        match verdict(&tolerations, &refs) {
            Verdict::Stay => Ok(()),
            Verdict::EvictNow => self.evict(&pod).await,
            Verdict::EvictAfter(d) => {
                let now = k8s_openapi::jiff::Timestamp::now();
                let since = taints
                    .iter()
                    .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
                    .min()
                    .unwrap_or(now);
                let elapsed = now.duration_since(since).unsigned_abs();
                if elapsed >= d {
                    self.evict(&pod).await
                } else {
                    // Looked at again then; the taints may be gone by that time.
                    self.evictions.add_after(key, d - elapsed);
                    Ok(())
                }
            }
        }
    }

    async fn evict(&self, pod: &Pod) -> Result<()> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        self.recorder.publish(
            pod,
            EventType::Normal,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": skiff_client::now(),
        }]}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            if crate::is_gone_or_conflict(&e) {
                return Ok(());
            }
            return Err(api_err(format!("marking pod {ns}/{name} for eviction"))(e));
        }
        tracing::info!(pod = %format!("{ns}/{name}"), "evicting pod from a NoExecute-tainted node");
        let dp = DeleteParams {
            preconditions: pod.uid().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if crate::is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("deleting pod {ns}/{name}"))(e)),
        }
    }
}

enum Write {
    Unknown(Arc<Node>),
    NotReady(Arc<Node>, String),
    Taints(Arc<Node>, Vec<Taint>),
}

/// The status patch that marks a stale node's kubelet conditions Unknown, keeping their last
/// heartbeat; None when they already are.
fn unknown_conditions(node: &Node) -> Option<serde_json::Value> {
    let now = skiff_client::now();
    let created = node.metadata.creation_timestamp.clone();
    let mut conds = Vec::new();
    for t in KUBELET_CONDITIONS {
        match condition(node, t) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => conds.push(serde_json::json!({
                "type": t, "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": c.last_heartbeat_time,
                "lastTransitionTime": now,
            })),
            None => conds.push(serde_json::json!({
                "type": t, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": created,
                "lastTransitionTime": now,
            })),
        }
    }
    (!conds.is_empty()).then(|| serde_json::json!({"status": {"conditions": conds}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(spec: serde_json::Value) -> Node {
        serde_json::from_value(spec).unwrap()
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn zone_states_follow_upstream_thresholds() {
        assert_eq!(zone_state(3, 1), ZoneState::Normal);
        assert_eq!(zone_state(0, 1), ZoneState::FullDisruption);
        assert_eq!(
            zone_state(1, 2),
            ZoneState::Normal,
            "two down is never partial"
        );
        assert_eq!(zone_state(2, 3), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3), ZoneState::Normal, "50% is under 55%");
        assert_eq!(zone_qps(ZoneState::PartialDisruption, 10), 0.0);
        assert_eq!(zone_qps(ZoneState::PartialDisruption, 100), 0.01);
        assert_eq!(zone_qps(ZoneState::FullDisruption, 10), 0.1);
    }

    #[test]
    fn the_bucket_allows_one_then_waits() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        assert!(b.take(0.1, t0));
        assert!(!b.take(0.1, t0 + Duration::from_secs(5)));
        assert!(b.take(0.1, t0 + Duration::from_secs(11)));
        assert!(!b.take(0.0, t0 + Duration::from_secs(100)));
    }

    #[test]
    fn taints_follow_conditions_and_cordon() {
        let n = node(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"unschedulable": true},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "DiskPressure", "status": "True"},
            ]},
        }));
        assert_eq!(
            no_schedule_keys(&n, "True"),
            vec![DISK_PRESSURE, UNSCHEDULABLE]
        );
        assert_eq!(
            no_schedule_keys(&n, "Unknown"),
            vec![UNREACHABLE, UNSCHEDULABLE]
        );
        assert_eq!(no_execute_key("False"), Some(NOT_READY));
        assert_eq!(no_execute_key("Unknown"), Some(UNREACHABLE));
        assert_eq!(no_execute_key("True"), None);
    }

    #[test]
    fn reconcile_keeps_foreign_taints_and_time_added() {
        let now = skiff_client::now();
        let user = taint("dedicated", "NoSchedule");
        let mut old = taint(NOT_READY, "NoExecute");
        old.time_added = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        // unreachable replaces not-ready; the user's taint stays.
        let out = reconcile_taints(
            &[user.clone(), old.clone()],
            &[UNREACHABLE],
            Some(UNREACHABLE),
            &now,
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], user);
        assert_eq!(out[1], taint(UNREACHABLE, "NoSchedule"));
        assert_eq!(out[2].key, UNREACHABLE);
        assert_eq!(out[2].time_added, Some(now.clone()));
        // An unchanged set is no write, and the old timeAdded is kept.
        assert_eq!(
            reconcile_taints(&[user.clone(), old.clone()], &[], Some(NOT_READY), &now),
            None
        );
        // Recovery removes ours only.
        assert_eq!(
            reconcile_taints(&[user.clone(), old], &[], None, &now),
            Some(vec![user])
        );
    }

    #[test]
    fn eviction_verdicts_follow_tolerations() {
        let unreachable = taint(UNREACHABLE, "NoExecute");
        let not_ready = taint(NOT_READY, "NoExecute");
        let default_tols = vec![
            tol(
                serde_json::json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
            tol(
                serde_json::json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
        ];
        assert_eq!(verdict(&default_tols, &[]), Verdict::Stay);
        assert_eq!(
            verdict(&default_tols, &[&unreachable]),
            Verdict::EvictAfter(Duration::from_secs(300))
        );
        assert_eq!(verdict(&[], &[&unreachable]), Verdict::EvictNow);
        let short = vec![
            default_tols[0].clone(),
            tol(
                serde_json::json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}),
            ),
        ];
        assert_eq!(
            verdict(&short, &[&unreachable, &not_ready]),
            Verdict::EvictAfter(Duration::from_secs(2))
        );
        // Tolerating forever (no seconds) stays; zero seconds goes at once.
        let forever = vec![tol(serde_json::json!({"operator": "Exists"}))];
        assert_eq!(verdict(&forever, &[&unreachable]), Verdict::Stay);
        let zero = vec![tol(
            serde_json::json!({"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 0}),
        )];
        assert_eq!(verdict(&zero, &[&unreachable]), Verdict::EvictNow);
        // A taint no toleration matches evicts at once even when another is tolerated.
        let other = taint("example.com/drain", "NoExecute");
        assert_eq!(
            verdict(&default_tols, &[&unreachable, &other]),
            Verdict::EvictNow
        );
    }

    #[test]
    fn stale_nodes_get_unknown_conditions_once() {
        let n = node(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
                {"type": "MemoryPressure", "status": "Unknown"},
            ]},
        }));
        let patch = unknown_conditions(&n).unwrap();
        let conds = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 3, "MemoryPressure is Unknown already");
        assert_eq!(conds[0]["reason"], "NodeStatusUnknown");
        assert_eq!(conds[0]["message"], "Kubelet stopped posting node status.");
        assert_eq!(conds[0]["lastHeartbeatTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conds[1]["reason"], "NodeStatusNeverUpdated");
        let all_unknown = node(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"conditions": KUBELET_CONDITIONS.iter().map(|t| serde_json::json!({"type": t, "status": "Unknown"})).collect::<Vec<_>>()},
        }));
        assert_eq!(unknown_conditions(&all_unknown), None);
    }
}
