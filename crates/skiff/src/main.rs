//! `skiff`: Kubernetes in one small binary.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes in one small binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    /// Embedded SQLite file in the data dir.
    Sqlite,
    /// An etcd v3 cluster (--etcd-endpoints).
    Etcd,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server with the controllers and the scheduler.
    Server(ServerArgs),
    /// Run the controllers against a server.
    Controllers(ControllersArgs),
    /// Run the scheduler against a server.
    Scheduler(ClientArgs),
    /// Simulators for testing and benchmarks.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Parser)]
struct ClientArgs {
    /// Kubeconfig of the server to work against.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
}

#[derive(Parser)]
struct ControllersArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    controllers: ControllerFlags,
}

/// kube-controller-manager's flags that skiff honours.
#[derive(clap::Args, Clone, Debug)]
struct ControllerFlags {
    /// How long a node may go without renewing its Lease or posting Ready before it is
    /// marked Unknown and tainted unreachable.
    #[arg(long, default_value = "50s", value_parser = go_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// The same for a node that never posted Ready.
    #[arg(long, default_value = "60s", value_parser = go_duration)]
    node_startup_grace_period: std::time::Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    node_monitor_period: std::time::Duration,
    /// The range each node's podCIDR is cut from.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// How many terminated pods (Succeeded or Failed) may exist before the oldest are
    /// deleted; 0 or less turns that off.
    #[arg(long, default_value_t = 12500, allow_negative_numbers = true)]
    terminated_pod_gc_threshold: i32,
}

impl ControllerFlags {
    fn config(&self) -> Result<skiff_controllers::Config> {
        Ok(skiff_controllers::Config {
            node_ipam: skiff_controllers::nodeipam::Range::parse(
                &self.cluster_cidr,
                self.node_cidr_mask_size,
            )
            .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?,
            node_lifecycle: skiff_controllers::nodelifecycle::Config {
                grace_period: self.node_monitor_grace_period,
                startup_grace_period: self.node_startup_grace_period,
                monitor_period: self.node_monitor_period,
            },
            pod_gc: pod_gc_config(self.terminated_pod_gc_threshold)?,
        })
    }
}

/// PodGC's settings. Upstream hard-codes its 20 s check period and 40 s orphan quarantine:
/// kube-controller-manager has no flag for them, only upstream's integration tests change
/// them (through `NewPodGCInternal`). So skiff's command line has no flag for them either,
/// and its tests shorten them through two undocumented variables, as `SKIFF_LOG` and
/// `SKIFF_ETCD_BIN` are outside upstream's flags: `SKIFF_POD_GC_PERIOD` and
/// `SKIFF_POD_GC_QUARANTINE` (durations as "500ms" or "2s").
fn pod_gc_config(threshold: i32) -> Result<skiff_controllers::podgc::Config> {
    let mut config = skiff_controllers::podgc::Config {
        terminated_pod_threshold: threshold,
        ..Default::default()
    };
    for (var, field) in [
        ("SKIFF_POD_GC_PERIOD", &mut config.period),
        ("SKIFF_POD_GC_QUARANTINE", &mut config.quarantine),
    ] {
        if let Ok(v) = std::env::var(var) {
            *field = go_duration(&v).map_err(|e| anyhow::anyhow!("{var}: {e}"))?;
        }
    }
    if config.period.is_zero() {
        anyhow::bail!("SKIFF_POD_GC_PERIOD must be more than 0");
    }
    Ok(config)
}

/// A duration as Kubernetes flags write them ("40s", "1m30s", "500ms").
fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("negative duration {s:?}"))
}

#[derive(Subcommand)]
enum SimCommand {
    /// Simulated nodes: register Nodes, renew their Leases and play a kubelet for their pods
    /// (which run nothing).
    Nodes(SimNodesArgs),
}

#[derive(Parser)]
struct SimNodesArgs {
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// How many nodes.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Node names are PREFIX<index>.
    #[arg(long, default_value = "sim-")]
    prefix: String,
    /// Index of the first node.
    #[arg(long, default_value_t = 0)]
    start: usize,
    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value = "110")]
    pods: String,
    /// Seconds between Lease renewals.
    #[arg(long, default_value_t = 10)]
    lease_interval: u64,
}

#[derive(Parser)]
struct ServerArgs {
    /// Where state, certificates and the admin kubeconfig live.
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTPS port; 0 picks a free one.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Storage backend.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Extra names or addresses for the serving certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Static bearer tokens: lines of token,user,uid[,"group1,group2"].
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Range of ClusterIPs for Services.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: ipnet_arg::Net,
    /// Do not run the controllers in this process.
    #[arg(long)]
    disable_controllers: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    controllers: ControllerFlags,
}

/// Runs the controllers and/or the scheduler over one set of shared informers, each once it
/// holds its leader Lease in kube-system (so two servers never both act). Losing a Lease
/// ends the process, as upstream's components do.
async fn start_components(
    kubeconfig: &std::path::Path,
    controllers: Option<skiff_controllers::Config>,
    scheduler: bool,
    identity: String,
) -> Result<()> {
    let client = skiff_client::client_from_kubeconfig(kubeconfig).await?;
    let informers = skiff_client::Informers::new(client.clone());
    let roles = [
        (controllers.is_some(), "kube-controller-manager"),
        (scheduler, "kube-scheduler"),
    ];
    for (enabled, lease) in roles {
        if !enabled {
            continue;
        }
        let cfg = skiff_client::leader::Config::new("kube-system", lease, &identity);
        let (client, informers) = (client.clone(), informers.clone());
        let config = controllers.clone().unwrap_or_default();
        tokio::spawn(async move {
            let mut leading = skiff_client::leader::acquire(client, cfg).await;
            if lease == "kube-scheduler" {
                skiff_scheduler::start(&informers);
            } else {
                skiff_controllers::start(&informers, &config);
            }
            informers.start();
            let _ = leading.wait_for(|l| !*l).await;
            tracing::error!(lease, "leader election lost; exiting");
            std::process::exit(1);
        });
    }
    Ok(())
}

/// `start_components` on a runtime of its own threads. In `skiff server` the components'
/// watch streams would otherwise queue behind the API server's request tasks on one runtime,
/// and fall seconds behind under load; on their own threads the OS shares the cores fairly
/// between serving and acting, as with separate processes.
fn start_components_on_own_runtime(
    kubeconfig: std::path::PathBuf,
    controllers: Option<skiff_controllers::Config>,
    scheduler: bool,
    identity: String,
) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("skiff-components".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("skiff-components")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let started = start_components(&kubeconfig, controllers, scheduler, identity).await;
                let _ = tx.send(started);
                std::future::pending::<()>().await
            });
        })?;
    rx.recv()?
}

/// A leader-election identity: the host name, plus `suffix` when given.
fn identity(suffix: Option<&str>) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "skiff".into());
    match suffix {
        Some(s) => format!("{host}_{s}"),
        None => host,
    }
}

mod ipnet_arg {
    /// A CIDR argument, parsed by the apiserver's own type.
    #[derive(Clone, Debug)]
    pub struct Net(pub String);
    impl std::str::FromStr for Net {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            skiff_apiserver::parse_service_cidr(s).map(|_| Net(s.to_string()))
        }
    }
}

fn default_data_dir() -> PathBuf {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    if root {
        PathBuf::from("/var/lib/skiff")
    } else {
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        PathBuf::from(home).join(".local/share/skiff")
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(a) => {
            let controllers = (!a.disable_controllers)
                .then(|| a.controllers.config())
                .transpose()?;
            let store = match a.store {
                StoreKind::Sqlite => skiff_apiserver::StoreConfig::Sqlite,
                StoreKind::Etcd => {
                    if a.etcd_endpoints.is_empty() {
                        anyhow::bail!("--store etcd needs --etcd-endpoints URL[,URL...]");
                    }
                    skiff_apiserver::StoreConfig::Etcd {
                        endpoints: a.etcd_endpoints,
                    }
                }
            };
            let config = skiff_apiserver::Config {
                data_dir: a.data_dir.unwrap_or_else(default_data_dir),
                bind_address: a.bind_address,
                secure_port: a.secure_port,
                store,
                tls_san: a.tls_san,
                token_file: a.token_file,
                service_cidr: skiff_apiserver::parse_service_cidr(&a.service_cidr.0)
                    .map_err(anyhow::Error::msg)?,
                ..Default::default()
            };
            let handle = skiff_apiserver::server::start(config).await?;
            // One line on stdout that scripts and tests can read.
            println!(
                "skiff is ready at https://{} ; kubeconfig: {}",
                handle.addr,
                handle.kubeconfig.display()
            );
            if !(a.disable_controllers && a.disable_scheduler) {
                let kubeconfig = handle.kubeconfig.clone();
                let scheduler = !a.disable_scheduler;
                tokio::task::spawn_blocking(move || {
                    start_components_on_own_runtime(
                        kubeconfig,
                        controllers,
                        scheduler,
                        identity(None),
                    )
                })
                .await??;
            }
            handle.wait_for_signal().await;
        }
        Command::Controllers(a) => {
            let id = identity(Some(&format!("controllers-{}", std::process::id())));
            start_components(
                &a.client.kubeconfig,
                Some(a.controllers.config()?),
                false,
                id,
            )
            .await?;
            tokio::signal::ctrl_c().await?;
        }
        Command::Scheduler(a) => {
            let id = identity(Some(&format!("scheduler-{}", std::process::id())));
            start_components(&a.kubeconfig, None, true, id).await?;
            tokio::signal::ctrl_c().await?;
        }
        Command::Sim(SimCommand::Nodes(a)) => {
            let client = skiff_client::client_from_kubeconfig(&a.kubeconfig).await?;
            let config = skiff_kubelet::sim::Config {
                count: a.count,
                prefix: a.prefix,
                start: a.start,
                cpu: a.cpu,
                memory: a.memory,
                pods: a.pods,
                lease_interval: std::time::Duration::from_secs(a.lease_interval.max(1)),
                ..Default::default()
            };
            tokio::select! {
                r = skiff_kubelet::sim::run(client, config) => r?,
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
    Ok(())
}
