//! The validated cluster: every default applied, every value typed.
//!
//! Renderers and (later) the planner only ever see this model, never the raw document,
//! so they cannot forget a default or meet an unchecked value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

pub use super::raw::{ContainerdSource, HostKeyPolicy, Role, TaintEffect};

pub const API_VERSION: &str = "kubeha.dev/v1alpha1";
pub const KIND: &str = "Cluster";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub name: String,
    pub ssh: SshDefaults,
    pub hosts: Vec<Host>,
    pub api_endpoint: ApiEndpoint,
    pub kubernetes: Kubernetes,
    pub packages: Packages,
    pub load_balancer: LoadBalancer,
    pub calico: Calico,
    pub availability: Availability,
}

/// What a failover drill must show: the longest API outage and the share of requests
/// that succeed while one control plane (or the active load balancer) is out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    #[serde(with = "humantime_serde_str")]
    pub max_api_outage: Duration,
    /// Share of requests that must succeed during a drill; unset, only the outage counts
    /// (the share depends on how long the drill runs).
    pub min_success_ratio: Option<f64>,
}

impl Cluster {
    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.has(role))
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &Host> {
        self.hosts_with(Role::ControlPlane)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts_with(Role::Worker)
    }

    pub fn load_balancers(&self) -> impl Iterator<Item = &Host> {
        self.hosts_with(Role::LoadBalancer)
    }

    /// The control plane that runs `kubeadm init`: the first one listed.
    pub fn first_control_plane(&self) -> &Host {
        self.control_planes()
            .next()
            .expect("validation guarantees at least one control plane")
    }

    /// Hosts that become Kubernetes nodes (control planes and workers).
    pub fn kube_nodes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_kube_node())
    }

    /// Control planes stay tainted unless nothing else could run workloads.
    pub fn control_planes_schedulable(&self) -> bool {
        self.workers().next().is_none()
    }

    /// The address that `apiEndpoint.host` should resolve to on every node, when
    /// kubeha manages that mapping: the VIP, or the only load balancer.
    pub fn endpoint_target(&self) -> Option<IpAddr> {
        if let EndpointHost::Ip(_) = self.api_endpoint.host {
            return None;
        }
        if let Some(vip) = &self.load_balancer.virtual_ip {
            return Some(vip.address);
        }
        let mut lbs = self.load_balancers();
        match (lbs.next(), lbs.next()) {
            (Some(lb), None) => Some(lb.node_ip()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshDefaults {
    pub use_agent: bool,
    pub host_key_policy: HostKeyPolicy,
    pub known_hosts_file: PathBuf,
    pub bastion: Option<Bastion>,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bastion {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
}

/// How to reach one host: `spec.ssh` merged with the host's own overrides.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshTarget {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub sudo: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    pub address: IpAddr,
    pub internal_address: Option<IpAddr>,
    pub roles: BTreeSet<Role>,
    pub ssh: SshTarget,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl Host {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_kube_node(&self) -> bool {
        self.has(Role::ControlPlane) || self.has(Role::Worker)
    }

    /// The address cluster traffic uses: the internal one when given.
    pub fn node_ip(&self) -> IpAddr {
        self.internal_address.unwrap_or(self.address)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EndpointHost {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for EndpointHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            EndpointHost::Ip(ip) => write!(f, "{ip}"),
            EndpointHost::Name(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub host: EndpointHost,
    pub port: u16,
    #[serde(rename = "extraSANs")]
    pub extra_sans: Vec<String>,
    pub manage_hosts_entry: bool,
}

impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An address as written in a URL or `host:port`: IPv6 in brackets.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// The port every kube-apiserver listens on; HAProxy forwards the endpoint to it.
pub const APISERVER_PORT: u16 = 6443;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// Minor versions kubeha knows how to install (kubeadm config API v1beta4 needs 1.31+).
pub const SUPPORTED_MINORS: [u32; 2] = [31, 32];

impl KubernetesVersion {
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix('v').unwrap_or(text);
        let mut parts = rest.split('.');
        let mut next = || -> Option<u32> {
            let part = parts.next()?;
            // Reject "+1", "01" and the like: versions are plain decimal numbers.
            if part.is_empty()
                || !part.bytes().all(|b| b.is_ascii_digit())
                || (part.len() > 1 && part.starts_with('0'))
            {
                return None;
            }
            part.parse().ok()
        };
        let version = Self {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        parts.next().is_none().then_some(version)
    }

    pub fn is_supported(&self) -> bool {
        self.major == 1 && SUPPORTED_MINORS.contains(&self.minor)
    }

    /// `v1.31`: the pkgs.k8s.io repository path segment.
    pub fn minor_tag(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }

    /// The Debian package version pkgs.k8s.io publishes for this release.
    pub fn deb_version(&self) -> String {
        format!("{}.{}.{}-1.1", self.major, self.minor, self.patch)
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for KubernetesVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kubernetes {
    pub version: KubernetesVersion,
    pub pod_subnet: IpNet,
    pub service_subnet: IpNet,
    pub dns_domain: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Packages {
    pub containerd: ContainerdSource,
    /// pkgs.k8s.io (or an override) for this Kubernetes minor.
    pub kubernetes_repository: String,
    /// Docker's apt repository root, without the distribution path.
    pub docker_repository: String,
    /// When set, the only apt source kubeha configures for its packages.
    pub mirror: Option<Mirror>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub health_check: HealthCheck,
    #[serde(with = "humantime_serde_str")]
    pub client_timeout: Duration,
    #[serde(with = "humantime_serde_str")]
    pub server_timeout: Duration,
    #[serde(rename = "virtualIP")]
    pub virtual_ip: Option<VirtualIp>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub path: String,
    #[serde(with = "humantime_serde_str")]
    pub interval: Duration,
    pub fall: u32,
    pub rise: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualIp {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    pub virtual_router_id: u8,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Calico {
    pub version: String,
    pub manifest: ManifestSource,
    /// When set, the manifest's bytes must hash to this (64 lowercase hex digits).
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ManifestSource {
    Url(String),
    File(PathBuf),
}

/// Durations print as "2s" / "5m" in JSON, as they are written in the spec.
mod humantime_serde_str {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        let v = KubernetesVersion::parse("v1.31.0").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 31, 0));
        assert_eq!(v.to_string(), "v1.31.0");
        assert_eq!(v.deb_version(), "1.31.0-1.1");
        assert_eq!(v.minor_tag(), "v1.31");
        assert_eq!(KubernetesVersion::parse("1.32.4").unwrap().patch, 4);
        for bad in [
            "v1.31",
            "v1.31.0.1",
            "v1.31.x",
            "v1.031.0",
            "",
            "v1..0",
            "v1.31.+1",
        ] {
            assert!(
                KubernetesVersion::parse(bad).is_none(),
                "{bad} should not parse"
            );
        }
    }

    #[test]
    fn only_known_minors_are_supported() {
        assert!(KubernetesVersion::parse("v1.31.7").unwrap().is_supported());
        assert!(KubernetesVersion::parse("v1.32.0").unwrap().is_supported());
        assert!(!KubernetesVersion::parse("v1.30.5").unwrap().is_supported());
        assert!(!KubernetesVersion::parse("v2.31.0").unwrap().is_supported());
    }

    #[test]
    fn ipv6_endpoint_is_bracketed() {
        let host = EndpointHost::Ip("fd00::1".parse().unwrap());
        assert_eq!(host.to_string(), "[fd00::1]");
    }
}
