//! The `pods/eviction` subresource, as upstream's `pkg/registry/core/pod/storage/eviction.go`:
//! a pod is deleted only when the PodDisruptionBudget covering it allows one more disruption,
//! and the eviction takes that disruption from the budget's status before deleting, so two
//! evictions racing for the last allowed disruption cannot both win.

use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::{FieldError, StatusError};

use super::object::{is_deleting, meta_str, name, namespace, now_rfc3339, resource_version};
use super::{track, DeleteOptions, ListRequest, Registry, Result, WriteOptions};

/// How often a conflicting write is tried again, and how long to wait in between
/// (upstream's `EvictionsRetry`: 20 steps of 500 ms).
const RETRIES: usize = 20;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Upstream's `MaxDisruptedPodSize`: beyond this many evictions the disruption controller
/// has not confirmed yet, a budget refuses more.
const MAX_DISRUPTED_PODS: usize = 2000;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Who the budget and pod writes of an eviction are recorded under, as upstream's loopback
/// client.
const MANAGER: &str = "kube-apiserver";

/// Read an Eviction body: it must name the pod in the URL, and its `deleteOptions` (with the
/// request's `dryRun`) are how the pod is deleted.
pub fn delete_options(
    body: &Value,
    url_name: &str,
    url_namespace: &str,
    query: &crate::request::Query,
) -> Result<DeleteOptions> {
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
        if !matches!(av, "policy/v1" | "policy/v1beta1") {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version (policy/v1)"
            )));
        }
    }
    if let Some(k) = body.get("kind").and_then(Value::as_str) {
        if k != "Eviction" {
            return Err(StatusError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind (Eviction)"
            )));
        }
    }
    if let Some(ns) = namespace(body) {
        if ns != url_namespace {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if name(body).unwrap_or("") != url_name {
        return Err(StatusError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let del = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    if del.get("ignoreStoreReadErrorWithClusterBreakingPotential") == Some(&json!(true)) {
        return Err(StatusError::invalid(
            "policy",
            "Eviction",
            url_name,
            &[FieldError::invalid(
                "deleteOptions.ignoreStoreReadErrorWithClusterBreakingPotential",
                json!(true),
                "can not be set for pod eviction, try after removing the option",
            )],
        ));
    }
    // The request's dryRun applies when the body's deleteOptions have none.
    let mut opts = DeleteOptions::from_request(&del, &crate::request::Query::default())?;
    opts.dry_run |= super::parse_dry_run(&query.all("dryRun"))?;
    Ok(opts)
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A pod that is not running (finished, not started, or already going) is deleted without
/// asking any budget: evicting it disrupts nothing more.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || is_deleting(pod)
}

/// Whether the delete must be conditional on the pod not changing since it was read, so a
/// pod that became ready meanwhile is not deleted on a decision made while it was not.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !(matches!(phase(pod), "Succeeded" | "Failed") || is_deleting(pod))
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The budgets whose selector matches the pod. As policy/v1, an empty selector matches every
/// pod in the namespace and a missing or invalid one matches none.
pub fn matching_budgets<'a>(budgets: &'a [Value], pod: &Value) -> Vec<&'a Value> {
    budgets
        .iter()
        .filter(|b| {
            let sel = b.pointer("/spec/selector").unwrap_or(&Value::Null);
            skiff_api::selector::from_label_selector(sel).is_ok_and(|s| s.matches_object(pod))
        })
        .collect()
}

fn status_i64(b: &Value, field: &str) -> i64 {
    b.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// An unready pod does not count as healthy, so evicting it takes nothing from the budget
/// when the budget says so (`unhealthyPodEvictionPolicy: AlwaysAllow`) or, by default
/// (`IfHealthyBudget`), when the application has the healthy pods it needs anyway.
fn unready_pod_may_go(budget: &Value) -> bool {
    if budget.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow")) {
        return true;
    }
    let desired = status_i64(budget, "desiredHealthy");
    status_i64(budget, "currentHealthy") >= desired && desired > 0
}

/// 429 for a budget the disruption controller has not caught up with yet.
fn still_processing(budget_name: &str) -> StatusError {
    let mut e = StatusError::too_many_requests(VIOLATION);
    e.details = Some(json!({
        "causes": [{"reason": "DisruptionBudget",
            "message": format!("The disruption budget {budget_name} is still being processed by the server.")}],
        "retryAfterSeconds": 10,
    }));
    e
}

/// 403 from a budget in a state that allows no eviction, as upstream's `NewForbidden`.
fn budget_forbids(budget_name: &str, why: &str, cause: &str) -> StatusError {
    let mut e = StatusError::forbidden(format!(
        "poddisruptionbudget.policy {budget_name:?} is forbidden: {why}"
    ));
    e.details = Some(json!({
        "name": budget_name, "group": "policy", "kind": "poddisruptionbudget",
        "causes": [{"reason": "DisruptionBudget",
            "message": format!("The disruption budget {budget_name} does not allow evicting pods currently: {cause}")}],
    }));
    e
}

fn disruption_allowed_condition(budget: &Value) -> Option<&Value> {
    budget
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "DisruptionAllowed")
}

/// 429 for a budget with no disruption left, explaining why as upstream does.
fn no_disruption_left(budget: &Value, budget_name: &str) -> StatusError {
    let cond = disruption_allowed_condition(budget);
    let cond_str = |f: &str| {
        cond.and_then(|c| c.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let failed_with_message = cond_str("status") == "False" && !cond_str("message").is_empty();
    let (current, desired) = (
        status_i64(budget, "currentHealthy"),
        status_i64(budget, "desiredHealthy"),
    );
    let message = if failed_with_message && cond_str("reason") == "SyncFailed" {
        format!(
            "The disruption budget {budget_name} does not allow evicting pods currently because it failed sync: {}",
            cond_str("message")
        )
    } else if current <= desired {
        format!(
            "The disruption budget {budget_name} needs {desired} healthy pods and has {current} currently"
        )
    } else if failed_with_message {
        format!(
            "The disruption budget {budget_name} does not allow evicting pods currently ({}): {}",
            cond_str("reason"),
            cond_str("message")
        )
    } else {
        format!("The disruption budget {budget_name} does not allow evicting pods currently")
    };
    let mut e = StatusError::too_many_requests(VIOLATION);
    e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": message}]}));
    e
}

/// The budget after taking one disruption for `pod_name` at `now`, or why it cannot give one
/// (upstream's `checkAndDecrement`).
pub fn take_disruption(budget: &Value, pod_name: &str, now: &str) -> Result<Value> {
    let budget_name = name(budget).unwrap_or("");
    let generation = budget
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_i64(budget, "observedGeneration") < generation {
        return Err(still_processing(budget_name));
    }
    let allowed = status_i64(budget, "disruptionsAllowed");
    if allowed < 0 {
        return Err(budget_forbids(
            budget_name,
            "pdb disruptions allowed is negative",
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(budget_forbids(
            budget_name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            "too many pending evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(no_disruption_left(budget, budget_name));
    }
    let mut new = budget.clone();
    let status = &mut new["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        let observed = status["observedGeneration"].clone();
        set_condition(
            status,
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                   "message": "", "observedGeneration": observed}),
            now,
        );
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod_name] = json!(now);
    Ok(new)
}

/// Upstream's `meta.SetStatusCondition`: replace the condition of the same type, keeping its
/// transition time unless the status changes.
pub fn set_condition(status: &mut Value, mut cond: Value, now: &str) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let list = status["conditions"].as_array_mut().expect("array");
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(old) => {
            cond["lastTransitionTime"] = if old["status"] == cond["status"] {
                old["lastTransitionTime"].clone()
            } else {
                json!(now)
            };
            *old = cond;
        }
        None => {
            cond["lastTransitionTime"] = json!(now);
            list.push(cond);
        }
    }
}

/// Marks a pod as about to be disrupted by the eviction API (the `DisruptionTarget`
/// condition), keeping the transition time of an existing condition with the same status.
fn add_disruption_target(pod: &mut Value, now: &str) {
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let list = pod["status"]["conditions"].as_array_mut().expect("array");
    let mut cond = json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now, "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting"});
    match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(old) => {
            if old["status"] == "True" {
                cond["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            *old = cond;
        }
        None => list.push(cond),
    }
}

fn success() -> (u16, Value) {
    (
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

impl Registry {
    /// POST `pods/{name}/eviction`: delete the pod if its disruption budget allows it.
    /// Returns the HTTP code and the `Status` to send.
    pub async fn evict(
        &self,
        pods: &ResourceInfo,
        ns: &str,
        pod_name: &str,
        opts: DeleteOptions,
    ) -> Result<(u16, Value)> {
        // A pod that is not running goes at once. A caller's resourceVersion precondition is
        // the caller's to retry; conflicts of our own making are retried here.
        let mut attempt = 0;
        let pod = loop {
            attempt += 1;
            let pod = self.get(pods, Some(ns), pod_name).await?;
            if !can_ignore_budget(&pod) {
                break pod;
            }
            let mut del = opts.clone();
            if should_enforce_resource_version(&pod) && opts.precondition_rv.is_none() {
                del.precondition_rv = resource_version(&pod).map(str::to_string);
            }
            match self.mark_and_delete(pods, ns, pod_name, del).await {
                Ok(()) => return Ok(success()),
                Err(e) if e.code == 409 && opts.precondition_rv.is_none() && attempt < RETRIES => {
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                Err(e) => return Err(e),
            }
        };

        let pdb_info = self
            .by_kind("policy", "PodDisruptionBudget")
            .ok_or_else(|| StatusError::internal("poddisruptionbudgets are not served"))?;
        let list = self
            .list(
                &pdb_info,
                &ListRequest {
                    namespace: Some(ns.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        let budgets: Vec<Value> = list.items.iter().map(|o| o.value()).collect();
        let matching = matching_budgets(&budgets, &pod);
        let mut unready_goes = false;
        let mut budget_name = String::new();
        match matching.as_slice() {
            [] => {}
            [budget] => {
                budget_name = name(budget).unwrap_or("").to_string();
                if !is_ready(&pod) && unready_pod_may_go(budget) {
                    unready_goes = true;
                } else {
                    self.take_from_budget(&pdb_info, ns, &budget_name, pod_name, opts.dry_run)
                        .await?;
                }
            }
            _ => {
                return Ok((
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "code": 500,
                        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}),
                ))
            }
        }

        let mut del = opts.clone();
        if unready_goes {
            // Only if the pod is still as unready as it was when the decision was made.
            del.precondition_rv = resource_version(&pod).map(str::to_string);
        }
        match self.mark_and_delete(pods, ns, pod_name, del).await {
            Ok(()) => Ok(success()),
            Err(e) if e.code == 409 && unready_goes && opts.precondition_rv.is_none() => {
                Err(still_processing(&budget_name))
            }
            Err(e) => Err(e),
        }
    }

    /// Take one disruption from a budget's status, against its latest version.
    async fn take_from_budget(
        &self,
        pdb_info: &ResourceInfo,
        ns: &str,
        budget: &str,
        pod_name: &str,
        dry_run: bool,
    ) -> Result<()> {
        let wopts = WriteOptions {
            dry_run,
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let now = now_rfc3339();
        let out = self
            .guaranteed_update(pdb_info, Some(ns), budget, None, &wopts, |cur| {
                let mut new = take_disruption(cur, pod_name, &now)?;
                track(pdb_info, &wopts, "status", Some(cur), &mut new);
                Ok(new)
            })
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => {
                let mut t = StatusError::timeout(format!(
                    "Timeout: couldn't update PodDisruptionBudget {budget:?} due to conflicts"
                ));
                t.details = Some(json!({"retryAfterSeconds": 10}));
                Err(t)
            }
            Err(e) => Err(e),
        }
    }

    /// Record on the pod that the eviction API is disrupting it, then delete it (upstream's
    /// `addConditionAndDeletePod`). The preconditions hold for both writes.
    async fn mark_and_delete(
        &self,
        pods: &ResourceInfo,
        ns: &str,
        pod_name: &str,
        mut opts: DeleteOptions,
    ) -> Result<()> {
        if !opts.dry_run {
            let wopts = WriteOptions {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            let now = now_rfc3339();
            let updated = self
                .guaranteed_update(pods, Some(ns), pod_name, None, &wopts, |cur| {
                    check_preconditions(cur, pod_name, &opts)?;
                    let mut new = cur.clone();
                    add_disruption_target(&mut new, &now);
                    track(pods, &wopts, "status", Some(cur), &mut new);
                    Ok(new)
                })
                .await?;
            if opts.precondition_rv.is_some() {
                // Our own write moved the pod on; the precondition is about what came before.
                opts.precondition_rv = resource_version(&updated).map(str::to_string);
            }
        }
        self.delete(pods, Some(ns), pod_name, &opts).await?;
        Ok(())
    }
}

fn check_preconditions(pod: &Value, pod_name: &str, opts: &DeleteOptions) -> Result<()> {
    if let Some(uid) = opts.precondition_uid.as_deref().filter(|u| !u.is_empty()) {
        let have = meta_str(pod, "uid").unwrap_or("");
        if uid != have {
            return Err(StatusError::conflict_msg("", "Pod", pod_name, &format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({have}). The object might have been deleted and then recreated"
            )));
        }
    }
    if let Some(rv) = opts.precondition_rv.as_deref().filter(|r| !r.is_empty()) {
        let have = resource_version(pod).unwrap_or("");
        if rv != have {
            return Err(StatusError::conflict_msg("", "Pod", pod_name, &format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({have}). The object might have been modified"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(allowed: i64, current: i64, desired: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 2, "disruptionsAllowed": allowed,
                "currentHealthy": current, "desiredHealthy": desired, "expectedPods": 3,
                "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                    "message": "", "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    }

    #[test]
    fn the_last_allowed_disruption_is_taken_and_recorded() {
        let b = take_disruption(&budget(1, 3, 2), "web-1", "2026-02-02T00:00:00Z").unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            b["status"]["disruptedPods"],
            json!({"web-1": "2026-02-02T00:00:00Z"})
        );
        let c = &b["status"]["conditions"][0];
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("False"), &json!("InsufficientPods"))
        );
        assert_eq!(c["lastTransitionTime"], "2026-02-02T00:00:00Z");

        let b = take_disruption(&budget(2, 3, 1), "web-1", "2026-02-02T00:00:00Z").unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 1);
        assert_eq!(
            b["status"]["conditions"][0]["status"], "True",
            "still allowed: the condition stays"
        );
    }

    #[test]
    fn an_exhausted_budget_answers_429_with_upstreams_cause() {
        let e = take_disruption(&budget(0, 3, 3), "web-1", "now").unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert_eq!(
            e.message,
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            e.to_status()["details"],
            json!({"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 3 healthy pods and has 3 currently"}]})
        );

        let mut stale = budget(1, 3, 2);
        stale["metadata"]["generation"] = json!(3);
        let e = take_disruption(&stale, "web-1", "now").unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.to_status()["details"]["retryAfterSeconds"], 10);
        assert_eq!(
            e.to_status()["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );

        let mut failed = budget(0, 5, 2);
        failed["status"]["conditions"] = json!([{"type": "DisruptionAllowed", "status": "False",
            "reason": "SyncFailed", "message": "found no controllers for pod \"x\""}]);
        let e = take_disruption(&failed, "web-1", "now").unwrap_err();
        assert_eq!(
            e.to_status()["details"]["causes"][0]["message"],
            "The disruption budget web does not allow evicting pods currently because it failed sync: found no controllers for pod \"x\""
        );

        let e = take_disruption(&budget(-1, 0, 0), "web-1", "now").unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn budgets_match_by_selector_and_an_empty_selector_matches_all() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        let budgets = vec![
            json!({"metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
            json!({"metadata": {"name": "b"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}),
            json!({"metadata": {"name": "c"}, "spec": {"selector": {}}}),
            json!({"metadata": {"name": "d"}, "spec": {}}),
        ];
        let names: Vec<_> = matching_budgets(&budgets, &pod)
            .iter()
            .map(|b| name(b).unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn only_running_pods_consult_their_budget() {
        let pod = |phase: &str| json!({"metadata": {}, "status": {"phase": phase}});
        assert!(can_ignore_budget(&pod("Pending")));
        assert!(can_ignore_budget(&pod("Succeeded")));
        assert!(!can_ignore_budget(&pod("Running")));
        let mut going = pod("Running");
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(can_ignore_budget(&going));
        assert!(should_enforce_resource_version(&pod("Pending")));
        assert!(!should_enforce_resource_version(&going));
    }

    #[test]
    fn unready_pods_go_when_the_budget_is_healthy_or_says_always() {
        assert!(unready_pod_may_go(&budget(0, 2, 2)));
        assert!(!unready_pod_may_go(&budget(0, 1, 2)));
        assert!(
            !unready_pod_may_go(&budget(0, 0, 0)),
            "with nothing desired, the budget's own count decides"
        );
        let mut always = budget(0, 0, 2);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unready_pod_may_go(&always));
    }
}
