//! API server benchmark: a real `skiff server` process on SQLite over HTTPS, driven by a
//! kube-rs client the way a user's program drives it.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-bench
//! ./target/release/skiff-apiserver-bench [--skiff PATH] [--pods 10000] [--clients 32]
//!     [--watchers 100] [--watch-events 100] [-- extra skiff server args]
//! ```
//!
//! It measures, in one run: time from process start to `/readyz` OK on an empty data dir and
//! on one holding the created pods; idle resident memory; pod creates/s and p50/p99 latency
//! with `--clients` concurrent clients (2 KiB pods), against the raw store write rate measured
//! in the same run (the `SqliteStore` the server uses, same number of concurrent writers, same
//! value size, FULL durability, and plain rusqlite single-row transactions); the time to list
//! all pods; and watch delivery latency with `--watchers` concurrent watchers.
//! `bench/APISERVER.md` records results and method.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use kube::Client;
use skiff_bench::{get, ms, post, rss_kib, start_server};

struct Args {
    skiff: PathBuf,
    pods: usize,
    clients: usize,
    watchers: usize,
    watch_events: usize,
    server_args: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    let mut a = Args {
        skiff: exe.with_file_name("skiff"),
        pods: 10_000,
        clients: 32,
        watchers: 100,
        watch_events: 100,
        server_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--" {
            a.server_args = it.by_ref().collect();
            break;
        }
        let val = it.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--skiff" => a.skiff = PathBuf::from(val),
            "--pods" => a.pods = val.parse()?,
            "--clients" => a.clients = val.parse()?,
            "--watchers" => a.watchers = val.parse()?,
            "--watch-events" => a.watch_events = val.parse()?,
            _ => bail!("unknown argument {arg}"),
        }
    }
    Ok(a)
}

/// A pod as users write them, about 2 KiB of JSON: labels, annotations, two containers with
/// env, ports, resources, probes and mounts.
fn pod_json(ns: &str, name: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"app": "bench", "tier": "backend", "release": "stable", "pod": name},
            "annotations": {"bench.skiff.dev/description": "a pod of about two KiB, like the ones people deploy",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9102"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "registry.local/app:1.4.2",
                 "args": ["--listen=:8080", "--log-level=info", "--metrics=:9102"],
                 "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9102}],
                 "env": [{"name": "APP_MODE", "value": "production"},
                         {"name": "APP_REGION", "value": "local"},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"cpu": "500m", "memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                 "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 10},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                                  {"name": "cache", "mountPath": "/var/cache/app"}]},
                {"name": "sidecar", "image": "registry.local/proxy:2.0.1",
                 "args": ["--upstream=127.0.0.1:8080", "--port=15001"],
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}
            ],
            "volumes": [{"name": "config", "configMap": {"name": "app-config"}},
                        {"name": "cache", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 30
        }
    });
    serde_json::to_vec(&body).expect("pod JSON")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `count` creates from `clients` concurrent clients; returns (elapsed, sorted latencies).
async fn create_pods(
    client: &Client,
    ns: &str,
    count: usize,
    clients: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, next, latencies) = (client.clone(), next.clone(), latencies.clone());
        let ns = ns.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = pod_json(&ns, &format!("pod-{i:05}"));
                let t = Instant::now();
                client
                    .request_text(post(&format!("/api/v1/namespaces/{ns}/pods"), body)?)
                    .await
                    .with_context(|| format!("creating pod {i}"))?;
                latencies.lock().unwrap().push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let mut l = std::mem::take(&mut *latencies.lock().unwrap());
    l.sort();
    Ok((elapsed, l))
}

/// The store the server uses, driven directly: `clients` concurrent writers of 2 KiB values.
async fn raw_store_rate(dir: &Path, count: usize, clients: usize) -> Result<f64> {
    use skiff_store::sqlite::{SqliteOptions, SqliteStore};
    use skiff_store::Storage;
    let store = SqliteStore::open(&dir.join("raw-store.db"), SqliteOptions::default())?;
    let value = vec![b'x'; 2048];
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (store, next, value) = (store.clone(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                store
                    .create(
                        &format!("/registry/core/pods/bench/pod-{i:05}"),
                        value.clone().into(),
                    )
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Plain rusqlite, one fsync'ed single-row transaction per insert (WAL, synchronous=FULL).
fn raw_sqlite_rate(dir: &Path, count: usize) -> Result<f64> {
    let conn = rusqlite::Connection::open(dir.join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB)", [])?;
    let value = vec![b'x'; 2048];
    let started = Instant::now();
    for i in 0..count {
        conn.execute(
            "INSERT INTO kv (k, v) VALUES (?1, ?2)",
            rusqlite::params![format!("/registry/core/pods/bench/pod-{i:05}"), value],
        )?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Watch latency: `watchers` watches on one namespace; `events` pods created one after the
/// other, 10 ms apart. Latency = event received by a watcher − start of the create call.
async fn watch_latency(client: &Client, watchers: usize, events: usize) -> Result<Vec<Duration>> {
    let ns = "watch-bench";
    client
        .request_text(post(
            "/api/v1/namespaces",
            serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns}}))?,
        )?)
        .await?;
    let list = client
        .request_text(get(&format!("/api/v1/namespaces/{ns}/pods"))?)
        .await?;
    let rv: serde_json::Value = serde_json::from_str(&list)?;
    let rv = rv["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_string();
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; events]));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let req = get(&format!(
            "/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=300"
        ))?;
        let lines = client.request_stream(req).await?.lines();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(events);
            let mut lines = lines.into_stream().take(events);
            while let Some(line) = lines.try_next().await? {
                let at = Instant::now();
                let ev: serde_json::Value = serde_json::from_str(&line)?;
                let name = ev["object"]["metadata"]["name"].as_str().unwrap_or("");
                let i: usize = name.trim_start_matches("pod-").parse().unwrap_or(0);
                if let Some(t) = sent.lock().unwrap()[i] {
                    got.push(at.saturating_duration_since(t));
                }
            }
            Ok::<_, anyhow::Error>(got)
        }));
    }
    // Let every watch reach the server before the first write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..events {
        sent.lock().unwrap()[i] = Some(Instant::now());
        client
            .request_text(post(
                &format!("/api/v1/namespaces/{ns}/pods"),
                pod_json(ns, &format!("pod-{i:05}")),
            )?)
            .await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(tokio::time::timeout(Duration::from_secs(60), t).await???);
    }
    all.sort();
    Ok(all)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    println!("# skiff API server benchmark");
    println!(
        "pods: {}, clients: {}, watchers: {}, server args: {:?}\n",
        args.pods, args.clients, args.watchers, args.server_args
    );

    let (server, client) = start_server(&args.skiff, &data, &args.server_args).await?;
    println!("| measure | result |\n|---|---|");
    println!(
        "| start to /readyz OK, empty data dir | {} |",
        ms(server.ready_after)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(server.child.id())?;
    println!("| idle resident memory | {:.1} MiB |", idle as f64 / 1024.0);

    // Baselines first, on the same file system as the server's data dir.
    let raw_sqlite = raw_sqlite_rate(tmp.path(), 5_000)?;
    let raw_store = raw_store_rate(tmp.path(), args.pods, args.clients).await?;
    println!("| baseline: raw SQLite single-row txns, 1 writer | {raw_sqlite:.0} writes/s |");
    println!(
        "| baseline: skiff SqliteStore creates, {} writers | {raw_store:.0} writes/s |",
        args.clients
    );

    let (elapsed, lat) = create_pods(&client, "default", args.pods, args.clients).await?;
    let rate = args.pods as f64 / elapsed.as_secs_f64();
    println!(
        "| pod creates, {} clients over HTTPS | {rate:.0} /s ({:.2}x store, {:.2}x raw SQLite) |",
        args.clients,
        rate / raw_store,
        rate / raw_sqlite
    );
    println!(
        "| pod create latency p50 / p99 | {} / {} |",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    let loaded = rss_kib(server.child.id())?;
    println!(
        "| resident memory with {} pods | {:.1} MiB |",
        args.pods,
        loaded as f64 / 1024.0
    );

    let mut lists = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let body = client.request_text(get("/api/v1/pods")?).await?;
        lists.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let n = v["items"].as_array().map_or(0, Vec::len);
        if n < args.pods {
            bail!("list returned {n} pods, expected {}", args.pods);
        }
    }
    lists.sort();
    println!(
        "| list all {} pods (JSON, one request), median of 5 | {} |",
        args.pods,
        ms(lists[2])
    );
    let t = Instant::now();
    let mut cont = String::new();
    let mut pages = 0;
    loop {
        let body = client
            .request_text(get(&format!("/api/v1/pods?limit=500&continue={cont}"))?)
            .await?;
        pages += 1;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        match v["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
    }
    println!(
        "| list all pods in pages of 500 (kubectl's way), {pages} pages | {} |",
        ms(t.elapsed())
    );

    let lat = watch_latency(&client, args.watchers, args.watch_events).await?;
    println!(
        "| watch delivery p50 / p99, {} watchers x {} events ({} samples) | {} / {} |",
        args.watchers,
        args.watch_events,
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );

    let kubeconfig = server.kubeconfig.clone();
    drop(server);
    drop(client);
    let _ = kubeconfig;
    let (server, _client) = start_server(&args.skiff, &data, &args.server_args).await?;
    println!(
        "| start to /readyz OK, data dir with {} pods | {} |",
        args.pods + args.watch_events,
        ms(server.ready_after)
    );
    Ok(())
}
