//! Deployment controller: one ReplicaSet per pod template (`<deployment>-<pod-template-hash>`),
//! rolled from old to new within maxSurge/maxUnavailable (RollingUpdate) or all at once
//! (Recreate), with revision annotations, history cleanup, pause, and the status and
//! conditions `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::{api_err, is_gone_or_conflict, Error, Result};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

// ------------------------------------------------------------------ rolling-update arithmetic

/// An IntOrString against `total`: percentages rounded up or down (upstream's
/// GetScaledValueFromIntOrPercent).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = p * total as i64;
            (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) for `replicas`; both zero becomes unavailable 1, as upstream.
pub fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let s = scaled_value(surge.unwrap_or(&quarter), replicas, true);
    let u = scaled_value(unavailable.unwrap_or(&quarter), replicas, false);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

/// Replicas for the new ReplicaSet during a rolling update (upstream's NewRSNewReplicas):
/// grow by what maxSurge leaves room for, up to `replicas`.
pub fn new_rs_new_replicas(replicas: i32, max_surge: i32, all_pods: i32, new_rs: i32) -> i32 {
    let max_total = replicas + max_surge;
    if all_pods >= max_total {
        return new_rs;
    }
    let up = (max_total - all_pods).min(replicas - new_rs).max(0);
    new_rs + up
}

/// How many old pods may go (upstream's reconcileOldReplicaSets): what is left above
/// `replicas - maxUnavailable`, not counting new pods that are not available yet.
pub fn max_scaled_down(
    replicas: i32,
    max_unavailable: i32,
    all_pods: i32,
    new_rs_replicas: i32,
    new_rs_available: i32,
) -> i32 {
    let min_available = replicas - max_unavailable;
    let new_unavailable = new_rs_replicas - new_rs_available;
    all_pods - min_available - new_unavailable
}

// ------------------------------------------------------------------ scaling (upstream's scale())

/// What scaling needs to know of one ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleSet {
    pub name: String,
    /// Creation time in seconds; none sorts first, as upstream's zero time does.
    pub created: Option<i64>,
    pub replicas: i32,
    pub available: i32,
    /// The `desired-replicas` annotation, when it parses.
    pub desired: Option<i32>,
    /// The `max-replicas` annotation, when it parses.
    pub max_replicas: Option<i32>,
}

/// The Deployment as scaling sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleTarget {
    pub replicas: i32,
    /// Resolved maxSurge; 0 for Recreate.
    pub max_surge: i32,
    pub rolling: bool,
    /// status.replicas: the old size when a ReplicaSet has no max-replicas annotation.
    pub status_replicas: i32,
}

/// Sizes to write, in the order to write them (indices into the sets given to
/// [`plan_scale`]), and the direction the events name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScalePlan {
    pub sizes: Vec<(usize, i32)>,
    pub direction: &'static str,
}

/// Upstream's getReplicaSetFraction: what `rs` gains (negative: loses) so that its share of
/// `replicas + maxSurge` is the share it had of the max-replicas it was last scaled for.
pub fn replica_set_fraction(rs: &ScaleSet, d: &ScaleTarget) -> i32 {
    if d.replicas == 0 {
        return -rs.replicas;
    }
    let before = rs.max_replicas.unwrap_or(d.status_replicas);
    if before <= 0 {
        // Upstream divides by zero here; nothing is a safe share (the leftover step still
        // brings the total to the allowed size).
        return 0;
    }
    let size = rs.replicas as f64 * (d.replicas + d.max_surge) as f64 / before as f64;
    // f64::round rounds halves away from zero, as Go's math.Round.
    size.round() as i32 - rs.replicas
}

/// Upstream's GetReplicaSetProportion: the fraction, never past what is still to add (or
/// remove).
pub fn replica_set_proportion(rs: &ScaleSet, d: &ScaleTarget, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn older(a: &ScaleSet, b: &ScaleSet) -> std::cmp::Ordering {
    (a.created, &a.name).cmp(&(b.created, &b.name))
}

/// Upstream's scale() as data. At most one active (replicas > 0) ReplicaSet: it (or the
/// newest if none is active) gets the Deployment's replicas. A saturated new ReplicaSet: the
/// old ones go to 0. Otherwise, for RollingUpdate, `replicas + maxSurge` minus what the active
/// sets have is spread over them by their proportions, largest first (ties: newest first when
/// growing, oldest first when shrinking), and what rounding leaves over goes to the first.
pub fn plan_scale(sets: &[ScaleSet], new: Option<usize>, d: &ScaleTarget) -> ScalePlan {
    let active: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].replicas > 0).collect();
    let only = match active.len() {
        0 => new.or_else(|| (0..sets.len()).max_by(|&a, &b| older(&sets[a], &sets[b]))),
        1 => Some(active[0]),
        _ => None,
    };
    if active.len() <= 1 {
        let Some(i) = only else {
            return ScalePlan::default();
        };
        // Upstream writes nothing when the size is already right; the controller's write is
        // a no-op then too, unless the replica annotations are stale, which it refreshes (else
        // every sync would see a scaling event and the rollout never resume).
        let direction = if sets[i].replicas > d.replicas {
            "down"
        } else {
            "up"
        };
        return ScalePlan {
            sizes: vec![(i, d.replicas)],
            direction,
        };
    }
    if let Some(n) = new {
        let rs = &sets[n];
        if rs.replicas == d.replicas && rs.desired == Some(d.replicas) && rs.available == d.replicas
        {
            return ScalePlan {
                sizes: active
                    .iter()
                    .filter(|&&i| i != n)
                    .map(|&i| (i, 0))
                    .collect(),
                direction: "down",
            };
        }
    }
    if !d.rolling {
        return ScalePlan::default();
    }
    let total: i32 = active.iter().map(|&i| sets[i].replicas).sum();
    let allowed = if d.replicas > 0 {
        d.replicas + d.max_surge
    } else {
        0
    };
    let to_add = allowed - total;
    let mut order = active;
    let direction = match to_add.cmp(&0) {
        std::cmp::Ordering::Greater => {
            order.sort_by(|&a, &b| {
                (sets[b].replicas.cmp(&sets[a].replicas)).then(older(&sets[b], &sets[a]))
            });
            "up"
        }
        std::cmp::Ordering::Less => {
            order.sort_by(|&a, &b| {
                (sets[b].replicas.cmp(&sets[a].replicas)).then(older(&sets[a], &sets[b]))
            });
            "down"
        }
        std::cmp::Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = order
        .iter()
        .map(|&i| {
            let p = replica_set_proportion(&sets[i], d, to_add, added);
            added += p;
            (i, sets[i].replicas + p)
        })
        .collect();
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    ScalePlan { sizes, direction }
}

/// Upstream's isScalingEvent: an active ReplicaSet was last scaled for another size.
pub fn is_scaling_event(sets: &[ScaleSet], replicas: i32) -> bool {
    sets.iter()
        .filter(|r| r.replicas > 0)
        .any(|r| r.desired.is_some_and(|d| d != replicas))
}

// ------------------------------------------------------------------ templates and hashing

/// FNV-32a over the template's canonical JSON and the collision count.
pub fn pod_template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u32;
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(serde_json::to_string(t).unwrap_or_default().as_bytes());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    skiff_client::safe_encode(&h.to_string())
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut() {
        if let Some(l) = m.labels.as_mut() {
            l.remove(POD_TEMPLATE_HASH);
            if l.is_empty() {
                m.labels = None;
            }
        }
    }
    serde_json::to_value(t).unwrap_or_default()
}

/// Templates equal apart from the pod-template-hash label (upstream's EqualIgnoreHash).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Available pods a ReplicaSet keeps: at most its replicas (the rest are being deleted).
fn capped_available(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}

// ------------------------------------------------------------------ conditions

fn condition(t: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = skiff_client::now();
    DeploymentCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

fn get_condition<'a>(s: &'a DeploymentStatus, t: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == t)
}

/// Upstream's SetDeploymentCondition: same status and reason changes nothing; same status
/// keeps the transition time.
fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

fn remove_condition(s: &mut DeploymentStatus, t: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != t);
    }
}

// ------------------------------------------------------------------ controller

struct Ctl {
    client: Client,
    deployments: Store<Deployment>,
    rs: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: Queue,
    recorder: Recorder,
}

pub fn start(informers: &Arc<Informers>) {
    let d_inf = informers.deployments();
    let rs_inf = informers.replica_sets();
    let pod_inf = informers.pods();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        deployments: d_inf.store(),
        rs: rs_inf.store(),
        pods: pod_inf.store(),
        queue: Queue::new(),
        recorder: Recorder::new(informers.client(), "deployment-controller"),
    });
    let q = ctl.queue.clone();
    d_inf.on_change(move |c| match c {
        Change::Applied(d) | Change::Deleted(d) => q.add(skiff_client::key_of(&d.metadata)),
    });
    let c = Arc::downgrade(&ctl);
    rs_inf.on_change(move |ch| {
        let Some(c) = c.upgrade() else { return };
        let rs = match ch {
            Change::Applied(r) | Change::Deleted(r) => r,
        };
        let ns = rs.namespace().unwrap_or_default();
        match skiff_client::controller_of(&rs.metadata) {
            Some(r) if r.kind == "Deployment" => c.queue.add(format!("{ns}/{}", r.name)),
            Some(_) => {}
            None => {
                let labels = rs.metadata.labels.clone().unwrap_or_default();
                for d in c.deployments.state() {
                    if d.namespace().as_deref() == Some(ns.as_str())
                        && d.spec.as_ref().is_some_and(|s| {
                            !skiff_client::selector_is_empty(&s.selector)
                                && skiff_client::selector_matches(&s.selector, &labels)
                        })
                    {
                        c.queue.add(skiff_client::key_of(&d.metadata));
                    }
                }
            }
        }
    });
    let c = ctl.clone();
    tokio::spawn(async move {
        d_inf.synced().await;
        rs_inf.synced().await;
        pod_inf.synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 2, "deployment", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

/// One sync's view of a Deployment's ReplicaSets.
struct Sets {
    new: Option<Arc<ReplicaSet>>,
    old: Vec<Arc<ReplicaSet>>,
}

impl Sets {
    fn all(&self) -> impl Iterator<Item = &Arc<ReplicaSet>> {
        self.new.iter().chain(self.old.iter())
    }
}

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(d) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        let Some(spec) = d.spec.clone() else {
            return Ok(());
        };
        if skiff_client::selector_is_empty(&spec.selector) {
            if d.status.as_ref().and_then(|s| s.observed_generation) != d.metadata.generation {
                self.recorder.publish(
                    d.as_ref(),
                    EventType::Warning,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required."
                        .into(),
                );
            }
            return Ok(());
        }
        let owned = self.claim_replica_sets(&d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let sets = self.split(&d, owned);
            return self.sync_status(&d, &sets, None).await;
        }
        let paused = spec.paused.unwrap_or(false);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let mut sets = self.split(&d, owned);
        // Paused, or resized since the active ReplicaSets were last scaled: scale only
        // (upstream's sync), proportionally when a rollout is under way.
        if paused || is_scaling_event(&self.scale_sets(&sets).1, spec.replicas.unwrap_or(1)) {
            if let Some(new) = &sets.new {
                self.sync_revision(&d, new, &sets).await?;
            }
            self.scale_all(&d, &sets).await?;
            if paused {
                self.cleanup(&d, &sets).await?;
            }
            return self.sync_status(&d, &sets, None).await;
        }
        let mut created = None;
        if sets.new.is_none() {
            // Recreate makes the new ReplicaSet only once old pods are gone.
            if !recreate || !self.old_pods_running(&sets) {
                let rs = self.create_new_rs(&d, &sets, recreate).await?;
                created = Some(rs.name_any());
                sets.new = Some(Arc::new(rs));
                return self.sync_status(&d, &sets, created).await;
            }
        }
        if let Some(new) = &sets.new {
            self.sync_revision(&d, new, &sets).await?;
        }
        let scaled = if recreate {
            self.rollout_recreate(&d, &sets).await?
        } else {
            self.rollout_rolling(&d, &sets).await?
        };
        if !scaled && self.complete(&d, &sets) {
            self.cleanup(&d, &sets).await?;
        }
        self.sync_status(&d, &sets, created).await
    }

    /// ReplicaSets controlled by `d`, adopting matching orphans and releasing non-matching.
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<Arc<ReplicaSet>>> {
        let ns = d.namespace().unwrap_or_default();
        let uid = d.uid().unwrap_or_default();
        let sel = &d.spec.as_ref().unwrap().selector;
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let mut out = Vec::new();
        for rs in self.rs.state() {
            if rs.namespace().as_deref() != Some(ns.as_str()) {
                continue;
            }
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = skiff_client::selector_matches(sel, &labels);
            match skiff_client::controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        out.push(rs);
                    } else if d.metadata.deletion_timestamp.is_none() {
                        let refs: Vec<_> = rs
                            .owner_references()
                            .iter()
                            .filter(|r| r.uid != uid)
                            .cloned()
                            .collect();
                        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": rs.uid()}});
                        if let Err(e) = api
                            .patch(
                                &rs.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await
                        {
                            if !is_gone_or_conflict(&e) {
                                return Err(api_err("releasing replicaset")(e));
                            }
                        }
                    }
                }
                Some(_) => {}
                None if matches
                    && d.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let mut refs = rs.owner_references().to_vec();
                    refs.push(skiff_client::controller_ref(
                        "apps/v1",
                        "Deployment",
                        &d.metadata,
                    ));
                    let patch =
                        serde_json::json!({"metadata": {"ownerReferences": refs, "uid": rs.uid()}});
                    match api
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(adopted) => out.push(Arc::new(adopted)),
                        Err(e) if is_gone_or_conflict(&e) => {}
                        Err(e) => return Err(api_err("adopting replicaset")(e)),
                    }
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// The ReplicaSet whose template equals the Deployment's (the oldest if several), and the rest.
    fn split(&self, d: &Deployment, mut owned: Vec<Arc<ReplicaSet>>) -> Sets {
        owned.sort_by_key(|r| {
            (
                r.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
                r.name_any(),
            )
        });
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let idx = owned.iter().position(|r| {
            r.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let new = idx.map(|i| owned.remove(i));
        Sets { new, old: owned }
    }

    fn old_pods_running(&self, sets: &Sets) -> bool {
        if sets
            .old
            .iter()
            .any(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0) > 0 || rs_replicas(r) > 0)
        {
            return true;
        }
        let uids: Vec<String> = sets.old.iter().filter_map(|r| r.uid()).collect();
        self.pods.state().iter().any(|p| {
            skiff_client::controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                )
        })
    }

    fn max_surge(&self, d: &Deployment) -> (i32, i32) {
        let spec = d.spec.as_ref().unwrap();
        let replicas = spec.replicas.unwrap_or(1);
        let ru = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            return (0, replicas);
        }
        resolve_fenceposts(
            ru.and_then(|r| r.max_surge.as_ref()),
            ru.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
        )
    }

    async fn create_new_rs(
        &self,
        d: &Deployment,
        sets: &Sets,
        recreate: bool,
    ) -> Result<ReplicaSet> {
        let spec = d.spec.as_ref().unwrap();
        let ns = d.namespace().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = pod_template_hash(&spec.template, collision);
        let name = format!("{}-{hash}", d.name_any());
        let replicas = spec.replicas.unwrap_or(1);
        let (surge, _) = self.max_surge(d);
        let all: i32 = sets.all().map(|r| rs_replicas(r)).sum();
        let want = if recreate {
            replicas
        } else {
            new_rs_new_replicas(replicas, surge, all, 0)
        };
        let revision = sets.old.iter().map(|r| revision_of(r)).max().unwrap_or(0) + 1;
        let mut template = spec.template.clone();
        let tm = template.metadata.get_or_insert_with(Default::default);
        tm.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut annotations: BTreeMap<String, String> = d
            .annotations()
            .iter()
            .filter(|(k, _)| {
                ![
                    LAST_APPLIED,
                    REVISION,
                    REVISION_HISTORY,
                    DESIRED_REPLICAS,
                    MAX_REPLICAS,
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: tm.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![skiff_client::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(want),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if want > 0 {
                    self.recorder.publish(
                        d,
                        EventType::Normal,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} to {want}"),
                    );
                }
                Ok(created)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .map_err(api_err(format!("getting replicaset {name}")))?;
                let same_owner = skiff_client::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if same_owner && same {
                    return Ok(existing);
                }
                // A hash collision: bump collisionCount so the next hash differs.
                let dapi: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                let patch =
                    serde_json::json!({"status": {"collisionCount": collision.unwrap_or(0) + 1}});
                dapi.patch_status(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(api_err("bumping collisionCount"))?;
                Err(Error::NotReady(format!("replicaset name {name} collides")))
            }
            Err(e) => Err(api_err(format!("creating replicaset {name}"))(e)),
        }
    }

    /// The new ReplicaSet carries the highest revision; the Deployment mirrors it.
    async fn sync_revision(
        &self,
        d: &Deployment,
        new: &Arc<ReplicaSet>,
        sets: &Sets,
    ) -> Result<()> {
        let ns = d.namespace().unwrap_or_default();
        let max_old = sets.old.iter().map(|r| revision_of(r)).max().unwrap_or(0);
        let mut revision = revision_of(new);
        if revision <= max_old {
            let old_rev = revision;
            revision = max_old + 1;
            let mut history: Vec<String> = new
                .annotations()
                .get(REVISION_HISTORY)
                .map(|h| h.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            if old_rev > 0 {
                history.push(old_rev.to_string());
            }
            let mut ann = serde_json::json!({REVISION: revision.to_string()});
            if !history.is_empty() {
                ann[REVISION_HISTORY] = history.join(",").into();
            }
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
            let patch = serde_json::json!({"metadata": {"annotations": ann}});
            api.patch(
                &new.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(api_err("updating replicaset revision"))?;
        }
        if d.annotations().get(REVISION) != Some(&revision.to_string()) {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
            let patch =
                serde_json::json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
            api.patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(api_err("updating deployment revision"))?;
        }
        Ok(())
    }

    /// Sets a ReplicaSet's replicas (and the desired/max annotations), with the event.
    async fn scale(&self, d: &Deployment, rs: &ReplicaSet, to: i32) -> Result<bool> {
        let from = rs_replicas(rs);
        let direction = if to > from { "up" } else { "down" };
        self.scale_as(d, rs, to, direction).await
    }

    /// [`Self::scale`] with the direction the event names: a proportional scale names the
    /// Deployment's direction for every ReplicaSet, as upstream.
    async fn scale_as(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        to: i32,
        direction: &str,
    ) -> Result<bool> {
        let from = rs_replicas(rs);
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let (surge, _) = self.max_surge(d);
        let ann = rs.annotations();
        let ann_ok = ann.get(DESIRED_REPLICAS) == Some(&replicas.to_string())
            && ann.get(MAX_REPLICAS) == Some(&(replicas + surge).to_string());
        if from == to && ann_ok {
            return Ok(false);
        }
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &rs.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: replicas.to_string(),
                                         MAX_REPLICAS: (replicas + surge).to_string()}},
            "spec": {"replicas": to}});
        api.patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_err(format!("scaling replicaset {}", rs.name_any())))?;
        if from != to {
            self.recorder.publish(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} to {to} from {from}",
                    rs.name_any()
                ),
            );
        }
        Ok(from != to)
    }

    /// The ReplicaSets as [`plan_scale`] sees them, the new one (if any) first.
    fn scale_sets(&self, sets: &Sets) -> (Vec<Arc<ReplicaSet>>, Vec<ScaleSet>) {
        let all: Vec<Arc<ReplicaSet>> = sets.all().cloned().collect();
        let int_ann = |rs: &ReplicaSet, k: &str| rs.annotations().get(k)?.parse::<i32>().ok();
        let view = all
            .iter()
            .map(|rs| ScaleSet {
                name: rs.name_any(),
                created: rs
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
                replicas: rs_replicas(rs),
                available: rs_available(rs),
                desired: int_ann(rs, DESIRED_REPLICAS),
                max_replicas: int_ann(rs, MAX_REPLICAS),
            })
            .collect();
        (all, view)
    }

    /// Upstream's scale(): see [`plan_scale`]. Stops at the first failed write; the
    /// Deployment is synced again.
    async fn scale_all(&self, d: &Deployment, sets: &Sets) -> Result<()> {
        let spec = d.spec.as_ref().unwrap();
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let target = ScaleTarget {
            replicas: spec.replicas.unwrap_or(1),
            max_surge: self.max_surge(d).0,
            rolling: !recreate,
            status_replicas: d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        };
        let (all, view) = self.scale_sets(sets);
        let new = sets.new.as_ref().map(|_| 0);
        let plan = plan_scale(&view, new, &target);
        for (i, to) in plan.sizes {
            self.scale_as(d, &all[i], to, plan.direction).await?;
        }
        Ok(())
    }

    async fn rollout_rolling(&self, d: &Deployment, sets: &Sets) -> Result<bool> {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let (surge, unavailable) = self.max_surge(d);
        let Some(new) = &sets.new else {
            return Ok(false);
        };
        // Pods a ReplicaSet still has above its replicas are about to go, but exist: count
        // them for the surge bound, and never count more than `replicas` as available.
        let all: i32 = sets
            .all()
            .map(|r| rs_replicas(r).max(r.status.as_ref().map(|s| s.replicas).unwrap_or(0)))
            .sum();
        // Scale the new ReplicaSet up (or down to the target).
        let cur = rs_replicas(new);
        let target = if cur > replicas {
            replicas
        } else {
            new_rs_new_replicas(replicas, surge, all, cur)
        };
        if target != cur {
            return self.scale(d, new, target).await;
        }
        // Scale old ReplicaSets down, unhealthy pods first.
        let old_total: i32 = sets.old.iter().map(|r| rs_replicas(r)).sum();
        if old_total == 0 {
            // Keep annotations current on the new set.
            return self.scale(d, new, cur).await.map(|_| false);
        }
        let mut budget = max_scaled_down(replicas, unavailable, all, cur, capped_available(new));
        if budget <= 0 {
            return Ok(false);
        }
        let mut scaled = false;
        let mut old = sets.old.clone();
        old.sort_by_key(|r| {
            r.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        });
        // cleanupUnhealthyReplicas
        let mut remaining: Vec<(Arc<ReplicaSet>, i32)> = Vec::new();
        for rs in &old {
            let n = rs_replicas(rs);
            let unhealthy = n - capped_available(rs);
            let mut to = n;
            if budget > 0 && unhealthy > 0 {
                let down = unhealthy.min(budget);
                to = n - down;
                budget -= down;
                scaled |= self.scale(d, rs, to).await?;
            }
            remaining.push((rs.clone(), to));
        }
        // scaleDownOldReplicaSetsForRollingUpdate: keep replicas - maxUnavailable available.
        let min_available = replicas - unavailable;
        let available: i32 = sets.all().map(|r| capped_available(r)).sum();
        let mut total_down = available - min_available;
        for (rs, n) in remaining {
            if total_down <= 0 {
                break;
            }
            if n == 0 {
                continue;
            }
            let down = n.min(total_down);
            total_down -= down;
            scaled |= self.scale(d, &rs, n - down).await?;
        }
        Ok(scaled)
    }

    async fn rollout_recreate(&self, d: &Deployment, sets: &Sets) -> Result<bool> {
        let mut scaled = false;
        for rs in &sets.old {
            if rs_replicas(rs) > 0 {
                scaled |= self.scale(d, rs, 0).await?;
            }
        }
        if scaled || self.old_pods_running(sets) {
            return Ok(true);
        }
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        match &sets.new {
            Some(new) => self.scale(d, new, replicas).await,
            None => Ok(false),
        }
    }

    fn complete(&self, d: &Deployment, sets: &Sets) -> bool {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = status_from_sets(d, sets);
        st.updated_replicas == Some(replicas)
            && st.replicas == Some(replicas)
            && st.available_replicas == Some(replicas)
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, d: &Deployment, sets: &Sets) -> Result<()> {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut dead: Vec<&Arc<ReplicaSet>> = sets
            .old
            .iter()
            .filter(|r| {
                rs_replicas(r) == 0
                    && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && r.metadata.deletion_timestamp.is_none()
                    && r.status.as_ref().and_then(|s| s.observed_generation)
                        >= r.metadata.generation
            })
            .collect();
        if dead.len() <= limit {
            return Ok(());
        }
        dead.sort_by_key(|r| revision_of(r));
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        for rs in &dead[..dead.len() - limit] {
            match api.delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_gone_or_conflict(&e) => {}
                Err(e) => return Err(api_err("deleting old replicaset")(e)),
            }
        }
        Ok(())
    }

    async fn sync_status(
        &self,
        d: &Deployment,
        sets: &Sets,
        created: Option<String>,
    ) -> Result<()> {
        let old = d.status.clone().unwrap_or_default();
        let mut st = status_from_sets(d, sets);
        st.conditions = old.conditions.clone();
        st.collision_count = old.collision_count;
        let spec = d.spec.as_ref().unwrap();
        let replicas = spec.replicas.unwrap_or(1);
        let (_, unavailable) = self.max_surge(d);
        if st.available_replicas.unwrap_or(0) >= replicas - unavailable {
            set_condition(
                &mut st,
                condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                ),
            );
        } else {
            set_condition(
                &mut st,
                condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                ),
            );
        }
        let mut requeue = None;
        let paused = spec.paused.unwrap_or(false);
        let cur = get_condition(&old, "Progressing").cloned();
        let new_name = sets.new.as_ref().map(|r| r.name_any());
        if paused {
            if cur.as_ref().and_then(|c| c.reason.as_deref()) != Some("DeploymentPaused") {
                set_condition(
                    &mut st,
                    condition(
                        "Progressing",
                        "Unknown",
                        "DeploymentPaused",
                        "Deployment is paused".into(),
                    ),
                );
            }
        } else if cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused") {
            set_condition(
                &mut st,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                ),
            );
        } else if let Some(name) = &created {
            let mut c = condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set {name:?}"),
            );
            if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(&mut st, "Progressing");
            set_condition(&mut st, c);
            requeue = Some(spec.progress_deadline_seconds.unwrap_or(600));
        } else if let Some(name) = &new_name {
            let deadline = spec.progress_deadline_seconds.unwrap_or(600);
            let complete = st.updated_replicas == Some(replicas)
                && st.replicas == Some(replicas)
                && st.available_replicas == Some(replicas);
            let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
            let new_old = st.replicas.unwrap_or(0) - st.updated_replicas.unwrap_or(0);
            let progressing = st.updated_replicas > old.updated_replicas
                || new_old < old_old
                || st.ready_replicas > old.ready_replicas
                || st.available_replicas > old.available_replicas;
            if complete {
                set_condition(
                    &mut st,
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet {name:?} has successfully progressed."),
                    ),
                );
            } else if progressing || cur.is_none() {
                let mut c = condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet {name:?} is progressing."),
                );
                if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut st, "Progressing");
                set_condition(&mut st, c);
                requeue = Some(deadline);
            } else if let Some(c) = &cur {
                let reason = c.reason.as_deref();
                if reason != Some("NewReplicaSetAvailable")
                    && reason != Some("ProgressDeadlineExceeded")
                {
                    let since = c
                        .last_update_time
                        .as_ref()
                        .map(|t| t.0.as_second())
                        .unwrap_or(0);
                    let now = skiff_client::now().0.as_second();
                    if since + deadline as i64 <= now {
                        set_condition(
                            &mut st,
                            condition(
                                "Progressing",
                                "False",
                                "ProgressDeadlineExceeded",
                                format!("ReplicaSet {name:?} has timed out progressing."),
                            ),
                        );
                    } else {
                        requeue = Some((since + deadline as i64 - now + 1) as i32);
                    }
                }
            }
        }
        // Keep Available first and Progressing second as upstream lists them.
        if let Some(c) = st.conditions.as_mut() {
            c.sort_by_key(|c| match c.type_.as_str() {
                "Available" => 0,
                "Progressing" => 1,
                _ => 2,
            });
        }
        if let Some(secs) = requeue {
            self.queue.add_after(
                skiff_client::key_of(&d.metadata),
                Duration::from_secs(secs.max(1) as u64),
            );
        }
        if d.status.as_ref() == Some(&st) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": st});
        match api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err("deployment status")(e)),
        }
    }
}

/// Replica counts of the status, from the ReplicaSets' statuses.
fn status_from_sets(d: &Deployment, sets: &Sets) -> DeploymentStatus {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| sets.all().map(|r| f(r)).sum::<i32>();
    let total = sum(&|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = sum(&|r| {
        r.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let available = sum(&|r| rs_available(r));
    let updated = sets
        .new
        .as_ref()
        .and_then(|r| r.status.as_ref())
        .map(|s| s.replicas)
        .unwrap_or(0);
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        assert_eq!(resolve_fenceposts(None, None, 3), (1, 0));
        assert_eq!(resolve_fenceposts(None, None, 10), (3, 2));
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 5),
            (0, 1),
            "both zero is not allowed to stall: unavailable becomes 1"
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("50%")), Some(&pct("50%")), 5),
            (3, 2)
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&pct("0%")), 5),
            (2, 0)
        );
    }

    #[test]
    fn new_replica_set_grows_within_max_surge() {
        // 3 replicas, surge 1: from old=3/new=0 the new set may grow to 1.
        assert_eq!(new_rs_new_replicas(3, 1, 3, 0), 1);
        // At the surge limit it waits.
        assert_eq!(new_rs_new_replicas(3, 1, 4, 1), 1);
        // Never above the target.
        assert_eq!(new_rs_new_replicas(3, 10, 3, 2), 3);
        // A fresh deployment with nothing yet starts at the full size.
        assert_eq!(new_rs_new_replicas(5, 2, 0, 0), 5);
    }

    #[test]
    fn old_replica_sets_shrink_only_above_min_available() {
        // 3 replicas, maxUnavailable 0, one new pod not yet available: nothing may go.
        assert_eq!(max_scaled_down(3, 0, 4, 1, 0), 0);
        // Once the new pod is available, one old pod may go.
        assert_eq!(max_scaled_down(3, 0, 4, 1, 1), 1);
        // maxUnavailable 1 allows one more.
        assert_eq!(max_scaled_down(3, 1, 4, 1, 1), 2);
    }

    /// A ReplicaSet last scaled for a Deployment of `was` replicas with maxSurge `was_surge`,
    /// created at `created`, fully available.
    fn set(name: &str, replicas: i32, created: i64, was: i32, was_surge: i32) -> ScaleSet {
        ScaleSet {
            name: name.into(),
            created: Some(created),
            replicas,
            available: replicas,
            desired: Some(was),
            max_replicas: Some(was + was_surge),
        }
    }

    fn rolling(replicas: i32, max_surge: i32) -> ScaleTarget {
        ScaleTarget {
            replicas,
            max_surge,
            rolling: true,
            status_replicas: 0,
        }
    }

    /// New sizes by name, unchanged sets included.
    fn sizes(sets: &[ScaleSet], new: Option<usize>, d: &ScaleTarget) -> Vec<(String, i32)> {
        let plan = plan_scale(sets, new, d);
        sets.iter()
            .enumerate()
            .map(|(i, r)| {
                let to = plan.sizes.iter().find(|(j, _)| *j == i).map(|(_, n)| *n);
                (r.name.clone(), to.unwrap_or(r.replicas))
            })
            .collect()
    }

    fn named(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    }

    // Creation times as upstream's TestScale: older, old, new.
    const OLDER: i64 = 0;
    const OLD: i64 = 3600;
    const NEW: i64 = 7200;

    #[test]
    fn mid_rollout_resize_spreads_over_the_sets_by_their_share() {
        // 10 replicas, maxSurge 3, stalled at old 8 / new 5 (max-replicas 13).
        let sets = [set("v2", 5, NEW, 10, 3), set("v1", 8, OLD, 10, 3)];
        // To 15 with maxSurge 3: 18 allowed, 5 more. v1 (largest first): round(8*18/13) = 11;
        // v2: round(5*18/13) = 7.
        let p = plan_scale(&sets, Some(0), &rolling(15, 3));
        assert_eq!(p.direction, "up");
        assert_eq!(p.sizes, [(1, 11), (0, 7)]);
        // Upstream's "change both surge and size": to 50 with maxSurge 6: 34 and 22.
        assert_eq!(
            sizes(&sets, Some(0), &rolling(50, 6)),
            named(&[("v2", 22), ("v1", 34)])
        );
        // The end-to-end case: 25% of 20 is a surge of 5, 25 allowed: 15 and 10.
        assert_eq!(
            sizes(&sets, Some(0), &rolling(20, 5)),
            named(&[("v2", 10), ("v1", 15)])
        );
    }

    #[test]
    fn proportional_scaling_matches_upstream_test_scale() {
        // (sets, new index, deployment replicas, maxSurge, expected sizes); the sets were last
        // scaled for the old size with maxSurge 0 unless said otherwise.
        let cases: Vec<(
            &str,
            Vec<ScaleSet>,
            Option<usize>,
            i32,
            i32,
            Vec<(&str, i32)>,
        )> = vec![
            (
                "normal scaling event: 10 -> 12",
                vec![set("v1", 10, NEW, 10, 0)],
                Some(0),
                12,
                0,
                vec![("v1", 12)],
            ),
            (
                "normal scaling event: 10 -> 5",
                vec![set("v1", 10, NEW, 10, 0)],
                Some(0),
                5,
                0,
                vec![("v1", 5)],
            ),
            (
                "proportional scaling: 5 -> 10",
                vec![set("v2", 2, NEW, 5, 0), set("v1", 3, OLD, 5, 0)],
                Some(0),
                10,
                0,
                vec![("v2", 4), ("v1", 6)],
            ),
            (
                "proportional scaling: 5 -> 3",
                vec![set("v2", 2, NEW, 5, 0), set("v1", 3, OLD, 5, 0)],
                Some(0),
                3,
                0,
                vec![("v2", 1), ("v1", 2)],
            ),
            (
                "proportional scaling: 9 -> 4",
                vec![set("v2", 8, NEW, 9, 0), set("v1", 1, OLD, 9, 0)],
                Some(0),
                4,
                0,
                vec![("v2", 4), ("v1", 0)],
            ),
            (
                "proportional scaling: 7 -> 10",
                vec![
                    set("v3", 2, NEW, 7, 0),
                    set("v2", 3, OLD, 7, 0),
                    set("v1", 2, OLDER, 7, 0),
                ],
                Some(0),
                10,
                0,
                vec![("v3", 3), ("v2", 4), ("v1", 3)],
            ),
            (
                "proportional scaling: 13 -> 8",
                vec![
                    set("v3", 2, NEW, 13, 0),
                    set("v2", 8, OLD, 13, 0),
                    set("v1", 3, OLDER, 13, 0),
                ],
                Some(0),
                8,
                0,
                vec![("v3", 1), ("v2", 5), ("v1", 2)],
            ),
            (
                "leftover distribution: 3 -> 4 grows the newest",
                vec![
                    set("v3", 1, NEW, 3, 0),
                    set("v2", 1, OLD, 3, 0),
                    set("v1", 1, OLDER, 3, 0),
                ],
                Some(0),
                4,
                0,
                vec![("v3", 2), ("v2", 1), ("v1", 1)],
            ),
            (
                "leftover distribution: 3 -> 2 shrinks the oldest",
                vec![
                    set("v3", 1, NEW, 3, 0),
                    set("v2", 1, OLD, 3, 0),
                    set("v1", 1, OLDER, 3, 0),
                ],
                Some(0),
                2,
                0,
                vec![("v3", 1), ("v2", 1), ("v1", 0)],
            ),
            (
                "no new rs: 4 -> 5 grows the latest first",
                vec![set("v2", 2, OLD, 4, 0), set("v1", 2, OLDER, 4, 0)],
                None,
                5,
                0,
                vec![("v2", 3), ("v1", 2)],
            ),
            (
                "6 -> 0",
                vec![
                    set("v3", 3, NEW, 6, 0),
                    set("v2", 2, OLD, 6, 0),
                    set("v1", 1, OLDER, 6, 0),
                ],
                Some(0),
                0,
                0,
                vec![("v3", 0), ("v2", 0), ("v1", 0)],
            ),
            (
                "0 -> 6 scales only the new set",
                vec![
                    set("v3", 0, NEW, 6, 0),
                    set("v2", 0, OLD, 6, 0),
                    set("v1", 0, OLDER, 6, 0),
                ],
                Some(0),
                6,
                0,
                vec![("v3", 6), ("v2", 0), ("v1", 0)],
            ),
            (
                "one set last scaled for 3: it takes the added replica",
                vec![
                    set("v3", 2, NEW, 5, 0),
                    set("v2", 1, OLD, 3, 0),
                    set("v1", 1, OLDER, 5, 0),
                ],
                Some(0),
                5,
                0,
                vec![("v3", 2), ("v2", 2), ("v1", 1)],
            ),
            (
                "deployment with surge pods: 10 -> 20, maxSurge 2",
                vec![set("v2", 6, NEW, 10, 2), set("v1", 6, OLD, 10, 2)],
                Some(0),
                20,
                2,
                vec![("v2", 11), ("v1", 11)],
            ),
            (
                "change both size and template: no new set yet",
                vec![set("v2", 7, NEW, 10, 0), set("v1", 3, OLD, 10, 0)],
                None,
                14,
                0,
                vec![("v2", 10), ("v1", 4)],
            ),
        ];
        for (name, sets, new, replicas, surge, want) in cases {
            assert_eq!(
                sizes(&sets, new, &rolling(replicas, surge)),
                named(&want),
                "{name}"
            );
        }
    }

    #[test]
    fn saturated_new_set_drains_the_old_ones_and_a_broken_one_does_not() {
        let d = rolling(2, 1);
        let mut new = set("v2", 2, NEW, 2, 1);
        let sets = [new.clone(), set("v1", 1, OLD, 2, 1)];
        let p = plan_scale(&sets, Some(0), &d);
        assert_eq!((p.sizes, p.direction), (vec![(1, 0)], "down"));
        // Upstream's "saturated but broken new replica set does not affect old pods".
        new.available = 0;
        let sets = [new, set("v1", 1, OLD, 2, 1)];
        assert_eq!(sizes(&sets, Some(0), &d), named(&[("v2", 2), ("v1", 1)]));
    }

    #[test]
    fn recreate_and_unannotated_sets() {
        // Recreate never spreads: two active sets stay as they are.
        let sets = [set("v2", 2, NEW, 5, 0), set("v1", 3, OLD, 5, 0)];
        let d = ScaleTarget {
            rolling: false,
            ..rolling(10, 0)
        };
        assert!(plan_scale(&sets, Some(0), &d).sizes.is_empty());
        // Without max-replicas the share is of status.replicas.
        let mut a = set("v2", 2, NEW, 5, 0);
        a.max_replicas = None;
        let d = ScaleTarget {
            status_replicas: 5,
            ..rolling(10, 0)
        };
        assert_eq!(replica_set_fraction(&a, &d), 2);
        // ...and with neither, no share: the leftover goes to the first set.
        let d = rolling(10, 0);
        assert_eq!(replica_set_fraction(&a, &d), 0);
        let mut b = set("v1", 3, OLD, 5, 0);
        b.max_replicas = None;
        assert_eq!(sizes(&[a, b], Some(0), &d), named(&[("v2", 2), ("v1", 8)]));
    }

    #[test]
    fn scaling_event_is_an_active_set_scaled_for_another_size() {
        let sets = [set("v2", 5, NEW, 10, 3), set("v1", 0, OLD, 4, 0)];
        assert!(!is_scaling_event(&sets, 10), "inactive sets do not count");
        assert!(is_scaling_event(&sets, 20));
        let mut plain = set("v2", 5, NEW, 10, 3);
        plain.desired = None;
        assert!(!is_scaling_event(&[plain], 20), "no annotation, no event");
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn template_hash_is_stable_and_changes_with_the_template() {
        let a = pod_template_hash(&template("nginx:1"), None);
        assert_eq!(a, pod_template_hash(&template("nginx:1"), None));
        assert_ne!(a, pod_template_hash(&template("nginx:2"), None));
        assert_ne!(a, pod_template_hash(&template("nginx:1"), Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut labelled = template("nginx:1");
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), a.clone());
        assert!(equal_ignore_hash(&labelled, &template("nginx:1")));
        assert!(!equal_ignore_hash(&labelled, &template("nginx:2")));
    }

    #[test]
    fn same_status_and_reason_keeps_the_condition() {
        let mut st = DeploymentStatus::default();
        let mut c = condition("Available", "True", "MinimumReplicasAvailable", "m".into());
        c.last_update_time = None;
        set_condition(&mut st, c);
        set_condition(
            &mut st,
            condition("Available", "True", "MinimumReplicasAvailable", "m".into()),
        );
        assert_eq!(
            get_condition(&st, "Available").unwrap().last_update_time,
            None
        );
    }
}
