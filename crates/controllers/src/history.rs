//! ControllerRevisions, as upstream's `controller/history`: one immutable snapshot of a pod
//! template per revision, named `<owner>-<hash>`, numbered in order, owned by the StatefulSet or
//! DaemonSet. `kubectl rollout history/undo` reads them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::{api_err, is_gone_or_conflict, Result};

pub const REVISION_HASH: &str = "controller-revision-hash";

/// The data upstream stores for a StatefulSet/DaemonSet revision: a patch replacing the template.
pub fn revision_data(t: &PodTemplateSpec) -> serde_json::Value {
    let mut tv = serde_json::to_value(t).unwrap_or_default();
    if let Some(o) = tv.as_object_mut() {
        o.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": tv}})
}

/// The revision's hash: FNV over the template and the collision count, as Deployment's.
pub fn hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    crate::deployment::pod_template_hash(t, collision_count)
}

/// Finds the revision holding `t` among `owned`, or creates the next one.
pub async fn ensure(
    api: &Api<ControllerRevision>,
    owner_kind: &str,
    owner: &ObjectMeta,
    selector_labels: std::collections::BTreeMap<String, String>,
    t: &PodTemplateSpec,
    owned: &[Arc<ControllerRevision>],
) -> Result<ControllerRevision> {
    let data = revision_data(t);
    if let Some(r) = owned
        .iter()
        .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
    {
        return Ok((**r).clone());
    }
    let h = hash(t, None);
    let name = format!("{}-{h}", owner.name.as_deref().unwrap_or(""));
    let next = owned.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let mut labels = selector_labels;
    labels.insert(REVISION_HASH.into(), h);
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![skiff_client::controller_ref(
                "apps/v1", owner_kind, owner,
            )]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: next,
    };
    match api.create(&PostParams::default(), &rev).await {
        Ok(r) => Ok(r),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Created by an earlier sync the cache has not shown yet (or a hash collision,
            // which is then at least the same name for the same template).
            api.get(&name)
                .await
                .map_err(api_err(format!("getting revision {name}")))
        }
        Err(e) => Err(api_err(format!("creating revision {name}"))(e)),
    }
}

/// Deletes the oldest revisions beyond `limit` that no live pod uses.
pub async fn truncate(
    api: &Api<ControllerRevision>,
    owned: &[Arc<ControllerRevision>],
    live: &[&str],
    limit: usize,
) -> Result<()> {
    let mut old: Vec<_> = owned
        .iter()
        .filter(|r| !live.contains(&r.name_any().as_str()))
        .collect();
    if old.len() <= limit {
        return Ok(());
    }
    old.sort_by_key(|r| r.revision);
    for r in &old[..old.len() - limit] {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_gone_or_conflict(&e) => {}
            Err(e) => return Err(api_err("deleting old revision")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_replaces_the_whole_template() {
        let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}
        }))
        .unwrap();
        let d = revision_data(&t);
        assert_eq!(d["spec"]["template"]["$patch"], "replace");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert_eq!(hash(&t, None), hash(&t.clone(), None));
    }
}
