//! SQLite-only behaviour: bad files, crash safety, bounded size, automatic compaction.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{checked_value, test_sqlite_options, verify_value};
use rand::Rng;
use skiff_store::sqlite::{AutoCompaction, Durability, SqliteOptions, SqliteStore};
use skiff_store::{Error, ListOptions, Storage};

fn open(path: &Path) -> skiff_store::Result<Arc<SqliteStore>> {
    SqliteStore::open(path, test_sqlite_options())
}

fn expect_corrupt(r: skiff_store::Result<Arc<SqliteStore>>, what: &str) -> String {
    match r {
        Err(Error::Corrupt(msg)) => msg,
        Err(e) => panic!("{what}: expected Error::Corrupt, got {e:?}"),
        Ok(_) => panic!("{what}: opened"),
    }
}

#[test]
fn a_database_in_use_is_refused_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let first = open(&path).unwrap();
    match open(&path) {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains("is in use by another skiff process"), "{msg}")
        }
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("the same database was opened twice"),
    }
    drop(first);
    open(&path).expect("the lock goes with the store");
}

#[test]
fn garbage_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut junk = vec![0u8; 64 * 1024];
    rand::rng().fill(&mut junk[..]);
    std::fs::write(&path, &junk).unwrap();
    let msg = expect_corrupt(open(&path), "random bytes");
    assert!(msg.contains("state.db"), "{msg}");

    // A valid SQLite header followed by garbage.
    junk[..16].copy_from_slice(b"SQLite format 3\0");
    std::fs::write(&path, &junk).unwrap();
    expect_corrupt(open(&path), "sqlite header + garbage");

    // A text file.
    std::fs::write(&path, "this is not a database\n".repeat(100)).unwrap();
    expect_corrupt(open(&path), "text");
}

#[test]
fn foreign_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'a');")
        .unwrap();
    drop(c);
    let msg = expect_corrupt(open(&path), "foreign database");
    assert!(
        msg.contains("not a skiff store") && msg.contains("users"),
        "{msg}"
    );
    // The file was not touched.
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute("UPDATE meta SET value = 99 WHERE name = 'schema'", [])
        .unwrap();
    drop(c);
    let msg = expect_corrupt(open(&path), "schema 99");
    assert!(msg.contains("schema"), "{msg}");
}

#[test]
fn empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    drop(open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let auto_vacuum: i64 = c
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    assert_eq!(auto_vacuum, 2, "auto_vacuum=INCREMENTAL");
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Pages of a good store overwritten with garbage: a clear error on open or on read, never a
/// panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_give_corrupt_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = open(&path).unwrap();
        for i in 0..300 {
            s.create(&format!("/k/{i:04}"), Bytes::from(vec![b'v'; 1000]))
                .await
                .unwrap();
        }
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024);
    let mut rng = rand::rng();
    let end = bytes.len() - 4096;
    rng.fill(&mut bytes[8192..end]);
    std::fs::write(&path, &bytes).unwrap();
    match open(&path) {
        Err(Error::Corrupt(_)) => {}
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(s) => {
            let r = s.list("/k/", ListOptions::default()).await;
            assert!(matches!(r, Err(Error::Corrupt(_))), "{r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_survives_compacting_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let cur = {
        let s = open(&path).unwrap();
        s.create("/a", Bytes::from_static(b"x")).await.unwrap();
        s.delete("/a", None).await.unwrap();
        let cur = s.current_revision().await.unwrap();
        s.compact(cur).await.unwrap();
        cur
    };
    let s = open(&path).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), cur);
    assert_eq!(s.compacted_revision().await.unwrap(), cur);
    assert_eq!(
        s.create("/a", Bytes::from_static(b"y")).await.unwrap(),
        cur + 1
    );
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Steady churn with regular compaction: the database file stops growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_stays_bounded_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let wal = dir.path().join("state.db-wal");
    let s = open(&path).unwrap();
    const KEYS: usize = 100;
    let value = Bytes::from(vec![b'x'; 2048]);
    let mut revs = Vec::new();
    for k in 0..KEYS {
        revs.push(
            s.create(&format!("/churn/{k}"), value.clone())
                .await
                .unwrap(),
        );
    }
    const ROUNDS: usize = 150;
    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for (k, rev) in revs.iter().enumerate() {
            let s = s.clone();
            let value = value.clone();
            let rev = *rev;
            tasks.push(tokio::spawn(async move {
                s.update(&format!("/churn/{k}"), value, rev).await.unwrap()
            }));
        }
        for (k, t) in tasks.into_iter().enumerate() {
            revs[k] = t.await.unwrap();
        }
        let cur = s.current_revision().await.unwrap();
        s.compact(cur - 2 * KEYS as i64).await.unwrap();
        sizes.push((round, file_size(&path), file_size(&wal)));
    }
    eprintln!("(round, db, wal) sizes: {sizes:?}");
    // 150 rounds x 100 x 2 KiB = 30 MiB written; ~300 values (~0.6 MiB) of history are kept.
    // The main file only fills at the first checkpoint (a ~16 MiB WAL), so compare the size
    // after a few checkpoints with the end.
    let (_, warm, _) = sizes[60];
    let (_, last, _) = sizes[ROUNDS - 1];
    let max_db = sizes.iter().map(|s| s.1).max().unwrap();
    let max_wal = sizes.iter().map(|s| s.2).max().unwrap();
    assert!(
        last <= warm + warm / 4 + 256 * 1024,
        "db grew from {warm} (round 60) to {last} (round {})",
        ROUNDS - 1
    );
    assert!(max_db < 3 * 1024 * 1024, "db reached {max_db} bytes");
    assert!(max_wal < 20 * 1024 * 1024, "wal reached {max_wal} bytes");
    assert_eq!(s.count("/churn/").await.unwrap(), KEYS as i64);
}

/// Deleting most data and compacting gives the space back to the file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = open(&path).unwrap();
    let value = Bytes::from(vec![b'x'; 2048]);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                s.create(&format!("/big/{w}/{i}"), value.clone())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let full = file_size(&path);
    for w in 0..8 {
        for i in 0..250 {
            s.delete(&format!("/big/{w}/{i}"), None).await.unwrap();
        }
    }
    s.compact(s.current_revision().await.unwrap())
        .await
        .unwrap();
    // Checkpointing the WAL lets the truncated main file show its real size.
    drop(s);
    let shrunk = file_size(&path);
    eprintln!("db: {full} bytes full, {shrunk} after delete + compact");
    assert!(full > 4 * 1024 * 1024, "{full}");
    assert!(shrunk < 512 * 1024, "{shrunk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_last_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        auto_compaction: Some(AutoCompaction {
            interval: Duration::from_millis(100),
            keep_revisions: 50,
        }),
        ..SqliteOptions::default()
    };
    let s = SqliteStore::open(&dir.path().join("state.db"), opts).unwrap();
    let mut rev = s.create("/a", Bytes::from_static(b"0")).await.unwrap();
    for i in 1..300 {
        rev = s
            .update("/a", Bytes::from(i.to_string()), rev)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.compacted_revision().await.unwrap() < rev - 50 {
        assert!(Instant::now() < deadline, "no automatic compaction");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.compacted_revision().await.unwrap(), rev - 50);
    assert!(matches!(
        s.list(
            "/",
            ListOptions {
                revision: rev - 60,
                ..Default::default()
            }
        )
        .await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(
        s.list(
            "/",
            ListOptions {
                revision: rev - 50,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .items[0]
            .value,
        Bytes::from((299 - 50).to_string())
    );
}

const CHILD_ENV: &str = "SKIFF_CRASH_CHILD_DB";

/// The child of `kill9_loses_no_acknowledged_write`: writes as fast as it can from several
/// tasks and prints every acknowledged write. Does nothing unless started by that test.
#[test]
#[ignore = "started by kill9_loses_no_acknowledged_write"]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("SKIFF_CRASH_ROUND").unwrap().parse().unwrap();
    let durability = if round.is_multiple_of(2) {
        Durability::Full
    } else {
        Durability::Normal
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let opts = SqliteOptions {
            durability,
            ..test_sqlite_options()
        };
        let s = SqliteStore::open(Path::new(&db), opts).unwrap();
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let s = s.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let counter = format!("/crash/{round}/counter/{w}");
                let mut crev = s
                    .create(&counter, Bytes::from(checked_value(&counter, 0, 64)))
                    .await
                    .unwrap();
                for i in 1.. {
                    let key = format!("/crash/{round}/w{w}/{i}");
                    let rev = s
                        .create(&key, Bytes::from(checked_value(&key, i, 2048)))
                        .await
                        .unwrap();
                    crev = s
                        .update(&counter, Bytes::from(checked_value(&counter, i, 64)), crev)
                        .await
                        .unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {key} {rev} {counter} {i} {crev}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// SIGKILL a process in the middle of a write storm: every write it acknowledged is there
/// after reopening, and nothing half-written is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let exe = std::env::current_exe().unwrap();
    for round in 0..4u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .env("SKIFF_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    // A line cut by the kill has no newline and does not count.
                    if line.starts_with("ACK ") && line.ends_with('\n') {
                        lines.lock().unwrap().push(line.trim_end().to_string());
                    }
                    line.clear();
                }
            })
        };
        // Let it get going, then kill it at a random moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lines.lock().unwrap().len() < 20 {
            assert!(Instant::now() < deadline, "crash child wrote nothing");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wait = rand::rng().random_range(50..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let acks = lines.lock().unwrap().clone();

        let s = open(&db).unwrap();
        let mut counters = std::collections::HashMap::<String, (u64, i64)>::new();
        for a in &acks {
            let f: Vec<&str> = a.split(' ').collect();
            let (key, rev): (&str, i64) = (f[1], f[2].parse().unwrap());
            let kv = s
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged {key} is missing"));
            assert_eq!(kv.mod_revision, rev);
            assert_eq!(
                verify_value(&kv.value),
                Some((
                    key.to_string(),
                    f[1].rsplit('/').next().unwrap().parse().unwrap()
                ))
            );
            let (n, crev): (u64, i64) = (f[4].parse().unwrap(), f[5].parse().unwrap());
            let e = counters.entry(f[3].to_string()).or_default();
            if n > e.0 {
                *e = (n, crev);
            }
        }
        for (counter, (n, crev)) in &counters {
            let kv = s.get(counter).await.unwrap().unwrap();
            let (_, seq) = verify_value(&kv.value).unwrap();
            assert!(
                seq >= *n && kv.mod_revision >= *crev,
                "{counter}: acked {n}, found {seq}"
            );
        }
        // Everything that is there (acknowledged or not) is whole.
        let all = s
            .list(&format!("/crash/{round}/"), ListOptions::default())
            .await
            .unwrap();
        for kv in &all.items {
            let (key, _) = verify_value(&kv.value)
                .unwrap_or_else(|| panic!("round {round}: {} holds a torn value", kv.key));
            assert_eq!(key, kv.key);
        }
        eprintln!(
            "round {round}: killed after {wait} ms, {} acknowledged, {} found",
            acks.len(),
            all.items.len()
        );
        assert!(all.items.len() >= acks.len());
    }
}
