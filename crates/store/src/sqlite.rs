//! The embedded backend: one SQLite file holding an MVCC log of every write.
//!
//! # Layout
//!
//! Table `kv` is the log: one row per write, `rev INTEGER PRIMARY KEY` being the global
//! revision. A row carries the key, the value, the key's `create_rev`, the revision of the row
//! it replaced (`prev_rev`, 0 for a create) and a `deleted` flag (a tombstone). An index on
//! `(key, rev)` answers "latest row of a key at or before revision R", which is what `get` and
//! `list` (also at an old revision) read; watches replay the log in `rev` order. Table `meta`
//! holds a format marker, the schema version, the compacted revision and the compaction
//! cursor. The file also carries `PRAGMA application_id`, so a foreign SQLite file (or garbage)
//! is refused at open with [`Error::Corrupt`].
//!
//! # Writes: one writer thread, group commit
//!
//! Every write goes through one dedicated thread that owns the only write connection. It takes
//! whatever requests are queued (up to [`SqliteOptions::max_batch`]), applies them in one
//! transaction, each checked on its own (a create of an existing key fails alone; the others in
//! the batch still commit), commits once, publishes the events in revision order to watchers
//! and then answers each caller. Concurrent writers therefore never see "database is locked",
//! and one fsync is shared by every write of the batch, so throughput grows with concurrency.
//!
//! # Durability
//!
//! The file is always in WAL mode.
//!
//! - [`Durability::Full`] (default, `synchronous=FULL`): the WAL is fsynced at every commit. An
//!   acknowledged write survives a process kill and a power loss / kernel crash.
//! - [`Durability::Normal`] (`synchronous=NORMAL`): the WAL is fsynced only at checkpoints. An
//!   acknowledged write survives a process kill (`kill -9`), but the last writes before a power
//!   loss or kernel crash may be lost (the database stays consistent).
//!
//! # Reads
//!
//! Reads run on a small pool of read connections on the blocking thread pool. WAL lets them run
//! concurrently with the writer; a list reads its revision and its rows in one read transaction,
//! so it is a consistent snapshot.
//!
//! # Watches
//!
//! A watch subscribes to the live feed first, then replays the log after the requested
//! revision, then follows the live feed skipping anything it already replayed. A watcher that
//! falls behind the live feed (slow consumer) re-reads the missed part from the log instead of
//! dropping events; it only fails with [`Error::Compacted`] if compaction overtook it.
//!
//! # Compaction
//!
//! `compact(R)` removes every row superseded at or before R and every tombstone at or before R,
//! and records R as the compacted revision. It runs inside the writer thread in small batches of
//! revisions, interleaved with write batches, so writers are never blocked for long. A
//! background policy ([`AutoCompaction`], like k3s/kine: every 5 minutes keep the last 1000
//! revisions) runs it automatically. Freed pages are returned to the file system with
//! `PRAGMA incremental_vacuum` (the file is created with `auto_vacuum=INCREMENTAL`), so the
//! file stays bounded under steady churn.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use crate::{
    Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Storage,
    WatchStream,
};

/// `PRAGMA application_id` of a skiff store file ("skif").
const APPLICATION_ID: i32 = 0x736b_6966;
/// `meta.format` of a skiff store file.
const FORMAT: &str = "skiff-store-sqlite";
/// Schema version this code reads and writes.
const SCHEMA_VERSION: i64 = 1;
/// Rows read per transaction when a watch replays the log.
const REPLAY_CHUNK: usize = 1000;

/// How hard a commit tries to reach the disk. See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: survives process kill and power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives process kill, not power loss.
    Normal,
}

/// Automatic compaction policy, run by the writer thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoCompaction {
    /// How often to compact.
    pub interval: Duration,
    /// How many of the latest revisions to keep history for.
    pub keep_revisions: i64,
}

impl Default for AutoCompaction {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            keep_revisions: 1000,
        }
    }
}

/// Options for [`SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Automatic compaction; `None` disables it (then only [`Storage::compact`] compacts).
    pub auto_compaction: Option<AutoCompaction>,
    /// Most write requests committed in one transaction.
    pub max_batch: usize,
    /// Most idle read connections kept open.
    pub read_connections: usize,
    /// Write batches buffered for watchers before a slow watcher falls back to re-reading the
    /// log.
    pub watch_buffer: usize,
    /// Revisions removed per compaction transaction.
    pub compaction_batch: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            auto_compaction: Some(AutoCompaction::default()),
            max_batch: 1024,
            read_connections: 4,
            watch_buffer: 1024,
            compaction_batch: 1000,
        }
    }
}

/// The SQLite backend. See the module docs.
pub struct SqliteStore {
    shared: Arc<Shared>,
    writes: Option<mpsc::Sender<WriteRequest>>,
    events: broadcast::Sender<Arc<[Event]>>,
    writer: Option<JoinHandle<()>>,
    /// Dropping it stops the checkpointer.
    checkpoints: Option<mpsc::Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
    /// An exclusive lock on `<db>.lock`, held while the store is open, so a second process
    /// (or a second open) of the same file is refused instead of corrupting it.
    _lock: std::fs::File,
}

/// Take the exclusive lock that says this database file is in use.
fn lock_database(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            Error::Unavailable(format!(
                "cannot open the lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
            "the database {} is in use by another skiff process ({} is locked)",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// State shared by the store handle, the writer thread and watch tasks.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    /// Latest committed revision; stored by the writer before the batch's events are published.
    current: AtomicI64,
    compacted: AtomicI64,
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

enum Outcome {
    Written(Revision),
    Deleted(Revision, KeyValue),
}

enum WriteRequest {
    Op(Op, oneshot::Sender<Result<Outcome>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

fn sql_error(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if matches!(
            f.code,
            rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
        ) {
            return Error::Corrupt(e.to_string());
        }
    }
    Error::Internal(format!("sqlite: {e}"))
}

/// The smallest byte string greater than every key starting with `prefix`. Keys are UTF-8,
/// which never contains the byte 0xff, so `[0xff]` bounds every key.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff]
}

/// First key a list reads: the prefix, or just after the continuation key.
pub(crate) fn range_start(prefix: &str, start_after: Option<&str>) -> Vec<u8> {
    match start_after {
        Some(after) if after >= prefix => {
            let mut k = after.as_bytes().to_vec();
            k.push(0);
            k
        }
        _ => prefix.as_bytes().to_vec(),
    }
}

fn key_string(raw: Vec<u8>) -> Result<String> {
    String::from_utf8(raw).map_err(|_| Error::Corrupt("a stored key is not UTF-8".into()))
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`. A file that is not a skiff store (garbage,
    /// another application's SQLite database, a newer schema) gives [`Error::Corrupt`].
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<Arc<Self>> {
        let lock = lock_database(path)?;
        let conn = open_connection(path)?;
        init_or_check(&conn, path)?;
        let sync = match opts.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(sql_error)?;
        // Truncate the WAL back to 64 MiB after checkpoints so a burst does not leave it huge.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(sql_error)?;
        // The writer's own checkpoint every ~16 MiB of WAL (rather than SQLite's 4 MiB) is what
        // resets the WAL under sustained writes; the `checkpointer` thread has usually copied
        // most frames already, so this one only copies the tail and the commit that triggers
        // it is not held up by a 16 MiB copy.
        conn.pragma_update(None, "wal_autocheckpoint", 4000)
            .map_err(sql_error)?;

        let (current, compacted, cursor) = read_state(&conn)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            max_idle_readers: opts.read_connections.max(1),
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
        });
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            conn,
            shared: shared.clone(),
            events: events.clone(),
            rx,
            opts: opts.clone(),
            current,
            compaction: None,
            stat_batches: 0,
            stat_ops: 0,
        };
        if cursor < compacted {
            // A compaction was interrupted (crash or shutdown): finish it.
            writer.compaction = Some(Compaction {
                target: compacted,
                recorded: compacted,
                cursor,
                vacuuming: false,
                waiters: Vec::new(),
            });
        }
        let handle = std::thread::Builder::new()
            .name("skiff-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Internal(format!("cannot start the sqlite writer thread: {e}")))?;
        let ckpt_conn = open_connection(path)?;
        let (ckpt_tx, ckpt_rx) = mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("skiff-sqlite-ckpt".into())
            .spawn(move || checkpointer(ckpt_conn, ckpt_rx))
            .map_err(|e| Error::Internal(format!("cannot start the sqlite checkpointer: {e}")))?;
        tracing::info!(path = %path.display(), current, compacted, durability = ?opts.durability, "opened sqlite store");
        Ok(Arc::new(Self {
            shared,
            writes: Some(tx),
            events,
            writer: Some(handle),
            checkpoints: Some(ckpt_tx),
            checkpointer: Some(checkpointer),
            _lock: lock,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: Op) -> Result<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .as_ref()
            .and_then(|w| w.send(WriteRequest::Op(op, tx)).ok())
            .ok_or_else(|| Error::Internal("the sqlite writer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the sqlite writer has stopped".into()))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.shared.clone().read(f).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after the requests already queued.
        self.writes.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        self.checkpoints.take();
        if let Some(handle) = self.checkpointer.take() {
            let _ = handle.join();
        }
    }
}

impl Shared {
    async fn read<T, F>(self: Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let pooled = self.readers.lock().ok().and_then(|mut v| v.pop());
            let mut conn = match pooled {
                Some(c) => c,
                None => open_reader(&self.path)?,
            };
            let result = f(&mut conn);
            if let Ok(mut pool) = self.readers.lock() {
                if pool.len() < self.max_idle_readers {
                    pool.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_error)?;
    Ok(conn)
}

/// Copies the WAL back into the database file in the background, from its own connection. A
/// PASSIVE checkpoint never blocks the writer (and gives up when it would have to wait).
fn checkpointer(conn: Connection, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(Duration::from_millis(250)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "background checkpoint failed");
        }
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open_connection(path)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sql_error)?;
    Ok(conn)
}

/// Creates the schema in an empty file, or checks that a non-empty one is a skiff store.
fn init_or_check(conn: &Connection, path: &Path) -> Result<()> {
    let corrupt = |what: String| Error::Corrupt(format!("{}: {what}", path.display()));
    let tables: Vec<String> = (|| {
        let mut stmt =
            conn.prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })()
    .map_err(|e| match sql_error(e) {
        Error::Corrupt(m) => corrupt(format!("not a usable SQLite database ({m})")),
        other => other,
    })?;

    if tables.is_empty() {
        // A new file. auto_vacuum must be chosen before the first table exists.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(sql_error)?;

        set_wal(conn, path)?;
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             BEGIN;
             CREATE TABLE meta (name TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
             CREATE TABLE kv (
                 rev INTEGER PRIMARY KEY,
                 key BLOB NOT NULL,
                 value BLOB NOT NULL,
                 create_rev INTEGER NOT NULL,
                 prev_rev INTEGER NOT NULL,
                 deleted INTEGER NOT NULL
             );
             CREATE INDEX kv_key_rev ON kv (key, rev);
             INSERT INTO meta VALUES ('format', '{FORMAT}'), ('schema', {SCHEMA_VERSION}),
                 ('rev', 0), ('compacted', 0), ('compact_cursor', 0);
             COMMIT;"
        ))
        .map_err(sql_error)?;
        tracing::info!(path = %path.display(), "created sqlite store");
        return Ok(());
    }

    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(sql_error)?;
    let foreign = || {
        corrupt(format!(
            "not a skiff store (application_id {app_id:#x}, tables: {})",
            tables.join(", ")
        ))
    };
    if app_id != APPLICATION_ID || !tables.iter().any(|t| t == "meta") {
        return Err(foreign());
    }
    let meta = |name: &str| -> Result<Option<rusqlite::types::Value>> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql_error)
    };
    use rusqlite::types::Value;
    match meta("format")? {
        Some(Value::Text(f)) if f == FORMAT => {}
        _ => return Err(foreign()),
    }
    match meta("schema")? {
        Some(Value::Integer(SCHEMA_VERSION)) => {}
        other => {
            return Err(corrupt(format!(
                "unsupported skiff store schema {other:?} (this build reads {SCHEMA_VERSION})"
            )))
        }
    }
    set_wal(conn, path)
}

fn set_wal(conn: &Connection, path: &Path) -> Result<()> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(sql_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unavailable(format!(
            "{}: cannot switch to WAL mode (got {mode})",
            path.display()
        )));
    }
    Ok(())
}

/// (current revision, compacted revision, compaction cursor) as stored.
fn read_state(conn: &Connection) -> Result<(Revision, Revision, Revision)> {
    conn.query_row(
        "SELECT max(coalesce((SELECT max(rev) FROM kv), 0),
                    (SELECT value FROM meta WHERE name = 'rev')),
                (SELECT value FROM meta WHERE name = 'compacted'),
                (SELECT value FROM meta WHERE name = 'compact_cursor')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .map_err(sql_error)
}

/// The latest row of a key (live or tombstone).
struct Latest {
    rev: Revision,
    create_rev: Revision,
    deleted: bool,
    value: Bytes,
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT rev, create_rev, deleted, value FROM kv WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
    )?
    .query_row([key.as_bytes()], |r| {
        Ok(Latest {
            rev: r.get(0)?,
            create_rev: r.get(1)?,
            deleted: r.get(2)?,
            value: Bytes::from(r.get::<_, Vec<u8>>(3)?),
        })
    })
    .optional()
}

fn live(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    Ok(latest(conn, key)?.filter(|l| !l.deleted).map(|l| KeyValue {
        key: key.to_string(),
        value: l.value,
        create_revision: l.create_rev,
        mod_revision: l.rev,
    }))
}

struct Compaction {
    target: Revision,
    /// Compacted revision written to `meta` so far.
    recorded: Revision,
    /// Revisions up to here are done.
    cursor: Revision,
    vacuuming: bool,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<[Event]>>,
    rx: mpsc::Receiver<WriteRequest>,
    opts: SqliteOptions,
    current: Revision,
    compaction: Option<Compaction>,
    stat_batches: u64,
    stat_ops: u64,
}

impl Writer {
    fn run(mut self) {
        let mut next_auto = self
            .opts
            .auto_compaction
            .map(|a| Instant::now() + a.interval);
        let mut queue = VecDeque::new();
        loop {
            // Wait for work: requests, a pending compaction step, or the auto-compaction timer.
            let first = if self.compaction.is_some() {
                match self.rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else if let Some(at) = next_auto {
                match self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now()))
                {
                    Ok(r) => Some(r),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => break,
                }
            };
            if let Some(first) = first {
                queue.push_back(first);
                while queue.len() < self.opts.max_batch {
                    match self.rx.try_recv() {
                        Ok(r) => queue.push_back(r),
                        Err(_) => break,
                    }
                }
                let mut ops = Vec::with_capacity(queue.len());
                for req in queue.drain(..) {
                    match req {
                        WriteRequest::Op(op, reply) => ops.push((op, reply)),
                        WriteRequest::Compact(rev, reply) => self.request_compaction(rev, reply),
                    }
                }
                if !ops.is_empty() {
                    self.apply(ops);
                }
            }
            if let (Some(auto), Some(at)) = (self.opts.auto_compaction, next_auto) {
                if Instant::now() >= at {
                    next_auto = Some(Instant::now() + auto.interval);
                    let target = self.current - auto.keep_revisions;
                    if target > self.shared.compacted.load(Ordering::Acquire) {
                        tracing::debug!(target, "automatic compaction");
                        self.start_compaction(target);
                    }
                }
            }
            // One bounded step per loop turn, so writes queued meanwhile go first.
            if self.compaction.is_some() {
                self.compaction_step();
            }
        }
        tracing::debug!(
            path = %self.shared.path.display(),
            batches = self.stat_batches,
            ops = self.stat_ops,
            "sqlite writer stopped"
        );
    }

    fn request_compaction(&mut self, rev: Revision, reply: oneshot::Sender<Result<()>>) {
        if rev > self.current {
            let _ = reply.send(Err(Error::FutureRevision {
                requested: rev,
                current: self.current,
            }));
            return;
        }
        let done = self
            .compaction
            .as_ref()
            .map_or(self.shared.compacted.load(Ordering::Acquire), |c| c.target);
        if rev <= done && self.compaction.is_none() {
            let _ = reply.send(Ok(()));
            return;
        }
        self.start_compaction(rev);
        if let Some(c) = &mut self.compaction {
            c.waiters.push(reply);
        }
    }

    fn start_compaction(&mut self, target: Revision) {
        match &mut self.compaction {
            Some(c) => c.target = c.target.max(target),
            None => {
                let compacted = self.shared.compacted.load(Ordering::Acquire);
                self.compaction = Some(Compaction {
                    target,
                    recorded: compacted,
                    cursor: compacted,
                    vacuuming: false,
                    waiters: Vec::new(),
                });
            }
        }
    }

    /// One short transaction of compaction work.
    fn compaction_step(&mut self) {
        let Some(mut c) = self.compaction.take() else {
            return;
        };
        let result = if c.vacuuming {
            self.vacuum_step(&mut c)
        } else {
            self.delete_step(&mut c)
        };
        match result {
            Ok(true) => {
                tracing::debug!(compacted = c.target, "compaction done");
                for w in c.waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
            Ok(false) => self.compaction = Some(c),
            Err(e) => {
                tracing::error!(error = %e, "compaction failed");
                let msg = e.to_string();
                for w in c.waiters.drain(..) {
                    let _ = w.send(Err(Error::Internal(msg.clone())));
                }
                // The cursor in `meta` lets the next compaction resume; drop this one.
            }
        }
    }

    /// Deletes superseded rows and tombstones of one batch of revisions. Returns true when the
    /// whole compaction (vacuum included) is finished.
    fn delete_step(&mut self, c: &mut Compaction) -> Result<bool> {
        let end = c.target.min(c.cursor + self.opts.compaction_batch.max(1));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        if c.target > c.recorded {
            // Readers check this in their snapshot before trusting old revisions.
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [c.target],
            )
            .map_err(sql_error)?;
            // Keep the current revision even if its row is a tombstone removed below.
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'rev'",
                [self.current],
            )
            .map_err(sql_error)?;
        }
        // Every row superseded by a row in (cursor, end] is that row's prev_rev (a create after
        // a tombstone has prev_rev 0, and the tombstone goes by the second statement).
        tx.execute(
            "DELETE FROM kv WHERE rev IN
                 (SELECT prev_rev FROM kv WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
            [c.cursor, end],
        )
        .map_err(sql_error)?;
        tx.execute(
            "DELETE FROM kv WHERE rev > ?1 AND rev <= ?2 AND deleted = 1",
            [c.cursor, end],
        )
        .map_err(sql_error)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compact_cursor'",
            [end],
        )
        .map_err(sql_error)?;
        tx.commit().map_err(sql_error)?;
        if c.target > c.recorded {
            c.recorded = c.target;
            self.shared.compacted.store(c.target, Ordering::Release);
        }
        c.cursor = end;
        if c.cursor >= c.target {
            c.vacuuming = true;
        }
        Ok(false)
    }

    /// Returns a bounded number of free pages to the file system.
    fn vacuum_step(&mut self, c: &mut Compaction) -> Result<bool> {
        if c.cursor < c.target {
            // The target moved while vacuuming.
            c.vacuuming = false;
            return Ok(false);
        }
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .map_err(sql_error)?;
        if free == 0 {
            return Ok(true);
        }
        // incremental_vacuum returns one row per page; step through them.
        let mut stmt = self
            .conn
            .prepare("PRAGMA incremental_vacuum(2000)")
            .map_err(sql_error)?;
        let mut rows = stmt.query([]).map_err(sql_error)?;
        while rows.next().map_err(sql_error)?.is_some() {}
        Ok(free <= 2000)
    }

    /// Applies a batch of write operations in one transaction, then publishes and answers.
    fn apply(&mut self, ops: Vec<(Op, oneshot::Sender<Result<Outcome>>)>) {
        self.stat_batches += 1;
        self.stat_ops += ops.len() as u64;
        let mut results = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        let start = self.current;
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut rev = start;
            for (op, _) in &ops {
                let r = apply_one(&tx, op, rev + 1, &mut events)?;
                if r.is_ok() {
                    rev += 1;
                }
                results.push(r);
            }
            tx.commit()
        })();
        match outcome {
            Ok(()) => {
                let last = start + events.len() as i64;
                self.current = last;
                // Store the revision before publishing, so a new watcher that reads it either
                // sees this batch as history or receives it live (see `watch`).
                self.shared.current.store(last, Ordering::Release);
                if !events.is_empty() {
                    let _ = self.events.send(Arc::from(events));
                }
                for ((_, reply), r) in ops.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let e = sql_error(e);
                tracing::error!(error = %e, ops = ops.len(), "sqlite write batch failed");
                let msg = e.to_string();
                let corrupt = matches!(e, Error::Corrupt(_));
                for (_, reply) in ops {
                    let _ = reply.send(Err(if corrupt {
                        Error::Corrupt(msg.clone())
                    } else {
                        Error::Internal(msg.clone())
                    }));
                }
            }
        }
    }
}

/// Checks and applies one operation at revision `rev` inside the batch transaction. The outer
/// `Err` is a database failure (fails the batch); the inner one is this operation's own error.
fn apply_one(
    conn: &Connection,
    op: &Op,
    rev: Revision,
    events: &mut Vec<Event>,
) -> rusqlite::Result<Result<Outcome>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO kv (rev, key, value, create_rev, prev_rev, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    match op {
        Op::Create { key, value } => {
            if live(conn, key)?.is_some() {
                return Ok(Err(Error::AlreadyExists(key.clone())));
            }
            insert.execute(params![rev, key.as_bytes(), &value[..], rev, 0, false])?;
            events.push(Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: rev,
                    mod_revision: rev,
                },
                prev: None,
            });
            Ok(Ok(Outcome::Written(rev)))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let Some(cur) = live(conn, key)? else {
                return Ok(Err(Error::NotFound(key.clone())));
            };
            if cur.mod_revision != *expected {
                return Ok(Err(Error::Conflict {
                    key: key.clone(),
                    current: Some(Box::new(cur)),
                }));
            }
            insert.execute(params![
                rev,
                key.as_bytes(),
                &value[..],
                cur.create_revision,
                cur.mod_revision,
                false
            ])?;
            events.push(Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: cur.create_revision,
                    mod_revision: rev,
                },
                prev: Some(cur),
            });
            Ok(Ok(Outcome::Written(rev)))
        }
        Op::Delete { key, expected } => {
            let Some(cur) = live(conn, key)? else {
                return Ok(Err(Error::NotFound(key.clone())));
            };
            if expected.is_some_and(|e| e != cur.mod_revision) {
                return Ok(Err(Error::Conflict {
                    key: key.clone(),
                    current: Some(Box::new(cur)),
                }));
            }
            insert.execute(params![
                rev,
                key.as_bytes(),
                &[][..],
                cur.create_revision,
                cur.mod_revision,
                true
            ])?;
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: rev,
                },
                prev: Some(cur.clone()),
            });
            Ok(Ok(Outcome::Deleted(rev, cur)))
        }
    }
}

/// (current revision, compacted revision) in the reader's snapshot.
fn snapshot_state(conn: &Connection) -> Result<(Revision, Revision)> {
    conn.prepare_cached(
        "SELECT max(coalesce((SELECT max(rev) FROM kv), 0),
                    (SELECT value FROM meta WHERE name = 'rev')),
                (SELECT value FROM meta WHERE name = 'compacted')",
    )
    .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
    .map_err(sql_error)
}

fn list_rows(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let tx = conn.transaction().map_err(sql_error)?;
    let (current, compacted) = snapshot_state(&tx)?;
    let revision = if opts.revision == 0 {
        current
    } else if opts.revision < compacted {
        return Err(Error::Compacted {
            requested: opts.revision,
            compacted,
        });
    } else if opts.revision > current {
        return Err(Error::FutureRevision {
            requested: opts.revision,
            current,
        });
    } else {
        opts.revision
    };
    let start = range_start(prefix, opts.start_after.as_deref());
    let end = prefix_end(prefix.as_bytes());
    // One more than asked, to know whether more follow.
    let limit: i64 = if opts.limit == 0 {
        -1
    } else {
        opts.limit as i64 + 1
    };
    let mut items = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT kv.key, kv.value, kv.create_rev, kv.rev FROM kv
                 JOIN (SELECT max(rev) AS mr FROM kv
                       WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key) m
                   ON kv.rev = m.mr
                 WHERE kv.deleted = 0 ORDER BY kv.key LIMIT ?4",
            )
            .map_err(sql_error)?;
        let mut rows = stmt
            .query(params![start, end, revision, limit])
            .map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            items.push(KeyValue {
                key: key_string(r.get(0).map_err(sql_error)?)?,
                value: Bytes::from(r.get::<_, Vec<u8>>(1).map_err(sql_error)?),
                create_revision: r.get(2).map_err(sql_error)?,
                mod_revision: r.get(3).map_err(sql_error)?,
            });
        }
    }
    let more = opts.limit != 0 && items.len() > opts.limit;
    items.truncate(if opts.limit == 0 {
        items.len()
    } else {
        opts.limit
    });
    Ok(ListResult {
        items,
        revision,
        more,
    })
}

/// Log rows after `after` under `prefix`, at most `REPLAY_CHUNK`, as events.
fn replay_rows(conn: &mut Connection, prefix: &str, after: Revision) -> Result<Vec<Event>> {
    let tx = conn.transaction().map_err(sql_error)?;
    let (_, compacted) = snapshot_state(&tx)?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    let end = prefix_end(prefix.as_bytes());
    let mut events = Vec::new();
    // `+k.key` keeps the planner on the rev order (the primary key) rather than the key index.
    let mut stmt = tx
        .prepare_cached(
            "SELECT k.rev, k.key, k.value, k.create_rev, k.deleted, p.rev, p.value, p.create_rev
             FROM kv k LEFT JOIN kv p ON p.rev = k.prev_rev AND k.prev_rev > 0
             WHERE k.rev > ?1 AND +k.key >= ?2 AND +k.key < ?3
             ORDER BY k.rev LIMIT ?4",
        )
        .map_err(sql_error)?;
    let mut rows = stmt
        .query(params![after, prefix.as_bytes(), end, REPLAY_CHUNK as i64])
        .map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let rev: Revision = r.get(0).map_err(sql_error)?;
        let key = key_string(r.get(1).map_err(sql_error)?)?;
        let deleted: bool = r.get(4).map_err(sql_error)?;
        let prev_rev: Option<Revision> = r.get(5).map_err(sql_error)?;
        let prev = match prev_rev {
            Some(prev_rev) => Some(KeyValue {
                key: key.clone(),
                value: Bytes::from(r.get::<_, Vec<u8>>(6).map_err(sql_error)?),
                create_revision: r.get(7).map_err(sql_error)?,
                mod_revision: prev_rev,
            }),
            None => None,
        };
        let (kind, value, create_revision) = if deleted {
            (EventKind::Delete, Bytes::new(), 0)
        } else {
            (
                EventKind::Put,
                Bytes::from(r.get::<_, Vec<u8>>(2).map_err(sql_error)?),
                r.get(3).map_err(sql_error)?,
            )
        };
        events.push(Event {
            kind,
            kv: KeyValue {
                key,
                value,
                create_revision,
                mod_revision: rev,
            },
            prev,
        });
    }
    Ok(events)
}

/// Feeds one watch: replay from the log, then the live feed; back to the log after a lag.
async fn run_watch(
    shared: Arc<Shared>,
    mut live: broadcast::Receiver<Arc<[Event]>>,
    prefix: String,
    mut last: Revision,
    out: tokio::sync::mpsc::Sender<Result<Event>>,
) {
    loop {
        // Replay everything after `last` that is in the log. `live` was subscribed before this
        // read, so anything committed later is in `live`.
        loop {
            let p = prefix.clone();
            let chunk = shared.clone().read(move |c| replay_rows(c, &p, last)).await;
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            let n = chunk.len();
            for ev in chunk {
                last = ev.revision();
                if out.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if n < REPLAY_CHUNK {
                break;
            }
        }
        // Follow the live feed.
        loop {
            let batch = tokio::select! {
                b = live.recv() => b,
                _ = out.closed() => return,
            };
            match batch {
                Ok(batch) => {
                    for ev in batch.iter() {
                        if ev.revision() <= last {
                            continue;
                        }
                        last = ev.revision();
                        if ev.kv.key.starts_with(&prefix) && out.send(Ok(ev.clone())).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "watcher fell behind; re-reading the log");
                    live = live.resubscribe();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = out
                        .send(Err(Error::Unavailable(
                            "the sqlite store was closed".into(),
                        )))
                        .await;
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl Storage for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| live(c, &key).map_err(sql_error)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.read(move |c| list_rows(c, &prefix, &opts)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let prefix = prefix.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT count(*) FROM kv
                 JOIN (SELECT max(rev) AS mr FROM kv WHERE key >= ?1 AND key < ?2 GROUP BY key) m
                   ON kv.rev = m.mr
                 WHERE kv.deleted = 0",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![prefix.as_bytes(), prefix_end(prefix.as_bytes())],
                    |r| r.get(0),
                )
            })
            .map_err(sql_error)
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        match self
            .write(Op::Create {
                key: key.to_string(),
                value,
            })
            .await?
        {
            Outcome::Written(rev) => Ok(rev),
            Outcome::Deleted(..) => Err(Error::Internal("unexpected delete outcome".into())),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        match self
            .write(Op::Update {
                key: key.to_string(),
                value,
                expected,
            })
            .await?
        {
            Outcome::Written(rev) => Ok(rev),
            Outcome::Deleted(..) => Err(Error::Internal("unexpected delete outcome".into())),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self
            .write(Op::Delete {
                key: key.to_string(),
                expected,
            })
            .await?
        {
            Outcome::Deleted(rev, prev) => Ok((rev, prev)),
            Outcome::Written(_) => Err(Error::Internal("unexpected write outcome".into())),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe first: every batch published from now on reaches this receiver.
        let live = self.events.subscribe();
        let start = if after == 0 {
            self.shared.current.load(Ordering::Acquire)
        } else {
            let compacted = self.shared.compacted.load(Ordering::Acquire);
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after + 1,
                    compacted,
                });
            }
            after
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(run_watch(
            self.shared.clone(),
            live,
            prefix.to_string(),
            start,
            tx,
        ));
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .as_ref()
            .and_then(|w| w.send(WriteRequest::Compact(revision, tx)).ok())
            .ok_or_else(|| Error::Internal("the sqlite writer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the sqlite writer has stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b""), vec![0xff]);
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }

    #[test]
    fn range_start_skips_past_continuation() {
        assert_eq!(range_start("/p/", None), b"/p/".to_vec());
        assert_eq!(range_start("/p/", Some("/p/b")), b"/p/b\0".to_vec());
        // A continuation key before the prefix does not widen the range.
        assert_eq!(range_start("/p/", Some("/a")), b"/p/".to_vec());
    }
}
