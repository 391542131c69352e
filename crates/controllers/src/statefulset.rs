//! StatefulSet controller: pods `<set>-0 .. <set>-(N-1)` with stable names, hostnames and
//! PersistentVolumeClaims (`<template>-<pod>`, created before the pod). What becomes of the
//! claims follows `persistentVolumeClaimRetentionPolicy`: with the default Retain they stay;
//! `whenDeleted: Delete` gives each claim an ownerReference to the set and `whenScaled: Delete`
//! gives the claims of condemned pods one to their pod, so the garbage collector removes them
//! (see [`claim_refs`]). OrderedReady creates one pod at a time in ordinal order,
//! each after its predecessors are Running and Ready, and removes from the highest ordinal;
//! Parallel does both at once. RollingUpdate replaces pods from the highest ordinal down to
//! `partition`, one at a time; OnDelete waits for the user. Revisions are ControllerRevisions.
//!
//! Pod names are fixed, so a write repeated on a stale cache is harmless (409/404): this
//! controller needs no expectations, as upstream's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::history::{self, REVISION_HASH};
use crate::{api_err, is_gone_or_conflict, Result};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ctl {
    client: Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    queue: Queue,
    recorder: Recorder,
}

pub fn start(informers: &Arc<Informers>) {
    let set_inf = informers.stateful_sets();
    let pod_inf = informers.pods();
    let rev_inf = informers.controller_revisions();
    let pvc_inf = informers.persistent_volume_claims();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        sets: set_inf.store(),
        pods: pod_inf.store(),
        revisions: rev_inf.store(),
        claims: pvc_inf.store(),
        queue: Queue::new(),
        recorder: Recorder::new(informers.client(), "statefulset-controller"),
    });
    let q = ctl.queue.clone();
    set_inf.on_change(move |c| match c {
        Change::Applied(s) | Change::Deleted(s) => q.add(skiff_client::key_of(&s.metadata)),
    });
    let q = ctl.queue.clone();
    pod_inf.on_change(move |c| {
        let p = match c {
            Change::Applied(p) | Change::Deleted(p) => p,
        };
        if let Some(r) =
            skiff_client::controller_of(&p.metadata).filter(|r| r.kind == "StatefulSet")
        {
            q.add(format!("{}/{}", p.namespace().unwrap_or_default(), r.name));
        }
    });
    let c = ctl.clone();
    tokio::spawn(async move {
        set_inf.synced().await;
        pod_inf.synced().await;
        rev_inf.synced().await;
        pvc_inf.synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 2, "statefulset", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

// ------------------------------------------------------------------ pure logic

/// The ordinal of `pod` in set `set`: `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

pub fn claim_name(template: &str, pod: &str) -> String {
    format!("{template}-{pod}")
}

/// `persistentVolumeClaimRetentionPolicy`: which events delete the claims. Anything but
/// `Delete` counts as Retain, as upstream treats unknown values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub when_scaled_delete: bool,
    pub when_deleted_delete: bool,
}

pub fn retention(set: &StatefulSet) -> Retention {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let is_delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    Retention {
        when_scaled_delete: is_delete(p.and_then(|p| p.when_scaled.as_ref())),
        when_deleted_delete: is_delete(p.and_then(|p| p.when_deleted.as_ref())),
    }
}

/// The ownerReferences a claim should carry, or None when it needs no change (upstream's
/// isClaimOwnerUpToDate and updateClaimOwnerRefForSetAndPod). `set` and `pod` are controller
/// references to the set and to the claim's pod; `in_range` is whether the pod's ordinal is
/// below `replicas`.
///
/// | whenScaled | whenDeleted | pod in range | pod condemned |
/// |------------|-------------|--------------|---------------|
/// | Retain     | Retain      | -            | -             |
/// | Retain     | Delete      | set          | set           |
/// | Delete     | Retain      | -            | pod           |
/// | Delete     | Delete      | set          | pod           |
///
/// Refs naming the set or pod with another uid (left by an earlier object of the same name)
/// mean the claim is not touched. Under a Delete policy, a controller that is neither the set
/// nor the pod keeps the claim: this controller only removes its own refs from it.
pub fn claim_refs(
    refs: &[OwnerReference],
    set: &OwnerReference,
    pod: &OwnerReference,
    policy: Retention,
    in_range: bool,
) -> Option<Vec<OwnerReference>> {
    let names = |r: &OwnerReference, o: &OwnerReference| {
        r.api_version == o.api_version && r.kind == o.kind && r.name == o.name
    };
    let ours = |r: &OwnerReference| names(r, set) || names(r, pod);
    if refs
        .iter()
        .any(|r| (names(r, set) && r.uid != set.uid) || (names(r, pod) && r.uid != pod.uid))
    {
        return None;
    }
    let retain_all = !policy.when_scaled_delete && !policy.when_deleted_delete;
    let foreign_controller =
        !retain_all && refs.iter().any(|r| !ours(r) && r.controller == Some(true));
    let has = |o: &OwnerReference| refs.iter().any(|r| r.uid == o.uid);
    let want_set = policy.when_deleted_delete && (!policy.when_scaled_delete || in_range);
    let want_pod = policy.when_scaled_delete && !in_range;
    let up_to_date = if foreign_controller {
        !has(set) && !has(pod)
    } else {
        let non_controller = refs
            .iter()
            .any(|r| (r.uid == set.uid || r.uid == pod.uid) && r.controller != Some(true));
        !non_controller && has(set) == want_set && has(pod) == want_pod
    };
    if up_to_date {
        return None;
    }
    let mut out: Vec<OwnerReference> = refs.iter().filter(|r| !ours(r)).cloned().collect();
    if !foreign_controller {
        if want_set {
            out.push(set.clone());
        }
        if want_pod {
            out.push(pod.clone());
        }
    }
    Some(out)
}

/// One step the controller takes in a sync (upstream's updateStatefulSet, one action at a time
/// for OrderedReady).
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Step {
    /// Create the pod with this ordinal (its claims first).
    Create(i32),
    /// Delete the pod with this ordinal: condemned, failed, or an old revision.
    Delete(i32),
}

/// What one pod looks like to the planner.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    pub ordinal: i32,
    pub terminating: bool,
    /// Running and Ready (and available for minReadySeconds).
    pub healthy: bool,
    /// Succeeded or Failed: to be replaced.
    pub finished: bool,
    pub updated: bool,
}

/// The steps for one sync, in order; with `ordered`, the planner stops at the first pod it must
/// wait for, as upstream's OrderedReady.
pub fn plan(
    replicas: i32,
    pods: &[PodView],
    ordered: bool,
    rolling: bool,
    partition: i32,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let by_ord: BTreeMap<i32, &PodView> = pods.iter().map(|p| (p.ordinal, p)).collect();
    // Replicas, ascending.
    for i in 0..replicas {
        match by_ord.get(&i) {
            None => {
                steps.push(Step::Create(i));
                if ordered {
                    return steps;
                }
            }
            Some(p) if p.finished && !p.terminating => {
                steps.push(Step::Delete(i));
                if ordered {
                    return steps;
                }
            }
            Some(p) if ordered && (p.terminating || !p.healthy) => return steps,
            Some(_) => {}
        }
    }
    // Condemned, descending.
    let condemned: Vec<&PodView> = by_ord.range(replicas..).rev().map(|(_, p)| *p).collect();
    for p in &condemned {
        if p.terminating {
            if ordered {
                return steps;
            }
            continue;
        }
        if ordered && by_ord.values().any(|o| o.ordinal < p.ordinal && !o.healthy) {
            return steps;
        }
        steps.push(Step::Delete(p.ordinal));
        if ordered {
            return steps;
        }
    }
    if !condemned.is_empty() && ordered {
        return steps;
    }
    // RollingUpdate: highest ordinal first, down to the partition, one unhealthy pod at most.
    if rolling {
        for i in (partition.max(0)..replicas).rev() {
            let Some(p) = by_ord.get(&i) else { continue };
            if !p.updated && !p.terminating {
                if steps.is_empty() && by_ord.values().all(|o| o.healthy && !o.terminating) {
                    steps.push(Step::Delete(i));
                }
                return steps;
            }
            if !p.healthy || p.terminating {
                return steps;
            }
        }
    }
    steps
}

/// A pod for ordinal `ord` from the template of revision `rev` (`template`).
pub fn pod_for(
    set: &StatefulSet,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    rev_name: &str,
    ord: i32,
) -> Pod {
    let name = format!("{}-{ord}", set.name_any());
    let tm = template.metadata.clone().unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    labels.insert(REVISION_HASH.into(), rev_name.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(svc) = set.spec.as_ref().and_then(|s| s.service_name.clone()) {
        if !svc.is_empty() {
            spec.subdomain = Some(svc);
        }
    }
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if !templates.is_empty() {
        let vols = spec.volumes.get_or_insert_with(Vec::new);
        for t in &templates {
            let tn = t.metadata.name.clone().unwrap_or_default();
            vols.retain(|v| v.name != tn);
            vols.push(Volume {
                name: tn.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tn, &name),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![skiff_client::controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

// ------------------------------------------------------------------ controller

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(spec) = set.spec.clone() else {
            return Ok(());
        };
        if skiff_client::selector_is_empty(&spec.selector) {
            return Ok(());
        }
        let uid = set.uid().unwrap_or_default();
        let owned_by =
            |m: &ObjectMeta| skiff_client::controller_of(m).is_some_and(|r| r.uid == uid);
        let in_ns = |m: &ObjectMeta| m.namespace.as_deref() == Some(ns);

        // Revisions: the update revision holds the current template.
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revisions: Vec<Arc<ControllerRevision>> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| in_ns(&r.metadata) && owned_by(&r.metadata))
            .collect();
        let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
        let update_rev = history::ensure(
            &rev_api,
            "StatefulSet",
            &set.metadata,
            selector_labels,
            &spec.template,
            &revisions,
        )
        .await?;
        let update_name = update_rev.name_any();
        let old = set.status.clone().unwrap_or_default();
        let current_name = old
            .current_revision
            .clone()
            .filter(|c| revisions.iter().any(|r| &r.name_any() == c))
            .unwrap_or_else(|| update_name.clone());
        let current_template = revisions
            .iter()
            .find(|r| r.name_any() == current_name)
            .and_then(|r| r.data.as_ref())
            .and_then(|d| {
                let mut t = d.0["spec"]["template"].clone();
                t.as_object_mut()?.remove("$patch");
                serde_json::from_value(t).ok()
            })
            .unwrap_or_else(|| spec.template.clone());

        // Owned pods that match the selector, by ordinal; matching orphans (left by
        // `delete --cascade=orphan`) are adopted, as upstream's ClaimPods.
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut pods: Vec<Arc<Pod>> = Vec::new();
        for p in self.pods.state() {
            if !in_ns(&p.metadata)
                || ordinal(name, &p.name_any()).is_none()
                || !skiff_client::selector_matches(
                    &spec.selector,
                    &p.metadata.labels.clone().unwrap_or_default(),
                )
            {
                continue;
            }
            if owned_by(&p.metadata) {
                pods.push(p);
            } else if skiff_client::controller_of(&p.metadata).is_none()
                && p.metadata.deletion_timestamp.is_none()
            {
                let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                refs.push(skiff_client::controller_ref(
                    "apps/v1",
                    "StatefulSet",
                    &set.metadata,
                ));
                let patch =
                    serde_json::json!({"metadata": {"ownerReferences": refs, "uid": p.uid()}});
                match pods_api
                    .patch(
                        &p.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => pods.push(Arc::new(adopted)),
                    Err(e) if is_gone_or_conflict(&e) => {}
                    Err(e) => return Err(api_err(format!("adopting pod {}", p.name_any()))(e)),
                }
            }
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = skiff_client::now();
        let rev_of = |p: &Pod| p.labels().get(REVISION_HASH).cloned().unwrap_or_default();
        let views: Vec<PodView> = pods
            .iter()
            .map(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                PodView {
                    ordinal: ordinal(name, &p.name_any()).unwrap_or(-1),
                    terminating: p.metadata.deletion_timestamp.is_some(),
                    healthy: phase == Some("Running")
                        && skiff_client::pod_is_available(p, min_ready, &now),
                    finished: matches!(phase, Some("Succeeded") | Some("Failed")),
                    updated: rev_of(p) == update_name,
                }
            })
            .collect();

        let replicas = spec.replicas.unwrap_or(1).max(0);
        // Claims' ownerReferences follow the retention policy before any pod is deleted, so a
        // condemned pod's claims already name it when it goes.
        self.fix_claims(&set, &pods, replicas).await?;
        let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let rolling = strategy.type_.as_deref() != Some("OnDelete");
        let partition = strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let steps = plan(replicas, &views, ordered, rolling, partition);

        for step in steps {
            match step {
                Step::Create(ord) => {
                    let (rev, template) = if rolling && ord < partition {
                        (current_name.as_str(), &current_template)
                    } else {
                        (update_name.as_str(), &spec.template)
                    };
                    let pod = pod_for(&set, template, rev, ord);
                    self.create_claims(&set, &pod).await?;
                    match pods_api.create(&PostParams::default(), &pod).await {
                        Ok(_) => self.recorder.publish(
                            set.as_ref(),
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!(
                                "create Pod {} in StatefulSet {name} successful",
                                pod.name_any()
                            ),
                        ),
                        Err(e) if is_gone_or_conflict(&e) => {}
                        Err(e) => {
                            self.recorder.publish(
                                set.as_ref(),
                                EventType::Warning,
                                "FailedCreate",
                                format!(
                                    "create Pod {} in StatefulSet {name} failed error: {e}",
                                    pod.name_any()
                                ),
                            );
                            return Err(api_err(format!("creating pod {}", pod.name_any()))(e));
                        }
                    }
                }
                Step::Delete(ord) => {
                    let pod = format!("{name}-{ord}");
                    match pods_api.delete(&pod, &DeleteParams::default()).await {
                        Ok(_) => self.recorder.publish(
                            set.as_ref(),
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {pod} in StatefulSet {name} successful"),
                        ),
                        Err(e) if is_gone_or_conflict(&e) => {}
                        Err(e) => return Err(api_err(format!("deleting pod {pod}"))(e)),
                    }
                }
            }
        }

        // Status from what the cache shows now.
        let live: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
        let mut st = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            replicas: live.len() as i32,
            ready_replicas: Some(count(&|p| skiff_client::pod_is_ready(p))),
            available_replicas: Some(count(&|p| {
                skiff_client::pod_is_available(p, min_ready, &now)
            })),
            current_replicas: Some(count(&|p| rev_of(p) == current_name)),
            updated_replicas: Some(count(&|p| rev_of(p) == update_name)),
            current_revision: Some(current_name.clone()),
            update_revision: Some(update_name.clone()),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
        };
        // Upstream's completeRollingUpdate.
        if rolling
            && st.updated_replicas == Some(st.replicas)
            && st.ready_replicas == Some(st.replicas)
            && st.replicas == replicas
        {
            st.current_replicas = st.updated_replicas;
            st.current_revision = st.update_revision.clone();
        }
        if set.status.as_ref() != Some(&st) {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            let patch = crate::merge::status_patch(set.status.as_ref(), &st);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_gone_or_conflict(&e) => {}
                Err(e) => return Err(api_err(format!("statefulset {key} status"))(e)),
            }
        }
        if min_ready > 0 && st.ready_replicas > st.available_replicas {
            self.queue
                .add_after(key.to_string(), Duration::from_secs(min_ready as u64));
        }

        // History beyond revisionHistoryLimit, keeping the revisions in use.
        let mut in_use: Vec<&str> = vec![update_name.as_str(), current_name.as_str()];
        let pod_revs: Vec<String> = pods.iter().map(|p| rev_of(p)).collect();
        in_use.extend(pod_revs.iter().map(|s| s.as_str()));
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        history::truncate(&rev_api, &revisions, &in_use, limit).await
    }

    /// Brings the ownerReferences of the existing claims of `pods` in line with the policy.
    async fn fix_claims(&self, set: &StatefulSet, pods: &[Arc<Pod>], replicas: i32) -> Result<()> {
        let templates = set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone())
            .unwrap_or_default();
        if templates.is_empty() {
            return Ok(());
        }
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let policy = retention(set);
        let set_ref = skiff_client::controller_ref("apps/v1", "StatefulSet", &set.metadata);
        for p in pods {
            let Some(ord) = ordinal(&set.name_any(), &p.name_any()) else {
                continue;
            };
            let pod_ref = skiff_client::controller_ref("v1", "Pod", &p.metadata);
            for t in &templates {
                let cn = claim_name(t.metadata.name.as_deref().unwrap_or(""), &p.name_any());
                let Some(claim) = self.claims.get(&ObjectRef::new(&cn).within(&ns)) else {
                    continue;
                };
                if claim.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let refs = claim.metadata.owner_references.clone().unwrap_or_default();
                let Some(new) = claim_refs(&refs, &set_ref, &pod_ref, policy, ord < replicas)
                else {
                    continue;
                };
                let new = if new.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::to_value(&new).unwrap_or_default()
                };
                let patch = serde_json::json!({"metadata": {
                    "ownerReferences": new,
                    "uid": claim.metadata.uid,
                    "resourceVersion": claim.metadata.resource_version,
                }});
                // A conflict means the cache is behind: the sync fails and is retried, so no
                // pod is deleted before its claims are right.
                match api
                    .patch(&cn, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        return Err(api_err(format!("updating ownerReferences of claim {cn}"))(
                            e,
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates the pod's claims that do not exist yet.
    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let selector_labels = set
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        for t in set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone())
            .unwrap_or_default()
        {
            let cn = claim_name(t.metadata.name.as_deref().unwrap_or(""), &pod.name_any());
            if self.claims.get(&ObjectRef::new(&cn).within(&ns)).is_some() {
                continue;
            }
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(cn.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    // A new pod is in range: whenDeleted alone decides (see `claim_refs`).
                    owner_references: retention(set).when_deleted_delete.then(|| {
                        vec![skiff_client::controller_ref(
                            "apps/v1",
                            "StatefulSet",
                            &set.metadata,
                        )]
                    }),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.recorder.publish(
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cn} Pod {} in StatefulSet {} success",
                        pod.name_any(),
                        set.name_any()
                    ),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.recorder.publish(
                        set,
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {cn} for Pod {} in StatefulSet {} failed error: {e}",
                            pod.name_any(),
                            set.name_any()
                        ),
                    );
                    return Err(api_err(format!("creating claim {cn}"))(e));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ordinal: i32, healthy: bool, updated: bool) -> PodView {
        PodView {
            ordinal,
            healthy,
            updated,
            ..Default::default()
        }
    }

    #[test]
    fn ordinals_parse_only_canonical_suffixes() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(ordinal("web-1", "web-1-2"), Some(2));
    }

    #[test]
    fn ordered_ready_creates_the_next_pod_only_after_the_previous_is_healthy() {
        assert_eq!(plan(3, &[], true, true, 0), vec![Step::Create(0)]);
        assert_eq!(plan(3, &[v(0, false, true)], true, true, 0), vec![]);
        assert_eq!(
            plan(3, &[v(0, true, true)], true, true, 0),
            vec![Step::Create(1)]
        );
        assert_eq!(
            plan(3, &[], false, true, 0),
            vec![Step::Create(0), Step::Create(1), Step::Create(2)],
            "Parallel creates all at once"
        );
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let pods = [
            v(0, true, true),
            v(1, true, true),
            v(2, true, true),
            v(3, true, true),
        ];
        assert_eq!(plan(2, &pods, true, true, 0), vec![Step::Delete(3)]);
        let mut terminating = pods.clone();
        terminating[3].terminating = true;
        assert_eq!(
            plan(2, &terminating, true, true, 0),
            vec![],
            "waits for web-3"
        );
        assert_eq!(
            plan(2, &pods, false, true, 0),
            vec![Step::Delete(3), Step::Delete(2)]
        );
    }

    #[test]
    fn rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
        let pods = [v(0, true, false), v(1, true, false), v(2, true, false)];
        assert_eq!(plan(3, &pods, true, true, 0), vec![Step::Delete(2)]);
        let pods = [v(0, true, false), v(1, true, false), v(2, true, true)];
        assert_eq!(plan(3, &pods, true, true, 0), vec![Step::Delete(1)]);
        assert_eq!(
            plan(3, &pods, true, true, 2),
            vec![],
            "partition 2 keeps 0 and 1"
        );
        let pods = [v(0, true, false), v(1, true, false), v(2, false, true)];
        assert_eq!(
            plan(3, &pods, false, true, 0),
            vec![],
            "waits for the updated pod"
        );
        assert_eq!(
            plan(3, &pods, true, false, 0),
            vec![],
            "OnDelete never deletes"
        );
    }

    fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn policy(scaled: bool, deleted: bool) -> Retention {
        Retention {
            when_scaled_delete: scaled,
            when_deleted_delete: deleted,
        }
    }

    /// The refs after applying `claim_refs` (unchanged when it says no change is needed).
    fn fixed(refs: &[OwnerReference], p: Retention, in_range: bool) -> Vec<OwnerReference> {
        let set = owner("apps/v1", "StatefulSet", "web", "set-uid");
        let pod = owner("v1", "Pod", "web-1", "pod-uid");
        let out = claim_refs(refs, &set, &pod, p, in_range).unwrap_or_else(|| refs.to_vec());
        assert_eq!(
            claim_refs(&out, &set, &pod, p, in_range),
            None,
            "the result is up to date"
        );
        out
    }

    fn uids(refs: &[OwnerReference]) -> Vec<&str> {
        refs.iter().map(|r| r.uid.as_str()).collect()
    }

    #[test]
    fn retention_policy_defaults_to_retain() {
        let set: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {},
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}
        }))
        .unwrap();
        assert_eq!(retention(&set), policy(true, false));
        let mut set = set;
        set.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy = None;
        assert_eq!(retention(&set), policy(false, false));
    }

    #[test]
    fn claim_refs_follow_the_upstream_matrix() {
        let set = owner("apps/v1", "StatefulSet", "web", "set-uid");
        let pod = owner("v1", "Pod", "web-1", "pod-uid");
        // (whenScaled, whenDeleted, in range) -> owners.
        let cases: [(bool, bool, bool, &[&str]); 8] = [
            (false, false, true, &[]),
            (false, false, false, &[]),
            (false, true, true, &["set-uid"]),
            (false, true, false, &["set-uid"]),
            (true, false, true, &[]),
            (true, false, false, &["pod-uid"]),
            (true, true, true, &["set-uid"]),
            (true, true, false, &["pod-uid"]),
        ];
        // Whatever refs of ours the claim starts with, it ends as the matrix says.
        let starts = [
            vec![],
            vec![set.clone()],
            vec![pod.clone()],
            vec![set.clone(), pod.clone()],
        ];
        for (scaled, deleted, in_range, want) in cases {
            for start in &starts {
                let got = fixed(start, policy(scaled, deleted), in_range);
                assert_eq!(
                    uids(&got),
                    want.to_vec(),
                    "whenScaled delete={scaled} whenDeleted delete={deleted} \
                     in_range={in_range} from {:?}",
                    uids(start)
                );
                assert!(got
                    .iter()
                    .all(|r| r.controller == Some(true) && r.block_owner_deletion == Some(true)));
            }
        }
    }

    #[test]
    fn claim_refs_keep_other_owners_and_fix_non_controller_refs() {
        let set = owner("apps/v1", "StatefulSet", "web", "set-uid");
        let pod = owner("v1", "Pod", "web-1", "pod-uid");
        let mut other = owner("v1", "ConfigMap", "cm", "cm-uid");
        other.controller = None;
        let got = fixed(&[other.clone()], policy(false, true), true);
        assert_eq!(uids(&got), ["cm-uid", "set-uid"]);
        let got = fixed(&[other.clone(), set.clone()], policy(false, false), true);
        assert_eq!(uids(&got), ["cm-uid"], "Retain removes only our refs");
        let mut weak = set.clone();
        weak.controller = None;
        assert_eq!(
            claim_refs(&[weak], &set, &pod, policy(false, true), true),
            Some(vec![set.clone()]),
            "a non-controller ref of ours becomes a controller ref"
        );
    }

    #[test]
    fn claim_refs_leave_stale_refs_and_foreign_controllers_alone() {
        let set = owner("apps/v1", "StatefulSet", "web", "set-uid");
        let pod = owner("v1", "Pod", "web-1", "pod-uid");
        let old_set = owner("apps/v1", "StatefulSet", "web", "old-uid");
        assert_eq!(
            claim_refs(&[old_set.clone()], &set, &pod, policy(true, true), true),
            None,
            "a ref to an earlier set of the same name is not touched"
        );
        assert_eq!(
            claim_refs(&[old_set], &set, &pod, policy(false, false), true),
            None
        );
        let foreign = owner("example.com/v1", "Keeper", "k", "k-uid");
        assert_eq!(
            claim_refs(&[foreign.clone()], &set, &pod, policy(true, true), false),
            None,
            "nothing is added under another controller"
        );
        assert_eq!(
            claim_refs(
                &[foreign.clone(), pod.clone()],
                &set,
                &pod,
                policy(true, true),
                false
            ),
            Some(vec![foreign.clone()]),
            "our refs are removed from it"
        );
        assert_eq!(
            claim_refs(&[foreign.clone()], &set, &pod, policy(false, false), true),
            None,
            "under Retain another controller is no concern"
        );
    }

    #[test]
    fn pods_get_identity_labels_hostname_subdomain_and_claims() {
        let set: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [], "volumes": [{"name": "www", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}}]}
        }))
        .unwrap();
        let t = set.spec.as_ref().unwrap().template.clone();
        let p = pod_for(&set, &t, "web-abc", 1);
        assert_eq!(p.name_any(), "web-1");
        let l = p.labels();
        assert_eq!(l[POD_NAME_LABEL], "web-1");
        assert_eq!(l[POD_INDEX_LABEL], "1");
        assert_eq!(l[REVISION_HASH], "web-abc");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-1"
        );
    }
}
