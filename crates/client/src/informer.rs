//! Shared informers: one watch per resource kind for a whole process, a reflector store that
//! every controller reads, and event handlers that turn changes into work-queue keys.
//!
//! Handlers are registered before `start`; after every (re)list the handlers see every object
//! again as `Applied`, so a controller that missed a deletion during a watch gap still converges.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// What a handler is told about one object.
pub enum Change<'a, K> {
    /// Added, modified, or seen again after a relist.
    Applied(&'a K),
    /// Deleted (the last state the watch saw).
    Deleted(&'a K),
}

type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send + Sync>;

/// A watched resource kind: a store plus the handlers to call on changes.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Mutex<Vec<Arc<Handler<K>>>>,
    /// True once the first list is stored. (kube's `Store::wait_until_ready` wakes only the
    /// last of several concurrent waiters, so components sharing an informer wait on this.)
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over every namespace.
    pub fn new(client: Client, config: watcher::Config) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api: Api::all(client),
            config,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: Mutex::new(Vec::new()),
            synced: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The shared cache; cheap to clone.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Calls `f` for every change seen after `start`. A handler added after the first list
    /// is first shown every object already stored.
    pub fn on_change(&self, f: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        let h: Arc<Handler<K>> = Arc::new(Box::new(f));
        self.handlers.lock().unwrap().push(h.clone());
        if *self.synced.borrow() {
            for o in self.store.state() {
                h(Change::Applied(&o));
            }
        }
    }

    /// Starts watching (once; later calls do nothing).
    pub fn start(self: &Arc<Self>) {
        let Some(mut writer) = self.writer.lock().unwrap().take() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let mut stream = watcher(this.api.clone(), this.config.clone())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                let mut ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(kind = %K::kind(&()), error = %e, "watch error");
                        continue;
                    }
                };
                // Components never read managedFields; dropping them from the cache halves
                // its memory, as upstream's controller manager and scheduler do.
                if let Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) = &mut ev {
                    o.meta_mut().managed_fields = None;
                }
                writer.apply_watcher_event(&ev);
                if matches!(ev, Event::InitDone) {
                    // Before taking the handler list: a handler added from here on replays
                    // the store itself (see `on_change`).
                    this.synced.send_replace(true);
                }
                tracing::trace!(kind = %K::kind(&()), event = ?std::mem::discriminant(&ev), "informer event");
                let handlers: Vec<_> = this.handlers.lock().unwrap().clone();
                match &ev {
                    Event::Apply(o) => handlers.iter().for_each(|h| h(Change::Applied(o))),
                    Event::Delete(o) => handlers.iter().for_each(|h| h(Change::Deleted(o))),
                    Event::InitDone => {
                        for o in this.store.state() {
                            handlers.iter().for_each(|h| h(Change::Applied(&o)));
                        }
                    }
                    Event::Init | Event::InitApply(_) => {}
                }
            }
        });
    }

    /// Waits until the first list has been stored.
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// The informers of one process, created on first use so that a process watches only the
/// kinds its components need.
pub struct Informers {
    client: Client,
    pods: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::Pod>>>,
    nodes: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::Node>>>,
    services: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::Service>>>,
    namespaces: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::Namespace>>>,
    service_accounts:
        std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::ServiceAccount>>>,
    endpoints: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::Endpoints>>>,
    endpoint_slices:
        std::sync::OnceLock<Arc<Informer<k8s_openapi::api::discovery::v1::EndpointSlice>>>,
    replica_sets: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::apps::v1::ReplicaSet>>>,
    deployments: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::apps::v1::Deployment>>>,
    stateful_sets: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::apps::v1::StatefulSet>>>,
    daemon_sets: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::apps::v1::DaemonSet>>>,
    controller_revisions:
        std::sync::OnceLock<Arc<Informer<k8s_openapi::api::apps::v1::ControllerRevision>>>,
    jobs: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::batch::v1::Job>>>,
    cron_jobs: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::batch::v1::CronJob>>>,
    persistent_volume_claims:
        std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::PersistentVolumeClaim>>>,
    leases: std::sync::OnceLock<Arc<Informer<k8s_openapi::api::coordination::v1::Lease>>>,
    replication_controllers:
        std::sync::OnceLock<Arc<Informer<k8s_openapi::api::core::v1::ReplicationController>>>,
    pod_disruption_budgets:
        std::sync::OnceLock<Arc<Informer<k8s_openapi::api::policy::v1::PodDisruptionBudget>>>,
}

macro_rules! informer_getter {
    ($name:ident, $ty:ty) => {
        pub fn $name(&self) -> Arc<Informer<$ty>> {
            self.$name
                .get_or_init(|| Informer::new(self.client.clone(), watcher::Config::default()))
                .clone()
        }
    };
}

impl Informers {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Informers {
            client,
            pods: Default::default(),
            nodes: Default::default(),
            services: Default::default(),
            namespaces: Default::default(),
            service_accounts: Default::default(),
            endpoints: Default::default(),
            endpoint_slices: Default::default(),
            replica_sets: Default::default(),
            deployments: Default::default(),
            stateful_sets: Default::default(),
            daemon_sets: Default::default(),
            controller_revisions: Default::default(),
            jobs: Default::default(),
            cron_jobs: Default::default(),
            persistent_volume_claims: Default::default(),
            leases: Default::default(),
            replication_controllers: Default::default(),
            pod_disruption_budgets: Default::default(),
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    informer_getter!(pods, k8s_openapi::api::core::v1::Pod);
    informer_getter!(nodes, k8s_openapi::api::core::v1::Node);
    informer_getter!(services, k8s_openapi::api::core::v1::Service);
    informer_getter!(namespaces, k8s_openapi::api::core::v1::Namespace);
    informer_getter!(service_accounts, k8s_openapi::api::core::v1::ServiceAccount);
    informer_getter!(endpoints, k8s_openapi::api::core::v1::Endpoints);
    informer_getter!(
        endpoint_slices,
        k8s_openapi::api::discovery::v1::EndpointSlice
    );
    informer_getter!(replica_sets, k8s_openapi::api::apps::v1::ReplicaSet);
    informer_getter!(deployments, k8s_openapi::api::apps::v1::Deployment);
    informer_getter!(stateful_sets, k8s_openapi::api::apps::v1::StatefulSet);
    informer_getter!(daemon_sets, k8s_openapi::api::apps::v1::DaemonSet);
    informer_getter!(
        controller_revisions,
        k8s_openapi::api::apps::v1::ControllerRevision
    );
    informer_getter!(jobs, k8s_openapi::api::batch::v1::Job);
    informer_getter!(cron_jobs, k8s_openapi::api::batch::v1::CronJob);
    informer_getter!(
        persistent_volume_claims,
        k8s_openapi::api::core::v1::PersistentVolumeClaim
    );
    informer_getter!(leases, k8s_openapi::api::coordination::v1::Lease);
    informer_getter!(
        replication_controllers,
        k8s_openapi::api::core::v1::ReplicationController
    );
    informer_getter!(
        pod_disruption_budgets,
        k8s_openapi::api::policy::v1::PodDisruptionBudget
    );

    /// Starts every informer created so far. Call after all components registered handlers.
    pub fn start(&self) {
        macro_rules! go {
            ($($f:ident),*) => { $( if let Some(i) = self.$f.get() { i.start(); } )* };
        }
        go!(
            pods,
            nodes,
            services,
            namespaces,
            service_accounts,
            endpoints,
            endpoint_slices,
            replica_sets,
            deployments,
            stateful_sets,
            daemon_sets,
            controller_revisions,
            jobs,
            cron_jobs,
            persistent_volume_claims,
            leases,
            replication_controllers,
            pod_disruption_budgets
        );
    }
}
