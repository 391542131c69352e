//! A work queue of object keys, as upstream's workqueue: a key waits at most once, a key is
//! never processed by two workers at once, and a key added while it is being processed runs
//! again afterwards. Failed keys come back with exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    processing: HashSet<String>,
    /// Added while processing: re-queued by `done`.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// Cheap to clone; all clones share one queue.
#[derive(Clone, Default)]
pub struct Queue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.state.lock().unwrap();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Waits for the next key and marks it as being processed.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().unwrap();
                if let Some(k) = s.queue.pop_front() {
                    s.queued.remove(&k);
                    s.processing.insert(k.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; `ok=false` queues it again with backoff (5 ms doubling, at most
    /// 60 s, like upstream's default controller rate limiter).
    pub fn done(&self, key: &str, ok: bool) {
        let mut s = self.state.lock().unwrap();
        s.processing.remove(key);
        let retry = if ok {
            s.failures.remove(key);
            None
        } else {
            let n = s.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            let ms = 5u64.saturating_mul(1 << (*n).min(14)).min(60_000);
            Some(Duration::from_millis(ms))
        };
        let dirty = s.dirty.remove(key);
        drop(s);
        if let Some(d) = retry {
            self.add_after(key.to_string(), d);
        } else if dirty {
            self.add(key.to_string());
        }
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `workers` loops that take keys from `queue` and call `f`.
pub fn run_workers<F, Fut, E>(queue: Queue, workers: usize, name: &'static str, f: F)
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    for _ in 0..workers {
        let q = queue.clone();
        let f = f.clone();
        tokio::spawn(async move {
            loop {
                let key = q.next().await;
                let res = f(key.clone()).await;
                if let Err(e) = &res {
                    tracing::debug!(controller = name, key = %key, error = %e, "sync failed");
                }
                q.done(&key, res.is_ok());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn key_added_while_processing_runs_again() {
        let q = Queue::new();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 1);
        let k = q.next().await;
        q.add("a");
        assert_eq!(q.len(), 0, "not queued twice while processing");
        q.done(&k, true);
        assert_eq!(q.len(), 1);
    }
}
