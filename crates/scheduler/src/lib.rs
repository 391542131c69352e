//! The scheduler: pods without a node go into a priority queue; each is filtered and scored
//! against a node snapshot kept from watches, assumed onto the best node and bound through
//! `pods/binding`. Pods that fit nowhere get `PodScheduled=False` and a `FailedScheduling`
//! event, and are retried when nodes or pods change.

pub mod plugins;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use rand::Rng;
use skiff_client::{Change, EventType, Informers, Recorder};
use tokio::sync::{Notify, Semaphore};

use plugins::{NodeInfo, PodInfo};

/// The name pods ask for in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How long an unschedulable pod waits at most before it is tried again without any change.
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Cache {
    nodes: HashMap<String, NodeInfo>,
    /// Bound or assumed pods by uid: (node, what they use).
    pods: HashMap<String, (String, PodInfo)>,
    /// Pods bound by us whose binding the watch has not shown yet.
    assumed: HashSet<String>,
}

impl Cache {
    fn add_pod(&mut self, uid: &str, node: &str, info: PodInfo) {
        self.remove_pod(uid);
        let ni = self.nodes.entry(node.to_string()).or_default();
        ni.add_pod(&info);
        self.pods.insert(uid.to_string(), (node.to_string(), info));
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some((node, info)) = self.pods.remove(uid) {
            if let Some(ni) = self.nodes.get_mut(&node) {
                ni.remove_pod(&info);
            }
        }
    }
}

#[derive(Default)]
struct SchedQueue {
    /// (priority, FIFO order) -> key.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    in_active: HashSet<String>,
    unschedulable: HashSet<String>,
    seq: u64,
}

struct Scheduler {
    pods: Arc<skiff_client::Informer<Pod>>,
    nodes: Arc<skiff_client::Informer<Node>>,
    client: kube::Client,
    cache: Mutex<Cache>,
    queue: Mutex<SchedQueue>,
    wake: Notify,
    recorder: Recorder,
    binds: Arc<Semaphore>,
}

fn responsible(p: &Pod) -> bool {
    let Some(spec) = &p.spec else { return false };
    spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && spec.node_name.as_deref().is_none_or(str::is_empty)
        && p.metadata.deletion_timestamp.is_none()
        && skiff_client::pod_is_active(p)
}

fn bound_node(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Registers the scheduler's handlers on `informers` and spawns its loop. Call before
/// `informers.start()`.
pub fn start(informers: &Arc<Informers>) {
    let s = Arc::new(Scheduler {
        pods: informers.pods(),
        nodes: informers.nodes(),
        client: informers.client(),
        cache: Mutex::new(Cache::default()),
        queue: Mutex::new(SchedQueue::default()),
        wake: Notify::new(),
        recorder: Recorder::new(informers.client(), SCHEDULER_NAME),
        binds: Arc::new(Semaphore::new(16)),
    });
    let w = Arc::downgrade(&s);
    s.pods.on_change(move |c| {
        if let Some(s) = w.upgrade() {
            s.on_pod(c)
        }
    });
    let w = Arc::downgrade(&s);
    s.nodes.on_change(move |c| {
        if let Some(s) = w.upgrade() {
            s.on_node(c)
        }
    });
    tokio::spawn(async move {
        s.pods.synced().await;
        s.nodes.synced().await;
        let flusher = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UNSCHEDULABLE_FLUSH);
            loop {
                tick.tick().await;
                flusher.flush_unschedulable();
            }
        });
        tracing::debug!("scheduler started");
        s.run().await;
    });
}

impl Scheduler {
    fn on_pod(&self, c: Change<'_, Pod>) {
        let (p, deleted) = match c {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        let uid = p.uid().unwrap_or_default();
        let key = skiff_client::key_of(&p.metadata);
        let mut freed = false;
        {
            let mut cache = self.cache.lock().unwrap();
            match bound_node(p) {
                Some(node) if !deleted && !is_terminal(p) => {
                    cache.assumed.remove(&uid);
                    let known = cache.pods.get(&uid).map(|(n, _)| n.as_str()) == Some(node);
                    if !known {
                        cache.add_pod(&uid, node, PodInfo::from_pod(p));
                    }
                }
                _ => {
                    if cache.pods.contains_key(&uid) && !cache.assumed.contains(&uid) || deleted {
                        freed = cache.pods.contains_key(&uid);
                        cache.assumed.remove(&uid);
                        cache.remove_pod(&uid);
                    }
                }
            }
        }
        if deleted || !responsible(p) {
            let mut q = self.queue.lock().unwrap();
            q.unschedulable.remove(&key);
            drop(q);
            if freed {
                self.flush_unschedulable();
            }
            return;
        }
        // An unschedulable pod waits for a change elsewhere, not for its own status writes.
        if self.queue.lock().unwrap().unschedulable.contains(&key) {
            return;
        }
        let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.enqueue(key, prio);
    }

    fn on_node(&self, c: Change<'_, Node>) {
        {
            let mut cache = self.cache.lock().unwrap();
            match c {
                Change::Applied(n) => {
                    cache.nodes.entry(n.name_any()).or_default().set_node(n);
                }
                Change::Deleted(n) => {
                    cache.nodes.remove(&n.name_any());
                }
            }
        }
        self.flush_unschedulable();
    }

    fn enqueue(&self, key: String, prio: i32) {
        tracing::trace!(pod = %key, "enqueue");
        let mut q = self.queue.lock().unwrap();
        if q.in_active.insert(key.clone()) {
            q.seq += 1;
            let seq = q.seq;
            q.active.push((prio, Reverse(seq), key));
            drop(q);
            self.wake.notify_one();
        }
    }

    fn flush_unschedulable(&self) {
        let keys: Vec<String> = self.queue.lock().unwrap().unschedulable.drain().collect();
        for k in keys {
            self.enqueue(k, 0);
        }
    }

    async fn next(&self) -> String {
        loop {
            let notified = self.wake.notified();
            {
                let mut q = self.queue.lock().unwrap();
                if let Some((_, _, k)) = q.active.pop() {
                    q.in_active.remove(&k);
                    return k;
                }
            }
            notified.await;
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let key = self.next().await;
            tracing::debug!(pod = %key, "scheduling");
            let (ns, name) = skiff_client::split_key(&key);
            let Some(pod) = self
                .pods
                .store()
                .get(&ObjectRef::new(name).within(ns.unwrap_or("default")))
            else {
                continue;
            };
            if !responsible(&pod) {
                continue;
            }
            let uid = pod.uid().unwrap_or_default();
            if self.cache.lock().unwrap().pods.contains_key(&uid) {
                // Assumed already; the binding is in flight.
                continue;
            }
            match self.schedule_one(&pod) {
                Ok(node) => {
                    let permit = self.binds.clone().acquire_owned().await;
                    let s = self.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        s.bind(&pod, &node).await;
                    });
                }
                Err(message) => {
                    self.queue.lock().unwrap().unschedulable.insert(key);
                    self.fail(&pod, message).await;
                }
            }
        }
    }

    /// Picks a node and assumes the pod onto it, or returns the FitError message.
    fn schedule_one(&self, pod: &Pod) -> Result<String, String> {
        let info = PodInfo::from_pod(pod);
        let mut cache = self.cache.lock().unwrap();
        let mut feasible: Vec<&NodeInfo> = Vec::new();
        let mut reasons = Vec::new();
        let mut total = 0;
        for n in cache.nodes.values().filter(|n| !n.name.is_empty()) {
            total += 1;
            match plugins::filter(pod, &info, n) {
                Ok(()) => feasible.push(n),
                Err(r) => reasons.push(r),
            }
        }
        if feasible.is_empty() {
            return Err(plugins::fit_error_message(total, &reasons));
        }
        let scores = plugins::score(&info, &feasible);
        let best = scores.iter().copied().max().unwrap_or(0);
        let best_nodes: Vec<&str> = feasible
            .iter()
            .zip(&scores)
            .filter(|(_, s)| **s == best)
            .map(|(n, _)| n.name.as_str())
            .collect();
        let node = best_nodes[rand::rng().random_range(0..best_nodes.len())].to_string();
        let uid = pod.uid().unwrap_or_default();
        cache.add_pod(&uid, &node, info);
        cache.assumed.insert(uid);
        Ok(node)
    }

    async fn bind(&self, pod: &Pod, node: &str) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.uid(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let res: Result<serde_json::Value, _> = api
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await;
        match res {
            Ok(_) => {
                self.recorder.publish(
                    pod,
                    EventType::Normal,
                    "Scheduled",
                    format!("Successfully assigned {ns}/{name} to {node}"),
                );
            }
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "binding failed");
                let uid = pod.uid().unwrap_or_default();
                {
                    let mut cache = self.cache.lock().unwrap();
                    if cache.assumed.remove(&uid) {
                        cache.remove_pod(&uid);
                    }
                }
                let key = skiff_client::key_of(&pod.metadata);
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.enqueue(key, 0);
            }
        }
    }

    async fn fail(&self, pod: &Pod, message: String) {
        tracing::debug!(pod = %pod.name_any(), %message, "unschedulable");
        self.recorder
            .publish(pod, EventType::Warning, "FailedScheduling", message.clone());
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current
            .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()))
        {
            return;
        }
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null,
            "lastTransitionTime": skiff_client::now(),
        }]}});
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), error = %e, "writing PodScheduled failed");
        }
    }
}
