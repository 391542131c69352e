//! End-to-end: where the scheduler of a real `skiff server` puts pods on three simulated nodes
//! (`skiff sim nodes`, sim-0..sim-2, 4 cpu / 16Gi / 110 pods each), driven by the real
//! kubectl: node selectors, node affinity, taints, host ports, pod affinity and anti-affinity,
//! spreading, topology spread constraints, and upstream's FailedScheduling messages for pods that fit nowhere.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Cluster {
    server: Child,
    sim: Child,
    kubeconfig: String,
    cache: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.sim.kill();
        let _ = self.sim.wait();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Cluster {
    /// A server and `skiff sim nodes --count 3`, once all three nodes are Ready.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = common::spawn(dir.path());
        let kubeconfig = dir.path().join("admin.kubeconfig").display().to_string();
        let sim = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["sim", "nodes", "--count", "3", "--kubeconfig", &kubeconfig])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skiff sim nodes");
        let c = Cluster {
            server,
            sim,
            kubeconfig,
            cache: tempfile::tempdir().unwrap(),
            _dir: dir,
        };
        wait_for("3 Ready nodes", || {
            let nodes = c.get_json(&["get", "nodes"])?;
            let ready = items(&nodes)
                .iter()
                .filter(|n| condition(n, "Ready") == Some("True"))
                .count();
            (ready == 3).then_some(())
        });
        c
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        common::run_kubectl("kubectl", &self.kubeconfig, self.cache.path(), args, stdin)
    }

    /// kubectl that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let (success, out, err) = self.kubectl(args, None);
        assert!(success, "kubectl {args:?} failed: {out}{err}");
        out
    }

    fn apply(&self, obj: &Value) {
        let (success, out, err) = self.kubectl(&["apply", "-f", "-"], Some(&obj.to_string()));
        assert!(success, "kubectl apply failed: {out}{err}");
    }

    fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (success, out, _) = self.kubectl(&a, None);
        success.then(|| serde_json::from_str(&out).ok()).flatten()
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.get_json(&["get", "pods", "-l", selector])
            .map(|l| items(&l))
            .unwrap_or_default()
    }

    /// Waits for the pod to run and returns its node.
    fn node_of(&self, pod: &str) -> String {
        wait_for(&format!("{pod} to run"), || {
            let p = self.get_json(&["get", "pod", pod])?;
            (p["status"]["phase"] == "Running").then(|| node(&p).to_string())
        })
    }

    /// Waits for a FailedScheduling event of `pod` with exactly `message`, then checks the
    /// pod is still Pending with the same message in its PodScheduled condition.
    fn expect_unschedulable(&self, pod: &str, message: &str) {
        let selector = format!("involvedObject.name={pod}");
        let mut seen = Vec::new();
        let found = wait_for_secs(30, || {
            let ev = self.get_json(&["get", "events", "--field-selector", &selector])?;
            seen = items(&ev)
                .iter()
                .filter(|e| e["reason"] == "FailedScheduling" && e["type"] == "Warning")
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect();
            seen.iter().any(|m| m == message).then_some(())
        });
        assert!(found.is_some(), "{pod}: want {message:?}, events: {seen:?}");
        let p = self.get_json(&["get", "pod", pod]).unwrap();
        assert_eq!(p["status"]["phase"], "Pending", "{pod}");
        assert!(p["spec"]["nodeName"].is_null(), "{pod}");
        let cond = p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(cond["status"], "False", "{cond}");
        assert_eq!(cond["reason"], "Unschedulable", "{cond}");
    }

    /// Waits until the pods of `app` are `running` Running and `pending` Pending; returns the
    /// number of Running pods per node and the names of the Pending ones.
    fn settle(
        &self,
        app: &str,
        running: usize,
        pending: usize,
    ) -> (BTreeMap<String, usize>, Vec<String>) {
        wait_for(
            &format!("{app}: {running} running and {pending} pending"),
            || {
                let pods = self.pods(&format!("app={app}"));
                let live: Vec<&Value> = pods
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .collect();
                let mut per_node = BTreeMap::new();
                let mut waiting = Vec::new();
                for p in &live {
                    match p["status"]["phase"].as_str() {
                        Some("Running") => *per_node.entry(node(p).to_string()).or_insert(0) += 1,
                        Some("Pending") if p["spec"]["nodeName"].is_null() => {
                            waiting.push(p["metadata"]["name"].as_str().unwrap().to_string())
                        }
                        _ => return None,
                    }
                }
                (per_node.values().sum::<usize>() == running && waiting.len() == pending)
                    .then_some((per_node, waiting))
            },
        )
    }
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn node(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?["status"]
        .as_str()
}

/// Polls `f` until it returns Some, or gives up after `secs`.
fn wait_for_secs<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `f` until it returns Some, or fails the test after 60 s.
fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for_secs(60, f).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// A bare pod with `labels` and extra `spec` fields.
fn pod(name: &str, labels: Value, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "main", "image": "nginx"}]);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// A Deployment of `replicas` pods labelled app=NAME, with extra pod `spec` fields.
fn deployment(name: &str, replicas: u32, spec: Value) -> Value {
    let mut spec = spec;
    let mut container = json!({"name": "main", "image": "nginx"});
    if let Some(c) = spec.get("container") {
        for (k, v) in c.as_object().unwrap() {
            container[k] = v.clone();
        }
        spec.as_object_mut().unwrap().remove("container");
    }
    spec["containers"] = json!([container]);
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})
}

fn node_affinity(op: &str, key: &str, values: &[&str]) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": key, "operator": op, "values": values}]}]}}})
}

fn pod_affinity(kind: &str, labels: Value) -> Value {
    json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": labels},
        "topologyKey": "kubernetes.io/hostname"}]}})
}

const HOSTNAME: &str = "kubernetes.io/hostname";

#[test]
fn node_selectors_node_affinity_taints_and_host_ports() {
    let c = Cluster::start();
    // The simulated nodes carry the well-known hostname label.
    let sim0 = c.get_json(&["get", "node", "sim-0"]).unwrap();
    assert_eq!(sim0["metadata"]["labels"][HOSTNAME], "sim-0");

    // nodeSelector
    c.ok(&["label", "node", "sim-1", "disk=ssd"]);
    c.apply(&pod(
        "ssd",
        json!({}),
        json!({"nodeSelector": {"disk": "ssd"}}),
    ));
    c.apply(&pod(
        "nvme",
        json!({}),
        json!({"nodeSelector": {"disk": "nvme"}}),
    ));
    assert_eq!(c.node_of("ssd"), "sim-1");
    c.expect_unschedulable(
        "nvme",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    // A node that gains the label takes the waiting pod.
    c.ok(&["label", "node", "sim-0", "disk=nvme"]);
    assert_eq!(c.node_of("nvme"), "sim-0");

    // Required node affinity, In and NotIn.
    let affine = |name: &str, op: &str, values: &[&str]| {
        pod(
            name,
            json!({}),
            json!({"affinity": node_affinity(op, HOSTNAME, values)}),
        )
    };
    c.apply(&affine("in-sim-2", "In", &["sim-2"]));
    c.apply(&affine("not-in-0-1", "NotIn", &["sim-0", "sim-1"]));
    c.apply(&affine("in-nowhere", "In", &["sim-7"]));
    assert_eq!(c.node_of("in-sim-2"), "sim-2");
    assert_eq!(c.node_of("not-in-0-1"), "sim-2");
    c.expect_unschedulable(
        "in-nowhere",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );

    // Preferred node affinity steers pods without forcing them.
    for i in 0..3 {
        c.apply(&pod(
            &format!("prefers-ssd-{i}"),
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        ));
    }
    c.apply(&pod(
        "prefers-gpu",
        json!({}),
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": "gpu", "operator": "Exists"}]}}]}}}),
    ));
    for i in 0..3 {
        assert_eq!(c.node_of(&format!("prefers-ssd-{i}")), "sim-1");
    }
    c.node_of("prefers-gpu");

    // A NoSchedule taint keeps pods without a toleration off the node.
    c.ok(&["taint", "node", "sim-2", "dedicated=x:NoSchedule"]);
    c.apply(&deployment("untolerant", 6, json!({})));
    let (per_node, _) = c.settle("untolerant", 6, 0);
    assert!(!per_node.contains_key("sim-2"), "{per_node:?}");
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![3, 3]);
    c.apply(&pod(
        "tolerant",
        json!({}),
        json!({"nodeSelector": {HOSTNAME: "sim-2"},
               "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "x",
                                "effect": "NoSchedule"}]}),
    ));
    assert_eq!(c.node_of("tolerant"), "sim-2");
    c.apply(&pod(
        "intolerant",
        json!({}),
        json!({"nodeSelector": {HOSTNAME: "sim-2"}}),
    ));
    c.expect_unschedulable(
        "intolerant",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 node(s) \
         didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 \
         Preemption is not helpful for scheduling.",
    );
    // Removing the taint lets it in.
    c.ok(&["taint", "node", "sim-2", "dedicated=x:NoSchedule-"]);
    assert_eq!(c.node_of("intolerant"), "sim-2");

    // One host port: one pod per node, the fourth waits.
    c.apply(&deployment(
        "ports",
        4,
        json!({"container": {"ports": [{"containerPort": 80, "hostPort": 8080}]}}),
    ));
    let (per_node, pending) = c.settle("ports", 3, 1);
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    c.expect_unschedulable(
        &pending[0],
        "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod \
         ports. preemption: 0/3 nodes are available: 3 No preemption victims found for \
         incoming pod.",
    );
}

#[test]
fn pod_affinity_anti_affinity_and_spreading() {
    let c = Cluster::start();

    // Replicas that avoid each other take one node each; the fourth fits nowhere.
    c.apply(&deployment(
        "solo",
        4,
        json!({"affinity": pod_affinity("podAntiAffinity", json!({"app": "solo"}))}),
    ));
    let (per_node, pending) = c.settle("solo", 3, 1);
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    c.expect_unschedulable(
        &pending[0],
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: \
         0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );
    // Their anti-affinity also keeps out a pod that has none of its own but matches it.
    c.apply(&pod("like-solo", json!({"app": "solo"}), json!({})));
    c.expect_unschedulable(
        "like-solo",
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );
    c.ok(&["delete", "pod", "like-solo", "--wait=false"]);

    // Required pod affinity: next to the pod it names.
    c.apply(&pod(
        "db",
        json!({"role": "db"}),
        json!({"nodeSelector": {HOSTNAME: "sim-2"}}),
    ));
    assert_eq!(c.node_of("db"), "sim-2");
    c.apply(&pod(
        "web",
        json!({"role": "web"}),
        json!({"affinity": pod_affinity("podAffinity", json!({"role": "db"}))}),
    ));
    assert_eq!(c.node_of("web"), "sim-2");
    // With no such pod anywhere it waits, and follows the pod once it appears.
    c.apply(&pod(
        "follower",
        json!({}),
        json!({"affinity": pod_affinity("podAffinity", json!({"role": "cache"}))}),
    ));
    c.expect_unschedulable(
        "follower",
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. preemption: 0/3 \
         nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    let t = Instant::now();
    c.apply(&pod(
        "cache",
        json!({"role": "cache"}),
        json!({"nodeSelector": {HOSTNAME: "sim-0"}}),
    ));
    assert_eq!(c.node_of("follower"), "sim-0");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "retried on the new pod, not by the periodic flush: {:?}",
        t.elapsed()
    );

    // Replicas with affinity to each other: the first goes anywhere, the rest join it.
    c.apply(&deployment(
        "pack",
        3,
        json!({"affinity": pod_affinity("podAffinity", json!({"app": "pack"}))}),
    ));
    let (per_node, _) = c.settle("pack", 3, 0);
    assert_eq!(per_node.len(), 1, "{per_node:?}");

    // Spreading: six replicas land two per node.
    c.apply(&deployment("spread", 6, json!({})));
    let (per_node, _) = c.settle("spread", 6, 0);
    assert_eq!(
        per_node,
        BTreeMap::from([
            ("sim-0".to_string(), 2),
            ("sim-1".to_string(), 2),
            ("sim-2".to_string(), 2)
        ])
    );
}

#[test]
fn topology_spread_constraints() {
    let c = Cluster::start();
    const ZONE: &str = "topology.kubernetes.io/zone";
    for (n, zone) in [("sim-0", "a"), ("sim-1", "a"), ("sim-2", "b")] {
        c.ok(&["label", "node", n, &format!("{ZONE}={zone}")]);
    }
    let zone_spread = |labels: Value, min_domains: Option<i32>| {
        let mut con = json!({"maxSkew": 1, "topologyKey": ZONE,
                             "whenUnsatisfiable": "DoNotSchedule",
                             "labelSelector": {"matchLabels": labels}});
        if let Some(m) = min_domains {
            con["minDomains"] = json!(m);
        }
        json!({"topologySpreadConstraints": [con]})
    };

    // Zone a has two nodes and b one, yet the replicas split 2/2 between the zones.
    c.apply(&deployment(
        "zoned",
        4,
        zone_spread(json!({"app": "zoned"}), None),
    ));
    let (per_node, _) = c.settle("zoned", 4, 0);
    let in_a = per_node.get("sim-0").unwrap_or(&0) + per_node.get("sim-1").unwrap_or(&0);
    assert_eq!(
        (in_a, per_node.get("sim-2").copied().unwrap_or(0)),
        (2, 2),
        "{per_node:?}"
    );

    // Another pod spreading with them over three zones where there are two: the minimum is
    // taken as 0, and 2 in either zone is a skew of 2.
    c.apply(&pod(
        "zoned-extra",
        json!({"role": "extra"}),
        zone_spread(json!({"app": "zoned"}), Some(3)),
    ));
    c.expect_unschedulable(
        "zoned-extra",
        "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );
}
