//! A client library (kube-rs) against a real `skiff server`: list, watch resumed from a
//! resourceVersion, and the 410 a too-old resourceVersion gets.

mod common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

async fn start(dir: &std::path::Path) -> (std::process::Child, Api<ConfigMap>) {
    let child = common::spawn(dir);
    let kc = Kubeconfig::read_from(dir.join("admin.kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    (child, Api::namespaced(client, "default"))
}

#[tokio::test]
async fn list_watch_resume_and_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, cms) = start(dir.path()).await;

    let mk = |n: &str| {
        serde_json::from_value::<ConfigMap>(serde_json::json!({
            "metadata": {"name": n}, "data": {"k": n}
        }))
        .unwrap()
    };
    cms.create(&PostParams::default(), &mk("a")).await.unwrap();
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let rv = list.metadata.resource_version.clone().unwrap();

    // Changes made after the list arrive on a watch resumed from its resourceVersion.
    cms.create(&PostParams::default(), &mk("b")).await.unwrap();
    cms.create(&PostParams::default(), &mk("c")).await.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Added(cm)) => seen.push(cm.metadata.name.unwrap()),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(seen, vec!["b", "c"]);

    // After a restart the cache keeps history only from its start: a resourceVersion older
    // than that gets 410 Expired in the stream, and clients relist.
    let _ = child.kill();
    let _ = child.wait();
    let (c2, cms) = start(dir.path()).await;
    child = c2;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), "1")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    let relist = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(relist.items.len(), 3);
    let _ = child.kill();
    let _ = child.wait();
}
