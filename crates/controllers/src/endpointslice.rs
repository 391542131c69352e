//! EndpointSlice controller: for every Service with a selector, IPv4 EndpointSlices listing the
//! selected pods with ready/serving/terminating conditions, owned by the Service and labelled
//! `kubernetes.io/service-name`. Each set of resolved ports gets slices of its own, of at most
//! 100 endpoints each; `reconciler` decides which slices to write, `tracker` keeps a sync from
//! acting on a cache that has not yet seen the previous sync's writes.

mod reconciler;
mod tracker;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue};

use crate::endpoints::{backends, Backend, PodToServices, ResolvedPort};
use crate::{api_err, Error, Result};
pub use reconciler::{reconcile, Plan, HEADLESS, MAX_ENDPOINTS_PER_SLICE};
use tracker::Tracker;

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// The endpoints a Service's pods make, per set of resolved ports (in the Service's order).
pub fn port_sets(backends: &[Backend]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    for b in backends {
        if b.ip.contains(':') {
            continue; // IPv4 slices only for now.
        }
        groups.entry(b.ports.clone()).or_default().push(Endpoint {
            addresses: vec![b.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(b.ready),
                serving: Some(b.serving),
                terminating: Some(b.terminating),
            }),
            node_name: b.node.clone(),
            target_ref: Some(b.target.clone()),
            ..Default::default()
        });
    }
    groups
        .into_iter()
        .map(|(ports, endpoints)| {
            let ports = ports
                .into_iter()
                .map(|p| EndpointPort {
                    name: Some(p.name),
                    port: Some(p.port),
                    protocol: Some(p.protocol),
                    app_protocol: p.app_protocol,
                })
                .collect();
            (ports, endpoints)
        })
        .collect()
}

fn managed_by_us(s: &EndpointSlice) -> bool {
    s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME)
}

struct Ctl {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    queue: Queue,
    map: PodToServices,
    tracker: Tracker,
}

pub fn start(informers: &Arc<Informers>) {
    let svc_inf = informers.services();
    let pod_inf = informers.pods();
    let sl_inf = informers.endpoint_slices();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        services: svc_inf.store(),
        pods: pod_inf.store(),
        slices: sl_inf.store(),
        queue: Queue::new(),
        map: PodToServices::new(svc_inf.store()),
        tracker: Tracker::default(),
    });
    let q = ctl.queue.clone();
    svc_inf.on_change(move |c| match c {
        Change::Applied(s) | Change::Deleted(s) => q.add(skiff_client::key_of(&s.metadata)),
    });
    let c = Arc::downgrade(&ctl);
    sl_inf.on_change(move |ch| {
        let Some(c) = c.upgrade() else { return };
        let (s, sync) = match ch {
            Change::Applied(s) => (s, managed_by_us(s) && c.tracker.should_sync(s)),
            Change::Deleted(s) => (s, managed_by_us(s) && c.tracker.observed_deletion(s)),
        };
        if let Some(key) = tracker::service_key(s).filter(|_| sync) {
            c.queue.add(key);
        }
    });
    let c = Arc::downgrade(&ctl);
    pod_inf.on_change(move |ch| {
        let Some(c) = c.upgrade() else { return };
        let (p, deleted) = match ch {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        for k in c.map.keys(p, deleted) {
            c.queue.add(k);
        }
    });
    let c = ctl.clone();
    let i = informers.clone();
    tokio::spawn(async move {
        i.services().synced().await;
        i.pods().synced().await;
        i.endpoint_slices().synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 2, "endpointslice", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // The garbage collector removes the slices it owned, as upstream.
            self.tracker.forget(key);
            return Ok(());
        };
        let spec = svc.spec.as_ref();
        let selects = spec
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty());
        if !selects || spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            // As upstream: slices of such Services are someone else's to write.
            return Ok(());
        }
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(ns)
                    && s.labels().get(SERVICE_NAME).map(String::as_str) == Some(name)
                    && managed_by_us(s)
                    && s.metadata.deletion_timestamp.is_none()
            })
            .collect();
        let existing: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
        if self.tracker.stale(key, svc.uid().as_deref(), &existing) {
            return Err(Error::NotReady(format!(
                "the EndpointSlice cache has not yet seen the last writes for {key}"
            )));
        }
        let desired = port_sets(&backends(&svc, &self.pods.state()));
        let plan = reconcile(&svc, desired, &existing, MAX_ENDPOINTS_PER_SLICE);
        self.write(ns, &svc, plan).await
    }

    async fn write(&self, ns: &str, svc: &Service, plan: Plan) -> Result<()> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        // A Service being deleted gets no new slices: the garbage collector is removing them.
        if svc.metadata.deletion_timestamp.is_none() {
            for s in &plan.create {
                let created = api
                    .create(&PostParams::default(), s)
                    .await
                    .map_err(api_err("creating endpointslice"))?;
                self.tracker.written(&created);
            }
        }
        for s in &plan.update {
            let updated = api
                .replace(&s.name_any(), &PostParams::default(), s)
                .await
                .map_err(api_err("updating endpointslice"))?;
            self.tracker.written(&updated);
        }
        for s in &plan.delete {
            match api.delete(&s.name_any(), &DeleteParams::default()).await {
                Ok(_) => self.tracker.deleted(s),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api_err("deleting endpointslice")(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_port_set_per_distinct_resolved_ports_with_conditions() {
        let b = |ip: &str, port: i32, ready: bool, terminating: bool| Backend {
            ip: ip.into(),
            node: Some("n".into()),
            ready,
            serving: ready || terminating,
            terminating,
            target: Default::default(),
            ports: vec![ResolvedPort {
                name: String::new(),
                port,
                protocol: "TCP".into(),
                app_protocol: None,
            }],
        };
        let sets = port_sets(&[
            b("10.42.0.2", 8080, true, false),
            b("10.42.0.3", 8080, false, true),
            b("10.42.0.4", 9090, true, false),
            b("fd00::4", 9090, true, false),
        ]);
        assert_eq!(sets.len(), 2);
        let (_, eps) = sets.iter().find(|(p, _)| p[0].port == Some(8080)).unwrap();
        let c = eps[1].conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        let (_, eps) = sets.iter().find(|(p, _)| p[0].port == Some(9090)).unwrap();
        assert_eq!(eps.len(), 1, "IPv6 addresses are left out");
        assert!(port_sets(&[]).is_empty());
    }
}
