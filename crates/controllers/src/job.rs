//! Job controller: runs pods until `completions` of them succeed (at most `parallelism` at
//! once), counting failures against `backoffLimit` with upstream's exponential delay between
//! retries, and ends the Job with a `Complete` or `Failed` condition (`BackoffLimitExceeded`,
//! `DeadlineExceeded`). Also suspend/resume, `Indexed` completion mode, and deletion of
//! finished Jobs after `ttlSecondsAfterFinished`. `podFailurePolicy` rules (`FailJob`, `Ignore`,
//! `Count`) decide how each failed pod counts; `FailIndex` is not supported yet. Indexed Jobs
//! complete early when a `successPolicy` rule is met.
//!
//! Succeeded and failed counts are taken from the pods that still exist and never decrease
//! (upstream tracks them with a pod finalizer instead; skiff does not add it yet).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    SuccessPolicy,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::expectations::Expectations;
use crate::pod_control::PodControl;
use crate::{api_err, is_gone_or_conflict, Result};

pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
const BACKOFF_BASE: i64 = 10;
const BACKOFF_MAX: i64 = 360;

struct Ctl {
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
}

pub fn start(informers: &Arc<Informers>) {
    let job_inf = informers.jobs();
    let pod_inf = informers.pods();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        jobs: job_inf.store(),
        pods: pod_inf.store(),
        queue: Queue::new(),
        expectations: Expectations::default(),
        recorder: Recorder::new(informers.client(), "job-controller"),
    });
    let q = ctl.queue.clone();
    job_inf.on_change(move |c| match c {
        Change::Applied(j) | Change::Deleted(j) => q.add(skiff_client::key_of(&j.metadata)),
    });
    let c = Arc::downgrade(&ctl);
    pod_inf.on_change(move |ch| {
        let Some(c) = c.upgrade() else { return };
        let (p, deleted) = match ch {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        if let Some(r) = skiff_client::controller_of(&p.metadata).filter(|r| r.kind == "Job") {
            let key = format!("{}/{}", p.namespace().unwrap_or_default(), r.name);
            if deleted || p.metadata.deletion_timestamp.is_some() {
                c.expectations.observed_del(&key, &p.name_any());
            } else {
                c.expectations.observed_add(&key, &p.name_any());
            }
            c.queue.add(key);
        }
    });
    let c = ctl.clone();
    tokio::spawn(async move {
        job_inf.synced().await;
        pod_inf.synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 4, "job", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

// ------------------------------------------------------------------ pure logic

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The True `Complete` or `Failed` condition of a finished Job.
pub fn finished_condition(j: &Job) -> Option<&JobCondition> {
    j.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Delay before the next pod after `failures` failures: 10 s doubling, at most 6 min.
pub fn failure_backoff(failures: i32) -> i64 {
    if failures <= 0 {
        return 0;
    }
    let shift = (failures - 1).min(10) as u32;
    (BACKOFF_BASE << shift).min(BACKOFF_MAX)
}

/// When a pod's containers last finished (for the failure backoff).
fn finished_at(p: &Pod) -> Option<i64> {
    p.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0.as_second())
        .max()
}

fn completion_index(p: &Pod) -> Option<i32> {
    p.annotations().get(COMPLETION_INDEX)?.parse().ok()
}

/// Upstream's `completedIndexes` form: sorted, runs of consecutive indexes as `a-b`.
pub fn format_indexes(ix: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = ix.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// How many pods should run now (upstream's wantActive): never more than parallelism, nor
/// more than completions still missing. Without completions, pods run until one succeeds.
pub fn want_active(parallelism: i32, completions: Option<i32>, succeeded: i32) -> i32 {
    match completions {
        Some(c) => (c - succeeded).clamp(0, parallelism.max(0)),
        None if succeeded > 0 => 0,
        None => parallelism.max(0),
    }
}

/// What a `podFailurePolicy` makes of one failed pod (upstream's matchPodFailurePolicy).
#[derive(Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Count the failure against `backoffLimit` (no rule matched, or a `Count` rule).
    Count,
    /// Do not count the failure; a replacement pod is created.
    Ignore,
    /// Fail the Job with this message.
    FailJob(String),
}

/// Whether a terminated container with a non-zero exit code matches the requirement; the
/// first such container, app containers before init containers.
fn match_exit_codes<'a>(
    p: &'a Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'a str, i32)> {
    let st = p.status.as_ref()?;
    let lists = [&st.container_statuses, &st.init_container_statuses];
    lists
        .into_iter()
        .flat_map(|l| l.iter().flatten())
        .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
        .filter_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            Some((c.name.as_str(), code))
        })
        .find(|(_, code)| {
            *code != 0
                && match req.operator.as_str() {
                    "In" => req.values.contains(code),
                    "NotIn" => !req.values.contains(code),
                    _ => false,
                }
        })
}

/// Evaluates the rules in order on a failed pod; the first matching rule with a known action
/// decides. `FailIndex` is skipped (skiff has no `backoffLimitPerIndex`).
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, p: &Pod) -> FailureAction {
    let Some(policy) = policy else {
        return FailureAction::Count;
    };
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    for (i, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(req) = &rule.on_exit_codes {
            let Some((container, code)) = match_exit_codes(p, req) else {
                continue;
            };
            format!(
                "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conds = p.status.as_ref().and_then(|s| s.conditions.as_ref());
            let Some(cond) = conds.into_iter().flatten().find(|c| {
                patterns.iter().any(|pat| {
                    let want = if pat.status.is_empty() {
                        "True"
                    } else {
                        &pat.status
                    };
                    pat.type_ == c.type_ && want == c.status
                })
            }) else {
                continue;
            };
            format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                cond.type_, rule.action
            )
        } else {
            continue;
        };
        match rule.action.as_str() {
            "FailJob" => return FailureAction::FailJob(message),
            "Ignore" => return FailureAction::Ignore,
            "Count" => return FailureAction::Count,
            _ => {}
        }
    }
    FailureAction::Count
}

/// The first `successPolicy` rule the succeeded indexes meet, as upstream's condition message
/// (matchSuccessPolicy). A rule with `succeededIndexes` needs all of them to have succeeded, or
/// `succeededCount` of them when both are set; a rule with only `succeededCount` needs that
/// many succeeded indexes. Indexes at or past `completions` are left out of a rule.
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: Option<i32>,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    let completions = completions.unwrap_or(0);
    policy.rules.iter().enumerate().find_map(|(i, rule)| {
        let met = if let Some(ix) = &rule.succeeded_indexes {
            let required: BTreeSet<i32> = parse_indexes(ix)
                .into_iter()
                .filter(|i| (0..completions).contains(i))
                .collect();
            if required.is_empty() {
                return None;
            }
            let done = required.intersection(succeeded).count();
            match rule.succeeded_count {
                Some(n) => done >= n.max(0) as usize,
                None => done == required.len(),
            }
        } else if let Some(n) = rule.succeeded_count {
            succeeded.len() >= n.max(0) as usize
        } else {
            false
        };
        met.then(|| format!("Matched rules at index {i}"))
    })
}

fn condition(t: &str, reason: &str, message: &str, now: &Time) -> JobCondition {
    JobCondition {
        type_: t.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

fn set_condition(st: &mut JobStatus, c: JobCondition) {
    let conds = st.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter_mut().find(|x| x.type_ == c.type_) {
        if cur.status != c.status || cur.reason != c.reason {
            *cur = c;
        }
    } else {
        conds.push(c);
    }
}

// ------------------------------------------------------------------ controller

fn pod_name(job: &str, index: Option<i32>) -> String {
    let mut prefix = match index {
        Some(i) => format!("{job}-{i}-"),
        None => format!("{job}-"),
    };
    prefix.truncate(58);
    format!("{prefix}{}", skiff_client::random_suffix(5))
}

fn pod_for(job: &Job, name: &str, index: Option<i32>) -> Pod {
    let t = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tm = t.metadata.unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let mut spec = t.spec;
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(s) = spec.as_mut() {
            // Upstream's `hostname` for indexed pods: `<job>-<index>`.
            s.hostname = Some(format!("{}-{i}", job.name_any()));
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: tm.finalizers,
            owner_references: Some(vec![skiff_client::controller_ref(
                "batch/v1",
                "Job",
                &job.metadata,
            )]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(());
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(spec) = job.spec.clone() else {
            return Ok(());
        };
        let now = skiff_client::now();
        if let Some(done) = finished_condition(&job) {
            return self.sync_ttl(&job, key, done, &now).await;
        }
        let uid = job.uid().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .filter(|p| skiff_client::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let old = job.status.clone().unwrap_or_default();
        let mut st = old.clone();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completions = spec.completions;
        let parallelism = spec.parallelism.unwrap_or(1);

        let active: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| skiff_client::pod_is_active(p))
            .cloned()
            .collect();
        // Failed pods that count against backoffLimit (those a podFailurePolicy `Ignore` rule
        // matched do not), and the first `FailJob` match, in pod-name order.
        let policy = spec.pod_failure_policy.as_ref();
        let mut all_failed: Vec<&Arc<Pod>> = pods.iter().filter(|p| phase(p) == "Failed").collect();
        all_failed.sort_by_key(|p| p.name_any());
        let mut fail_job: Option<String> = None;
        let mut failed_pods: Vec<&Arc<Pod>> = Vec::new();
        for p in all_failed {
            match match_pod_failure_policy(policy, p) {
                FailureAction::Ignore => continue,
                FailureAction::FailJob(m) => {
                    fail_job.get_or_insert(m);
                }
                FailureAction::Count => {}
            }
            failed_pods.push(p);
        }
        let mut completed: BTreeSet<i32> =
            parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
        let succeeded_now = pods.iter().filter(|p| phase(p) == "Succeeded");
        let succeeded = if indexed {
            for p in succeeded_now {
                if let Some(i) = completion_index(p).filter(|i| completions.is_some_and(|c| *i < c))
                {
                    completed.insert(i);
                }
            }
            st.completed_indexes = Some(format_indexes(&completed));
            completed.len() as i32
        } else {
            (succeeded_now.count() as i32).max(old.succeeded.unwrap_or(0))
        };
        let failed = (failed_pods.len() as i32).max(old.failed.unwrap_or(0));
        st.succeeded = Some(succeeded);
        st.failed = Some(failed);

        let suspended = spec.suspend.unwrap_or(false);
        if suspended {
            if !active.is_empty() {
                self.delete_pods(&pods_api, &job, key, active.clone()).await;
            }
            if st
                .conditions
                .iter()
                .flatten()
                .all(|c| c.type_ != "Suspended" || c.status != "True")
            {
                set_condition(
                    &mut st,
                    condition("Suspended", "JobSuspended", "Job suspended", &now),
                );
                self.recorder.publish(
                    job.as_ref(),
                    EventType::Normal,
                    "Suspended",
                    "Job suspended".into(),
                );
            }
            st.active = Some(0);
            st.ready = Some(0);
            st.start_time = None;
            return self.write_status(&job, &old, st).await;
        }
        if let Some(c) = st.conditions.as_mut().and_then(|cs| {
            cs.iter_mut()
                .find(|c| c.type_ == "Suspended" && c.status == "True")
        }) {
            c.status = "False".into();
            c.reason = Some("JobResumed".into());
            c.message = Some("Job resumed".into());
            c.last_transition_time = Some(now.clone());
            self.recorder.publish(
                job.as_ref(),
                EventType::Normal,
                "Resumed",
                "Job resumed".into(),
            );
        }
        if st.start_time.is_none() {
            st.start_time = Some(now.clone());
        }
        let started = st.start_time.as_ref().map(|t| t.0.as_second()).unwrap_or(0);

        // Failure: too many failed pods, or past the deadline.
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let deadline = spec.active_deadline_seconds.map(|s| started + s);
        let failure = if let Some(m) = fail_job.as_deref() {
            Some(("PodFailurePolicy", m))
        } else if failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| d <= now.0.as_second()) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        // A successPolicy rule met takes precedence over reaching completions.
        let policy_met = indexed
            .then(|| match_success_policy(spec.success_policy.as_ref(), completions, &completed))
            .flatten();
        let reached = match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        let complete = match policy_met {
            Some(m) => Some(("SuccessPolicy", m)),
            None if reached => Some((
                "CompletionsReached",
                "Reached expected number of succeeded pods".to_string(),
            )),
            None => None,
        };
        if let Some((reason, message)) = failure {
            if !active.is_empty() {
                self.delete_pods(&pods_api, &job, key, active.clone()).await;
            }
            set_condition(&mut st, condition("FailureTarget", reason, message, &now));
            set_condition(&mut st, condition("Failed", reason, message, &now));
            self.recorder
                .publish(job.as_ref(), EventType::Warning, reason, message.into());
            st.active = Some(0);
            st.ready = Some(0);
            return self.write_status(&job, &old, st).await;
        }
        if let Some((reason, message)) = complete {
            if !active.is_empty() {
                self.delete_pods(&pods_api, &job, key, active.clone()).await;
            }
            set_condition(
                &mut st,
                condition("SuccessCriteriaMet", reason, &message, &now),
            );
            set_condition(&mut st, condition("Complete", reason, &message, &now));
            st.completion_time = Some(now.clone());
            st.active = Some(0);
            st.ready = Some(0);
            self.recorder.publish(
                job.as_ref(),
                EventType::Normal,
                "Completed",
                "Job completed".into(),
            );
            return self.write_status(&job, &old, st).await;
        }

        // Pods to create or delete.
        let want = want_active(parallelism, completions, succeeded) as usize;
        if self.expectations.satisfied(key) {
            let last_failure = failed_pods.iter().filter_map(|p| finished_at(p)).max();
            let wait = last_failure
                .map(|t| t + failure_backoff(failed) - now.0.as_second())
                .unwrap_or(0);
            if active.len() < want && wait > 0 {
                self.queue
                    .add_after(key.to_string(), Duration::from_secs(wait as u64));
            } else if active.len() < want {
                let n = want - active.len();
                let indexes: Vec<Option<i32>> = if indexed {
                    let running: BTreeSet<i32> =
                        active.iter().filter_map(|p| completion_index(p)).collect();
                    (0..completions.unwrap_or(0))
                        .filter(|i| !completed.contains(i) && !running.contains(i))
                        .take(n)
                        .map(Some)
                        .collect()
                } else {
                    vec![None; n]
                };
                self.create_pods(&pods_api, &job, key, indexes).await;
            } else if active.len() > want {
                let mut extra = active.clone();
                // Newest and not-ready pods go first.
                extra.sort_by_key(|p| {
                    (
                        skiff_client::pod_is_ready(p),
                        std::cmp::Reverse(
                            p.metadata
                                .creation_timestamp
                                .as_ref()
                                .map(|t| t.0.as_second()),
                        ),
                    )
                });
                extra.truncate(active.len() - want);
                self.delete_pods(&pods_api, &job, key, extra).await;
            }
        }
        st.active = Some(active.len() as i32);
        st.ready = Some(
            active
                .iter()
                .filter(|p| skiff_client::pod_is_ready(p))
                .count() as i32,
        );
        if let Some(d) = deadline {
            let left = (d - now.0.as_second()).max(0) as u64;
            self.queue.add_after(
                key.to_string(),
                Duration::from_secs(left) + Duration::from_millis(200),
            );
        }
        self.write_status(&job, &old, st).await
    }

    /// Deletes a finished Job `ttlSecondsAfterFinished` after it finished.
    async fn sync_ttl(&self, job: &Job, key: &str, done: &JobCondition, now: &Time) -> Result<()> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(());
        };
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .or(done.last_transition_time.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(now.0.as_second());
        let expires = finished + ttl as i64;
        if expires > now.0.as_second() {
            let wait = (expires - now.0.as_second()) as u64;
            self.queue
                .add_after(key.to_string(), Duration::from_secs(wait));
            return Ok(());
        }
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let dp = DeleteParams {
            // Upstream's TTL controller deletes in the foreground; skiff's garbage collector
            // does not handle foreground deletion of Jobs yet, so their pods go afterwards.
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(kube::api::Preconditions {
                uid: job.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("deleting finished job {key}"))(e)),
        }
    }

    async fn write_status(&self, job: &Job, old: &JobStatus, st: JobStatus) -> Result<()> {
        if &st == old {
            return Ok(());
        }
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let patch = crate::merge::status_patch(Some(old), &st);
        match api
            .patch_status(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("job {} status", job.name_any()))(e)),
        }
    }

    async fn create_pods(&self, api: &Api<Pod>, job: &Job, key: &str, indexes: Vec<Option<i32>>) {
        let jname = job.name_any();
        let pods = indexes
            .into_iter()
            .map(|i| pod_for(job, &pod_name(&jname, i), i))
            .collect();
        self.pod_control().create(api, job, key, pods).await;
    }

    async fn delete_pods(&self, api: &Api<Pod>, job: &Job, key: &str, pods: Vec<Arc<Pod>>) {
        self.pod_control().delete(api, job, key, pods).await;
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

    #[test]
    fn active_pods_never_exceed_parallelism_nor_missing_completions() {
        assert_eq!(want_active(2, Some(5), 0), 2);
        assert_eq!(want_active(2, Some(5), 4), 1);
        assert_eq!(want_active(2, Some(5), 5), 0);
        assert_eq!(want_active(3, None, 0), 3);
        assert_eq!(
            want_active(3, None, 1),
            0,
            "work-queue jobs stop after a success"
        );
    }

    #[test]
    fn failure_backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(failure_backoff(0), 0);
        assert_eq!(failure_backoff(1), 10);
        assert_eq!(failure_backoff(2), 20);
        assert_eq!(failure_backoff(6), 320);
        assert_eq!(failure_backoff(7), 360);
        assert_eq!(failure_backoff(40), 360);
    }

    #[test]
    fn completed_indexes_are_written_as_ranges() {
        let ix: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&ix), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), ix);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn indexed_pods_carry_their_index_and_job_labels_from_the_template() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"job-name": "pi"}},
                "spec": {"containers": [], "restartPolicy": "Never"}}}
        }))
        .unwrap();
        let p = pod_for(&job, "pi-3-abcde", Some(3));
        assert_eq!(p.labels()["job-name"], "pi");
        assert_eq!(p.annotations()[COMPLETION_INDEX], "3");
        assert_eq!(p.spec.unwrap().hostname.as_deref(), Some("pi-3"));
        assert_eq!(p.metadata.owner_references.unwrap()[0].kind, "Job");
        assert!(pod_name("pi", Some(3)).starts_with("pi-3-"));
    }

    fn failed_pod(containers: serde_json::Value, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p1", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": containers,
                "conditions": conditions}
        }))
        .unwrap()
    }

    fn exited(name: &str, code: i32) -> serde_json::Value {
        serde_json::json!({"name": name, "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code}}})
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(serde_json::json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn pod_failure_policy_rules_match_in_order_on_exit_codes() {
        let pol = policy(serde_json::json!([
            {"action": "Ignore", "onExitCodes": {"containerName": "side", "operator": "In", "values": [1]}},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}},
        ]));
        let p = failed_pod(
            serde_json::json!([exited("main", 42), exited("side", 0)]),
            serde_json::json!([]),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&pol), &p),
            FailureAction::FailJob(
                "Container main for pod ns/p1 failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        // The container name restricts the rule: `side` exiting 1 is ignored, `main` is not.
        let p = failed_pod(
            serde_json::json!([exited("side", 1)]),
            serde_json::json!([]),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&pol), &p),
            FailureAction::Ignore
        );
        let p = failed_pod(
            serde_json::json!([exited("main", 1)]),
            serde_json::json!([]),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&pol), &p),
            FailureAction::Count
        );
        // Exit code 0 never matches, not even NotIn.
        let ignore_not_in = policy(serde_json::json!([
            {"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [5]}},
        ]));
        let p = failed_pod(
            serde_json::json!([exited("main", 0)]),
            serde_json::json!([]),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&ignore_not_in), &p),
            FailureAction::Count
        );
        let p = failed_pod(
            serde_json::json!([exited("main", 3)]),
            serde_json::json!([]),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&ignore_not_in), &p),
            FailureAction::Ignore
        );
        assert_eq!(match_pod_failure_policy(None, &p), FailureAction::Count);
        // Unknown actions (and FailIndex, unsupported) skip the rule.
        let skip = policy(serde_json::json!([
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        ]));
        assert_eq!(
            match_pod_failure_policy(Some(&skip), &p),
            FailureAction::Ignore
        );
    }

    #[test]
    fn pod_failure_policy_rules_match_pod_conditions() {
        let pol = policy(serde_json::json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]},
        ]));
        let cond = |t: &str, s: &str| serde_json::json!([{"type": t, "status": s}]);
        let p = failed_pod(serde_json::json!([]), cond("DisruptionTarget", "True"));
        assert_eq!(
            match_pod_failure_policy(Some(&pol), &p),
            FailureAction::Ignore
        );
        let p = failed_pod(serde_json::json!([]), cond("DisruptionTarget", "False"));
        assert_eq!(
            match_pod_failure_policy(Some(&pol), &p),
            FailureAction::Count
        );
        let p = failed_pod(serde_json::json!([]), cond("ConfigIssue", "True"));
        assert_eq!(
            match_pod_failure_policy(Some(&pol), &p),
            FailureAction::FailJob(
                "Pod ns/p1 has condition ConfigIssue matching FailJob rule at index 1".into()
            )
        );
    }

    #[test]
    fn success_policy_rules_need_their_indexes_or_a_count_of_them() {
        let pol: SuccessPolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"succeededIndexes": "0,2-3"},
            {"succeededIndexes": "5-9", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .unwrap();
        let m =
            |ix: &[i32]| match_success_policy(Some(&pol), Some(6), &ix.iter().copied().collect());
        assert_eq!(m(&[]), None);
        assert_eq!(m(&[0, 2]), None);
        assert_eq!(m(&[0, 2, 3]).as_deref(), Some("Matched rules at index 0"));
        // Indexes 6-9 are past completions: only 5 can count towards rule 1.
        assert_eq!(m(&[5]), None);
        assert_eq!(
            m(&[1, 4, 5, 0]).as_deref(),
            Some("Matched rules at index 2")
        );
        assert_eq!(match_success_policy(None, Some(6), &[0].into()), None);
        let two: SuccessPolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"succeededIndexes": "1-5", "succeededCount": 2}]}))
        .unwrap();
        assert_eq!(
            match_success_policy(Some(&two), Some(6), &[0, 3, 4].into()).as_deref(),
            Some("Matched rules at index 0")
        );
    }
}
