//! What the EndpointSlice controller last wrote, per Service, as upstream's
//! `EndpointSliceTracker`. A sync on a cache that has not yet seen those writes would write
//! again (a second slice for the same endpoints, under a new generated name), so it waits;
//! and the controller's own writes, coming back through the watch, do not queue their Service
//! again. Upstream compares generations; skiff's EndpointSlices carry none, so resourceVersions
//! (revision numbers of skiff's store) stand in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::SERVICE_NAME;

/// How long a Service may wait for its writes to show before the controller acts anyway (a
/// slice relabelled out of the controller's hands would otherwise hold it forever).
const STALE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Written at this resourceVersion; the cache must show it or a later one.
    Written(u64),
    Deleted,
}

#[derive(Default)]
struct Tracked {
    service_uid: Option<String>,
    /// By slice uid.
    slices: HashMap<String, Expect>,
    stale_since: Option<Instant>,
}

pub struct Tracker {
    services: Mutex<HashMap<String, Tracked>>,
    timeout: Duration,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            services: Mutex::default(),
            timeout: STALE_TIMEOUT,
        }
    }
}

/// The `namespace/name` key of the Service a slice belongs to.
pub fn service_key(s: &EndpointSlice) -> Option<String> {
    let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME)?;
    Some(format!(
        "{}/{svc}",
        s.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

fn version(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

fn uid(s: &EndpointSlice) -> Option<&str> {
    s.metadata.uid.as_deref()
}

impl Tracker {
    /// The server returned `s` from a create or update.
    pub fn written(&self, s: &EndpointSlice) {
        let (Some(key), Some(uid), Some(v)) = (service_key(s), uid(s), version(s)) else {
            return;
        };
        let mut m = self.services.lock().unwrap();
        m.entry(key)
            .or_default()
            .slices
            .insert(uid.to_string(), Expect::Written(v));
    }

    /// The controller deleted `s`.
    pub fn deleted(&self, s: &EndpointSlice) {
        let (Some(key), Some(uid)) = (service_key(s), uid(s)) else {
            return;
        };
        let mut m = self.services.lock().unwrap();
        m.entry(key)
            .or_default()
            .slices
            .insert(uid.to_string(), Expect::Deleted);
    }

    /// Whether a slice the watch shows may need a sync: it is not the controller's latest
    /// write of it.
    pub fn should_sync(&self, s: &EndpointSlice) -> bool {
        let (Some(key), Some(uid)) = (service_key(s), uid(s)) else {
            return true;
        };
        let m = self.services.lock().unwrap();
        match m.get(&key).and_then(|t| t.slices.get(uid)) {
            Some(Expect::Written(v)) => version(s).is_none_or(|r| r > *v),
            Some(Expect::Deleted) | None => true,
        }
    }

    /// The watch saw `s` deleted. Whether that needs a sync: the controller did not delete it.
    pub fn observed_deletion(&self, s: &EndpointSlice) -> bool {
        let (Some(key), Some(uid)) = (service_key(s), uid(s)) else {
            return true;
        };
        let mut m = self.services.lock().unwrap();
        let expected = m.get_mut(&key).and_then(|t| t.slices.remove(uid));
        expected != Some(Expect::Deleted)
    }

    /// Whether `slices` (the cache's view of the Service's slices) miss writes the controller
    /// made: a written slice absent or older, or a deleted one still there.
    pub fn stale(&self, key: &str, service_uid: Option<&str>, slices: &[&EndpointSlice]) -> bool {
        let mut m = self.services.lock().unwrap();
        let t = m.entry(key.to_string()).or_default();
        if let (Some(was), Some(now)) = (t.service_uid.as_deref(), service_uid) {
            if was != now {
                // Writes for an earlier Service of this name no longer matter.
                t.slices.clear();
            }
        }
        t.service_uid = service_uid.map(str::to_string);
        let mut seen = 0;
        let mut stale = false;
        for s in slices {
            match uid(s).and_then(|u| t.slices.get(u)) {
                Some(Expect::Deleted) => stale = true,
                Some(Expect::Written(v)) => {
                    seen += 1;
                    stale |= version(s).is_some_and(|r| r < *v);
                }
                None => {}
            }
        }
        let written = t
            .slices
            .values()
            .filter(|e| matches!(e, Expect::Written(_)))
            .count();
        stale |= seen < written;
        if !stale {
            t.stale_since = None;
            return false;
        }
        let since = *t.stale_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.timeout {
            t.slices.clear();
            t.stale_since = None;
            return false;
        }
        true
    }

    /// The Service is gone.
    pub fn forget(&self, key: &str) {
        self.services.lock().unwrap().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(uid: &str, rv: u64) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{uid}"), "namespace": "default", "uid": uid,
                         "resourceVersion": rv.to_string(),
                         "labels": {SERVICE_NAME: "web"}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
    }

    #[test]
    fn a_cache_without_the_controllers_writes_is_stale() {
        let t = Tracker::default();
        let (a5, b7) = (slice("a", 5), slice("b", 7));
        assert!(!t.stale("default/web", Some("s1"), &[&slice("a", 3)]));
        t.written(&a5);
        t.written(&b7);
        assert!(
            t.stale("default/web", Some("s1"), &[&slice("a", 3), &b7]),
            "older"
        );
        assert!(
            t.stale("default/web", Some("s1"), &[&a5]),
            "created one missing"
        );
        assert!(!t.stale("default/web", Some("s1"), &[&a5, &b7]));
        assert!(!t.stale("default/web", Some("s1"), &[&slice("a", 9), &b7]));
        t.deleted(&b7);
        assert!(
            t.stale("default/web", Some("s1"), &[&a5, &b7]),
            "deleted one there"
        );
        assert!(!t.stale("default/web", Some("s1"), &[&a5]));
        // A Service of the same name, created again: earlier writes no longer count.
        t.written(&b7);
        assert!(!t.stale("default/web", Some("s2"), &[]));
    }

    #[test]
    fn the_controllers_own_writes_do_not_queue_a_sync() {
        let t = Tracker::default();
        let a5 = slice("a", 5);
        assert!(t.should_sync(&a5), "not written by the controller");
        t.written(&a5);
        assert!(!t.should_sync(&a5));
        assert!(t.should_sync(&slice("a", 6)), "changed by someone else");
        assert!(t.observed_deletion(&a5), "deleted by someone else");
        t.written(&a5);
        t.deleted(&a5);
        assert!(!t.observed_deletion(&a5));
    }

    #[test]
    fn a_cache_stale_for_too_long_is_trusted() {
        let t = Tracker {
            timeout: Duration::ZERO,
            ..Default::default()
        };
        t.written(&slice("a", 5));
        assert!(!t.stale("default/web", Some("s1"), &[]));
    }
}
