//! End-to-end: PodDisruptionBudgets, the eviction API and `kubectl drain`, and deleting a
//! namespace with everything in it, in a real `skiff server` with simulated nodes
//! (`skiff sim nodes --count 3`) and the real kubectl.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cluster {
    server: Child,
    /// The simulated nodes' process, killed on drop.
    sim: Option<Child>,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = self.sim.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Cluster {
    /// A server and three simulated nodes, once all are Ready.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = common::spawn(dir.path());
        let kubeconfig = dir.path().join("admin.kubeconfig").display().to_string();
        let sim = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["sim", "nodes", "--kubeconfig", &kubeconfig, "--count", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skiff sim nodes");
        let c = Cluster {
            server,
            sim: Some(sim),
            kubeconfig,
            _dir: dir,
        };
        wait_for("3 Ready nodes", 60, || {
            let nodes = c.get_json(&["get", "nodes"])?;
            let ready = items(&nodes)
                .iter()
                .filter(|n| condition(n, "Ready") == Some("True"))
                .count();
            (ready == 3).then_some(())
        });
        c
    }

    /// Runs kubectl with its own cache dir.
    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let cache = tempfile::tempdir().unwrap();
        common::run_kubectl("kubectl", &self.kubeconfig, cache.path(), args, None)
    }

    /// kubectl that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let (success, out, err) = self.kubectl(args);
        assert!(success, "kubectl {args:?} failed: {out}{err}");
        out
    }

    fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (success, out, _) = self.kubectl(&a);
        success.then(|| serde_json::from_str(&out).ok()).flatten()
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.get_json(&["get", "pods", "-l", selector])
            .map(|l| items(&l))
            .unwrap_or_default()
    }

    /// Waits for `n` web pods, all Running, Ready and not being deleted; returns them.
    fn wait_ready_web_pods(&self, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} ready web pods"), 40, || {
            let pods = self.pods("app=web");
            let ready = pods.iter().all(|p| {
                condition(p, "Ready") == Some("True")
                    && p["metadata"]["deletionTimestamp"].is_null()
            });
            (pods.len() == n && ready).then_some(pods)
        })
    }

    /// Waits for the web budget's status to report `allowed` disruptions for its generation.
    fn wait_budget(&self, allowed: i64) -> Value {
        wait_for(&format!("the budget to allow {allowed}"), 30, || {
            let b = self.get_json(&["get", "pdb", "web"])?;
            let st = &b["status"];
            (st["observedGeneration"] == b["metadata"]["generation"]
                && st["disruptionsAllowed"] == allowed
                && st["currentHealthy"] == 3)
                .then(|| st.clone())
        })
    }

    /// `web`: three nginx pods and a budget with `--min-available=MIN`.
    fn web_with_budget(&self, min: &str) {
        self.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
        ]);
        self.ok(&[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            &format!("--min-available={min}"),
        ]);
        self.wait_ready_web_pods(3);
    }
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?["status"]
        .as_str()
}

/// Polls `f` until it returns Some, or fails the test after `secs`.
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

/// A node running exactly one web pod if there is one (so a drain evicts one pod), else any
/// node running one.
fn node_to_drain(pods: &[Value]) -> String {
    let count = |n: &str| pods.iter().filter(|p| node_of(p) == n).count();
    pods.iter()
        .map(node_of)
        .min_by_key(|n| count(n))
        .expect("a web pod")
        .to_string()
}

#[test]
fn drain_evicts_within_the_budget_and_the_pod_moves() {
    let c = Cluster::start();
    c.web_with_budget("2");
    let status = c.wait_budget(1);
    assert_eq!(
        (
            &status["desiredHealthy"],
            &status["expectedPods"],
            condition(&serde_json::json!({"status": status}), "DisruptionAllowed")
        ),
        (&serde_json::json!(2), &serde_json::json!(3), Some("True")),
        "{status}"
    );
    let table = c.ok(&["get", "pdb", "web"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2", "N/A", "1"], "{table}");

    let pods = c.wait_ready_web_pods(3);
    let node = node_to_drain(&pods);
    let evicted: Vec<String> = pods
        .iter()
        .filter(|p| node_of(p) == node)
        .map(|p| name(p).to_string())
        .collect();
    let t = Instant::now();
    let (ok, out, err) = c.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    assert!(ok, "drain failed after {:?}: {out}{err}", t.elapsed());
    assert!(out.contains(&format!("node/{node} cordoned")), "{out}");
    for p in &evicted {
        assert!(out.contains(&format!("pod/{p} evicted")), "{out}");
    }
    assert!(out.contains(&format!("node/{node} drained")), "{out}");

    // Cordoned, and the evicted pods were replaced on other nodes.
    let n = c.get_json(&["get", "node", &node]).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    assert!(c.ok(&["get", "node", &node]).contains("SchedulingDisabled"));
    let pods = c.wait_ready_web_pods(3);
    for p in &pods {
        assert_ne!(node_of(p), node, "{} runs on the drained node", name(p));
        assert!(!evicted.contains(&name(p).to_string()));
    }
    c.wait_budget(1);

    c.ok(&["uncordon", &node]);
    let n = c.get_json(&["get", "node", &node]).unwrap();
    assert!(n["spec"]["unschedulable"] != true, "{n}");
    assert!(!c.ok(&["get", "node", &node]).contains("SchedulingDisabled"));
}

#[test]
fn drain_stops_at_a_budget_that_allows_nothing() {
    let c = Cluster::start();
    c.web_with_budget("3");
    let status = c.wait_budget(0);
    assert_eq!(status["desiredHealthy"], 3, "{status}");
    assert_eq!(
        condition(&serde_json::json!({"status": status}), "DisruptionAllowed"),
        Some("False")
    );
    let pods = c.wait_ready_web_pods(3);
    let node = node_to_drain(&pods);
    let t = Instant::now();
    let (ok, out, err) = c.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=12s",
    ]);
    let took = t.elapsed();
    assert!(!ok, "drain succeeded against the budget: {out}{err}");
    assert!(
        took < Duration::from_secs(30),
        "drain took {took:?} with a 12s timeout"
    );
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{out}{err}"
    );
    // Nothing was evicted; the node stays cordoned until uncordoned.
    let after = c.wait_ready_web_pods(3);
    let names = |ps: &[Value]| {
        let mut v: Vec<String> = ps.iter().map(|p| name(p).to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&after), names(&pods));
    assert!(c.ok(&["get", "node", &node]).contains("SchedulingDisabled"));
    c.ok(&["uncordon", &node]);
    assert!(!c.ok(&["get", "node", &node]).contains("SchedulingDisabled"));
}

const NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: doomed}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: doomed}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: doomed}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: doomed}
data: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: doomed}
stringData: {t: s}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: doomed}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: sleeper, namespace: doomed}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
"#;

#[test]
fn deleting_a_namespace_deletes_everything_in_it() {
    let c = Cluster::start();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), NAMESPACE).unwrap();
    c.ok(&["apply", "-f", &file.path().display().to_string()]);
    wait_for("the namespace's pods to run", 40, || {
        let pods = c.get_json(&["get", "pods", "-n", "doomed"])?;
        let running = items(&pods)
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (running == 3).then_some(())
    });
    // The budget (maxUnavailable) is computed from the Deployment's scale.
    let budget = wait_for("the budget's status", 30, || {
        let b = c.get_json(&["get", "pdb", "web", "-n", "doomed"])?;
        (b["status"]["expectedPods"] == 2).then_some(b)
    });
    assert_eq!(budget["status"]["desiredHealthy"], 1, "{budget}");

    let t = Instant::now();
    let out = c.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    assert!(out.contains("namespace \"doomed\" deleted"), "{out}");
    assert!(
        t.elapsed() < Duration::from_secs(45),
        "deleting took {:?}",
        t.elapsed()
    );
    let (_, out, err) = c.kubectl(&["get", "all,cm,secret,pdb", "-n", "doomed"]);
    assert!(out.trim().is_empty(), "{out}");
    assert!(
        err.contains("No resources found in doomed namespace."),
        "{err}"
    );
    let (ok, _, err) = c.kubectl(&["get", "namespace", "doomed"]);
    assert!(!ok);
    assert!(err.contains("namespaces \"doomed\" not found"), "{err}");
    let all = c.get_json(&["get", "pods", "-A"]).unwrap();
    assert!(
        items(&all)
            .iter()
            .all(|p| p["metadata"]["namespace"] != "doomed"),
        "{all}"
    );
}
