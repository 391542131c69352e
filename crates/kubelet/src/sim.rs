//! Simulated nodes (`skiff sim nodes`): Nodes that register, keep their Leases renewed and play
//! a kubelet for the pods bound to them — IPs, Running, Ready, container statuses, deletion —
//! without running anything. For testing and benchmarking the scheduler and controllers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Node,
    NodeAddress, NodeCondition, NodeSystemInfo, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informer, Queue};

use crate::runtime::{self, ContainerRun, Runtime, SandboxStatus};

/// Labels and annotations that say a node is simulated.
pub const SIMULATED_LABEL: &str = "node.skiff.dev/simulated";

/// How the simulated nodes look.
#[derive(Clone, Debug)]
pub struct Config {
    pub count: usize,
    /// Node names are `<prefix><index>`.
    pub prefix: String,
    /// Index of the first node.
    pub start: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// How often each node's Lease is renewed.
    pub lease_interval: Duration,
    /// How often each Node's status (conditions' heartbeat) is written.
    pub status_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            count: 1,
            prefix: "sim-".into(),
            start: 0,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
        }
    }
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// A runtime that starts nothing: it hands out pod IPs and reports containers as running.
#[derive(Default)]
pub struct SimRuntime {
    /// node -> (pod uid -> host index within the node's range).
    ips: Mutex<HashMap<String, HashMap<String, u32>>>,
}

/// The node's fallback range when it has no podCIDR yet: 10.42.<index>.0/24.
fn fallback_base(node: &str) -> Ipv4Addr {
    let idx: u32 = node
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ipv4Addr::new(10, 42, (idx % 256) as u8, 0)
}

fn cidr_base(cidr: &str) -> Option<(Ipv4Addr, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    (len <= 30).then_some((ip, len))
}

#[async_trait::async_trait]
impl Runtime for SimRuntime {
    async fn start_pod(
        &self,
        node: &str,
        pod_cidr: Option<&str>,
        pod: &Pod,
    ) -> runtime::Result<SandboxStatus> {
        let uid = pod.uid().unwrap_or_default();
        let (base, len) = pod_cidr
            .and_then(cidr_base)
            .unwrap_or((fallback_base(node), 24));
        let hosts = (1u32 << (32 - len)) - 2;
        let host = {
            let mut all = self.ips.lock().unwrap();
            let used = all.entry(node.to_string()).or_default();
            match used.get(&uid) {
                Some(h) => *h,
                None => {
                    let taken: HashSet<u32> = used.values().copied().collect();
                    // .1 is the node's bridge in a real network.
                    let h = (2..=hosts).find(|h| !taken.contains(h)).ok_or_else(|| {
                        runtime::Error::Start {
                            pod: pod.name_any(),
                            message: format!("no free address on node {node}"),
                        }
                    })?;
                    used.insert(uid.clone(), h);
                    h
                }
            }
        };
        let ip = Ipv4Addr::from(u32::from(base) + host);
        let started_at = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(skiff_client::now);
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| ContainerRun {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: format!("sim://{}", c.image.as_deref().unwrap_or("")),
                container_id: format!("sim://{uid}/{}", c.name),
                started_at: started_at.clone(),
            })
            .collect();
        Ok(SandboxStatus {
            ips: vec![ip.to_string()],
            containers,
        })
    }

    async fn stop_pod(&self, node: &str, pod_uid: &str) -> runtime::Result<()> {
        if let Some(used) = self.ips.lock().unwrap().get_mut(node) {
            used.remove(pod_uid);
        }
        Ok(())
    }
}

/// The status a kubelet would report for a pod whose containers all run.
/// Seconds after start before the pod counts as ready: the largest readiness probe
/// `initialDelaySeconds` (probes themselves always pass on a simulated node).
pub fn readiness_delay(pod: &Pod) -> i64 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.readiness_probe.as_ref())
        .filter_map(|p| p.initial_delay_seconds)
        .max()
        .unwrap_or(0)
        .max(0) as i64
}

/// The status a kubelet would report for a pod whose containers all run (and are ready when
/// `ready`).
pub fn running_status(
    pod: &Pod,
    host_ip: &str,
    sb: &SandboxStatus,
    ready: bool,
    now: &Time,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let old_conds = old.conditions.clone().unwrap_or_default();
    let cond = |t: &str, ok: bool| {
        let prev = old_conds.iter().find(|c| c.type_ == t);
        let status = if ok { "True" } else { "False" };
        PodCondition {
            type_: t.to_string(),
            status: status.into(),
            reason: (!ok).then(|| "ContainersNotReady".to_string()),
            last_transition_time: match prev {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Some(now.clone()),
            },
            ..Default::default()
        }
    };
    let init_statuses: Vec<ContainerStatus> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: format!("sim://{}", c.image.as_deref().unwrap_or("")),
            ready: false,
            restart_count: 0,
            started: Some(false),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    PodStatus {
        phase: Some("Running".into()),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: sb.ips.first().cloned(),
        pod_ips: Some(sb.ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        qos_class: old.qos_class.clone(),
        conditions: Some(vec![
            cond("PodReadyToStartContainers", true),
            cond("Initialized", true),
            cond("Ready", ready),
            cond("ContainersReady", ready),
            cond("PodScheduled", true),
        ]),
        container_statuses: Some(
            sb.containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: c.image_id.clone(),
                    container_id: Some(c.container_id.clone()),
                    ready,
                    started: Some(true),
                    restart_count: 0,
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(c.started_at.clone()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ..Default::default()
    }
}

/// Simulator only (nothing runs, so nothing would ever exit): a pod annotated
/// `sim.skiff.dev/exit-after-seconds: "N"` has all its containers exit N seconds after the pod
/// started, with exit code `sim.skiff.dev/exit-code` (default 0). The pod then ends Succeeded
/// (code 0) or Failed. Only pods whose restartPolicy is Never or OnFailure exit (a non-zero
/// code under OnFailure is not restarted: the pod fails, as with Never); this is what lets
/// Jobs and CronJobs be tested on simulated nodes.
pub const EXIT_AFTER_ANNOTATION: &str = "sim.skiff.dev/exit-after-seconds";
pub const EXIT_CODE_ANNOTATION: &str = "sim.skiff.dev/exit-code";

/// (seconds after start, exit code) when the pod is scripted to exit.
pub fn scripted_exit(pod: &Pod) -> Option<(i64, i32)> {
    let restart = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    if !matches!(restart, Some("Never") | Some("OnFailure")) {
        return None;
    }
    let a = pod.metadata.annotations.as_ref()?;
    let after: i64 = a.get(EXIT_AFTER_ANNOTATION)?.trim().parse().ok()?;
    let code: i32 = a
        .get(EXIT_CODE_ANNOTATION)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    Some((after.max(0), code))
}

/// The status of a pod whose containers all exited with `code`.
pub fn exited_status(
    pod: &Pod,
    host_ip: &str,
    sb: &SandboxStatus,
    code: i32,
    now: &Time,
) -> PodStatus {
    let mut st = running_status(pod, host_ip, sb, false, now);
    let ok = code == 0;
    st.phase = Some(if ok { "Succeeded" } else { "Failed" }.into());
    for c in st.conditions.iter_mut().flatten() {
        if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            c.reason = Some("PodCompleted".into());
        }
    }
    for (cs, run) in st
        .container_statuses
        .iter_mut()
        .flatten()
        .zip(sb.containers.iter())
    {
        cs.started = Some(false);
        cs.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(if ok { "Completed" } else { "Error" }.into()),
                started_at: Some(run.started_at.clone()),
                finished_at: Some(now.clone()),
                container_id: Some(run.container_id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    st
}

/// Whether the pod already shows what `running_status` would write.
fn in_sync(pod: &Pod, sb: &SandboxStatus, ready: bool) -> bool {
    let Some(st) = &pod.status else { return false };
    st.phase.as_deref() == Some("Running")
        && st.pod_ip.as_ref() == sb.ips.first()
        && skiff_client::pod_is_ready(pod) == ready
        && st.container_statuses.as_ref().map(|c| c.len()) == Some(sb.containers.len())
        && st
            .container_statuses
            .iter()
            .flatten()
            .all(|c| c.ready == ready && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// One simulated node's fixed facts.
struct SimNode {
    name: String,
    ip: String,
}

struct Agent<R: Runtime> {
    client: Client,
    config: Config,
    nodes: HashMap<String, SimNode>,
    runtime: R,
    pods: Arc<Informer<Pod>>,
    node_informer: Arc<Informer<Node>>,
    /// pod key -> (node, uid) of pods we started, to stop them when they vanish.
    running: Mutex<HashMap<String, (String, String)>>,
    queue: Queue,
}

/// Runs `config.count` simulated nodes until the process ends.
pub async fn run(client: Client, config: Config) -> Result<()> {
    let nodes: HashMap<String, SimNode> = (config.start..config.start + config.count)
        .map(|i| {
            let name = format!("{}{i}", config.prefix);
            let ip = Ipv4Addr::new(10, 44, (i / 250) as u8, (i % 250 + 1) as u8).to_string();
            (name.clone(), SimNode { name, ip })
        })
        .collect();
    let pods = Informer::<Pod>::new(
        client.clone(),
        watcher::Config::default().fields("spec.nodeName!="),
    );
    let node_informer = Informer::<Node>::new(
        client.clone(),
        watcher::Config::default().labels(&format!("{SIMULATED_LABEL}=true")),
    );
    let agent = Arc::new(Agent {
        client: client.clone(),
        config: config.clone(),
        nodes,
        runtime: SimRuntime::default(),
        pods,
        node_informer,
        running: Mutex::new(HashMap::new()),
        queue: Queue::new(),
    });

    agent.register_all().await?;

    let queue = agent.queue.clone();
    {
        let q = queue.clone();
        let a = agent.clone();
        agent.pods.on_change(move |c| {
            let p = match c {
                Change::Applied(p) | Change::Deleted(p) => p,
            };
            let ours = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| a.nodes.contains_key(n));
            if ours {
                q.add(skiff_client::key_of(&p.metadata));
            }
        });
    }
    agent.pods.start();
    agent.node_informer.start();
    agent.pods.synced().await;

    let a = agent.clone();
    skiff_client::run_workers(queue, 8, "sim-kubelet", move |key| {
        let a = a.clone();
        async move { a.sync_pod(&key).await }
    });

    let a = agent.clone();
    tokio::spawn(async move { a.lease_loop().await });
    let a = agent.clone();
    a.status_loop().await;
    Ok(())
}

impl<R: Runtime> Agent<R> {
    fn node_object(&self, n: &SimNode) -> Node {
        let q = |s: &str| Quantity(s.to_string());
        let resources: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), q(&self.config.cpu)),
            ("memory".to_string(), q(&self.config.memory)),
            ("pods".to_string(), q(&self.config.pods)),
            ("ephemeral-storage".to_string(), q("100Gi")),
        ]
        .into();
        Node {
            metadata: ObjectMeta {
                name: Some(n.name.clone()),
                labels: Some(
                    [
                        ("kubernetes.io/hostname", n.name.as_str()),
                        ("kubernetes.io/os", "linux"),
                        ("kubernetes.io/arch", "amd64"),
                        (SIMULATED_LABEL, "true"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ),
                annotations: Some(
                    [(
                        SIMULATED_LABEL.to_string(),
                        "simulated by skiff sim nodes: pods on this node run nothing".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            spec: None,
            status: Some(k8s_openapi::api::core::v1::NodeStatus {
                capacity: Some(resources.clone()),
                allocatable: Some(resources),
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: n.ip.clone(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: n.name.clone(),
                    },
                ]),
                conditions: Some(node_conditions(&skiff_client::now())),
                node_info: Some(NodeSystemInfo {
                    architecture: "amd64".into(),
                    operating_system: "linux".into(),
                    os_image: "skiff simulated node".into(),
                    kernel_version: "simulated".into(),
                    container_runtime_version: "sim://0.1.0".into(),
                    kubelet_version: "v1.33.0-skiff-sim".into(),
                    kube_proxy_version: "".into(),
                    boot_id: String::new(),
                    machine_id: String::new(),
                    system_uuid: String::new(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    /// Creates each Node (or takes over an existing one) and writes its status.
    async fn register_all(&self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let results: Vec<Result<()>> = futures::stream::iter(self.nodes.values())
            .map(|n| {
                let api = api.clone();
                async move {
                    let obj = self.node_object(n);
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            let patch = serde_json::json!({"metadata": {
                                "labels": obj.metadata.labels, "annotations": obj.metadata.annotations}});
                            api.patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await
                                .map_err(api_err(format!("updating node {}", n.name)))?;
                        }
                        Err(e) => return Err(api_err(format!("registering node {}", n.name))(e)),
                    }
                    let status = serde_json::json!({"status": obj.status});
                    api.patch_status(&n.name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                        .map_err(api_err(format!("node {} status", n.name)))?;
                    Ok(())
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        tracing::info!(count = self.nodes.len(), "simulated nodes registered");
        Ok(())
    }

    /// Renews every node's Lease in `kube-node-lease`, creating it when missing.
    async fn lease_loop(&self) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let nodes_api: Api<Node> = Api::all(self.client.clone());
        let mut tick = tokio::time::interval(self.config.lease_interval);
        loop {
            tick.tick().await;
            futures::stream::iter(self.nodes.values())
                .for_each_concurrent(32, |n| {
                    let api = api.clone();
                    let nodes_api = nodes_api.clone();
                    async move {
                        if let Err(e) = self.renew(&api, &nodes_api, n).await {
                            tracing::warn!(node = %n.name, error = %e, "lease renewal failed");
                        }
                    }
                })
                .await;
        }
    }

    async fn renew(&self, api: &Api<Lease>, nodes: &Api<Node>, n: &SimNode) -> Result<()> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let patch = serde_json::json!({"spec": {"renewTime": now, "holderIdentity": n.name}});
        match api
            .patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let node = nodes
                    .get(&n.name)
                    .await
                    .map_err(api_err(format!("getting node {}", n.name)))?;
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(n.name.clone()),
                        namespace: Some("kube-node-lease".into()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: n.name.clone(),
                            uid: node.uid().unwrap_or_default(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(n.name.clone()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    Err(e) => Err(api_err(format!("creating lease {}", n.name))(e)),
                }
            }
            Err(e) => Err(api_err(format!("renewing lease {}", n.name))(e)),
        }
    }

    /// Rewrites each node's conditions with a fresh heartbeat, as a kubelet's status report.
    async fn status_loop(&self) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut tick = tokio::time::interval(self.config.status_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = skiff_client::now();
            futures::stream::iter(self.nodes.values())
                .for_each_concurrent(32, |n| {
                    let api = api.clone();
                    let patch =
                        serde_json::json!({"status": {"conditions": node_conditions(&now)}});
                    async move {
                        if let Err(e) = api
                            .patch_status(
                                &n.name,
                                &PatchParams::default(),
                                &Patch::Strategic(&patch),
                            )
                            .await
                        {
                            tracing::warn!(node = %n.name, error = %e, "node status update failed");
                        }
                    }
                })
                .await;
        }
    }

    async fn sync_pod(&self, key: &str) -> Result<()> {
        let (ns, name) = skiff_client::split_key(key);
        let ns = ns.unwrap_or("default");
        let pod = self.pods.store().get(&ObjectRef::new(name).within(ns));
        let Some(pod) = pod else {
            let gone = self.running.lock().unwrap().remove(key);
            if let Some((node, uid)) = gone {
                self.runtime.stop_pod(&node, &uid).await?;
            }
            return Ok(());
        };
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(node) = self.nodes.get(&node_name) else {
            return Ok(());
        };
        let uid = pod.uid().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if pod.metadata.deletion_timestamp.is_some() {
            // Nothing runs, so the containers are "stopped" at once; the final delete
            // (grace 0) removes the object, as a kubelet does after its containers exit.
            self.runtime.stop_pod(&node.name, &uid).await?;
            self.running.lock().unwrap().remove(key);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            return match api.delete(name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                Err(e) => Err(api_err(format!("deleting pod {key}"))(e)),
            };
        }
        if !skiff_client::pod_is_active(&pod) {
            return Ok(());
        }
        let pod_cidr = self
            .node_informer
            .store()
            .get(&ObjectRef::new(&node.name))
            .and_then(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.clone()));
        let sb = self
            .runtime
            .start_pod(&node.name, pod_cidr.as_deref(), &pod)
            .await?;
        self.running
            .lock()
            .unwrap()
            .insert(key.to_string(), (node.name.clone(), uid.clone()));
        let now = skiff_client::now();
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(now.0.as_second());
        if let Some((after, code)) = scripted_exit(&pod) {
            let exit_at = started + after;
            if exit_at <= now.0.as_second() {
                self.runtime.stop_pod(&node.name, &uid).await?;
                self.running.lock().unwrap().remove(key);
                let status = exited_status(&pod, &node.ip, &sb, code, &now);
                let patch = serde_json::json!({"status": status});
                return match api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(api_err(format!("pod {key} status"))(e)),
                };
            }
            let wait = (exit_at - now.0.as_second()).max(1) as u64;
            self.queue
                .add_after(key.to_string(), Duration::from_secs(wait));
        }
        let ready_at = started + readiness_delay(&pod);
        let ready = ready_at <= now.0.as_second();
        if !ready {
            let wait = (ready_at - now.0.as_second()).max(1) as u64;
            self.queue
                .add_after(key.to_string(), Duration::from_secs(wait));
        }
        if in_sync(&pod, &sb, ready) {
            return Ok(());
        }
        let status = running_status(&pod, &node.ip, &sb, ready, &now);
        let patch = serde_json::json!({"status": status});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(api_err(format!("pod {key} status"))(e)),
        }
    }
}

fn node_conditions(now: &Time) -> Vec<NodeCondition> {
    let c = |t: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    vec![
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "sim-3"}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn pod_ips_come_from_the_node_cidr_and_are_reused_after_stop() {
        let rt = SimRuntime::default();
        let a = rt
            .start_pod("sim-3", Some("10.42.7.0/24"), &pod("a"))
            .await
            .unwrap();
        let b = rt
            .start_pod("sim-3", Some("10.42.7.0/24"), &pod("b"))
            .await
            .unwrap();
        assert_eq!(a.ips, vec!["10.42.7.2"]);
        assert_eq!(b.ips, vec!["10.42.7.3"]);
        let again = rt
            .start_pod("sim-3", Some("10.42.7.0/24"), &pod("a"))
            .await
            .unwrap();
        assert_eq!(again.ips, a.ips, "start_pod is idempotent");
        rt.stop_pod("sim-3", "a").await.unwrap();
        let c = rt.start_pod("sim-3", None, &pod("c")).await.unwrap();
        assert_eq!(
            c.ips,
            vec!["10.42.3.2"],
            "fallback range 10.42.<index>.0/24"
        );
    }

    #[tokio::test]
    async fn scripted_exit_ends_never_restarting_pods_with_their_code() {
        let mut p = pod("a");
        p.metadata.annotations = Some(
            [
                (EXIT_AFTER_ANNOTATION.to_string(), "3".to_string()),
                (EXIT_CODE_ANNOTATION.to_string(), "2".to_string()),
            ]
            .into(),
        );
        assert_eq!(scripted_exit(&p), None, "restartPolicy Always never exits");
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(scripted_exit(&p), Some((3, 2)));
        let sb = SimRuntime::default()
            .start_pod("sim-3", None, &p)
            .await
            .unwrap();
        let st = exited_status(&p, "10.44.0.4", &sb, 2, &skiff_client::now());
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        let term = st.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (2, Some("Error")));
    }

    #[tokio::test]
    async fn running_status_is_ready_and_in_sync() {
        let rt = SimRuntime::default();
        let mut p = pod("a");
        let sb = rt.start_pod("sim-3", None, &p).await.unwrap();
        assert!(!in_sync(&p, &sb, true));
        p.status = Some(running_status(
            &p,
            "10.44.0.4",
            &sb,
            false,
            &skiff_client::now(),
        ));
        assert!(!skiff_client::pod_is_ready(&p));
        assert!(in_sync(&p, &sb, false));
        p.status = Some(running_status(
            &p,
            "10.44.0.4",
            &sb,
            true,
            &skiff_client::now(),
        ));
        assert!(skiff_client::pod_is_ready(&p));
        assert!(in_sync(&p, &sb, true));
        let cs = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert!(cs.ready && cs.started == Some(true));
    }
}
