//! CronJob controller: creates a Job `<cronjob>-<scheduled time in unix minutes>` at each time of
//! a standard 5-field cron schedule (in `timeZone`, or UTC), honouring concurrencyPolicy
//! (Allow, Forbid, Replace), startingDeadlineSeconds and suspend; keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, and deletes finished Jobs beyond the history
//! limits. The clock is injectable (`start_with_clock`) so tests can move time.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, EventType, Informers, Queue, Recorder};

use crate::{api_err, is_gone_or_conflict, Result};

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Beyond this many missed times upstream gives up catching up and warns.
const MAX_MISSED: usize = 100;

// ------------------------------------------------------------------ cron schedules

/// A parsed 5-field schedule: bit sets of allowed minutes, hours, days, months, weekdays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    /// Day-of-month or day-of-week was `*`/`?`: then both must match, otherwise either
    /// (cron's and robfig/cron's rule).
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, min: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + min);
    }
    s.parse()
        .map_err(|_| format!("failed to parse int from {s}"))
}

/// One field: `*`, `?`, `a`, `a-b`, with `/step`, comma-separated.
fn field(s: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                Some(
                    st.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {st}"))?,
                ),
            ),
            None => (part, None),
        };
        let (lo, hi, is_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, min, names)?, value(b, min, names)?, false)
        } else {
            let v = value(range, min, names)?;
            (v, if step.is_some() { max } else { v }, false)
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!(
                "end of range ({hi}) above maximum ({max}) or beginning ({lo}) below minimum ({min}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        star |= is_star && step == 1;
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                f.len()
            ));
        }
        let (minutes, _) = field(f[0], 0, 59, &[])?;
        let (hours, _) = field(f[1], 0, 23, &[])?;
        let (dom, dom_star) = field(f[2], 1, 31, &[])?;
        let (months, _) = field(f[3], 1, 12, &MONTHS)?;
        let (dow, dow_star) = field(f[4], 0, 6, &DAYS)?;
        Ok(Schedule {
            minutes,
            hours,
            dom,
            months,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: &DateTime) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first civil minute strictly after `t` that matches, within five years.
    pub fn next_civil(&self, t: DateTime) -> Option<DateTime> {
        let mut t = t
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = t.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day();
                continue;
            }
            if !self.day_matches(&t) {
                t = t.start_of_day().checked_add(1.day()).ok()?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            return Some(t);
        }
        None
    }

    /// The first schedule time strictly after `t`, in time zone `tz`.
    pub fn next(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let civil = t.to_zoned(tz.clone()).datetime();
        let mut next = self.next_civil(civil)?;
        loop {
            let ts = tz.to_timestamp(next).ok()?;
            // A time skipped by a DST jump can map back before `t`; move on.
            if ts > t {
                return Some(ts);
            }
            next = self.next_civil(next)?;
        }
    }
}

/// The latest schedule time in (`earliest`, `now`] and how many were missed in that window
/// (upstream's mostRecentScheduleTime), counting at most `MAX_MISSED + 1`.
pub fn most_recent(
    s: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut n = 0;
    let mut t = earliest;
    while let Some(next) = s.next(t, tz) {
        if next > now {
            break;
        }
        last = Some(next);
        n += 1;
        t = next;
        if n > MAX_MISSED {
            // Only the latest time matters now: jump to the shortest window before `now`
            // that still holds a schedule time.
            for back in [60, 3_600, 86_400, 32 * 86_400, 367 * 86_400] {
                let w = now
                    .checked_sub(jiff::SignedDuration::from_secs(back))
                    .unwrap_or(now);
                if w > next && s.next(w, tz).is_some_and(|x| x <= now) {
                    t = w;
                    break;
                }
            }
        }
    }
    (last, n)
}

/// What a sync does about the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No time is due since the last one (or within startingDeadlineSeconds).
    Wait,
    /// A time is due but concurrencyPolicy Forbid and a Job still runs; it is retried on the
    /// next sync while it stays within the deadline.
    Blocked,
    /// Start the Job for `due`, deleting the running ones first when `replace`.
    Start {
        due: Timestamp,
        replace: bool,
        missed: usize,
    },
}

/// Upstream's syncCronJob decision, pure so that tests choose the clock: the latest time due
/// after `last` (the last scheduled time, or the creation time), not older than
/// `starting_deadline` seconds, and the concurrency policy against `active` Jobs.
pub fn decide(
    s: &Schedule,
    tz: &TimeZone,
    last: Timestamp,
    starting_deadline: Option<i64>,
    policy: &str,
    active: usize,
    now: Timestamp,
) -> Decision {
    let mut earliest = last;
    if let Some(d) = starting_deadline {
        let floor = now
            .checked_sub(jiff::SignedDuration::from_secs(d))
            .unwrap_or(now);
        earliest = earliest.max(floor);
    }
    let (Some(due), missed) = most_recent(s, tz, earliest, now) else {
        return Decision::Wait;
    };
    match policy {
        "Forbid" if active > 0 => Decision::Blocked,
        _ => Decision::Start {
            due,
            replace: policy == "Replace" && active > 0,
            missed,
        },
    }
}

/// Upstream's job name: `<cronjob>-<scheduled unix time in minutes>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second() / 60)
}

// ------------------------------------------------------------------ controller

/// The controller's notion of now.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

struct Ctl {
    client: Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    queue: Queue,
    recorder: Recorder,
    clock: Clock,
}

pub fn start(informers: &Arc<Informers>) {
    start_with_clock(informers, Arc::new(Timestamp::now));
}

pub fn start_with_clock(informers: &Arc<Informers>, clock: Clock) {
    let cj_inf = informers.cron_jobs();
    let job_inf = informers.jobs();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        cronjobs: cj_inf.store(),
        jobs: job_inf.store(),
        queue: Queue::new(),
        recorder: Recorder::new(informers.client(), "cronjob-controller"),
        clock,
    });
    let q = ctl.queue.clone();
    cj_inf.on_change(move |c| match c {
        Change::Applied(j) | Change::Deleted(j) => q.add(skiff_client::key_of(&j.metadata)),
    });
    let q = ctl.queue.clone();
    job_inf.on_change(move |c| {
        let j = match c {
            Change::Applied(j) | Change::Deleted(j) => j,
        };
        if let Some(r) = skiff_client::controller_of(&j.metadata).filter(|r| r.kind == "CronJob") {
            q.add(format!("{}/{}", j.namespace().unwrap_or_default(), r.name));
        }
    });
    let c = ctl.clone();
    tokio::spawn(async move {
        cj_inf.synced().await;
        job_inf.synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 2, "cronjob", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

fn finished(j: &Job) -> Option<&str> {
    crate::job::finished_condition(j).map(|c| c.type_.as_str())
}

fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(cj) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        let Some(spec) = cj.spec.clone() else {
            return Ok(());
        };
        let now = (self.clock)();
        let uid = cj.uid().unwrap_or_default();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let mut jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.namespace().as_deref() == Some(ns))
            .filter(|j| skiff_client::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let old = cj.status.clone().unwrap_or_default();
        let mut st = old.clone();

        // Active list: running jobs; finished ones are reported once.
        let mut active = Vec::new();
        for j in &jobs {
            let was_active = old.active.iter().flatten().any(|r| r.uid == j.metadata.uid);
            match finished(j) {
                None if j.metadata.deletion_timestamp.is_none() => active.push(job_ref(j)),
                None => {}
                Some(cond) => {
                    if was_active {
                        self.recorder.publish(
                            cj.as_ref(),
                            EventType::Normal,
                            "SawCompletedJob",
                            format!("Saw completed job: {}, condition: {cond}", j.name_any()),
                        );
                    }
                    if cond == "Complete" {
                        let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                        if done.as_ref().map(|t| t.0)
                            > st.last_successful_time.as_ref().map(|t| t.0)
                        {
                            st.last_successful_time = done;
                        }
                    }
                }
            }
        }
        for r in old.active.iter().flatten() {
            if !jobs.iter().any(|j| j.metadata.uid == r.uid)
                && !active.iter().any(|a| a.uid == r.uid)
            {
                // Created by us moments ago but not in the cache yet, or gone for good.
                let fresh = old
                    .last_schedule_time
                    .as_ref()
                    .is_some_and(|t| now.as_second() - t.0.as_second() < 10);
                if fresh {
                    active.push(r.clone());
                } else {
                    self.recorder.publish(
                        cj.as_ref(),
                        EventType::Normal,
                        "MissingJob",
                        format!(
                            "Active job went missing: {}",
                            r.name.clone().unwrap_or_default()
                        ),
                    );
                }
            }
        }
        st.active = (!active.is_empty()).then_some(active);

        // History limits.
        if cj.metadata.deletion_timestamp.is_none() {
            let ok_limit = spec.successful_jobs_history_limit.unwrap_or(3).max(0) as usize;
            let fail_limit = spec.failed_jobs_history_limit.unwrap_or(1).max(0) as usize;
            for (kind, limit) in [("Complete", ok_limit), ("Failed", fail_limit)] {
                let done: Vec<&Arc<Job>> = jobs
                    .iter()
                    .filter(|j| {
                        finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none()
                    })
                    .collect();
                if done.len() > limit {
                    for j in &done[..done.len() - limit] {
                        self.delete_job(&jobs_api, &cj, j).await?;
                    }
                }
            }
        }

        let result = self.schedule(&cj, &spec, &mut st, now, &jobs_api).await;
        if st != old {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            let patch = crate::merge::status_patch(Some(&old), &st);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_gone_or_conflict(&e) => {}
                Err(e) => return Err(api_err(format!("cronjob {key} status"))(e)),
            }
        }
        result
    }

    /// Creates the Job for the latest due time, if any, and requeues for the next one.
    async fn schedule(
        &self,
        cj: &CronJob,
        spec: &k8s_openapi::api::batch::v1::CronJobSpec,
        st: &mut CronJobStatus,
        now: Timestamp,
        jobs_api: &Api<Job>,
    ) -> Result<()> {
        let key = skiff_client::key_of(&cj.metadata);
        if cj.metadata.deletion_timestamp.is_some() || spec.suspend.unwrap_or(false) {
            return Ok(());
        }
        let sched = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.publish(
                    cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok(());
            }
        };
        let tz = match spec.time_zone.as_deref() {
            None | Some("") => TimeZone::UTC,
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.recorder.publish(
                        cj,
                        EventType::Warning,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {name:?}: {e}"),
                    );
                    return Ok(());
                }
            },
        };
        let created = cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        let last = st.last_schedule_time.as_ref().map(|t| t.0);
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        let active = st.active.clone().unwrap_or_default();
        let decision = decide(
            &sched,
            &tz,
            last.unwrap_or(created),
            spec.starting_deadline_seconds,
            policy,
            active.len(),
            now,
        );
        if let Some(next) = sched.next(now, &tz) {
            let wait = (next.as_millisecond() - now.as_millisecond()).max(0) as u64 + 100;
            self.queue
                .add_after(key.clone(), Duration::from_millis(wait));
        }
        let (due, replace) = match decision {
            Decision::Wait | Decision::Blocked => return Ok(()),
            Decision::Start {
                due,
                replace,
                missed,
            } => {
                if missed > MAX_MISSED {
                    self.recorder.publish(
                        cj,
                        EventType::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                    );
                }
                (due, replace)
            }
        };
        if replace {
            for r in &active {
                let jname = r.name.clone().unwrap_or_default();
                if let Some(j) = self
                    .jobs
                    .get(&ObjectRef::new(&jname).within(&cj.namespace().unwrap_or_default()))
                {
                    self.delete_job(jobs_api, cj, &j).await?;
                }
            }
            st.active = None;
        }
        let jname = job_name(&cj.name_any(), due);
        let t = spec.job_template.clone();
        let tm = t.metadata.unwrap_or_default();
        let mut annotations = tm.annotations.unwrap_or_default();
        let due_time = time(due);
        annotations.insert(SCHEDULED_TIMESTAMP.into(), due.to_string());
        let job = Job {
            metadata: ObjectMeta {
                name: Some(jname.clone()),
                namespace: cj.metadata.namespace.clone(),
                labels: tm.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![skiff_client::controller_ref(
                    "batch/v1",
                    "CronJob",
                    &cj.metadata,
                )]),
                ..Default::default()
            },
            spec: t.spec,
            status: None,
        };
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.recorder.publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created job {jname}"),
                );
                st.active.get_or_insert_with(Vec::new).push(job_ref(&j));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Made by an earlier sync: already counted, or already finished.
            }
            Err(e) => {
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.recorder.publish(
                    cj,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating job: {msg}"),
                );
                return Err(api_err(format!("creating job {jname}"))(e));
            }
        }
        st.last_schedule_time = Some(due_time);
        Ok(())
    }

    async fn delete_job(&self, api: &Api<Job>, cj: &CronJob, j: &Job) -> Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(&j.name_any(), &dp).await {
            Ok(_) => {
                self.recorder.publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {}", j.name_any()),
                );
                Ok(())
            }
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("deleting job {}", j.name_any()))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:07:30Z"),
            "2026-01-01T10:15:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-01-01T10:07:00Z"),
            "2026-01-01T10:08:00Z"
        );
        assert_eq!(
            next("5,35 9-17 * * *", "2026-01-01T17:40:00Z"),
            "2026-01-02T09:05:00Z"
        );
        assert_eq!(
            next("0 0 * * mon", "2026-01-01T00:00:00Z"),
            "2026-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 12 1 feb *", "2026-01-01T00:00:00Z"),
            "2026-02-01T12:00:00Z"
        );
        assert_eq!(
            next("10-20/5 * * * *", "2026-01-01T10:16:00Z"),
            "2026-01-01T10:20:00Z"
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            next("@hourly", "2026-01-01T10:07:00Z"),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-01-01T10:07:00Z"),
            "2026-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2026-01-01T10:07:00Z"),
            "2026-01-04T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-01-31T10:07:00Z"),
            "2026-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-03-01T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_week_when_both_are_restricted() {
        // The 13th or any Friday (2026-02-06 is a Friday).
        assert_eq!(
            next("0 0 13 * fri", "2026-02-01T00:00:00Z"),
            "2026-02-06T00:00:00Z"
        );
        // With a star day of week only the 13th counts.
        assert_eq!(
            next("0 0 13 * *", "2026-02-01T00:00:00Z"),
            "2026-02-13T00:00:00Z"
        );
        // February 30th never comes; the 31st skips short months.
        assert_eq!(
            next("0 0 31 * *", "2026-02-01T00:00:00Z"),
            "2026-03-31T00:00:00Z"
        );
    }

    #[test]
    fn invalid_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "@every 5m",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let s = Schedule::parse("0 9 * * *").unwrap();
        let ny = TimeZone::get("America/New_York").unwrap();
        // 09:00 in New York in January is 14:00 UTC.
        assert_eq!(
            s.next(ts("2026-01-01T00:00:00Z"), &ny).unwrap().to_string(),
            "2026-01-01T14:00:00Z"
        );
    }

    #[test]
    fn most_recent_time_counts_what_was_missed() {
        let s = Schedule::parse("*/10 * * * *").unwrap();
        let (last, n) = most_recent(
            &s,
            &TimeZone::UTC,
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T10:35:00Z"),
        );
        assert_eq!(last.unwrap().to_string(), "2026-01-01T10:30:00Z");
        assert_eq!(n, 3);
        let (last, n) = most_recent(
            &s,
            &TimeZone::UTC,
            ts("2026-01-01T10:30:00Z"),
            ts("2026-01-01T10:35:00Z"),
        );
        assert_eq!((last, n), (None, 0));
        let every = Schedule::parse("* * * * *").unwrap();
        let (last, n) = most_recent(
            &every,
            &TimeZone::UTC,
            ts("2025-01-01T00:00:00Z"),
            ts("2026-01-01T10:35:30Z"),
        );
        assert_eq!(last.unwrap().to_string(), "2026-01-01T10:35:00Z");
        assert!(n > MAX_MISSED);
        let hourly = Schedule::parse("@hourly").unwrap();
        let (last, _) = most_recent(
            &hourly,
            &TimeZone::UTC,
            ts("2020-01-01T00:00:00Z"),
            ts("2026-01-01T10:35:30Z"),
        );
        assert_eq!(last.unwrap().to_string(), "2026-01-01T10:00:00Z");
    }

    #[test]
    fn concurrency_policy_and_starting_deadline_decide_with_a_chosen_clock() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let utc = TimeZone::UTC;
        let last = ts("2026-01-01T10:00:00Z");
        let at = |now: &str, policy: &str, active: usize, deadline: Option<i64>| {
            decide(&s, &utc, last, deadline, policy, active, ts(now))
        };
        assert_eq!(at("2026-01-01T10:04:59Z", "Allow", 0, None), Decision::Wait);
        let start = |due: &str, replace: bool| Decision::Start {
            due: ts(due),
            replace,
            missed: 1,
        };
        assert_eq!(
            at("2026-01-01T10:05:01Z", "Allow", 1, None),
            start("2026-01-01T10:05:00Z", false),
            "Allow runs beside the active Job"
        );
        assert_eq!(
            at("2026-01-01T10:05:01Z", "Forbid", 1, None),
            Decision::Blocked
        );
        assert_eq!(
            at("2026-01-01T10:05:01Z", "Forbid", 0, None),
            start("2026-01-01T10:05:00Z", false)
        );
        assert_eq!(
            at("2026-01-01T10:05:01Z", "Replace", 2, None),
            start("2026-01-01T10:05:00Z", true)
        );
        // 10:05 is 70 s old: too late with a 60 s starting deadline.
        assert_eq!(
            at("2026-01-01T10:06:10Z", "Allow", 0, Some(60)),
            Decision::Wait
        );
        assert_eq!(
            at("2026-01-01T10:06:10Z", "Allow", 0, Some(100)),
            start("2026-01-01T10:05:00Z", false)
        );
        // Two times missed: only the latest runs.
        assert_eq!(
            at("2026-01-01T10:11:00Z", "Allow", 0, None),
            Decision::Start {
                due: ts("2026-01-01T10:10:00Z"),
                replace: false,
                missed: 2
            }
        );
    }

    #[test]
    fn job_names_carry_the_scheduled_minute() {
        assert_eq!(
            job_name("hello", ts("2026-01-01T00:01:00Z")),
            "hello-29453761"
        );
    }
}
