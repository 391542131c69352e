//! Expectations, as upstream's: after a controller creates or deletes objects, its cache lags
//! behind; until the cache shows those writes (or a timeout passes) it must not act again on
//! the same owner, or it would create or delete twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long writes may stay unobserved before the controller acts anyway.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pending {
    /// Names that must appear.
    adds: HashSet<String>,
    /// Names that must disappear.
    dels: HashSet<String>,
    since: Option<Instant>,
}

#[derive(Default)]
pub struct Expectations {
    by_owner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub fn expect_adds(&self, owner: &str, names: impl IntoIterator<Item = String>) {
        let mut m = self.by_owner.lock().unwrap();
        let p = m.entry(owner.to_string()).or_default();
        p.adds.extend(names);
        p.since = Some(Instant::now());
    }

    pub fn expect_dels(&self, owner: &str, names: impl IntoIterator<Item = String>) {
        let mut m = self.by_owner.lock().unwrap();
        let p = m.entry(owner.to_string()).or_default();
        p.dels.extend(names);
        p.since = Some(Instant::now());
    }

    /// A write failed or will never be observed: stop waiting for it.
    pub fn lower_add(&self, owner: &str, name: &str) {
        if let Some(p) = self.by_owner.lock().unwrap().get_mut(owner) {
            p.adds.remove(name);
        }
    }

    pub fn lower_del(&self, owner: &str, name: &str) {
        if let Some(p) = self.by_owner.lock().unwrap().get_mut(owner) {
            p.dels.remove(name);
        }
    }

    /// The cache saw `name` created / deleted.
    pub fn observed_add(&self, owner: &str, name: &str) {
        self.lower_add(owner, name)
    }

    pub fn observed_del(&self, owner: &str, name: &str) {
        self.lower_del(owner, name)
    }

    /// Whether the owner may be synced: nothing pending, or pending for too long.
    pub fn satisfied(&self, owner: &str) -> bool {
        let mut m = self.by_owner.lock().unwrap();
        let Some(p) = m.get(owner) else { return true };
        let done = p.adds.is_empty() && p.dels.is_empty();
        let expired = p.since.is_some_and(|t| t.elapsed() > TIMEOUT);
        if done || expired {
            m.remove(owner);
            true
        } else {
            false
        }
    }

    pub fn forget(&self, owner: &str) {
        self.by_owner.lock().unwrap().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_only_after_every_write_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_adds("rs", ["a".to_string(), "b".to_string()]);
        e.expect_dels("rs", ["c".to_string()]);
        e.observed_add("rs", "a");
        e.observed_del("rs", "c");
        assert!(!e.satisfied("rs"));
        e.lower_add("rs", "b");
        assert!(e.satisfied("rs"));
    }
}
