//! Active-passive leader election over a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection: the holder renews `renewTime`; another candidate takes the Lease over only
//! after `leaseDurationSeconds` without renewal. Writes use the Lease's resourceVersion, so two
//! candidates can never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (stable across restarts of the same process role on one
    /// host, so a restarted holder takes its Lease back at once).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    /// Upstream's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Config {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether a Lease held by someone else may be taken over at `now` (seconds).
pub fn expired(spec: &LeaseSpec, now: i64) -> bool {
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_second());
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    match renewed {
        None => true,
        Some(t) => t + duration < now,
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt to acquire or renew; Ok(true) when this candidate holds the Lease afterwards.
pub async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &Config) -> Result<bool, kube::Error> {
    let now = micro_now();
    let current = match api.get_opt(&cfg.name).await? {
        Some(l) => l,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let mut spec = current.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    if !mine && !expired(&spec, now.0.as_second()) {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(cfg.lease_duration.as_secs() as i32);
    let mut next = current.clone();
    next.spec = Some(spec);
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this candidate leads, then keeps renewing in the background. The receiver
/// turns `false` when leadership is lost (renewals failed for `renew_deadline`).
pub async fn acquire(client: Client, cfg: Config) -> watch::Receiver<bool> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    loop {
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::debug!(lease = %cfg.name, error = %e, "leader election"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(cfg.retry_period).await;
            match try_acquire_or_renew(&api, &cfg).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %cfg.name, "leadership taken by another candidate");
                    let _ = tx.send(false);
                    return;
                }
                Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "lease renewal failed"),
            }
            if last_ok.elapsed() > cfg.renew_deadline {
                tracing::error!(lease = %cfg.name, "lease not renewed within the deadline");
                let _ = tx.send(false);
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_without_renewal() {
        let t = |s: i64| MicroTime(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let spec = LeaseSpec {
            renew_time: Some(t(1000)),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(!expired(&spec, 1010));
        assert!(!expired(&spec, 1015));
        assert!(expired(&spec, 1016));
        assert!(expired(&LeaseSpec::default(), 0), "never renewed");
    }
}
