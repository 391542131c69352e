//! Serving CustomResourceDefinitions, as upstream's apiextensions controllers do: a CRD's
//! resources appear in discovery and are served as soon as it is stored (its conditions
//! `NamesAccepted` and `Established` say so), and deleting a CRD first deletes every object of
//! it (the `customresourcecleanup` finalizer), then stops serving it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::crd;
use skiff_api::status::StatusError;

use crate::registry::object::is_deleting;
use crate::registry::object::now_rfc3339;
use crate::registry::{DeleteOptions, Registry, WriteOptions};

pub fn spawn(reg: Arc<Registry>) {
    tokio::spawn(async move {
        let mut rx = reg.cache.subscribe();
        loop {
            if let Err(e) = sync(&reg).await {
                tracing::debug!(error = %e, "CRD sync will retry");
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
        }
    });
}

/// One pass over every CRD: serve the live ones, clean up the deleted ones.
pub async fn sync(reg: &Registry) -> Result<(), StatusError> {
    let crd_info = reg
        .by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
        .expect("CRDs are served");
    let (items, _, _) = reg.cache.list(&crd_info.key_prefix(), None, 0, &|_| true);
    let mut served: Vec<(String, String)> = Vec::new();
    for o in items {
        let crd = o.value();
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let group = str_at(&crd, "/spec/group");
        let plural = str_at(&crd, "/spec/names/plural");
        if is_deleting(&crd) {
            if cleanup(reg, &crd).await? {
                reg.unregister_custom(&group, &plural);
                drop_finalizer(reg, &crd_info, &name).await?;
            } else {
                // Objects are still going: keep serving them until they are gone.
                served.push((group, plural));
            }
            continue;
        }
        // Another CRD already serving these names wins; this one waits, NamesAccepted=False.
        let taken = served.iter().any(|(g, p)| *g == group && *p == plural);
        let infos = crd::resources(&crd);
        if !taken {
            reg.register_custom(&group, &plural, infos);
            served.push((group.clone(), plural.clone()));
        }
        update_status(reg, &crd_info, &name, &crd, !taken).await?;
    }
    // CRDs that are gone (deleted while the server was down, or their finalizer removed by
    // hand) stop being served.
    for r in reg.resources() {
        if r.custom.is_some() && !served.iter().any(|(g, p)| *g == r.group && *p == r.plural) {
            reg.unregister_custom(&r.group, &r.plural);
        }
    }
    Ok(())
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The status upstream keeps on a CRD: accepted names, conditions, stored versions; and the
/// cleanup finalizer.
async fn update_status(
    reg: &Registry,
    crd_info: &skiff_api::resources::ResourceInfo,
    name: &str,
    crd: &Value,
    accepted: bool,
) -> Result<(), StatusError> {
    let wanted_names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("storage") == Some(&json!(true))))
        .and_then(|v| v.get("name"))
        .cloned();
    let has_finalizer = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == crd::CLEANUP_FINALIZER));
    let conditions_ok = |c: &Value| {
        let status_of = |t: &str| {
            c.as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == t))
                .map(|x| x["status"].clone())
        };
        let want = if accepted { "True" } else { "False" };
        status_of("NamesAccepted") == Some(json!(want))
            && status_of("Established") == Some(json!(want))
    };
    let status = crd.get("status").cloned().unwrap_or(json!({}));
    let stored_ok = match &storage {
        Some(v) => status["storedVersions"]
            .as_array()
            .is_some_and(|a| a.contains(v)),
        None => true,
    };
    let names_ok = !accepted || status.get("acceptedNames") == Some(&wanted_names);
    if has_finalizer && conditions_ok(&status["conditions"]) && stored_ok && names_ok {
        return Ok(());
    }
    let now = now_rfc3339();
    reg.guaranteed_update(
        crd_info,
        None,
        name,
        None,
        &WriteOptions::default(),
        |cur| {
            let mut n = cur.clone();
            let fins = n["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == crd::CLEANUP_FINALIZER) && !is_deleting(cur) {
                let mut fins = fins;
                fins.push(json!(crd::CLEANUP_FINALIZER));
                n["metadata"]["finalizers"] = json!(fins);
            }
            let (st, reason, message) = if accepted {
                ("True", "NoConflicts", "no conflicts found")
            } else {
                (
                    "False",
                    "NameConflict",
                    "another CustomResourceDefinition serves these names",
                )
            };
            let (est, est_reason, est_message) = if accepted {
                (
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                )
            } else {
                ("False", "NotAccepted", "not all names are accepted")
            };
            let mut status = n.get("status").cloned().unwrap_or(json!({}));
            if accepted {
                status["acceptedNames"] = n.pointer("/spec/names").cloned().unwrap_or(json!({}));
            }
            status["conditions"] = json!([
                {"type": "NamesAccepted", "status": st, "reason": reason, "message": message,
                 "lastTransitionTime": now},
                {"type": "Established", "status": est, "reason": est_reason, "message": est_message,
                 "lastTransitionTime": now},
            ]);
            if let Some(v) = &storage {
                let mut stored = status["storedVersions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !stored.contains(v) {
                    stored.push(v.clone());
                }
                status["storedVersions"] = json!(stored);
            }
            n["status"] = status;
            Ok(n)
        },
    )
    .await?;
    Ok(())
}

/// Delete every object of a deleted CRD; `true` once none is left.
async fn cleanup(reg: &Registry, crd: &Value) -> Result<bool, StatusError> {
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let Some(info) = reg
        .resources()
        .into_iter()
        .find(|r| r.custom.is_some() && r.group == group && r.plural == plural)
    else {
        return Ok(true);
    };
    let (objs, _, _) = reg.cache.list(&info.key_prefix(), None, 0, &|_| true);
    if objs.is_empty() {
        return Ok(true);
    }
    for o in objs {
        let v = o.value();
        if is_deleting(&v) {
            continue;
        }
        let name = str_at(&v, "/metadata/name");
        let ns = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let opts = DeleteOptions {
            propagation_policy: Some("Background".into()),
            ..Default::default()
        };
        match reg.delete(&info, ns.as_deref(), &name, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

async fn drop_finalizer(
    reg: &Registry,
    crd_info: &skiff_api::resources::ResourceInfo,
    name: &str,
) -> Result<(), StatusError> {
    let out = reg
        .guaranteed_update(
            crd_info,
            None,
            name,
            None,
            &WriteOptions::default(),
            |cur| {
                let mut n = cur.clone();
                let fins: Vec<Value> = n["metadata"]["finalizers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|f| *f != crd::CLEANUP_FINALIZER)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                n["metadata"]["finalizers"] = json!(fins);
                Ok(n)
            },
        )
        .await;
    match out {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
