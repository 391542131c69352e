//! End-to-end: StatefulSet, DaemonSet, Job and CronJob controllers in a real `skiff server`,
//! with simulated nodes (`skiff sim nodes`) and the real kubectl. Job pods finish through the
//! simulator's `sim.skiff.dev/exit-after-seconds` / `sim.skiff.dev/exit-code` annotations.

mod common;

use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cluster {
    server: Child,
    /// Simulated node processes, killed on drop.
    sims: Vec<Child>,
    /// Background `kubectl get -w` processes, killed on drop.
    watches: Vec<Child>,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.watches.iter_mut().chain(self.sims.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        let mut c = Cluster {
            server,
            sims: Vec::new(),
            watches: Vec::new(),
            kubeconfig,
            _dir: dir,
        };
        c.add_nodes(0, 3);
        c.wait_ready_nodes(3);
        c
    }

    /// `skiff sim nodes --start FIRST --count N` in the background.
    fn add_nodes(&mut self, first: usize, count: usize) {
        let sim = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["sim", "nodes", "--kubeconfig", &self.kubeconfig])
            .args(["--start", &first.to_string(), "--count", &count.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skiff sim nodes");
        self.sims.push(sim);
    }

    fn wait_ready_nodes(&self, n: usize) {
        wait_for(&format!("{n} Ready nodes"), 60, || {
            let nodes = self.get_json(&["get", "nodes"])?;
            let ready = items(&nodes)
                .iter()
                .filter(|n| condition(n, "Ready") == Some("True"))
                .count();
            (ready == n).then_some(())
        });
    }

    /// Runs kubectl with its own cache dir.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        // A fresh cache per call, as a user's first kubectl run.
        let cache = tempfile::tempdir().unwrap();
        common::run_kubectl("kubectl", &self.kubeconfig, cache.path(), args, stdin)
    }

    /// kubectl that must succeed.
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

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.get_json(&["get", "pods", "-l", selector])
            .map(|l| items(&l))
            .unwrap_or_default()
    }

    /// `kubectl get pods -l SELECTOR -w` in the background: every event in order.
    fn watch_pods(&mut self, selector: &str) -> Arc<Mutex<Vec<(String, Value)>>> {
        let cache = tempfile::tempdir().unwrap().keep();
        let mut child = Command::new("kubectl")
            .args(["--kubeconfig", &self.kubeconfig, "--cache-dir"])
            .arg(&cache)
            .args(["get", "pods", "-l", selector, "-w", "--output-watch-events"])
            .args(["-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let ev = events.clone();
        std::thread::spawn(move || {
            let stream =
                serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter::<Value>();
            for e in stream.flatten() {
                let t = e["type"].as_str().unwrap_or("").to_string();
                ev.lock().unwrap().push((t, e["object"].clone()));
            }
            let _ = std::fs::remove_dir_all(cache);
        });
        self.watches.push(child);
        // The watch's initial list must be in before the test acts.
        std::thread::sleep(Duration::from_millis(500));
        events
    }
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?["status"]
        .as_str()
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn active(p: &Value) -> bool {
    !matches!(phase(p), "Succeeded" | "Failed") && p["metadata"]["deletionTimestamp"].is_null()
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

const STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: nginx:1.27
        readinessProbe: {initialDelaySeconds: 1, httpGet: {path: /, port: 80}}
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// Index of the first event matching `f`.
fn first(events: &[(String, Value)], f: impl Fn(&str, &Value) -> bool) -> Option<usize> {
    events.iter().position(|(t, o)| f(t, o))
}

#[test]
fn statefulset_creates_in_order_scales_down_from_the_top_keeps_claims_and_rolls() {
    let mut c = Cluster::start();
    let events = c.watch_pods("app=web");
    c.ok(&["apply", "-f", "-"], Some(STATEFULSET));
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"], None);

    // Each pod appeared only after its predecessor was Ready (watch events are in order).
    {
        let ev = events.lock().unwrap();
        for i in 1..3 {
            let created = first(&ev, |_, o| name(o) == format!("web-{i}")).unwrap();
            let prev_ready = first(&ev, |_, o| {
                name(o) == format!("web-{}", i - 1) && condition(o, "Ready") == Some("True")
            })
            .unwrap_or_else(|| panic!("web-{} never Ready", i - 1));
            assert!(
                prev_ready < created,
                "web-{i} created before web-{} was Ready",
                i - 1
            );
        }
    }
    let pods = c.pods("app=web");
    let mut names: Vec<&str> = pods.iter().map(name).collect();
    names.sort();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    for p in &pods {
        let n = name(p);
        assert_eq!(p["spec"]["hostname"], n);
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            n
        );
        assert_eq!(
            p["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            &n[4..]
        );
        assert!(p["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("web-")));
        let claim = p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "www")
            .unwrap();
        assert_eq!(
            claim["persistentVolumeClaim"]["claimName"],
            format!("www-{n}")
        );
    }
    let sts = c.get_json(&["get", "sts", "web"]).unwrap();
    assert_eq!(sts["status"]["readyReplicas"], 3);
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    let revs = c.get_json(&["get", "controllerrevisions"]).unwrap();
    assert_eq!(items(&revs).len(), 1);
    for n in ["www-web-0", "www-web-1", "www-web-2"] {
        c.ok(&["get", "pvc", n], None);
    }

    // Scale down: web-2 goes, web-0 and web-1 stay, the claim stays.
    let before = events.lock().unwrap().len();
    c.ok(&["scale", "sts/web", "--replicas=2"], None);
    wait_for("web-2 gone", 30, || {
        let pods = c.pods("app=web");
        (pods.len() == 2 && pods.iter().all(|p| name(p) != "web-2")).then_some(())
    });
    {
        let ev = events.lock().unwrap();
        let later = &ev[before..];
        assert!(later
            .iter()
            .any(|(t, o)| t == "DELETED" && name(o) == "web-2"));
        assert!(
            !later.iter().any(|(t, o)| name(o) != "web-2"
                && (t == "DELETED" || !o["metadata"]["deletionTimestamp"].is_null())),
            "only web-2 is removed"
        );
    }
    c.ok(&["get", "pvc", "www-web-2"], None);

    // Rolling update: web-1 is replaced before web-0, and the rollout completes.
    let before = events.lock().unwrap().len();
    c.ok(&["set", "image", "sts/web", "main=nginx:1.28"], None);
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"], None);
    let ev = events.lock().unwrap();
    let later = &ev[before..];
    let deleted = |n: &str| {
        first(later, |_, o| {
            name(o) == n && !o["metadata"]["deletionTimestamp"].is_null()
        })
        .unwrap_or_else(|| panic!("{n} was not replaced"))
    };
    assert!(deleted("web-1") < deleted("web-0"), "highest ordinal first");
    drop(ev);
    for p in c.pods("app=web") {
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:1.28");
    }
    let sts = c.get_json(&["get", "sts", "web"]).unwrap();
    assert_eq!(sts["status"]["updatedReplicas"], 2);
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );

    // Undo goes back to the first revision's template (kubectl patches it from the
    // ControllerRevision).
    let history = c.ok(&["rollout", "history", "sts/web"], None);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    c.ok(&["rollout", "undo", "sts/web"], None);
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"], None);
    for p in c.pods("app=web") {
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:1.27");
    }

    // Deleting the set takes its pods (garbage collector) and leaves the claims.
    c.ok(&["delete", "sts", "web"], None);
    wait_for("the set's pods deleted", 30, || {
        c.pods("app=web").is_empty().then_some(())
    });
    let claims = c.get_json(&["get", "pvc"]).unwrap();
    assert_eq!(items(&claims).len(), 3);
    for claim in items(&claims) {
        assert!(
            claim["metadata"]["ownerReferences"].is_null(),
            "Retain leaves claims unowned: {claim}"
        );
    }
}

const STATEFULSET_DELETE_CLAIMS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Delete}
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: main
        image: nginx:1.27
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// Names of the claims in the default namespace, sorted.
fn claim_names(c: &Cluster) -> Vec<String> {
    let claims = c.get_json(&["get", "pvc"]).unwrap();
    let mut names: Vec<String> = items(&claims).iter().map(|o| name(o).to_string()).collect();
    names.sort();
    names
}

#[test]
fn statefulset_claims_go_with_scale_down_and_set_deletion_under_delete_policy() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", "-"], Some(STATEFULSET_DELETE_CLAIMS));
    c.ok(&["rollout", "status", "sts/db", "--timeout=60s"], None);
    let sts = c.get_json(&["get", "sts", "db"]).unwrap();
    let set_uid = sts["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(claim_names(&c), ["data-db-0", "data-db-1", "data-db-2"]);
    // In range, whenDeleted=Delete: each claim is controlled by the set, not by its pod.
    wait_for("claims owned by the set", 20, || {
        let claims = c.get_json(&["get", "pvc"]).unwrap();
        items(&claims)
            .iter()
            .all(|cl| {
                let refs = &cl["metadata"]["ownerReferences"];
                refs.as_array().is_some_and(|r| r.len() == 1)
                    && refs[0]["kind"] == "StatefulSet"
                    && refs[0]["uid"] == set_uid.as_str()
                    && refs[0]["controller"] == true
            })
            .then_some(())
    });

    // Scale to 1: the claims of ordinals 1 and 2 go after their pods; data-db-0 stays.
    c.ok(&["scale", "sts/db", "--replicas=1"], None);
    wait_for("claims of db-1 and db-2 deleted", 30, || {
        (claim_names(&c) == ["data-db-0"]).then_some(())
    });
    let pods = c.pods("app=db");
    assert_eq!(pods.iter().map(name).collect::<Vec<_>>(), ["db-0"]);
    let claim = c.get_json(&["get", "pvc", "data-db-0"]).unwrap();
    assert_eq!(
        claim["metadata"]["ownerReferences"][0]["uid"],
        set_uid.as_str()
    );

    // A policy change updates existing claims: whenDeleted=Retain drops the set's ref, and
    // Delete puts it back.
    let set_policy = |when_deleted: &str| {
        let patch = format!(
            r#"{{"spec":{{"persistentVolumeClaimRetentionPolicy":{{"whenScaled":"Delete","whenDeleted":"{when_deleted}"}}}}}}"#
        );
        c.ok(&["patch", "sts", "db", "--type=merge", "-p", &patch], None);
    };
    let refs_of_claim = || {
        let claim = c.get_json(&["get", "pvc", "data-db-0"]).unwrap();
        claim["metadata"]["ownerReferences"].clone()
    };
    set_policy("Retain");
    wait_for("the set's ref removed", 20, || {
        refs_of_claim().is_null().then_some(())
    });
    set_policy("Delete");
    wait_for("the set's ref back", 20, || {
        (refs_of_claim()[0]["uid"] == set_uid.as_str()).then_some(())
    });

    // Deleting the set takes the remaining claim too.
    c.ok(&["delete", "sts", "db"], None);
    wait_for("the last claim deleted", 30, || {
        (claim_names(&c).is_empty() && c.pods("app=db").is_empty()).then_some(())
    });
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - name: main
        image: busybox
        resources: {requests: {cpu: 10m}}
"#;

/// node name -> number of live pods of the DaemonSet.
fn pods_by_node(c: &Cluster) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for p in c.pods("app=agent") {
        if p["metadata"]["deletionTimestamp"].is_null() {
            let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            *m.entry(node).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn daemonset_runs_one_pod_per_node_follows_new_nodes_and_skips_tainted_ones() {
    let mut c = Cluster::start();
    c.ok(
        &["taint", "nodes", "sim-2", "dedicated=db:NoSchedule"],
        None,
    );
    c.ok(&["apply", "-f", "-"], Some(DAEMONSET));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"], None);
    let want: std::collections::BTreeMap<String, usize> =
        [("sim-0".to_string(), 1), ("sim-1".to_string(), 1)].into();
    assert_eq!(pods_by_node(&c), want, "none on the tainted sim-2");
    let ds = c.get_json(&["get", "ds", "agent"]).unwrap();
    assert_eq!(ds["status"]["desiredNumberScheduled"], 2);
    assert_eq!(ds["status"]["numberReady"], 2);
    // Pods are pinned by node affinity and tolerate what upstream adds.
    let pod = &c.pods("app=agent")[0];
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchFields"][0]["key"], "metadata.name");
    let tols = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(tols
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));

    // A node added later gets its pod.
    c.add_nodes(3, 1);
    c.wait_ready_nodes(4);
    wait_for("a pod on sim-3", 30, || {
        let m = pods_by_node(&c);
        (m.get("sim-3") == Some(&1)).then_some(())
    });
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"], None);
    let m = pods_by_node(&c);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m.values().all(|n| *n == 1), "{m:?}");
    assert!(!m.contains_key("sim-2"));

    // Removing the taint lets a pod onto sim-2.
    c.ok(&["taint", "nodes", "sim-2", "dedicated-"], None);
    wait_for("a pod on sim-2", 30, || {
        (pods_by_node(&c).get("sim-2") == Some(&1)).then_some(())
    });

    // A rolling update replaces every pod, one node at a time (maxUnavailable 1).
    c.ok(&["set", "image", "ds/agent", "main=busybox:1.37"], None);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"], None);
    let pods = c.pods("app=agent");
    let live: Vec<_> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(live.len(), 4);
    assert!(live
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.37"));
    let ds = c.get_json(&["get", "ds", "agent"]).unwrap();
    assert_eq!(ds["status"]["updatedNumberScheduled"], 4);
    let history = c.ok(&["rollout", "history", "ds/agent"], None);
    assert!(history.contains('1') && history.contains('2'), "{history}");
}

fn job(name: &str, completions: u32, parallelism: u32, backoff: u32, code: u32) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  completions: {completions}
  parallelism: {parallelism}
  backoffLimit: {backoff}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{sim.skiff.dev/exit-after-seconds: "1", sim.skiff.dev/exit-code: "{code}"}}
    spec:
      restartPolicy: Never
      containers: [{{name: main, image: busybox, command: [sh, -c, "exit {code}"]}}]
"#
    )
}

#[test]
fn jobs_complete_within_parallelism_and_fail_at_the_backoff_limit() {
    let mut c = Cluster::start();
    let events = c.watch_pods("app=pi");
    c.ok(&["apply", "-f", "-"], Some(&job("pi", 5, 2, 6, 0)));
    c.ok(&["apply", "-f", "-"], Some(&job("broken", 1, 1, 1, 3)));
    // Pods that never exit, and a Job deleted a second after it finishes.
    c.ok(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: batch/v1
kind: Job
metadata: {name: slow}
spec:
  activeDeadlineSeconds: 2
  template:
    metadata: {labels: {app: slow}}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  template:
    metadata:
      labels: {app: indexed}
      annotations: {sim.skiff.dev/exit-after-seconds: "1"}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["true"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: brief}
spec:
  ttlSecondsAfterFinished: 1
  template:
    metadata:
      annotations: {sim.skiff.dev/exit-after-seconds: "1"}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["true"]}]
"#,
        ),
    );

    c.ok(
        &[
            "wait",
            "--for=condition=Complete",
            "job/pi",
            "--timeout=60s",
        ],
        None,
    );
    let j = c.get_json(&["get", "job", "pi"]).unwrap();
    assert_eq!(j["status"]["succeeded"], 5);
    assert!(j["status"]["completionTime"].is_string());
    assert!(j["status"]["startTime"].is_string());
    let pods = c.pods("app=pi");
    assert_eq!(pods.len(), 5);
    assert!(pods.iter().all(|p| phase(p) == "Succeeded"));
    for p in &pods {
        let l = &p["metadata"]["labels"];
        assert_eq!(l["batch.kubernetes.io/job-name"], "pi", "{l}");
        assert_eq!(l["job-name"], "pi", "{l}");
    }
    // Never more than two running at once, as the watch saw it.
    {
        let ev = events.lock().unwrap();
        let mut live = std::collections::BTreeMap::new();
        let mut max = 0;
        for (t, o) in ev.iter() {
            if t == "DELETED" || !active(o) {
                live.remove(name(o));
            } else {
                live.insert(name(o).to_string(), ());
            }
            max = max.max(live.len());
        }
        assert_eq!(max, 2, "parallelism 2 ({} events)", ev.len());
    }

    // The failing Job: two failed pods exceed backoffLimit 1 (the second after upstream's 10 s
    // backoff).
    let failed = wait_for("job/broken Failed", 60, || {
        let j = c.get_json(&["get", "job", "broken"])?;
        (condition(&j, "Failed") == Some("True")).then_some(j)
    });
    let cond = failed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(cond["reason"], "BackoffLimitExceeded");
    assert_eq!(failed["status"]["failed"], 2);
    assert_eq!(c.pods("app=broken").len(), 2);
    let events = c.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=broken",
        ],
        None,
    );
    assert!(events.contains("BackoffLimitExceeded"), "{events}");

    let slow = wait_for("job/slow Failed", 30, || {
        let j = c.get_json(&["get", "job", "slow"])?;
        (condition(&j, "Failed") == Some("True")).then_some(j)
    });
    let cond = slow["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(cond["reason"], "DeadlineExceeded");
    wait_for("the deadline's pod deleted", 30, || {
        c.pods("app=slow").is_empty().then_some(())
    });
    c.ok(
        &[
            "wait",
            "--for=condition=Complete",
            "job/indexed",
            "--timeout=30s",
        ],
        None,
    );
    let j = c.get_json(&["get", "job", "indexed"]).unwrap();
    assert_eq!(j["status"]["completedIndexes"], "0-2");
    let mut indexes: Vec<String> = c
        .pods("app=indexed")
        .iter()
        .map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    wait_for("job/brief deleted after its TTL", 30, || {
        let (found, _, err) = c.kubectl(&["get", "job", "brief"], None);
        (!found && err.contains("NotFound")).then_some(())
    });
}

fn policy_job(name: &str, backoff: u32, code: u32, action: &str, restart: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  parallelism: 1
  backoffLimit: {backoff}
  podFailurePolicy:
    rules:
    - action: {action}
      onExitCodes: {{containerName: main, operator: In, values: [{code}]}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{sim.skiff.dev/exit-after-seconds: "1", sim.skiff.dev/exit-code: "{code}"}}
    spec:
      restartPolicy: {restart}
      containers: [{{name: main, image: busybox, command: [sh, -c, "exit {code}"]}}]
"#
    )
}

#[test]
fn pod_failure_policy_fails_the_job_at_once_or_ignores_the_failure() {
    let c = Cluster::start();
    // Upstream's validation: podFailurePolicy needs restartPolicy Never.
    let (ok, _, err) = c.kubectl(
        &["apply", "-f", "-"],
        Some(&policy_job("bad", 6, 42, "FailJob", "OnFailure")),
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("only \"Never\" is supported when podFailurePolicy is specified"),
        "{err}"
    );
    let bad_rule = policy_job("bad", 6, 0, "FailIndex", "Never").replace(
        "\n      onExitCodes: {containerName: main, operator: In, values: [0]}",
        "",
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", "-"], Some(&bad_rule));
    assert!(!ok, "{err}");
    for e in [
        r#"spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set"#,
        "spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
    ] {
        assert!(err.contains(e), "{err}");
    }
    c.ok(
        &["apply", "-f", "-"],
        Some(&policy_job("fatal", 6, 42, "FailJob", "Never")),
    );
    c.ok(
        &["apply", "-f", "-"],
        Some(&policy_job("flaky", 0, 3, "Ignore", "Never")),
    );

    // The first pod exits 42: the Job fails without the six retries (the first would come
    // after a 10 s backoff).
    let failed = wait_for("job/fatal Failed", 20, || {
        let j = c.get_json(&["get", "job", "fatal"])?;
        (condition(&j, "Failed") == Some("True")).then_some(j)
    });
    let pods = c.pods("app=fatal");
    assert_eq!(pods.len(), 1, "no retry after a FailJob match");
    let pod = name(&pods[0]).to_string();
    let conds = failed["status"]["conditions"].as_array().unwrap();
    for t in ["FailureTarget", "Failed"] {
        let cond = conds.iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(cond["reason"], "PodFailurePolicy", "{cond}");
        assert_eq!(
            cond["message"],
            format!(
                "Container main for pod default/{pod} failed with exit code 42 matching FailJob rule at index 0"
            ),
            "{cond}"
        );
    }
    assert_eq!(failed["status"]["failed"], 1);
    let events = c.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=fatal",
        ],
        None,
    );
    assert!(events.contains("PodFailurePolicy"), "{events}");

    // Ignored failures do not count against backoffLimit 0, nor delay the replacement.
    wait_for("three ignored failures of job/flaky", 30, || {
        let failed = c
            .pods("app=flaky")
            .iter()
            .filter(|p| phase(p) == "Failed")
            .count();
        (failed >= 3).then_some(())
    });
    let j = c.get_json(&["get", "job", "flaky"]).unwrap();
    assert_eq!(condition(&j, "Failed"), None, "{}", j["status"]);
    assert_eq!(j["status"]["failed"], 0, "{}", j["status"]);
}

#[test]
fn indexed_job_completes_when_its_success_policy_is_met() {
    let c = Cluster::start();
    c.ok(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: batch/v1
kind: Job
metadata: {name: leader}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 1
  successPolicy:
    rules: [{succeededIndexes: "0"}]
  template:
    metadata:
      labels: {app: leader}
      annotations: {sim.skiff.dev/exit-after-seconds: "1"}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["true"]}]
"#,
        ),
    );
    c.ok(
        &[
            "wait",
            "--for=condition=Complete",
            "job/leader",
            "--timeout=30s",
        ],
        None,
    );
    let j = c.get_json(&["get", "job", "leader"]).unwrap();
    let conds = j["status"]["conditions"].as_array().unwrap();
    for t in ["SuccessCriteriaMet", "Complete"] {
        let cond = conds.iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(cond["reason"], "SuccessPolicy", "{cond}");
        assert_eq!(cond["message"], "Matched rules at index 0", "{cond}");
    }
    assert_eq!(j["status"]["completedIndexes"], "0");
    assert_eq!(j["status"]["succeeded"], 1);
    assert_eq!(c.pods("app=leader").len(), 1, "indexes 1 and 2 never ran");
}

const CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {sim.skiff.dev/exit-after-seconds: "1"}
        spec:
          restartPolicy: OnFailure
          containers: [{name: main, image: busybox, command: [date]}]
"#;

#[test]
fn cronjob_creates_jobs_on_schedule() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", "-"], Some(CRONJOB));
    // The next whole minute is at most 60 s away.
    let job = wait_for("a Job from the CronJob", 75, || {
        let jobs = c.get_json(&["get", "jobs"])?;
        items(&jobs)
            .into_iter()
            .find(|j| j["metadata"]["ownerReferences"][0]["kind"] == "CronJob")
    });
    let jname = name(&job).to_string();
    let minutes: i64 = jname
        .strip_prefix("hello-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("job name {jname}"));
    let scheduled = job["metadata"]["annotations"]
        ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(scheduled.ends_with(":00Z"), "{scheduled}");
    c.ok(
        &[
            "wait",
            "--for=condition=Complete",
            &format!("job/{jname}"),
            "--timeout=30s",
        ],
        None,
    );
    let cj = wait_for("lastSuccessfulTime", 30, || {
        let cj = c.get_json(&["get", "cronjob", "hello"])?;
        cj["status"]["lastSuccessfulTime"].is_string().then_some(cj)
    });
    assert_eq!(cj["status"]["lastScheduleTime"], scheduled.as_str());
    assert!(cj["status"]["active"].is_null(), "{:?}", cj["status"]);
    assert!(
        minutes * 60
            <= std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
    );
    let events = c.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hello",
        ],
        None,
    );
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("SawCompletedJob"), "{events}");
}

/// The garbage collector handles the workload kinds' orphan and foreground deletions.
#[test]
fn workload_kinds_are_orphaned_and_deleted_in_the_foreground() {
    let c = Cluster::start();
    let sts = STATEFULSET.replace("replicas: 3", "replicas: 1");
    c.ok(&["apply", "-f", "-"], Some(&sts));
    wait_for("web-0 Running", 60, || {
        let pods = c.pods("app=web");
        (pods.len() == 1 && phase(&pods[0]) == "Running").then_some(())
    });
    // --cascade=orphan returns once the set is gone; its pod stays, owned by nobody.
    let (ok, out, err) = c.kubectl(
        &["delete", "sts", "web", "--cascade=orphan", "--timeout=30s"],
        None,
    );
    assert!(ok, "{out}{err}");
    let pods = c.pods("app=web");
    assert_eq!(pods.len(), 1);
    assert!(
        pods[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{}",
        pods[0]["metadata"]
    );
    // A Job deleted in the foreground takes its pods first.
    c.ok(
        &["apply", "-f", "-"],
        Some(
            &job("fg", 1, 1, 0, 0)
                .replace("exit-after-seconds: \"1\"", "exit-after-seconds: \"300\""),
        ),
    );
    wait_for("the job's pod", 60, || {
        let pods = c.pods("app=fg");
        (!pods.is_empty()).then_some(())
    });
    let (ok, out, err) = c.kubectl(
        &[
            "delete",
            "job",
            "fg",
            "--cascade=foreground",
            "--timeout=30s",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    wait_for("the job's pods gone", 30, || {
        c.pods("app=fg").is_empty().then_some(())
    });
}
