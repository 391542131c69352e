//! The etcd v3 backend, for HA setups.
//!
//! Revisions are etcd's own. Creates, updates and deletes are single etcd transactions
//! (create: `create_revision == 0` then put; update: `mod_revision == expected` then put, else
//! get the current value for the conflict; delete likewise with the previous value). Lists are
//! range reads (continuation starts at `start_after + "\0"`), watches are etcd watches from
//! `after + 1` with previous values.
//!
//! # Failures
//!
//! Every request has a deadline ([`EtcdOptions::request_timeout`]); an unreachable etcd gives
//! [`Error::Unavailable`] naming the endpoints, never a hang. The gRPC channel reconnects by
//! itself when etcd comes back. A watch whose stream breaks is re-established from the last
//! revision it delivered, so no event is lost or repeated; only a compaction past that
//! revision ends it (with [`Error::Compacted`]).
//!
//! # Compacted revision
//!
//! etcd has no call that returns the compacted revision, so [`EtcdStore::compact`] records it
//! under [`COMPACTED_KEY`] (as the Kubernetes apiserver records `compact_rev_key`), which costs
//! one revision per compaction. Compactions done by other tools are learned from watch
//! responses only.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    KvClient, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};

use crate::sqlite::{prefix_end, range_start};
use crate::{
    Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Storage,
    WatchStream,
};

/// Where [`EtcdStore::compact`] records the compacted revision (20 decimal digits, so that
/// byte order is numeric order).
pub const COMPACTED_KEY: &str = "/skiff/compacted-revision";

/// Largest gRPC message accepted or sent (etcd's own default send limit is 2 GiB).
const MAX_MESSAGE: usize = i32::MAX as usize;

/// Options for [`EtcdStore::connect_with`].
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// How long to wait for a TCP connection to an endpoint.
    pub connect_timeout: Duration,
    /// Deadline of each request (and of the reachability check at connect).
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The etcd backend. See the module docs.
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Clients with the message size limit raised: tonic's default of 4 MiB would fail a list
    /// of a few thousand objects.
    kv: KvClient,
    watch: WatchClient,
    /// For error messages.
    endpoints: String,
    opts: EtcdOptions,
    /// Highest compacted revision known to this process.
    compacted: AtomicI64,
}

impl EtcdStore {
    /// Connects with default options. See [`EtcdStore::connect_with`].
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// Connects to etcd at `endpoints` (URLs such as `http://127.0.0.1:2379`) and checks that
    /// it answers; if not, [`Error::Unavailable`] names the endpoints.
    pub async fn connect_with(endpoints: &[String], opts: EtcdOptions) -> Result<Self> {
        let names = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(Error::Unavailable("no etcd endpoints given".into()));
        }
        let connect = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = tokio::time::timeout(
            opts.request_timeout,
            Client::connect(endpoints, Some(connect)),
        )
        .await
        .map_err(|_| Error::Unavailable(format!("cannot reach etcd at {names}: timed out")))?
        .map_err(|e| Error::Unavailable(format!("cannot reach etcd at {names}: {e}")))?;
        let inner = Arc::new(Inner {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            endpoints: names.clone(),
            opts,
            compacted: AtomicI64::new(0),
        });
        // The channel connects lazily: make sure somebody answers.
        inner.current_revision().await.map_err(|e| match e {
            Error::Unavailable(msg) => Error::Unavailable(format!("cannot connect: {msg}")),
            other => Error::Unavailable(format!("cannot reach etcd at {names}: {other}")),
        })?;
        tracing::info!(endpoints = %names, "connected to etcd");
        Ok(Self { inner })
    }
}

impl Inner {
    fn map_err(&self, e: etcd_client::Error) -> Error {
        use tonic::Code;
        match e {
            etcd_client::Error::GRpcStatus(s) => match s.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                    Error::Unavailable(format!("etcd at {}: {}", self.endpoints, s.message()))
                }
                _ => Error::Internal(format!("etcd at {}: {}", self.endpoints, s.message())),
            },
            etcd_client::Error::TransportError(e) => {
                Error::Unavailable(format!("etcd at {}: {e}", self.endpoints))
            }
            etcd_client::Error::IoError(e) => {
                Error::Unavailable(format!("etcd at {}: {e}", self.endpoints))
            }
            other => Error::Internal(format!("etcd at {}: {other}", self.endpoints)),
        }
    }

    /// Runs one request with the deadline, mapping its errors.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.opts.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err(e)),
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {} did not answer {what} within {:?}",
                self.endpoints, self.opts.request_timeout
            ))),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .call(
                "a revision read",
                self.kv
                    .clone()
                    .get(COMPACTED_KEY, Some(GetOptions::new().with_count_only())),
            )
            .await?;
        Ok(header_revision(resp.header()))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let resp = self
            .call("a read", self.kv.clone().get(COMPACTED_KEY, None))
            .await?;
        let stored = resp
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse::<i64>().ok())
            .unwrap_or(0);
        Ok(self
            .compacted
            .fetch_max(stored, Ordering::AcqRel)
            .max(stored))
    }

    /// Maps a range error at `revision`: compacted or future revision.
    async fn range_error(&self, e: etcd_client::Error, revision: Revision) -> Error {
        let msg = e.to_string();
        if msg.contains("required revision has been compacted") {
            let known = self.compacted_revision().await.unwrap_or(0);
            Error::Compacted {
                requested: revision,
                compacted: known.max(revision + 1),
            }
        } else if msg.contains("required revision is a future revision") {
            Error::FutureRevision {
                requested: revision,
                current: self.current_revision().await.unwrap_or(0),
            }
        } else {
            self.map_err(e)
        }
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map_or(0, |h| h.revision())
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: std::str::from_utf8(kv.key())
            .map_err(|_| Error::Internal("etcd holds a key that is not UTF-8".into()))?
            .to_string(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn convert_event(ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| Error::Internal("etcd watch event without a key".into()))?;
    let mut kv = convert_kv(kv)?;
    let kind = match ev.event_type() {
        etcd_client::EventType::Put => EventKind::Put,
        etcd_client::EventType::Delete => {
            kv.value = Bytes::new();
            kv.create_revision = 0;
            EventKind::Delete
        }
    };
    let prev = ev.prev_kv().map(convert_kv).transpose()?;
    Ok(Event { kind, kv, prev })
}

/// What one watch connection ended with.
enum WatchEnd {
    /// The consumer went away.
    Closed,
    /// Broken stream: reconnect from the last revision.
    Retry(Error),
    /// The watch cannot continue.
    Fatal(Error),
}

/// Feeds one watch, re-establishing the etcd watch after failures from the last delivered
/// revision.
async fn run_watch(
    inner: Arc<Inner>,
    prefix: String,
    mut last: Revision,
    out: tokio::sync::mpsc::Sender<Result<Event>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match watch_once(&inner, &prefix, &mut last, &out, &mut backoff).await {
            WatchEnd::Closed => return,
            WatchEnd::Fatal(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
            WatchEnd::Retry(e) => {
                tracing::warn!(error = %e, prefix, last, "etcd watch broken; re-establishing");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = out.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn watch_once(
    inner: &Inner,
    prefix: &str,
    last: &mut Revision,
    out: &tokio::sync::mpsc::Sender<Result<Event>>,
    backoff: &mut Duration,
) -> WatchEnd {
    let opts = WatchOptions::new()
        .with_range(prefix_end(prefix.as_bytes()))
        .with_start_revision(*last + 1)
        .with_prev_key();
    let mut client = inner.watch.clone();
    let stream = tokio::select! {
        s = inner.call("a watch", client.watch(prefix, Some(opts))) => s,
        _ = out.closed() => return WatchEnd::Closed,
    };
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => return WatchEnd::Retry(e),
    };
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = out.closed() => return WatchEnd::Closed,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return WatchEnd::Retry(Error::Unavailable(format!(
                    "etcd at {} closed the watch stream",
                    inner.endpoints
                )))
            }
            Err(e) => return WatchEnd::Retry(inner.map_err(e)),
        };
        if resp.compact_revision() > 0 {
            inner
                .compacted
                .fetch_max(resp.compact_revision(), Ordering::AcqRel);
            return WatchEnd::Fatal(Error::Compacted {
                requested: *last + 1,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            return WatchEnd::Retry(Error::Unavailable(format!(
                "etcd at {} canceled the watch: {}",
                inner.endpoints,
                resp.cancel_reason()
            )));
        }
        *backoff = Duration::from_millis(100);
        for ev in resp.events() {
            let ev = match convert_event(ev) {
                Ok(ev) => ev,
                Err(e) => return WatchEnd::Fatal(e),
            };
            let rev = ev.revision();
            if out.send(Ok(ev)).await.is_err() {
                return WatchEnd::Closed;
            }
            *last = rev;
        }
    }
}

#[async_trait]
impl Storage for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let i = &self.inner;
        let resp = i.call("a get", i.kv.clone().get(key, None)).await?;
        resp.kvs().first().map(convert_kv).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let i = &self.inner;
        let start = range_start(prefix, opts.start_after.as_deref());
        let mut get = GetOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_revision(opts.revision);
        if opts.limit > 0 {
            get = get.with_limit(opts.limit as i64);
        }
        let mut kv = i.kv.clone();
        let fut = kv.get(start, Some(get));
        let resp = match tokio::time::timeout(i.opts.request_timeout, fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(i.range_error(e, opts.revision).await),
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "etcd at {} did not answer a list within {:?}",
                    i.endpoints, i.opts.request_timeout
                )))
            }
        };
        let items = resp
            .kvs()
            .iter()
            .map(convert_kv)
            .collect::<Result<Vec<_>>>()?;
        Ok(ListResult {
            items,
            revision: if opts.revision == 0 {
                header_revision(resp.header())
            } else {
                opts.revision
            },
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let i = &self.inner;
        let get = GetOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_count_only();
        let resp = i
            .call("a count", i.kv.clone().get(prefix, Some(get)))
            .await?;
        Ok(resp.count())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let i = &self.inner;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let resp = i.call("a create", i.kv.clone().txn(txn)).await?;
        if resp.succeeded() {
            Ok(header_revision(resp.header()))
        } else {
            Err(Error::AlreadyExists(key.to_string()))
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let i = &self.inner;
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = i.call("an update", i.kv.clone().txn(txn)).await?;
        if resp.succeeded() {
            return Ok(header_revision(resp.header()));
        }
        Err(failed_compare(key, &resp)?)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let i = &self.inner;
        let mut when = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = i.call("a delete", i.kv.clone().txn(txn)).await?;
        if !resp.succeeded() {
            return Err(failed_compare(key, &resp)?);
        }
        let rev = header_revision(resp.header());
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = op {
                if let Some(prev) = d.prev_kvs().first() {
                    return Ok((rev, convert_kv(prev)?));
                }
            }
        }
        Err(Error::Internal(format!(
            "etcd delete of {key:?} returned no previous value"
        )))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let i = &self.inner;
        let start = if after == 0 {
            i.current_revision().await?
        } else {
            // A range read at `after` fails fast if it is compacted; the watch itself would
            // only say so a moment after it was created.
            let get = GetOptions::new()
                .with_range(prefix_end(prefix.as_bytes()))
                .with_revision(after)
                .with_count_only();
            let mut kv = i.kv.clone();
            let fut = kv.get(prefix, Some(get));
            match tokio::time::timeout(i.opts.request_timeout, fut).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => match i.range_error(e, after).await {
                    // Watching from a future revision is allowed.
                    Error::FutureRevision { .. } => {}
                    Error::Compacted { compacted, .. } => {
                        return Err(Error::Compacted {
                            requested: after + 1,
                            compacted,
                        })
                    }
                    other => return Err(other),
                },
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "etcd at {} did not answer within {:?}",
                        i.endpoints, i.opts.request_timeout
                    )))
                }
            }
            after
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(run_watch(self.inner.clone(), prefix.to_string(), start, tx));
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let i = &self.inner;
        let current = i.current_revision().await?;
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision <= i.compacted_revision().await? {
            return Ok(());
        }
        let mut kv = i.kv.clone();
        let fut = kv.compact(revision, Some(CompactionOptions::new().with_physical()));
        match tokio::time::timeout(i.opts.request_timeout, fut).await {
            Ok(Ok(_)) => {}
            // Already compacted further by someone else.
            Ok(Err(e))
                if e.to_string()
                    .contains("required revision has been compacted") => {}
            Ok(Err(e)) => return Err(i.map_err(e)),
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "etcd at {} did not answer a compaction within {:?}",
                    i.endpoints, i.opts.request_timeout
                )))
            }
        }
        i.compacted.fetch_max(revision, Ordering::AcqRel);
        // Record it, never moving it backwards: zero-padded decimals compare like numbers.
        let value = format!("{revision:020}");
        let txn = Txn::new()
            .when([Compare::value(
                COMPACTED_KEY,
                CompareOp::Less,
                value.clone(),
            )])
            .and_then([TxnOp::put(COMPACTED_KEY, value.clone(), None)]);
        let resp = i.call("a compaction record", i.kv.clone().txn(txn)).await?;
        if !resp.succeeded() {
            // A missing key fails a value comparison: create it.
            let txn = Txn::new()
                .when([Compare::create_revision(COMPACTED_KEY, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(COMPACTED_KEY, value, None)]);
            i.call("a compaction record", i.kv.clone().txn(txn)).await?;
        }
        tracing::debug!(revision, "compacted etcd");
        Ok(())
    }
}

/// The error of an update or delete whose comparison failed; its `or_else` read the key.
fn failed_compare(key: &str, resp: &etcd_client::TxnResponse) -> Result<Error> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(g) = op {
            return Ok(match g.kvs().first() {
                None => Error::NotFound(key.to_string()),
                Some(kv) => Error::Conflict {
                    key: key.to_string(),
                    current: Some(Box::new(convert_kv(kv)?)),
                },
            });
        }
    }
    Err(Error::Internal(format!(
        "etcd transaction on {key:?} failed without a read"
    )))
}
