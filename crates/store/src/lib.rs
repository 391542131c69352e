//! skiff's storage layer.
//!
//! One interface ([`Storage`]) with the semantics of etcd v3 as the Kubernetes apiserver uses
//! it, and two backends: [`sqlite::SqliteStore`] (the embedded default) and
//! [`etcd::EtcdStore`].
//!
//! - Keys are strings such as `/registry/<group>/<resource>/<namespace>/<name>`; values are
//!   bytes.
//! - Every write bumps one global, strictly increasing revision, which becomes the objects'
//!   `resourceVersion`.
//! - Updates and deletes are compare-and-swap on the key's modification revision.
//! - Watches stream every change under a prefix after a given revision, in revision order,
//!   with the previous value on updates and deletes.
//! - History older than the compacted revision is gone: reading or watching it fails with
//!   [`Error::Compacted`].

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod etcd;
pub mod etcd_server;
pub mod sqlite;

/// A store revision. Revisions start at 1; 0 means "none" / "current".
pub type Revision = i64;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (in its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What a list returns.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at. Pass it back to continue the list consistently.
    pub revision: Revision,
    /// True when more keys under the prefix follow the last item (the list hit `limit`).
    pub more: bool,
}

/// Options for [`Storage::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Return only keys strictly greater than this one (a continuation from a previous page).
    pub start_after: Option<String>,
    /// Maximum number of items; 0 means no limit.
    pub limit: usize,
    /// Read at this revision; 0 means the current one. Older than the compacted revision:
    /// [`Error::Compacted`]. Newer than the current revision: [`Error::FutureRevision`].
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change. For a delete, `value` is empty and `mod_revision` is the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The key before the change: set on updates and deletes, `None` on creates.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events in revision order. It ends with an `Err` item (and nothing after
/// it) when the watch cannot continue, e.g. [`Error::Compacted`] when it fell behind.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// Errors of the storage layer. Each is distinct so the apiserver can map it to a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Create of a key that exists.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// Update or delete of a key that does not exist.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// Compare-and-swap failed: the key is at another revision. Carries the current value.
    #[error("key {key:?} is at revision {}, not the expected one", current.as_ref().map_or(0, |c| c.mod_revision))]
    Conflict {
        key: String,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The backend cannot be reached (etcd down, ...). Retrying later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database is corrupt, foreign or otherwise unusable.
    #[error("storage corrupt or unusable: {0}")]
    Corrupt(String),
    /// Anything else from the backend.
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage interface shared by all backends.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Current value of `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under `prefix` (a plain string prefix), in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Number of keys under `prefix` at the current revision.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Create `key` only if absent. Returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replace `key` only if its `mod_revision` is still `expected`. Returns the new revision.
    /// [`Error::NotFound`] if the key is absent, [`Error::Conflict`] if it moved on.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision>;

    /// Delete `key`, only if its `mod_revision` is `expected` when that is given. Returns the
    /// revision of the delete and the deleted value.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Watch every change under `prefix` with a revision strictly greater than `after`.
    /// `after == 0` means from now on.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The current (latest) revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The revision history is kept from; older revisions are gone.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Drop history older than `revision`. Current values are never dropped.
    async fn compact(&self, revision: Revision) -> Result<()>;
}
