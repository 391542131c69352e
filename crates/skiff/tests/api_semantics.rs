//! Object semantics of the API, checked over HTTPS against a real `skiff server` with a client
//! library: generation, the status subresource, dryRun, finalizers, graceful pod deletion,
//! propagation policies, and the error responses for bodies and paths clients get wrong.

mod common;

use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

struct Api {
    client: kube::Client,
    _child: Killed,
    _dir: tempfile::TempDir,
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let child = Killed(common::spawn(dir.path()));
    let kc = Kubeconfig::read_from(dir.path().join("admin.kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Api {
        client: kube::Client::try_from(config).unwrap(),
        _child: child,
        _dir: dir,
    }
}

impl Api {
    /// Send a request; the status code and the body parsed as JSON (or as a string).
    async fn call(&self, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = http::Request::builder().method(method).uri(path);
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let resp = self
            .client
            .send(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect_bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (code, v)
    }

    async fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let ct = match method {
            "PATCH" => "application/merge-patch+json",
            _ => "application/json",
        };
        self.call(method, path, ct, serde_json::to_vec(body).unwrap())
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, "", Vec::new()).await
    }
}

/// ResourceQuotas have a spec, a status subresource and no controller in skiff, so nothing
/// but the test writes them.
const QUOTAS: &str = "/api/v1/namespaces/default/resourcequotas";

fn quota(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
        "spec": {"hard": {"pods": "1"}}})
}

#[tokio::test]
async fn generation_status_subresource_and_dry_run() {
    let api = start().await;
    let (code, d) = api.json("POST", QUOTAS, &quota("q")).await;
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);
    let item = format!("{QUOTAS}/q");

    // Metadata changes leave generation alone; spec changes bump it.
    let (_, d) = api
        .json("PATCH", &item, &json!({"metadata": {"labels": {"x": "y"}}}))
        .await;
    assert_eq!(d["metadata"]["generation"], 1);
    let (_, d) = api
        .json("PATCH", &item, &json!({"spec": {"hard": {"pods": "2"}}}))
        .await;
    assert_eq!(d["metadata"]["generation"], 2);

    // The status subresource writes status only; the main resource ignores status.
    let mut body = d.clone();
    body["status"] = json!({"hard": {"pods": "2"}, "used": {"pods": "1"}});
    body["spec"]["hard"]["pods"] = json!("9");
    let (code, s) = api.json("PUT", &format!("{item}/status"), &body).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["status"]["used"]["pods"], "1");
    assert_eq!(
        s["spec"]["hard"]["pods"], "2",
        "a status write cannot change spec"
    );
    assert_eq!(s["metadata"]["generation"], 2);
    let mut body = s.clone();
    body["status"]["used"]["pods"] = json!("0");
    body["spec"]["hard"]["pods"] = json!("3");
    let (code, m) = api.json("PUT", &item, &body).await;
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["spec"]["hard"]["pods"], "3");
    assert_eq!(
        m["status"]["used"]["pods"], "1",
        "a main write cannot change status"
    );
    assert_eq!(m["metadata"]["generation"], 3);
    // Each write was recorded under its manager (here the client's User-Agent name).
    let managers: Vec<String> = m["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["operation"].as_str().unwrap(),
                e["subresource"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        managers.contains(&"Update/status".to_string()),
        "{managers:?}"
    );
    assert!(managers.contains(&"Update/".to_string()), "{managers:?}");

    // A stale resourceVersion is a 409 with upstream's message.
    let mut stale = m.clone();
    stale["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"].clone();
    let (code, st) = api.json("PUT", &item, &stale).await;
    assert_eq!(code, 409);
    assert_eq!(st["reason"], "Conflict");
    assert_eq!(
        st["message"],
        "Operation cannot be fulfilled on resourcequotas \"q\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // A PUT naming another object's uid is a precondition failure, for the object and its
    // status, and changes nothing.
    let uid = m["metadata"]["uid"].as_str().unwrap().to_string();
    let mut other = m.clone();
    other["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    other["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    for path in [item.to_string(), format!("{item}/status")] {
        let (code, st) = api.json("PUT", &path, &other).await;
        assert_eq!(code, 409, "{path}: {st}");
        assert_eq!(
            st["message"],
            format!("Operation cannot be fulfilled on resourcequotas \"q\": Precondition failed: UID in precondition: 00000000-0000-0000-0000-000000000000, UID in object meta: {uid}")
        );
    }
    assert_eq!(api.get(&item).await.1["metadata"]["uid"], uid.as_str());

    // dryRun=All: every write answers as if done and stores nothing.
    let (code, d) = api
        .json("POST", &format!("{QUOTAS}?dryRun=All"), &quota("ghost"))
        .await;
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["metadata"]["name"], "ghost");
    assert_eq!(api.get(&format!("{QUOTAS}/ghost")).await.0, 404);
    let (code, d) = api
        .json(
            "PATCH",
            &format!("{item}?dryRun=All"),
            &json!({"spec": {"hard": {"pods": "5"}}}),
        )
        .await;
    assert_eq!((code, d["spec"]["hard"]["pods"].clone()), (200, json!("5")));
    let mut put = m.clone();
    put["spec"]["hard"]["pods"] = json!("6");
    let (code, d) = api.json("PUT", &format!("{item}?dryRun=All"), &put).await;
    assert_eq!((code, d["spec"]["hard"]["pods"].clone()), (200, json!("6")));
    let (code, d) = api
        .json("DELETE", &format!("{item}?dryRun=All"), &json!({}))
        .await;
    assert_eq!(code, 200, "{d}");
    let (_, now) = api.get(&item).await;
    assert_eq!(now["spec"]["hard"]["pods"], "3");
    assert_eq!(
        now["metadata"]["resourceVersion"],
        m["metadata"]["resourceVersion"]
    );
    let (code, _) = api
        .json(
            "POST",
            "/api/v1/namespaces/default/configmaps?dryRun=Bogus",
            &json!({}),
        )
        .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn finalizers_graceful_pods_and_propagation_policies() {
    let api = start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    assert_eq!(api.json("POST", cms, &cm).await.0, 201);
    // A finalizer keeps the object, marked for deletion, until it is cleared.
    let (code, d) = api.json("DELETE", &format!("{cms}/held"), &json!({})).await;
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    let (code, d) = api.get(&format!("{cms}/held")).await;
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    // New finalizers cannot be added once deletion started.
    let (code, _) = api
        .json(
            "PATCH",
            &format!("{cms}/held"),
            &json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
        )
        .await;
    assert_eq!(code, 422);
    let (code, _) = api
        .json(
            "PATCH",
            &format!("{cms}/held"),
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(api.get(&format!("{cms}/held")).await.0, 404);

    // Pods on a node are deleted gracefully; pods never scheduled go at once.
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    assert_eq!(
        api.json("POST", pods, &pod("bound", Some("n1"))).await.0,
        201
    );
    assert_eq!(api.json("POST", pods, &pod("loose", None)).await.0, 201);
    let (_, d) = api
        .json("DELETE", &format!("{pods}/bound"), &json!({}))
        .await;
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 30, "{d}");
    assert_eq!(api.get(&format!("{pods}/bound")).await.0, 200);
    let (_, d) = api
        .json(
            "DELETE",
            &format!("{pods}/bound"),
            &json!({"gracePeriodSeconds": 0}),
        )
        .await;
    assert!(d.is_object());
    assert_eq!(api.get(&format!("{pods}/bound")).await.0, 404);
    api.json("DELETE", &format!("{pods}/loose"), &json!({}))
        .await;
    assert_eq!(api.get(&format!("{pods}/loose")).await.0, 404);

    // Orphan and Foreground are recorded as finalizers for the garbage collector.
    for (policy, finalizer) in [("Orphan", "orphan"), ("Foreground", "foregroundDeletion")] {
        let name = format!("owner-{}", finalizer.to_lowercase());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name,
            "finalizers": ["example.com/hold"]}});
        assert_eq!(api.json("POST", cms, &cm).await.0, 201);
        let (_, d) = api
            .json(
                "DELETE",
                &format!("{cms}/{name}"),
                &json!({"propagationPolicy": policy}),
            )
            .await;
        let fins = d["metadata"]["finalizers"].as_array().unwrap();
        assert!(fins.contains(&json!(finalizer)), "{policy}: {d}");
    }
}

#[tokio::test]
async fn bad_bodies_and_paths_get_status_errors() {
    let api = start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, st) = api
        .call("POST", cms, "application/json", b"{\"metadata\": ".to_vec())
        .await;
    assert_eq!(code, 400);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "BadRequest");
    let (code, st) = api
        .call("POST", cms, "application/yaml", b"metadata: [x\n".to_vec())
        .await;
    assert_eq!(code, 400);
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .starts_with("error converting YAML to JSON"),
        "{st}"
    );
    let (code, st) = api.call("POST", cms, "application/cbor", vec![0xa0]).await;
    assert_eq!(code, 415);
    assert_eq!(st["reason"], "UnsupportedMediaType");
    // Unknown paths and resources are 404 Status objects.
    for path in [
        "/api/v1/foos",
        "/apis/nope.example/v1/things",
        "/no/such/path",
    ] {
        let (code, st) = api.get(path).await;
        assert_eq!(code, 404, "{path}");
        assert_eq!(st["kind"], "Status", "{path}: {st}");
        assert_eq!(st["reason"], "NotFound", "{path}");
    }
    // A watch with timeoutSeconds ends on time, after the initial-events bookmark when asked.
    let t = std::time::Instant::now();
    let (code, body) = api
        .get(&format!(
            "{cms}?watch=true&timeoutSeconds=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    assert_eq!(code, 200);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    let body = body
        .as_str()
        .map(str::to_string)
        .unwrap_or(body.to_string());
    assert!(
        body.contains("\"BOOKMARK\"") && body.contains("k8s.io/initial-events-end"),
        "{body}"
    );
}

#[tokio::test]
async fn service_addresses_and_node_ports_are_unique_and_released_on_delete() {
    let api = start().await;
    let svcs = "/api/v1/namespaces/default/services";
    let svc = |name: &str, ip: &str, node_port: u16| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "clusterIP": ip, "selector": {"app": name},
                "ports": [{"port": 80, "nodePort": node_port}]}})
    };
    let (code, a) = api.json("POST", svcs, &svc("a", "10.43.7.7", 30080)).await;
    assert_eq!(code, 201, "{a}");
    assert_eq!(a["spec"]["clusterIPs"], json!(["10.43.7.7"]));
    assert_eq!(
        a["spec"]["ports"][0]["targetPort"], 80,
        "targetPort defaults to port"
    );

    // The same address or node port is refused with upstream's messages.
    let (code, st) = api.json("POST", svcs, &svc("b", "10.43.7.7", 30081)).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["message"],
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: [\"10.43.7.7\"]: failed to allocate IP 10.43.7.7: provided IP is already allocated"
    );
    let (code, st) = api.json("POST", svcs, &svc("b", "10.43.7.8", 30080)).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["message"],
        "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    let (code, st) = api.json("POST", svcs, &svc("b", "10.99.0.1", 30081)).await;
    assert_eq!(code, 422);
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("is not in the valid range"),
        "{st}"
    );

    // Automatic picks never collide.
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("auto-{i}")},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
        let (code, s) = api.json("POST", svcs, &body).await;
        assert_eq!(code, 201, "{s}");
        let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
        let port = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!(
            ip.starts_with("10.43.") && (30000..=32767).contains(&port),
            "{s}"
        );
        assert!(
            seen.insert(ip) && seen.insert(port.to_string()),
            "duplicate in {s}"
        );
    }

    // Deleting the first releases both for the next service.
    let (code, _) = api.json("DELETE", &format!("{svcs}/a"), &json!({})).await;
    assert_eq!(code, 200);
    let (code, b) = api.json("POST", svcs, &svc("b", "10.43.7.7", 30080)).await;
    assert_eq!(code, 201, "{b}");
}

#[tokio::test]
async fn pod_priority_comes_from_its_priority_class() {
    let api = start().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, class: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        if let Some(c) = class {
            p["spec"]["priorityClassName"] = json!(c);
        }
        p
    };
    let (code, p) = api
        .json("POST", pods, &pod("critical", Some("system-node-critical")))
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["spec"]["priority"], 2000001000);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let (code, st) = api.json("POST", pods, &pod("lost", Some("nope"))).await;
    assert_eq!(code, 403);
    assert_eq!(
        st["message"],
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
    );
    let (_, p) = api.json("POST", pods, &pod("plain", None)).await;
    assert_eq!(p["spec"]["priority"], 0);
    // A global default applies to pods that name no class.
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "normal"}, "value": 100, "globalDefault": true,
        "preemptionPolicy": "Never"});
    let (code, c) = api
        .json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", &pc)
        .await;
    assert_eq!(code, 201, "{c}");
    // Like upstream's admission plugin, the default is read from the server's cache of
    // classes, so a pod created in the same instant may miss it: allow it a moment.
    let mut p = json!({});
    for i in 0..20 {
        let (_, got) = api
            .json("POST", pods, &pod(&format!("defaulted-{i}"), None))
            .await;
        p = got;
        if p["spec"]["priorityClassName"] == "normal" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(p["spec"]["priorityClassName"], "normal");
    assert_eq!(p["spec"]["priority"], 100);
    assert_eq!(p["spec"]["preemptionPolicy"], "Never");
}

/// Polls `f` every 100 ms until it returns Some, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The eviction subresource against budgets the disruption controller keeps up to date.
/// Pods here are bound to a node no kubelet serves, and made Running and Ready by the test,
/// so nothing but the test and the controllers changes them.
#[tokio::test]
async fn eviction_asks_the_pods_disruption_budget() {
    let api = start().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ev"}});
    assert_eq!(api.json("POST", "/api/v1/namespaces", &ns).await.0, 201);
    let pods = "/api/v1/namespaces/ev/pods";
    let pdbs = "/apis/policy/v1/namespaces/ev/poddisruptionbudgets";
    let evict = |pod: &str, delete_options: Value| {
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": pod, "namespace": "ev"}, "deleteOptions": delete_options});
        (format!("{pods}/{pod}/eviction"), body)
    };
    for name in ["p1", "p2"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "ev"}},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "nginx"}]}});
        assert_eq!(api.json("POST", pods, &pod).await.0, 201);
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let (code, d) = api
            .json("PATCH", &format!("{pods}/{name}/status"), &status)
            .await;
        assert_eq!(code, 200, "{d}");
    }
    // Not yet started: evicted without asking any budget.
    let pending = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending", "labels": {"app": "ev"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    assert_eq!(api.json("POST", pods, &pending).await.0, 201);

    // Discovery tells clients (kubectl drain) which Eviction version to send.
    let (_, list) = api.get("/api/v1").await;
    let sub = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("pods/eviction is listed");
    assert_eq!(
        (&sub["group"], &sub["version"], &sub["kind"], &sub["verbs"]),
        (
            &json!("policy"),
            &json!("v1"),
            &json!("Eviction"),
            &json!(["create"])
        )
    );

    // A missing pod is a 404; a body naming another pod is refused.
    let (path, body) = evict("missing", json!({}));
    let (code, st) = api.json("POST", &path, &body).await;
    assert_eq!(code, 404, "{st}");
    assert_eq!(st["message"], "pods \"missing\" not found");
    let (path, _) = evict("p1", json!({}));
    let (_, other) = evict("p2", json!({}));
    let (code, st) = api.json("POST", &path, &other).await;
    assert_eq!(code, 400);
    assert_eq!(
        st["message"],
        "name in URL does not match name in Eviction object"
    );

    // minAvailable 2 of 2 healthy: nothing may go.
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "ev"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "ev"}}}});
    assert_eq!(api.json("POST", pdbs, &pdb).await.0, 201);
    let status = eventually("the budget's status", || async {
        let (_, b) = api.get(&format!("{pdbs}/ev")).await;
        (b["status"]["observedGeneration"] == 1).then(|| b["status"].clone())
    })
    .await;
    assert_eq!(
        (
            &status["currentHealthy"],
            &status["desiredHealthy"],
            &status["expectedPods"],
            &status["disruptionsAllowed"]
        ),
        (&json!(2), &json!(2), &json!(3), &json!(0)),
        "{status}"
    );
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
    let (path, body) = evict("p1", json!({}));
    let (code, st) = api.json("POST", &path, &body).await;
    assert_eq!(code, 429, "{st}");
    assert_eq!(st["reason"], "TooManyRequests");
    assert_eq!(
        st["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "DisruptionBudget",
            "message": "The disruption budget ev needs 2 healthy pods and has 2 currently"}])
    );
    assert_eq!(api.get(&format!("{pods}/p1")).await.0, 200);
    let (path, body) = evict("pending", json!({}));
    let (code, st) = api.json("POST", &path, &body).await;
    assert_eq!((code, &st["status"]), (201, &json!("Success")), "{st}");
    assert_eq!(api.get(&format!("{pods}/pending")).await.0, 404);

    // minAvailable 1: one may go. A dry run takes nothing.
    let (code, _) = api
        .json(
            "PATCH",
            &format!("{pdbs}/ev"),
            &json!({"spec": {"minAvailable": 1}}),
        )
        .await;
    assert_eq!(code, 200);
    eventually("one allowed disruption", || async {
        let (_, b) = api.get(&format!("{pdbs}/ev")).await;
        (b["status"]["observedGeneration"] == 2 && b["status"]["disruptionsAllowed"] == 1)
            .then_some(())
    })
    .await;
    let (path, body) = evict("p1", json!({"dryRun": ["All"]}));
    let (code, _) = api.json("POST", &path, &body).await;
    assert_eq!(code, 201);
    let (_, p1) = api.get(&format!("{pods}/p1")).await;
    assert!(p1["metadata"]["deletionTimestamp"].is_null(), "{p1}");
    let (_, b) = api.get(&format!("{pdbs}/ev")).await;
    assert_eq!(b["status"]["disruptionsAllowed"], 1);

    // The real eviction: marked as a disruption target, deleted gracefully, and the budget
    // has nothing left for the other pod.
    let (code, st) = api.json("POST", &path, &evict("p1", json!({})).1).await;
    assert_eq!(code, 201, "{st}");
    let (_, p1) = api.get(&format!("{pods}/p1")).await;
    assert!(p1["metadata"]["deletionTimestamp"].is_string(), "{p1}");
    let target = p1["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .expect("DisruptionTarget condition");
    assert_eq!(
        (&target["status"], &target["reason"], &target["message"]),
        (
            &json!("True"),
            &json!("EvictionByEvictionAPI"),
            &json!("Eviction API: evicting")
        )
    );
    let (path2, body2) = evict("p2", json!({}));
    let (code, st) = api.json("POST", &path2, &body2).await;
    assert_eq!(code, 429, "{st}");
    // A pod already going is evicted again without asking.
    let (code, _) = api.json("POST", &path, &evict("p1", json!({})).1).await;
    assert_eq!(code, 201);

    // Two budgets for one pod: the eviction API does not choose.
    let mut second = pdb.clone();
    second["metadata"]["name"] = json!("ev2");
    assert_eq!(api.json("POST", pdbs, &second).await.0, 201);
    let (code, st) = api.json("POST", &path2, &body2).await;
    assert_eq!(code, 500, "{st}");
    assert_eq!(
        st["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}
