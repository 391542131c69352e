//! End-to-end: the ways kubectl changes objects — client-side apply edits, `edit`, the three
//! patch types, `set image`, `rollout restart`, `diff`, `replace` — with default validation.

mod common;

use std::process::Command;

use common::{kubectl, start, versioned, Server};

fn deployment(containers: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
{containers}"
    )
}

const NGINX: &str = "      - name: nginx
        image: nginx:1.26
        ports:
        - containerPort: 80
        - containerPort: 443
";
const SIDECAR: &str = "      - name: sidecar
        image: envoy:1.30
";

fn jsonpath(s: &Server, bin: &str, what: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    let mut args = what.to_vec();
    args.extend(["-o", &p]);
    let (ok, out, err) = kubectl(s, bin, &args, None);
    assert!(ok, "{err}");
    out
}

#[test]
fn client_side_apply_changes_exactly_what_the_file_changes() {
    let s = start();
    for bin in ["kubectl".to_string(), versioned("1.30")] {
        let bin = bin.as_str();
        let apply = |yaml: &str| {
            let (ok, out, err) = kubectl(&s, bin, &["apply", "-f", "-"], Some(yaml));
            assert!(ok, "{bin}: {err}");
            out
        };
        let get = |path: &str| jsonpath(&s, bin, &["get", "deploy", "web"], path);
        let names = "{range .spec.template.spec.containers[*]}{.name}={.image};{end}";
        assert!(apply(&deployment(&format!("{NGINX}{SIDECAR}"))).contains("created"));
        assert_eq!(get(names), "nginx=nginx:1.26;sidecar=envoy:1.30;");
        // A field set by someone else survives applies that do not mention it.
        let (ok, _, err) = kubectl(&s, bin, &["label", "deploy", "web", "owner=ops"], None);
        assert!(ok, "{err}");

        // Change the image.
        let v2 = format!("{}{SIDECAR}", NGINX.replace("1.26", "1.27"));
        assert!(apply(&deployment(&v2)).contains("configured"));
        assert_eq!(get(names), "nginx=nginx:1.27;sidecar=envoy:1.30;");
        // Add an env var.
        let v3 = format!(
            "{}        env:\n        - name: MODE\n          value: prod\n{SIDECAR}",
            NGINX.replace("1.26", "1.27")
        );
        apply(&deployment(&v3));
        assert_eq!(
            get("{.spec.template.spec.containers[0].env[0].name}={.spec.template.spec.containers[0].env[0].value}"),
            "MODE=prod"
        );
        // Remove a port.
        let v4 = v3.replace("        - containerPort: 443\n", "");
        apply(&deployment(&v4));
        assert_eq!(
            get("{.spec.template.spec.containers[0].ports[*].containerPort}"),
            "80"
        );
        // Remove a container.
        let v5 = v4.replace(SIDECAR, "");
        apply(&deployment(&v5));
        assert_eq!(get(names), "nginx=nginx:1.27;");
        assert_eq!(get("{.metadata.labels.owner}"), "ops");
        assert!(apply(&deployment(&v5)).contains("unchanged"));
        let (ok, _, err) = kubectl(&s, bin, &["delete", "deploy", "web"], None);
        assert!(ok, "{err}");
    }
}

#[test]
fn edit_patch_set_image_restart_diff_and_replace() {
    let s = start();
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &["apply", "-f", "-"],
        Some(&deployment(NGINX)),
    );
    assert!(ok, "{err}");
    let get = |path: &str| jsonpath(&s, "kubectl", &["get", "deploy", "web"], path);

    // edit: kubectl runs $EDITOR on the object, then sends a strategic merge patch.
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/nginx:1.26/nginx:1.25/' \"$1\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", editor.to_str().unwrap()])
        .status()
        .unwrap();
    let out = Command::new("kubectl")
        .args(["--kubeconfig", &s.kubeconfig, "--cache-dir"])
        .arg(s.cache.path())
        .args(["edit", "deploy", "web"])
        .env("EDITOR", &editor)
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web edited"));
    assert_eq!(
        get("{.spec.template.spec.containers[0].image}"),
        "nginx:1.25"
    );

    // The three patch types.
    let patch = |ty: &str, p: &str| {
        let (ok, out, err) = kubectl(
            &s,
            "kubectl",
            &["patch", "deploy", "web", &format!("--type={ty}"), "-p", p],
            None,
        );
        assert!(ok, "{ty}: {err}");
        out
    };
    patch(
        "strategic",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"envoy:1.30"}]}}}}"#,
    );
    assert_eq!(
        get("{.spec.template.spec.containers[*].name}"),
        "nginx sidecar",
        "strategic merge adds to the list by name"
    );
    patch(
        "merge",
        r#"{"metadata":{"labels":{"tier":"fe"}},"spec":{"replicas":0}}"#,
    );
    assert_eq!(get("{.metadata.labels.tier}"), "fe");
    patch(
        "json",
        r#"[{"op":"remove","path":"/spec/template/spec/containers/1"},{"op":"add","path":"/spec/minReadySeconds","value":5}]"#,
    );
    assert_eq!(
        get("{.spec.template.spec.containers[*].name} {.spec.minReadySeconds}"),
        "nginx 5"
    );
    let (ok, _, err) = kubectl(
        &s,
        "kubectl",
        &[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
        ],
        None,
    );
    assert!(!ok, "a failing JSON patch test op is an error");
    assert!(
        err.contains("The request is invalid: the server rejected our request due to an error in our request"),
        "{err}"
    );

    // set image and rollout restart.
    let (ok, out, err) = kubectl(
        &s,
        "kubectl",
        &["set", "image", "deploy/web", "nginx=nginx:1.28"],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("deployment.apps/web image updated"), "{out}");
    assert_eq!(
        get("{.spec.template.spec.containers[0].image}"),
        "nginx:1.28"
    );
    let (ok, out, err) = kubectl(&s, "kubectl", &["rollout", "restart", "deploy/web"], None);
    assert!(ok, "{err}");
    assert!(out.contains("deployment.apps/web restarted"), "{out}");
    assert!(
        !get("{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}")
            .is_empty()
    );

    // diff shows the change and stores nothing.
    let changed = deployment(&NGINX.replace("1.26", "1.29"));
    let (ok, out, _) = kubectl(&s, "kubectl", &["diff", "-f", "-"], Some(&changed));
    assert!(!ok, "diff exits 1 when there are differences");
    assert!(
        out.contains("-      - image: nginx:1.28") && out.contains("+      - image: nginx:1.29"),
        "{out}"
    );
    assert_eq!(
        get("{.spec.template.spec.containers[0].image}"),
        "nginx:1.28"
    );

    // replace sends the whole object; uid and creation time are kept.
    let uid = get("{.metadata.uid}");
    let (ok, out, err) = kubectl(&s, "kubectl", &["replace", "-f", "-"], Some(&changed));
    assert!(ok, "{err}");
    assert!(out.contains("deployment.apps/web replaced"), "{out}");
    assert_eq!(
        get("{.spec.template.spec.containers[0].image}"),
        "nginx:1.29"
    );
    assert_eq!(get("{.metadata.uid}"), uid);
    assert_eq!(
        get("{.metadata.labels.tier}"),
        "",
        "replace drops what the file lacks"
    );
}
