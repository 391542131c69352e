//! Endpoints controller: for every Service with a selector, an Endpoints object of the same
//! name listing the selected pods' IPs, ready ones in `addresses` and the others in
//! `notReadyAddresses`, with named target ports resolved per pod.
//!
//! `backends` (the pods a Service selects, with resolved ports) is shared with the
//! EndpointSlice controller.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue};

use crate::{api_err, is_gone_or_conflict, Result};

/// Marks the Endpoints this controller manages (and may delete with their Service).
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpoint-controller";

/// One service port as it applies to one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// A pod behind a Service.
#[derive(Clone, Debug)]
pub struct Backend {
    pub ip: String,
    pub node: Option<String>,
    pub ready: bool,
    /// Ready by its own conditions, also while terminating (EndpointSlice `serving`).
    pub serving: bool,
    pub terminating: bool,
    pub target: ObjectReference,
    pub ports: Vec<ResolvedPort>,
}

/// The service's ports resolved against one pod's containers; None when a named target port
/// is missing from the pod (the pod then does not serve that Service, as upstream).
pub fn resolve_ports(svc: &Service, pod: &Pod) -> Option<Vec<ResolvedPort>> {
    let spec = svc.spec.as_ref()?;
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let port = match &p.target_port {
            None => p.port,
            Some(IntOrString::Int(i)) => *i,
            Some(IntOrString::String(name)) => {
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                pod.spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| {
                        cp.name.as_deref() == Some(name.as_str())
                            && cp.protocol.as_deref().unwrap_or("TCP") == proto
                    })?
                    .container_port
            }
        };
        out.push(ResolvedPort {
            name: p.name.clone().unwrap_or_default(),
            port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        });
    }
    Some(out)
}

/// Pods the Service selects that have an IP, with readiness and resolved ports.
pub fn backends(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Backend> {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    let ns = svc.namespace();
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut out: Vec<Backend> = pods
        .iter()
        .filter(|p| p.namespace() == ns)
        .filter(|p| {
            let l = p.metadata.labels.clone().unwrap_or_default();
            sel.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .filter_map(|p| {
            let ip = p
                .status
                .as_ref()?
                .pod_ip
                .clone()
                .filter(|ip| !ip.is_empty())?;
            let ports = resolve_ports(svc, p)?;
            let terminating = p.metadata.deletion_timestamp.is_some();
            let serving = skiff_client::pod_is_ready(p) || publish_not_ready;
            Some(Backend {
                ip,
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                ready: serving && !terminating,
                serving,
                terminating,
                target: ObjectReference {
                    kind: Some("Pod".into()),
                    name: p.metadata.name.clone(),
                    namespace: p.metadata.namespace.clone(),
                    uid: p.metadata.uid.clone(),
                    ..Default::default()
                },
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip));
    out
}

/// Subsets grouped by identical port lists, as upstream's Endpoints repacking.
pub fn subsets(backends: &[Backend]) -> Vec<EndpointSubset> {
    let mut by_ports: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for b in backends.iter().filter(|b| !b.terminating) {
        let addr = EndpointAddress {
            ip: b.ip.clone(),
            node_name: b.node.clone(),
            target_ref: Some(b.target.clone()),
            hostname: None,
        };
        let entry = by_ports.entry(b.ports.clone()).or_default();
        if b.ready {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    by_ports
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then_some(p.name),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect()
            }),
        })
        .collect()
}

/// Maps pod changes to the Services that select (or selected) the pod.
pub(crate) struct PodToServices {
    services: Store<Service>,
    last: Mutex<HashMap<String, HashSet<String>>>,
}

impl PodToServices {
    pub(crate) fn new(services: Store<Service>) -> Self {
        PodToServices {
            services,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Service keys to resync for a pod change.
    pub(crate) fn keys(&self, p: &Pod, deleted: bool) -> HashSet<String> {
        let ns = p.namespace().unwrap_or_default();
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let pod_key = skiff_client::key_of(&p.metadata);
        let now: HashSet<String> = if deleted {
            HashSet::new()
        } else {
            self.services
                .state()
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .filter(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|sp| sp.selector.as_ref())
                        .is_some_and(|sel| {
                            !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                        })
                })
                .map(|s| skiff_client::key_of(&s.metadata))
                .collect()
        };
        let mut last = self.last.lock().unwrap();
        let before = if now.is_empty() {
            last.remove(&pod_key)
        } else {
            last.insert(pod_key, now.clone())
        };
        now.union(&before.unwrap_or_default()).cloned().collect()
    }
}

struct Ctl {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    queue: Queue,
    map: PodToServices,
}

pub fn start(informers: &Arc<Informers>) {
    let svc_inf = informers.services();
    let pod_inf = informers.pods();
    let ep_inf = informers.endpoints();
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        services: svc_inf.store(),
        pods: pod_inf.store(),
        endpoints: ep_inf.store(),
        queue: Queue::new(),
        map: PodToServices::new(svc_inf.store()),
    });
    let q = ctl.queue.clone();
    svc_inf.on_change(move |c| match c {
        Change::Applied(s) | Change::Deleted(s) => q.add(skiff_client::key_of(&s.metadata)),
    });
    // Only deletions matter (to recreate): Endpoints without a Service of ours are left alone.
    let q = ctl.queue.clone();
    ep_inf.on_change(move |c| {
        if let Change::Deleted(e) = c {
            q.add(skiff_client::key_of(&e.metadata))
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
        i.endpoints().synced().await;
        let q = c.queue.clone();
        skiff_client::run_workers(q, 2, "endpoints", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    });
}

impl Ctl {
    async fn sync(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // The Service is gone: so are the Endpoints this controller made for it.
            let ours = current.as_ref().is_some_and(|e| {
                e.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER)
            });
            if ours {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_gone_or_conflict(&e) => {}
                    Err(e) => return Err(api_err(format!("deleting endpoints {key}"))(e)),
                }
            }
            return Ok(());
        };
        let has_selector = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty());
        if !has_selector {
            return Ok(());
        }
        let pods = self.pods.state();
        let subsets = subsets(&backends(&svc, &pods));
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        labels.insert(MANAGED_BY.into(), CONTROLLER.into());
        if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let want_subsets = (!subsets.is_empty()).then_some(subsets);
        if let Some(cur) = &current {
            if cur.subsets == want_subsets
                && cur.metadata.labels.clone().unwrap_or_default() == labels
            {
                return Ok(());
            }
            let patch = serde_json::json!({
                "metadata": {"labels": labels},
                "subsets": want_subsets.clone().unwrap_or_default(),
            });
            return match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_gone_or_conflict(&e) => Ok(()),
                Err(e) => Err(api_err(format!("updating endpoints {key}"))(e)),
            };
        }
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: (!labels.is_empty()).then_some(labels),
                ..Default::default()
            },
            subsets: want_subsets,
        };
        match api.create(&PostParams::default(), &ep).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.queue
                    .add_after(key.to_string(), std::time::Duration::from_millis(100));
                Ok(())
            }
            Err(e) => Err(api_err(format!("creating endpoints {key}"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(target: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": target}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c",
                    "ports": [{"name": port_name, "containerPort": port}]}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_group_subsets() {
        let s = svc(serde_json::json!("web"));
        let pods = vec![
            pod("a", "10.42.0.3", true, "web", 8080),
            pod("b", "10.42.0.2", false, "web", 8080),
            pod("c", "10.42.0.4", true, "web", 9090),
            pod("d", "10.42.0.5", true, "other", 9090),
        ];
        let b = backends(&s, &pods);
        assert_eq!(b.len(), 3, "a pod without the named port is left out");
        let subs = subsets(&b);
        assert_eq!(subs.len(), 2);
        let s8080 = subs
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == 8080)
            .unwrap();
        assert_eq!(s8080.addresses.as_ref().unwrap()[0].ip, "10.42.0.3");
        assert_eq!(
            s8080.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.42.0.2"
        );
        assert_eq!(
            s8080.ports.as_ref().unwrap()[0].name.as_deref(),
            Some("http")
        );
    }

    #[test]
    fn numeric_target_port_and_default() {
        let s = svc(serde_json::json!(8443));
        let b = backends(&s, &[pod("a", "10.42.0.3", true, "x", 1)]);
        assert_eq!(b[0].ports[0].port, 8443);
    }
}
