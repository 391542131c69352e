//! Finishing the deletion of namespaces: once a namespace is Terminating, delete everything in
//! it, then clear its `kubernetes` finalizer so it goes away, as upstream's namespace
//! controller does.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::registry::object::is_deleting;
use crate::registry::{DeleteOptions, Registry, WriteOptions};

pub fn spawn(reg: Arc<Registry>) {
    tokio::spawn(async move {
        let mut rx = reg.cache.subscribe();
        loop {
            if let Err(e) = sweep(&reg).await {
                tracing::debug!(error = %e, "namespace finalization will retry");
            }
            // Work is driven by changes, with a slow tick as a safety net.
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

async fn sweep(reg: &Registry) -> Result<(), skiff_api::status::StatusError> {
    let ns_info = reg.by_kind("", "Namespace").expect("namespaces are served");
    let (items, _, _) = reg
        .cache
        .list(&ns_info.key_prefix(), None, 0, &|o| is_deleting(&o.value()));
    for o in items {
        let ns = o.value();
        let Some(name) = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let mut remaining = 0usize;
        for info in reg.resources() {
            if !info.namespaced() || info.stored_as.is_some() {
                continue;
            }
            let prefix = format!("{}{name}/", info.key_prefix());
            let (objs, _, _) = reg.cache.list(&prefix, None, 0, &|_| true);
            for obj in objs {
                remaining += 1;
                let v = obj.value();
                if is_deleting(&v) {
                    continue;
                }
                let n = v
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let opts = DeleteOptions {
                    propagation_policy: Some("Background".into()),
                    ..Default::default()
                };
                match reg.delete(&info, Some(&name), n, &opts).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if remaining > 0 {
            continue;
        }
        // Empty: drop the `kubernetes` finalizer; the registry removes the namespace once no
        // finalizer is left.
        reg.guaranteed_update(
            &ns_info,
            None,
            &name,
            None,
            &WriteOptions::default(),
            |cur| {
                let mut n = cur.clone();
                let fins: Vec<Value> = n
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter(|f| *f != "kubernetes").cloned().collect())
                    .unwrap_or_default();
                n["spec"]["finalizers"] = json!(fins);
                Ok(n)
            },
        )
        .await?;
    }
    Ok(())
}
