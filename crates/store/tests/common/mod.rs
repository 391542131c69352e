//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use skiff_store::etcd::{EtcdOptions, EtcdStore};
use skiff_store::etcd_server::EtcdServer;
use skiff_store::sqlite::{SqliteOptions, SqliteStore};
use skiff_store::Storage;

/// A key prefix no other test uses (tests share one etcd).
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/t/{}-{}-{}/",
        test,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when the etcd tests were explicitly switched off. Without that, a missing etcd fails.
pub fn skip_etcd() -> bool {
    if std::env::var("SKIFF_TEST_SKIP_ETCD").as_deref() == Ok("1") {
        eprintln!("SKIFF_TEST_SKIP_ETCD=1: skipping an etcd test");
        return true;
    }
    false
}

/// One etcd for every test of this binary that does not restart or compact it.
pub fn shared_etcd() -> &'static EtcdServer {
    static SHARED: OnceLock<Result<EtcdServer, String>> = OnceLock::new();
    match SHARED.get_or_init(EtcdServer::start) {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot start etcd for the etcd tests: {e}\n\
             (set SKIFF_TEST_SKIP_ETCD=1 to skip them explicitly)"
        ),
    }
}

pub fn own_etcd() -> EtcdServer {
    EtcdServer::start().unwrap_or_else(|e| {
        panic!(
            "cannot start etcd for the etcd tests: {e}\n\
             (set SKIFF_TEST_SKIP_ETCD=1 to skip them explicitly)"
        )
    })
}

pub fn etcd_options() -> EtcdOptions {
    EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
    }
}

/// A backend under test.
#[async_trait]
pub trait Backend: Send {
    fn store(&self) -> Arc<dyn Storage>;
    /// Restarts the backend keeping its data; returns the store to use from then on.
    async fn restart(&mut self) -> Arc<dyn Storage>;
    fn name(&self) -> &'static str;
}

pub struct SqliteBackend {
    pub dir: tempfile::TempDir,
    pub store: Option<Arc<SqliteStore>>,
}

impl SqliteBackend {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db"), test_sqlite_options()).unwrap();
        Self {
            dir,
            store: Some(store),
        }
    }
}

pub fn test_sqlite_options() -> SqliteOptions {
    SqliteOptions {
        auto_compaction: None,
        ..SqliteOptions::default()
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn store(&self) -> Arc<dyn Storage> {
        self.store.clone().unwrap()
    }
    async fn restart(&mut self) -> Arc<dyn Storage> {
        // Dropping the last handle stops the writer and closes the file.
        let store = self.store.take().unwrap();
        assert_eq!(Arc::strong_count(&store), 1, "test still holds the store");
        drop(store);
        let store =
            SqliteStore::open(&self.dir.path().join("state.db"), test_sqlite_options()).unwrap();
        self.store = Some(store.clone());
        store
    }
    fn name(&self) -> &'static str {
        "sqlite"
    }
}

pub struct EtcdBackend {
    /// Set when this test has an etcd of its own (it restarts or compacts it).
    pub server: Option<EtcdServer>,
    pub store: Arc<EtcdStore>,
}

impl EtcdBackend {
    /// On the shared etcd, or on one of its own when `isolated`.
    pub async fn new(isolated: bool) -> Self {
        let (server, endpoints) = if isolated {
            let s = own_etcd();
            let e = s.endpoints();
            (Some(s), e)
        } else {
            (None, shared_etcd().endpoints())
        };
        let store = EtcdStore::connect_with(&endpoints, etcd_options())
            .await
            .unwrap();
        Self {
            server,
            store: Arc::new(store),
        }
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn store(&self) -> Arc<dyn Storage> {
        self.store.clone()
    }
    async fn restart(&mut self) -> Arc<dyn Storage> {
        let server = self
            .server
            .as_mut()
            .expect("restart needs an isolated etcd");
        tokio::task::block_in_place(|| server.restart()).unwrap();
        // The same client must recover by itself.
        self.store.clone()
    }
    fn name(&self) -> &'static str {
        "etcd"
    }
}

/// A value that can be verified without knowing what was written: payload + checksum.
pub fn checked_value(key: &str, seq: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}#{seq}#").into_bytes();
    let mut x = fnv(&v);
    while v.len() + 8 < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push(b'a' + ((x >> 59) % 26) as u8);
    }
    let sum = fnv(&v);
    v.extend_from_slice(format!("{:08x}", sum as u32).as_bytes());
    v
}

/// The key and sequence of a [`checked_value`], if its checksum holds.
pub fn verify_value(v: &[u8]) -> Option<(String, u64)> {
    if v.len() < 8 {
        return None;
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if format!("{:08x}", fnv(body) as u32).as_bytes() != sum {
        return None;
    }
    let s = std::str::from_utf8(body).ok()?;
    let mut parts = s.splitn(3, '#');
    let key = parts.next()?.to_string();
    let seq = parts.next()?.parse().ok()?;
    Some((key, seq))
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &c in b {
        h ^= c as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
