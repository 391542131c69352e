//! End-to-end: OpenAPI (v3 for kubectl 1.29+, protobuf v2 for 1.27/1.28) and server-side
//! field validation, driven by the real kubectl with its default `--validate=strict`.

mod common;
use common::{kubectl, start, versioned, Server};

/// A Deployment, a Service and a ConfigMap; `extra` is added to the Deployment's spec.
fn app(image: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1{extra}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
data:
  a: b
"
    )
}

/// The kubectl binaries to try: the dispatcher (1.33), 1.30 (OpenAPI v3), and 1.28 and 1.27
/// (protobuf OpenAPI v2).
fn clients() -> Vec<String> {
    vec![
        "kubectl".to_string(),
        versioned("1.30"),
        versioned("1.28"),
        versioned("1.27"),
    ]
}

fn run(s: &Server, bin: &str, args: &[&str], stdin: Option<&str>) -> (String, String) {
    let (ok, out, err) = kubectl(s, bin, args, stdin);
    assert!(ok, "{bin} {args:?} failed: {err}");
    (out, err)
}

#[test]
fn default_validation_create_apply_unchanged_and_dry_run() {
    let s = start();
    for (i, bin) in clients().iter().enumerate() {
        let bin = bin.as_str();
        let ns = format!("v{i}");
        run(&s, bin, &["create", "ns", &ns], None);
        let (out, err) = run(
            &s,
            bin,
            &["create", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.27", "")),
        );
        for line in [
            "deployment.apps/web created",
            "service/web created",
            "configmap/web created",
        ] {
            assert!(out.contains(line), "{bin}: {out}");
        }
        assert!(!err.contains("Warning"), "{bin}: {err}");
        run(
            &s,
            bin,
            &["delete", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.27", "")),
        );

        let (out, _) = run(
            &s,
            bin,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.27", "")),
        );
        assert!(out.contains("deployment.apps/web created"), "{bin}: {out}");
        let (out, _) = run(
            &s,
            bin,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.27", "")),
        );
        for line in [
            "deployment.apps/web unchanged",
            "service/web unchanged",
            "configmap/web unchanged",
        ] {
            assert!(out.contains(line), "{bin}: {out}");
        }
        let (out, _) = run(
            &s,
            bin,
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.28", "")),
        );
        assert!(
            out.contains("deployment.apps/web configured (server dry run)"),
            "{bin}: {out}"
        );
        let (img, _) = run(
            &s,
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            None,
        );
        assert_eq!(img, "nginx:1.27", "{bin}: dry run stored the change");
        let (out, _) = run(
            &s,
            bin,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.28", "")),
        );
        assert!(
            out.contains("deployment.apps/web configured"),
            "{bin}: {out}"
        );
        let (img, _) = run(
            &s,
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            None,
        );
        assert_eq!(img, "nginx:1.28", "{bin}");
    }
}

#[test]
fn unknown_fields_strict_warn_and_ignore() {
    let s = start();
    let bad = app("nginx:1.27", "\n  foo: bar");
    let foo_of = |bin: &str, ns: &str| {
        run(
            &s,
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.foo}",
            ],
            None,
        )
        .0
    };
    for (i, bin) in clients().iter().enumerate() {
        let bin = bin.as_str();
        let ns = format!("u{i}");
        run(&s, bin, &["create", "ns", &ns], None);

        // Strict (the default): refused with upstream's message, nothing stored.
        for verb in ["create", "apply"] {
            let (ok, _, err) = kubectl(&s, bin, &[verb, "-n", &ns, "-f", "-"], Some(&bad));
            assert!(!ok, "{bin} {verb}");
            assert!(
                err.contains(r#"Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo""#),
                "{bin} {verb}: {err}"
            );
            let (ok, _, _) = kubectl(&s, bin, &["get", "deploy", "web", "-n", &ns], None);
            assert!(!ok, "{bin} {verb}: the deployment was stored");
            run(&s, bin, &["delete", "svc,cm", "web", "-n", &ns], None);
        }

        // Warn: stored without the field, and kubectl prints the warning.
        let (_, err) = run(
            &s,
            bin,
            &["create", "--validate=warn", "-n", &ns, "-f", "-"],
            Some(&bad),
        );
        assert!(
            err.contains(r#"Warning: unknown field "spec.foo""#),
            "{bin}: {err}"
        );
        assert_eq!(foo_of(bin, &ns), "", "{bin}");
        run(&s, bin, &["delete", "-n", &ns, "-f", "-"], Some(&bad));

        // Ignore (--validate=false): stored without the field, silently.
        let (_, err) = run(
            &s,
            bin,
            &["create", "--validate=false", "-n", &ns, "-f", "-"],
            Some(&bad),
        );
        assert!(!err.contains("unknown field"), "{bin}: {err}");
        assert_eq!(foo_of(bin, &ns), "", "{bin}");
        run(&s, bin, &["delete", "-n", &ns, "-f", "-"], Some(&bad));

        // A strategic merge patch (apply to an existing object) is refused as upstream does.
        run(
            &s,
            bin,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&app("nginx:1.27", "")),
        );
        let nested = app("nginx:1.27", "").replace(
            "        image: nginx:1.27\n",
            "        image: nginx:1.27\n        imagee: x\n",
        );
        let (ok, _, err) = kubectl(&s, bin, &["apply", "-n", &ns, "-f", "-"], Some(&nested));
        assert!(!ok, "{bin}");
        assert!(
            err.contains("The request is invalid: patch: Invalid value: \"map[")
                && err.contains(
                    r#"strict decoding error: unknown field "spec.template.spec.containers[0].imagee""#
                ),
            "{bin}: {err}"
        );
        let (_, err) = run(
            &s,
            bin,
            &["apply", "--validate=warn", "-n", &ns, "-f", "-"],
            Some(&nested),
        );
        assert!(
            err.contains(r#"Warning: unknown field "spec.template.spec.containers[0].imagee""#),
            "{bin}: {err}"
        );
        let (c, _) = run(
            &s,
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.template.spec.containers[0]}",
            ],
            None,
        );
        assert!(!c.contains("imagee"), "{bin}: {c}");
    }

    // kubectl patch sends no fieldValidation: the server's default, Warn, applies to every
    // patch type, and the field is not stored.
    let ns = "u0";
    for (ty, patch) in [
        ("merge", r#"{"spec":{"bar":1}}"#),
        ("strategic", r#"{"spec":{"bar":1}}"#),
        ("json", r#"[{"op":"add","path":"/spec/bar","value":1}]"#),
    ] {
        let (_, err) = run(
            &s,
            "kubectl",
            &[
                "patch", "deploy", "web", "-n", ns, "--type", ty, "-p", patch,
            ],
            None,
        );
        assert!(
            err.contains(r#"Warning: unknown field "spec.bar""#),
            "{ty}: {err}"
        );
        let (bar, _) = run(
            &s,
            "kubectl",
            &[
                "get",
                "deploy",
                "web",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.bar}",
            ],
            None,
        );
        assert_eq!(bar, "", "{ty}");
    }
    // Duplicate fields in a JSON body.
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/u0/configmaps?fieldValidation=Strict",
            "-f",
            "-",
        ],
        Some(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1"},"data":{"b":"2"}}"#,
        ),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"strict decoding error: duplicate field "data""#),
        "{err}"
    );
}

#[test]
fn explain_prints_field_docs() {
    let s = start();
    for bin in clients() {
        let bin = bin.as_str();
        let (out, _) = run(&s, bin, &["explain", "deployment.spec.strategy"], None);
        assert!(
            out.contains("DeploymentStrategy describes how to replace existing pods with new ones")
                && out.contains("rollingUpdate")
                && out.contains("Recreate"),
            "{bin}: {out}"
        );
        let (out, _) = run(&s, bin, &["explain", "pod.spec.containers"], None);
        assert!(
            out.contains("List of containers belonging to the pod")
                && out.contains("imagePullPolicy"),
            "{bin}: {out}"
        );
        let (out, _) = run(&s, bin, &["explain", "svc.spec.ports.targetPort"], None);
        assert!(out.contains("Number or name of the port"), "{bin}: {out}");
    }
}

#[test]
fn openapi_documents() {
    let s = start();
    let (root, _) = run(&s, "kubectl", &["get", "--raw", "/openapi/v3"], None);
    let root: serde_json::Value = serde_json::from_str(&root).unwrap();
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    for gv in [
        "api/v1",
        "apis/batch/v1",
        "apis/rbac.authorization.k8s.io/v1",
    ] {
        assert!(root["paths"][gv].is_object(), "{gv} missing: {root}");
    }
    let (doc, _) = run(&s, "kubectl", &["get", "--raw", &url], None);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    let containers =
        &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["get", "--raw", "/openapi/v3/apis/nope/v1"],
        None,
    );
    assert!(!ok && err.contains("NotFound"), "{err}");
    let (v2, _) = run(&s, "kubectl", &["get", "--raw", "/openapi/v2"], None);
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(v2["swagger"], "2.0");
}
