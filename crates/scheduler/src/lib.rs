//! The scheduler: pods without a node go into a priority queue; each is filtered and scored
//! against a node snapshot kept from watches, assumed onto the best node and bound through
//! `pods/binding`. As upstream, a pod's search for feasible nodes starts where the previous
//! one stopped and ends once enough fit (percentageOfNodesToScore), so a large cluster is not
//! filtered whole for every pod. Pods that fit nowhere get `PodScheduled=False` and a
//! `FailedScheduling` event, and are retried when a node changes or a pod goes away (and, for
//! those whose required pod affinity failed, when a pod is placed), or every 30 s.

pub mod plugins;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use rand::Rng;
use skiff_client::{Change, EventType, Informers, Recorder};
use tokio::sync::{Notify, Semaphore};

use plugins::{Cycle, Diagnosis, Labels, NodeCounts, NodeInfo, PodAffinityTerms, PodInfo};

/// The name pods ask for in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How long an unschedulable pod waits at most before it is tried again without any change.
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Cache {
    /// Nodes in a stable order, so that a search starting at a rotating index visits each in
    /// turn; `index` finds them by name.
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// How many of `nodes` are known Nodes (the rest hold pods bound to unknown nodes).
    num_nodes: usize,
    /// Where the next search for feasible nodes starts.
    next_start: usize,
    /// Bound or assumed pods by uid: (node, what they use).
    pods: HashMap<String, (String, PodInfo)>,
    /// Pods by namespace and labels, counted per node: what pod affinity terms select.
    pod_groups: HashMap<String, HashMap<Labels, NodeCounts>>,
    /// Pods with pod affinity or anti-affinity, by their terms, counted per node.
    affinity_groups: HashMap<PodAffinityTerms, NodeCounts>,
    /// Pods bound by us whose binding the watch has not shown yet.
    assumed: HashSet<String>,
    /// Namespace labels, for namespace selectors in pod affinity terms.
    namespaces: HashMap<String, Labels>,
}

/// Why a pod fits nowhere.
#[derive(Debug)]
struct Unschedulable {
    /// Upstream's FitError text.
    message: String,
    /// Whether a pod placed somewhere could make it fit (its required pod affinity failed).
    waits_for_pods: bool,
}

impl Cache {
    fn slot(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    fn set_node(&mut self, n: &Node) {
        let slot = self.slot(&n.name_any());
        let new = !slot.known;
        slot.set_node(n);
        if new {
            self.num_nodes += 1;
        }
    }

    fn delete_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].known {
            self.num_nodes -= 1;
        }
        // A node with pods stays as a placeholder until they are gone, in case it returns.
        self.nodes[i].known = false;
        if self.nodes[i].pod_count <= 0 {
            self.drop_slot(i);
        }
    }

    fn drop_slot(&mut self, i: usize) {
        let gone = self.nodes.swap_remove(i);
        self.index.remove(&gone.name);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// A known node.
    fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index
            .get(name)
            .map(|i| &self.nodes[*i])
            .filter(|n| n.known)
    }

    fn add_pod(&mut self, uid: &str, node: &str, info: PodInfo) {
        self.remove_pod(uid);
        self.slot(node).add_pod(&info);
        self.count_in_groups(&info, node, 1);
        self.pods.insert(uid.to_string(), (node.to_string(), info));
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some((node, info)) = self.pods.remove(uid) {
            self.count_in_groups(&info, &node, -1);
            if let Some(&i) = self.index.get(&node) {
                let ni = &mut self.nodes[i];
                ni.remove_pod(&info);
                if !ni.known && ni.pod_count <= 0 {
                    self.drop_slot(i);
                }
            }
        }
    }

    fn count_in_groups(&mut self, info: &PodInfo, node: &str, by: i64) {
        fn count(nodes: &mut NodeCounts, node: &str, by: i64) {
            match nodes.get_mut(node) {
                Some(n) => {
                    *n += by;
                    if *n <= 0 {
                        nodes.remove(node);
                    }
                }
                None if by > 0 => {
                    nodes.insert(node.to_string(), by);
                }
                None => {}
            }
        }
        if !self.pod_groups.contains_key(&info.namespace) {
            self.pod_groups
                .insert(info.namespace.clone(), HashMap::new());
        }
        let by_labels = self.pod_groups.get_mut(&info.namespace).expect("inserted");
        if !by_labels.contains_key(&info.labels) {
            by_labels.insert(info.labels.clone(), NodeCounts::new());
        }
        let nodes = by_labels.get_mut(&info.labels).expect("inserted");
        count(nodes, node, by);
        if nodes.is_empty() {
            by_labels.remove(&info.labels);
            if by_labels.is_empty() {
                self.pod_groups.remove(&info.namespace);
            }
        }
        if let Some(terms) = &info.affinity {
            if !self.affinity_groups.contains_key(&**terms) {
                self.affinity_groups
                    .insert((**terms).clone(), NodeCounts::new());
            }
            let nodes = self.affinity_groups.get_mut(&**terms).expect("inserted");
            count(nodes, node, by);
            if nodes.is_empty() {
                self.affinity_groups.remove(&**terms);
            }
        }
    }

    /// Picks a node for `pod` and assumes the pod onto it. As upstream, the search for
    /// feasible nodes starts where the previous one stopped and ends once
    /// `num_feasible_nodes_to_find` nodes fit; only those are scored.
    fn schedule(&mut self, pod: &Pod) -> Result<String, Unschedulable> {
        let info = PodInfo::from_pod(pod);
        let total = self.nodes.len();
        let start = if total == 0 {
            0
        } else {
            self.next_start % total
        };
        let mut visited = 0;
        let chosen = {
            let cycle = Cycle::new(pod, &info, self);
            let want = plugins::num_feasible_nodes_to_find(self.num_nodes);
            let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
            let mut diagnosis = Diagnosis::default();
            while visited < total && feasible.len() < want {
                let n = &self.nodes[(start + visited) % total];
                visited += 1;
                if !n.known {
                    continue;
                }
                match cycle.filter(n) {
                    Ok(()) => feasible.push(n),
                    Err(reasons) => diagnosis.add(&reasons),
                }
            }
            match feasible.len() {
                0 => Err(Unschedulable {
                    message: diagnosis.message(self.num_nodes),
                    waits_for_pods: diagnosis.waits_for_pods,
                }),
                1 => Ok(feasible[0].name.clone()),
                _ => {
                    let scores = cycle.score(&feasible, self);
                    let best = scores.iter().copied().max().unwrap_or(0);
                    let ties = scores.iter().filter(|s| **s == best).count();
                    let pick = rand::rng().random_range(0..ties);
                    let (n, _) = feasible
                        .iter()
                        .zip(&scores)
                        .filter(|(_, s)| **s == best)
                        .nth(pick)
                        .expect("a best node");
                    Ok(n.name.clone())
                }
            }
        };
        if total > 0 {
            self.next_start = (start + visited) % total;
        }
        let node = chosen?;
        let uid = pod.uid().unwrap_or_default();
        self.add_pod(&uid, &node, info);
        self.assumed.insert(uid);
        Ok(node)
    }
}

impl plugins::Cluster for Cache {
    fn each_pod_group(&self, f: &mut dyn FnMut(&str, &Labels, &NodeCounts)) {
        for (ns, by_labels) in &self.pod_groups {
            for (labels, nodes) in by_labels {
                f(ns, labels, nodes);
            }
        }
    }

    fn each_affinity_group(&self, f: &mut dyn FnMut(&PodAffinityTerms, &NodeCounts)) {
        for (terms, nodes) in &self.affinity_groups {
            f(terms, nodes);
        }
    }

    fn each_node(&self, f: &mut dyn FnMut(&NodeInfo)) {
        for n in self.nodes.iter().filter(|n| n.known) {
            f(n);
        }
    }

    fn node_labels(&self, node: &str) -> Option<&Labels> {
        self.node(node).map(|n| &n.labels)
    }

    fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespaces.get(ns)
    }
}

#[derive(Default)]
struct SchedQueue {
    /// (priority, FIFO order) -> key.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    in_active: HashSet<String>,
    /// Pods that fit nowhere: their priority, and whether a newly placed pod could help.
    unschedulable: HashMap<String, (i32, bool)>,
    seq: u64,
}

struct Scheduler {
    pods: Arc<skiff_client::Informer<Pod>>,
    nodes: Arc<skiff_client::Informer<Node>>,
    namespaces: Arc<skiff_client::Informer<Namespace>>,
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
        namespaces: informers.namespaces(),
        client: informers.client(),
        cache: Mutex::new(Cache::default()),
        queue: Mutex::new(SchedQueue::default()),
        wake: Notify::new(),
        recorder: Recorder::new(informers.client(), SCHEDULER_NAME),
        binds: Arc::new(Semaphore::new(64)),
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
    let w = Arc::downgrade(&s);
    s.namespaces.on_change(move |c| {
        if let Some(s) = w.upgrade() {
            s.on_namespace(c)
        }
    });
    tokio::spawn(async move {
        s.pods.synced().await;
        s.nodes.synced().await;
        s.namespaces.synced().await;
        let flusher = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UNSCHEDULABLE_FLUSH);
            loop {
                tick.tick().await;
                flusher.flush_unschedulable(false);
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
        let mut placed = false;
        {
            let mut cache = self.cache.lock().unwrap();
            match skiff_client::pod_node(p) {
                Some(node) if !deleted && !is_terminal(p) => {
                    let was_assumed = cache.assumed.remove(&uid);
                    let known = cache.pods.get(&uid).map(|(n, _)| n.as_str()) == Some(node);
                    if !known {
                        cache.add_pod(&uid, node, PodInfo::from_pod(p));
                    }
                    placed = was_assumed || !known;
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
                self.flush_unschedulable(false);
            } else if placed {
                // A pod newly on a node may be what a required pod affinity waits for.
                self.flush_unschedulable(true);
            }
            return;
        }
        // An unschedulable pod waits for a change elsewhere, not for its own status writes.
        if self.queue.lock().unwrap().unschedulable.contains_key(&key) {
            return;
        }
        let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.enqueue(key, prio);
    }

    fn on_node(&self, c: Change<'_, Node>) {
        {
            let mut cache = self.cache.lock().unwrap();
            match c {
                Change::Applied(n) => cache.set_node(n),
                Change::Deleted(n) => cache.delete_node(&n.name_any()),
            }
        }
        self.flush_unschedulable(false);
    }

    fn on_namespace(&self, c: Change<'_, Namespace>) {
        let mut cache = self.cache.lock().unwrap();
        match c {
            Change::Applied(ns) => {
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                cache.namespaces.insert(ns.name_any(), labels);
            }
            Change::Deleted(ns) => {
                cache.namespaces.remove(&ns.name_any());
            }
        }
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

    /// Moves unschedulable pods back to the active queue: all of them, or only those a newly
    /// placed pod could help.
    fn flush_unschedulable(&self, only_waiting_for_pods: bool) {
        let mut keys = Vec::new();
        self.queue
            .lock()
            .unwrap()
            .unschedulable
            .retain(|k, (prio, waits)| {
                let go = !only_waiting_for_pods || *waits;
                if go {
                    keys.push((k.clone(), *prio));
                }
                !go
            });
        for (k, prio) in keys {
            self.enqueue(k, prio);
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
            let scheduled = self.cache.lock().unwrap().schedule(&pod);
            match scheduled {
                Ok(node) => {
                    let permit = self.binds.clone().acquire_owned().await;
                    let s = self.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        s.bind(&pod, &node).await;
                    });
                }
                Err(u) => {
                    let prio = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                    self.queue
                        .lock()
                        .unwrap()
                        .unschedulable
                        .insert(key, (prio, u.waits_for_pods));
                    self.fail(&pod, u.message).await;
                }
            }
        }
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
                let prio = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                self.enqueue(key, prio);
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

#[cfg(test)]
mod tests_support {
    use super::*;
    use serde_json::json;

    pub fn node(name: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}
        }))
        .unwrap()
    }

    pub fn cluster(n: usize) -> Cache {
        let mut c = Cache::default();
        for i in 0..n {
            c.set_node(&node(&format!("n{i}")));
        }
        c
    }

    pub fn pod(uid: &str, labels: serde_json::Value, spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "x"}]);
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid, "labels": labels},
            "spec": spec}))
        .unwrap()
    }

    pub fn position(c: &Cache, node: &str) -> usize {
        c.index[node]
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn search_starts_where_the_last_stopped_and_finds_only_enough_nodes() {
        let mut c = cluster(1000);
        // 1000 nodes: 42% of them, 420, are enough.
        let first = c.schedule(&pod("a", json!({}), json!({}))).unwrap();
        assert!(position(&c, &first) < 420, "{first}");
        assert_eq!(c.next_start, 420);
        let second = c.schedule(&pod("b", json!({}), json!({}))).unwrap();
        assert!((420..840).contains(&position(&c, &second)), "{second}");
        assert_eq!(c.next_start, 840);
        c.schedule(&pod("c", json!({}), json!({}))).unwrap();
        assert_eq!(c.next_start, 260);
        assert_eq!(c.pods.len(), 3);
        assert_eq!(c.assumed.len(), 3);

        // Nodes that do not fit are passed over until enough do.
        let mut c = cluster(200);
        let ssd_nodes: Vec<Node> = (0..200)
            .step_by(2)
            .map(|i| {
                let mut n = node(&format!("n{i}"));
                n.metadata
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert("ssd".into(), "y".into());
                n
            })
            .collect();
        for n in &ssd_nodes {
            c.set_node(n);
        }
        let picky = pod("p", json!({}), json!({"nodeSelector": {"ssd": "y"}}));
        let chosen = c.schedule(&picky).unwrap();
        assert_eq!(position(&c, &chosen) % 2, 0);
        assert_eq!(c.next_start, 199, "the 100th fitting node is n198");

        // When nothing fits every node is checked and counted.
        let mut c = cluster(1000);
        let err = c
            .schedule(&pod("x", json!({}), json!({"nodeSelector": {"ssd": "y"}})))
            .unwrap_err();
        assert_eq!(
            err.message,
            "0/1000 nodes are available: 1000 node(s) didn't match Pod's node \
             affinity/selector. preemption: 0/1000 nodes are available: 1000 Preemption is not \
             helpful for scheduling."
        );
        assert!(!err.waits_for_pods);
        assert!(c.pods.is_empty());
    }

    #[test]
    fn five_thousand_nodes_check_five_hundred() {
        let mut c = cluster(5000);
        for i in 0..30 {
            c.schedule(&pod(&format!("p{i}"), json!({}), json!({})))
                .unwrap();
            assert_eq!(c.next_start, (i + 1) * 500 % 5000);
        }
    }

    #[test]
    fn pods_on_deleted_nodes_keep_their_usage_until_they_go() {
        let mut c = cluster(2);
        let p = pod("a", json!({}), json!({}));
        c.add_pod("a", "gone", PodInfo::from_pod(&p));
        assert_eq!(c.num_nodes, 2);
        assert!(c.node("gone").is_none());
        c.delete_node("n0");
        assert_eq!(c.num_nodes, 1);
        assert!(c.node("n0").is_none());
        assert!(
            !c.index.contains_key("n0"),
            "an empty deleted node is dropped"
        );
        c.add_pod("b", "n1", PodInfo::from_pod(&p));
        c.delete_node("n1");
        assert_eq!(c.num_nodes, 0);
        c.set_node(&node("n1"));
        assert_eq!(c.node("n1").unwrap().pod_count, 1);
        c.remove_pod("a");
        assert!(!c.index.contains_key("gone"));
        assert_eq!(c.index.len(), c.nodes.len());
        for (name, i) in &c.index {
            assert_eq!(&c.nodes[*i].name, name);
        }
    }

    #[test]
    fn anti_affine_replicas_spread_and_the_fourth_waits() {
        let mut c = cluster(3);
        let replica = |uid: &str| {
            pod(
                uid,
                json!({"app": "web"}),
                json!({"affinity": {"podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "topologyKey": "kubernetes.io/hostname"}]}}}),
            )
        };
        let mut used = HashSet::new();
        for uid in ["r0", "r1", "r2"] {
            used.insert(c.schedule(&replica(uid)).unwrap());
        }
        assert_eq!(used.len(), 3);
        assert_eq!(c.affinity_groups.len(), 1, "replicas share one group");
        assert_eq!(c.affinity_groups.values().next().unwrap().len(), 3);
        let err = c.schedule(&replica("r3")).unwrap_err();
        assert!(
            err.message.starts_with(
                "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
            ),
            "{}",
            err.message
        );
        // A plain pod that the replicas' anti-affinity selects is kept off their nodes too.
        let plain = pod("w", json!({"app": "web"}), json!({}));
        let err = c.schedule(&plain).unwrap_err();
        assert!(err
            .message
            .contains("3 node(s) didn't satisfy existing pods anti-affinity rules"));
        c.remove_pod("r1");
        assert_eq!(c.affinity_groups.values().next().unwrap().len(), 2);
        assert!(c.schedule(&replica("r3")).is_ok());

        let follower = pod(
            "f",
            json!({}),
            json!({"affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "topologyKey": "kubernetes.io/hostname"}]}}}),
        );
        let err = c.schedule(&follower).unwrap_err();
        assert!(err.waits_for_pods);
        let db = pod("db", json!({"app": "db"}), json!({}));
        let db_node = c.schedule(&db).unwrap();
        assert_eq!(c.schedule(&follower).unwrap(), db_node);

        // The groups empty with the pods.
        assert_eq!(c.pod_groups["default"].len(), 3, "web, db and the follower");
        let uids: Vec<String> = c.pods.keys().cloned().collect();
        for uid in uids {
            c.remove_pod(&uid);
        }
        assert!(c.pod_groups.is_empty());
        assert!(c.affinity_groups.is_empty());
    }
}

#[cfg(test)]
mod scale {
    use super::tests_support::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn run(what: &str, nodes: usize, pods: Vec<Pod>) {
        let mut c = cluster(nodes);
        let t = std::time::Instant::now();
        for p in &pods {
            c.schedule(p).unwrap();
        }
        let e = t.elapsed();
        println!(
            "{what}: {} pods on {nodes} nodes in {e:?}, {:.0} pods/s",
            pods.len(),
            pods.len() as f64 / e.as_secs_f64()
        );
    }

    /// The benchmark's shape, without the API server:
    /// `cargo test --release -p skiff-scheduler -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn ten_thousand_pods_on_five_thousand_nodes() {
        let owned = |i: usize| {
            let mut p = pod(&format!("p{i}"), json!({"app": "x"}), json!({}));
            p.metadata.owner_references = Some(vec![serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": format!("rs-{}", i % 100), "controller": true}))
            .unwrap()]);
            p
        };
        run("plain", 5000, (0..10_000).map(owned).collect());
        // Every pod avoids the others of its group (100 groups) on its node.
        let anti = |i: usize| {
            let app = format!("g{}", i % 100);
            pod(
                &format!("a{i}"),
                json!({"app": app}),
                json!({"affinity": {"podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": {"app": app}},
                        "topologyKey": "kubernetes.io/hostname"}]}}}),
            )
        };
        run("anti-affinity", 5000, (0..10_000).map(anti).collect());
    }
}
