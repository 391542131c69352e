//! Garbage collector: dependents whose owners are all gone are deleted (Background); an owner
//! deleted with `foregroundDeletion` has its dependents deleted first and then loses the
//! finalizer; one deleted with `orphan` has its dependents' ownerReferences removed and then
//! loses the finalizer.
//!
//! Dependents and finalizers are handled for the kinds this process watches (Pod, ReplicaSet,
//! Deployment, StatefulSet, DaemonSet, ControllerRevision, Job, CronJob, Service,
//! EndpointSlice, PersistentVolumeClaim). Owners may be of any kind: one it does not watch is
//! looked up through discovery, and dependents of such owners are checked again every
//! `FOREIGN_RESYNC` (there is no watch to say when those owners go).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use skiff_client::{Change, Informer, Informers, Queue};

use crate::{api_err, is_gone_or_conflict, Result};

pub const FOREGROUND: &str = "foregroundDeletion";
/// How often dependents whose owners are of unwatched kinds are checked again.
const FOREIGN_RESYNC: std::time::Duration = std::time::Duration::from_secs(5);
pub const ORPHAN: &str = "orphan";

/// The kinds the collector knows, as (apiVersion, kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Pod,
    ReplicaSet,
    Deployment,
    Service,
    EndpointSlice,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    PersistentVolumeClaim,
}

impl Kind {
    const ALL: [Kind; 11] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ControllerRevision,
        Kind::Job,
        Kind::CronJob,
        Kind::PersistentVolumeClaim,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    fn from_ref(r: &OwnerReference) -> Option<Kind> {
        let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == r.kind && k.group() == group)
    }

    fn group(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Service | Kind::PersistentVolumeClaim => "",
            Kind::ReplicaSet
            | Kind::Deployment
            | Kind::StatefulSet
            | Kind::DaemonSet
            | Kind::ControllerRevision => "apps",
            Kind::Job | Kind::CronJob => "batch",
            Kind::EndpointSlice => "discovery.k8s.io",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Kind::Pod => ApiResource::erase::<Pod>(&()),
            Kind::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Kind::ControllerRevision => ApiResource::erase::<ControllerRevision>(&()),
            Kind::Job => ApiResource::erase::<Job>(&()),
            Kind::CronJob => ApiResource::erase::<CronJob>(&()),
            Kind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
        }
    }
}

/// An unwatched kind's resource, and whether it is cluster-scoped.
type Discovered = (ApiResource, bool);

/// A work item: one object, to be checked as a dependent and as an owner.
fn key(kind: Kind, ns: &str, name: &str) -> String {
    format!("{}/{ns}/{name}", kind.name())
}

fn parse_key(k: &str) -> Option<(Kind, &str, &str)> {
    let mut it = k.splitn(3, '/');
    let kind = it.next()?;
    let kind = Kind::ALL.into_iter().find(|x| x.name() == kind)?;
    Some((kind, it.next()?, it.next()?))
}

struct Ctl {
    client: Client,
    pods: Store<Pod>,
    rs: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    stateful_sets: Store<StatefulSet>,
    daemon_sets: Store<DaemonSet>,
    revisions: Store<ControllerRevision>,
    jobs: Store<Job>,
    cron_jobs: Store<CronJob>,
    claims: Store<PersistentVolumeClaim>,
    /// owner uid -> keys of objects that name it as an owner.
    dependents: Mutex<HashMap<String, HashSet<String>>>,
    /// object key -> owner uids it names (to keep `dependents` exact).
    owners_of: Mutex<HashMap<String, Vec<String>>>,
    /// Keys of objects with an owner of a kind this process does not watch.
    foreign: Mutex<HashSet<String>>,
    /// Discovery results for unwatched owner kinds, by (apiVersion, kind).
    /// (resource, cluster-scoped), or None for a kind the server does not serve.
    resources: Mutex<HashMap<(String, String), Option<Discovered>>>,
    queue: Queue,
}

pub fn start(informers: &Arc<Informers>) {
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        pods: informers.pods().store(),
        rs: informers.replica_sets().store(),
        deployments: informers.deployments().store(),
        services: informers.services().store(),
        slices: informers.endpoint_slices().store(),
        stateful_sets: informers.stateful_sets().store(),
        daemon_sets: informers.daemon_sets().store(),
        revisions: informers.controller_revisions().store(),
        jobs: informers.jobs().store(),
        cron_jobs: informers.cron_jobs().store(),
        claims: informers.persistent_volume_claims().store(),
        dependents: Mutex::new(HashMap::new()),
        owners_of: Mutex::new(HashMap::new()),
        foreign: Mutex::new(HashSet::new()),
        resources: Mutex::new(HashMap::new()),
        queue: Queue::new(),
    });
    watch(&ctl, &informers.pods(), Kind::Pod);
    watch(&ctl, &informers.replica_sets(), Kind::ReplicaSet);
    watch(&ctl, &informers.deployments(), Kind::Deployment);
    watch(&ctl, &informers.services(), Kind::Service);
    watch(&ctl, &informers.endpoint_slices(), Kind::EndpointSlice);
    watch(&ctl, &informers.stateful_sets(), Kind::StatefulSet);
    watch(&ctl, &informers.daemon_sets(), Kind::DaemonSet);
    watch(
        &ctl,
        &informers.controller_revisions(),
        Kind::ControllerRevision,
    );
    watch(&ctl, &informers.jobs(), Kind::Job);
    watch(&ctl, &informers.cron_jobs(), Kind::CronJob);
    watch(
        &ctl,
        &informers.persistent_volume_claims(),
        Kind::PersistentVolumeClaim,
    );
    let i = informers.clone();
    let c = ctl.clone();
    tokio::spawn(async move {
        i.pods().synced().await;
        i.replica_sets().synced().await;
        i.deployments().synced().await;
        i.services().synced().await;
        i.endpoint_slices().synced().await;
        i.stateful_sets().synced().await;
        i.daemon_sets().synced().await;
        i.controller_revisions().synced().await;
        i.jobs().synced().await;
        i.cron_jobs().synced().await;
        i.persistent_volume_claims().synced().await;
        let q = c.queue.clone();
        let weak = Arc::downgrade(&c);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FOREIGN_RESYNC);
            loop {
                tick.tick().await;
                let Some(c) = weak.upgrade() else { return };
                let keys: Vec<String> = c.foreign.lock().unwrap().iter().cloned().collect();
                keys.into_iter().for_each(|k| c.queue.add(k));
            }
        });
        skiff_client::run_workers(q, 2, "garbage-collector", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

fn watch<K>(ctl: &Arc<Ctl>, inf: &Arc<Informer<K>>, kind: Kind)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let c = Arc::downgrade(ctl);
    inf.on_change(move |ch| {
        let Some(c) = c.upgrade() else { return };
        let (meta, deleted) = match &ch {
            Change::Applied(o) => (o.meta(), false),
            Change::Deleted(o) => (o.meta(), true),
        };
        c.observe(kind, meta, deleted);
    });
}

impl Ctl {
    /// Keeps the owner index current and queues what may need work.
    fn observe(&self, kind: Kind, meta: &ObjectMeta, deleted: bool) {
        let ns = meta.namespace.as_deref().unwrap_or("");
        let name = meta.name.as_deref().unwrap_or("");
        let k = key(kind, ns, name);
        let uid = meta.uid.clone().unwrap_or_default();
        let refs = meta.owner_references.as_deref().unwrap_or(&[]);
        let mut owners_to_check = Vec::new();
        {
            let now: Vec<String> = if deleted {
                Vec::new()
            } else {
                refs.iter().map(|r| r.uid.clone()).collect()
            };
            let before = if now.is_empty() {
                self.owners_of.lock().unwrap().remove(&k)
            } else {
                self.owners_of
                    .lock()
                    .unwrap()
                    .insert(k.clone(), now.clone())
            };
            let mut idx = self.dependents.lock().unwrap();
            for old in before.unwrap_or_default() {
                if !now.contains(&old) {
                    if let Some(set) = idx.get_mut(&old) {
                        set.remove(&k);
                        if set.is_empty() {
                            idx.remove(&old);
                        }
                    }
                }
            }
            for u in &now {
                idx.entry(u.clone()).or_default().insert(k.clone());
            }
            for r in refs {
                if let Some(ok) = Kind::from_ref(r) {
                    owners_to_check.push(key(ok, ns, &r.name));
                }
            }
            let foreign = !deleted && refs.iter().any(|r| Kind::from_ref(r).is_none());
            let mut f = self.foreign.lock().unwrap();
            if foreign {
                f.insert(k.clone());
            } else {
                f.remove(&k);
            }
        }
        if deleted {
            // Its dependents may now be orphans; owners waiting on it may finish.
            let deps: Vec<String> = self
                .dependents
                .lock()
                .unwrap()
                .get(&uid)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            deps.into_iter().for_each(|d| self.queue.add(d));
            owners_to_check.into_iter().for_each(|o| self.queue.add(o));
            return;
        }
        let finalizers = meta.finalizers.as_deref().unwrap_or(&[]);
        let pending = meta.deletion_timestamp.is_some()
            && finalizers.iter().any(|f| f == FOREGROUND || f == ORPHAN);
        if !refs.is_empty() || pending {
            self.queue.add(k);
        }
        // Owners in foreground or orphan deletion wait on changes of their dependents.
        for o in owners_to_check {
            self.queue.add(o);
        }
    }

    fn cached_meta(&self, kind: Kind, ns: &str, name: &str) -> Option<ObjectMeta> {
        fn get<K>(s: &Store<K>, ns: &str, name: &str) -> Option<ObjectMeta>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            let r = if ns.is_empty() {
                ObjectRef::new(name)
            } else {
                ObjectRef::new(name).within(ns)
            };
            s.get(&r).map(|o| o.meta().clone())
        }
        match kind {
            Kind::Pod => get(&self.pods, ns, name),
            Kind::ReplicaSet => get(&self.rs, ns, name),
            Kind::Deployment => get(&self.deployments, ns, name),
            Kind::Service => get(&self.services, ns, name),
            Kind::EndpointSlice => get(&self.slices, ns, name),
            Kind::StatefulSet => get(&self.stateful_sets, ns, name),
            Kind::DaemonSet => get(&self.daemon_sets, ns, name),
            Kind::ControllerRevision => get(&self.revisions, ns, name),
            Kind::Job => get(&self.jobs, ns, name),
            Kind::CronJob => get(&self.cron_jobs, ns, name),
            Kind::PersistentVolumeClaim => get(&self.claims, ns, name),
        }
    }

    fn api(&self, kind: Kind, ns: &str) -> Api<DynamicObject> {
        let ar = kind.resource();
        if ns.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        }
    }

    /// Whether the owner a reference names exists (same uid). A miss in the cache is
    /// confirmed with the API server before anything is deleted.
    async fn owner_exists(&self, r: &OwnerReference, ns: &str) -> Result<bool> {
        let Some(kind) = Kind::from_ref(r) else {
            return self.foreign_owner_exists(r, ns).await;
        };
        if let Some(m) = self.cached_meta(kind, ns, &r.name) {
            if m.uid.as_deref() == Some(r.uid.as_str()) {
                return Ok(true);
            }
        }
        match self.api(kind, ns).get(&r.name).await {
            Ok(o) => Ok(o.metadata.uid.as_deref() == Some(r.uid.as_str())),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(api_err(format!("looking up owner {}", r.name))(e)),
        }
    }

    /// An owner of a kind this process does not watch, looked up through discovery. Unknown
    /// kinds count as existing: nothing is deleted on a guess.
    async fn foreign_owner_exists(&self, r: &OwnerReference, ns: &str) -> Result<bool> {
        let id = (r.api_version.clone(), r.kind.clone());
        let cached = self.resources.lock().unwrap().get(&id).cloned();
        let ar = match cached {
            Some(ar) => ar,
            None => {
                let (group, version) = match r.api_version.split_once('/') {
                    Some((g, v)) => (g, v),
                    None => ("", r.api_version.as_str()),
                };
                let gvk = kube::api::GroupVersionKind::gvk(group, version, &r.kind);
                let found = match kube::discovery::pinned_kind(&self.client, &gvk).await {
                    Ok((ar, caps)) => Some((ar, caps.scope)),
                    Err(kube::Error::Api(e)) if e.code == 404 => None,
                    Err(kube::Error::Discovery(_)) => None,
                    Err(e) => return Err(api_err(format!("discovering {}", r.kind))(e)),
                };
                let ar =
                    found.map(|(ar, scope)| (ar, matches!(scope, kube::discovery::Scope::Cluster)));
                self.resources.lock().unwrap().insert(id, ar.clone());
                ar
            }
        };
        let Some((ar, cluster)) = ar else {
            return Ok(true);
        };
        let api: Api<DynamicObject> = if cluster || ns.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        };
        match api.get(&r.name).await {
            Ok(o) => Ok(o.metadata.uid.as_deref() == Some(r.uid.as_str())),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(api_err(format!("looking up owner {}", r.name))(e)),
        }
    }

    async fn sync(&self, k: &str) -> Result<()> {
        let Some((kind, ns, name)) = parse_key(k) else {
            return Ok(());
        };
        let Some(meta) = self.cached_meta(kind, ns, name) else {
            return Ok(());
        };
        self.sync_as_owner(kind, ns, name, &meta).await?;
        self.sync_as_dependent(kind, ns, name, &meta).await
    }

    async fn sync_as_dependent(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        meta: &ObjectMeta,
    ) -> Result<()> {
        let refs = meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() || meta.deletion_timestamp.is_some() {
            return Ok(());
        }
        let mut gone = Vec::new();
        for r in &refs {
            if !self.owner_exists(r, ns).await? {
                gone.push(r.uid.clone());
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let api = self.api(kind, ns);
        if gone.len() == refs.len() {
            tracing::debug!(kind = kind.name(), ns, name, "owners gone; deleting");
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: meta.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            return match api.delete(name, &dp).await {
                Ok(_) => Ok(()),
                Err(e) if is_gone_or_conflict(&e) => Ok(()),
                Err(e) => Err(api_err(format!("deleting {name}"))(e)),
            };
        }
        let keep: Vec<&OwnerReference> = refs.iter().filter(|r| !gone.contains(&r.uid)).collect();
        self.patch_refs(&api, name, meta, keep).await
    }

    async fn patch_refs(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        meta: &ObjectMeta,
        keep: Vec<&OwnerReference>,
    ) -> Result<()> {
        let refs = if keep.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::to_value(&keep).unwrap_or_default()
        };
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_gone_or_conflict(&e) => Ok(()),
            Err(e) => Err(api_err(format!("updating ownerReferences of {name}"))(e)),
        }
    }

    async fn sync_as_owner(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        meta: &ObjectMeta,
    ) -> Result<()> {
        if meta.deletion_timestamp.is_none() {
            return Ok(());
        }
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let orphan = finalizers.iter().any(|f| f == ORPHAN);
        let foreground = finalizers.iter().any(|f| f == FOREGROUND);
        if !orphan && !foreground {
            return Ok(());
        }
        let uid = meta.uid.clone().unwrap_or_default();
        let deps: Vec<String> = self
            .dependents
            .lock()
            .unwrap()
            .get(&uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut waiting = false;
        for d in deps {
            let Some((dkind, dns, dname)) = parse_key(&d) else {
                continue;
            };
            let Some(dmeta) = self.cached_meta(dkind, dns, dname) else {
                continue;
            };
            let Some(r) = dmeta
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.uid == uid)
            else {
                continue;
            };
            let api = self.api(dkind, dns);
            if orphan {
                let keep = dmeta
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|r| r.uid != uid)
                    .collect();
                self.patch_refs(&api, dname, &dmeta, keep).await?;
                // The dependent no longer names this owner, so its change will not requeue it.
                self.queue
                    .add_after(key(kind, ns, name), std::time::Duration::from_millis(200));
                waiting = true;
            } else {
                if r.block_owner_deletion == Some(true) {
                    waiting = true;
                }
                if dmeta.deletion_timestamp.is_none() {
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: dmeta.uid.clone(),
                            resource_version: None,
                        }),
                        ..DeleteParams::foreground()
                    };
                    match api.delete(dname, &dp).await {
                        Ok(_) => {}
                        Err(e) if is_gone_or_conflict(&e) => {}
                        Err(e) => return Err(api_err(format!("deleting dependent {dname}"))(e)),
                    }
                }
            }
        }
        if waiting {
            // Dependents' changes requeue this owner.
            return Ok(());
        }
        let rest: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != ORPHAN && *f != FOREGROUND)
            .collect();
        tracing::debug!(
            kind = kind.name(),
            ns,
            name,
            "dependents handled; removing finalizer"
        );
        let patch = serde_json::json!({"metadata": {"finalizers": rest, "uid": uid,
            "resourceVersion": meta.resource_version}});
        match self
            .api(kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_gone_or_conflict(&e) => {
                self.queue.add(key(kind, ns, name));
                Ok(())
            }
            Err(e) => Err(api_err(format!("removing finalizer of {name}"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_kinds_need_the_right_group() {
        let r = |api: &str, kind: &str| OwnerReference {
            api_version: api.into(),
            kind: kind.into(),
            ..Default::default()
        };
        assert_eq!(
            Kind::from_ref(&r("apps/v1", "ReplicaSet")),
            Some(Kind::ReplicaSet)
        );
        assert_eq!(Kind::from_ref(&r("v1", "Service")), Some(Kind::Service));
        assert_eq!(Kind::from_ref(&r("example.com/v1", "ReplicaSet")), None);
        assert_eq!(Kind::from_ref(&r("batch/v1", "Job")), Some(Kind::Job));
        assert_eq!(Kind::from_ref(&r("apps/v1", "Job")), None);
        assert_eq!(Kind::from_ref(&r("batch/v1", "Widget")), None);
        assert_eq!(
            parse_key(&key(Kind::Pod, "default", "web-1")),
            Some((Kind::Pod, "default", "web-1"))
        );
    }
}
