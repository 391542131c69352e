//! Storage benchmark: both backends against their raw baselines.
//!
//! ```text
//! cargo run --release -p skiff-store --bin skiff-store-bench -- \
//!     [--only sqlite|etcd] [--durability full|normal] [--secs N] [--dir DIR] \
//!     [--etcd-endpoints URL,URL]
//! ```
//!
//! With 2 KiB values it measures, per backend: sequential writes/s, writes/s with 16 and 64
//! concurrent writers, the time to list 10,000 keys, and watch delivery latency (from the
//! start of a write to its event) at about 1,000 writes/s. Baselines in the same run: plain
//! rusqlite single-row transactions (same durability, same file system; concurrent writers each
//! with their own connection and a busy timeout) and plain etcd puts through the same
//! etcd-client library. Each figure is printed with its ratio to the baseline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::etcd::EtcdStore;
use skiff_store::etcd_server::EtcdServer;
use skiff_store::sqlite::{Durability, SqliteOptions, SqliteStore};
use skiff_store::{ListOptions, Storage};

const VALUE_SIZE: usize = 2048;
const LIST_KEYS: usize = 10_000;

struct Args {
    only: Option<String>,
    durability: Durability,
    secs: f64,
    dir: PathBuf,
    etcd_endpoints: Option<Vec<String>>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        only: None,
        durability: Durability::Full,
        secs: 5.0,
        dir: std::env::temp_dir(),
        etcd_endpoints: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--only" => a.only = Some(val()?),
            "--durability" => {
                a.durability = match val()?.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    d => return Err(format!("unknown durability {d}")),
                }
            }
            "--secs" => a.secs = val()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--dir" => a.dir = PathBuf::from(val()?),
            "--etcd-endpoints" => {
                a.etcd_endpoints = Some(val()?.split(',').map(str::to_string).collect())
            }
            "-h" | "--help" => {
                println!(
                    "skiff-store-bench [--only sqlite|etcd] [--durability full|normal] \
                     [--secs N] [--dir DIR] [--etcd-endpoints URL,URL]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_SIZE])
}

/// Writes/s of `writers` tasks creating fresh keys for `secs`.
async fn store_writes(s: &Arc<dyn Storage>, prefix: &str, writers: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (s, stop, count) = (s.clone(), stop.clone(), count.clone());
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let v = value();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                s.create(&format!("{prefix}{w}/{i}"), v.clone())
                    .await
                    .expect("bench write");
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Creates `LIST_KEYS` keys, then times full lists of them (median of 5).
async fn list_time(s: &Arc<dyn Storage>, prefix: &str) -> Duration {
    let mut tasks = Vec::new();
    for t in 0..64 {
        let s = s.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (t..LIST_KEYS).step_by(64) {
                s.create(&format!("{prefix}{i:06}"), value()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = s.list(prefix, ListOptions::default()).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(r.items.len(), LIST_KEYS);
    }
    times.sort();
    times[2]
}

/// Latencies of `n` writes issued at `rate` per second (each write its own task, so a slow
/// commit does not slow the rate): from the start of a write to its watch event, and to its
/// acknowledgement.
struct Latency {
    event_p50: Duration,
    event_p99: Duration,
    ack_p50: Duration,
    ack_p99: Duration,
    rate: f64,
}

async fn watch_latency(s: &Arc<dyn Storage>, prefix: &str, rate: u64, n: usize) -> Latency {
    let base = Instant::now();
    let mut w = s.watch(prefix, 0).await.unwrap();
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let ev = w.next().await.unwrap().unwrap();
            let now = base.elapsed().as_nanos() as u64;
            let sent = u64::from_le_bytes(ev.kv.value[..8].try_into().unwrap());
            lat.push(Duration::from_nanos(now - sent));
        }
        lat
    });
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut writes = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        let s = s.clone();
        let key = format!("{prefix}{i}");
        writes.push(tokio::spawn(async move {
            let mut v = vec![b'v'; VALUE_SIZE];
            let t = Instant::now();
            v[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
            s.create(&key, Bytes::from(v)).await.unwrap();
            t.elapsed()
        }));
    }
    let mut acks = Vec::with_capacity(n);
    for w in writes {
        acks.push(w.await.unwrap());
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    let mut lat = receiver.await.unwrap();
    lat.sort();
    acks.sort();
    Latency {
        event_p50: lat[lat.len() / 2],
        event_p99: lat[lat.len() * 99 / 100],
        ack_p50: acks[acks.len() / 2],
        ack_p99: acks[acks.len() * 99 / 100],
        rate: achieved,
    }
}

/// Plain rusqlite: one INSERT per transaction, `writers` threads each with its own connection.
fn raw_sqlite(path: &Path, durability: Durability, writers: usize, secs: f64) -> (f64, u64) {
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    let open = || {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "synchronous", sync).unwrap();
        c
    };
    open()
        .execute_batch("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let run = rand_seed();
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (stop, count, errors) = (stop.clone(), count.clone(), errors.clone());
            let c = open();
            std::thread::spawn(move || {
                let v = vec![b'v'; VALUE_SIZE];
                let mut stmt = c
                    .prepare("INSERT INTO kv (key, value) VALUES (?1, ?2)")
                    .unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match stmt.execute(rusqlite::params![format!("/raw/{run}/{w}/{i}"), v]) {
                        Ok(_) => count.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    (
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Plain etcd puts through etcd-client from `writers` tasks sharing one client.
async fn raw_etcd(endpoints: &[String], writers: usize, secs: f64, txn: bool) -> f64 {
    let client = etcd_client::Client::connect(endpoints, None).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let run = rand_seed();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (stop, count) = (stop.clone(), count.clone());
        let mut kv = client.kv_client();
        tasks.push(tokio::spawn(async move {
            let v = vec![b'v'; VALUE_SIZE];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/raw/{run}/{w}/{i}");
                if txn {
                    // The same transaction as EtcdStore::create, without the store around it.
                    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                    let t = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, v.clone(), None)]);
                    assert!(kv.txn(t).await.unwrap().succeeded());
                } else {
                    kv.put(key, v.clone(), None).await.unwrap();
                }
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn row(backend: &str, figure: &str, value: String, baseline: Option<(String, f64)>) {
    match baseline {
        Some((b, ratio)) => println!(
            "{backend:<8} {figure:<34} {value:>14}   baseline {b:>14}   ratio {ratio:>6.2}"
        ),
        None => println!("{backend:<8} {figure:<34} {value:>14}"),
    }
}

/// List time and watch latency of a store.
async fn bench_reads(name: &str, s: &Arc<dyn Storage>) {
    let list = list_time(s, "/bench/list/").await;
    row(
        name,
        "list 10,000 keys (median of 5)",
        format!("{:.1} ms", list.as_secs_f64() * 1e3),
        None,
    );
    let l = watch_latency(s, "/bench/watch/", 1000, 5000).await;
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let at = format!("@ {:.0} w/s", l.rate);
    row(
        name,
        &format!("watch latency p50 {at}"),
        ms(l.event_p50),
        None,
    );
    row(
        name,
        &format!("watch latency p99 {at}"),
        ms(l.event_p99),
        None,
    );
    row(name, &format!("(write ack p50 {at})"), ms(l.ack_p50), None);
    row(name, &format!("(write ack p99 {at})"), ms(l.ack_p99), None);
}

async fn bench_sqlite(args: &Args) -> Result<(), String> {
    let dir = tempfile_dir(&args.dir, "sqlite")?;
    let opts = SqliteOptions {
        durability: args.durability,
        auto_compaction: None,
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Storage> =
        SqliteStore::open(&dir.join("state.db"), opts).map_err(|e| e.to_string())?;
    let mut sequential = 0.0;
    // Baseline and store back to back at each concurrency, so both see the same machine load.
    // Each figure is the mean of two half-length runs in the order raw, store, store, raw, so
    // both see the same machine load and file growth.
    let half = args.secs / 2.0;
    for writers in [1, 16, 64] {
        let raw_run = || {
            let (path, durability) = (dir.join("raw.db"), args.durability);
            tokio::task::spawn_blocking(move || raw_sqlite(&path, durability, writers, half))
        };
        let (raw1, e1) = raw_run().await.unwrap();
        let st1 = store_writes(&store, &format!("/bench/w{writers}a/"), writers, half).await;
        let st2 = store_writes(&store, &format!("/bench/w{writers}b/"), writers, half).await;
        let (raw2, e2) = raw_run().await.unwrap();
        let (raw, rate, errors) = ((raw1 + raw2) / 2.0, (st1 + st2) / 2.0, e1 + e2);
        if writers == 1 {
            sequential = raw;
        }
        row(
            "raw-sql",
            &format!("single-row txn/s, {writers} writer(s)"),
            format!("{raw:.0}"),
            None,
        );
        if errors > 0 {
            println!("raw-sql  ({errors} inserts failed with 'database is locked')");
        }
        row(
            "sqlite",
            &format!("writes/s, {writers} writer(s)"),
            format!("{rate:.0}"),
            Some((format!("{raw:.0}"), rate / raw)),
        );
        if writers > 1 {
            row(
                "sqlite",
                "  vs raw sequential",
                String::new(),
                Some((format!("{sequential:.0}"), rate / sequential)),
            );
        }
    }
    bench_reads("sqlite", &store).await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn bench_etcd(args: &Args) -> Result<(), String> {
    let mut server = None;
    let endpoints = match &args.etcd_endpoints {
        Some(e) => e.clone(),
        None => {
            let s = EtcdServer::start()?;
            let e = s.endpoints();
            server = Some(s);
            e
        }
    };
    let store: Arc<dyn Storage> = Arc::new(
        EtcdStore::connect(&endpoints)
            .await
            .map_err(|e| e.to_string())?,
    );
    // Each figure is the mean of two half-length runs in the order put, txn, store, store,
    // txn, put: etcd's database grows during the run, and this keeps any one of them from
    // always running on the biggest one.
    let half = args.secs / 2.0;
    for writers in [1, 16, 64] {
        let put1 = raw_etcd(&endpoints, writers, half, false).await;
        let txn1 = raw_etcd(&endpoints, writers, half, true).await;
        let st1 = store_writes(&store, &format!("/bench/w{writers}a/"), writers, half).await;
        let st2 = store_writes(&store, &format!("/bench/w{writers}b/"), writers, half).await;
        let txn2 = raw_etcd(&endpoints, writers, half, true).await;
        let put2 = raw_etcd(&endpoints, writers, half, false).await;
        let (put, txn, rate) = ((put1 + put2) / 2.0, (txn1 + txn2) / 2.0, (st1 + st2) / 2.0);
        row(
            "raw-etcd",
            &format!("puts/s, {writers} writer(s)"),
            format!("{put:.0}"),
            None,
        );
        row(
            "raw-etcd",
            &format!("create txns/s, {writers} writer(s)"),
            format!("{txn:.0}"),
            Some((format!("{put:.0}"), txn / put)),
        );
        row(
            "etcd",
            &format!("writes/s, {writers} writer(s)"),
            format!("{rate:.0}"),
            Some((format!("{put:.0}"), rate / put)),
        );
        row(
            "etcd",
            "  vs raw create txns",
            String::new(),
            Some((format!("{txn:.0}"), rate / txn)),
        );
    }
    bench_reads("etcd", &store).await;
    drop(store);
    drop(server);
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let want = |b: &str| args.only.as_deref().is_none_or(|o| o == b);
    println!(
        "skiff-store-bench: {VALUE_SIZE} B values, {} s per throughput run, {} cores, sqlite durability {:?}",
        args.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.durability
    );
    if want("sqlite") {
        bench_sqlite(&args).await?;
    }
    if want("etcd") {
        bench_etcd(&args).await?;
    }
    Ok(())
}

fn tempfile_dir(base: &Path, what: &str) -> Result<PathBuf, String> {
    let dir = base.join(format!("skiff-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff-store-bench: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("skiff-store-bench: {e}");
        std::process::exit(1);
    }
}
