//! The node agent. Today it holds the simulated nodes (`sim`) used to exercise the scheduler and
//! controllers at scale; the pod lifecycle goes through [`Runtime`] so a CRI (containerd)
//! implementation can replace the simulated one without touching the sync loop.

pub mod runtime;
pub mod sim;

pub use runtime::{ContainerRun, Runtime, SandboxStatus};
