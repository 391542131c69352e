//! One conformance suite, run against both backends.
//!
//! Each scenario is a plain async fn over a [`Backend`]; the macro at the bottom instantiates
//! it once per backend. The etcd half starts a real etcd (one shared by the tests that neither
//! restart nor compact it, which get their own) and fails if there is none, unless
//! `SKIFF_TEST_SKIP_ETCD=1`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, EtcdBackend, SqliteBackend};
use futures::StreamExt;
use skiff_store::{Error, Event, EventKind, ListOptions, Revision, WatchStream};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(w: &mut WatchStream) -> Event {
    next_event_within(w, Duration::from_secs(20)).await
}

async fn next_event_within(w: &mut WatchStream, within: Duration) -> Event {
    match tokio::time::timeout(within, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {within:?}"),
    }
}

/// Nothing more arrives on `w` for a short while.
async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

async fn crud(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let k = format!("{p}a");
    assert_eq!(s.get(&k).await.unwrap(), None);

    let r1 = s.create(&k, b("one")).await.unwrap();
    assert!(r1 > 0);
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!((kv.key.as_str(), &kv.value[..]), (k.as_str(), &b"one"[..]));
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
    assert!(s.current_revision().await.unwrap() >= r1);

    match s.create(&k, b("again")).await {
        Err(Error::AlreadyExists(key)) => assert_eq!(key, k),
        other => panic!("create of an existing key: {other:?}"),
    }

    let r2 = s.update(&k, b("two"), r1).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!(&kv.value[..], b"two");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));

    // A stale update fails and carries the current value.
    match s.update(&k, b("stale"), r1).await {
        Err(Error::Conflict { key, current }) => {
            assert_eq!(key, k);
            let cur = current.expect("conflict carries the current value");
            assert_eq!(
                (&cur.value[..], cur.mod_revision, cur.create_revision),
                (&b"two"[..], r2, r1)
            );
        }
        other => panic!("stale update: {other:?}"),
    }
    // Expected revision 0 never matches an existing key.
    assert!(matches!(
        s.update(&k, b("zero"), 0).await,
        Err(Error::Conflict { .. })
    ));
    match s.update(&format!("{p}missing"), b("x"), r1).await {
        Err(Error::NotFound(key)) => assert_eq!(key, format!("{p}missing")),
        other => panic!("update of a missing key: {other:?}"),
    }
    assert!(matches!(
        s.update(&format!("{p}missing"), b("x"), 0).await,
        Err(Error::NotFound(_))
    ));

    // Delete with a wrong expected revision.
    match s.delete(&k, Some(r1)).await {
        Err(Error::Conflict { current, .. }) => {
            assert_eq!(current.unwrap().mod_revision, r2)
        }
        other => panic!("stale delete: {other:?}"),
    }
    let (r3, prev) = s.delete(&k, Some(r2)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(
        (&prev.value[..], prev.mod_revision, prev.create_revision),
        (&b"two"[..], r2, r1)
    );
    assert_eq!(s.get(&k).await.unwrap(), None);
    assert!(matches!(s.delete(&k, None).await, Err(Error::NotFound(_))));
    assert!(matches!(
        s.delete(&k, Some(r3)).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.update(&k, b("x"), r2).await,
        Err(Error::NotFound(_))
    ));

    // Re-created: a new incarnation with its own create revision.
    let r4 = s.create(&k, b("three")).await.unwrap();
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
    // Unconditional delete.
    let (r5, prev) = s.delete(&k, None).await.unwrap();
    assert!(r5 > r4);
    assert_eq!(&prev.value[..], b"three");

    // Empty and binary values round-trip.
    let k2 = format!("{p}bin");
    s.create(&k2, Bytes::new()).await.unwrap();
    assert_eq!(s.get(&k2).await.unwrap().unwrap().value.len(), 0);
    let bin: Vec<u8> = (0..=255u8).collect();
    let r = s.get(&k2).await.unwrap().unwrap().mod_revision;
    s.update(&k2, Bytes::from(bin.clone()), r).await.unwrap();
    assert_eq!(&s.get(&k2).await.unwrap().unwrap().value[..], &bin[..]);
}

async fn list_and_count(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let dir = format!("{p}items/");
    // Neighbours that share the text prefix without the slash must not be listed.
    s.create(&format!("{p}items"), b("x")).await.unwrap();
    s.create(&format!("{p}itemsx/a"), b("x")).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..25 {
        revs.push(
            s.create(&format!("{dir}k{i:02}"), b(&format!("v{i}")))
                .await
                .unwrap(),
        );
    }
    let all = s.list(&dir, ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 25);
    assert!(!all.more);
    assert!(all.revision >= revs[24]);
    for (i, kv) in all.items.iter().enumerate() {
        assert_eq!(kv.key, format!("{dir}k{i:02}"));
        assert_eq!(&kv.value[..], format!("v{i}").as_bytes());
        assert_eq!((kv.create_revision, kv.mod_revision), (revs[i], revs[i]));
    }
    assert_eq!(s.count(&dir).await.unwrap(), 25);
    assert_eq!(s.count(&format!("{p}items")).await.unwrap(), 27);
    assert_eq!(s.count(&format!("{p}nothing/")).await.unwrap(), 0);
    assert!(s
        .list(&format!("{p}nothing/"), ListOptions::default())
        .await
        .unwrap()
        .items
        .is_empty());

    // Page 1, then change things, then the next pages at the first page's revision.
    let page1 = s
        .list(
            &dir,
            ListOptions {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 10);
    assert!(page1.more);
    let at = page1.revision;
    for i in 0..5 {
        s.delete(&format!("{dir}k{i:02}"), None).await.unwrap();
    }
    let k20 = format!("{dir}k20");
    s.update(&k20, b("changed"), revs[20]).await.unwrap();
    s.create(&format!("{dir}k99"), b("new")).await.unwrap();

    let mut keys: Vec<String> = page1.items.iter().map(|kv| kv.key.clone()).collect();
    let mut last = page1.items.last().unwrap().key.clone();
    let mut pages = 1;
    loop {
        let page = s
            .list(
                &dir,
                ListOptions {
                    start_after: Some(last.clone()),
                    limit: 10,
                    revision: at,
                },
            )
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page.revision, at);
        for kv in &page.items {
            if kv.key == k20 {
                assert_eq!(
                    &kv.value[..],
                    b"v20",
                    "a page at an old revision shows old values"
                );
            }
        }
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        last = page.items.last().unwrap().key.clone();
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("{dir}k{i:02}")).collect();
    assert_eq!(keys, expected);

    // The current state.
    let now = s.list(&dir, ListOptions::default()).await.unwrap();
    let now_keys: Vec<&str> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(now_keys.len(), 21);
    assert_eq!(now_keys[0], format!("{dir}k05"));
    assert_eq!(now_keys[20], format!("{dir}k99"));
    assert_eq!(s.count(&dir).await.unwrap(), 21);

    // An exact-size page says there is no more.
    let exact = s
        .list(
            &dir,
            ListOptions {
                limit: 21,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((exact.items.len(), exact.more), (21, false));
    // A continuation key that does not exist.
    let tail = s
        .list(
            &dir,
            ListOptions {
                start_after: Some(format!("{dir}k195")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let tail_keys: Vec<&str> = tail.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        tail_keys,
        vec![
            format!("{dir}k20"),
            format!("{dir}k21"),
            format!("{dir}k22"),
            format!("{dir}k23"),
            format!("{dir}k24"),
            format!("{dir}k99")
        ]
    );

    // An old revision: before k24 existed.
    let old = s
        .list(
            &dir,
            ListOptions {
                revision: revs[23],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(old.items.len(), 24);
    assert_eq!(old.revision, revs[23]);

    // The future.
    let cur = s.current_revision().await.unwrap();
    match s
        .list(
            &dir,
            ListOptions {
                revision: cur + 1000,
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!(requested, cur + 1000);
            assert!(current >= cur && current < cur + 1000);
        }
        other => panic!("list at a future revision: {other:?}"),
    }
}

async fn cas_counter(b_: &mut dyn Backend, p: &str) {
    const TASKS: usize = 16;
    const EACH: usize = 25;
    let s = b_.store();
    let k = format!("{p}counter");
    s.create(&k, b("0")).await.unwrap();
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        let k = k.clone();
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                let mut cur = s.get(&k).await.unwrap().unwrap();
                loop {
                    let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                    match s
                        .update(&k, b(&(n + 1).to_string()), cur.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { current, .. }) => {
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            cur = *current.unwrap();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = s.get(&k).await.unwrap().unwrap();
    assert_eq!(
        std::str::from_utf8(&v.value).unwrap(),
        (TASKS * EACH).to_string()
    );
    eprintln!(
        "{}: {} increments, {} conflicts",
        b_.name(),
        TASKS * EACH,
        conflicts.load(std::sync::atomic::Ordering::Relaxed)
    );
}

async fn concurrent_creates_one_winner(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let k = format!("{p}contended");
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = s.clone();
        let k = k.clone();
        let other = format!("{p}own{i}");
        tasks.push(tokio::spawn(async move {
            let (a, b2) = tokio::join!(s.create(&k, b(&i.to_string())), s.create(&other, b("x")));
            (a, b2.unwrap())
        }));
    }
    let mut winners = 0;
    let mut revs = HashSet::new();
    for t in tasks {
        let (a, rev) = t.await.unwrap();
        assert!(revs.insert(rev), "revision {rev} given twice");
        match a {
            Ok(rev) => {
                winners += 1;
                assert!(revs.insert(rev));
            }
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(s.count(p).await.unwrap(), 33);
}

async fn watch_kinds_and_prev(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let k = format!("{p}w");
    // So that `r1 - 1` below is a real revision, not 0 ("from now").
    s.create(&format!("{p}-before"), b("x")).await.unwrap();
    let mut w = s.watch(p, 0).await.unwrap();
    let mut other = s.watch(&format!("{p}other/"), 0).await.unwrap();
    let r1 = s.create(&k, b("1")).await.unwrap();
    let r2 = s.update(&k, b("2"), r1).await.unwrap();
    let (r3, _) = s.delete(&k, Some(r2)).await.unwrap();
    let r4 = s.create(&k, b("3")).await.unwrap();
    // A key outside the prefix.
    s.create(&format!("{}outside", &p[..p.len() - 1]), b("x"))
        .await
        .unwrap();

    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision(), &e.kv.value[..], e.kv.create_revision),
        (EventKind::Put, r1, &b"1"[..], r1)
    );
    assert_eq!(e.prev, None);
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision(), &e.kv.value[..], e.kv.create_revision),
        (EventKind::Put, r2, &b"2"[..], r1)
    );
    let prev = e.prev.unwrap();
    assert_eq!(
        (&prev.value[..], prev.mod_revision, prev.create_revision),
        (&b"1"[..], r1, r1)
    );
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision(), e.kv.key.as_str()),
        (EventKind::Delete, r3, k.as_str())
    );
    assert!(e.kv.value.is_empty());
    let prev = e.prev.unwrap();
    assert_eq!((&prev.value[..], prev.mod_revision), (&b"2"[..], r2));
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision(), e.kv.create_revision),
        (EventKind::Put, r4, r4)
    );
    assert_eq!(e.prev, None);
    assert_quiet(&mut w).await;
    assert_quiet(&mut other).await;

    // The same history replayed from an old revision.
    let mut w = s.watch(p, r1 - 1).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut w).await);
    }
    assert_eq!(
        got.iter().map(|e| e.revision()).collect::<Vec<_>>(),
        vec![r1, r2, r3, r4]
    );
    assert_eq!(got[2].prev.as_ref().unwrap().value, b("2"));
    assert_eq!(got[2].kind, EventKind::Delete);
    assert_quiet(&mut w).await;
    // Watching after the last write: nothing yet, then the next one.
    let mut w = s.watch(p, r4).await.unwrap();
    assert_quiet(&mut w).await;
    let r5 = s.update(&k, b("4"), r4).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), r5);
}

/// What a writer did, as acknowledged.
#[derive(Clone, Debug)]
struct Ack {
    rev: Revision,
    key: String,
    kind: EventKind,
    value: Bytes,
}

/// A storm of concurrent writes watched from several start revisions: each watcher sees every
/// acknowledged write after its start exactly once, in increasing revision order, with the
/// right previous values.
async fn watch_storm(b_: &mut dyn Backend, p: &str) {
    const WRITERS: usize = 8;
    const KEYS: usize = 4;
    const ROUNDS: usize = 6;
    let s = b_.store();
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));

    // Some history before anything watches.
    for i in 0..10 {
        let key = format!("{p}pre{i}");
        let value = b(&format!("{key}@0"));
        let rev = s.create(&key, value.clone()).await.unwrap();
        acks.lock().unwrap().push(Ack {
            rev,
            key,
            kind: EventKind::Put,
            value,
        });
    }
    let old = acks.lock().unwrap()[2].rev;
    let before = s.current_revision().await.unwrap();
    let mut watchers: Vec<(Revision, WatchStream)> = vec![
        (before, s.watch(p, 0).await.unwrap()),
        (before, s.watch(p, before).await.unwrap()),
    ];

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        let acks = acks.clone();
        let p = p.to_string();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for k in 0..KEYS {
                    let key = format!("{p}w{w}/k{k}");
                    let value = b(&format!("{key}@{round}"));
                    let (rev, kind, value) = match round % 3 {
                        0 => (
                            s.create(&key, value.clone()).await.unwrap(),
                            EventKind::Put,
                            value,
                        ),
                        1 => {
                            let cur = s.get(&key).await.unwrap().unwrap();
                            (
                                s.update(&key, value.clone(), cur.mod_revision)
                                    .await
                                    .unwrap(),
                                EventKind::Put,
                                value,
                            )
                        }
                        _ => {
                            let cur = s.get(&key).await.unwrap().unwrap();
                            let (rev, _) = s.delete(&key, Some(cur.mod_revision)).await.unwrap();
                            (rev, EventKind::Delete, Bytes::new())
                        }
                    };
                    acks.lock().unwrap().push(Ack {
                        rev,
                        key,
                        kind,
                        value,
                    });
                }
            }
        }));
    }
    // Join the storm half-way: from an old revision, and from a revision in the middle.
    loop {
        if acks.lock().unwrap().len() >= 10 + WRITERS * KEYS * ROUNDS / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let middle = {
        let a = acks.lock().unwrap();
        a[a.len() - 1].rev
    };
    watchers.push((old, s.watch(p, old).await.unwrap()));
    watchers.push((middle, s.watch(p, middle).await.unwrap()));
    for t in tasks {
        t.await.unwrap();
    }
    let mut acks = acks.lock().unwrap().clone();
    acks.sort_by_key(|a| a.rev);
    let revs: HashSet<Revision> = acks.iter().map(|a| a.rev).collect();
    assert_eq!(
        revs.len(),
        acks.len(),
        "two writes acknowledged with the same revision"
    );

    // The state of every key before each write, from the acknowledged history.
    let mut state: HashMap<String, (Bytes, Revision)> = HashMap::new();
    let mut expected_prev: BTreeMap<Revision, Option<(Bytes, Revision)>> = BTreeMap::new();
    for a in &acks {
        expected_prev.insert(a.rev, state.get(&a.key).cloned());
        match a.kind {
            EventKind::Put => state.insert(a.key.clone(), (a.value.clone(), a.rev)),
            EventKind::Delete => state.remove(&a.key),
        };
    }

    for (start, mut w) in watchers {
        let want: Vec<&Ack> = acks.iter().filter(|a| a.rev > start).collect();
        assert!(!want.is_empty());
        let mut last = start;
        for a in &want {
            let e = next_event(&mut w).await;
            assert!(e.revision() > last, "revisions must strictly increase");
            last = e.revision();
            assert_eq!(
                (e.revision(), e.kv.key.as_str(), e.kind, &e.kv.value),
                (a.rev, a.key.as_str(), a.kind, &a.value),
                "watch from {start}: event differs from the acknowledged write"
            );
            let prev = e.prev.map(|kv| (kv.value, kv.mod_revision));
            assert_eq!(
                prev, expected_prev[&a.rev],
                "wrong previous value at {}",
                a.rev
            );
        }
        assert_quiet(&mut w).await;
    }
}

/// A consumer that does not read for a while still gets every event, in order.
async fn watch_slow_consumer(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let mut w = s.watch(p, 0).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..1500 {
        revs.push(s.create(&format!("{p}k{i}"), b("v")).await.unwrap());
    }
    for (i, rev) in revs.iter().enumerate() {
        let e = next_event(&mut w).await;
        assert_eq!(e.revision(), *rev, "event {i}");
    }
}

async fn restart_keeps_data(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let a = format!("{p}a");
    let r1 = s.create(&a, b("1")).await.unwrap();
    let r2 = s.update(&a, b("2"), r1).await.unwrap();
    let gone = format!("{p}gone");
    let r3 = s.create(&gone, b("x")).await.unwrap();
    let (r4, _) = s.delete(&gone, None).await.unwrap();
    let cur = s.current_revision().await.unwrap();
    assert_eq!(cur, r4);
    drop(s);

    let s = b_.restart().await;
    // etcd: the same client, which must reconnect by itself.
    let kv = s.get(&a).await.expect("read after restart").unwrap();
    assert_eq!(
        (&kv.value[..], kv.create_revision, kv.mod_revision),
        (&b"2"[..], r1, r2)
    );
    assert_eq!(s.get(&gone).await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), cur);
    let old = s
        .list(
            p,
            ListOptions {
                revision: r3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(old.items.len(), 2);
    let mut w = s.watch(p, r1).await.unwrap();
    for rev in [r2, r3, r4] {
        assert_eq!(next_event(&mut w).await.revision(), rev);
    }
    let r5 = s.update(&a, b("3"), r2).await.unwrap();
    assert!(r5 > cur);
    assert_eq!(next_event(&mut w).await.revision(), r5);
}

async fn compaction(b_: &mut dyn Backend, p: &str) {
    let s = b_.store();
    let a = format!("{p}a");
    let mut revs = vec![s.create(&a, b("0")).await.unwrap()];
    for i in 1..10 {
        let prev = *revs.last().unwrap();
        revs.push(s.update(&a, b(&i.to_string()), prev).await.unwrap());
    }
    let gone = format!("{p}gone");
    s.create(&gone, b("x")).await.unwrap();
    let (del, _) = s.delete(&gone, None).await.unwrap();
    let keep = format!("{p}keep");
    let keep_rev = s.create(&keep, b("k")).await.unwrap();
    let mid = revs[6];
    let before_list = s
        .list(
            p,
            ListOptions {
                revision: mid,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    s.compact(mid).await.unwrap();
    assert!(s.compacted_revision().await.unwrap() >= mid);
    // Compacting less or the same again is a no-op.
    s.compact(mid).await.unwrap();
    s.compact(revs[2]).await.unwrap();

    match s
        .list(
            p,
            ListOptions {
                revision: revs[3],
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, revs[3]);
            assert!(compacted >= mid);
        }
        other => panic!("list below the compacted revision: {other:?}"),
    }
    // At the compacted revision itself the state is still there.
    let at = s
        .list(
            p,
            ListOptions {
                revision: mid,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at.items, before_list.items);
    assert_eq!(&at.items[0].value[..], b"6");
    // Current values are untouched.
    assert_eq!(&s.get(&a).await.unwrap().unwrap().value[..], b"9");
    assert_eq!(s.get(&keep).await.unwrap().unwrap().mod_revision, keep_rev);
    assert_eq!(s.get(&gone).await.unwrap(), None);

    match s.watch(p, revs[3]).await {
        Err(Error::Compacted { compacted, .. }) => assert!(compacted >= mid),
        Ok(_) => panic!("watch below the compacted revision started"),
        Err(e) => panic!("watch below the compacted revision: {e}"),
    }
    // From the compacted revision on, history is complete.
    let mut w = s.watch(p, mid).await.unwrap();
    for rev in &revs[7..] {
        let e = next_event(&mut w).await;
        assert_eq!(e.revision(), *rev);
        assert_eq!(e.prev.unwrap().mod_revision, rev - 1);
    }
    assert_eq!(next_event(&mut w).await.revision(), del - 1);
    let e = next_event(&mut w).await;
    assert_eq!((e.revision(), e.kind), (del, EventKind::Delete));
    assert_eq!(next_event(&mut w).await.revision(), keep_rev);

    let cur = s.current_revision().await.unwrap();
    assert!(matches!(
        s.compact(cur + 100).await,
        Err(Error::FutureRevision { .. })
    ));
    // Compact everything: current values stay.
    let cur = s.current_revision().await.unwrap();
    s.compact(cur).await.unwrap();
    assert_eq!(&s.get(&a).await.unwrap().unwrap().value[..], b"9");
    let now = s.list(p, ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len(), 2);
    assert_eq!(s.count(p).await.unwrap(), 2);
}

/// A list bigger than gRPC's default 4 MiB message limit.
async fn large_list(b_: &mut dyn Backend, p: &str) {
    const KEYS: usize = 3000;
    let s = b_.store();
    let value = Bytes::from(vec![b'v'; 2048]);
    // Everything under `p` comes after this revision (never 0, which means "now").
    let start = s
        .create(&format!("{}-start", &p[..p.len() - 1]), value.clone())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let s = s.clone();
        let value = value.clone();
        let p = p.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (t..KEYS).step_by(32) {
                s.create(&format!("{p}{i:05}"), value.clone())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = s.list(p, ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), KEYS);
    assert!(all.items.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(s.count(p).await.unwrap(), KEYS as i64);
    let mut w = s.watch(p, 0).await.unwrap();
    drop(all);
    // A watch replaying all of it.
    let mut w2 = s.watch(p, start).await.unwrap();
    for _ in 0..KEYS {
        next_event(&mut w2).await;
    }
    assert_quiet(&mut w).await;
}

macro_rules! conformance {
    ($($name:ident $(($isolated:ident))?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let mut backend = super::SqliteBackend::new();
                    let prefix = super::common::unique_prefix(stringify!($name));
                    super::$name(&mut backend, &prefix).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if super::common::skip_etcd() {
                        return;
                    }
                    #[allow(unused_mut, unused_assignments)]
                    let mut isolated = false;
                    $( isolated = stringify!($isolated) == "isolated"; )?
                    let mut backend = super::EtcdBackend::new(isolated).await;
                    let prefix = super::common::unique_prefix(stringify!($name));
                    super::$name(&mut backend, &prefix).await;
                }
            )*
        }
    };
}

conformance!(
    crud,
    list_and_count,
    cas_counter,
    concurrent_creates_one_winner,
    watch_kinds_and_prev,
    watch_storm,
    watch_slow_consumer,
    large_list,
    restart_keeps_data(isolated),
    compaction(isolated),
);
