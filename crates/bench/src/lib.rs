//! What skiff's benchmarks share: starting a real `skiff server` process, a kube-rs client
//! for it, and reading a process's memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A running server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub kubeconfig: PathBuf,
    /// From process start until a `/readyz` request answered `ok`.
    pub ready_after: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `skiff server` on a free port over `data_dir` with `extra` flags, and waits for
/// `/readyz`.
pub async fn start_server(
    skiff: &Path,
    data_dir: &Path,
    extra: &[String],
) -> Result<(Server, Client)> {
    let started = Instant::now();
    let mut child = Command::new(skiff)
        .args([
            "server",
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", skiff.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    if !line.contains("skiff is ready") {
        bail!("unexpected first line from skiff: {line}");
    }
    let kubeconfig = data_dir.join("admin.kubeconfig");
    let client = client_for(&kubeconfig).await?;
    let body = client.request_text(get("/readyz")?).await?;
    if body.trim() != "ok" {
        bail!("/readyz said {body}");
    }
    let ready_after = started.elapsed();
    Ok((
        Server {
            child,
            kubeconfig,
            ready_after,
        },
        client,
    ))
}

/// A client from a kubeconfig, with a long read timeout for big lists.
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(Duration::from_secs(600));
    Ok(Client::try_from(config)?)
}

pub fn get(path: &str) -> Result<http::Request<Vec<u8>>> {
    Ok(http::Request::get(path).body(Vec::new())?)
}

pub fn post(path: &str, body: Vec<u8>) -> Result<http::Request<Vec<u8>>> {
    Ok(http::Request::post(path)
        .header("content-type", "application/json")
        .body(body)?)
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for process {pid}"))
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory a process has had, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
