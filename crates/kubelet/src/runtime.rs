//! The container runtime seen from the kubelet's pod sync loop.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Errors from a runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime could not start the pod's sandbox or containers.
    #[error("starting pod {pod}: {message}")]
    Start { pod: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One started container.
#[derive(Clone, Debug)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub started_at: Time,
}

/// What the runtime reports for a running pod.
#[derive(Clone, Debug)]
pub struct SandboxStatus {
    /// Pod IPs, primary first (from CNI in a real runtime).
    pub ips: Vec<String>,
    pub containers: Vec<ContainerRun>,
}

/// A pod runtime for one node. `start_pod` is idempotent: a pod already running reports its
/// current state.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Ensures the pod's sandbox and containers run on `node`.
    async fn start_pod(
        &self,
        node: &str,
        pod_cidr: Option<&str>,
        pod: &Pod,
    ) -> Result<SandboxStatus>;
    /// Stops everything of the pod (by uid) and releases its resources.
    async fn stop_pod(&self, node: &str, pod_uid: &str) -> Result<()>;
}
