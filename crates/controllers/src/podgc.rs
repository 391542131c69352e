//! Pod garbage collection, as upstream's PodGC (`pkg/controller/podgc`). It force-deletes
//! (grace period 0) pods nothing else would ever finish:
//!
//! - Orphans: pods bound to a Node that no longer exists. A node missing from the cache is
//!   quarantined first (40 s) and then looked up with a live GET, so a node that is only
//!   registering, or a cache that lags, costs no pods. Each orphan is first marked Failed
//!   with a `DisruptionTarget` condition (`DeletionByPodGC`, "PodGC: node no longer exists").
//! - Terminating pods on a node that is not Ready and carries the
//!   `node.kubernetes.io/out-of-service` taint (an operator's word that the node is down).
//! - Terminating pods that were never scheduled.
//! - Terminated pods (Succeeded or Failed) beyond `--terminated-pod-gc-threshold`, evicted
//!   ones first, then oldest first.
//!
//! Pods that are not yet terminal are marked Failed before they are deleted, so their
//! controllers (Jobs, for one) see how they ended. Checks run every 20 s as upstream; on top
//! of that a deleted node starts its quarantine at once, and a tainted node's terminating pods
//! are collected when the taint or the pods change. Pods are indexed by node, phase and
//! deletion from the pod informer's changes, so a pass costs the number of nodes with pods,
//! not the number of pods (unless more pods are terminated than the threshold allows).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue};

use crate::pods_by_node::PodsByNode;
use crate::{api_err, Result};

pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Settings; upstream's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--terminated-pod-gc-threshold`: how many terminated pods may exist before the oldest
    /// are deleted; zero or less turns that collection off.
    pub terminated_pod_threshold: i32,
    /// How often every check runs (upstream's `gcCheckPeriod`).
    pub period: Duration,
    /// How long a missing node's pods wait before the node is looked up with a live GET
    /// (upstream's `quarantineTime`).
    pub quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            terminated_pod_threshold: 12500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

// ------------------------------------------------------------------ pure logic

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's isPodTerminated: any phase but Pending, Running and Unknown (an empty phase
/// counts too).
pub fn is_terminated(p: &Pod) -> bool {
    !matches!(phase(p), "Pending" | "Running" | "Unknown")
}

/// Failed by the kubelet's eviction manager.
fn is_evicted(p: &Pod) -> bool {
    phase(p) == "Failed" && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The order terminated pods are deleted in, as upstream's byEvictionAndCreationTimestamp:
/// evicted pods first (they matter least to their controllers), then the oldest, then by
/// name.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The terminated pods to delete so that `threshold` remain, in deletion order.
pub fn over_threshold(mut terminated: Vec<Arc<Pod>>, threshold: usize) -> Vec<Arc<Pod>> {
    let n = terminated.len().saturating_sub(threshold);
    if n == 0 {
        return Vec::new();
    }
    if n < terminated.len() {
        terminated.select_nth_unstable_by(n - 1, |a, b| deletion_order(a, b));
        terminated.truncate(n);
    }
    terminated.sort_by(|a, b| deletion_order(a, b));
    terminated
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Whether the node's terminating pods are to be force-deleted: it is not Ready and carries
/// the out-of-service taint (any value or effect, as upstream's TaintKeyExists).
pub fn is_out_of_service(node: &Node) -> bool {
    !is_ready(node)
        && node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE))
}

/// The condition an orphan gets before it is deleted.
pub struct Disruption {
    pub reason: &'static str,
    pub message: &'static str,
}

pub const NODE_GONE: Disruption = Disruption {
    reason: "DeletionByPodGC",
    message: "PodGC: node no longer exists",
};

/// The status patch that marks a pod Failed (with `condition` as a True `DisruptionTarget`
/// condition), or None for a pod that already ended. The resourceVersion makes it a
/// precondition: the patch applies to the pod as it was looked at, and to no pod of the same
/// name created since. A `DisruptionTarget` that is already True keeps its transition time.
pub fn fail_patch(
    pod: &Pod,
    condition: Option<&Disruption>,
    now: &Time,
) -> Option<serde_json::Value> {
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return None;
    }
    let mut status = serde_json::json!({"phase": "Failed"});
    if let Some(c) = condition {
        let since = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
            .filter(|c| c.status == "True")
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        status["conditions"] = serde_json::json!([{
            "type": "DisruptionTarget", "status": "True", "reason": c.reason,
            "message": c.message, "lastTransitionTime": since,
        }]);
    }
    Some(serde_json::json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": status,
    }))
}

/// What a collection pass needs to know about pods, kept up to date from the informer's
/// changes. Keys may outlive their pods (a relist does not report deletions), so whoever
/// reads them looks the pod up again.
#[derive(Debug, Default)]
pub struct PodIndex {
    /// Bound pods by node.
    bound: PodsByNode,
    terminated: HashSet<String>,
    unscheduled_terminating: HashSet<String>,
}

impl PodIndex {
    pub fn apply(&mut self, key: &str, pod: &Pod) {
        self.bound.apply(key, pod);
        set(&mut self.terminated, key, is_terminated(pod));
        set(
            &mut self.unscheduled_terminating,
            key,
            skiff_client::pod_node(pod).is_none() && pod.metadata.deletion_timestamp.is_some(),
        );
    }

    pub fn remove(&mut self, key: &str) {
        self.bound.remove(key);
        self.terminated.remove(key);
        self.unscheduled_terminating.remove(key);
    }

    /// Names of the nodes that have pods.
    pub fn nodes(&self) -> Vec<String> {
        self.bound.nodes()
    }

    pub fn pods_on(&self, node: &str) -> Vec<String> {
        self.bound.pods_on(node)
    }

    pub fn terminated_count(&self) -> usize {
        self.terminated.len()
    }
}

fn set(s: &mut HashSet<String>, key: &str, member: bool) {
    if member {
        if !s.contains(key) {
            s.insert(key.to_string());
        }
    } else {
        s.remove(key);
    }
}

// ------------------------------------------------------------------ the controller

struct Ctl {
    client: Client,
    config: Config,
    pods: Store<Pod>,
    nodes: Store<Node>,
    index: Mutex<PodIndex>,
    /// Missing nodes whose quarantine is running or whose check has not succeeded yet.
    quarantined: Mutex<HashSet<String>>,
    /// Node names whose quarantine is over.
    orphans: Queue,
    /// Node names whose terminating pods may be due for collection.
    out_of_service: Queue,
}

pub fn start(informers: &Arc<Informers>, config: Config) {
    let pods = informers.pods();
    let nodes = informers.nodes();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        config,
        pods: pods.store(),
        nodes: nodes.store(),
        index: Default::default(),
        quarantined: Default::default(),
        orphans: Queue::new(),
        out_of_service: Queue::new(),
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
        let c = ctl.clone();
        skiff_client::run_workers(ctl.orphans.clone(), 2, "pod-gc-orphans", move |node| {
            let c = c.clone();
            async move { c.sync_orphans(&node).await }
        });
        let c = ctl.clone();
        skiff_client::run_workers(
            ctl.out_of_service.clone(),
            2,
            "pod-gc-out-of-service",
            move |node| {
                let c = c.clone();
                async move { c.sync_out_of_service(&node).await }
            },
        );
        let mut tick = tokio::time::interval(ctl.config.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ctl.gc().await;
        }
    });
}

impl Ctl {
    fn on_pod(&self, c: Change<'_, Pod>) {
        match c {
            Change::Applied(p) => {
                let key = skiff_client::key_of(&p.metadata);
                self.index.lock().unwrap().apply(&key, p);
                // A pod that starts terminating on an out-of-service node.
                if p.metadata.deletion_timestamp.is_some() {
                    if let Some(node) = skiff_client::pod_node(p) {
                        if self
                            .nodes
                            .get(&ObjectRef::new(node))
                            .is_some_and(|n| is_out_of_service(&n))
                        {
                            self.out_of_service.add(node);
                        }
                    }
                }
            }
            Change::Deleted(p) => {
                let key = skiff_client::key_of(&p.metadata);
                self.index.lock().unwrap().remove(&key);
            }
        }
    }

    fn on_node(&self, c: Change<'_, Node>) {
        match c {
            Change::Applied(n) => {
                if is_out_of_service(n) {
                    self.out_of_service.add(n.name_any());
                }
            }
            Change::Deleted(n) => {
                let name = n.name_any();
                if self.index.lock().unwrap().bound.has_pods(&name) {
                    self.quarantine(&name);
                }
            }
        }
    }

    /// Starts a missing node's quarantine, unless it is running already.
    fn quarantine(&self, node: &str) {
        if self.quarantined.lock().unwrap().insert(node.to_string()) {
            tracing::debug!(node, "pods are bound to a missing node; quarantining it");
            self.orphans.add_after(node, self.config.quarantine);
        }
    }

    /// One pass of every check.
    async fn gc(&self) {
        if self.config.terminated_pod_threshold > 0 {
            self.gc_terminated(self.config.terminated_pod_threshold as usize)
                .await;
        }
        let nodes = self.index.lock().unwrap().nodes();
        for name in nodes {
            match self.nodes.get(&ObjectRef::new(&name)) {
                None => self.quarantine(&name),
                Some(n) if is_out_of_service(&n) => self.out_of_service.add(name),
                Some(_) => {}
            }
        }
        self.gc_unscheduled_terminating().await;
    }

    fn pod(&self, key: &str) -> Option<Arc<Pod>> {
        let (ns, name) = skiff_client::split_key(key);
        self.pods
            .get(&ObjectRef::new(name).within(ns.unwrap_or("default")))
    }

    /// The cached pods of `keys`. Keys whose pod is gone leave the index: a relist does not
    /// report the deletions it missed.
    fn lookup(&self, keys: &[String]) -> Vec<Arc<Pod>> {
        let mut gone = Vec::new();
        let pods = keys
            .iter()
            .filter_map(|k| {
                let p = self.pod(k);
                if p.is_none() {
                    gone.push(k);
                }
                p
            })
            .collect();
        if !gone.is_empty() {
            let mut index = self.index.lock().unwrap();
            // Looked at again under the lock, which a pod created meanwhile is indexed under.
            for k in gone {
                if self.pod(k).is_none() {
                    index.remove(k);
                }
            }
        }
        pods
    }

    async fn gc_terminated(&self, threshold: usize) {
        let keys: Vec<String> = {
            let index = self.index.lock().unwrap();
            if index.terminated_count() <= threshold {
                return;
            }
            index.terminated.iter().cloned().collect()
        };
        let terminated: Vec<Arc<Pod>> = self
            .lookup(&keys)
            .into_iter()
            .filter(|p| is_terminated(p))
            .collect();
        let doomed = over_threshold(terminated, threshold);
        if doomed.is_empty() {
            return;
        }
        tracing::info!(count = doomed.len(), "garbage collecting terminated pods");
        self.delete_all(doomed, None).await;
    }

    async fn gc_unscheduled_terminating(&self) {
        let keys: Vec<String> = self
            .index
            .lock()
            .unwrap()
            .unscheduled_terminating
            .iter()
            .cloned()
            .collect();
        let pods: Vec<Arc<Pod>> = self
            .lookup(&keys)
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_some() && skiff_client::pod_node(p).is_none()
            })
            .collect();
        if !pods.is_empty() {
            tracing::info!(
                count = pods.len(),
                "force deleting unscheduled terminating pods"
            );
        }
        self.delete_all(pods, None).await;
    }

    /// The quarantine of a missing node is over: if it is gone for good, its pods go too.
    async fn sync_orphans(&self, node: &str) -> Result<()> {
        if self.nodes.get(&ObjectRef::new(node)).is_none() {
            let api: Api<Node> = Api::all(self.client.clone());
            // A live read: the cache may lag behind a node that registered meanwhile.
            let exists = match api.get(node).await {
                Ok(_) => true,
                Err(kube::Error::Api(s)) if s.code == 404 => false,
                Err(e) => return Err(api_err(format!("getting node {node}"))(e)),
            };
            if !exists {
                let keys = self.index.lock().unwrap().pods_on(node);
                let pods: Vec<Arc<Pod>> = self
                    .lookup(&keys)
                    .into_iter()
                    .filter(|p| skiff_client::pod_node(p) == Some(node))
                    .collect();
                if !pods.is_empty() {
                    tracing::info!(
                        node,
                        count = pods.len(),
                        "deleting the pods of a deleted node"
                    );
                }
                let failed = self.delete_all(pods, Some(&NODE_GONE)).await;
                if failed > 0 {
                    return Err(crate::Error::NotReady(format!(
                        "{failed} pods of deleted node {node} are not deleted yet"
                    )));
                }
            }
        }
        self.quarantined.lock().unwrap().remove(node);
        Ok(())
    }

    async fn sync_out_of_service(&self, node: &str) -> Result<()> {
        let Some(n) = self.nodes.get(&ObjectRef::new(node)) else {
            return Ok(());
        };
        if !is_out_of_service(&n) {
            return Ok(());
        }
        let keys = self.index.lock().unwrap().pods_on(node);
        let mut pods: Vec<Arc<Pod>> = self
            .lookup(&keys)
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_some() && skiff_client::pod_node(p) == Some(node)
            })
            .collect();
        if pods.is_empty() {
            return Ok(());
        }
        pods.sort_by(|a, b| deletion_order(a, b));
        tracing::info!(
            node,
            count = pods.len(),
            "force deleting terminating pods of an out-of-service node"
        );
        let failed = self.delete_all(pods, None).await;
        if failed > 0 {
            return Err(crate::Error::NotReady(format!(
                "{failed} terminating pods of out-of-service node {node} are not deleted yet"
            )));
        }
        Ok(())
    }

    /// Marks each pod Failed and force-deletes it; returns how many failed.
    async fn delete_all(&self, pods: Vec<Arc<Pod>>, condition: Option<&Disruption>) -> usize {
        let failed = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(pods)
            .for_each_concurrent(16, |pod| {
                let failed = &failed;
                async move {
                    if let Err(e) = self.fail_and_delete(&pod, condition).await {
                        tracing::warn!(error = %e, "pod garbage collection failed");
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .await;
        failed.into_inner()
    }

    /// Upstream's markFailedAndDeletePodWithCondition.
    async fn fail_and_delete(&self, pod: &Pod, condition: Option<&Disruption>) -> Result<()> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        tracing::info!(pod = %format!("{ns}/{name}"), "PodGC is force deleting Pod");
        if let Some(patch) = fail_patch(pod, condition, &skiff_client::now()) {
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                // A 409 is a pod changed since it was looked at: looked at again on retry.
                Err(e) => return Err(api_err(format!("marking pod {ns}/{name} Failed"))(e)),
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: pod.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            // Gone, or replaced by a new pod of the same name.
            Err(e) if crate::is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("deleting pod {ns}/{name}"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn ended(name: &str, created: &str, phase: &str, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(pod(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "status": {"phase": phase, "reason": reason},
        })))
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn terminated_means_any_phase_but_pending_running_and_unknown() {
        for (phase, terminated) in [
            ("Pending", false),
            ("Running", false),
            ("Unknown", false),
            ("Succeeded", true),
            ("Failed", true),
        ] {
            let p = pod(serde_json::json!({"status": {"phase": phase}}));
            assert_eq!(is_terminated(&p), terminated, "{phase}");
        }
        assert!(is_terminated(&pod(serde_json::json!({}))), "no phase");
    }

    #[test]
    fn evicted_then_oldest_then_by_name_go_first() {
        let pods = vec![
            ended("new", "2026-01-03T00:00:00Z", "Succeeded", None),
            ended("b", "2026-01-01T00:00:00Z", "Failed", None),
            ended("a", "2026-01-01T00:00:00Z", "Succeeded", None),
            ended("evicted", "2026-01-05T00:00:00Z", "Failed", Some("Evicted")),
            ended("mid", "2026-01-02T00:00:00Z", "Failed", None),
        ];
        assert_eq!(
            names(&over_threshold(pods.clone(), 2)),
            vec!["evicted", "a", "b"]
        );
        assert_eq!(
            names(&over_threshold(pods.clone(), 0)),
            vec!["evicted", "a", "b", "mid", "new"]
        );
        assert!(over_threshold(pods.clone(), 5).is_empty());
        assert!(over_threshold(pods, 12500).is_empty());
    }

    #[test]
    fn out_of_service_needs_the_taint_and_a_node_not_ready() {
        let n = |ready: &str, taint: Option<&str>| {
            node(serde_json::json!({
                "metadata": {"name": "a"},
                "spec": {"taints": taint.map(|k| vec![serde_json::json!({"key": k, "value": "nodeshutdown", "effect": "NoExecute"})])},
                "status": {"conditions": [{"type": "Ready", "status": ready}]},
            }))
        };
        assert!(is_out_of_service(&n("Unknown", Some(OUT_OF_SERVICE))));
        assert!(is_out_of_service(&n("False", Some(OUT_OF_SERVICE))));
        assert!(!is_out_of_service(&n("True", Some(OUT_OF_SERVICE))));
        assert!(!is_out_of_service(&n(
            "Unknown",
            Some("node.kubernetes.io/unreachable")
        )));
        assert!(!is_out_of_service(&n("Unknown", None)));
    }

    #[test]
    fn orphans_are_marked_failed_with_a_disruption_target_first() {
        let now = skiff_client::now();
        let running = pod(serde_json::json!({
            "metadata": {"name": "p", "resourceVersion": "7"},
            "status": {"phase": "Running"},
        }));
        let patch = fail_patch(&running, Some(&NODE_GONE), &now).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(patch["status"]["phase"], "Failed");
        let c = &patch["status"]["conditions"][0];
        assert_eq!(c["type"], "DisruptionTarget");
        assert_eq!(c["status"], "True");
        assert_eq!(c["reason"], "DeletionByPodGC");
        assert_eq!(c["message"], "PodGC: node no longer exists");
        assert_eq!(c["lastTransitionTime"], serde_json::to_value(&now).unwrap());
        // Without a condition only the phase changes.
        let plain = fail_patch(&running, None, &now).unwrap();
        assert_eq!(plain["status"], serde_json::json!({"phase": "Failed"}));
        // A pod that ended keeps its phase: no patch at all.
        for phase in ["Succeeded", "Failed"] {
            let p = pod(serde_json::json!({"status": {"phase": phase}}));
            assert_eq!(fail_patch(&p, Some(&NODE_GONE), &now), None);
        }
    }

    #[test]
    fn a_disruption_target_already_true_keeps_its_transition_time() {
        let evicted = pod(serde_json::json!({
            "metadata": {"name": "p", "resourceVersion": "7"},
            "status": {"phase": "Running", "conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]},
        }));
        let patch = fail_patch(&evicted, Some(&NODE_GONE), &skiff_client::now()).unwrap();
        let c = &patch["status"]["conditions"][0];
        assert_eq!(c["reason"], "DeletionByPodGC");
        assert_eq!(c["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn the_index_follows_binding_phase_deletion_and_removal() {
        let mut idx = PodIndex::default();
        let pending = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "status": {"phase": "Pending"},
        }));
        idx.apply("default/p", &pending);
        assert!(idx.nodes().is_empty());
        assert_eq!(idx.terminated_count(), 0);
        let mut deleting = pending.clone();
        deleting.metadata.deletion_timestamp = Some(skiff_client::now());
        idx.apply("default/p", &deleting);
        assert!(idx.unscheduled_terminating.contains("default/p"));

        let bound = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running"},
        }));
        idx.apply("default/p", &bound);
        assert!(idx.unscheduled_terminating.is_empty());
        assert_eq!(idx.nodes(), vec!["n1"]);
        assert_eq!(idx.pods_on("n1"), vec!["default/p"]);

        // Seen again on another node (deleted and recreated during a watch gap).
        let mut moved = bound.clone();
        moved.spec.as_mut().unwrap().node_name = Some("n2".into());
        moved.status.as_mut().unwrap().phase = Some("Succeeded".into());
        idx.apply("default/p", &moved);
        assert_eq!(idx.nodes(), vec!["n2"]);
        assert!(idx.pods_on("n1").is_empty());
        assert_eq!(idx.terminated_count(), 1);

        idx.remove("default/p");
        assert!(idx.nodes().is_empty());
        assert_eq!(idx.terminated_count(), 0);
        assert!(idx.bound.is_empty());
    }
}
