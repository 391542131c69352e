//! Disruption controller: keeps each PodDisruptionBudget's status (expected, desired and
//! currently healthy pods, the disruptions allowed now, the `DisruptionAllowed` condition) up
//! to date for the eviction API to decide by, as upstream's `pkg/controller/disruption`.
//!
//! An eviction records its pod in `status.disruptedPods` before deleting it; such a pod no
//! longer counts as healthy, and is forgotten again if it was not deleted within two minutes.
//! A `DisruptionTarget` condition the eviction API left on a pod that was then not deleted is
//! reset to False after two minutes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::{api_err, Error, Result};

/// Upstream's `DeletionTimeout`: how long an eviction recorded in `disruptedPods` may take to
/// become a deletion before the controller assumes it never will.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Upstream's `stalePodDisruptionTimeout`: how long a pod may carry a `DisruptionTarget`
/// condition without being deleted.
pub const STALE_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

struct Ctl {
    client: Client,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    rcs: Store<ReplicationController>,
    rss: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    /// Budget keys.
    queue: Queue,
    /// Pod keys whose `DisruptionTarget` condition may have gone stale.
    stale: Queue,
    recorder: Recorder,
}

pub fn start(informers: &Arc<Informers>) {
    let pdb_inf = informers.pod_disruption_budgets();
    let pod_inf = informers.pods();
    let rc_inf = informers.replication_controllers();
    let rs_inf = informers.replica_sets();
    let dep_inf = informers.deployments();
    let sts_inf = informers.stateful_sets();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        pdbs: pdb_inf.store(),
        pods: pod_inf.store(),
        rcs: rc_inf.store(),
        rss: rs_inf.store(),
        deployments: dep_inf.store(),
        statefulsets: sts_inf.store(),
        queue: Queue::new(),
        stale: Queue::new(),
        recorder: Recorder::new(informers.client(), "controllermanager"),
    });
    let q = ctl.queue.clone();
    pdb_inf.on_change(move |c| match c {
        Change::Applied(b) | Change::Deleted(b) => q.add(skiff_client::key_of(&b.metadata)),
    });
    let c = Arc::downgrade(&ctl);
    pod_inf.on_change(move |ch| {
        if let Some(c) = c.upgrade() {
            c.on_pod(ch)
        }
    });
    // A controller's scale is the denominator of percentages and maxUnavailable: budgets in
    // its namespace that use one look again when it changes.
    macro_rules! on_controller_change {
        ($inf:expr) => {
            let c = Arc::downgrade(&ctl);
            $inf.on_change(move |ch| {
                let (Change::Applied(o) | Change::Deleted(o)) = ch;
                if let Some(c) = c.upgrade() {
                    c.on_controller(o.namespace().as_deref().unwrap_or(""));
                }
            });
        };
    }
    on_controller_change!(rc_inf);
    on_controller_change!(rs_inf);
    on_controller_change!(dep_inf);
    on_controller_change!(sts_inf);
    let c = ctl.clone();
    tokio::spawn(async move {
        pdb_inf.synced().await;
        pod_inf.synced().await;
        rc_inf.synced().await;
        rs_inf.synced().await;
        dep_inf.synced().await;
        sts_inf.synced().await;
        tracing::debug!("disruption controller started");
        let w = c.clone();
        skiff_client::run_workers(c.queue.clone(), 2, "disruption", move |key| {
            let c = w.clone();
            async move { c.sync(&key).await }
        });
        skiff_client::run_workers(c.stale.clone(), 1, "disruption-stale-pods", move |key| {
            let c = c.clone();
            async move { c.sync_stale_pod(&key).await }
        });
    });
}

// ------------------------------------------------------------------------------- arithmetic

/// Upstream's `GetScaledValueFromIntOrPercent`: an integer as is, `"N%"` of `total`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .into(),
                );
            };
            let percent: i64 = digits.parse().map_err(|_| {
                format!(
                    "invalid value for IntOrString: invalid value {s:?}: strconv.Atoi: parsing {digits:?}: invalid syntax"
                )
            })?;
            let x = percent as f64 * total as f64 / 100.0;
            Ok(if round_up { x.ceil() } else { x.floor() } as i32)
        }
    }
}

/// Whether a budget's numbers depend on the scale of its pods' controllers: percentages and
/// `maxUnavailable` do, an integer `minAvailable` counts the pods themselves.
pub fn needs_controller_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// `(expectedPods, desiredHealthy)` of a budget selecting `selected` pods whose controllers
/// want `scale` replicas in all (upstream's `getExpectedPodCount`; percentages round up).
pub fn expected_and_desired(
    spec: &PodDisruptionBudgetSpec,
    selected: i32,
    scale: i32,
) -> Result<(i32, i32), String> {
    if let Some(max_unavailable) = &spec.max_unavailable {
        let max = scaled_value(max_unavailable, scale, true)?;
        return Ok((scale, (scale - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((selected, *n)),
        Some(percent) => Ok((scale, scaled_value(percent, scale, true)?)),
        None => Ok((0, 0)),
    }
}

fn is_deleting(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn later(t: &Time, d: Duration) -> Timestamp {
    t.0 + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Ready pods that are neither being deleted nor recently evicted.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| !is_deleting(p))
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|t| later(t, DELETION_TIMEOUT) <= now)
        })
        .filter(|p| skiff_client::pod_is_ready(p))
        .count() as i32
}

/// The evictions still expected to turn into deletions (upstream's `buildDisruptedPodMap`):
/// entries of pods that are gone or already being deleted are dropped, and so are those older
/// than [`DELETION_TIMEOUT`], which are also returned by name (they were never deleted).
/// Also when to look again: when the oldest remaining entry expires.
pub fn current_disruptions(
    pods: &[Arc<Pod>],
    recorded: Option<&BTreeMap<String, Time>>,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<String>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut expired = Vec::new();
    let Some(recorded) = recorded else {
        return (kept, recheck, expired);
    };
    for p in pods.iter().filter(|p| !is_deleting(p)) {
        let name = p.name_any();
        let Some(t) = recorded.get(&name) else {
            continue;
        };
        let due = later(t, DELETION_TIMEOUT);
        if due < now {
            expired.push(name);
        } else {
            recheck = Some(recheck.map_or(due, |r| r.min(due)));
            kept.insert(name, t.clone());
        }
    }
    (kept, recheck, expired)
}

fn disruption_allowed(status: &PodDisruptionBudgetStatus) -> Option<&Condition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
}

/// Upstream's `meta.SetStatusCondition`: replace the condition of the same type, keeping its
/// transition time unless its status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, mut cond: Condition, now: &Time) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(old) => {
            if old.status != cond.status {
                old.status = cond.status;
                old.last_transition_time = now.clone();
            }
            old.reason = cond.reason;
            old.message = cond.message;
            old.observed_generation = cond.observed_generation;
        }
        None => {
            cond.last_transition_time = now.clone();
            conditions.push(cond);
        }
    }
}

/// Upstream's `UpdateDisruptionAllowedCondition`: True/SufficientPods while a disruption is
/// allowed, False/InsufficientPods otherwise.
pub fn update_disruption_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: &Time) {
    let (value, reason) = if status.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let cond = Condition {
        type_: "DisruptionAllowed".into(),
        status: value.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: now.clone(),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), cond, now);
}

/// Upstream's `ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget, status: &PodDisruptionBudgetStatus) -> bool {
    let Some(c) = disruption_allowed(status) else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == "SufficientPods"
    } else {
        c.status == "False" && c.reason == "InsufficientPods"
    }
}

/// The counts a budget's status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
    pub disrupted_pods: BTreeMap<String, Time>,
}

/// The status for these counts (upstream's `updatePdbStatus`), or `None` when the budget's
/// status already says it. Disruptions are allowed only while pods are expected at all, so a
/// budget whose pods have not appeared yet is safe when they do.
pub fn new_status(
    pdb: &PodDisruptionBudget,
    counts: Counts,
    now: &Time,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = counts.current_healthy - counts.desired_healthy;
    if counts.expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let disrupted = (!counts.disrupted_pods.is_empty()).then_some(counts.disrupted_pods);
    let same_disrupted =
        old.disrupted_pods.as_ref().filter(|m| !m.is_empty()) == disrupted.as_ref();
    if old.current_healthy == counts.current_healthy
        && old.desired_healthy == counts.desired_healthy
        && old.expected_pods == counts.expected_pods
        && old.disruptions_allowed == allowed
        && same_disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb, &old)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: counts.current_healthy,
        desired_healthy: counts.desired_healthy,
        expected_pods: counts.expected_pods,
        disruptions_allowed: allowed,
        disrupted_pods: disrupted,
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    update_disruption_allowed_condition(&mut status, now);
    Some(status)
}

/// Upstream's `failSafe`: when the status cannot be computed, allow no disruption and say why.
pub fn fail_safe_status(
    pdb: &PodDisruptionBudget,
    err: &str,
    now: &Time,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let cond = Condition {
        type_: "DisruptionAllowed".into(),
        status: "False".into(),
        reason: "SyncFailed".into(),
        message: err.to_string(),
        observed_generation: status.observed_generation,
        last_transition_time: now.clone(),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), cond, now);
    status
}

/// A selector as Go prints a `*metav1.LabelSelector` with `%v`, for upstream's event text.
pub fn go_selector_string(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return "nil".into();
    };
    let labels: String = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let exprs: String = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e.key,
                e.operator,
                e.values.clone().unwrap_or_default().join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

/// Whether a budget selects a pod: as policy/v1, an empty selector selects every pod in the
/// namespace and a missing one none.
fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if pdb.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    skiff_client::selector_matches(sel, &pod.metadata.labels.clone().unwrap_or_default())
}

/// The group of an owner reference's `apiVersion` (`apps/v1` is `apps`, `v1` the core group).
fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// A pod's `DisruptionTarget` condition, when it is True, set by an API eviction (not by
/// the kubelet) and the pod is neither being deleted nor finished: how long until it counts
/// as stale.
fn stale_disruption_in(p: &Pod, now: Timestamp) -> Option<Duration> {
    if is_deleting(p) {
        return None;
    }
    let status = p.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let c = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")?;
    if c.status != "True" || c.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = c.last_transition_time.as_ref().map_or(now, |t| t.0);
    let due = since + SignedDuration::try_from(STALE_DISRUPTION_TIMEOUT).unwrap_or_default();
    Some(due.duration_since(now).try_into().unwrap_or(Duration::ZERO))
}

// ------------------------------------------------------------------------------- controller

impl Ctl {
    fn budgets_for(&self, pod: &Pod) -> Vec<Arc<PodDisruptionBudget>> {
        self.pdbs
            .state()
            .into_iter()
            .filter(|b| selects(b, pod))
            .collect()
    }

    fn on_pod(&self, c: Change<'_, Pod>) {
        let (p, deleted) = match c {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        let budgets = self.budgets_for(p);
        if budgets.len() > 1 && !deleted {
            // Upstream's text; skiff keeps every matching budget up to date all the same.
            self.recorder.publish(
                p,
                EventType::Warning,
                "MultiplePodDisruptionBudgets",
                format!(
                    "Pod {:?}/{:?} matches multiple PodDisruptionBudgets.  Chose {:?} arbitrarily.",
                    p.namespace().unwrap_or_default(),
                    p.name_any(),
                    budgets[0].name_any()
                ),
            );
        }
        for b in budgets {
            self.queue.add(skiff_client::key_of(&b.metadata));
        }
        if !deleted {
            if let Some(after) = stale_disruption_in(p, Timestamp::now()) {
                self.stale
                    .add_after(skiff_client::key_of(&p.metadata), after);
            }
        }
    }

    fn on_controller(&self, ns: &str) {
        for b in self.pdbs.state() {
            if b.namespace().as_deref() == Some(ns)
                && b.spec.as_ref().is_some_and(needs_controller_scale)
            {
                self.queue.add(skiff_client::key_of(&b.metadata));
            }
        }
    }

    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(pdb) = self.pdbs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        match self.try_sync(&pdb).await {
            Ok(()) => Ok(()),
            Err(Failure::Conflict(e)) => Err(e),
            Err(Failure::Other(why)) => {
                // As upstream: once the fail-safe status is written, the budget waits for the
                // next change rather than retrying on its own.
                tracing::debug!(pdb = key, error = %why, "disruption budget sync failed");
                let status = fail_safe_status(&pdb, &why, &skiff_client::now());
                if pdb.status.as_ref() == Some(&status) {
                    return Ok(());
                }
                self.write_status(&pdb, status).await.map_err(|e| match e {
                    Failure::Conflict(e) => e,
                    Failure::Other(m) => Error::NotReady(m),
                })
            }
        }
    }

    async fn try_sync(&self, pdb: &PodDisruptionBudget) -> Result<(), Failure> {
        let ns = pdb.namespace().unwrap_or_default();
        let spec = pdb.spec.clone().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| selects(pdb, p))
            .collect();
        if pods.is_empty() {
            self.recorder.publish(
                pdb,
                EventType::Normal,
                "NoPods",
                "No matching pods found".into(),
            );
        }
        let computed = async {
            let (scale, unmanaged) = if needs_controller_scale(&spec) {
                self.expected_scale(&ns, &pods).await?
            } else {
                (0, Vec::new())
            };
            let (expected, desired) = expected_and_desired(&spec, pods.len() as i32, scale)?;
            Ok::<_, String>((expected, desired, unmanaged))
        };
        let (expected, desired, unmanaged) = computed.await.map_err(|e| {
            self.recorder.publish(
                pdb,
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
            Failure::Other(e)
        })?;
        if !unmanaged.is_empty() {
            tracing::debug!(pdb = %pdb.name_any(), pods = ?unmanaged, "unmanaged pods selected by a disruption budget");
            self.recorder.publish(
                pdb,
                EventType::Warning,
                "UnmanagedPods",
                format!(
                    "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                    go_selector_string(spec.selector.as_ref())
                ),
            );
        }
        let now = skiff_client::now();
        let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
        let (disrupted, recheck, expired) = current_disruptions(&pods, recorded, now.0);
        for name in expired {
            if let Some(p) = pods.iter().find(|p| p.name_any() == name) {
                self.recorder.publish(
                    &**p,
                    EventType::Warning,
                    "NotDeleted",
                    format!(
                        "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                        ns,
                        pdb.name_any()
                    ),
                );
            }
        }
        let counts = Counts {
            current_healthy: count_healthy(&pods, &disrupted, now.0),
            desired_healthy: desired,
            expected_pods: expected,
            disrupted_pods: disrupted,
        };
        if let Some(status) = new_status(pdb, counts, &now) {
            self.write_status(pdb, status).await?;
        }
        if let Some(at) = recheck {
            let wait = at
                .duration_since(now.0)
                .try_into()
                .unwrap_or(Duration::ZERO);
            self.queue
                .add_after(skiff_client::key_of(&pdb.metadata), wait);
        }
        Ok(())
    }

    /// The summed scale of the controllers of `pods` (upstream's `getExpectedScale`), and the
    /// pods that have no controller at all.
    async fn expected_scale(
        &self,
        ns: &str,
        pods: &[Arc<Pod>],
    ) -> Result<(i32, Vec<String>), String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        let mut seen_refs: Vec<String> = Vec::new();
        for p in pods {
            let Some(r) = skiff_client::controller_of(&p.metadata) else {
                unmanaged.push(p.name_any());
                continue;
            };
            if scales.contains_key(&r.uid) || seen_refs.contains(&r.uid) {
                continue;
            }
            let found = match self.local_controller(r, ns) {
                Some(f) => Some(f),
                None => self.scale_controller(r, ns).await?,
            };
            let Some((uid, scale)) = found else {
                return Err(format!("found no controllers for pod {:?}", p.name_any()));
            };
            seen_refs.push(r.uid.clone());
            scales.insert(uid, scale);
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The controller of a pod among the kinds the controller watches, as upstream's finders
    /// in their order (ReplicationController, Deployment through its ReplicaSet, ReplicaSet,
    /// StatefulSet): its uid and `spec.replicas`.
    fn local_controller(&self, r: &OwnerReference, ns: &str) -> Option<(String, i32)> {
        let group = group_of(&r.api_version);
        let same = |uid: Option<String>| uid.as_deref() == Some(r.uid.as_str());
        match (r.kind.as_str(), group) {
            ("ReplicationController", "") => {
                let rc = self
                    .rcs
                    .get(&ObjectRef::new(&r.name).within(ns))
                    .filter(|rc| same(rc.uid()))?;
                Some((
                    r.uid.clone(),
                    rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            ("ReplicaSet", "apps" | "extensions") => {
                let rs = self
                    .rss
                    .get(&ObjectRef::new(&r.name).within(ns))
                    .filter(|rs| same(rs.uid()))?;
                match skiff_client::controller_of(&rs.metadata) {
                    Some(d) if d.kind == "Deployment" => {
                        if !matches!(group_of(&d.api_version), "apps" | "extensions") {
                            return None;
                        }
                        let dep = self
                            .deployments
                            .get(&ObjectRef::new(&d.name).within(ns))
                            .filter(|dep| dep.uid().as_deref() == Some(&d.uid))?;
                        Some((
                            d.uid.clone(),
                            dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        ))
                    }
                    _ => Some((
                        r.uid.clone(),
                        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )),
                }
            }
            ("StatefulSet", "apps") => {
                let sts = self
                    .statefulsets
                    .get(&ObjectRef::new(&r.name).within(ns))
                    .filter(|s| same(s.uid()))?;
                Some((
                    r.uid.clone(),
                    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            _ => None,
        }
    }

    /// Any other controller through its `scale` subresource (upstream's
    /// `getScaleController`): a kind without one is an error.
    async fn scale_controller(
        &self,
        r: &OwnerReference,
        ns: &str,
    ) -> Result<Option<(String, i32)>, String> {
        let (group, version) = match r.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", r.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &r.kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| match e {
                kube::Error::Discovery(_) => format!(
                    "no matches for kind {:?} in version {:?}",
                    r.kind, r.api_version
                ),
                other => other.to_string(),
            })?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        match api.get_scale(&r.name).await {
            Ok(s) if s.metadata.uid.as_deref() == Some(&r.uid) => Ok(Some((
                r.uid.clone(),
                s.spec.and_then(|s| s.replicas).unwrap_or(0),
            ))),
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                if caps
                    .subresources
                    .iter()
                    .any(|(sub, _)| sub.plural == "scale")
                {
                    Ok(None)
                } else {
                    let gr = if ar.group.is_empty() {
                        ar.plural.clone()
                    } else {
                        format!("{}.{}", ar.plural, ar.group)
                    };
                    Err(format!("{gr} does not implement the scale subresource"))
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Replace the budget's status, conditional on the version the controller read: an
    /// eviction that took a disruption meanwhile makes this a conflict, and the budget is
    /// synced again from the newer version.
    async fn write_status(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), Failure> {
        let ns = pdb.namespace().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
        let mut new = pdb.clone();
        new.status = Some(status);
        new.metadata.managed_fields = None;
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), &new)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 409) => {
                Err(Failure::Conflict(api_err(format!(
                    "poddisruptionbudget {ns}/{} status",
                    pdb.name_any()
                ))(e)))
            }
            Err(e) => Err(Failure::Other(e.to_string())),
        }
    }

    /// Reset a `DisruptionTarget` condition left on a pod that was not deleted.
    async fn sync_stale_pod(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        let now = skiff_client::now();
        match stale_disruption_in(&pod, now.0) {
            None => return Ok(()),
            Some(d) if !d.is_zero() => {
                self.stale.add_after(key.to_string(), d);
                return Ok(());
            }
            Some(_) => {}
        }
        let mut new = (*pod).clone();
        if let Some(c) = new
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "DisruptionTarget"))
        {
            c.status = "False".into();
            c.reason = None;
            c.message = None;
            c.last_transition_time = Some(now);
        }
        new.metadata.managed_fields = None;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.replace_status(name, &PostParams::default(), &new).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err(format!(
                "resetting the DisruptionTarget condition of pod {key}"
            ))(e)),
        }
    }
}

/// Why a budget sync failed: a conflict is retried as is; anything else first sets the
/// fail-safe status.
enum Failure {
    Conflict(Error),
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> PodDisruptionBudgetSpec {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        let conds = if ready {
            serde_json::json!([{"type": "Ready", "status": "True"}])
        } else {
            serde_json::json!([{"type": "Ready", "status": "False"}])
        };
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
                "status": {"phase": "Running", "conditions": conds}
            }))
            .unwrap(),
        )
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn percentages_scale_and_round_up() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&p("50%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&p("50%"), 3, false), Ok(1));
        assert_eq!(scaled_value(&p("0%"), 7, true), Ok(0));
        assert_eq!(scaled_value(&IntOrString::Int(4), 3, true), Ok(4));
        assert_eq!(
            scaled_value(&p("5"), 3, true),
            Err("invalid value for IntOrString: invalid type: string is not a percentage".into())
        );
        assert!(scaled_value(&p("x%"), 3, true).is_err());
    }

    #[test]
    fn expected_and_desired_follow_the_spec() {
        // minAvailable as a number counts the selected pods.
        let s = spec(serde_json::json!({"minAvailable": 2}));
        assert!(!needs_controller_scale(&s));
        assert_eq!(expected_and_desired(&s, 3, 0), Ok((3, 2)));
        // A percentage of what the controllers want, rounded up.
        let s = spec(serde_json::json!({"minAvailable": "50%"}));
        assert!(needs_controller_scale(&s));
        assert_eq!(expected_and_desired(&s, 2, 5), Ok((5, 3)));
        // maxUnavailable: the controllers' scale minus what may be down, never below zero.
        let s = spec(serde_json::json!({"maxUnavailable": 1}));
        assert_eq!(expected_and_desired(&s, 3, 3), Ok((3, 2)));
        let s = spec(serde_json::json!({"maxUnavailable": "34%"}));
        assert_eq!(
            expected_and_desired(&s, 3, 3),
            Ok((3, 1)),
            "34% of 3 rounds up to 2"
        );
        let s = spec(serde_json::json!({"maxUnavailable": 5}));
        assert_eq!(expected_and_desired(&s, 3, 3), Ok((3, 0)));
        // maxUnavailable wins over minAvailable; neither expects nothing.
        let s = spec(serde_json::json!({"maxUnavailable": 0, "minAvailable": 1}));
        assert_eq!(expected_and_desired(&s, 4, 4), Ok((4, 4)));
        assert_eq!(
            expected_and_desired(&spec(serde_json::json!({})), 4, 0),
            Ok((0, 0))
        );
    }

    #[test]
    fn healthy_pods_are_ready_not_deleting_and_not_just_evicted() {
        let now = at("2026-01-01T00:10:00Z");
        let mut deleting = (*pod("d", true)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(now));
        let pods = vec![
            pod("a", true),
            pod("b", true),
            pod("c", false),
            Arc::new(deleting),
            pod("e", true),
        ];
        let disrupted: BTreeMap<String, Time> = [
            ("b".to_string(), Time(at("2026-01-01T00:09:00Z"))),
            // Evicted longer ago than the timeout: counts again.
            ("e".to_string(), Time(at("2026-01-01T00:07:00Z"))),
        ]
        .into();
        assert_eq!(count_healthy(&pods, &disrupted, now), 2);
    }

    #[test]
    fn disrupted_pods_expire_after_two_minutes() {
        let now = at("2026-01-01T00:10:00Z");
        let mut deleting = (*pod("going", true)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(now));
        let pods = vec![pod("recent", true), pod("old", true), Arc::new(deleting)];
        let recorded: BTreeMap<String, Time> = [
            ("recent".to_string(), Time(at("2026-01-01T00:09:30Z"))),
            ("old".to_string(), Time(at("2026-01-01T00:07:59Z"))),
            ("going".to_string(), Time(at("2026-01-01T00:09:00Z"))),
            ("gone".to_string(), Time(at("2026-01-01T00:09:00Z"))),
        ]
        .into();
        let (kept, recheck, expired) = current_disruptions(&pods, Some(&recorded), now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["recent"]);
        assert_eq!(recheck, Some(at("2026-01-01T00:11:30Z")));
        assert_eq!(expired, ["old"]);
    }

    fn budget(generation: i64, status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn status_allows_healthy_minus_desired_and_sets_the_condition() {
        let now = Time(at("2026-01-01T00:00:00Z"));
        let b = budget(
            1,
            serde_json::json!({"disruptionsAllowed": 0, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0}),
        );
        let counts = |current, desired, expected| Counts {
            current_healthy: current,
            desired_healthy: desired,
            expected_pods: expected,
            disrupted_pods: BTreeMap::new(),
        };
        let st = new_status(&b, counts(3, 2, 3), &now).unwrap();
        assert_eq!(st.disruptions_allowed, 1);
        assert_eq!(st.observed_generation, Some(1));
        let c = disruption_allowed(&st).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        assert_eq!(c.observed_generation, Some(1));

        let st = new_status(&b, counts(1, 2, 3), &now).unwrap();
        assert_eq!(st.disruptions_allowed, 0, "never negative");
        let c = disruption_allowed(&st).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InsufficientPods")
        );

        let st = new_status(&b, counts(3, 0, 0), &now).unwrap();
        assert_eq!(
            st.disruptions_allowed, 0,
            "no pods expected: nothing allowed yet"
        );

        // Written once, the same counts change nothing.
        let written = PodDisruptionBudget {
            status: new_status(&b, counts(3, 2, 3), &now),
            ..b.clone()
        };
        assert_eq!(new_status(&written, counts(3, 2, 3), &now), None);
        // A new generation is observed even with the same counts.
        let mut newer = written.clone();
        newer.metadata.generation = Some(2);
        let later = Time(at("2026-01-01T00:05:00Z"));
        let st = new_status(&newer, counts(3, 2, 3), &later).unwrap();
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(
            disruption_allowed(&st).unwrap().last_transition_time,
            now,
            "the condition did not change status"
        );
    }

    #[test]
    fn a_failed_sync_allows_nothing_and_says_why() {
        let now = Time(at("2026-01-01T00:00:00Z"));
        let b = budget(
            2,
            serde_json::json!({"disruptionsAllowed": 1, "currentHealthy": 3,
            "desiredHealthy": 2, "expectedPods": 3, "observedGeneration": 1}),
        );
        let st = fail_safe_status(&b, "found no controllers for pod \"x\"", &now);
        assert_eq!(st.disruptions_allowed, 0);
        assert_eq!(st.current_healthy, 3);
        let c = disruption_allowed(&st).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "SyncFailed", "found no controllers for pod \"x\"")
        );
        assert_eq!(c.observed_generation, Some(1));
    }

    #[test]
    fn selectors_print_as_go_does() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web", "a": "b"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}]
        }))
        .unwrap();
        assert_eq!(
            go_selector_string(Some(&sel)),
            "&LabelSelector{MatchLabels:map[string]string{a: b,app: web,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:tier,Operator:In,Values:[x y],},},}"
        );
        assert_eq!(go_selector_string(None), "nil");
    }

    #[test]
    fn evicted_pods_not_deleted_have_a_stale_condition_after_two_minutes() {
        let now = at("2026-01-01T00:10:00Z");
        let mut p = (*pod("p", true)).clone();
        p.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(
                serde_json::from_value(
                    serde_json::json!({"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "lastTransitionTime": "2026-01-01T00:09:00Z"}),
                )
                .unwrap(),
            );
        assert_eq!(stale_disruption_in(&p, now), Some(Duration::from_secs(60)));
        assert_eq!(
            stale_disruption_in(&p, at("2026-01-01T00:20:00Z")),
            Some(Duration::ZERO)
        );
        p.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(
            stale_disruption_in(&p, now),
            None,
            "being deleted: not stale"
        );
    }
}
