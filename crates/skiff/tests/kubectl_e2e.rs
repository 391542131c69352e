//! End-to-end: a real `skiff server` process driven by the real kubectl.

mod common;
use common::{kubectl, spawn, start, versioned, Server};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\n  labels: {app: web}\ndata:\n  a: b\n";

#[test]
fn kubectl_basics_and_errors() {
    let s = start();
    for bin in ["kubectl".to_string(), versioned("1.30")] {
        let bin = bin.as_str();
        let (ok, out, err) = kubectl(&s, bin, &["get", "ns"], None);
        assert!(ok, "{bin} get ns: {err}");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(out.contains(ns), "{bin}: missing {ns} in {out}");
        }
        let (ok, out, _) = kubectl(&s, bin, &["get", "svc", "kubernetes"], None);
        assert!(ok && out.contains("10.43.0.1"), "{out}");
        let (ok, out, _) = kubectl(&s, bin, &["api-resources"], None);
        assert!(
            ok && out.contains("deployments") && out.contains("statefulsets"),
            "{out}"
        );
    }
    let (ok, out, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some(CM),
    );
    assert!(ok, "{err}");
    assert!(out.contains("configmap/c1 created"), "{out}");
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some(CM),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "c1" already exists"#),
        "{err}"
    );
    let (ok, out, _) = kubectl(
        &s,
        "kubectl",
        &[
            "get",
            "cm",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].data.a}",
        ],
        None,
    );
    assert!(ok);
    assert_eq!(out, "b");
    let (ok, _, err) = kubectl(&s, "kubectl", &["label", "cm", "c1", "tier=fe"], None);
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(&s, "kubectl", &["get", "cm", "c1", "--show-labels"], None);
    assert!(out.contains("tier=fe"), "{out}");
    let (ok, _, err) = kubectl(&s, "kubectl", &["get", "cm", "nope"], None);
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (NotFound): configmaps "nope" not found"#),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["get", "cm", "-n", "missing-ns", "nope"],
        None,
    );
    assert!(!ok && err.contains("NotFound"), "{err}");
    let bad =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\nspec:\n  containers:\n  - name: c\n";
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some(bad),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"The Pod "p1" is invalid: spec.containers[0].image: Required value"#),
        "{err}"
    );
    let (ok, out, err) = kubectl(&s, "kubectl", &["delete", "cm", "c1"], None);
    assert!(ok, "{err}");
    assert!(out.contains(r#"configmap "c1" deleted"#), "{out}");
}

/// kubectl 1.32+ sends the bodies of its typed commands as Kubernetes protobuf.
#[test]
fn typed_create_commands_send_protobuf_bodies() {
    let s = start();
    let run = |args: &[&str]| {
        let (ok, out, err) = kubectl(&s, "kubectl", args, None);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    // -v=8 logs the request headers: prove the body really was protobuf.
    let (ok, _, log) = kubectl(&s, "kubectl", &["create", "ns", "typed", "-v=8"], None);
    assert!(ok, "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    let ns = ["-n", "typed"];
    fn with_ns<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [args, &["-n", "typed"][..]].concat()
    }
    run(&with_ns(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=a=b",
        "--from-literal=empty=",
    ]));
    run(&with_ns(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=k=v",
    ]));
    run(&with_ns(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=0",
        "--port=80",
    ]));
    run(&with_ns(&[
        "expose",
        "deployment",
        "web",
        "--port=8080",
        "--target-port=80",
    ]));
    run(&with_ns(&[
        "create",
        "service",
        "nodeport",
        "np",
        "--tcp=80:8080",
    ]));
    run(&with_ns(&["create", "job", "j", "--image=busybox"]));
    run(&with_ns(&[
        "create",
        "role",
        "r",
        "--verb=get",
        "--resource=pods",
    ]));
    run(&with_ns(&[
        "create",
        "rolebinding",
        "rb",
        "--role=r",
        "--user=bob",
    ]));
    run(&with_ns(&["create", "serviceaccount", "sa"]));

    let get = |what: &[&str], path: &str| {
        let jsonpath = format!("jsonpath={path}");
        run(&[what, &ns[..], &["-o", &jsonpath]].concat())
    };
    assert_eq!(
        get(&["get", "cm", "cm"], "{.data}"),
        r#"{"a":"b","empty":""}"#
    );
    assert_eq!(get(&["get", "secret", "sec"], "{.data.k}"), "dg==");
    assert_eq!(
        get(
            &["get", "deploy", "web"],
            "{.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.selector.matchLabels.app}"
        ),
        "0 nginx:1.27 80 web"
    );
    assert_eq!(
        get(
            &["get", "svc", "web"],
            "{.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.selector.app}"
        ),
        "8080 80 web"
    );
    let node_port = get(&["get", "svc", "np"], "{.spec.ports[0].nodePort}");
    let node_port: u16 = node_port.parse().expect("a nodePort was allocated");
    assert!((30000..=32767).contains(&node_port));
    assert_eq!(
        get(
            &["get", "rolebinding", "rb"],
            "{.roleRef.name} {.subjects[0].name}"
        ),
        "r bob"
    );
    assert_eq!(
        get(&["get", "job", "j"], "{.spec.template.spec.restartPolicy}"),
        "Never"
    );
    // An already existing object still gives kubectl's usual message for typed commands.
    let (ok, _, err) = kubectl(&s, "kubectl", &with_ns(&["create", "sa", "sa"]), None);
    assert!(!ok);
    assert!(
        err.contains(
            r#"error: failed to create serviceaccount: serviceaccounts "sa" already exists"#
        ),
        "{err}"
    );
}

#[test]
fn anonymous_requests_get_401() {
    let s = start();
    let kc = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let server = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &[
            "--server",
            &server,
            "--insecure-skip-tls-verify",
            "--username",
            "",
            "--token",
            "bogus",
            "get",
            "ns",
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1.25}]
---
apiVersion: v1
kind: Namespace
metadata: {name: scratch}
";

#[test]
fn apply_scale_set_image_namespace_delete_and_restart() {
    let mut s = start();
    let k = |s: &Server, args: &[&str], input: Option<&str>| kubectl(s, "kubectl", args, input);
    let (ok, out, err) = k(&s, &["apply", "--validate=false", "-f", "-"], Some(DEPLOY));
    assert!(ok, "{err}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let (ok, out, _) = k(&s, &["apply", "--validate=false", "-f", "-"], Some(DEPLOY));
    assert!(ok && out.contains("deployment.apps/web unchanged"), "{out}");
    assert!(k(&s, &["scale", "deploy", "web", "--replicas=4"], None).0);
    let (ok, _, err) = k(
        &s,
        &[
            "scale",
            "deploy",
            "web",
            "--current-replicas=4",
            "--replicas=5",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = k(
        &s,
        &[
            "scale",
            "deploy",
            "web",
            "--current-replicas=4",
            "--replicas=6",
        ],
        None,
    );
    assert!(!ok, "a stale --current-replicas must fail");
    assert!(err.contains("Expected replicas to be 4, was 5"), "{err}");
    let (_, out, _) = k(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ],
        None,
    );
    assert_eq!(out, "5 3");
    assert!(
        k(
            &s,
            &["set", "image", "deploy/web", "nginx=nginx:1.26"],
            None
        )
        .0
    );
    let (_, out, _) = k(
        &s,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        None,
    );
    assert_eq!(out, "nginx:1.26");
    let (_, out, _) = k(&s, &["get", "all"], None);
    assert!(
        out.contains("deployment.apps/web") && out.contains("service/kubernetes"),
        "{out}"
    );
    let (ok, out, err) = k(&s, &["delete", "ns", "scratch"], None);
    assert!(
        ok && out.contains(r#"namespace "scratch" deleted"#),
        "{out}{err}"
    );
    let (_, out, _) = k(&s, &["get", "ns"], None);
    assert!(!out.contains("scratch"), "{out}");

    // Data survives a restart on the same data dir.
    let _ = s.child.kill();
    let _ = s.child.wait();
    s.child = spawn(s.dir.path());
    let (ok, out, err) = k(
        &s,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "5");
}

#[test]
fn get_watch_sees_a_change_made_by_another_command() {
    let s = start();
    let mut w = Command::new("kubectl")
        .args(["--kubeconfig", &s.kubeconfig, "--cache-dir"])
        .arg(s.cache.path())
        .args(["get", "cm", "-w", "--request-timeout=20s", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["create", "--validate=false", "-f", "-"],
        Some(CM),
    );
    assert!(ok, "{err}");
    let mut line = String::new();
    BufReader::new(w.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = w.kill();
    let _ = w.wait();
    assert_eq!(line.trim(), "configmap/c1");
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: p1, labels: {x: z}}
spec: {containers: [{name: c, image: busybox}]}
";

#[test]
fn pods_describe_selectors_conflict_and_delete_by_label() {
    let s = start();
    let k = |args: &[&str], input: Option<&str>| kubectl(&s, "kubectl", args, input);
    let (ok, _, err) = k(&["create", "--validate=false", "-f", "-"], Some(POD));
    assert!(ok, "{err}");
    let (_, out, _) = k(&["get", "po", "-o", "wide"], None);
    assert!(
        out.contains("NOMINATED NODE") && out.contains("Pending"),
        "{out}"
    );
    let (ok, out, err) = k(&["describe", "po", "p1"], None);
    assert!(ok && out.contains("Name:         p1"), "{out}{err}");
    let (_, out, _) = k(
        &[
            "get",
            "po",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(out.trim(), "pod/p1");
    let (_, out, _) = k(
        &[
            "get",
            "po",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(out.trim(), "");
    // A write with a stale resourceVersion is a Conflict with upstream's message.
    let (ok, _, err) = k(&["create", "--validate=false", "-f", "-"], Some(CM));
    assert!(ok, "{err}");
    let stale = CM.replace("  name: c1\n", "  name: c1\n  resourceVersion: \"1\"\n");
    let (ok, _, err) = k(&["replace", "--validate=false", "-f", "-"], Some(&stale));
    assert!(!ok);
    assert!(
        err.contains(r#"Operation cannot be fulfilled on configmaps "c1": the object has been modified; please apply your changes to the latest version and try again"#),
        "{err}"
    );
    let (ok, out, _) = k(&["delete", "po", "-l", "x=z"], None);
    assert!(ok && out.contains(r#"pod "p1" deleted"#), "{out}");
    let (_, out, _) = k(&["get", "po", "-o", "name"], None);
    assert_eq!(out.trim(), "");
}
