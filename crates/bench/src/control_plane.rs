//! Control-plane benchmark: a real `skiff server` (controllers and scheduler in-process, on
//! SQLite) and one `skiff sim nodes` process with N simulated nodes; Deployments totalling
//! `--pods` replicas are created through the API, and a watch records when each pod is
//! created, bound to a node and Running.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-bench
//! ./target/release/skiff-control-plane-bench [--skiff PATH] [--nodes 1000,5000]
//!     [--pods 10000] [--deployments 10] [-- extra skiff server args]
//! ```
//!
//! For each node count it reports: the time until every node is Ready; pods bound per
//! second (end to end from the first Deployment create to the last binding, and between the
//! first and last binding, with the best one-second window); scheduling latency (pod seen →
//! bound) p50/p99; the time until every pod is Running; and the resident memory and CPU time
//! of the server and of the simulator. `bench/CONTROL_PLANE.md` records results and method.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use skiff_bench::{ms, peak_rss_kib, rss_kib, start_server};

struct Args {
    skiff: PathBuf,
    nodes: Vec<usize>,
    pods: usize,
    deployments: usize,
    server_args: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    let mut a = Args {
        skiff: exe.with_file_name("skiff"),
        nodes: vec![1_000, 5_000],
        pods: 10_000,
        deployments: 10,
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
            "--nodes" => {
                a.nodes = val
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--pods" => a.pods = val.parse()?,
            "--deployments" => a.deployments = val.parse()?,
            _ => bail!("unknown argument {arg}"),
        }
    }
    if a.deployments == 0 || a.pods % a.deployments != 0 {
        bail!("--pods must be a multiple of --deployments");
    }
    Ok(a)
}

/// User and system CPU time of a process, from /proc.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// When the watch first saw each pod, saw it bound, and saw it Running.
#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn watch_pods(client: Client, seen: Arc<Mutex<Seen>>) {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, "default");
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                continue;
            };
            let now = Instant::now();
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut s = seen.lock().unwrap();
            s.created.entry(name.clone()).or_insert(now);
            if p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
            {
                s.bound.entry(name.clone()).or_insert(now);
            }
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                s.running.entry(name).or_insert(now);
            }
        }
    });
}

fn deployment(name: &str, replicas: usize) -> Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "registry.local/web:1",
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }]},
            },
        },
    }))?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Requests by (verb, resource, subresource) from the server's `/metrics`: count and
/// total seconds.
async fn request_stats(client: &Client) -> Result<HashMap<String, (f64, f64)>> {
    let text = client.request_text(skiff_bench::get("/metrics")?).await?;
    let mut out: HashMap<String, (f64, f64)> = HashMap::new();
    for line in text.lines() {
        let (field, rest) =
            if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
                (1, r)
            } else if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
                (0, r)
            } else {
                continue;
            };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let sub = label("subresource");
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        );
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        let e = out.entry(key).or_default();
        if field == 0 {
            e.0 += v;
        } else {
            e.1 += v;
        }
    }
    Ok(out)
}

async fn wait_ready_nodes(client: &Client, want: usize, limit: Duration) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + limit;
    loop {
        let nodes = api.list(&ListParams::default()).await?;
        let ready = nodes
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {want} nodes Ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run(args: &Args, nodes: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let (server, client) = start_server(&args.skiff, &data, &args.server_args).await?;
    let started = Instant::now();
    let mut sim = Command::new(&args.skiff)
        .args([
            "sim",
            "nodes",
            "--count",
            &nodes.to_string(),
            "--kubeconfig",
        ])
        .arg(&server.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting skiff sim nodes")?;
    let result = async {
        wait_ready_nodes(&client, nodes, Duration::from_secs(600)).await?;
        let registered = started.elapsed();
        // Let the first Lease renewals and the controllers' node work settle.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let rss_nodes = rss_kib(server.child.id())?;
        let cpu_before = cpu_time(server.child.id())?;
        let sim_cpu_before = cpu_time(sim.id())?;

        let before = request_stats(&client).await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        watch_pods(client.clone(), seen.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let t0 = Instant::now();
        let per = args.pods / args.deployments;
        for i in 0..args.deployments {
            api.create(&PostParams::default(), &deployment(&format!("web-{i}"), per)?)
                .await?;
        }
        let deadline = t0 + Duration::from_secs(1800);
        loop {
            {
                let s = seen.lock().unwrap();
                if s.bound.len() >= args.pods && s.running.len() >= args.pods {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "after 30 min: {} pods seen, {} bound, {} Running",
                        s.created.len(),
                        s.bound.len(),
                        s.running.len()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu = cpu_time(server.child.id())? - cpu_before;
        let sim_cpu = cpu_time(sim.id())? - sim_cpu_before;
        let rss = rss_kib(server.child.id())?;
        let peak = peak_rss_kib(server.child.id())?;
        let sim_rss = rss_kib(sim.id())?;
        let after = request_stats(&client).await?;
        let s = seen.lock().unwrap();
        let first_bound = *s.bound.values().min().unwrap();
        let last_bound = *s.bound.values().max().unwrap();
        let last_created = *s.created.values().max().unwrap();
        let all_running = *s.running.values().max().unwrap();
        let mut lat: Vec<Duration> = s
            .bound
            .iter()
            .map(|(n, b)| b.saturating_duration_since(s.created[n]))
            .collect();
        lat.sort();
        // The best one-second window of bindings.
        let mut times: Vec<Instant> = s.bound.values().copied().collect();
        times.sort();
        let (mut best, mut j) = (0, 0);
        for i in 0..times.len() {
            while times[i].duration_since(times[j]) >= Duration::from_secs(1) {
                j += 1;
            }
            best = best.max(i - j + 1);
        }
        let end_to_end = s.bound.len() as f64 / last_bound.duration_since(t0).as_secs_f64();
        let binding = s.bound.len() as f64 / last_bound.duration_since(first_bound).as_secs_f64();
        println!("\n## {nodes} nodes, {} pods in {} Deployments\n", args.pods, args.deployments);
        println!("| measure | result |\n|---|---|");
        println!("| all {nodes} nodes Ready after sim start | {:.1} s |", registered.as_secs_f64());
        println!("| server resident memory with {nodes} idle nodes | {} |", mib(rss_nodes));
        println!(
            "| last pod created (by the ReplicaSet controller) | {:.2} s after the first Deployment |",
            last_created.duration_since(t0).as_secs_f64()
        );
        println!(
            "| last pod bound | {:.2} s after the first Deployment |",
            last_bound.duration_since(t0).as_secs_f64()
        );
        println!("| pods bound per second, end to end | {end_to_end:.0} /s |");
        println!("| pods bound per second, first to last binding | {binding:.0} /s |");
        println!("| pods bound in the best one-second window | {best} |");
        println!(
            "| scheduling latency (pod seen → bound) p50 / p99 | {} / {} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
        println!(
            "| all pods Running | {:.2} s after the first Deployment |",
            all_running.duration_since(t0).as_secs_f64()
        );
        println!("| server resident memory at the end / peak | {} / {} |", mib(rss), mib(peak));
        println!("| server CPU time during the run | {:.1} s |", cpu.as_secs_f64());
        println!("| simulator resident memory / CPU time | {} / {:.1} s |", mib(sim_rss), sim_cpu.as_secs_f64());
        // What the API server served during the run, busiest first.
        let mut rows: Vec<(String, f64, f64)> = after
            .iter()
            .map(|(k, (n, secs))| {
                let (n0, s0) = before.get(k).copied().unwrap_or_default();
                (k.clone(), n - n0, secs - s0)
            })
            .filter(|(_, n, _)| *n >= 1.0)
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("\n| requests during the run | count | mean latency |\n|---|---|---|");
        for (k, n, secs) in rows.iter().take(10) {
            println!("| {k} | {n:.0} | {:.1} ms |", secs / n * 1000.0);
        }
        Ok(())
    }
    .await;
    let _ = sim.kill();
    let _ = sim.wait();
    drop(server);
    result
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    println!("# skiff control-plane benchmark");
    println!(
        "nodes: {:?}, pods: {}, deployments: {}, server args: {:?}",
        args.nodes, args.pods, args.deployments, args.server_args
    );
    for &n in &args.nodes {
        run(&args, n).await?;
    }
    Ok(())
}
