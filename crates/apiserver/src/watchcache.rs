//! The watch cache: every object under `/registry/` kept in memory, fed by one store watch,
//! with a window of recent events, so lists and watches are served without touching the
//! store.
//!
//! One writer (the feed task) mutates the cache; any number of readers list it or follow its
//! events. Watchers never miss an event: each remembers the last revision it sent and reads the
//! event window from there; if the window has moved past it, the watcher gets 410 Gone and the
//! client relists, as with upstream's cache.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};
use skiff_store::{EventKind, ListOptions, Revision, Storage};
use tokio::sync::watch;

/// The prefix of every key the API server keeps.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// How many recent events the cache keeps for watchers that resume.
const EVENT_WINDOW: usize = 20_000;

/// One object as the cache holds it: its JSON with `metadata.resourceVersion` set, plus what
/// filters need without parsing.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub revision: Revision,
    pub json: Bytes,
    pub labels: Map<String, Value>,
}

impl CachedObject {
    /// Parse the object.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: Revision,
    pub kind: WatchEventType,
    /// The object after the change; for a delete, its last state with the delete's revision.
    pub object: Arc<CachedObject>,
    /// The object before the change (updates and deletes).
    pub prev: Option<Arc<CachedObject>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<Arc<CacheEvent>>,
    /// The revision the cache reflects.
    revision: Revision,
    /// Events with a revision at or below this are no longer in the window.
    oldest_kept: Revision,
}

/// Why a read from the cache could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The revision asked for is older than the cache's event window.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        requested: Revision,
        oldest: Revision,
    },
    /// The cache did not reach the revision in time.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooNew {
        requested: Revision,
        current: Revision,
    },
}

/// The cache. Cheap to share behind an `Arc`.
pub struct WatchCache {
    state: RwLock<State>,
    rev_tx: watch::Sender<Revision>,
    store: Arc<dyn Storage>,
}

/// Turn stored bytes into the object clients see: `resourceVersion` set from the revision.
pub fn decode(key: &str, value: &[u8], revision: Revision) -> Option<CachedObject> {
    let mut v: Value = serde_json::from_slice(value).ok()?;
    let meta = v.get_mut("metadata")?.as_object_mut()?;
    meta.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    let labels = meta
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Some(CachedObject {
        key: key.to_string(),
        revision,
        json: Bytes::from(serde_json::to_vec(&v).ok()?),
        labels,
    })
}

impl WatchCache {
    /// Load every object and start following the store.
    pub async fn start(store: Arc<dyn Storage>) -> skiff_store::Result<Arc<Self>> {
        let (rev_tx, _) = watch::channel(0);
        let cache = Arc::new(WatchCache {
            state: RwLock::new(State::default()),
            rev_tx,
            store,
        });
        let rev = cache.relist().await?;
        let c = cache.clone();
        tokio::spawn(async move { c.feed(rev).await });
        Ok(cache)
    }

    /// Replace the cache's contents with a fresh list from the store, emitting the
    /// differences as events. Returns the revision listed at.
    async fn relist(&self) -> skiff_store::Result<Revision> {
        let mut fresh = BTreeMap::new();
        let mut opts = ListOptions {
            limit: 10_000,
            ..Default::default()
        };
        let revision = loop {
            let page = self.store.list(REGISTRY_PREFIX, opts.clone()).await?;
            for kv in &page.items {
                if let Some(o) = decode(&kv.key, &kv.value, kv.mod_revision) {
                    fresh.insert(kv.key.clone(), Arc::new(o));
                }
            }
            if !page.more || page.items.is_empty() {
                break page.revision;
            }
            opts.revision = page.revision;
            opts.start_after = page.items.last().map(|kv| kv.key.clone());
        };
        let mut st = self.state.write().unwrap();
        if st.revision > 0 {
            // A relist after the feed broke: tell watchers what changed meanwhile.
            let old = std::mem::take(&mut st.objects);
            for (k, o) in &fresh {
                match old.get(k) {
                    Some(prev) if prev.revision == o.revision => {}
                    prev => {
                        let kind = if prev.is_some() {
                            WatchEventType::Modified
                        } else {
                            WatchEventType::Added
                        };
                        push_event(&mut st, revision, kind, o.clone(), prev.cloned());
                    }
                }
            }
            for (k, prev) in old {
                if !fresh.contains_key(&k) {
                    let gone = tombstone(&prev, revision);
                    push_event(&mut st, revision, WatchEventType::Deleted, gone, Some(prev));
                }
            }
        } else {
            st.oldest_kept = revision;
        }
        st.objects = fresh;
        st.revision = st.revision.max(revision);
        let r = st.revision;
        drop(st);
        self.rev_tx.send_replace(r);
        Ok(revision)
    }

    async fn feed(self: Arc<Self>, mut from: Revision) {
        loop {
            match self.store.watch(REGISTRY_PREFIX, from).await {
                Ok(mut stream) => {
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(ev) => {
                                from = ev.revision();
                                self.apply(ev);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "watch cache feed ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watch cache cannot watch the store"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Resume where we were; if that history is gone, relist.
            if let Ok(compacted) = self.store.compacted_revision().await {
                if compacted > from {
                    match self.relist().await {
                        Ok(r) => from = r,
                        Err(e) => tracing::warn!(error = %e, "watch cache relist failed"),
                    }
                }
            }
        }
    }

    fn apply(&self, ev: skiff_store::Event) {
        let rev = ev.revision();
        let mut st = self.state.write().unwrap();
        if rev <= st.revision {
            return;
        }
        let prev = st.objects.get(&ev.kv.key).cloned();
        match ev.kind {
            EventKind::Put => {
                if let Some(o) = decode(&ev.kv.key, &ev.kv.value, rev) {
                    let o = Arc::new(o);
                    st.objects.insert(ev.kv.key.clone(), o.clone());
                    let kind = if prev.is_some() {
                        WatchEventType::Modified
                    } else {
                        WatchEventType::Added
                    };
                    push_event(&mut st, rev, kind, o, prev);
                }
            }
            EventKind::Delete => {
                if let Some(prev) = st.objects.remove(&ev.kv.key) {
                    let gone = tombstone(&prev, rev);
                    push_event(&mut st, rev, WatchEventType::Deleted, gone, Some(prev));
                }
            }
        }
        st.revision = rev;
        drop(st);
        self.rev_tx.send_replace(rev);
    }

    /// The revision the cache reflects now.
    pub fn revision(&self) -> Revision {
        self.state.read().unwrap().revision
    }

    /// Wait until the cache reflects at least `rev`, for up to `timeout`.
    pub async fn wait_for(&self, rev: Revision, timeout: Duration) -> Result<(), CacheError> {
        let mut rx = self.rev_tx.subscribe();
        let res = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= rev)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CacheError::TooNew {
                requested: rev,
                current: self.revision(),
            }),
        }
    }

    /// Wait until the cache has caught up with the store's current revision: what a
    /// consistent read needs.
    pub async fn sync(&self) -> Result<(), CacheError> {
        let want = match self.store.current_revision().await {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        self.wait_for(want, Duration::from_secs(3)).await
    }

    /// One object.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().unwrap().objects.get(key).cloned()
    }

    /// Objects under `prefix` after `start_after`, in key order, keeping those `keep` accepts,
    /// at most `limit` of them (0: all). Returns them, the cache revision, and whether more
    /// matching objects may follow.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&CachedObject) -> bool,
    ) -> (Vec<Arc<CachedObject>>, Revision, bool) {
        let st = self.state.read().unwrap();
        let lower = match start_after {
            Some(k) => Bound::Excluded(k.to_string()),
            None => Bound::Included(prefix.to_string()),
        };
        let mut out = Vec::new();
        let mut more = false;
        for (k, o) in st.objects.range((lower, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if !keep(o) {
                continue;
            }
            if limit > 0 && out.len() == limit {
                more = true;
                break;
            }
            out.push(o.clone());
        }
        (out, st.revision, more)
    }

    /// Events with a revision above `after`, and the cache revision. Fails when `after` is
    /// older than the event window.
    pub fn events_after(
        &self,
        after: Revision,
    ) -> Result<(Vec<Arc<CacheEvent>>, Revision), CacheError> {
        let st = self.state.read().unwrap();
        if after < st.oldest_kept {
            return Err(CacheError::TooOld {
                requested: after,
                oldest: st.oldest_kept,
            });
        }
        let start = st.events.partition_point(|e| e.revision <= after);
        Ok((st.events.range(start..).cloned().collect(), st.revision))
    }

    /// A receiver that changes whenever the cache revision moves.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.rev_tx.subscribe()
    }

    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.store
    }
}

fn tombstone(prev: &CachedObject, rev: Revision) -> Arc<CachedObject> {
    let mut v = prev.value();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
    Arc::new(CachedObject {
        key: prev.key.clone(),
        revision: rev,
        json: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        labels: prev.labels.clone(),
    })
}

fn push_event(
    st: &mut State,
    revision: Revision,
    kind: WatchEventType,
    object: Arc<CachedObject>,
    prev: Option<Arc<CachedObject>>,
) {
    st.events.push_back(Arc::new(CacheEvent {
        revision,
        kind,
        object,
        prev,
    }));
    while st.events.len() > EVENT_WINDOW {
        if let Some(e) = st.events.pop_front() {
            st.oldest_kept = e.revision;
        }
    }
}
