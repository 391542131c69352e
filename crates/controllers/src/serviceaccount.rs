//! ServiceAccount controller: a `default` ServiceAccount in every active namespace, recreated
//! if deleted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use skiff_client::{Change, Informers, Queue};

use crate::{api_err, Result};

pub const DEFAULT: &str = "default";

struct Ctl {
    client: Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
}

pub fn start(informers: &Arc<Informers>) {
    let ns_inf = informers.namespaces();
    let sa_inf = informers.service_accounts();
    let queue = Queue::new();
    let q = queue.clone();
    ns_inf.on_change(move |c| {
        if let Change::Applied(ns) = c {
            q.add(ns.name_any());
        }
    });
    let q = queue.clone();
    sa_inf.on_change(move |c| {
        if let Change::Deleted(sa) = c {
            if sa.name_any() == DEFAULT {
                q.add(sa.namespace().unwrap_or_default());
            }
        }
    });
    let ctl = Arc::new(Ctl {
        client: informers.client(),
        namespaces: ns_inf.store(),
        accounts: sa_inf.store(),
    });
    let i = informers.clone();
    tokio::spawn(async move {
        i.namespaces().synced().await;
        i.service_accounts().synced().await;
        skiff_client::run_workers(queue, 1, "serviceaccount", move |key| {
            let c = ctl.clone();
            async move { c.sync(&key).await }
        });
    });
}

impl Ctl {
    async fn sync(&self, ns: &str) -> Result<()> {
        let Some(namespace) = self.namespaces.get(&ObjectRef::new(ns)) else {
            return Ok(());
        };
        let active = namespace.metadata.deletion_timestamp.is_none()
            && namespace.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
        if !active
            || self
                .accounts
                .get(&ObjectRef::new(DEFAULT).within(ns))
                .is_some()
        {
            return Ok(());
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(()),
            // Exists already, or the namespace is terminating: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => Ok(()),
            Err(e) => Err(api_err(format!("creating serviceaccount in {ns}"))(e)),
        }
    }
}
