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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    #[schemars(with = "String", extend("const" = "kubeha.dev/v1alpha1"))]
    pub api_version: Option<S<Text>>,
    #[schemars(with = "String", extend("const" = "Cluster"))]
    pub kind: Option<S<Text>>,
    #[schemars(with = "Metadata")]
    pub metadata: Option<S<Metadata>>,
    #[schemars(with = "Spec")]
    pub spec: Option<S<Spec>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    #[schemars(with = "String")]
    pub name: Option<S<Text>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    #[schemars(with = "Option<Ssh>")]
    pub ssh: Option<S<Ssh>>,
    #[serde(default)]
    #[schemars(with = "Vec<Host>")]
    pub hosts: Vec<S<Host>>,
    #[schemars(with = "Option<ApiEndpoint>")]
    pub api_endpoint: Option<S<ApiEndpoint>>,
    #[schemars(with = "Option<Kubernetes>")]
    pub kubernetes: Option<S<Kubernetes>>,
    #[schemars(with = "Option<Packages>")]
    pub packages: Option<S<Packages>>,
    #[schemars(with = "Option<LoadBalancer>")]
    pub load_balancer: Option<S<LoadBalancer>>,
    #[schemars(with = "Option<Cni>")]
    pub cni: Option<S<Cni>>,
    #[schemars(with = "Option<Availability>")]
    pub availability: Option<S<Availability>>,
}

/// The targets `kubeha verify --disruptive` holds a failover drill to.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Availability {
    #[schemars(with = "Option<String>")]
    pub max_api_outage: Option<S<Text>>,
    #[schemars(with = "Option<f64>")]
    pub min_success_ratio: Option<S<f64>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    #[schemars(with = "Option<String>")]
    pub user: Option<S<Text>>,
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    pub port: Option<S<i64>>,
    #[schemars(with = "Option<String>")]
    pub identity_file: Option<S<Text>>,
    #[schemars(with = "Option<bool>")]
    pub use_agent: Option<S<bool>>,
    #[schemars(with = "Option<bool>")]
    pub sudo: Option<S<bool>>,
    #[schemars(with = "Option<HostKeyPolicy>")]
    pub host_key_policy: Option<S<HostKeyPolicy>>,
    #[schemars(with = "Option<String>")]
    pub known_hosts_file: Option<S<Text>>,
    #[schemars(with = "Option<Bastion>")]
    pub bastion: Option<S<Bastion>>,
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<S<Text>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum HostKeyPolicy {
    /// The host key must already be in known_hosts.
    Verify,
    /// Trust on first use: record an unknown key, refuse a changed one.
    AcceptNew,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bastion {
    #[schemars(with = "Option<String>")]
    pub address: Option<S<Text>>,
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    pub port: Option<S<i64>>,
    #[schemars(with = "Option<String>")]
    pub user: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub identity_file: Option<S<Text>>,
}

/// Per-host SSH settings that override `spec.ssh`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSsh {
    #[schemars(with = "Option<String>")]
    pub user: Option<S<Text>>,
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    pub port: Option<S<i64>>,
    #[schemars(with = "Option<String>")]
    pub identity_file: Option<S<Text>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Host {
    #[schemars(with = "String")]
    pub name: Option<S<Text>>,
    #[schemars(with = "String")]
    pub address: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub internal_address: Option<S<Text>>,
    #[schemars(with = "Vec<Role>")]
    pub roles: Option<S<Vec<S<Role>>>>,
    #[schemars(with = "Option<HostSsh>")]
    pub ssh: Option<S<HostSsh>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: BTreeMap<Text, S<Text>>,
    #[serde(default)]
    #[schemars(with = "Vec<Taint>")]
    pub taints: Vec<S<Taint>>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    LoadBalancer,
    ControlPlane,
    Worker,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    #[schemars(with = "Option<String>")]
    pub key: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub value: Option<S<Text>>,
    #[schemars(with = "Option<TaintEffect>")]
    pub effect: Option<S<TaintEffect>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiEndpoint {
    #[schemars(with = "Option<String>")]
    pub host: Option<S<Text>>,
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    pub port: Option<S<i64>>,
    #[serde(default, rename = "extraSANs")]
    #[schemars(with = "Vec<String>")]
    pub extra_sans: Vec<S<Text>>,
    #[schemars(with = "Option<bool>")]
    pub manage_hosts_entry: Option<S<bool>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubernetes {
    #[schemars(with = "Option<String>")]
    pub version: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub pod_subnet: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub service_subnet: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub dns_domain: Option<S<Text>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Packages {
    #[schemars(with = "Option<ContainerdSource>")]
    pub containerd: Option<S<ContainerdSource>>,
    #[schemars(with = "Option<String>")]
    pub kubernetes_repository: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub docker_repository: Option<S<Text>>,
    #[schemars(with = "Option<Mirror>")]
    pub mirror: Option<S<Mirror>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ContainerdSource {
    /// `containerd.io` from Docker's apt repository, as the seed does.
    Docker,
    /// `containerd` from the distribution's own archive.
    Distribution,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    #[schemars(with = "Option<String>")]
    pub url: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub suite: Option<S<Text>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub components: Vec<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub key_file: Option<S<Text>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    #[schemars(with = "Option<Haproxy>")]
    pub haproxy: Option<S<Haproxy>>,
    #[serde(rename = "virtualIP")]
    #[schemars(with = "Option<VirtualIp>")]
    pub virtual_ip: Option<S<VirtualIp>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Haproxy {
    #[schemars(with = "Option<HealthCheck>")]
    pub health_check: Option<S<HealthCheck>>,
    #[schemars(with = "Option<String>")]
    pub client_timeout: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub server_timeout: Option<S<Text>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    #[schemars(with = "Option<String>")]
    pub path: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub interval: Option<S<Text>>,
    #[schemars(with = "Option<i64>")]
    pub fall: Option<S<i64>>,
    #[schemars(with = "Option<i64>")]
    pub rise: Option<S<i64>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualIp {
    #[schemars(with = "Option<String>")]
    pub address: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub interface: Option<S<Text>>,
    #[schemars(with = "Option<i64>")]
    pub virtual_router_id: Option<S<i64>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    #[schemars(with = "Option<Calico>")]
    pub calico: Option<S<Calico>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Calico {
    #[schemars(with = "Option<String>")]
    pub version: Option<S<Text>>,
    #[schemars(with = "Option<String>")]
    pub manifest: Option<S<Text>>,
    /// The manifest's SHA-256: checked before anything is applied.
    #[schemars(with = "Option<String>")]
    pub sha256: Option<S<Text>>,
    /// Accept a manifest over plain http without a `sha256` (with a warning).
    #[schemars(with = "Option<bool>")]
    pub insecure: Option<S<bool>>,
}
