//! Filter and score plugins as pure functions over a pod and a node snapshot, in upstream's
//! order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit), and
//! the "0/3 nodes are available: ..." summary when no node fits.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use skiff_api::quantity::Quantity;

/// Resource amounts: cpu in millicores, memory in bytes, pods as a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
    }
    fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
    }
}

/// Requests upstream assumes for scoring when a container sets none (100m cpu, 200Mi).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// What the scheduler needs to know about one pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    /// Requests (max of the containers' sum and each init container), for fitting.
    pub requests: Resources,
    /// The same with upstream's non-zero defaults, for scoring.
    pub nonzero: Resources,
    /// The uid of the controlling owner, for spreading.
    pub owner: Option<String>,
    /// Host ports the pod needs: (protocol, port).
    pub host_ports: Vec<(String, i32)>,
}

fn qty(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> Option<Quantity> {
    map.and_then(|m| m.get(name))
        .and_then(|q| Quantity::parse(&q.0).ok())
}

impl PodInfo {
    pub fn from_pod(p: &Pod) -> PodInfo {
        let mut info = PodInfo {
            owner: skiff_client::controller_of(&p.metadata).map(|r| r.uid.clone()),
            ..Default::default()
        };
        let Some(spec) = &p.spec else { return info };
        let req = |c: &k8s_openapi::api::core::v1::Container| {
            let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let cpu = qty(r, "cpu").map(|q| q.milli_value() as i64);
            let mem = qty(r, "memory").map(|q| q.value() as i64);
            (
                Resources {
                    milli_cpu: cpu.unwrap_or(0),
                    memory: mem.unwrap_or(0),
                },
                Resources {
                    milli_cpu: cpu.filter(|v| *v != 0).unwrap_or(DEFAULT_MILLI_CPU),
                    memory: mem.filter(|v| *v != 0).unwrap_or(DEFAULT_MEMORY),
                },
            )
        };
        for c in &spec.containers {
            let (r, nz) = req(c);
            info.requests.add(&r);
            info.nonzero.add(&nz);
            for port in c.ports.iter().flatten() {
                if let Some(hp) = port.host_port.filter(|p| *p > 0) {
                    let proto = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                    info.host_ports.push((proto, hp));
                }
            }
        }
        for c in spec.init_containers.iter().flatten() {
            let (r, nz) = req(c);
            info.requests.milli_cpu = info.requests.milli_cpu.max(r.milli_cpu);
            info.requests.memory = info.requests.memory.max(r.memory);
            info.nonzero.milli_cpu = info.nonzero.milli_cpu.max(nz.milli_cpu);
            info.nonzero.memory = info.nonzero.memory.max(nz.memory);
        }
        if let Some(o) = &spec.overhead {
            let cpu = qty(Some(o), "cpu")
                .map(|q| q.milli_value() as i64)
                .unwrap_or(0);
            let mem = qty(Some(o), "memory")
                .map(|q| q.value() as i64)
                .unwrap_or(0);
            let add = Resources {
                milli_cpu: cpu,
                memory: mem,
            };
            info.requests.add(&add);
            info.nonzero.add(&add);
        }
        info
    }
}

/// One node as the scheduler sees it: the Node's facts plus what its pods use.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub nonzero_requested: Resources,
    pub pod_count: i64,
    pub owner_counts: HashMap<String, i64>,
    pub used_ports: HashSet<(String, i32)>,
}

impl NodeInfo {
    /// Takes the Node's facts, keeping the pod aggregates.
    pub fn set_node(&mut self, n: &k8s_openapi::api::core::v1::Node) {
        self.name = n.metadata.name.clone().unwrap_or_default();
        self.labels = n.metadata.labels.clone().unwrap_or_default();
        let spec = n.spec.clone().unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = Resources {
            milli_cpu: qty(alloc, "cpu")
                .map(|q| q.milli_value() as i64)
                .unwrap_or(0),
            memory: qty(alloc, "memory").map(|q| q.value() as i64).unwrap_or(0),
        };
        self.allowed_pods = qty(alloc, "pods").map(|q| q.value() as i64).unwrap_or(0);
    }

    pub fn add_pod(&mut self, p: &PodInfo) {
        self.requested.add(&p.requests);
        self.nonzero_requested.add(&p.nonzero);
        self.pod_count += 1;
        if let Some(o) = &p.owner {
            *self.owner_counts.entry(o.clone()).or_insert(0) += 1;
        }
        self.used_ports.extend(p.host_ports.iter().cloned());
    }

    pub fn remove_pod(&mut self, p: &PodInfo) {
        self.requested.sub(&p.requests);
        self.nonzero_requested.sub(&p.nonzero);
        self.pod_count -= 1;
        if let Some(o) = &p.owner {
            if let Some(c) = self.owner_counts.get_mut(o) {
                *c -= 1;
                if *c <= 0 {
                    self.owner_counts.remove(o);
                }
            }
        }
        for hp in &p.host_ports {
            self.used_ports.remove(hp);
        }
    }
}

/// Why a node was filtered out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint { key: String, value: String },
    NodeAffinity,
    NodePorts,
    Insufficient(String),
    TooManyPods,
}

impl Reason {
    /// Upstream's text for the reason.
    pub fn message(&self) -> String {
        match self {
            Reason::Unschedulable => "node(s) were unschedulable".into(),
            Reason::UntoleratedTaint { key, value } => {
                format!("node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::NodePorts => {
                "node(s) didn't have free ports for the requested pod ports".into()
            }
            Reason::Insufficient(r) => format!("Insufficient {r}"),
            Reason::TooManyPods => "Too many pods".into(),
        }
    }

    /// Whether evicting lower-priority pods could help (upstream's Unschedulable status),
    /// rather than UnschedulableAndUnresolvable.
    pub fn preemption_could_help(&self) -> bool {
        matches!(
            self,
            Reason::Insufficient(_) | Reason::TooManyPods | Reason::NodePorts
        )
    }
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok =
            t.key.as_deref().is_none_or(|k| k.is_empty()) || t.key.as_deref() == Some(&taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        // An empty key with Exists tolerates everything.
        effect_ok && key_ok && value_ok
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    let have = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => have.is_some_and(|v| vals.contains(v)),
        "NotIn" => !have.is_some_and(|v| vals.contains(v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                vals.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                h > v
            } else {
                h < v
            }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        // An empty term matches nothing, as upstream.
        return false;
    }
    let name_labels: BTreeMap<String, String> =
        [("metadata.name".to_string(), node.name.clone())].into();
    exprs.iter().all(|r| requirement_matches(r, &node.labels))
        && fields.iter().all(|r| requirement_matches(r, &name_labels))
}

/// nodeSelector and required node affinity.
pub fn node_affinity_matches(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| node.labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

/// Runs the filters in upstream's order; the first failing plugin's reasons are returned.
pub fn filter(pod: &Pod, info: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    // NodeUnschedulable
    if node.unschedulable {
        let t = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerates(&tolerations, &t) {
            return Err(vec![Reason::Unschedulable]);
        }
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
    if let Some(t) = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerates(&tolerations, t))
    {
        return Err(vec![Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        }]);
    }
    // NodeAffinity
    if !node_affinity_matches(pod, node) {
        return Err(vec![Reason::NodeAffinity]);
    }
    // NodePorts
    if info.host_ports.iter().any(|p| node.used_ports.contains(p)) {
        return Err(vec![Reason::NodePorts]);
    }
    // NodeResourcesFit
    let mut reasons = Vec::new();
    if node.pod_count + 1 > node.allowed_pods {
        reasons.push(Reason::TooManyPods);
    }
    if info.requests.milli_cpu > 0
        && info.requests.milli_cpu > node.allocatable.milli_cpu - node.requested.milli_cpu
    {
        reasons.push(Reason::Insufficient("cpu".into()));
    }
    if info.requests.memory > 0
        && info.requests.memory > node.allocatable.memory - node.requested.memory
    {
        reasons.push(Reason::Insufficient("memory".into()));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Upstream's maximum node score.
pub const MAX_SCORE: i64 = 100;

/// NodeResourcesFit's LeastAllocated: more free cpu and memory scores higher.
pub fn least_allocated(info: &PodInfo, node: &NodeInfo) -> i64 {
    let one = |req: i64, cap: i64| {
        if cap == 0 || req > cap {
            0
        } else {
            (cap - req) * MAX_SCORE / cap
        }
    };
    let cpu = one(
        node.nonzero_requested.milli_cpu + info.nonzero.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let mem = one(
        node.nonzero_requested.memory + info.nonzero.memory,
        node.allocatable.memory,
    );
    (cpu + mem) / 2
}

/// NodeResourcesBalancedAllocation: cpu and memory used in similar proportions scores higher.
pub fn balanced_allocation(info: &PodInfo, node: &NodeInfo) -> i64 {
    let frac = |req: i64, cap: i64| {
        if cap == 0 {
            1.0
        } else {
            (req as f64 / cap as f64).min(1.0)
        }
    };
    let c = frac(
        node.nonzero_requested.milli_cpu + info.nonzero.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let m = frac(
        node.nonzero_requested.memory + info.nonzero.memory,
        node.allocatable.memory,
    );
    let std = (c - m).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// Spreading: the fewer pods of the same owner a node has, the higher (normalised over the
/// feasible nodes, as upstream's default topology spreading by hostname).
pub fn spread_scores(info: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let Some(owner) = &info.owner else {
        return vec![MAX_SCORE; nodes.len()];
    };
    let counts: Vec<i64> = nodes
        .iter()
        .map(|n| n.owner_counts.get(owner).copied().unwrap_or(0))
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    let min = counts.iter().copied().min().unwrap_or(0);
    if max == min {
        return vec![MAX_SCORE; nodes.len()];
    }
    counts
        .iter()
        .map(|c| (max - c) * MAX_SCORE / (max - min))
        .collect()
}

/// Total scores of feasible nodes with upstream's default weights (fit 1, balanced 1,
/// topology spread 2).
pub fn score(info: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let spread = spread_scores(info, nodes);
    nodes
        .iter()
        .zip(spread)
        .map(|(n, s)| least_allocated(info, n) + balanced_allocation(info, n) + 2 * s)
        .collect()
}

/// Upstream's FitError text, including what its default preemption adds.
pub fn fit_error_message(num_nodes: usize, reasons: &[Vec<Reason>]) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let histogram = |items: Vec<String>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for i in items {
            *counts.entry(i).or_insert(0) += 1;
        }
        let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        parts.sort();
        parts.join(", ")
    };
    let filter = histogram(reasons.iter().flatten().map(Reason::message).collect());
    let preemption = histogram(
        reasons
            .iter()
            .map(|rs| {
                if rs.iter().all(Reason::preemption_could_help) {
                    "No preemption victims found for incoming pod".to_string()
                } else {
                    "Preemption is not helpful for scheduling".to_string()
                }
            })
            .collect(),
    );
    format!(
        "0/{num_nodes} nodes are available: {filter}. preemption: 0/{num_nodes} nodes are available: {preemption}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, mem: &str) -> NodeInfo {
        let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"disk": "ssd", "zone": "a"}},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}
        }))
        .unwrap();
        let mut ni = NodeInfo::default();
        ni.set_node(&n);
        ni
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    fn cpu_pod(cpu: &str) -> Pod {
        pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}))
    }

    #[test]
    fn resources_fit_counts_bound_pods() {
        let mut n = node("a", "4", "16Gi");
        let p = cpu_pod("3");
        let info = PodInfo::from_pod(&p);
        assert_eq!(info.requests.milli_cpu, 3000);
        assert_eq!(info.requests.memory, 1 << 30);
        assert!(filter(&p, &info, &n).is_ok());
        n.add_pod(&info);
        assert_eq!(
            filter(&p, &info, &n),
            Err(vec![Reason::Insufficient("cpu".into())])
        );
        n.remove_pod(&info);
        assert!(filter(&p, &info, &n).is_ok());
        n.allowed_pods = 0;
        assert_eq!(filter(&p, &info, &n), Err(vec![Reason::TooManyPods]));
    }

    #[test]
    fn init_containers_take_the_max() {
        let p = pod(serde_json::json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]}));
        assert_eq!(PodInfo::from_pod(&p).requests.milli_cpu, 2000);
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node("a", "4", "16Gi");
        let sel = pod(serde_json::json!({"nodeSelector": {"disk": "hdd"}, "containers": []}));
        assert_eq!(
            filter(&sel, &PodInfo::from_pod(&sel), &n),
            Err(vec![Reason::NodeAffinity])
        );
        let aff = |op: &str, vals: serde_json::Value| {
            pod(
                serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": op, "values": vals}]}]}}}}),
            )
        };
        for (op, vals, ok) in [
            ("In", serde_json::json!(["a", "b"]), true),
            ("In", serde_json::json!(["b"]), false),
            ("NotIn", serde_json::json!(["a"]), false),
            ("NotIn", serde_json::json!(["b"]), true),
            ("Exists", serde_json::json!(null), true),
            ("DoesNotExist", serde_json::json!(null), false),
        ] {
            let p = aff(op, vals);
            assert_eq!(node_affinity_matches(&p, &n), ok, "{op}");
        }
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node("a", "4", "16Gi");
        n.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }];
        let plain = pod(serde_json::json!({"containers": []}));
        let err = filter(&plain, &PodInfo::from_pod(&plain), &n).unwrap_err();
        assert_eq!(
            err[0].message(),
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        let tol = pod(serde_json::json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}));
        assert!(filter(&tol, &PodInfo::from_pod(&tol), &n).is_ok());
        let exists =
            pod(serde_json::json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        assert!(filter(&exists, &PodInfo::from_pod(&exists), &n).is_ok());
        // PreferNoSchedule does not filter.
        n.taints[0].effect = "PreferNoSchedule".into();
        assert!(filter(&plain, &PodInfo::from_pod(&plain), &n).is_ok());
        n.taints.clear();
        n.unschedulable = true;
        assert_eq!(
            filter(&plain, &PodInfo::from_pod(&plain), &n),
            Err(vec![Reason::Unschedulable])
        );
    }

    #[test]
    fn host_ports_conflict() {
        let mut n = node("a", "4", "16Gi");
        let p = pod(
            serde_json::json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let info = PodInfo::from_pod(&p);
        assert!(filter(&p, &info, &n).is_ok());
        n.add_pod(&info);
        assert_eq!(filter(&p, &info, &n), Err(vec![Reason::NodePorts]));
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let mut busy = node("busy", "4", "16Gi");
        let idle = node("idle", "4", "16Gi");
        let p = cpu_pod("1");
        let info = PodInfo::from_pod(&p);
        busy.add_pod(&info);
        assert!(least_allocated(&info, &idle) > least_allocated(&info, &busy));
        assert_eq!(least_allocated(&info, &idle), (75 + 93) / 2);
    }

    #[test]
    fn spreading_prefers_nodes_without_siblings() {
        let mut a = node("a", "4", "16Gi");
        let b = node("b", "4", "16Gi");
        let info = PodInfo {
            owner: Some("rs-uid".into()),
            ..PodInfo::from_pod(&cpu_pod("100m"))
        };
        a.add_pod(&info);
        assert_eq!(spread_scores(&info, &[&a, &b]), vec![0, 100]);
        let s = score(&info, &[&a, &b]);
        assert!(s[1] > s[0]);
    }

    #[test]
    fn fit_error_message_matches_upstream() {
        let r = vec![vec![Reason::Insufficient("cpu".into())]; 3];
        assert_eq!(
            fit_error_message(3, &r),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
             3 No preemption victims found for incoming pod."
        );
        let mixed = vec![
            vec![Reason::UntoleratedTaint {
                key: "node-role.kubernetes.io/control-plane".into(),
                value: "".into(),
            }],
            vec![
                Reason::Insufficient("cpu".into()),
                Reason::Insufficient("memory".into()),
            ],
            vec![Reason::Insufficient("cpu".into())],
        ];
        assert_eq!(
            fit_error_message(3, &mixed),
            "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes \
             are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims \
             found for incoming pod."
        );
        assert_eq!(
            fit_error_message(0, &[]),
            "no nodes available to schedule pods"
        );
    }
}
