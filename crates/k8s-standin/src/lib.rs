//! Lab-only stand-ins for kubeadm, kubelet and kube-apiserver.
//!
//! A test fixture for kubeha: it behaves like the real tools on every surface
//! kubeha touches (see the crate README), so kubeha runs unchanged against it.

pub mod apiserver;
pub mod client;
pub mod config;
pub mod controllers;
pub mod health;
pub mod kubeadm;
pub mod kubelet;
pub mod pki;
pub mod preflight;
pub mod scheduler;
pub mod tls;
pub mod workload;

/// The Kubernetes version these binaries impersonate, set at build time by
/// the packaging script (`STANDIN_K8S_VERSION`), v1.31.0 by default.
pub const VERSION: &str = match option_env!("STANDIN_K8S_VERSION") {
    Some(v) => v,
    None => "v1.31.0",
};
