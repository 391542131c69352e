//! Shared by the end-to-end tests: starting a real `skiff server` process and running the
//! real kubectl against it. Each test binary uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Start `skiff server` on `dir` and wait for its ready line.
pub fn spawn(dir: &std::path::Path) -> Child {
    spawn_with(dir, &[])
}

/// `spawn` with extra server flags.
pub fn spawn_with(dir: &std::path::Path, extra: &[&str]) -> Child {
    spawn_with_env(dir, extra, &[])
}

/// `spawn_with` with extra environment variables.
pub fn spawn_with_env(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start skiff");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("skiff is ready"),
        "unexpected first line: {line}"
    );
    child
}

/// A running server with its own data dir and kubectl cache dir, killed on drop.
pub struct Server {
    pub child: Child,
    pub kubeconfig: String,
    pub cache: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    Server {
        child: spawn(dir.path()),
        kubeconfig: dir.path().join("admin.kubeconfig").display().to_string(),
        cache: tempfile::tempdir().unwrap(),
        dir,
    }
}

/// The versioned kubectl binaries sit beside the one `kubectl` on PATH resolves to.
pub fn versioned(minor: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    for d in path.split(':') {
        let k = std::path::Path::new(d).join("kubectl");
        if let Ok(real) = std::fs::canonicalize(&k) {
            let v = real.parent().unwrap().join(format!("kubectl.{minor}"));
            if v.exists() {
                return v.display().to_string();
            }
        }
    }
    panic!("kubectl.{minor} not found beside kubectl on PATH");
}

/// Run kubectl (a versioned binary such as `kubectl.1.30` or plain `kubectl`).
pub fn kubectl(
    s: &Server,
    bin: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    run_kubectl(bin, &s.kubeconfig, s.cache.path(), args, stdin)
}

/// Runs `bin` (a kubectl) against `kubeconfig` with `cache` as its discovery cache, feeding
/// it `stdin`; returns (success, stdout, stderr).
pub fn run_kubectl(
    bin: &str,
    kubeconfig: &str,
    cache: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut c = Command::new(bin)
        .args(["--kubeconfig", kubeconfig, "--cache-dir"])
        .arg(cache)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    } else {
        drop(c.stdin.take());
    }
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
