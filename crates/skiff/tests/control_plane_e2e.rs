//! End-to-end: a real `skiff server` (with its controllers and scheduler), three simulated
//! nodes (`skiff sim nodes`) and the real kubectl.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

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
        let nodes = get_json(&c, &["get", "nodes"])?;
        let ready = items(&nodes)
            .iter()
            .filter(|n| condition(n, "Ready") == Some("True"))
            .count();
        (ready == 3).then_some(())
    });
    c
}

fn kubectl(c: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    common::run_kubectl("kubectl", &c.kubeconfig, c.cache.path(), args, stdin)
}

/// kubectl that must succeed.
fn ok(c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let (success, out, err) = kubectl(c, args, stdin);
    assert!(success, "kubectl {args:?} failed: {out}{err}");
    out
}

fn get_json(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let (success, out, _) = kubectl(c, &a, None);
    success.then(|| serde_json::from_str(&out).ok()).flatten()
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?["status"]
        .as_str()
}

/// Polls `f` until it returns Some, or fails the test after 60 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deployment(name: &str, image: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: {image}
        ports: [{{name: http, containerPort: 8080}}]
        resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
        readinessProbe: {{initialDelaySeconds: 1, httpGet: {{path: /, port: 8080}}}}
"#
    )
}

/// The pods of one label as a kubectl watch sees them, with the worst counts seen so far.
#[derive(Default)]
struct PodWatch {
    /// name -> (terminating, ready)
    pods: BTreeMap<String, (bool, bool)>,
    max_live: usize,
    min_ready: Option<usize>,
    events: usize,
}

/// `kubectl get pods -l app=NAME -w` in the background, checking counts after every event.
fn watch_pods(c: &Cluster, label: &str) -> (Child, Arc<Mutex<PodWatch>>) {
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", &c.kubeconfig, "--cache-dir"])
        .arg(c.cache.path())
        .args([
            "get",
            "pods",
            "-l",
            label,
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = Arc::new(Mutex::new(PodWatch::default()));
    let out = child.stdout.take().unwrap();
    let st = state.clone();
    std::thread::spawn(move || {
        let stream =
            serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter::<Value>();
        for ev in stream.flatten() {
            let obj = &ev["object"];
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let mut s = st.lock().unwrap();
            if ev["type"] == "DELETED" {
                s.pods.remove(&name);
            } else {
                let terminating = !obj["metadata"]["deletionTimestamp"].is_null();
                let ready = condition(obj, "Ready") == Some("True");
                s.pods.insert(name, (terminating, ready));
            }
            let live = s.pods.values().filter(|(t, _)| !t).count();
            let ready = s.pods.values().filter(|(t, r)| !t && *r).count();
            s.max_live = s.max_live.max(live);
            s.min_ready = Some(s.min_ready.map_or(ready, |m| m.min(ready)));
            s.events += 1;
        }
    });
    (child, state)
}

fn pods_of(c: &Cluster, label: &str) -> Vec<Value> {
    items(&get_json(c, &["get", "pods", "-l", label]).unwrap_or_default())
}

fn replica_sets_of(c: &Cluster, label: &str) -> Vec<Value> {
    items(&get_json(c, &["get", "rs", "-l", label]).unwrap_or_default())
}

#[test]
fn deployment_rolls_out_within_bounds_scales_and_is_deleted() {
    let c = start();
    ok(
        &c,
        &["apply", "-f", "-"],
        Some(&deployment("web", "nginx:1.25", 3)),
    );
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
        None,
    );

    // Running on simulated nodes, one per node (spread), with pod IPs from 10.42.0.0/16.
    let pods = pods_of(&c, "app=web");
    assert_eq!(pods.len(), 3);
    let nodes: BTreeSet<&str> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["sim-0", "sim-1", "sim-2"]),
        "spread: {pods:?}"
    );
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Running");
        assert!(p["status"]["podIP"].as_str().unwrap().starts_with("10.42."));
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    }
    let d = get_json(&c, &["get", "deployment", "web"]).unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(condition(&d, "Available"), Some("True"));
    let events = ok(
        &c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Pod",
        ],
        None,
    );
    assert!(
        events.contains("Successfully assigned default/web-"),
        "{events}"
    );

    // A new image: a new ReplicaSet, and at every step at most 3+1 live pods and at least
    // 3-0 ready ones (maxSurge 1, maxUnavailable 0).
    let (mut watcher, seen) = watch_pods(&c, "app=web");
    wait_for("the watch to list 3 ready pods", || {
        let mut s = seen.lock().unwrap();
        let ready = s.pods.values().filter(|(t, r)| !t && *r).count();
        // Bounds count from here: the initial listing arrives one pod at a time.
        (ready == 3).then(|| {
            s.max_live = 3;
            s.min_ready = Some(3);
            s.events = 0;
        })
    });
    ok(
        &c,
        &["set", "image", "deployment/web", "main=nginx:1.26"],
        None,
    );
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
        None,
    );
    wait_for("the watch to see only new pods", || {
        let s = seen.lock().unwrap();
        let live: Vec<_> = s.pods.iter().filter(|(_, (t, _))| !t).collect();
        (s.pods.len() == 3 && live.len() == 3).then_some(())
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    {
        let s = seen.lock().unwrap();
        assert!(
            s.events > 10,
            "the watch saw the rollout ({} events)",
            s.events
        );
        assert!(
            s.max_live <= 4,
            "maxSurge 1 exceeded: {} live pods",
            s.max_live
        );
        assert!(
            s.min_ready.unwrap() >= 3,
            "maxUnavailable 0 violated: {} ready pods",
            s.min_ready.unwrap()
        );
    }
    let sets = replica_sets_of(&c, "app=web");
    assert_eq!(sets.len(), 2);
    for rs in &sets {
        let image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap();
        let want = if image == "nginx:1.26" { 3 } else { 0 };
        assert_eq!(rs["spec"]["replicas"], want, "{image}");
        let rev = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
        assert_eq!(rev, if want == 3 { "2" } else { "1" });
        let name = rs["metadata"]["name"].as_str().unwrap();
        let hash = rs["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .unwrap();
        assert_eq!(name, format!("web-{hash}"));
    }
    let describe = ok(&c, &["describe", "deployment", "web"], None);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    assert!(describe.contains("NewReplicaSetAvailable"), "{describe}");

    ok(&c, &["scale", "deployment/web", "--replicas=5"], None);
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
        None,
    );
    wait_for("5 running pods", || {
        let running = pods_of(&c, "app=web")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (running == 5).then_some(())
    });

    // Background deletion: the garbage collector removes the ReplicaSets and their pods.
    ok(&c, &["delete", "deployment", "web"], None);
    wait_for("web's ReplicaSets and pods to be gone", || {
        (replica_sets_of(&c, "app=web").is_empty() && pods_of(&c, "app=web").is_empty())
            .then_some(())
    });

    // Orphan: the ReplicaSet and pods stay, without an owner.
    ok(
        &c,
        &["apply", "-f", "-"],
        Some(&deployment("keep", "nginx:1.25", 2)),
    );
    ok(
        &c,
        &["rollout", "status", "deployment/keep", "--timeout=60s"],
        None,
    );
    ok(
        &c,
        &["delete", "deployment", "keep", "--cascade=orphan"],
        None,
    );
    wait_for("the orphaned ReplicaSet to lose its owner", || {
        let sets = replica_sets_of(&c, "app=keep");
        (sets.len() == 1 && sets[0]["metadata"]["ownerReferences"].is_null()).then_some(())
    });
    assert!(get_json(&c, &["get", "deployment", "keep"]).is_none());
    assert_eq!(pods_of(&c, "app=keep").len(), 2, "orphaned pods stay");
}

#[test]
fn service_endpoints_list_ready_pod_ips() {
    let c = start();
    ok(
        &c,
        &["apply", "-f", "-"],
        Some(&deployment("api", "nginx:1.25", 2)),
    );
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  selector: {app: api}\n  ports: [{name: web, port: 80, targetPort: http}]\n";
    ok(&c, &["apply", "-f", "-"], Some(svc));
    ok(
        &c,
        &["rollout", "status", "deployment/api", "--timeout=60s"],
        None,
    );

    let pod_ips = |c: &Cluster| -> BTreeSet<String> {
        pods_of(c, "app=api")
            .iter()
            .filter(|p| condition(p, "Ready") == Some("True"))
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect()
    };
    let want = pod_ips(&c);
    assert_eq!(want.len(), 2);
    wait_for("Endpoints with both pod IPs", || {
        let ep = get_json(&c, &["get", "endpoints", "api"])?;
        let subset = &ep["subsets"][0];
        let ips: BTreeSet<String> = subset["addresses"]
            .as_array()?
            .iter()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        // The named targetPort resolves to the container port.
        (ips == want && subset["ports"][0]["port"] == 8080 && subset["ports"][0]["name"] == "web")
            .then_some(())
    });
    wait_for("an EndpointSlice with both pod IPs, ready", || {
        let slices = get_json(
            &c,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=api",
            ],
        )?;
        let slice = items(&slices).into_iter().next()?;
        let eps = slice["endpoints"].as_array()?;
        let ips: BTreeSet<String> = eps
            .iter()
            .filter(|e| e["conditions"]["ready"] == true)
            .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
            .collect();
        (ips == want && slice["ports"][0]["port"] == 8080 && slice["addressType"] == "IPv4")
            .then_some(())
    });

    // Scaling to 3 adds the new pod's IP once it is ready.
    ok(&c, &["scale", "deployment/api", "--replicas=3"], None);
    ok(
        &c,
        &["rollout", "status", "deployment/api", "--timeout=60s"],
        None,
    );
    let want = pod_ips(&c);
    assert_eq!(want.len(), 3);
    wait_for("Endpoints with three pod IPs", || {
        let ep = get_json(&c, &["get", "endpoints", "api"])?;
        let ips: BTreeSet<String> = ep["subsets"][0]["addresses"]
            .as_array()?
            .iter()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        (ips == want).then_some(())
    });
}

/// The controller's EndpointSlices of Service `svc`: name -> (IPs, all endpoints ready).
fn slices_of(c: &Cluster, svc: &str) -> Option<BTreeMap<String, (BTreeSet<String>, bool)>> {
    let label = format!("kubernetes.io/service-name={svc}");
    let list = get_json(c, &["get", "endpointslices", "-l", &label])?;
    let mut out = BTreeMap::new();
    for s in items(&list) {
        let name = s["metadata"]["name"].as_str()?.to_string();
        assert!(
            name.starts_with(&format!("{svc}-")) && name.len() == svc.len() + 6,
            "a generated name: {name}"
        );
        assert_eq!(
            s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(s["metadata"]["ownerReferences"][0]["name"], svc);
        assert_eq!(s["addressType"], "IPv4");
        let eps = s["endpoints"].as_array().cloned().unwrap_or_default();
        assert!(eps.len() <= 100, "{name} holds {} endpoints", eps.len());
        let ips: BTreeSet<String> = eps
            .iter()
            .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
            .collect();
        assert_eq!(ips.len(), eps.len(), "an IP twice in {name}");
        let ready = eps.iter().all(|e| e["conditions"]["ready"] == true);
        out.insert(name, (ips, ready));
    }
    Some(out)
}

fn ready_pod_ips(c: &Cluster, label: &str) -> BTreeSet<String> {
    pods_of(c, label)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| condition(p, "Ready") == Some("True"))
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn endpoint_slices_hold_at_most_100_endpoints_and_keep_them_in_place() {
    let c = start();
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: many}\nspec:\n  selector: {app: many}\n  ports: [{port: 80, targetPort: http}]\n";
    ok(&c, &["apply", "--validate=false", "-f", "-"], Some(svc));
    let placeholder = wait_for("an empty placeholder slice", || {
        let slices = slices_of(&c, "many")?;
        let (name, (ips, _)) = slices.iter().next()?;
        (slices.len() == 1 && ips.is_empty()).then(|| name.clone())
    });

    // No requests: 150 pods fit on three simulated nodes of 110 pods each.
    let deploy = deployment("many", "nginx:1.25", 150).replace(
        "        resources: {requests: {cpu: 100m, memory: 64Mi}}\n",
        "",
    );
    assert!(!deploy.contains("requests"));
    ok(&c, &["apply", "--validate=false", "-f", "-"], Some(&deploy));
    ok(
        &c,
        &["rollout", "status", "deployment/many", "--timeout=120s"],
        None,
    );
    let want = ready_pod_ips(&c, "app=many");
    assert_eq!(want.len(), 150);
    let layout = wait_for("150 ready endpoints in two slices", || {
        let slices = slices_of(&c, "many")?;
        let all: BTreeSet<String> = slices.values().flat_map(|(ips, _)| ips.clone()).collect();
        let count: usize = slices.values().map(|(ips, _)| ips.len()).sum();
        (slices.len() == 2 && count == 150 && all == want && slices.values().all(|(_, r)| *r))
            .then_some(slices)
    });
    assert!(
        layout.contains_key(&placeholder),
        "the placeholder is reused for endpoints rather than deleted: {:?}",
        layout.keys()
    );

    // Scaling down only takes endpoints out of their slices: slices are not repacked, so a
    // slice stays while it holds one of the 50 pods left.
    ok(&c, &["scale", "deployment/many", "--replicas=50"], None);
    wait_for("50 pods left", || {
        (pods_of(&c, "app=many").len() == 50).then_some(())
    });
    let kept = ready_pod_ips(&c, "app=many");
    assert_eq!(kept.len(), 50);
    let expected: BTreeMap<String, (BTreeSet<String>, bool)> = layout
        .iter()
        .map(|(name, (ips, _))| (name.clone(), (&kept & ips, true)))
        .filter(|(_, (ips, _))| !ips.is_empty())
        .collect();
    wait_for("the 50 endpoints left in the slices they were in", || {
        (slices_of(&c, "many")? == expected).then_some(())
    });

    // Without pods one empty slice stays, one of those that were there.
    ok(&c, &["scale", "deployment/many", "--replicas=0"], None);
    let last = wait_for("one empty slice", || {
        let slices = slices_of(&c, "many")?;
        let (name, (ips, _)) = slices.iter().next()?;
        (slices.len() == 1 && ips.is_empty()).then(|| name.clone())
    });
    assert!(expected.contains_key(&last), "{last} is new");
}

#[test]
fn unschedulable_pod_and_default_service_account() {
    let c = start();
    let big = "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources: {requests: {cpu: \"64\"}}\n";
    ok(&c, &["apply", "-f", "-"], Some(big));
    let msg = "0/3 nodes are available: 3 Insufficient cpu.";
    wait_for("a FailedScheduling event", || {
        let ev = get_json(
            &c,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=big",
            ],
        )?;
        items(&ev)
            .iter()
            .any(|e| {
                e["reason"] == "FailedScheduling"
                    && e["type"] == "Warning"
                    && e["message"].as_str().is_some_and(|m| m.starts_with(msg))
            })
            .then_some(())
    });
    let pod = get_json(&c, &["get", "pod", "big"]).unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(pod["spec"]["nodeName"].is_null());
    let cond = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "Unschedulable");
    assert!(cond["message"].as_str().unwrap().starts_with(msg), "{cond}");
    let describe = ok(&c, &["describe", "pod", "big"], None);
    assert!(describe.contains("FailedScheduling"), "{describe}");

    // A pod that fits is scheduled meanwhile.
    let small = big
        .replace("name: big", "name: small")
        .replace("\"64\"", "500m");
    ok(&c, &["apply", "-f", "-"], Some(&small));
    wait_for("the small pod to run", || {
        let p = get_json(&c, &["get", "pod", "small"])?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    let pod = get_json(&c, &["get", "pod", "big"]).unwrap();
    assert!(
        pod["spec"]["nodeName"].is_null(),
        "the big pod stays pending"
    );

    // A Deployment whose pod cannot be scheduled exceeds its progress deadline.
    let stuck = deployment("stuck", "nginx:1.25", 1)
        .replace("cpu: 100m", "cpu: \"64\"")
        .replace(
            "spec:\n  replicas:",
            "spec:\n  progressDeadlineSeconds: 2\n  replicas:",
        );
    ok(&c, &["apply", "-f", "-"], Some(&stuck));
    let (success, out, err) = kubectl(
        &c,
        &["rollout", "status", "deployment/stuck", "--timeout=60s"],
        None,
    );
    assert!(!success, "{out}");
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{out}{err}"
    );
    let d = get_json(&c, &["get", "deployment", "stuck"]).unwrap();
    assert_eq!(condition(&d, "Progressing"), Some("False"));
    assert_eq!(condition(&d, "Available"), Some("False"));

    // The garbage collector also follows owners of kinds it does not watch (a ConfigMap).
    ok(&c, &["create", "configmap", "owner"], None);
    let uid = get_json(&c, &["get", "configmap", "owner"]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let owned = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: owned\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}\nspec:\n  containers: [{{name: c, image: nginx}}]\n"
    );
    ok(&c, &["apply", "-f", "-"], Some(&owned));
    wait_for("the owned pod to run", || {
        let p = get_json(&c, &["get", "pod", "owned"])?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    ok(&c, &["delete", "configmap", "owner"], None);
    wait_for("the ConfigMap's pod to be collected", || {
        get_json(&c, &["get", "pod", "owned"])
            .is_none()
            .then_some(())
    });

    ok(&c, &["create", "namespace", "team-a"], None);
    wait_for("the default ServiceAccount in team-a", || {
        get_json(&c, &["get", "serviceaccount", "default", "-n", "team-a"]).map(|_| ())
    });
}

fn image_of_rs(rs: &Value) -> &str {
    rs["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
}

/// The ReplicaSet of `label` running `image`, once it has `replicas` and every other has 0.
fn wait_rolled_to(c: &Cluster, label: &str, image: &str, replicas: i64) -> Value {
    wait_for(&format!("{label} rolled to {image}"), || {
        let sets = replica_sets_of(c, label);
        let new = sets.iter().find(|r| image_of_rs(r) == image)?;
        let others_empty = sets
            .iter()
            .filter(|r| image_of_rs(r) != image)
            .all(|r| r["spec"]["replicas"] == 0);
        (new["spec"]["replicas"] == replicas
            && new["status"]["readyReplicas"] == replicas
            && others_empty)
            .then(|| new.clone())
    })
}

#[test]
fn rollout_history_undo_pause_resume_recreate_and_foreground_delete() {
    let c = start();
    ok(
        &c,
        &["apply", "-f", "-"],
        Some(&deployment("app", "nginx:1.25", 2)),
    );
    ok(
        &c,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
        None,
    );
    ok(
        &c,
        &["set", "image", "deployment/app", "main=nginx:1.26"],
        None,
    );
    ok(
        &c,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
        None,
    );
    let history = ok(&c, &["rollout", "history", "deployment/app"], None);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // undo: the first ReplicaSet comes back with revision 3.
    ok(&c, &["rollout", "undo", "deployment/app"], None);
    ok(
        &c,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
        None,
    );
    let rs = wait_rolled_to(&c, "app=app", "nginx:1.25", 2);
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    ok(
        &c,
        &["rollout", "undo", "deployment/app", "--to-revision=2"],
        None,
    );
    ok(
        &c,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
        None,
    );
    wait_rolled_to(&c, "app=app", "nginx:1.26", 2);

    // pause: a template change is observed but not rolled out until resume.
    ok(&c, &["rollout", "pause", "deployment/app"], None);
    ok(
        &c,
        &["set", "image", "deployment/app", "main=nginx:1.27"],
        None,
    );
    wait_for("the paused deployment to observe its generation", || {
        let d = get_json(&c, &["get", "deployment", "app"])?;
        let progressing = d["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Progressing")?
            .clone();
        (d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && progressing["reason"] == "DeploymentPaused")
            .then_some(())
    });
    assert!(
        !replica_sets_of(&c, "app=app")
            .iter()
            .any(|r| image_of_rs(r) == "nginx:1.27"),
        "no new ReplicaSet while paused"
    );
    ok(&c, &["rollout", "resume", "deployment/app"], None);
    ok(
        &c,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
        None,
    );
    wait_rolled_to(&c, "app=app", "nginx:1.27", 2);

    // Foreground: once kubectl sees the Deployment gone, its ReplicaSets and pods are gone too.
    ok(
        &c,
        &[
            "delete",
            "deployment",
            "app",
            "--cascade=foreground",
            "--timeout=60s",
        ],
        None,
    );
    assert!(replica_sets_of(&c, "app=app").is_empty());
    assert!(pods_of(&c, "app=app").is_empty());

    // Recreate: old pods are all gone before any new pod exists.
    let recreate = deployment("rec", "nginx:1.25", 2).replace(
        "    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n",
        "    type: Recreate\n",
    );
    ok(&c, &["apply", "-f", "-"], Some(&recreate));
    ok(
        &c,
        &["rollout", "status", "deployment/rec", "--timeout=60s"],
        None,
    );
    let old: BTreeSet<String> = pods_of(&c, "app=rec")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let (mut watcher, seen) = watch_pods(&c, "app=rec");
    wait_for("the watch to list 2 pods", || {
        (seen.lock().unwrap().pods.len() == 2).then_some(())
    });
    let mixed = Arc::new(Mutex::new(false));
    let stop = Arc::new(Mutex::new(false));
    let checker = {
        let (seen, mixed, stop, old) = (seen.clone(), mixed.clone(), stop.clone(), old.clone());
        std::thread::spawn(move || {
            while !*stop.lock().unwrap() {
                let s = seen.lock().unwrap();
                let has_old = s.pods.keys().any(|n| old.contains(n));
                let has_new = s.pods.keys().any(|n| !old.contains(n));
                if has_old && has_new {
                    *mixed.lock().unwrap() = true;
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    ok(
        &c,
        &["set", "image", "deployment/rec", "main=nginx:1.26"],
        None,
    );
    ok(
        &c,
        &["rollout", "status", "deployment/rec", "--timeout=60s"],
        None,
    );
    wait_rolled_to(&c, "app=rec", "nginx:1.26", 2);
    *stop.lock().unwrap() = true;
    checker.join().unwrap();
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(
        !*mixed.lock().unwrap(),
        "Recreate ran old and new pods at once"
    );
}

/// (spec.replicas, status.replicas, desired-replicas, max-replicas) of `label`'s ReplicaSet
/// running `image`.
fn rs_sizes(c: &Cluster, label: &str, image: &str) -> Option<(i64, i64, String, String)> {
    let sets = replica_sets_of(c, label);
    let rs = sets.iter().find(|r| image_of_rs(r) == image)?;
    let ann = &rs["metadata"]["annotations"];
    Some((
        rs["spec"]["replicas"].as_i64()?,
        rs["status"]["replicas"].as_i64().unwrap_or(0),
        ann["deployment.kubernetes.io/desired-replicas"]
            .as_str()?
            .to_string(),
        ann["deployment.kubernetes.io/max-replicas"]
            .as_str()?
            .to_string(),
    ))
}

/// Waits until the ReplicaSets running `old` and `new` have these (spec and status) replicas,
/// both annotated with the Deployment's size and max size.
fn wait_split(c: &Cluster, old: (&str, i64), new: (&str, i64), desired: i64, max: i64) {
    let want = |n: i64| (n, n, desired.to_string(), max.to_string());
    wait_for(&format!("{old:?} / {new:?} for {desired}"), || {
        (rs_sizes(c, "app=prop", old.0)? == want(old.1)
            && rs_sizes(c, "app=prop", new.0)? == want(new.1))
        .then_some(())
    });
}

#[test]
fn resizing_a_stalled_rollout_scales_both_replica_sets_proportionally() {
    let c = start();
    let manifest = deployment("prop", "nginx:1.25", 10).replace(
        "rollingUpdate: {maxSurge: 1, maxUnavailable: 0}",
        "rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}",
    );
    ok(&c, &["apply", "-f", "-"], Some(&manifest));
    ok(
        &c,
        &["rollout", "status", "deployment/prop", "--timeout=60s"],
        None,
    );
    // A new image whose pods never become ready: 10 replicas, maxSurge 3, maxUnavailable 2.
    // The new set grows to 3 (13 pods), the old shrinks to 8 (8 available), the new grows to 5
    // (13 pods), and then nothing may move: 8 available is the minimum.
    let stalled = manifest
        .replace("nginx:1.25", "nginx:1.26")
        .replace("initialDelaySeconds: 1", "initialDelaySeconds: 3600");
    ok(&c, &["apply", "-f", "-"], Some(&stalled));
    wait_split(&c, ("nginx:1.25", 8), ("nginx:1.26", 5), 10, 13);

    // To 20: maxSurge 5, 25 allowed, 12 more, shared by what each had of 13, largest first:
    // old round(8 * 25 / 13) = 15, new round(5 * 25 / 13) = 10. The rollout then stays
    // stalled: 25 pods is the surge limit and 15 available the minimum.
    ok(&c, &["scale", "deployment/prop", "--replicas=20"], None);
    wait_split(&c, ("nginx:1.25", 15), ("nginx:1.26", 10), 20, 25);

    // Paused, down to 4: maxSurge 1, 5 allowed, 20 fewer, largest first: old
    // round(15 * 5 / 25) = 3, new round(10 * 5 / 25) = 2.
    ok(&c, &["rollout", "pause", "deployment/prop"], None);
    ok(&c, &["scale", "deployment/prop", "--replicas=4"], None);
    wait_split(&c, ("nginx:1.25", 3), ("nginx:1.26", 2), 4, 5);
    let d = get_json(&c, &["get", "deployment", "prop"]).unwrap();
    assert_eq!(d["status"]["replicas"], 5, "{}", d["status"]);
    assert_eq!(d["status"]["updatedReplicas"], 2, "{}", d["status"]);
    let events = ok(
        &c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=prop",
        ],
        None,
    );
    assert!(
        events.contains("Scaled up replica set") && events.contains("to 15 from 8"),
        "{events}"
    );
}

/// `skiff server` without its controllers and scheduler, which run as separate processes.
#[test]
fn controllers_and_scheduler_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
        .args(["--disable-controllers", "--disable-scheduler", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("skiff is ready"), "{line}");
    let kubeconfig = dir.path().join("admin.kubeconfig").display().to_string();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .args(["--kubeconfig", &kubeconfig])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Two controller managers: one leads, the other waits for the Lease.
    let mut controllers = vec![run(&["controllers"]), run(&["controllers"])];
    let mut scheduler = run(&["scheduler"]);
    let sim = run(&["sim", "nodes", "--count", "3", "--lease-interval", "1"]);
    let c = Cluster {
        server,
        sim,
        kubeconfig: kubeconfig.clone(),
        cache: tempfile::tempdir().unwrap(),
        _dir: dir,
    };
    ok(
        &c,
        &["apply", "-f", "-"],
        Some(&deployment("web", "nginx:1.25", 3)),
    );
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
        None,
    );
    assert_eq!(pods_of(&c, "app=web").len(), 3);

    // Each simulated node holds a Lease that it keeps renewing.
    let renewed = |c: &Cluster| -> Option<BTreeMap<String, String>> {
        let leases = get_json(c, &["get", "leases", "-n", "kube-node-lease"])?;
        Some(
            items(&leases)
                .iter()
                .map(|l| {
                    (
                        l["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        l["spec"]["renewTime"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        )
    };
    let first = wait_for("3 node leases", || renewed(&c).filter(|l| l.len() == 3));
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        ["sim-0", "sim-1", "sim-2"]
    );
    wait_for("the leases to be renewed", || {
        let now = renewed(&c)?;
        now.iter()
            .all(|(n, t)| first.get(n) != Some(t))
            .then_some(())
    });
    // Nodes got /24 pod CIDRs from 10.42.0.0/16, and pod IPs come from them.
    let nodes = get_json(&c, &["get", "nodes"]).unwrap();
    let cidrs: BTreeSet<String> = items(&nodes)
        .iter()
        .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_string))
        .collect();
    assert_eq!(cidrs.len(), 3, "{cidrs:?}");
    assert!(cidrs
        .iter()
        .all(|c| c.starts_with("10.42.") && c.ends_with(".0/24")));

    // Leader election: the holder of kube-system/kube-controller-manager is one of the two;
    // once it dies the other takes over and new Deployments still roll out.
    let holder = |c: &Cluster| -> Option<(String, i64)> {
        let l = get_json(
            c,
            &[
                "get",
                "lease",
                "kube-controller-manager",
                "-n",
                "kube-system",
            ],
        )?;
        Some((
            l["spec"]["holderIdentity"].as_str()?.to_string(),
            l["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
        ))
    };
    let (leader, transitions) = holder(&c).expect("controller manager lease");
    let idx = controllers
        .iter()
        .position(|p| leader.ends_with(&format!("_controllers-{}", p.id())))
        .unwrap_or_else(|| panic!("lease held by {leader:?}, not by a controllers process"));
    let mut dead = controllers.remove(idx);
    let _ = dead.kill();
    let _ = dead.wait();
    ok(
        &c,
        &["apply", "-f", "-"],
        Some(&deployment("after", "nginx:1.25", 2)),
    );
    ok(
        &c,
        &["rollout", "status", "deployment/after", "--timeout=60s"],
        None,
    );
    let (new_leader, new_transitions) = holder(&c).unwrap();
    assert!(new_leader.ends_with(&format!("_controllers-{}", controllers[0].id())));
    assert_eq!(new_transitions, transitions + 1);

    for mut p in controllers {
        let _ = p.kill();
        let _ = p.wait();
    }
    let _ = scheduler.kill();
    let _ = scheduler.wait();
}
