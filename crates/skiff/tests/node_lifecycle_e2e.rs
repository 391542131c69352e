//! End-to-end: node lifecycle. A real `skiff server` with a short node grace period, four
//! simulated nodes in two `skiff sim nodes` processes, and the real kubectl. Stopping one
//! process stops its node's heartbeats: the node turns NotReady, is tainted unreachable, and
//! its Deployment's pods are evicted after their toleration and recreated elsewhere. The pod
//! garbage collector then force-deletes what no kubelet will ever finish: the pods of a deleted
//! node, terminating pods on a node tainted out-of-service, unscheduled terminating pods and
//! terminated pods over the threshold.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cluster {
    server: Child,
    sims: Vec<Child>,
    kubeconfig: String,
    cache: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.sims {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Cluster {
    fn sim(&self, first: usize, count: usize) -> Child {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["sim", "nodes", "--kubeconfig", &self.kubeconfig])
            .args(["--start", &first.to_string(), "--count", &count.to_string()])
            .args(["--lease-interval", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skiff sim nodes")
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        common::run_kubectl("kubectl", &self.kubeconfig, self.cache.path(), args, stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (success, out, err) = self.kubectl(args, stdin);
        assert!(success, "kubectl {args:?} failed: {out}{err}");
        out
    }

    fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (success, out, _) = self.kubectl(&a, None);
        success.then(|| serde_json::from_str(&out).ok()).flatten()
    }

    fn node(&self, name: &str) -> Value {
        self.get_json(&["get", "node", name]).expect("get node")
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        let list = self.get_json(&["get", "pods", "-l", selector]).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn taints(node: &Value) -> Vec<(String, String)> {
    node["spec"]["taints"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap_or("").to_string(),
                        t["effect"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    taints(node).contains(&(key.to_string(), effect.to_string()))
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

const EDGE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: edge}
spec:
  replicas: 2
  selector: {matchLabels: {app: edge}}
  template:
    metadata: {labels: {app: edge}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 3}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 3}
      containers:
      - {name: main, image: nginx}
"#;

const PATIENT: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: patient, labels: {app: patient}}
spec:
  containers:
  - {name: main, image: nginx}
"#;

#[test]
fn an_unreachable_node_is_tainted_and_its_pods_move_after_their_toleration() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn_with_env(
        dir.path(),
        &[
            "--node-monitor-grace-period",
            "4s",
            "--node-monitor-period",
            "1s",
        ],
        &[("SKIFF_POD_GC_QUARANTINE", "3s")],
    );
    let mut c = Cluster {
        server,
        sims: Vec::new(),
        kubeconfig: dir.path().join("admin.kubeconfig").display().to_string(),
        cache: tempfile::tempdir().unwrap(),
        _dir: dir,
    };
    let three = c.sim(0, 3);
    c.sims.push(three);
    let lone = c.sim(3, 1);
    c.sims.push(lone);
    wait_for("4 Ready nodes", 60, || {
        let nodes = c.get_json(&["get", "nodes"])?;
        let ready = nodes["items"]
            .as_array()?
            .iter()
            .filter(|n| condition(n, "Ready").is_some_and(|c| c["status"] == "True"))
            .count();
        (ready == 4).then_some(())
    });

    // Cordoning is mirrored as upstream's unschedulable taint; the pods go to sim-3.
    for n in ["sim-0", "sim-1", "sim-2"] {
        c.ok(&["cordon", n], None);
    }
    wait_for("the unschedulable taint on cordoned nodes", 20, || {
        let n = c.node("sim-0");
        has_taint(&n, "node.kubernetes.io/unschedulable", "NoSchedule").then_some(())
    });
    c.ok(&["apply", "-f", "-"], Some(EDGE));
    c.ok(&["apply", "-f", "-"], Some(PATIENT));
    let first: Vec<String> = wait_for("edge pods running on sim-3", 60, || {
        let pods = c.pods("app=edge");
        let running: Vec<String> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && node_of(p) == "sim-3")
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (running.len() == 2).then_some(running)
    });
    wait_for("the patient pod running on sim-3", 30, || {
        let p = c.get_json(&["get", "pod", "patient"])?;
        (p["status"]["phase"] == "Running" && node_of(&p) == "sim-3").then_some(())
    });
    // Admission gave the plain pod upstream's 300 s tolerations.
    let patient = c.get_json(&["get", "pod", "patient"]).unwrap();
    let tols = patient["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tols.iter()
            .any(|t| t["key"] == UNREACHABLE && t["tolerationSeconds"] == 300),
        "{tols:?}"
    );
    for n in ["sim-0", "sim-1", "sim-2"] {
        c.ok(&["uncordon", n], None);
    }
    wait_for("the unschedulable taint to go", 20, || {
        let n = c.node("sim-0");
        taints(&n).is_empty().then_some(())
    });

    // sim-3 stops: no more Lease renewals or status.
    let mut lone = c.sims.pop().unwrap();
    lone.kill().unwrap();
    lone.wait().unwrap();
    let stopped = Instant::now();
    let node = wait_for("sim-3 to be marked Unknown", 30, || {
        let n = c.node("sim-3");
        condition(&n, "Ready")
            .is_some_and(|r| r["status"] == "Unknown")
            .then_some(n)
    });
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(
        condition(&node, "MemoryPressure").unwrap()["status"],
        "Unknown"
    );
    let out = c.ok(&["get", "node", "sim-3"], None);
    assert!(out.contains("NotReady"), "{out}");
    let node = wait_for("the unreachable taints on sim-3", 20, || {
        let n = c.node("sim-3");
        (has_taint(&n, UNREACHABLE, "NoExecute") && has_taint(&n, UNREACHABLE, "NoSchedule"))
            .then_some(n)
    });
    let noexec = node["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == UNREACHABLE && t["effect"] == "NoExecute")
        .unwrap();
    assert!(noexec["timeAdded"].is_string(), "{noexec}");
    let describe = c.ok(&["describe", "node", "sim-3"], None);
    assert!(
        describe.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{describe}"
    );
    // The node's pods stop being Ready, so Services stop routing to them.
    wait_for("the patient pod to be marked not Ready", 20, || {
        let p = c.get_json(&["get", "pod", "patient"])?;
        condition(&p, "Ready")
            .is_some_and(|r| r["status"] == "False")
            .then_some(())
    });

    // After 3 s of toleration the edge pods are evicted and replaced on other nodes.
    wait_for("edge replaced on the other nodes", 60, || {
        let pods = c.pods("app=edge");
        let replaced = pods
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["phase"] == "Running"
                    && node_of(p) != "sim-3"
            })
            .count();
        (replaced == 2).then_some(())
    });
    let out = c.ok(
        &["rollout", "status", "deployment/edge", "--timeout=30s"],
        None,
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    for name in &first {
        // The kubelet is gone, so the evicted pods stay Terminating, as upstream.
        if let Some(p) = c.get_json(&["get", "pod", name]) {
            assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
            let dt = condition(&p, "DisruptionTarget").expect("DisruptionTarget");
            assert_eq!(dt["reason"], "DeletionByTaintManager");
        }
    }
    let events = c
        .get_json(&[
            "get",
            "events",
            "--field-selector",
            "reason=TaintManagerEviction",
        ])
        .unwrap();
    let evicted: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["involvedObject"]["name"].as_str())
        .collect();
    for name in &first {
        assert!(evicted.contains(&name.as_str()), "{events}");
    }
    let node_events = c
        .get_json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=sim-3,reason=NodeNotReady",
        ])
        .unwrap();
    assert_eq!(
        node_events["items"][0]["message"], "Node sim-3 status is now: NodeNotReady",
        "{node_events}"
    );
    // The plain pod tolerates unreachable for 300 s: it is still there, not deleted.
    assert!(stopped.elapsed() < Duration::from_secs(290));
    let p = c.get_json(&["get", "pod", "patient"]).unwrap();
    assert!(p["metadata"]["deletionTimestamp"].is_null(), "{p}");
    assert_eq!(node_of(&p), "sim-3");

    // The node is deleted while its kubelet is down. After the quarantine the pod garbage
    // collector force-deletes everything bound to it: the evicted edge pods, still
    // Terminating, and the patient pod, which is first marked Failed and disrupted.
    let mut on_sim3: Vec<String> = first.clone();
    on_sim3.push("patient".into());
    let watch = PodWatch::start(&c);
    let deleting = Instant::now();
    c.ok(&["delete", "node", "sim-3"], None);
    assert!(
        c.get_json(&["get", "pod", "patient"]).is_some(),
        "the pods of a deleted node wait for the quarantine"
    );
    wait_for("the pods of deleted node sim-3 to be gone", 30, || {
        on_sim3
            .iter()
            .all(|name| c.get_json(&["get", "pod", name]).is_none())
            .then_some(())
    });
    assert!(
        deleting.elapsed() >= ORPHAN_QUARANTINE,
        "deleted after {:?}, within the quarantine",
        deleting.elapsed()
    );
    let seen = watch.stop();
    let failed = seen
        .iter()
        .find(|p| p["metadata"]["name"] == "patient" && p["status"]["phase"] == "Failed")
        .unwrap_or_else(|| panic!("patient never seen Failed: {seen:?}"));
    let dt = condition(failed, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(dt["status"], "True");
    assert_eq!(dt["reason"], "DeletionByPodGC");
    assert_eq!(dt["message"], "PodGC: node no longer exists");

    // The node comes back: registered again, Ready, no taints.
    let back = c.sim(3, 1);
    c.sims.push(back);
    wait_for("sim-3 Ready and untainted", 30, || {
        let n = c.node("sim-3");
        (condition(&n, "Ready").is_some_and(|r| r["status"] == "True") && taints(&n).is_empty())
            .then_some(())
    });

    // Now the other three nodes stop, with an edge pod on at least one of them.
    let mut three = c.sims.remove(0);
    three.kill().unwrap();
    three.wait().unwrap();
    let pod = c
        .pods("app=edge")
        .into_iter()
        .find(|p| p["metadata"]["deletionTimestamp"].is_null() && node_of(p) != "sim-3")
        .expect("an edge pod on a stopped node");
    let (name, node) = (
        pod["metadata"]["name"].as_str().unwrap().to_string(),
        node_of(&pod).to_string(),
    );
    wait_for("the stopped node to be marked Unknown", 30, || {
        let n = c.node(&node);
        condition(&n, "Ready")
            .is_some_and(|r| r["status"] == "Unknown")
            .then_some(())
    });
    assert!(c.get_json(&["get", "pod", &name]).is_some());
    // The operator says the node is down for good: the taint evicts its pods, and as no
    // kubelet will finish them, the pod garbage collector force-deletes them.
    c.ok(
        &[
            "taint",
            "node",
            &node,
            "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute",
        ],
        None,
    );
    wait_for("the pods of the out-of-service node to be gone", 30, || {
        c.pods("app=edge")
            .iter()
            .all(|p| node_of(p) != node)
            .then_some(())
    });
    assert!(c.get_json(&["get", "pod", &name]).is_none());
}

#[test]
fn a_cluster_whose_only_node_stops_keeps_its_pods() {
    // Every zone fully down is upstream's "master disruption" mode: no NoExecute taints, so
    // a one-node cluster whose kubelet stops does not lose its pods.
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn_with(
        dir.path(),
        &[
            "--node-monitor-grace-period",
            "3s",
            "--node-monitor-period",
            "1s",
        ],
    );
    let mut c = Cluster {
        server,
        sims: Vec::new(),
        kubeconfig: dir.path().join("admin.kubeconfig").display().to_string(),
        cache: tempfile::tempdir().unwrap(),
        _dir: dir,
    };
    let only = c.sim(0, 1);
    c.sims.push(only);
    c.ok(&["apply", "-f", "-"], Some(EDGE));
    wait_for("edge running", 60, || {
        let pods = c.pods("app=edge");
        (pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 2)
            .then_some(())
    });
    let mut only = c.sims.pop().unwrap();
    only.kill().unwrap();
    only.wait().unwrap();
    wait_for("sim-0 to be marked Unknown", 30, || {
        let n = c.node("sim-0");
        condition(&n, "Ready")
            .is_some_and(|r| r["status"] == "Unknown")
            .then_some(())
    });
    wait_for("the unreachable NoSchedule taint", 20, || {
        let n = c.node("sim-0");
        has_taint(&n, UNREACHABLE, "NoSchedule").then_some(())
    });
    // Well past the pods' 3 s toleration: still no NoExecute taint, no eviction.
    std::thread::sleep(Duration::from_secs(6));
    let n = c.node("sim-0");
    assert!(!has_taint(&n, UNREACHABLE, "NoExecute"), "{:?}", taints(&n));
    for p in c.pods("app=edge") {
        assert!(p["metadata"]["deletionTimestamp"].is_null(), "{p}");
    }
}

/// The quarantine the first test gives the pod garbage collector.
const ORPHAN_QUARANTINE: Duration = Duration::from_secs(3);

/// Every state of every pod a `kubectl get pods --watch` sees, to look at states that do not
/// last (a pod marked Failed just before it is deleted).
struct PodWatch {
    child: Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl PodWatch {
    fn start(c: &Cluster) -> PodWatch {
        let mut child = Command::new("kubectl")
            .args(["--kubeconfig", &c.kubeconfig, "--cache-dir"])
            .arg(c.cache.path())
            .args(["get", "pods", "--watch", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kubectl get --watch");
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        // Watching once the current pods are printed.
        wait_for("kubectl get --watch to list", 20, || {
            (!out.lock().unwrap().is_empty()).then_some(())
        });
        PodWatch { child, out, reader }
    }

    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
        let out = self.out.lock().unwrap();
        serde_json::Deserializer::from_slice(&out)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .collect()
    }
}

#[test]
fn terminated_pods_over_the_threshold_and_unscheduled_terminating_pods_are_collected() {
    // No nodes: every pod stays unscheduled, and its phase is what the test writes.
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn_with_env(
        dir.path(),
        &["--terminated-pod-gc-threshold", "2"],
        &[("SKIFF_POD_GC_PERIOD", "1s")],
    );
    let c = Cluster {
        server,
        sims: Vec::new(),
        kubeconfig: dir.path().join("admin.kubeconfig").display().to_string(),
        cache: tempfile::tempdir().unwrap(),
        _dir: dir,
    };
    let set_status = |name: &str, status: &str| {
        c.ok(
            &[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!(r#"{{"status": {status}}}"#),
            ],
            None,
        );
    };

    // A pod being deleted that no node ever took, held by a finalizer: marked Failed (its
    // finalizer's owner decides when it goes).
    c.ok(
        &["apply", "-f", "-"],
        Some(
            r#"apiVersion: v1
kind: Pod
metadata: {name: held, finalizers: [example.com/hold]}
spec:
  containers:
  - {name: main, image: nginx}
"#,
        ),
    );
    c.ok(&["delete", "pod", "held", "--wait=false"], None);
    wait_for("the unscheduled terminating pod marked Failed", 20, || {
        let p = c.get_json(&["get", "pod", "held"])?;
        (p["status"]["phase"] == "Failed").then_some(())
    });
    c.ok(
        &[
            "patch",
            "pod",
            "held",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
        ],
        None,
    );
    wait_for("the held pod gone", 20, || {
        c.get_json(&["get", "pod", "held"]).is_none().then_some(())
    });

    // Four terminated pods, two allowed: the evicted one goes first, then the oldest.
    for name in ["t-a", "t-b", "t-c", "t-d"] {
        c.ok(&["run", name, "--image=nginx", "--restart=Never"], None);
        // Creation times have second precision: one a second orders them.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // (Whether a pass runs between these writes or not, the same two are left.)
    set_status("t-d", r#"{"phase": "Failed", "reason": "Evicted"}"#);
    set_status("t-c", r#"{"phase": "Succeeded"}"#);
    set_status("t-b", r#"{"phase": "Failed"}"#);
    set_status("t-a", r#"{"phase": "Succeeded"}"#);
    let left = wait_for("two terminated pods left", 20, || {
        let list = c.get_json(&["get", "pods"])?;
        let names: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        (names.len() == 2).then_some(names)
    });
    assert_eq!(left, vec!["t-b", "t-c"]);
    // At the threshold nothing more goes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.pods("run").len(), 2);
}

#[test]
fn node_ipam_cuts_pod_cidrs_from_the_flags_and_waits_when_they_run_out() {
    // --cluster-cidr 10.200.0.0/23 with /24s holds two nodes: the third gets upstream's
    // CIDRNotAvailable event, and a subnet once a node holding one is deleted.
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn_with(
        dir.path(),
        &[
            "--cluster-cidr",
            "10.200.0.0/23",
            "--node-cidr-mask-size",
            "24",
        ],
    );
    let mut c = Cluster {
        server,
        sims: Vec::new(),
        kubeconfig: dir.path().join("admin.kubeconfig").display().to_string(),
        cache: tempfile::tempdir().unwrap(),
        _dir: dir,
    };
    let sims = c.sim(0, 3);
    c.sims.push(sims);
    let cidr = |n: &Value| n["spec"]["podCIDR"].as_str().map(str::to_string);
    let (with, without) = wait_for(
        "two nodes with a podCIDR and a CIDRNotAvailable event",
        30,
        || {
            let nodes = c.get_json(&["get", "nodes"])?;
            let nodes = nodes["items"].as_array()?.clone();
            if nodes.len() != 3 {
                return None;
            }
            let with: Vec<(String, String)> = nodes
                .iter()
                .filter_map(|n| Some((n["metadata"]["name"].as_str()?.to_string(), cidr(n)?)))
                .collect();
            let without: Vec<String> = nodes
                .iter()
                .filter(|n| cidr(n).is_none())
                .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
                .collect();
            let events = c.get_json(&[
                "get",
                "events",
                "--field-selector",
                "reason=CIDRNotAvailable",
            ])?;
            let told = events["items"].as_array()?.iter().any(|e| {
                without.len() == 1
                    && e["involvedObject"]["name"] == without[0].as_str()
                    && e["message"]
                        == format!("Node {} status is now: CIDRNotAvailable", without[0])
            });
            (with.len() == 2 && told).then_some((with, without))
        },
    );
    let mut cidrs: Vec<&str> = with.iter().map(|(_, c)| c.as_str()).collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.200.0.0/24", "10.200.1.0/24"]);
    // Deleting a node frees its subnet for the waiting one.
    let (gone, freed) = &with[0];
    c.ok(&["delete", "node", gone], None);
    wait_for("the waiting node to get the freed subnet", 30, || {
        let n = c.node(&without[0]);
        (cidr(&n).as_deref() == Some(freed.as_str())).then_some(())
    });
}
