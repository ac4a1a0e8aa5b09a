//! The `cluster.yaml` document exactly as written, with source locations.
//!
//! Every field is optional here so that defaults and validation live in one place
//! (`validate.rs`), where each problem can point at the line and column it came from.
//! Unknown fields are rejected by serde (`deny_unknown_fields`); the loader turns that
//! error into a "did you mean" diagnostic. In tests every struct also serialises, so
//! `spec::coverage` can list the string fields and hold the hostile corpus to them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

/// A string as written in the spec, refused at parse time (with its location) when it
/// holds what no field may: see [`super::text::universal`]. Every string field of the
/// raw document has this type, so no field can skip the check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(test, derive(serde::Serialize))]
#[cfg_attr(test, serde(transparent))]
pub struct Text(String);

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        super::text::universal(&s).map_err(serde::de::Error::custom)?;
        Ok(Self(s))
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    pub api_version: Option<S<Text>>,
    pub kind: Option<S<Text>>,
    pub metadata: Option<S<Metadata>>,
    pub spec: Option<S<Spec>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: Option<S<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
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
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Availability {
    pub max_api_outage: Option<S<Text>>,
    pub min_success_ratio: Option<S<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    pub user: Option<S<Text>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<Text>>,
    pub use_agent: Option<S<bool>>,
    pub sudo: Option<S<bool>>,
    pub host_key_policy: Option<S<HostKeyPolicy>>,
    pub known_hosts_file: Option<S<Text>>,
    pub bastion: Option<S<Bastion>>,
    pub connect_timeout: Option<S<Text>>,
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
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bastion {
    pub address: Option<S<Text>>,
    pub port: Option<S<i64>>,
    pub user: Option<S<Text>>,
    pub identity_file: Option<S<Text>>,
}

/// Per-host SSH settings that override `spec.ssh`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSsh {
    pub user: Option<S<Text>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Host {
    pub name: Option<S<Text>>,
    pub address: Option<S<Text>>,
    pub internal_address: Option<S<Text>>,
    pub roles: Option<S<Vec<S<Role>>>>,
    pub ssh: Option<S<HostSsh>>,
    #[serde(default)]
    pub labels: BTreeMap<Text, S<Text>>,
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
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: Option<S<Text>>,
    pub value: Option<S<Text>>,
    pub effect: Option<S<TaintEffect>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub host: Option<S<Text>>,
    pub port: Option<S<i64>>,
    #[serde(default, rename = "extraSANs")]
    pub extra_sans: Vec<S<Text>>,
    pub manage_hosts_entry: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubernetes {
    pub version: Option<S<Text>>,
    pub pod_subnet: Option<S<Text>>,
    pub service_subnet: Option<S<Text>>,
    pub dns_domain: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Packages {
    pub containerd: Option<S<ContainerdSource>>,
    pub kubernetes_repository: Option<S<Text>>,
    pub docker_repository: Option<S<Text>>,
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
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    pub url: Option<S<Text>>,
    pub suite: Option<S<Text>>,
    #[serde(default)]
    pub components: Vec<S<Text>>,
    pub key_file: Option<S<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    pub haproxy: Option<S<Haproxy>>,
    #[serde(rename = "virtualIP")]
    pub virtual_ip: Option<S<VirtualIp>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Haproxy {
    pub health_check: Option<S<HealthCheck>>,
    pub client_timeout: Option<S<Text>>,
    pub server_timeout: Option<S<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    pub path: Option<S<Text>>,
    pub interval: Option<S<Text>>,
    pub fall: Option<S<i64>>,
    pub rise: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualIp {
    pub address: Option<S<Text>>,
    pub interface: Option<S<Text>>,
    pub virtual_router_id: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    pub calico: Option<S<Calico>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Calico {
    pub version: Option<S<Text>>,
    pub manifest: Option<S<Text>>,
    /// The manifest's SHA-256: checked before anything is applied.
    pub sha256: Option<S<Text>>,
    /// Accept a manifest over plain http without a `sha256` (with a warning).
    pub insecure: Option<S<bool>>,
}
