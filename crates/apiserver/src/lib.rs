//! skiff's Kubernetes API server.
//!
//! HTTPS only (rustls), client-certificate and bearer-token authentication, one authorizer
//! interface, a generic registry that serves every resource from one code path plus a small
//! strategy per resource, a watch cache that serves lists and watches from memory, and
//! discovery as kubectl 1.27-1.33 expects it.

pub mod auth;
pub mod certs;
pub mod crd_controller;
pub mod discovery;
pub mod field_validation;
pub mod http;
pub mod metrics;
pub mod namespace_finalizer;
pub mod openapi;
pub mod registry;
pub mod request;
pub mod server;
pub mod watchcache;

pub use server::{Config, ServerHandle, StoreConfig};

/// The Kubernetes version skiff speaks.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";
pub const KUBE_GIT_VERSION: &str = "v1.33.0-skiff";

/// Parse a Service CIDR such as `10.43.0.0/16`.
pub fn parse_service_cidr(s: &str) -> Result<ipnet::Ipv4Net, String> {
    let net: ipnet::Ipv4Net = s
        .parse()
        .map_err(|e| format!("invalid service CIDR {s:?}: {e}"))?;
    if net.prefix_len() > 30 {
        return Err(format!("service CIDR {s:?} is too small"));
    }
    Ok(net.trunc())
}
