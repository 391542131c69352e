//! Filter and score plugins as pure functions over a pod and a node snapshot, in upstream's
//! order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! PodTopologySpread, InterPodAffinity), the weighted sum of upstream's default scores, and
//! the "0/3 nodes are available: ..." summary when no node fits.
//!
//! A [`Cycle`] is one scheduling attempt of one pod: it holds what the pod asks for, read once,
//! and what InterPodAffinity and PodTopologySpread precomputed over the whole cluster
//! (upstream's PreFilter), so that filtering a node that fits allocates nothing.
//!
//! Not (yet) as upstream: PodTopologySpread follows explicit `topologySpreadConstraints`
//! (DoNotSchedule filters, ScheduleAnyway scores, with minDomains, matchLabelKeys and the
//! node inclusion policies), but a pod without any keeps our default spreading of a
//! controller's pods over nodes instead of upstream's default constraints (hostname maxSkew 3
//! and zone maxSkew 5, ScheduleAnyway, over the pods of the same Services and controllers),
//! and terminating pods still count; pod affinity ignores `matchLabelKeys`/`mismatchLabelKeys`;
//! NodeResourcesFit checks cpu, memory, ephemeral-storage and pods but not extended resources
//! or hugepages, and takes sidecar (restartable init) containers for ordinary init containers;
//! no volume or image plugins; and preemption is only described in the message, never done.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{
    NodeSelectorTerm, Pod, PodAffinityTerm, PreferredSchedulingTerm, Taint, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use skiff_api::quantity::Quantity;
use skiff_client::selector_matches;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// Resource amounts: cpu in millicores, memory and ephemeral storage in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
    }
    fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
    }
    fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }
}

/// Requests upstream assumes for scoring when a container sets none (100m cpu, 200Mi).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// One PodAffinityTerm made ready for matching pods.
#[derive(Clone, Debug, PartialEq)]
pub struct AffinityTerm {
    /// The namespaces listed, or the owning pod's own when neither these nor a namespace
    /// selector are given.
    namespaces: Vec<String>,
    /// Namespaces whose labels match also count; `{}` means every namespace.
    namespace_selector: Option<LabelSelector>,
    /// No selector matches no pod, as upstream.
    selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(owner_namespace: &str, t: &PodAffinityTerm) -> AffinityTerm {
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(owner_namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector: t.label_selector.clone(),
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether a pod in namespace `ns` with `labels` is one this term selects.
    pub fn matches(&self, ns: &str, labels: &Labels, namespaces: &dyn Cluster) -> bool {
        let Some(sel) = &self.selector else {
            return false;
        };
        let ns_ok = self.namespaces.iter().any(|n| n == ns)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                skiff_client::selector_is_empty(s)
                    || namespaces
                        .namespace_labels(ns)
                        .is_some_and(|l| selector_matches(s, l))
            });
        ns_ok && selector_matches(sel, labels)
    }
}

fn hash_selector<H: Hasher>(sel: Option<&LabelSelector>, h: &mut H) {
    let Some(sel) = sel else {
        return 0u8.hash(h);
    };
    1u8.hash(h);
    sel.match_labels.hash(h);
    for e in sel.match_expressions.iter().flatten() {
        (&e.key, &e.operator, &e.values).hash(h);
    }
}

// Terms are grouped by value (replicas share theirs); selectors hold no floats, so equality
// is an equivalence.
impl Eq for AffinityTerm {}

impl Hash for AffinityTerm {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.namespaces.hash(h);
        hash_selector(self.namespace_selector.as_ref(), h);
        hash_selector(self.selector.as_ref(), h);
        self.topology_key.hash(h);
    }
}

/// A pod's pod affinity and anti-affinity, for pods that have any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodAffinityTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
}

impl PodAffinityTerms {
    fn from_pod(ns: &str, p: &Pod) -> Option<Box<PodAffinityTerms>> {
        let a = p.spec.as_ref()?.affinity.as_ref()?;
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(ns, t))
                .collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<(i64, AffinityTerm)> {
            terms
                .into_iter()
                .flatten()
                .map(|w| {
                    (
                        i64::from(w.weight),
                        AffinityTerm::new(ns, &w.pod_affinity_term),
                    )
                })
                .collect()
        };
        let aff = a.pod_affinity.as_ref();
        let anti = a.pod_anti_affinity.as_ref();
        let t = PodAffinityTerms {
            required_affinity: required(aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        };
        (t != PodAffinityTerms::default()).then(|| Box::new(t))
    }
}

/// What the scheduler needs to know about one pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub labels: Labels,
    /// Requests (max of the containers' sum and each init container), for fitting.
    pub requests: Resources,
    /// The same with upstream's non-zero defaults, for scoring.
    pub nonzero: Resources,
    /// The uid of the controlling owner, for spreading.
    pub owner: Option<String>,
    /// Host ports the pod needs: (protocol, port).
    pub host_ports: Vec<(String, i32)>,
    /// Pod affinity and anti-affinity; `None` for the usual pod without any.
    pub affinity: Option<Box<PodAffinityTerms>>,
}

fn qty(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> Option<Quantity> {
    map.and_then(|m| m.get(name))
        .and_then(|q| Quantity::parse(&q.0).ok())
}

fn resources_of(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Resources {
    Resources {
        milli_cpu: qty(map, "cpu").map(|q| q.milli_value() as i64).unwrap_or(0),
        memory: qty(map, "memory").map(|q| q.value() as i64).unwrap_or(0),
        ephemeral_storage: qty(map, "ephemeral-storage")
            .map(|q| q.value() as i64)
            .unwrap_or(0),
    }
}

impl PodInfo {
    pub fn from_pod(p: &Pod) -> PodInfo {
        let namespace = p.metadata.namespace.clone().unwrap_or_default();
        let mut info = PodInfo {
            owner: skiff_client::controller_of(&p.metadata).map(|r| r.uid.clone()),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            affinity: PodAffinityTerms::from_pod(&namespace, p),
            namespace,
            ..Default::default()
        };
        let Some(spec) = &p.spec else { return info };
        let req = |c: &k8s_openapi::api::core::v1::Container| {
            let r = resources_of(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
            let nz = Resources {
                milli_cpu: if r.milli_cpu != 0 {
                    r.milli_cpu
                } else {
                    DEFAULT_MILLI_CPU
                },
                memory: if r.memory != 0 {
                    r.memory
                } else {
                    DEFAULT_MEMORY
                },
                ephemeral_storage: r.ephemeral_storage,
            };
            (r, nz)
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
            info.requests.max(&r);
            info.nonzero.max(&nz);
        }
        if let Some(o) = &spec.overhead {
            let add = resources_of(Some(o));
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
    /// False for a placeholder holding pods bound to a node not (or no longer) seen.
    pub known: bool,
    pub labels: Labels,
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
        self.known = true;
        self.labels = n.metadata.labels.clone().unwrap_or_default();
        let spec = n.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = resources_of(alloc);
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

/// Pods counted by node name.
pub type NodeCounts = HashMap<String, i64>;

/// The rest of the cluster, as InterPodAffinity sees it: the pods bound (or assumed) to nodes,
/// grouped so that replicas are matched once, and namespace labels for namespace selectors.
pub trait Cluster {
    /// Calls `f` once per distinct (namespace, labels) of the pods, with how many such pods
    /// each node has.
    fn each_pod_group(&self, f: &mut dyn FnMut(&str, &Labels, &NodeCounts));
    /// Calls `f` once per distinct set of pod (anti-)affinity terms among the pods, likewise.
    fn each_affinity_group(&self, f: &mut dyn FnMut(&PodAffinityTerms, &NodeCounts));
    /// Calls `f` once per known node.
    fn each_node(&self, f: &mut dyn FnMut(&NodeInfo));
    /// A known node's labels.
    fn node_labels(&self, node: &str) -> Option<&Labels>;
    fn namespace_labels(&self, ns: &str) -> Option<&Labels>;
}

/// Why a node was filtered out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint { key: String, value: String },
    NodeAffinity,
    NodePorts,
    Insufficient(&'static str),
    TooManyPods,
    PodAffinity,
    PodAntiAffinity,
    ExistingPodsAntiAffinity,
    TopologySpread,
    TopologySpreadMissingLabel,
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
            Reason::PodAffinity => "node(s) didn't match pod affinity rules".into(),
            Reason::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Reason::ExistingPodsAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules".into()
            }
            Reason::TopologySpread => "node(s) didn't match pod topology spread constraints".into(),
            Reason::TopologySpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into()
            }
        }
    }

    /// Whether evicting lower-priority pods could help (upstream's Unschedulable status),
    /// rather than UnschedulableAndUnresolvable. Evicting pods cannot create the pod a
    /// required affinity needs, but it can remove the one an anti-affinity avoids; likewise a
    /// skew too large (removing pods from the node's domain lowers it) but not a missing label.
    pub fn preemption_could_help(&self) -> bool {
        matches!(
            self,
            Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::NodePorts
                | Reason::PodAntiAffinity
                | Reason::ExistingPodsAntiAffinity
                | Reason::TopologySpread
        )
    }

    /// Whether a pod placed elsewhere (not only a pod removed) could make the node fit: the
    /// pod a required affinity needs, or one in the least crowded domain, raising the minimum
    /// a spread constraint's skew is measured from.
    pub fn waits_for_pods(&self) -> bool {
        matches!(self, Reason::PodAffinity | Reason::TopologySpread)
    }
}

fn tolerates(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations
        .iter()
        .any(|t| skiff_client::toleration_tolerates_parts(t, key, value, effect))
}

fn tolerates_taint(tolerations: &[Toleration], t: &Taint) -> bool {
    skiff_client::tolerates(tolerations, t)
}

fn term_is_empty(t: &NodeSelectorTerm) -> bool {
    t.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        && t.match_fields.as_ref().is_none_or(|f| f.is_empty())
}

fn term_matches(t: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    // An empty term matches nothing, as upstream.
    if term_is_empty(t) {
        return false;
    }
    t.match_expressions.iter().flatten().all(|r| {
        skiff_client::node_requirement_matches(r, node.labels.get(&r.key).map(String::as_str))
    }) && t.match_fields.iter().flatten().all(|r| {
        // metadata.name is the only field selector upstream supports.
        let have = (r.key == "metadata.name").then_some(node.name.as_str());
        skiff_client::node_requirement_matches(r, have)
    })
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

/// Counts of matching pods by topology key, then topology value.
pub type TopologyCounts = HashMap<String, HashMap<String, i64>>;

fn count_at(m: &TopologyCounts, key: &str, node: &Labels) -> i64 {
    match (m.get(key), node.get(key)) {
        (Some(values), Some(v)) => values.get(v).copied().unwrap_or(0),
        _ => 0,
    }
}

fn bump(m: &mut TopologyCounts, key: &str, node: &Labels, by: i64) {
    let Some(v) = node.get(key) else { return };
    if let Some(c) = m.get_mut(key).and_then(|values| values.get_mut(v)) {
        *c += by;
    } else {
        *m.entry(key.to_string())
            .or_default()
            .entry(v.clone())
            .or_insert(0) += by;
    }
}

/// Adds `by` per pod in `nodes` to the domain of each node, for each topology key.
fn bump_nodes(
    m: &mut TopologyCounts,
    keys: &[&str],
    nodes: &NodeCounts,
    by: i64,
    cluster: &dyn Cluster,
) {
    for (node, n) in nodes {
        if let Some(labels) = cluster.node_labels(node) {
            for key in keys {
                bump(m, key, labels, by * n);
            }
        }
    }
}

/// InterPodAffinity's PreFilter result: which topology domains hold pods that the incoming
/// pod's required terms select, or whose required anti-affinity selects the incoming pod.
#[derive(Debug, Default)]
pub struct InterPodState {
    /// Domains with existing pods whose required anti-affinity terms match the incoming pod.
    existing_anti: TopologyCounts,
    /// Domains with existing pods matching all of the incoming pod's required affinity terms.
    affinity: TopologyCounts,
    /// Domains with existing pods matching one of its required anti-affinity terms.
    anti: TopologyCounts,
    /// Whether the incoming pod matches all of its own required affinity terms.
    matches_itself: bool,
}

impl InterPodState {
    /// Computes the state, or `None` when InterPodAffinity has nothing to check (upstream's
    /// Skip): the pod has no required terms and no existing pod's anti-affinity selects it.
    pub fn new(pod: &PodInfo, cluster: &dyn Cluster) -> Option<InterPodState> {
        let mut s = InterPodState::default();
        cluster.each_affinity_group(&mut |terms, nodes| {
            for t in &terms.required_anti_affinity {
                if t.matches(&pod.namespace, &pod.labels, cluster) {
                    let key = [t.topology_key.as_str()];
                    bump_nodes(&mut s.existing_anti, &key, nodes, 1, cluster);
                }
            }
        });
        let terms = pod.affinity.as_deref();
        let required = terms.map(|t| &t.required_affinity[..]).unwrap_or(&[]);
        let anti = terms.map(|t| &t.required_anti_affinity[..]).unwrap_or(&[]);
        if !required.is_empty() || !anti.is_empty() {
            let required_keys: Vec<&str> =
                required.iter().map(|t| t.topology_key.as_str()).collect();
            cluster.each_pod_group(&mut |ns, labels, nodes| {
                if !required.is_empty() && required.iter().all(|t| t.matches(ns, labels, cluster)) {
                    bump_nodes(&mut s.affinity, &required_keys, nodes, 1, cluster);
                }
                for t in anti {
                    if t.matches(ns, labels, cluster) {
                        let key = [t.topology_key.as_str()];
                        bump_nodes(&mut s.anti, &key, nodes, 1, cluster);
                    }
                }
            });
        }
        if s.existing_anti.is_empty() && required.is_empty() && anti.is_empty() {
            return None;
        }
        s.matches_itself = !required.is_empty()
            && required
                .iter()
                .all(|t| t.matches(&pod.namespace, &pod.labels, cluster));
        Some(s)
    }

    /// InterPodAffinity's Filter for one node.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let terms = pod.affinity.as_deref();
        let required = terms.map(|t| &t.required_affinity[..]).unwrap_or(&[]);
        let mut pods_exist = true;
        for t in required {
            // Every topology key must be a label of the node.
            if !node.labels.contains_key(&t.topology_key) {
                return Err(Reason::PodAffinity);
            }
            if count_at(&self.affinity, &t.topology_key, &node.labels) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself: no pod anywhere matches yet, and
        // the pod matches its own terms, so any node with the topology labels will do.
        let first_of_group = self.affinity.is_empty() && self.matches_itself;
        if !(pods_exist || first_of_group) {
            return Err(Reason::PodAffinity);
        }
        for t in terms.map(|t| &t.required_anti_affinity[..]).unwrap_or(&[]) {
            if count_at(&self.anti, &t.topology_key, &node.labels) > 0 {
                return Err(Reason::PodAntiAffinity);
            }
        }
        for (key, values) in &self.existing_anti {
            if node
                .labels
                .get(key)
                .and_then(|v| values.get(v))
                .is_some_and(|c| *c > 0)
            {
                return Err(Reason::ExistingPodsAntiAffinity);
            }
        }
        Ok(())
    }
}

/// The well-known label whose domains are single nodes; PodTopologySpread's score counts
/// those per node rather than per domain.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

/// One of a pod's `topologySpreadConstraints`, made ready for counting.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    /// 1 unless set: with fewer eligible domains the global minimum is taken as 0.
    pub min_domains: i64,
    /// The label selector, with `matchLabelKeys` added as `key In (the pod's value)`; no
    /// selector matches no pod, as upstream.
    selector: Option<LabelSelector>,
    /// nodeAffinityPolicy Honor (the default): only nodes matching the pod's nodeSelector
    /// and required node affinity are counted.
    honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (Ignore by default): only nodes whose NoSchedule and
    /// NoExecute taints the pod tolerates are counted.
    honor_taints: bool,
}

impl SpreadConstraint {
    fn new(own_labels: &Labels, c: &TopologySpreadConstraint) -> SpreadConstraint {
        let mut selector = c.label_selector.clone();
        if let Some(sel) = selector.as_mut() {
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = own_labels.get(key) {
                    sel.match_expressions.get_or_insert_with(Vec::new).push(
                        LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        },
                    );
                }
            }
        }
        SpreadConstraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            min_domains: c.min_domains.map(i64::from).unwrap_or(1),
            selector,
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether a pod with `labels` is one this constraint counts (namespace aside).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, labels))
    }

    /// Whether the pods on `node` count, by the node inclusion policies.
    fn includes(&self, pod: &Pod, tolerations: &[Toleration], node: &NodeInfo) -> bool {
        (!self.honor_node_affinity || node_affinity_matches(pod, node))
            && (!self.honor_taints
                || node
                    .taints
                    .iter()
                    .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                    .all(|t| tolerates_taint(tolerations, t)))
    }

    /// Pods in `ns` this constraint selects, by node name.
    fn counts_by_node(&self, ns: &str, cluster: &dyn Cluster) -> NodeCounts {
        let mut by_node = NodeCounts::new();
        cluster.each_pod_group(&mut |group_ns, labels, nodes| {
            if group_ns == ns && self.matches(labels) {
                for (node, n) in nodes {
                    *by_node.entry(node.clone()).or_insert(0) += n;
                }
            }
        });
        by_node
    }
}

/// A pod's explicit topology spread constraints: DoNotSchedule ones filter, ScheduleAnyway
/// ones score.
pub fn spread_constraints(
    pod: &Pod,
    own_labels: &Labels,
) -> (Vec<SpreadConstraint>, Vec<SpreadConstraint>) {
    let mut hard = Vec::new();
    let mut soft = Vec::new();
    let all = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or(&[]);
    for c in all {
        let made = SpreadConstraint::new(own_labels, c);
        if c.when_unsatisfiable == "ScheduleAnyway" {
            soft.push(made);
        } else {
            hard.push(made);
        }
    }
    (hard, soft)
}

/// Whether the node has every constraint's topology key.
fn has_topology_keys(node: &NodeInfo, constraints: &[SpreadConstraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.labels.contains_key(&c.topology_key))
}

/// PodTopologySpread's PreFilter result for the DoNotSchedule constraints: per constraint,
/// the matching pods in each domain of the eligible nodes (those with every constraint's key
/// that the node inclusion policies admit), and the global minimum the skew is measured from.
#[derive(Debug)]
pub struct SpreadFilter {
    constraints: Vec<SpreadConstraint>,
    domains: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

impl SpreadFilter {
    pub fn new(
        pod: &Pod,
        info: &PodInfo,
        tolerations: &[Toleration],
        constraints: Vec<SpreadConstraint>,
        cluster: &dyn Cluster,
    ) -> SpreadFilter {
        let per_node: Vec<NodeCounts> = constraints
            .iter()
            .map(|c| c.counts_by_node(&info.namespace, cluster))
            .collect();
        let mut domains = vec![HashMap::<String, i64>::new(); constraints.len()];
        cluster.each_node(&mut |n| {
            if !has_topology_keys(n, &constraints) {
                return;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(pod, tolerations, n) {
                    continue;
                }
                let count = per_node[i].get(&n.name).copied().unwrap_or(0);
                *domains[i]
                    .entry(n.labels[&c.topology_key].clone())
                    .or_insert(0) += count;
            }
        });
        let min = constraints
            .iter()
            .zip(&domains)
            .map(|(c, d)| {
                if (d.len() as i64) < c.min_domains {
                    0
                } else {
                    d.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
        SpreadFilter {
            constraints,
            domains,
            min,
        }
    }

    /// PodTopologySpread's Filter for one node: for each constraint, the pods in the node's
    /// domain, plus the pod itself if it matches, may exceed the global minimum by at most
    /// maxSkew.
    pub fn filter(&self, info: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else {
                return Err(Reason::TopologySpreadMissingLabel);
            };
            let count = self.domains[i].get(value).copied().unwrap_or(0);
            let skew = count + i64::from(c.matches(&info.labels)) - self.min[i];
            if skew > c.max_skew {
                return Err(Reason::TopologySpread);
            }
        }
        Ok(())
    }
}

/// PodTopologySpread's score for the ScheduleAnyway constraints: per constraint, the matching
/// pods in the node's domain (on the node itself for hostname) weighted by the log of the
/// number of domains among the feasible nodes, plus maxSkew - 1; then reversed and scaled so
/// the emptiest node scores 100. Feasible nodes missing a topology key score 0. Without
/// ScheduleAnyway constraints every node scores 0 (upstream skips the plugin).
pub fn topology_spread_scores(
    pod: &Pod,
    info: &PodInfo,
    tolerations: &[Toleration],
    soft: &[SpreadConstraint],
    nodes: &[&NodeInfo],
    cluster: &dyn Cluster,
) -> Vec<i64> {
    if soft.is_empty() {
        return vec![0; nodes.len()];
    }
    let ignored: Vec<bool> = nodes.iter().map(|n| !has_topology_keys(n, soft)).collect();
    let considered = ignored.iter().filter(|i| !**i).count();
    // The domains of the feasible nodes, to count pods in (hostname is counted per node).
    let mut domains = vec![HashMap::<String, i64>::new(); soft.len()];
    for (n, _) in nodes.iter().zip(&ignored).filter(|(_, i)| !**i) {
        for (i, c) in soft.iter().enumerate() {
            if c.topology_key != LABEL_HOSTNAME {
                domains[i].insert(n.labels[&c.topology_key].clone(), 0);
            }
        }
    }
    let weights: Vec<f64> = soft
        .iter()
        .zip(&domains)
        .map(|(c, d)| {
            let size = if c.topology_key == LABEL_HOSTNAME {
                considered
            } else {
                d.len()
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    let per_node: Vec<NodeCounts> = soft
        .iter()
        .map(|c| c.counts_by_node(&info.namespace, cluster))
        .collect();
    cluster.each_node(&mut |n| {
        if !has_topology_keys(n, soft) {
            return;
        }
        for (i, c) in soft.iter().enumerate() {
            if c.topology_key == LABEL_HOSTNAME || !c.includes(pod, tolerations, n) {
                continue;
            }
            if let Some(count) = domains[i].get_mut(&n.labels[&c.topology_key]) {
                *count += per_node[i].get(&n.name).copied().unwrap_or(0);
            }
        }
    });
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            let mut score = 0.0;
            for (i, c) in soft.iter().enumerate() {
                let Some(value) = n.labels.get(&c.topology_key) else {
                    continue;
                };
                let count = if c.topology_key == LABEL_HOSTNAME {
                    per_node[i].get(&n.name).copied().unwrap_or(0)
                } else {
                    domains[i].get(value).copied().unwrap_or(0)
                };
                score += count as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();
    let counted = || {
        raw.iter()
            .zip(&ignored)
            .filter(|(_, i)| !**i)
            .map(|(s, _)| *s)
    };
    let max = counted().max().unwrap_or(0);
    let min = counted().min().unwrap_or(0);
    raw.iter()
        .zip(&ignored)
        .map(|(s, ignored)| {
            if *ignored {
                0
            } else if max == 0 {
                MAX_SCORE
            } else {
                MAX_SCORE * (max + min - s) / max
            }
        })
        .collect()
}

/// One scheduling attempt of one pod: what it asks for, read once, and InterPodAffinity's
/// precomputed state.
pub struct Cycle<'a> {
    pub pod: &'a Pod,
    pub info: &'a PodInfo,
    tolerations: &'a [Toleration],
    inter_pod: Option<InterPodState>,
    /// PodTopologySpread's DoNotSchedule constraints, when the pod has any.
    spread: Option<SpreadFilter>,
    /// Its ScheduleAnyway constraints when the pod has explicit constraints; `None` for the
    /// default spreading of a controller's pods over nodes.
    soft_spread: Option<Vec<SpreadConstraint>>,
}

impl<'a> Cycle<'a> {
    pub fn new(pod: &'a Pod, info: &'a PodInfo, cluster: &dyn Cluster) -> Cycle<'a> {
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[]);
        let explicit = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let (hard, soft) = spread_constraints(pod, &info.labels);
        Cycle {
            pod,
            info,
            tolerations,
            inter_pod: InterPodState::new(info, cluster),
            spread: (!hard.is_empty())
                .then(|| SpreadFilter::new(pod, info, tolerations, hard, cluster)),
            soft_spread: explicit.then_some(soft),
        }
    }

    /// Runs the filters in upstream's order; the first failing plugin's reasons are returned.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let (pod, info) = (self.pod, self.info);
        // NodeUnschedulable
        if node.unschedulable
            && !tolerates(
                self.tolerations,
                "node.kubernetes.io/unschedulable",
                "",
                "NoSchedule",
            )
        {
            return Err(vec![Reason::Unschedulable]);
        }
        // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
        if let Some(t) = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .find(|t| !tolerates_taint(self.tolerations, t))
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
        let (req, free) = (&info.requests, |used: i64, cap: i64| cap - used);
        if req.milli_cpu > 0
            && req.milli_cpu > free(node.requested.milli_cpu, node.allocatable.milli_cpu)
        {
            reasons.push(Reason::Insufficient("cpu"));
        }
        if req.memory > 0 && req.memory > free(node.requested.memory, node.allocatable.memory) {
            reasons.push(Reason::Insufficient("memory"));
        }
        if req.ephemeral_storage > 0
            && req.ephemeral_storage
                > free(
                    node.requested.ephemeral_storage,
                    node.allocatable.ephemeral_storage,
                )
        {
            reasons.push(Reason::Insufficient("ephemeral-storage"));
        }
        if !reasons.is_empty() {
            return Err(reasons);
        }
        // PodTopologySpread
        if let Some(s) = &self.spread {
            s.filter(info, node).map_err(|r| vec![r])?;
        }
        // InterPodAffinity
        if let Some(s) = &self.inter_pod {
            s.filter(info, node).map_err(|r| vec![r])?;
        }
        Ok(())
    }

    /// Total scores of feasible nodes: each default score plugin's 0..100, times upstream's
    /// default weight.
    pub fn score(&self, nodes: &[&NodeInfo], cluster: &dyn Cluster) -> Vec<i64> {
        let mut total: Vec<i64> = nodes
            .iter()
            .map(|n| least_allocated(self.info, n) + balanced_allocation(self.info, n))
            .collect();
        let mut add = |weight: i64, scores: Vec<i64>| {
            for (t, s) in total.iter_mut().zip(scores) {
                *t += weight * s;
            }
        };
        add(
            WEIGHT_TAINT_TOLERATION,
            taint_toleration_scores(self.tolerations, nodes),
        );
        add(WEIGHT_NODE_AFFINITY, node_affinity_scores(self.pod, nodes));
        let spread = match &self.soft_spread {
            Some(soft) => {
                topology_spread_scores(self.pod, self.info, self.tolerations, soft, nodes, cluster)
            }
            None => spread_scores(self.info, nodes),
        };
        add(WEIGHT_POD_TOPOLOGY_SPREAD, spread);
        add(
            WEIGHT_INTER_POD_AFFINITY,
            inter_pod_affinity_scores(self.info, nodes, cluster),
        );
        total
    }
}

/// Upstream's maximum node score.
pub const MAX_SCORE: i64 = 100;

/// Upstream's default score plugin weights (NodeResourcesFit and BalancedAllocation are 1).
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_POD_TOPOLOGY_SPREAD: i64 = 2;
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;

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

/// Upstream's DefaultNormalizeScore: scales raw scores so the highest is 100 (reversed: the
/// lowest is 100; all 100 when every raw score is 0).
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        if max == 0 {
            *s = if reverse { MAX_SCORE } else { *s };
            continue;
        }
        *s = MAX_SCORE * *s / max;
        if reverse {
            *s = MAX_SCORE - *s;
        }
    }
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

/// TaintToleration's score: the fewer PreferNoSchedule taints the pod does not tolerate, the
/// higher. Only tolerations with no effect or PreferNoSchedule count, as upstream.
pub fn taint_toleration_scores(tolerations: &[Toleration], nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|t| {
                    !tolerations.iter().any(|tol| {
                        tol.effect
                            .as_deref()
                            .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                            && tolerates_taint(std::slice::from_ref(tol), t)
                    })
                })
                .count() as i64
        })
        .collect();
    normalize(&mut scores, true);
    scores
}

/// NodeAffinity's score: the sum of the weights of the preferred terms a node matches,
/// normalised so the best node scores 100.
pub fn node_affinity_scores(pod: &Pod, nodes: &[&NodeInfo]) -> Vec<i64> {
    let preferred: &[PreferredSchedulingTerm] = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[]);
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|t| t.weight != 0 && term_matches(&t.preference, n))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .collect();
    normalize(&mut scores, false);
    scores
}

/// Upstream's HardPodAffinityWeight: how much an existing pod's required affinity to the
/// incoming pod counts as a preference for its domain.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// InterPodAffinity's score: per topology domain, the weights of the incoming pod's preferred
/// terms that existing pods there match (anti-affinity negative), plus existing pods' terms
/// that match the incoming pod; then scaled so the lowest node is 0 and the highest 100.
pub fn inter_pod_affinity_scores(
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    cluster: &dyn Cluster,
) -> Vec<i64> {
    let mut topology = TopologyCounts::new();
    // The incoming pod's preferences, over every pod.
    let own = pod.affinity.as_deref();
    if let Some(t) =
        own.filter(|t| !t.preferred_affinity.is_empty() || !t.preferred_anti_affinity.is_empty())
    {
        let weighted = t
            .preferred_affinity
            .iter()
            .map(|(w, term)| (*w, term))
            .chain(
                t.preferred_anti_affinity
                    .iter()
                    .map(|(w, term)| (-*w, term)),
            );
        let weighted: Vec<(i64, &AffinityTerm)> = weighted.collect();
        cluster.each_pod_group(&mut |ns, labels, pods| {
            for (w, term) in &weighted {
                if term.matches(ns, labels, cluster) {
                    let key = [term.topology_key.as_str()];
                    bump_nodes(&mut topology, &key, pods, *w, cluster);
                }
            }
        });
    }
    // Existing pods' terms that select the incoming pod.
    cluster.each_affinity_group(&mut |t, pods| {
        let theirs = t
            .required_affinity
            .iter()
            .map(|term| (HARD_POD_AFFINITY_WEIGHT, term))
            .chain(t.preferred_affinity.iter().map(|(w, term)| (*w, term)))
            .chain(
                t.preferred_anti_affinity
                    .iter()
                    .map(|(w, term)| (-*w, term)),
            );
        for (w, term) in theirs {
            if term.matches(&pod.namespace, &pod.labels, cluster) {
                let key = [term.topology_key.as_str()];
                bump_nodes(&mut topology, &key, pods, w, cluster);
            }
        }
    });
    if topology.is_empty() {
        return vec![0; nodes.len()];
    }
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            topology
                .iter()
                .filter_map(|(key, values)| n.labels.get(key).and_then(|v| values.get(v)))
                .sum()
        })
        .collect();
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|s| {
            if max > min {
                (MAX_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

/// Upstream's percentageOfNodesToScore, adaptive: how many feasible nodes to find before
/// scoring. All nodes below 100; otherwise 50% less 1% per 125 nodes, at least 5%, and never
/// fewer than 100 nodes.
pub fn num_feasible_nodes_to_find(num_nodes: usize) -> usize {
    const MIN_FEASIBLE_NODES: usize = 100;
    const MIN_PERCENTAGE: usize = 5;
    if num_nodes < MIN_FEASIBLE_NODES {
        return num_nodes;
    }
    let percentage = 50usize.saturating_sub(num_nodes / 125).max(MIN_PERCENTAGE);
    (num_nodes * percentage / 100).max(MIN_FEASIBLE_NODES)
}

/// Why a pod fits nowhere: reasons counted over the nodes checked.
#[derive(Debug, Default)]
pub struct Diagnosis {
    reasons: HashMap<Reason, usize>,
    /// Nodes where evicting pods could help, and where it could not.
    preemption_could_help: usize,
    preemption_not_helpful: usize,
    /// Whether some node failed for a reason a newly placed pod could remove.
    pub waits_for_pods: bool,
}

impl Diagnosis {
    pub fn add(&mut self, reasons: &[Reason]) {
        for r in reasons {
            *self.reasons.entry(r.clone()).or_insert(0) += 1;
            self.waits_for_pods |= r.waits_for_pods();
        }
        if reasons.iter().all(Reason::preemption_could_help) {
            self.preemption_could_help += 1;
        } else {
            self.preemption_not_helpful += 1;
        }
    }

    /// Upstream's FitError text, including what its default preemption adds.
    pub fn message(&self, num_nodes: usize) -> String {
        if num_nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let join = |counts: BTreeMap<String, usize>| {
            let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            parts.sort();
            parts.join(", ")
        };
        let mut filter = BTreeMap::new();
        for (r, n) in &self.reasons {
            *filter.entry(r.message()).or_insert(0) += n;
        }
        let mut preemption = BTreeMap::new();
        for (what, n) in [
            (
                "No preemption victims found for incoming pod",
                self.preemption_could_help,
            ),
            (
                "Preemption is not helpful for scheduling",
                self.preemption_not_helpful,
            ),
        ] {
            if n > 0 {
                preemption.insert(what.to_string(), n);
            }
        }
        format!(
            "0/{num_nodes} nodes are available: {}. preemption: 0/{num_nodes} nodes are available: {}.",
            join(filter),
            join(preemption)
        )
    }
}

/// The FitError text for the given reasons, one entry per node.
pub fn fit_error_message(num_nodes: usize, reasons: &[Vec<Reason>]) -> String {
    let mut d = Diagnosis::default();
    for r in reasons {
        d.add(r);
    }
    d.message(num_nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_with(name: &str, cpu: &str, mem: &str, labels: serde_json::Value) -> NodeInfo {
        let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110",
                                       "ephemeral-storage": "10Gi"}}
        }))
        .unwrap();
        let mut ni = NodeInfo::default();
        ni.set_node(&n);
        ni
    }

    fn node(name: &str, cpu: &str, mem: &str) -> NodeInfo {
        node_with(name, cpu, mem, json!({"disk": "ssd", "zone": "a"}))
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
                                      "spec": spec}))
        .unwrap()
    }

    fn labelled(ns: &str, labels: serde_json::Value, spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": ns, "labels": labels}, "spec": spec}))
        .unwrap()
    }

    fn cpu_pod(cpu: &str) -> Pod {
        pod(json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}))
    }

    /// Pods on nodes, and namespace labels, for InterPodAffinity.
    #[derive(Default)]
    struct TestCluster {
        pods: Vec<(PodInfo, String)>,
        nodes: HashMap<String, Labels>,
        node_infos: Vec<NodeInfo>,
        namespaces: HashMap<String, Labels>,
    }

    impl TestCluster {
        fn with_nodes(nodes: &[&NodeInfo]) -> TestCluster {
            TestCluster {
                nodes: nodes
                    .iter()
                    .map(|n| (n.name.clone(), n.labels.clone()))
                    .collect(),
                node_infos: nodes.iter().map(|n| (*n).clone()).collect(),
                ..Default::default()
            }
        }
        fn place(&mut self, p: &Pod, node: &str) {
            self.pods.push((PodInfo::from_pod(p), node.to_string()));
        }
    }

    impl Cluster for TestCluster {
        // One group per pod: the grouping is the cache's business.
        fn each_pod_group(&self, f: &mut dyn FnMut(&str, &Labels, &NodeCounts)) {
            for (p, n) in &self.pods {
                f(&p.namespace, &p.labels, &[(n.clone(), 1)].into())
            }
        }
        fn each_affinity_group(&self, f: &mut dyn FnMut(&PodAffinityTerms, &NodeCounts)) {
            for (p, n) in &self.pods {
                if let Some(t) = &p.affinity {
                    f(t, &[(n.clone(), 1)].into())
                }
            }
        }
        fn each_node(&self, f: &mut dyn FnMut(&NodeInfo)) {
            for n in &self.node_infos {
                f(n)
            }
        }
        fn node_labels(&self, node: &str) -> Option<&Labels> {
            self.nodes.get(node)
        }
        fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
            self.namespaces.get(ns)
        }
    }

    /// Filters `p` on `n` in a cluster without other pods.
    fn fit(p: &Pod, n: &NodeInfo) -> Result<(), Vec<Reason>> {
        let info = PodInfo::from_pod(p);
        Cycle::new(p, &info, &TestCluster::default()).filter(n)
    }

    /// Which of `nodes` pass the filters for `p` in `cluster` (by name, else the reason).
    fn results(p: &Pod, nodes: &[&NodeInfo], cluster: &TestCluster) -> Vec<Result<(), Reason>> {
        let info = PodInfo::from_pod(p);
        let c = Cycle::new(p, &info, cluster);
        nodes
            .iter()
            .map(|n| c.filter(n).map_err(|r| r[0].clone()))
            .collect()
    }

    #[test]
    fn resources_fit_counts_bound_pods() {
        let mut n = node("a", "4", "16Gi");
        let p = cpu_pod("3");
        let info = PodInfo::from_pod(&p);
        assert_eq!(info.requests.milli_cpu, 3000);
        assert_eq!(info.requests.memory, 1 << 30);
        assert!(fit(&p, &n).is_ok());
        n.add_pod(&info);
        assert_eq!(fit(&p, &n), Err(vec![Reason::Insufficient("cpu")]));
        n.remove_pod(&info);
        assert!(fit(&p, &n).is_ok());
        n.allowed_pods = 0;
        assert_eq!(fit(&p, &n), Err(vec![Reason::TooManyPods]));
    }

    #[test]
    fn ephemeral_storage_requests_must_fit() {
        let mut n = node("a", "4", "16Gi");
        assert_eq!(n.allocatable.ephemeral_storage, 10 << 30);
        let p = pod(json!({"containers": [{"name": "c",
            "resources": {"requests": {"ephemeral-storage": "6Gi"}}}]}));
        let info = PodInfo::from_pod(&p);
        assert_eq!(info.requests.ephemeral_storage, 6 << 30);
        assert!(fit(&p, &n).is_ok());
        n.add_pod(&info);
        let err = fit(&p, &n).unwrap_err();
        assert_eq!(err, vec![Reason::Insufficient("ephemeral-storage")]);
        assert_eq!(
            fit_error_message(1, &[err]),
            "0/1 nodes are available: 1 Insufficient ephemeral-storage. preemption: 0/1 nodes \
             are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn init_containers_take_the_max() {
        let p = pod(json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]}));
        assert_eq!(PodInfo::from_pod(&p).requests.milli_cpu, 2000);
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node("a", "4", "16Gi");
        let sel = pod(json!({"nodeSelector": {"disk": "hdd"}, "containers": []}));
        assert_eq!(fit(&sel, &n), Err(vec![Reason::NodeAffinity]));
        let aff = |op: &str, vals: serde_json::Value| {
            pod(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": op, "values": vals}]}]}}}}))
        };
        for (op, vals, ok) in [
            ("In", json!(["a", "b"]), true),
            ("In", json!(["b"]), false),
            ("NotIn", json!(["a"]), false),
            ("NotIn", json!(["b"]), true),
            ("Exists", json!(null), true),
            ("DoesNotExist", json!(null), false),
        ] {
            let p = aff(op, vals);
            assert_eq!(node_affinity_matches(&p, &n), ok, "{op}");
        }
        let by_name = |name: &str| {
            pod(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In",
                                      "values": [name]}]}]}}}}))
        };
        assert!(node_affinity_matches(&by_name("a"), &n));
        assert!(!node_affinity_matches(&by_name("b"), &n));
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
        let plain = pod(json!({"containers": []}));
        let err = fit(&plain, &n).unwrap_err();
        assert_eq!(
            err[0].message(),
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        let tol = pod(json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}));
        assert!(fit(&tol, &n).is_ok());
        let exists = pod(json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        assert!(fit(&exists, &n).is_ok());
        // Taints come before node affinity, as upstream's plugin order.
        let both = pod(json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(fit(&both, &n).unwrap_err()[0].message(), err[0].message());
        // PreferNoSchedule does not filter.
        n.taints[0].effect = "PreferNoSchedule".into();
        assert!(fit(&plain, &n).is_ok());
        n.taints.clear();
        n.unschedulable = true;
        assert_eq!(fit(&plain, &n), Err(vec![Reason::Unschedulable]));
    }

    #[test]
    fn host_ports_conflict() {
        let mut n = node("a", "4", "16Gi");
        let p = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let info = PodInfo::from_pod(&p);
        assert!(fit(&p, &n).is_ok());
        n.add_pod(&info);
        assert_eq!(fit(&p, &n), Err(vec![Reason::NodePorts]));
    }

    /// Three nodes: a and b in zone z1, c in zone z2.
    fn zoned() -> (NodeInfo, NodeInfo, NodeInfo) {
        let n = |name: &str, zone: &str| {
            node_with(
                name,
                "4",
                "16Gi",
                json!({"kubernetes.io/hostname": name, "zone": zone}),
            )
        };
        (n("a", "z1"), n("b", "z1"), n("c", "z2"))
    }

    fn required(kind: &str, labels: serde_json::Value, key: &str) -> serde_json::Value {
        json!({"containers": [], "affinity": {kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": labels}, "topologyKey": key}]}}})
    }

    #[test]
    fn required_pod_affinity_needs_a_matching_pod_in_the_domain() {
        let (a, b, c) = zoned();
        let nodes = [&a, &b, &c];
        let mut cluster = TestCluster::with_nodes(&nodes);
        let db = labelled("default", json!({"app": "db"}), json!({"containers": []}));
        cluster.place(&db, "a");
        let host = pod(required(
            "podAffinity",
            json!({"app": "db"}),
            "kubernetes.io/hostname",
        ));
        assert_eq!(
            results(&host, &nodes, &cluster),
            vec![Ok(()), Err(Reason::PodAffinity), Err(Reason::PodAffinity)]
        );
        let zone = pod(required("podAffinity", json!({"app": "db"}), "zone"));
        assert_eq!(
            results(&zone, &nodes, &cluster),
            vec![Ok(()), Ok(()), Err(Reason::PodAffinity)]
        );
        // A db pod in another namespace does not count, unless the term names it.
        let mut other = TestCluster::with_nodes(&nodes);
        let db_elsewhere = labelled("team", json!({"app": "db"}), json!({"containers": []}));
        other.place(&db_elsewhere, "b");
        assert!(results(&host, &nodes, &other).iter().all(|r| r.is_err()));
        let mut spec = required(
            "podAffinity",
            json!({"app": "db"}),
            "kubernetes.io/hostname",
        );
        spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
            ["namespaces"] = json!(["team"]);
        assert_eq!(
            results(&pod(spec.clone()), &nodes, &other),
            vec![Err(Reason::PodAffinity), Ok(()), Err(Reason::PodAffinity)]
        );
        // A namespace selector matches by the namespace's labels; `{}` matches every one.
        let term = &mut spec["affinity"]["podAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"][0];
        term["namespaces"] = json!(null);
        term["namespaceSelector"] = json!({"matchLabels": {"tier": "data"}});
        assert!(results(&pod(spec.clone()), &nodes, &other)
            .iter()
            .all(|r| r.is_err()));
        other
            .namespaces
            .insert("team".into(), [("tier".into(), "data".into())].into());
        assert_eq!(results(&pod(spec.clone()), &nodes, &other)[1], Ok(()));
        other.namespaces.clear();
        spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
            ["namespaceSelector"] = json!({});
        assert_eq!(results(&pod(spec), &nodes, &other)[1], Ok(()));
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere() {
        let (a, b, c) = zoned();
        let bare = node_with("bare", "4", "16Gi", json!({}));
        let nodes = [&a, &b, &c, &bare];
        let mut cluster = TestCluster::with_nodes(&nodes);
        let spec = required(
            "podAffinity",
            json!({"app": "cache"}),
            "kubernetes.io/hostname",
        );
        let first = labelled("default", json!({"app": "cache"}), spec.clone());
        // Nodes without the topology label never qualify.
        assert_eq!(
            results(&first, &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(()), Err(Reason::PodAffinity)]
        );
        // A pod that does not match its own terms gets no such pass.
        let stranger = labelled("default", json!({"app": "web"}), spec.clone());
        assert!(results(&stranger, &nodes, &cluster)
            .iter()
            .all(|r| *r == Err(Reason::PodAffinity)));
        // Once one exists, the rest follow it.
        cluster.place(&first, "b");
        assert_eq!(
            results(&first, &nodes, &cluster),
            vec![
                Err(Reason::PodAffinity),
                Ok(()),
                Err(Reason::PodAffinity),
                Err(Reason::PodAffinity)
            ]
        );
    }

    #[test]
    fn required_anti_affinity_avoids_domains_with_matching_pods() {
        let (a, b, c) = zoned();
        let nodes = [&a, &b, &c];
        let mut cluster = TestCluster::with_nodes(&nodes);
        let web = labelled("default", json!({"app": "web"}), json!({"containers": []}));
        cluster.place(&web, "a");
        let host = pod(required(
            "podAntiAffinity",
            json!({"app": "web"}),
            "kubernetes.io/hostname",
        ));
        assert_eq!(
            results(&host, &nodes, &cluster),
            vec![Err(Reason::PodAntiAffinity), Ok(()), Ok(())]
        );
        let zone = pod(required("podAntiAffinity", json!({"app": "web"}), "zone"));
        assert_eq!(
            results(&zone, &nodes, &cluster),
            vec![
                Err(Reason::PodAntiAffinity),
                Err(Reason::PodAntiAffinity),
                Ok(())
            ]
        );
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let (a, b, c) = zoned();
        let nodes = [&a, &b, &c];
        let mut cluster = TestCluster::with_nodes(&nodes);
        // A pod on a that wants no app=web pod in its zone.
        let loner = labelled(
            "default",
            json!({"app": "loner"}),
            required("podAntiAffinity", json!({"app": "web"}), "zone"),
        );
        cluster.place(&loner, "a");
        let web = labelled("default", json!({"app": "web"}), json!({"containers": []}));
        assert_eq!(
            results(&web, &nodes, &cluster),
            vec![
                Err(Reason::ExistingPodsAntiAffinity),
                Err(Reason::ExistingPodsAntiAffinity),
                Ok(())
            ]
        );
        // Pods it does not select, or in other namespaces, are not affected.
        let other = labelled("default", json!({"app": "db"}), json!({"containers": []}));
        assert!(results(&other, &nodes, &cluster).iter().all(|r| r.is_ok()));
        let web_elsewhere = labelled("team", json!({"app": "web"}), json!({"containers": []}));
        assert!(results(&web_elsewhere, &nodes, &cluster)
            .iter()
            .all(|r| r.is_ok()));
        // Without pods with affinity and without terms of its own, the plugin is skipped.
        let info = PodInfo::from_pod(&web);
        assert!(InterPodState::new(&info, &TestCluster::with_nodes(&nodes)).is_none());
    }

    #[test]
    fn replicas_with_anti_affinity_to_each_other_take_one_node_each() {
        let (a, b, c) = zoned();
        let nodes = [&a, &b, &c];
        let mut cluster = TestCluster::with_nodes(&nodes);
        let replica = labelled(
            "default",
            json!({"app": "web"}),
            required(
                "podAntiAffinity",
                json!({"app": "web"}),
                "kubernetes.io/hostname",
            ),
        );
        for n in ["a", "b", "c"] {
            cluster.place(&replica, n);
        }
        let r = results(&replica, &nodes, &cluster);
        assert!(
            r.iter().all(|r| *r == Err(Reason::PodAntiAffinity)),
            "{r:?}"
        );
        let reasons: Vec<Vec<Reason>> = r.into_iter().map(|r| vec![r.unwrap_err()]).collect();
        assert_eq!(
            fit_error_message(3, &reasons),
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
        assert_eq!(
            fit_error_message(3, &vec![vec![Reason::PodAffinity]; 3]),
            "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_error_message(1, &[vec![Reason::ExistingPodsAntiAffinity]]),
            "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity \
             rules. preemption: 0/1 nodes are available: 1 No preemption victims found for \
             incoming pod."
        );
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
        let p = cpu_pod("100m");
        let info = PodInfo {
            owner: Some("rs-uid".into()),
            ..PodInfo::from_pod(&p)
        };
        a.add_pod(&info);
        assert_eq!(spread_scores(&info, &[&a, &b]), vec![0, 100]);
        let s = Cycle::new(&p, &info, &TestCluster::default())
            .score(&[&a, &b], &TestCluster::default());
        assert!(s[1] > s[0]);
    }

    #[test]
    fn preferred_node_affinity_sums_weights_normalised() {
        let (a, b, c) = zoned();
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["z1"]}]}},
                {"weight": 0, "preference": {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["z2"]}]}}]}}}));
        assert_eq!(node_affinity_scores(&p, &[&a, &b, &c]), vec![100, 20, 0]);
        // Only the feasible nodes count.
        assert_eq!(node_affinity_scores(&p, &[&b, &c]), vec![100, 0]);
        let none = pod(json!({"containers": []}));
        assert_eq!(node_affinity_scores(&none, &[&a, &b]), vec![0, 0]);
        // Weighted 2 in the total, it outweighs resource scores.
        let info = PodInfo::from_pod(&p);
        let empty = TestCluster::default();
        let total = Cycle::new(&p, &info, &empty).score(&[&a, &b, &c], &empty);
        assert!(total[0] > total[1] && total[1] > total[2], "{total:?}");
    }

    #[test]
    fn prefer_no_schedule_taints_score_lower() {
        let taint = |key: &str, effect: &str| Taint {
            key: key.into(),
            value: None,
            effect: effect.into(),
            time_added: None,
        };
        let (mut a, mut b, c) = zoned();
        a.taints = vec![
            taint("x", "PreferNoSchedule"),
            taint("y", "PreferNoSchedule"),
        ];
        b.taints = vec![taint("x", "PreferNoSchedule"), taint("z", "NoExecute")];
        assert_eq!(
            taint_toleration_scores(&[], &[&a, &b, &c]),
            vec![0, 50, 100]
        );
        let tol = |key: &str, effect: Option<&str>| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: effect.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            taint_toleration_scores(&[tol("x", None)], &[&a, &b, &c]),
            vec![0, 100, 100]
        );
        // A toleration for another effect does not count.
        assert_eq!(
            taint_toleration_scores(&[tol("x", Some("NoSchedule"))], &[&a, &b, &c]),
            vec![0, 50, 100]
        );
        assert_eq!(
            taint_toleration_scores(&[tol("x", None), tol("y", None)], &[&a, &b, &c]),
            vec![100, 100, 100]
        );
    }

    fn preferred(
        kind: &str,
        weight: i32,
        labels: serde_json::Value,
        key: &str,
    ) -> serde_json::Value {
        json!({"containers": [], "affinity": {kind: {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": weight,
                "podAffinityTerm": {"labelSelector": {"matchLabels": labels},
                                    "topologyKey": key}}]}}})
    }

    #[test]
    fn preferred_pod_affinity_scores() {
        let (a, b, c) = zoned();
        let nodes = [&a, &b, &c];
        let mut cluster = TestCluster::with_nodes(&nodes);
        let db = labelled("default", json!({"app": "db"}), json!({"containers": []}));
        cluster.place(&db, "a");
        let score = |p: &Pod, cluster: &TestCluster| {
            inter_pod_affinity_scores(&PodInfo::from_pod(p), &nodes, cluster)
        };
        let near = pod(preferred("podAffinity", 10, json!({"app": "db"}), "zone"));
        assert_eq!(score(&near, &cluster), vec![100, 100, 0]);
        let away = pod(preferred(
            "podAntiAffinity",
            10,
            json!({"app": "db"}),
            "kubernetes.io/hostname",
        ));
        assert_eq!(score(&away, &cluster), vec![0, 100, 100]);
        // Nothing matches: every node scores 0.
        let none = pod(preferred("podAffinity", 10, json!({"app": "x"}), "zone"));
        assert_eq!(score(&none, &cluster), vec![0, 0, 0]);

        // Existing pods' terms count for the incoming pod: preferred anti-affinity against
        // it, and required affinity to it (weight 1).
        let mut cluster = TestCluster::with_nodes(&nodes);
        let shy = labelled(
            "default",
            json!({"app": "shy"}),
            preferred(
                "podAntiAffinity",
                50,
                json!({"app": "web"}),
                "kubernetes.io/hostname",
            ),
        );
        cluster.place(&shy, "a");
        let web = labelled("default", json!({"app": "web"}), json!({"containers": []}));
        assert_eq!(score(&web, &cluster), vec![0, 100, 100]);
        let fan = labelled(
            "default",
            json!({"app": "fan"}),
            required("podAffinity", json!({"app": "web"}), "zone"),
        );
        cluster.place(&fan, "c");
        assert_eq!(score(&web, &cluster), vec![0, 98, 100]);
        cluster.pods.remove(0);
        assert_eq!(score(&web, &cluster), vec![0, 0, 100]);
    }

    #[test]
    fn nodes_to_find_follows_percentage_of_nodes_to_score() {
        for (nodes, want) in [
            (0, 0),
            (3, 3),
            (99, 99),
            (100, 100),
            (200, 100),
            (1000, 420),
            (5000, 500),
            (6000, 300),
            (10_000, 500),
            (100_000, 5000),
        ] {
            assert_eq!(num_feasible_nodes_to_find(nodes), want, "{nodes} nodes");
        }
    }

    #[test]
    fn fit_error_message_matches_upstream() {
        let r = vec![vec![Reason::Insufficient("cpu")]; 3];
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
            vec![Reason::Insufficient("cpu"), Reason::Insufficient("memory")],
            vec![Reason::Insufficient("cpu")],
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

    fn spread(constraints: serde_json::Value) -> serde_json::Value {
        json!({"containers": [], "topologySpreadConstraints": constraints})
    }

    fn constraint(
        key: &str,
        skew: i32,
        when: &str,
        selector: serde_json::Value,
    ) -> serde_json::Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
               "labelSelector": {"matchLabels": selector}})
    }

    /// Zoned nodes a, b (z1) and c (z2) with `web` pods placed on the named nodes.
    fn web_cluster(on: &[&str]) -> (NodeInfo, NodeInfo, NodeInfo, TestCluster) {
        let (a, b, c) = zoned();
        let mut cluster = TestCluster::with_nodes(&[&a, &b, &c]);
        for n in on {
            cluster.place(&labelled("default", json!({"app": "web"}), json!({})), n);
        }
        (a, b, c, cluster)
    }

    #[test]
    fn spread_filter_by_zone_and_by_hostname() {
        let (a, b, c, mut cluster) = web_cluster(&["a", "a"]);
        // Pods elsewhere or in another namespace do not count.
        cluster.place(&labelled("other", json!({"app": "web"}), json!({})), "c");
        cluster.place(&labelled("default", json!({"app": "db"}), json!({})), "c");
        let nodes = [&a, &b, &c];
        let skew = Err(Reason::TopologySpread);
        let zone = labelled(
            "default",
            json!({"app": "web"}),
            spread(json!([constraint(
                "zone",
                1,
                "DoNotSchedule",
                json!({"app": "web"})
            )])),
        );
        // z1 has 2, z2 0: only z2 keeps the skew at 1.
        assert_eq!(
            results(&zone, &nodes, &cluster),
            vec![skew.clone(), skew.clone(), Ok(())]
        );
        let host = labelled(
            "default",
            json!({"app": "web"}),
            spread(json!([constraint(
                "kubernetes.io/hostname",
                1,
                "DoNotSchedule",
                json!({"app": "web"})
            )])),
        );
        assert_eq!(
            results(&host, &nodes, &cluster),
            vec![skew.clone(), Ok(()), Ok(())]
        );
        // maxSkew 2 lets a take a third only with the zone spread, 2 + 1 - 0 > 2.
        let loose = labelled(
            "default",
            json!({"app": "web"}),
            spread(json!([constraint(
                "zone",
                3,
                "DoNotSchedule",
                json!({"app": "web"})
            )])),
        );
        assert_eq!(
            results(&loose, &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(())]
        );
        // ScheduleAnyway constraints do not filter.
        let soft = labelled(
            "default",
            json!({"app": "web"}),
            spread(json!([constraint(
                "zone",
                1,
                "ScheduleAnyway",
                json!({"app": "web"})
            )])),
        );
        assert_eq!(
            results(&soft, &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(())]
        );
    }

    #[test]
    fn a_pod_not_matching_its_own_selector_does_not_count_itself() {
        let (a, b, c, cluster) = web_cluster(&["a"]);
        let host = |labels| {
            labelled(
                "default",
                labels,
                spread(json!([constraint(
                    "kubernetes.io/hostname",
                    1,
                    "DoNotSchedule",
                    json!({"app": "web"})
                )])),
            )
        };
        let nodes = [&a, &b, &c];
        assert_eq!(
            results(&host(json!({"app": "other"})), &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(())]
        );
        assert_eq!(
            results(&host(json!({"app": "web"})), &nodes, &cluster),
            vec![Err(Reason::TopologySpread), Ok(()), Ok(())]
        );
    }

    #[test]
    fn min_domains_takes_the_minimum_as_zero_with_too_few_domains() {
        let (a, b, c, cluster) = web_cluster(&["a", "c"]);
        let nodes = [&a, &b, &c];
        let with = |min_domains: Option<i32>| {
            let mut con = constraint("zone", 1, "DoNotSchedule", json!({"app": "web"}));
            if let Some(m) = min_domains {
                con["minDomains"] = json!(m);
            }
            labelled("default", json!({"app": "web"}), spread(json!([con])))
        };
        // One pod per zone: the minimum is 1 and either zone takes a second.
        assert_eq!(
            results(&with(None), &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(())]
        );
        assert_eq!(
            results(&with(Some(2)), &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(())]
        );
        // Two zones of three wanted: the minimum is 0 and 1 + 1 - 0 > 1 everywhere.
        let skew = Err(Reason::TopologySpread);
        assert_eq!(
            results(&with(Some(3)), &nodes, &cluster),
            vec![skew.clone(), skew.clone(), skew]
        );
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_own_values() {
        let (a, b, c) = zoned();
        let mut cluster = TestCluster::with_nodes(&[&a, &b, &c]);
        for _ in 0..2 {
            let old = labelled("default", json!({"app": "web", "rev": "1"}), json!({}));
            cluster.place(&old, "a");
        }
        let nodes = [&a, &b, &c];
        let new = |keys: serde_json::Value| {
            let mut con = constraint(
                "kubernetes.io/hostname",
                1,
                "DoNotSchedule",
                json!({"app": "web"}),
            );
            con["matchLabelKeys"] = keys;
            labelled(
                "default",
                json!({"app": "web", "rev": "2"}),
                spread(json!([con])),
            )
        };
        // Counting every web pod, a is full; counting only rev 2, nothing is anywhere.
        assert_eq!(
            results(&new(json!([])), &nodes, &cluster),
            vec![Err(Reason::TopologySpread), Ok(()), Ok(())]
        );
        assert_eq!(
            results(&new(json!(["rev"])), &nodes, &cluster),
            vec![Ok(()), Ok(()), Ok(())]
        );
        // A key the pod does not have adds nothing.
        assert_eq!(
            results(&new(json!(["missing"])), &nodes, &cluster),
            vec![Err(Reason::TopologySpread), Ok(()), Ok(())]
        );
    }

    #[test]
    fn nodes_without_the_topology_key_fail_and_do_not_count() {
        let (a, b, c) = zoned();
        let bare = node_with("d", "4", "16Gi", json!({"kubernetes.io/hostname": "d"}));
        let mut cluster = TestCluster::with_nodes(&[&a, &b, &c, &bare]);
        cluster.place(&labelled("default", json!({"app": "web"}), json!({})), "a");
        cluster.place(&labelled("default", json!({"app": "web"}), json!({})), "c");
        cluster.place(&labelled("default", json!({"app": "web"}), json!({})), "d");
        let p = labelled(
            "default",
            json!({"app": "web"}),
            spread(json!([constraint(
                "zone",
                1,
                "DoNotSchedule",
                json!({"app": "web"})
            )])),
        );
        // d's pod is in no zone: the zones hold 1 each.
        assert_eq!(
            results(&p, &[&a, &b, &c, &bare], &cluster),
            vec![
                Ok(()),
                Ok(()),
                Ok(()),
                Err(Reason::TopologySpreadMissingLabel)
            ]
        );
        assert_eq!(
            fit_error_message(
                2,
                &[
                    vec![Reason::TopologySpreadMissingLabel],
                    vec![Reason::TopologySpread]
                ]
            ),
            "0/2 nodes are available: 1 node(s) didn't match pod topology spread constraints, 1 \
             node(s) didn't match pod topology spread constraints (missing required label). \
             preemption: 0/2 nodes are available: 1 No preemption victims found for incoming \
             pod, 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn node_inclusion_policies_choose_the_nodes_counted() {
        let (a, b, mut c) = zoned();
        c.taints =
            vec![serde_json::from_value(json!({"key": "k", "effect": "NoSchedule"})).unwrap()];
        let mut cluster = TestCluster::with_nodes(&[&a, &b, &c]);
        for n in ["a", "b"] {
            cluster.place(&labelled("default", json!({"app": "web"}), json!({})), n);
        }
        let with = |policies: serde_json::Value, extra: serde_json::Value| {
            let mut con = constraint(
                "kubernetes.io/hostname",
                1,
                "DoNotSchedule",
                json!({"app": "web"}),
            );
            for (k, v) in policies.as_object().unwrap() {
                con[k] = v.clone();
            }
            let mut spec = spread(json!([con]));
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            labelled("default", json!({"app": "web"}), spec)
        };
        let check = |p: &Pod| {
            let info = PodInfo::from_pod(p);
            let (hard, _) = spread_constraints(p, &info.labels);
            let tolerations = p
                .spec
                .as_ref()
                .unwrap()
                .tolerations
                .clone()
                .unwrap_or_default();
            let s = SpreadFilter::new(p, &info, &tolerations, hard, &cluster);
            [&a, &b]
                .iter()
                .map(|n| s.filter(&info, n))
                .collect::<Vec<_>>()
        };
        let fits = vec![Ok(()), Ok(())];
        let skew = vec![Err(Reason::TopologySpread), Err(Reason::TopologySpread)];
        // Taints are ignored by default: empty c is the minimum.
        assert_eq!(check(&with(json!({}), json!({}))), skew);
        assert_eq!(
            check(&with(json!({"nodeTaintsPolicy": "Honor"}), json!({}))),
            fits
        );
        // The node selector is honoured by default.
        let z1 = json!({"nodeSelector": {"zone": "z1"}});
        assert_eq!(check(&with(json!({}), z1.clone())), fits);
        assert_eq!(
            check(&with(json!({"nodeAffinityPolicy": "Ignore"}), z1)),
            skew
        );
    }

    #[test]
    fn schedule_anyway_constraints_score_emptier_domains_higher() {
        let (a, b, c, cluster) = web_cluster(&["a", "a"]);
        let bare = node_with("d", "4", "16Gi", json!({"kubernetes.io/hostname": "d"}));
        let scores = |con: serde_json::Value, nodes: &[&NodeInfo]| {
            let p = labelled("default", json!({"app": "web"}), spread(json!([con])));
            let info = PodInfo::from_pod(&p);
            let (_, soft) = spread_constraints(&p, &info.labels);
            topology_spread_scores(&p, &info, &[], &soft, nodes, &cluster)
        };
        // By zone: z1 has 2 (ln 4 each, rounded to 3), z2 none; d lacks the key and scores 0.
        let zone = constraint("zone", 1, "ScheduleAnyway", json!({"app": "web"}));
        assert_eq!(
            scores(zone.clone(), &[&a, &b, &c, &bare]),
            vec![0, 0, 100, 0]
        );
        // maxSkew adds the same to every node: (5 + 5 - 5) / 5 for the crowded one.
        let mut wide = zone;
        wide["maxSkew"] = json!(3);
        assert_eq!(scores(wide, &[&a, &b, &c]), vec![40, 40, 100]);
        // By hostname: a holds 2 (ln 5 each: 3), the others none.
        let host = constraint(
            "kubernetes.io/hostname",
            1,
            "ScheduleAnyway",
            json!({"app": "web"}),
        );
        assert_eq!(scores(host, &[&a, &b, &c]), vec![0, 100, 100]);
        // Nothing to spread from: all 100.
        let none = constraint("zone", 1, "ScheduleAnyway", json!({"app": "db"}));
        assert_eq!(scores(none, &[&a, &b, &c]), vec![100, 100, 100]);
    }

    #[test]
    fn explicit_constraints_replace_the_default_spreading() {
        let (a, b, c, cluster) = web_cluster(&["a", "a"]);
        let nodes = [&a, &b, &c];
        // Only DoNotSchedule constraints: the plugin scores nothing (upstream skips it).
        let hard = labelled(
            "default",
            json!({"app": "web"}),
            spread(json!([constraint(
                "zone",
                5,
                "DoNotSchedule",
                json!({"app": "web"})
            )])),
        );
        let info = PodInfo::from_pod(&hard);
        let cycle = Cycle::new(&hard, &info, &cluster);
        assert!(cycle.soft_spread.as_ref().is_some_and(|s| s.is_empty()));
        let (_, soft) = spread_constraints(&hard, &info.labels);
        assert_eq!(
            topology_spread_scores(&hard, &info, &[], &soft, &nodes, &cluster),
            vec![0, 0, 0]
        );
        // Without constraints the owner spreading stays.
        let plain = labelled("default", json!({"app": "web"}), json!({"containers": []}));
        let info = PodInfo::from_pod(&plain);
        assert!(Cycle::new(&plain, &info, &cluster).soft_spread.is_none());
    }
}
