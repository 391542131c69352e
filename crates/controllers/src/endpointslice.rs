//! EndpointSlice controller: for every Service with a selector, IPv4 EndpointSlices (one per
//! distinct set of resolved ports) listing the selected pods with ready/serving/terminating
//! conditions, owned by the Service and labelled `kubernetes.io/service-name`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue};

use crate::endpoints::{backends, Backend, PodToServices, ResolvedPort};
use crate::{api_err, is_gone_or_conflict, Result};

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// Slices a Service should have: name -> (ports, endpoints).
pub fn desired(
    svc: &Service,
    backends: &[Backend],
) -> BTreeMap<String, (Vec<ResolvedPort>, Vec<Endpoint>)> {
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
    let svc_name = svc.name_any();
    if groups.is_empty() {
        // An empty slice still says "no endpoints", as upstream's placeholder.
        groups.insert(Vec::new(), Vec::new());
    }
    groups
        .into_iter()
        .map(|(ports, eps)| {
            let id: String = ports
                .iter()
                .map(|p| format!("{}/{}/{}", p.name, p.port, p.protocol))
                .collect::<Vec<_>>()
                .join(",");
            let name = format!(
                "{svc_name}-{}",
                short_hash(&format!("{}|{id}", svc.uid().unwrap_or_default()))
            );
            (name, (ports, eps))
        })
        .collect()
}

fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    let mut e = skiff_client::safe_encode(&h.to_string());
    e.truncate(5);
    e
}

struct Ctl {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    queue: Queue,
    map: PodToServices,
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
    });
    let q = ctl.queue.clone();
    svc_inf.on_change(move |c| match c {
        Change::Applied(s) | Change::Deleted(s) => q.add(skiff_client::key_of(&s.metadata)),
    });
    let q = ctl.queue.clone();
    sl_inf.on_change(move |c| {
        let s = match c {
            Change::Applied(s) | Change::Deleted(s) => s,
        };
        if let Some(svc) = s.labels().get(SERVICE_NAME) {
            if s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME) {
                q.add(format!("{}/{svc}", s.namespace().unwrap_or_default()));
            }
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
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(ns)
                    && s.labels().get(SERVICE_NAME).map(String::as_str) == Some(name)
                    && s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME)
            })
            .collect();
        let svc = self.services.get(&ObjectRef::new(name).within(ns));
        let want = match &svc {
            Some(svc)
                if svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|s| !s.is_empty()) =>
            {
                desired(svc, &backends(svc, &self.pods.state()))
            }
            // Gone (the garbage collector also removes owned slices) or without a selector.
            _ => BTreeMap::new(),
        };
        for s in &existing {
            if !want.contains_key(&s.name_any()) {
                match api.delete(&s.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_gone_or_conflict(&e) => {}
                    Err(e) => return Err(api_err("deleting endpointslice")(e)),
                }
            }
        }
        let Some(svc) = svc else { return Ok(()) };
        for (slice_name, (ports, endpoints)) in want {
            let mut labels = svc.metadata.labels.clone().unwrap_or_default();
            labels.insert(SERVICE_NAME.into(), name.to_string());
            labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .map(|p| EndpointPort {
                    name: Some(p.name),
                    port: Some(p.port),
                    protocol: Some(p.protocol),
                    app_protocol: p.app_protocol,
                })
                .collect();
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![skiff_client::controller_ref(
                        "v1",
                        "Service",
                        &svc.metadata,
                    )]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: endpoints.clone(),
                ports: Some(ports.clone()),
            };
            match existing.iter().find(|s| s.name_any() == slice_name) {
                Some(cur) => {
                    if cur.endpoints == endpoints
                        && cur.ports.as_ref() == Some(&ports)
                        && cur.metadata.labels.as_ref() == Some(&labels)
                    {
                        continue;
                    }
                    let patch = serde_json::json!({
                        "metadata": {"labels": labels},
                        "endpoints": endpoints,
                        "ports": ports,
                    });
                    match api
                        .patch(&slice_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_gone_or_conflict(&e) => {}
                        Err(e) => return Err(api_err("updating endpointslice")(e)),
                    }
                }
                None => match api.create(&PostParams::default(), &slice).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        self.queue
                            .add_after(key.to_string(), std::time::Duration::from_millis(100));
                    }
                    Err(e) => return Err(api_err("creating endpointslice")(e)),
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slice_per_port_set_with_conditions() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
        }))
        .unwrap();
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
        let d = desired(
            &svc,
            &[
                b("10.42.0.2", 8080, true, false),
                b("10.42.0.3", 8080, false, true),
                b("10.42.0.4", 9090, true, false),
            ],
        );
        assert_eq!(d.len(), 2);
        assert!(d
            .keys()
            .all(|k| k.starts_with("web-") && k.len() == "web-".len() + 5));
        let (_, eps) = d.values().find(|(p, _)| p[0].port == 8080).unwrap();
        let c = eps[1].conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        let empty = desired(&svc, &[]);
        assert_eq!(
            empty.len(),
            1,
            "a Service without pods keeps one empty slice"
        );
    }
}
