//! The Python `kubernetes` client (from PyPI) against a real `skiff server`.
//!
//! The client lives in a virtualenv that `scripts/test.sh` makes (`target/pyenv`, or the
//! interpreter named by `SKIFF_PYTHON`). Without it this test fails and says how to get it.

mod common;

use std::process::Command;

fn python() -> String {
    if let Ok(p) = std::env::var("SKIFF_PYTHON") {
        return p;
    }
    let venv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python");
    assert!(
        venv.exists(),
        "no Python client: run scripts/test.sh (it makes target/pyenv with `pip install kubernetes`) or set SKIFF_PYTHON"
    );
    venv.display().to_string()
}

#[test]
fn python_client_drives_deployments_and_custom_objects() {
    let python = python();
    let s = common::start();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_test.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&s.kubeconfig)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}");
}
