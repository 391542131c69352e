//! End-to-end: server-side apply and field ownership with the real kubectl.

mod common;

use common::{kubectl, start, versioned};

fn deployment(replicas: u32, image: &str, extra_label: bool) -> String {
    let label = if extra_label { "\n    tier: fe" } else { "" };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web{label}
spec:
  replicas: {replicas}
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
"
    )
}

#[test]
fn server_side_apply_conflicts_force_and_field_removal() {
    let s = start();
    for bin in ["kubectl".to_string(), versioned("1.30")] {
        let bin = bin.as_str();
        let apply = |manifest: &str, extra: &[&str]| {
            let mut args = vec!["apply", "--server-side", "--validate=false", "-f", "-"];
            args.extend(extra);
            kubectl(&s, bin, &args, Some(manifest))
        };
        let get = |path: &str| {
            let (ok, out, err) = kubectl(
                &s,
                bin,
                &["get", "deploy", "web", "-o", &format!("jsonpath={path}")],
                None,
            );
            assert!(ok, "{err}");
            out
        };

        // First apply creates the object.
        let (ok, out, err) = apply(&deployment(2, "nginx:1.26", true), &[]);
        assert!(ok, "{bin}: {err}");
        assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
        assert_eq!(get("{.spec.replicas} {.metadata.labels.tier}"), "2 fe");
        let (ok, yaml, _) = kubectl(
            &s,
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "yaml",
                "--show-managed-fields",
            ],
            None,
        );
        assert!(ok);
        assert!(yaml.contains("manager: kubectl"), "{yaml}");
        assert!(yaml.contains("operation: Apply"), "{yaml}");
        assert!(yaml.contains("f:replicas: {}"), "{yaml}");

        // Another manager wanting a different replica count conflicts...
        let (ok, _, err) = apply(&deployment(5, "nginx:1.26", true), &["--field-manager=ops"]);
        assert!(!ok);
        assert!(
            err.contains(
                r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#
            ),
            "{bin}: {err}"
        );
        assert!(err.contains("--force-conflicts"), "{err}");
        assert_eq!(get("{.spec.replicas}"), "2");
        // ...and takes the field over when forced.
        let (ok, _, err) = apply(
            &deployment(5, "nginx:1.26", true),
            &["--field-manager=ops", "--force-conflicts"],
        );
        assert!(ok, "{err}");
        assert_eq!(get("{.spec.replicas}"), "5");
        let managers = get("{range .metadata.managedFields[*]}{.manager}:{.operation} {end}");
        assert!(
            managers.contains("ops:Apply") && managers.contains("kubectl:Apply"),
            "{managers}"
        );

        // "ops" applied the whole manifest, so it co-owns the image: kubectl changing it
        // conflicts now.
        let (ok, _, err) = apply(&deployment(5, "nginx:1.27", true), &[]);
        assert!(!ok);
        assert!(
            err.contains(
                r#"conflict with "ops": .spec.template.spec.containers[name="nginx"].image"#
            ),
            "{bin}: {err}"
        );
        // "ops" lets go of the label by applying without it; kubectl's apply without it then
        // removes it, since nobody owns it any more.
        let (ok, _, err) = apply(
            &deployment(5, "nginx:1.26", false),
            &["--field-manager=ops"],
        );
        assert!(ok, "{err}");
        assert_eq!(
            get("[{.metadata.labels.tier}]"),
            "[fe]",
            "kubectl still owns it"
        );
        let (ok, _, err) = apply(&deployment(5, "nginx:1.26", false), &[]);
        assert!(ok, "{err}");
        assert_eq!(
            get("{.spec.replicas} {.spec.template.spec.containers[0].image} [{.metadata.labels.tier}]"),
            "5 nginx:1.26 []"
        );

        // An update through another path (scale) takes ownership of what it changes; the next
        // apply by kubectl with a different count conflicts with that writer.
        let (ok, _, err) = kubectl(&s, bin, &["scale", "deploy", "web", "--replicas=7"], None);
        assert!(ok, "{err}");
        let (ok, _, err) = apply(&deployment(3, "nginx:1.26", false), &[]);
        assert!(!ok);
        // The manager is named after the client's User-Agent: the kubectl binary's name.
        assert!(
            err.contains(r#"with subresource "scale" using apps/v1: .spec.replicas"#),
            "{bin}: {err}"
        );
        let (ok, _, err) = kubectl(&s, bin, &["delete", "deploy", "web"], None);
        assert!(ok, "{err}");
    }
}

#[test]
fn client_side_apply_round_trip_and_field_removal() {
    let s = start();
    let apply = |manifest: &str| {
        kubectl(
            &s,
            "kubectl",
            &["apply", "--validate=false", "-f", "-"],
            Some(manifest),
        )
    };
    let (ok, out, err) = apply(&deployment(2, "nginx:1.26", true));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "deployment.apps/web created");
    let (ok, out, _) = apply(&deployment(2, "nginx:1.26", true));
    assert!(ok);
    assert_eq!(out.trim(), "deployment.apps/web unchanged");
    // The annotation comes back byte for byte.
    let (_, annotation, _) = kubectl(
        &s,
        "kubectl",
        &[
            "get",
            "deploy",
            "web",
            "-o",
            r#"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#,
        ],
        None,
    );
    assert!(annotation.ends_with("}\n"), "{annotation:?}");
    let (_, last, _) = kubectl(
        &s,
        "kubectl",
        &["apply", "view-last-applied", "deploy/web", "-o", "json"],
        None,
    );
    assert!(last.contains("\"tier\": \"fe\""), "{last}");
    // Dropping the label from the file removes it; changing the image changes only that.
    let (ok, out, err) = apply(&deployment(2, "nginx:1.27", false));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "deployment.apps/web configured");
    let (_, got, _) = kubectl(
        &s,
        "kubectl",
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} [{.metadata.labels.tier}] {.metadata.labels.app}",
        ],
        None,
    );
    assert_eq!(got, "nginx:1.27 [] web");
    // Client-side applies are recorded as updates by their manager.
    let (_, managers, _) = kubectl(
        &s,
        "kubectl",
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={range .metadata.managedFields[*]}{.manager}:{.operation} {end}",
        ],
        None,
    );
    assert!(
        managers.contains("kubectl-client-side-apply:Update"),
        "{managers}"
    );
}
