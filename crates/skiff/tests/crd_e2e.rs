//! End-to-end: CustomResourceDefinitions with the real kubectl.

mod common;

use common::{kubectl, spawn, start, versioned};

pub const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Size, type: string, jsonPath: .spec.size}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        description: A widget of some size.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: string
                description: How big the widget is.
                enum: [small, medium]
              replicas:
                type: integer
                minimum: 0
                default: 1
              color:
                type: string
                default: blue
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

fn widget(name: &str, size: &str, extra: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: {size}\n{extra}"
    )
}

#[test]
fn custom_resources_are_served_validated_and_deleted_with_their_crd() {
    let mut s = start();
    let k = |args: &[&str], stdin: Option<&str>| kubectl(&s, "kubectl", args, stdin);
    let (ok, out, err) = k(&["apply", "-f", "-"], Some(CRD));
    assert!(ok, "{err}");
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created")
    );
    let (ok, out, err) = k(
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let (_, status, _) = k(
        &["get", "crd", "widgets.example.com", "-o",
          "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].status} {.status.acceptedNames.kind} {.status.storedVersions}"],
        None,
    );
    assert_eq!(status, r#"True Widget ["v1"]"#);
    let (ok, out, _) = k(&["api-resources", "--api-group=example.com"], None);
    assert!(ok);
    assert!(
        out.lines().any(|l| l.starts_with("widgets")
            && l.contains(" wd ")
            && l.contains("example.com/v1")
            && l.contains("Widget")),
        "{out}"
    );

    // kubectl's default strict validation refuses a field the schema does not declare...
    let (ok, _, err) = k(
        &["apply", "-f", "-"],
        Some(&widget("w1", "small", "  bogus: 1\n")),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.bogus""#),
        "{err}"
    );
    // ...with --validate=warn it is pruned and warned about; schema defaults are filled in.
    let (ok, _, err) = k(
        &["apply", "--validate=warn", "-f", "-"],
        Some(&widget("w1", "small", "  bogus: 1\n")),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(r#"Warning: unknown field "spec.bogus""#),
        "{err}"
    );
    let (_, spec, _) = k(&["get", "wd", "w1", "-o", "jsonpath={.spec}"], None);
    assert_eq!(spec, r#"{"color":"blue","replicas":1,"size":"small"}"#);
    // The CRD's schema is in OpenAPI, so explain works on it.
    let (ok, out, err) = k(&["explain", "widget.spec"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("What the widget should be.") && out.contains("How big the widget is."),
        "{out}"
    );
    // Printer columns, and the category puts widgets in `get all`.
    let (_, table, _) = k(&["get", "widgets"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "REPLICAS", "AGE"], "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("w1 "), "{table}");
    let (_, all, _) = k(&["get", "all"], None);
    assert!(all.contains("widget.example.com/w1"), "{all}");

    // Invalid objects are 422 with the field named.
    let (ok, _, err) = k(
        &["apply", "-f", "-"],
        Some(&widget("bad", "huge", "  replicas: -1\n")),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"The Widget "bad" is invalid: "#)
            && err.contains(r#"spec.size: Unsupported value: "huge": supported values: "small", "medium""#)
            && err.contains("spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
        "{err}"
    );
    let (ok, _, err) = k(
        &["create", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: nosize}\nspec: {}\n"),
    );
    assert!(!ok && err.contains("spec.size: Required value"), "{err}");

    // Status only through /status; the main resource ignores it.
    let (ok, _, err) = k(
        &[
            "patch",
            "wd",
            "w1",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":2},"status":{"replicas":9}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, got, _) = k(
        &[
            "get",
            "wd",
            "w1",
            "-o",
            "jsonpath={.spec.replicas}/{.status.replicas}/{.metadata.generation}",
        ],
        None,
    );
    assert_eq!(got, "2//2");
    let (ok, _, err) = k(
        &[
            "patch",
            "wd",
            "w1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":2,"selector":"app=w1"}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, got, _) = k(
        &[
            "get",
            "wd",
            "w1",
            "-o",
            "jsonpath={.status.replicas}/{.metadata.generation}",
        ],
        None,
    );
    assert_eq!(got, "2/2");
    // Scale through the declared paths.
    let (ok, _, err) = k(&["scale", "wd", "w1", "--replicas=4"], None);
    assert!(ok, "{err}");
    let (_, got, _) = k(
        &[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        ],
        None,
    );
    assert!(
        got.contains(r#""spec":{"replicas":4}"#) && got.contains(r#""selector":"app=w1""#),
        "{got}"
    );
    // Strategic merge has no merge keys here: 415 as upstream.
    let (ok, _, err) = k(
        &["patch", "wd", "w1", "-p", r#"{"spec":{"color":"red"}}"#],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );
    // Every served version reads the same objects.
    let (_, av, _) = k(
        &[
            "get",
            "widgets.v1beta1.example.com",
            "w1",
            "-o",
            "jsonpath={.apiVersion} {.spec.size}",
        ],
        None,
    );
    assert_eq!(av, "example.com/v1beta1 small");
    // A cluster-scoped CRD next to it, read with another kubectl.
    let cluster_crd = CRD
        .replace("widgets", "gadgets")
        .replace("widget", "gadget")
        .replace("Widget", "Gadget")
        .replace("[wd]", "[gd]")
        .replace("Namespaced", "Cluster");
    let (ok, _, err) = k(&["apply", "-f", "-"], Some(&cluster_crd));
    assert!(ok, "{err}");
    k(
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/gadgets.example.com",
            "--timeout=10s",
        ],
        None,
    );
    let (ok, _, err) = k(
        &["apply", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {size: medium}\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(
        &s,
        &versioned("1.30"),
        &["get", "gd", "g1", "-o", "name"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "gadget.example.com/g1\n");

    // The CRD and its objects survive a restart.
    let _ = s.child.kill();
    let _ = s.child.wait();
    s.child = spawn(s.dir.path());
    let k = |args: &[&str], stdin: Option<&str>| kubectl(&s, "kubectl", args, stdin);
    let mut served = false;
    for _ in 0..50 {
        let (ok, out, _) = k(&["get", "wd", "w1", "-o", "name"], None);
        if ok && out == "widget.example.com/w1\n" {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served, "widgets are served again after a restart");

    // Deleting the CRD deletes its objects and stops serving it.
    let (ok, out, err) = k(&["delete", "crd", "widgets.example.com"], None);
    assert!(ok, "{err}");
    assert!(out.contains("deleted"), "{out}");
    // kubectl still has widgets in its discovery cache, so it asks and gets a 404; with a
    // fresh cache it no longer knows the type at all.
    let (ok, _, err) = k(&["get", "widgets"], None);
    assert!(!ok);
    assert!(
        err.contains("the server could not find the requested resource"),
        "{err}"
    );
    let fresh = tempfile::tempdir().unwrap();
    let (ok, _, err) = k(
        &[
            "get",
            "widgets",
            "--cache-dir",
            fresh.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains(r#"the server doesn't have a resource type "widgets""#),
        "{err}"
    );
    let (ok, _, err) = k(&["apply", "-f", "-"], Some(CRD));
    assert!(ok, "{err}");
    let (ok, out, err) = k(
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = k(&["get", "widgets"], None);
    assert!(ok, "{err}");
    assert!(out.is_empty(), "objects of the deleted CRD are gone: {out}");
    assert!(err.contains("No resources found"), "{err}");
}
