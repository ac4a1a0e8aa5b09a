//! The `cluster.yaml` document exactly as written, with source locations.
//!
//! Every field is optional here so that defaults and validation live in one place
//! (`validate.rs`), where each problem can point at the line and column it came from.
//! Unknown fields are rejected by serde (`deny_unknown_fields`); the loader turns that
//! error into a "did you mean" diagnostic.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    pub api_version: Option<S<String>>,
    pub kind: Option<S<String>>,
    pub metadata: Option<S<Metadata>>,
    pub spec: Option<S<Spec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub ssh: Option<S<Ssh>>,
    #[serde(default)]
    pub hosts: Vec<S<Host>>,
    pub api_endpoint: Option<S<ApiEndpoint>>,
    pub kubernetes: Option<S<Kubernetes>>,
    pub packages: Option<S<Packages>>,
    pub load_balancer: Option<S<LoadBalancer>>,
    pub cni: Option<S<Cni>>,
    pub availability: Option<S<Availability>>,
}

/// The targets `kubeha verify --disruptive` holds a failover drill to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Availability {
    pub max_api_outage: Option<S<String>>,
    pub min_success_ratio: Option<S<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    pub user: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<String>>,
    pub use_agent: Option<S<bool>>,
    pub sudo: Option<S<bool>>,
    pub host_key_policy: Option<S<HostKeyPolicy>>,
    pub known_hosts_file: Option<S<String>>,
    pub bastion: Option<S<Bastion>>,
    pub connect_timeout: Option<S<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HostKeyPolicy {
    /// The host key must already be in known_hosts.
    Verify,
    /// Trust on first use: record an unknown key, refuse a changed one.
    AcceptNew,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bastion {
    pub address: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub user: Option<S<String>>,
    pub identity_file: Option<S<String>>,
}

/// Per-host SSH settings that override `spec.ssh`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSsh {
    pub user: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Host {
    pub name: Option<S<String>>,
    pub address: Option<S<String>>,
    pub internal_address: Option<S<String>>,
    pub roles: Option<S<Vec<S<Role>>>>,
    pub ssh: Option<S<HostSsh>>,
    #[serde(default)]
    pub labels: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub taints: Vec<S<Taint>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    LoadBalancer,
    ControlPlane,
    Worker,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: Option<S<String>>,
    pub value: Option<S<String>>,
    pub effect: Option<S<TaintEffect>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
    #[serde(default, rename = "extraSANs")]
    pub extra_sans: Vec<S<String>>,
    pub manage_hosts_entry: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubernetes {
    pub version: Option<S<String>>,
    pub pod_subnet: Option<S<String>>,
    pub service_subnet: Option<S<String>>,
    pub dns_domain: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Packages {
    pub containerd: Option<S<ContainerdSource>>,
    pub kubernetes_repository: Option<S<String>>,
    pub docker_repository: Option<S<String>>,
    pub mirror: Option<S<Mirror>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerdSource {
    /// `containerd.io` from Docker's apt repository, as the seed does.
    Docker,
    /// `containerd` from the distribution's own archive.
    Distribution,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    pub url: Option<S<String>>,
    pub suite: Option<S<String>>,
    #[serde(default)]
    pub components: Vec<S<String>>,
    pub key_file: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    pub haproxy: Option<S<Haproxy>>,
    #[serde(rename = "virtualIP")]
    pub virtual_ip: Option<S<VirtualIp>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Haproxy {
    pub health_check: Option<S<HealthCheck>>,
    pub client_timeout: Option<S<String>>,
    pub server_timeout: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    pub path: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub fall: Option<S<i64>>,
    pub rise: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualIp {
    pub address: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub virtual_router_id: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    pub calico: Option<S<Calico>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Calico {
    pub version: Option<S<String>>,
    pub manifest: Option<S<String>>,
}
