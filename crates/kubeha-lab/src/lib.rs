//! kubeha's lab: the machines of a cluster as local Docker containers that behave like fresh
//! cloud hosts (systemd as PID 1, OpenSSH with a per-lab key, a sudo user, no Kubernetes
//! packages), on a network of their own, with a signed apt mirror as their only package source.
//!
//! [`up`] builds (once, cached by a hash of its inputs) the node and mirror images from a Debian
//! rootfs and returns a [`Lab`] whose [`Lab::cluster_yaml`] points kubeha at it; [`down`] removes
//! everything but the images. [`Lab`] also injects faults (stop, kill, pause, disconnect, ...).

mod docker;
mod error;
mod hosts_file;
mod image;
mod lab;
mod lock;
mod render;
mod ssh;
mod topology;

pub use error::{Error, Result};
pub use image::{
    cache_dir, inputs_hash, Images, DEBIAN_SUITE, MIRROR_PACKAGES, NODE_PACKAGES,
    OPTIONAL_MIRROR_PACKAGES,
};
pub use lab::{add_host, down, replace_host, status, up, HostStatus, Lab, LabConfig};
pub use topology::{Host, Role, Sizes, Subnet, Topology};

/// The name every node and the lab machine resolve to the API endpoint (load balancer or VIP).
pub const API_ENDPOINT_NAME: &str = "load-balancer.local";
pub const API_PORT: u16 = 6443;
/// The version the lab's cluster spec asks for (the seed's).
pub const KUBERNETES_VERSION: &str = "v1.31.0";
/// The non-root user with passwordless sudo on every node.
pub const SSH_USER: &str = "kubeha";
/// The mirror's apt suite; its only component is `main`.
pub const MIRROR_SUITE: &str = "kubeha";
/// keepalived's VRRP router id for the seed-ha virtual IP.
pub const VIRTUAL_ROUTER_ID: u8 = 51;
