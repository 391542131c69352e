//! ReplicaSet controller: keeps `spec.replicas` active pods matching the selector, adopting
//! orphans and releasing pods that no longer match, and reports status (replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas honouring minReadySeconds).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue, Recorder};

use crate::expectations::Expectations;
use crate::owner_index::OwnerIndex;
use crate::pod_control::PodControl;
use crate::{api_err, is_gone_or_conflict, Result};

/// At most this many pods are created or deleted per sync (upstream's burstReplicas).
const BURST: usize = 500;

struct Ctl {
    client: Client,
    rs: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
    index: OwnerIndex,
}

static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

pub fn start(informers: &Arc<Informers>) {
    let rs_inf = informers.replica_sets();
    let pod_inf = informers.pods();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        rs: rs_inf.store(),
        pods: pod_inf.store(),
        queue: Queue::new(),
        expectations: Expectations::default(),
        recorder: Recorder::new(informers.client(), "replicaset-controller"),
        index: OwnerIndex::default(),
    });
    let q = ctl.queue.clone();
    rs_inf.on_change(move |c| match c {
        Change::Applied(rs) | Change::Deleted(rs) => q.add(skiff_client::key_of(&rs.metadata)),
    });
    let c = Arc::downgrade(&ctl);
    pod_inf.on_change(move |ch| {
        if let Some(c) = c.upgrade() {
            c.on_pod(ch)
        }
    });
    let c = ctl.clone();
    tokio::spawn(async move {
        rs_inf.synced().await;
        pod_inf.synced().await;
        let q = c.queue.clone();
        tracing::debug!("replicaset controller started");
        skiff_client::run_workers(q, 4, "replicaset", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

/// Pod deletion order, upstream's ActivePodsWithRanks: unscheduled, pending, not ready,
/// ready for less time, more restarts and newer pods go first.
fn deletion_rank(p: &Pod) -> impl Ord {
    let scheduled = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready_since = skiff_client::pod_ready_since(p);
    let ready = ready_since.is_some();
    let ready_at = ready_since.flatten().map(|t| t.0.as_second()).unwrap_or(0);
    let restarts: i32 = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        ready,
        std::cmp::Reverse(ready_at),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

/// Status for `rs` from the pods it owns.
pub fn compute_status(rs: &ReplicaSet, owned_active: &[Arc<Pod>]) -> ReplicaSetStatus {
    let now = skiff_client::now();
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = owned_active
        .iter()
        .filter(|p| {
            let l = p.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let ready = owned_active
        .iter()
        .filter(|p| skiff_client::pod_is_ready(p))
        .count();
    let available = owned_active
        .iter()
        .filter(|p| skiff_client::pod_is_available(p, min_ready, &now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    ReplicaSetStatus {
        replicas: owned_active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions,
        terminating_replicas: None,
    }
}

/// Pod name for a new pod: `<rs>-<5 random chars>` (the prefix cut as upstream's generateName).
fn pod_name(rs_name: &str) -> String {
    let mut prefix = format!("{rs_name}-");
    prefix.truncate(58);
    format!("{prefix}{}", skiff_client::random_suffix(5))
}

/// A pod from the ReplicaSet's template, owned by it.
pub fn pod_from_template(rs: &ReplicaSet, name: &str) -> Pod {
    let t = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tm = t.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: rs.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![skiff_client::controller_ref(
                "apps/v1",
                "ReplicaSet",
                &rs.metadata,
            )]),
            ..Default::default()
        },
        spec: t.spec,
        status: None,
    }
}

impl Ctl {
    fn on_pod(&self, c: Change<'_, Pod>) {
        let (p, deleted) = match c {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        self.index.update(&p.metadata, deleted);
        let ns = p.namespace().unwrap_or_default();
        match skiff_client::controller_of(&p.metadata).filter(|r| r.kind == "ReplicaSet") {
            Some(r) => {
                let key = format!("{ns}/{}", r.name);
                if deleted || p.metadata.deletion_timestamp.is_some() {
                    self.expectations.observed_del(&key, &p.name_any());
                } else {
                    self.expectations.observed_add(&key, &p.name_any());
                }
                self.queue.add(key);
            }
            None if !deleted => {
                // An orphan: every ReplicaSet whose selector matches may adopt it.
                let labels = p.metadata.labels.clone().unwrap_or_default();
                for rs in self.rs.state() {
                    if rs.namespace().as_deref() != Some(ns.as_str()) {
                        continue;
                    }
                    let Some(sel) = rs.spec.as_ref().map(|s| &s.selector) else {
                        continue;
                    };
                    if !skiff_client::selector_is_empty(sel)
                        && skiff_client::selector_matches(sel, &labels)
                    {
                        self.queue.add(skiff_client::key_of(&rs.metadata));
                    }
                }
            }
            None => {}
        }
    }

    async fn sync(&self, key: &str) -> Result<()> {
        tracing::trace!(replicaset = key, "sync");
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(rs) = self.rs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(());
        };
        let Some(spec) = rs.spec.as_ref() else {
            return Ok(());
        };
        if skiff_client::selector_is_empty(&spec.selector) {
            return Ok(());
        }
        let uid = rs.uid().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);

        // Claim: owned pods that still match, orphans that match (adopted); release the rest.
        let mut owned = Vec::new();
        let candidates = self
            .index
            .owned(&uid)
            .into_iter()
            .chain(self.index.orphans(ns));
        for k in candidates {
            let (_, pod_name) = skiff_client::split_key(&k);
            let Some(p) = self.pods.get(&ObjectRef::new(pod_name).within(ns)) else {
                continue;
            };
            let labels = p.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
            let matches = skiff_client::selector_matches(&spec.selector, labels);
            match skiff_client::controller_of(&p.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(p);
                    } else if !deleting {
                        self.release(&pods_api, &p, &uid).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if matches
                        && !deleting
                        && p.metadata.deletion_timestamp.is_none()
                        && skiff_client::pod_is_active(&p)
                        && self.adopt(&pods_api, &rs, &p).await?
                    {
                        owned.push(p);
                    }
                }
            }
        }
        let active: Vec<Arc<Pod>> = owned
            .into_iter()
            .filter(|p| skiff_client::pod_is_active(p))
            .collect();

        if self.expectations.satisfied(key) && !deleting {
            let want = spec.replicas.unwrap_or(1).max(0) as usize;
            if active.len() < want {
                self.create_pods(&pods_api, &rs, key, (want - active.len()).min(BURST))
                    .await;
            } else if active.len() > want {
                let mut victims = active.clone();
                victims.sort_by_key(|p| deletion_rank(p));
                victims.truncate((active.len() - want).min(BURST));
                self.delete_pods(&pods_api, &rs, key, victims).await;
            }
        }

        let status = compute_status(&rs, &active);
        if rs.status.as_ref() != Some(&status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            let patch = serde_json::json!({"status": status});
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_gone_or_conflict(&e) => {}
                Err(e) => return Err(api_err(format!("replicaset {key} status"))(e)),
            }
        }
        // Pods ready but not yet available become available after minReadySeconds.
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0
            && status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0)
        {
            self.queue
                .add_after(key.to_string(), Duration::from_secs(min_ready as u64));
        }
        Ok(())
    }

    async fn adopt(&self, api: &Api<Pod>, rs: &ReplicaSet, p: &Pod) -> Result<bool> {
        let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
        refs.push(skiff_client::controller_ref(
            "apps/v1",
            "ReplicaSet",
            &rs.metadata,
        ));
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": p.uid()}});
        match api
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_gone_or_conflict(&e) => Ok(false),
            Err(e) => Err(api_err(format!("adopting pod {}", p.name_any()))(e)),
        }
    }

    async fn release(&self, api: &Api<Pod>, p: &Pod, owner_uid: &str) -> Result<()> {
        let refs: Vec<_> = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != owner_uid)
            .cloned()
            .collect();
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": p.uid()}});
        match api
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("releasing pod {}", p.name_any()))(e)),
        }
    }

    async fn create_pods(&self, api: &Api<Pod>, rs: &ReplicaSet, key: &str, n: usize) {
        let pods = (0..n)
            .map(|_| pod_from_template(rs, &pod_name(&rs.name_any())))
            .collect();
        self.pod_control().create(api, rs, key, pods).await;
    }

    async fn delete_pods(&self, api: &Api<Pod>, rs: &ReplicaSet, key: &str, pods: Vec<Arc<Pod>>) {
        self.pod_control().delete(api, rs, key, pods).await;
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

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: i64) -> Arc<Pod> {
        let mut conds = vec![];
        if ready {
            conds.push(serde_json::json!({"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}));
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"app": "web"},
                    "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).unwrap().to_string()},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase, "conditions": conds}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn unscheduled_and_unready_pods_are_deleted_first() {
        let mut pods = [
            pod("ready-old", Some("n"), "Running", true, 100),
            pod("ready-new", Some("n"), "Running", true, 200),
            pod("pending", None, "Pending", false, 50),
            pod("unready", Some("n"), "Running", false, 10),
        ];
        pods.sort_by_key(|p| deletion_rank(p));
        let names: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["pending", "unready", "ready-new", "ready-old"]);
    }

    #[test]
    fn status_counts_ready_and_available_with_min_ready_seconds() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "generation": 4},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minReadySeconds": 2000000000,
                "template": {"metadata": {"labels": {"app": "web", "x": "y"}}}}
        }))
        .unwrap();
        let pods = vec![
            pod("a", Some("n"), "Running", true, 1),
            pod("b", Some("n"), "Pending", false, 1),
        ];
        let st = compute_status(&rs, &pods);
        assert_eq!(st.replicas, 2);
        assert_eq!(st.ready_replicas, Some(1));
        assert_eq!(
            st.available_replicas,
            Some(0),
            "not ready for minReadySeconds yet"
        );
        assert_eq!(st.fully_labeled_replicas, Some(0));
        assert_eq!(st.observed_generation, Some(4));
    }

    #[test]
    fn pod_names_have_five_random_chars() {
        let n = pod_name("web-7d4b9c8f5");
        assert!(n.starts_with("web-7d4b9c8f5-"));
        assert_eq!(n.len(), "web-7d4b9c8f5-".len() + 5);
        assert_eq!(pod_name(&"x".repeat(80)).len(), 63);
    }
}
