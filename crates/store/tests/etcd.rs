//! etcd-only behaviour: unreachable endpoints, etcd going away and coming back.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{etcd_options, own_etcd, skip_etcd, unique_prefix};
use futures::StreamExt;
use skiff_store::etcd::EtcdStore;
use skiff_store::{Error, Revision, Storage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_names_the_endpoints() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    match EtcdStore::connect_with(std::slice::from_ref(&endpoint), etcd_options()).await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&endpoint), "{msg}");
            eprintln!("{msg}");
        }
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        EtcdStore::connect(&[]).await,
        Err(Error::Unavailable(_))
    ));
}

/// etcd killed and restarted under an open client and an open watch: requests fail with
/// `Unavailable` while it is down, work again afterwards with the same client, and the watch
/// delivers every acknowledged write exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_then_back() {
    if skip_etcd() {
        return;
    }
    let mut server = own_etcd();
    let store = EtcdStore::connect_with(&server.endpoints(), etcd_options())
        .await
        .unwrap();
    let p = unique_prefix("down_then_back");
    let mut w = store.watch(&p, 0).await.unwrap();
    let mut acked: Vec<Revision> = Vec::new();
    for i in 0..20 {
        acked.push(
            store
                .create(&format!("{p}before{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap(),
        );
    }
    // Read a few events so the watch is surely running before the kill.
    for rev in &acked[..5] {
        assert_eq!(w.next().await.unwrap().unwrap().revision(), *rev);
    }

    tokio::task::block_in_place(|| server.stop());
    let t = Instant::now();
    match store.get(&format!("{p}before0")).await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&server.endpoint()), "{msg}");
            eprintln!("while down ({:?}): {msg}", t.elapsed());
        }
        other => panic!("get while etcd is down: {other:?}"),
    }
    assert!(matches!(
        store.create(&format!("{p}during"), Bytes::new()).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        store.watch(&p, 0).await.map(|_| ()),
        Err(Error::Unavailable(_))
    ));

    tokio::task::block_in_place(|| server.restart()).unwrap();
    // The same client recovers by itself; allow it a moment to reconnect.
    let t = Instant::now();
    let first = loop {
        match store
            .create(&format!("{p}after0"), Bytes::from_static(b"x"))
            .await
        {
            Ok(rev) => break rev,
            Err(Error::Unavailable(msg)) => {
                assert!(t.elapsed() < Duration::from_secs(20), "still down: {msg}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    eprintln!("client usable again {:?} after the restart", t.elapsed());
    acked.push(first);
    for i in 1..20 {
        acked.push(
            store
                .create(&format!("{p}after{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap(),
        );
    }
    for rev in &acked[5..] {
        let ev = tokio::time::timeout(Duration::from_secs(20), w.next())
            .await
            .expect("watch resumed")
            .unwrap()
            .unwrap();
        assert_eq!(ev.revision(), *rev);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), w.next())
            .await
            .is_err(),
        "no duplicate or extra event"
    );
}
