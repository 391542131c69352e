//! The controllers, one module per controller, each an API client over shared informers:
//! handlers turn changes into keys on a work queue, and a level-triggered `sync(key)` compares
//! the desired with the actual state and writes only through the API.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbage_collector;
pub mod history;
pub mod job;
pub mod merge;
pub mod nodeipam;
pub mod nodelifecycle;
mod owner_index;
mod pod_control;
pub mod podgc;
mod pods_by_node;
pub mod replicaset;
pub mod serviceaccount;
pub mod statefulset;

use std::sync::Arc;

use skiff_client::Informers;

/// Errors of one controller sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The object is not in a state the controller can act on yet.
    #[error("{0}")]
    NotReady(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// Whether an API error is a 404 or 409 (gone, or already done by someone else).
pub(crate) fn is_gone_or_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

/// Settings of the controllers, as kube-controller-manager's flags.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub node_lifecycle: nodelifecycle::Config,
    pub node_ipam: nodeipam::Range,
    pub pod_gc: podgc::Config,
}

/// Registers every controller on `informers`; call `informers.start()` afterwards.
pub fn start(informers: &Arc<Informers>, config: &Config) {
    replicaset::start(informers);
    deployment::start(informers);
    garbage_collector::start(informers);
    endpoints::start(informers);
    endpointslice::start(informers);
    serviceaccount::start(informers);
    nodeipam::start(informers, config.node_ipam);
    job::start(informers);
    statefulset::start(informers);
    daemonset::start(informers);
    cronjob::start(informers);
    nodelifecycle::start(informers, config.node_lifecycle.clone());
    disruption::start(informers);
    podgc::start(informers, config.pod_gc.clone());
}
