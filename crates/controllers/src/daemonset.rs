//! DaemonSet controller: one pod per eligible node (nodeSelector, required node affinity,
//! NoSchedule/NoExecute taints against the pod's tolerations plus those upstream adds to every
//! daemon pod), following nodes as they come and go. As upstream, a pod is not bound here: it
//! gets a required node affinity on `metadata.name` and the scheduler binds it. RollingUpdate
//! replaces old pods within `maxUnavailable`; OnDelete waits for the user.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue, Recorder};

use crate::expectations::Expectations;
use crate::history::{self, REVISION_HASH};
use crate::pod_control::PodControl;
use crate::{api_err, is_gone_or_conflict, Result};

pub const TEMPLATE_GENERATION: &str = "pod-template-generation";

struct Ctl {
    client: Client,
    sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
}

pub fn start(informers: &Arc<Informers>) {
    let ds_inf = informers.daemon_sets();
    let pod_inf = informers.pods();
    let node_inf = informers.nodes();
    let rev_inf = informers.controller_revisions();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        sets: ds_inf.store(),
        pods: pod_inf.store(),
        nodes: node_inf.store(),
        revisions: rev_inf.store(),
        queue: Queue::new(),
        expectations: Expectations::default(),
        recorder: Recorder::new(informers.client(), "daemonset-controller"),
    });
    let q = ctl.queue.clone();
    ds_inf.on_change(move |c| match c {
        Change::Applied(d) | Change::Deleted(d) => q.add(skiff_client::key_of(&d.metadata)),
    });
    let c = Arc::downgrade(&ctl);
    pod_inf.on_change(move |ch| {
        let Some(c) = c.upgrade() else { return };
        let (p, deleted) = match ch {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        if let Some(r) = skiff_client::controller_of(&p.metadata).filter(|r| r.kind == "DaemonSet")
        {
            let key = format!("{}/{}", p.namespace().unwrap_or_default(), r.name);
            if deleted || p.metadata.deletion_timestamp.is_some() {
                c.expectations.observed_del(&key, &p.name_any());
            } else {
                c.expectations.observed_add(&key, &p.name_any());
            }
            c.queue.add(key);
        }
    });
    // Any node change may change where daemons should run: requeue every DaemonSet.
    let c = Arc::downgrade(&ctl);
    node_inf.on_change(move |_| {
        let Some(c) = c.upgrade() else { return };
        for ds in c.sets.state() {
            c.queue.add(skiff_client::key_of(&ds.metadata));
        }
    });
    let c = ctl.clone();
    tokio::spawn(async move {
        ds_inf.synced().await;
        pod_inf.synced().await;
        node_inf.synced().await;
        rev_inf.synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 2, "daemonset", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

// ------------------------------------------------------------------ pure logic

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// Upstream's AddOrUpdateDaemonPodTolerations: daemons keep running on nodes that are not
/// ready, unreachable, under pressure or cordoned.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut add = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for t in add {
        if !tols
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect && x.operator == t.operator)
        {
            tols.push(t);
        }
    }
}

/// nodeSelector and required node affinity of `spec` against `node`.
pub fn node_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| label(k) != Some(v.as_str())) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let Some(required) = required else {
        return true;
    };
    let name = node.name_any();
    required.node_selector_terms.iter().any(|t| {
        let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
        let fields = t.match_fields.as_deref().unwrap_or(&[]);
        (!exprs.is_empty() || !fields.is_empty())
            && exprs
                .iter()
                .all(|r| skiff_client::node_requirement_matches(r, label(&r.key)))
            && fields.iter().all(|r| {
                skiff_client::node_requirement_matches(
                    r,
                    (r.key == "metadata.name").then_some(name.as_str()),
                )
            })
    })
}

/// (should run, should continue running) on `node`, as upstream's NodeShouldRunDaemonPod:
/// an untolerated NoSchedule taint keeps new pods off but leaves running ones; NoExecute
/// removes them.
pub fn should_run(template_spec: &PodSpec, node: &Node) -> (bool, bool) {
    let mut spec = template_spec.clone();
    add_daemon_tolerations(&mut spec);
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if n != node.name_any() {
            return (false, false);
        }
    }
    if !node_matches(&spec, node) {
        return (false, false);
    }
    let tols = spec.tolerations.unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut run = true;
    for t in &taints {
        if skiff_client::tolerates(&tols, t) {
            continue;
        }
        match t.effect.as_str() {
            "NoExecute" => return (false, false),
            "NoSchedule" => run = false,
            _ => {}
        }
    }
    (run, true)
}

/// Upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the pod may only go to `node`.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod is for: its nodeName, or the node its affinity pins it to.
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

// ------------------------------------------------------------------ controller

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(());
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(spec) = ds.spec.clone() else {
            return Ok(());
        };
        if skiff_client::selector_is_empty(&spec.selector) {
            return Ok(());
        }
        let uid = ds.uid().unwrap_or_default();
        let owned = |m: &ObjectMeta| {
            m.namespace.as_deref() == Some(ns)
                && skiff_client::controller_of(m).is_some_and(|r| r.uid == uid)
        };
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revisions: Vec<_> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| owned(&r.metadata))
            .collect();
        let rev = history::ensure(
            &rev_api,
            "DaemonSet",
            &ds.metadata,
            spec.selector.match_labels.clone().unwrap_or_default(),
            &spec.template,
            &revisions,
        )
        .await?;
        let hash = rev.labels().get(REVISION_HASH).cloned().unwrap_or_default();
        let template_spec = spec.template.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = skiff_client::now();

        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        let mut unplaced = Vec::new();
        for p in self.pods.state() {
            if !owned(&p.metadata) || p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match target_node(&p) {
                Some(n) => by_node.entry(n).or_default().push(p),
                None => unplaced.push(p),
            }
        }
        let nodes = self.nodes.state();
        let mut create: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = unplaced;
        let mut st = DaemonSetStatus {
            observed_generation: ds.metadata.generation,
            collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
            ..Default::default()
        };
        let (mut unavailable, mut old_pods) = (0, Vec::new());
        for node in &nodes {
            let node_name = node.name_any();
            let (run, keep) = should_run(&template_spec, node);
            let mut pods = by_node.remove(&node_name).unwrap_or_default();
            pods.sort_by_key(|p| {
                p.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
            });
            // Failed pods are replaced.
            let (failed, mut pods): (Vec<_>, Vec<_>) = pods.into_iter().partition(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
            });
            if !keep {
                delete.extend(failed);
                delete.append(&mut pods);
                continue;
            }
            delete.extend(failed.iter().cloned());
            if pods.len() > 1 {
                // Keep the oldest.
                delete.extend(pods.drain(1..));
            }
            if !pods.is_empty() && !run {
                st.number_misscheduled += 1;
            }
            if run {
                st.desired_number_scheduled += 1;
                match pods.first() {
                    None => {
                        if failed.is_empty() {
                            create.push(node_name.clone());
                        } else {
                            // Upstream backs off after a failed daemon pod; requeue shortly.
                            self.queue
                                .add_after(key.to_string(), Duration::from_secs(1));
                        }
                        unavailable += 1;
                    }
                    Some(p) => {
                        st.current_number_scheduled += 1;
                        let ready = skiff_client::pod_is_ready(p);
                        let available = skiff_client::pod_is_available(p, min_ready, &now);
                        if ready {
                            st.number_ready += 1;
                        }
                        if available {
                            st.number_available = Some(st.number_available.unwrap_or(0) + 1);
                        } else {
                            unavailable += 1;
                        }
                        let updated = p.labels().get(REVISION_HASH) == Some(&hash);
                        if updated {
                            st.updated_number_scheduled =
                                Some(st.updated_number_scheduled.unwrap_or(0) + 1);
                        } else {
                            old_pods.push((p.clone(), available));
                        }
                    }
                }
            }
        }
        // Pods for nodes that no longer exist.
        for (_, pods) in by_node {
            delete.extend(pods);
        }
        // RollingUpdate: old unavailable pods go at once; available ones within maxUnavailable.
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        if strategy.type_.as_deref() != Some("OnDelete") {
            let max_unavailable = strategy
                .rolling_update
                .as_ref()
                .and_then(|r| r.max_unavailable.clone())
                .unwrap_or(IntOrString::Int(1));
            let max = crate::deployment::scaled_value(
                &max_unavailable,
                st.desired_number_scheduled,
                true,
            )
            .max(1);
            let mut budget = max - unavailable;
            for (p, available) in old_pods {
                if !available {
                    delete.push(p);
                } else if budget > 0 {
                    budget -= 1;
                    delete.push(p);
                }
            }
        }
        st.number_unavailable =
            Some(st.desired_number_scheduled - st.number_available.unwrap_or(0)).filter(|n| *n > 0);

        if self.expectations.satisfied(key) {
            let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            self.create_pods(&pods_api, &ds, key, &hash, create).await;
            self.delete_pods(&pods_api, &ds, key, delete).await;
        }

        if ds.status.as_ref() != Some(&st) {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            let patch = crate::merge::status_patch(ds.status.as_ref(), &st);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_gone_or_conflict(&e) => {}
                Err(e) => return Err(api_err(format!("daemonset {key} status"))(e)),
            }
        }
        if min_ready > 0 && st.number_ready > st.number_available.unwrap_or(0) {
            self.queue
                .add_after(key.to_string(), Duration::from_secs(min_ready as u64));
        }
        let live: Vec<&str> = vec![rev.metadata.name.as_deref().unwrap_or("")];
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        history::truncate(&rev_api, &revisions, &live, limit).await
    }

    fn pod_for(&self, ds: &DaemonSet, hash: &str, node: &str) -> Pod {
        let t = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let tm = t.metadata.unwrap_or_default();
        let mut labels: BTreeMap<String, String> = tm.labels.unwrap_or_default();
        labels.insert(REVISION_HASH.into(), hash.into());
        if let Some(g) = ds.metadata.generation {
            labels.insert(TEMPLATE_GENERATION.into(), g.to_string());
        }
        let mut spec = t.spec.unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        pin_to_node(&mut spec, node);
        let mut prefix = format!("{}-", ds.name_any());
        prefix.truncate(58);
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}{}", skiff_client::random_suffix(5))),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: tm.annotations,
                finalizers: tm.finalizers,
                owner_references: Some(vec![skiff_client::controller_ref(
                    "apps/v1",
                    "DaemonSet",
                    &ds.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    async fn create_pods(
        &self,
        api: &Api<Pod>,
        ds: &DaemonSet,
        key: &str,
        hash: &str,
        nodes: Vec<String>,
    ) {
        let pods = nodes.iter().map(|n| self.pod_for(ds, hash, n)).collect();
        self.pod_control().create(api, ds, key, pods).await;
    }

    async fn delete_pods(&self, api: &Api<Pod>, ds: &DaemonSet, key: &str, pods: Vec<Arc<Pod>>) {
        self.pod_control().delete(api, ds, key, pods).await;
    }

    fn pod_control(&self) -> PodControl<'_> {
        PodControl {
            expectations: &self.expectations,
            recorder: &self.recorder,
            queue: &self.queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_selector_and_required_affinity_pick_nodes() {
        let n = node(
            "a",
            serde_json::json!({"disk": "ssd"}),
            serde_json::json!([]),
        );
        let s = spec(serde_json::json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(should_run(&s, &n), (true, true));
        let s = spec(serde_json::json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(should_run(&s, &n), (false, false));
        let s = spec(
            serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}}),
        );
        assert_eq!(should_run(&s, &n), (false, false));
    }

    #[test]
    fn untolerated_no_schedule_keeps_new_pods_off_and_no_execute_removes_them() {
        let plain = spec(serde_json::json!({"containers": []}));
        let ns = node(
            "a",
            serde_json::json!({}),
            serde_json::json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&plain, &ns), (false, true));
        let ne = node(
            "a",
            serde_json::json!({}),
            serde_json::json!([{"key": "dedicated", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&plain, &ne), (false, false));
        let tolerant = spec(serde_json::json!({"containers": [],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}));
        assert_eq!(should_run(&tolerant, &ns), (true, true));
    }

    #[test]
    fn daemons_tolerate_not_ready_unreachable_and_cordoned_nodes() {
        let plain = spec(serde_json::json!({"containers": []}));
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ] {
            let n = node(
                "a",
                serde_json::json!({}),
                serde_json::json!([{"key": key, "effect": effect}]),
            );
            assert_eq!(should_run(&plain, &n), (true, true), "{key}");
        }
        let mut s = plain.clone();
        add_daemon_tolerations(&mut s);
        add_daemon_tolerations(&mut s);
        assert_eq!(s.tolerations.unwrap().len(), 6, "added once");
    }

    #[test]
    fn pods_are_pinned_to_their_node_by_affinity() {
        let mut s = spec(
            serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}),
        );
        pin_to_node(&mut s, "sim-2");
        let p = Pod {
            spec: Some(s.clone()),
            ..Default::default()
        };
        assert_eq!(target_node(&p).as_deref(), Some("sim-2"));
        let other = node("sim-1", serde_json::json!({}), serde_json::json!([]));
        let right = node("sim-2", serde_json::json!({}), serde_json::json!([]));
        assert!(!node_matches(&s, &other));
        assert!(node_matches(&s, &right));
    }
}
