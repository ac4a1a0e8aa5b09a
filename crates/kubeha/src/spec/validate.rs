//! Raw document → validated [`Cluster`]: defaults, types and cross-field rules.
//!
//! Validation never stops at the first problem: it reports everything it can find, so a
//! user fixes a spec in one pass. Defaults reproduce the seed's runbook.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::diagnostic::{did_you_mean, Diagnostic, Position};
use super::model::*;
use super::raw::{self, Text, S};
use super::text::{self as rules, UrlUse};

/// Where relative paths and `~` in the spec resolve.
#[derive(Debug, Clone)]
pub struct PathContext {
    pub spec_dir: PathBuf,
    pub home: Option<PathBuf>,
}

impl PathContext {
    pub fn resolve(&self, text: &str) -> PathBuf {
        if let (Some(rest), Some(home)) = (text.strip_prefix("~/"), &self.home) {
            return home.join(rest);
        }
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.spec_dir.join(path)
        }
    }
}

pub const DEFAULT_ENDPOINT_HOST: &str = "load-balancer.local";
pub const DEFAULT_POD_SUBNET: &str = "192.168.0.0/16";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.31.0";
pub const DEFAULT_CALICO_VERSION: &str = "v3.28.1";
pub const DEFAULT_DOCKER_REPOSITORY: &str = "https://download.docker.com/linux";

pub fn default_kubernetes_repository(version: &KubernetesVersion) -> String {
    format!(
        "https://pkgs.k8s.io/core:/stable:/{}/deb/",
        version.minor_tag()
    )
}

pub fn default_calico_manifest(version: &str) -> String {
    format!(
        "https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/calico.yaml"
    )
}

/// Validation result: the model plus warnings, or every diagnostic when any is an error.
pub fn validate(
    doc: &raw::Document,
    paths: &PathContext,
) -> Result<(Cluster, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut v = Validator {
        diags: Vec::new(),
        paths,
    };
    let cluster = v.document(doc);
    if v.diags.iter().any(|d| d.severity == super::Severity::Error) {
        Err(v.diags)
    } else {
        Ok((
            cluster.expect("a document without errors yields a cluster"),
            v.diags,
        ))
    }
}

fn pos<T>(s: &S<T>) -> Option<Position> {
    Position::from_location(&s.referenced)
}

fn opt_pos<T>(s: &Option<S<T>>) -> Option<Position> {
    s.as_ref().and_then(pos)
}

/// SSH settings a host inherits from `spec.ssh` unless it overrides them.
struct HostSshDefaults {
    user: String,
    port: u16,
    identity_file: Option<PathBuf>,
    sudo: Option<bool>,
}

struct Validator<'a> {
    diags: Vec<Diagnostic>,
    paths: &'a PathContext,
}

impl Validator<'_> {
    fn error(&mut self, at: Option<Position>, msg: impl Into<String>, help: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(at, msg).with_help(help.into()));
    }

    fn warn(&mut self, at: Option<Position>, msg: impl Into<String>, help: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(at, msg).with_help(help.into()));
    }

    fn document(&mut self, doc: &raw::Document) -> Option<Cluster> {
        match &doc.api_version {
            None => self.error(
                None,
                "missing `apiVersion`",
                format!("start the file with `apiVersion: {API_VERSION}`"),
            ),
            Some(v) if v.value != API_VERSION => self.error(
                pos(v),
                format!("unsupported apiVersion `{}`", v.value),
                format!("this kubeha reads `apiVersion: {API_VERSION}`"),
            ),
            Some(_) => {}
        }
        match &doc.kind {
            None => self.error(None, "missing `kind`", format!("add `kind: {KIND}`")),
            Some(k) if k.value != KIND => self.error(
                pos(k),
                format!("unsupported kind `{}`", k.value),
                format!("the only kind is `{KIND}`"),
            ),
            Some(_) => {}
        }
        let name = self.cluster_name(doc);
        let Some(spec) = &doc.spec else {
            self.error(
                None,
                "missing `spec`",
                "describe the hosts under `spec.hosts` (run `kubeha init` for a starter file)",
            );
            return None;
        };
        let spec = &spec.value;

        let (ssh, host_ssh) = self.ssh_defaults(spec.ssh.as_ref());
        let kubernetes = self.kubernetes(spec.kubernetes.as_ref());
        let hosts = self.hosts(
            spec,
            doc.spec.as_ref().and_then(pos),
            &host_ssh,
            kubernetes.as_ref(),
        );
        let api_endpoint = self.api_endpoint(spec.api_endpoint.as_ref(), spec);
        let packages = kubernetes
            .as_ref()
            .and_then(|k| self.packages(spec.packages.as_ref(), &k.version));
        let load_balancer = self.load_balancer(spec.load_balancer.as_ref(), &hosts, &api_endpoint);
        let calico = self.calico(spec.cni.as_ref());
        let availability = self.availability(spec.availability.as_ref());

        Some(Cluster {
            name: name?,
            ssh: ssh?,
            hosts,
            api_endpoint: api_endpoint?,
            kubernetes: kubernetes?,
            packages: packages?,
            load_balancer: load_balancer?,
            calico: calico?,
            availability: availability?,
        })
    }

    fn cluster_name(&mut self, doc: &raw::Document) -> Option<String> {
        let Some(name) = doc.metadata.as_ref().and_then(|m| m.value.name.as_ref()) else {
            self.error(
                opt_pos(&doc.metadata),
                "missing `metadata.name`",
                "name the cluster, e.g. `metadata: {name: prod}`; it becomes kubeadm's clusterName",
            );
            return None;
        };
        if !rules::is_dns_label(&name.value) {
            self.error(
                pos(name),
                format!("cluster name `{}` is not a valid DNS label", name.value),
                "use lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit",
            );
            return None;
        }
        Some(name.value.to_string())
    }

    /// Cluster-wide SSH settings, and the per-host defaults hosts inherit (validated once
    /// here, so a bad default is reported once rather than for every host).
    fn ssh_defaults(
        &mut self,
        ssh: Option<&S<raw::Ssh>>,
    ) -> (Option<SshDefaults>, HostSshDefaults) {
        let default = raw::Ssh::default();
        let ssh = ssh.map_or(&default, |s| &s.value);
        let user = match &ssh.user {
            Some(u) => self.ssh_user(u).unwrap_or_default(),
            None => "root".to_string(),
        };
        let host_defaults = HostSshDefaults {
            port: self.port(ssh.port.as_ref(), 22).unwrap_or(22),
            identity_file: ssh
                .identity_file
                .as_ref()
                .and_then(|f| self.existing_file(f, "identity file")),
            sudo: ssh.sudo.as_ref().map(|s| s.value),
            user,
        };
        (self.ssh_settings(ssh), host_defaults)
    }

    fn ssh_settings(&mut self, ssh: &raw::Ssh) -> Option<SshDefaults> {
        let known_hosts_file = match &ssh.known_hosts_file {
            Some(f) => self.existing_file(f, "known_hosts file")?,
            None => self.paths.resolve("~/.ssh/known_hosts"),
        };
        let bastion = match &ssh.bastion {
            None => None,
            Some(b) => Some(self.bastion(b)?),
        };
        let connect_timeout = match &ssh.connect_timeout {
            Some(t) => self.duration(t)?,
            None => Duration::from_secs(10),
        };
        Some(SshDefaults {
            use_agent: ssh.use_agent.as_ref().is_none_or(|a| a.value),
            host_key_policy: ssh
                .host_key_policy
                .as_ref()
                .map_or(HostKeyPolicy::Verify, |p| p.value),
            known_hosts_file,
            bastion,
            connect_timeout,
        })
    }

    fn bastion(&mut self, b: &S<raw::Bastion>) -> Option<Bastion> {
        let Some(address) = &b.value.address else {
            self.error(
                pos(b),
                "bastion needs an `address`",
                "the jump host's name or IP, reachable from this machine",
            );
            return None;
        };
        if address.value.parse::<IpAddr>().is_err() && !rules::is_hostname(&address.value) {
            self.error(
                pos(address),
                format!(
                    "bastion address `{}` is neither an IP address nor a host name",
                    address.value
                ),
                "write the jump host's DNS name or IP address, without a user or port",
            );
            return None;
        }
        Some(Bastion {
            address: address.value.to_string(),
            port: self.port(b.value.port.as_ref(), 22)?,
            user: match &b.value.user {
                Some(u) => self.ssh_user(u)?,
                None => "root".into(),
            },
            identity_file: match &b.value.identity_file {
                Some(f) => Some(self.existing_file(f, "identity file")?),
                None => None,
            },
        })
    }

    fn kubernetes(&mut self, k: Option<&S<raw::Kubernetes>>) -> Option<Kubernetes> {
        let (version, pod, service, domain) = match k {
            Some(k) => (
                k.value.version.as_ref(),
                k.value.pod_subnet.as_ref(),
                k.value.service_subnet.as_ref(),
                k.value.dns_domain.as_ref(),
            ),
            None => (None, None, None, None),
        };
        let version = match version {
            None => KubernetesVersion::parse(DEFAULT_KUBERNETES_VERSION),
            Some(v) => match KubernetesVersion::parse(&v.value) {
                None => {
                    self.error(
                        pos(v),
                        format!("`{}` is not a Kubernetes version", v.value),
                        "write a full release such as `v1.31.0`",
                    );
                    None
                }
                Some(parsed) if !parsed.is_supported() => {
                    let known = SUPPORTED_MINORS.map(|m| format!("v1.{m}.x")).join(", ");
                    self.error(
                        pos(v),
                        format!("Kubernetes {parsed} is not supported"),
                        format!("kubeha installs {known} (kubeadm config API v1beta4)"),
                    );
                    None
                }
                parsed => parsed,
            },
        };
        let pod_subnet = self.subnet(pod, DEFAULT_POD_SUBNET, "pod subnet");
        let service_subnet = self.subnet(service, DEFAULT_SERVICE_SUBNET, "service subnet");
        if let (Some(p), Some(s)) = (pod_subnet, service_subnet) {
            if subnets_overlap(&p, &s) {
                self.error(
                    pod.and_then(pos).or(service.and_then(pos)),
                    format!("pod subnet {p} overlaps service subnet {s}"),
                    "pods and services need disjoint ranges, e.g. 192.168.0.0/16 and 10.96.0.0/12",
                );
            }
        }
        if let (Some(IpNet::V4(s)), Some(at)) = (service_subnet, service) {
            // kube-apiserver refuses IPv4 service ranges with more than 20 host bits.
            if s.prefix_len() < 12 {
                self.error(
                    pos(at),
                    format!("service subnet {s} is too large"),
                    "kube-apiserver accepts at most a /12 for IPv4 services",
                );
            }
        }
        let dns_domain = match domain {
            None => DEFAULT_DNS_DOMAIN.to_string(),
            Some(d) if rules::is_dns_subdomain(&d.value) => d.value.to_string(),
            Some(d) => {
                self.error(
                    pos(d),
                    format!("`{}` is not a valid DNS domain", d.value),
                    "use dot-separated DNS labels such as `cluster.local`",
                );
                return None;
            }
        };
        Some(Kubernetes {
            version: version?,
            pod_subnet: pod_subnet?,
            service_subnet: service_subnet?,
            dns_domain,
        })
    }

    fn subnet(&mut self, value: Option<&S<Text>>, default: &str, what: &str) -> Option<IpNet> {
        let Some(value) = value else {
            return default.parse().ok();
        };
        match value.value.parse::<IpNet>() {
            Ok(net) if net.network() != net.addr() => {
                self.error(
                    pos(value),
                    format!("{what} `{}` has host bits set", value.value),
                    format!("did you mean `{}`?", net.trunc()),
                );
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                self.error(
                    pos(value),
                    format!("{what} `{}` is not a CIDR", value.value),
                    "write a network in CIDR notation, e.g. `10.96.0.0/12`",
                );
                None
            }
        }
    }

    fn hosts(
        &mut self,
        spec: &raw::Spec,
        spec_pos: Option<Position>,
        ssh: &HostSshDefaults,
        kubernetes: Option<&Kubernetes>,
    ) -> Vec<Host> {
        let mut names: HashMap<String, Option<Position>> = HashMap::new();
        let mut addresses: HashMap<IpAddr, String> = HashMap::new();
        let mut hosts = Vec::new();
        for entry in &spec.hosts {
            let Some(host) = self.host(entry, ssh) else {
                continue;
            };
            if let Some(first) = names.insert(host.name.clone(), opt_pos(&entry.value.name)) {
                let line = first.map_or(String::new(), |p| format!(" on line {}", p.line));
                self.error(
                    opt_pos(&entry.value.name),
                    format!("duplicate host name `{}`", host.name),
                    format!("it is already used{line}; every host needs its own name"),
                );
            }
            for (ip, field) in [
                (Some(host.address), &entry.value.address),
                (host.internal_address, &entry.value.internal_address),
            ] {
                let Some(ip) = ip else { continue };
                match addresses.get(&ip) {
                    Some(other) if *other != host.name => self.error(
                        opt_pos(field),
                        format!(
                            "address {ip} of `{}` is already used by `{other}`",
                            host.name
                        ),
                        "each host needs its own address",
                    ),
                    _ => {
                        addresses.insert(ip, host.name.clone());
                    }
                }
            }
            if let Some(k) = kubernetes {
                for (net, what) in [(&k.pod_subnet, "pod"), (&k.service_subnet, "service")] {
                    if net.contains(&host.node_ip()) || net.contains(&host.address) {
                        self.error(
                            opt_pos(&entry.value.address),
                            format!(
                                "host `{}` ({}) is inside the {what} subnet {net}",
                                host.name, host.address
                            ),
                            format!(
                                "choose a {what} subnet that does not overlap the hosts' network"
                            ),
                        );
                    }
                }
            }
            hosts.push(host);
        }
        // Count roles as written, so a host skipped for another error still counts.
        let count = |role| {
            spec.hosts
                .iter()
                .filter(|h| {
                    h.value
                        .roles
                        .as_ref()
                        .is_some_and(|r| r.value.iter().any(|r| r.value == role))
                })
                .count()
        };
        let control_planes = count(Role::ControlPlane);
        // Role warnings point at the first host that has the role.
        let first_with = |role| {
            spec.hosts
                .iter()
                .find(|h| {
                    h.value
                        .roles
                        .as_ref()
                        .is_some_and(|r| r.value.iter().any(|r| r.value == role))
                })
                .and_then(|h| h.value.name.as_ref())
                .and_then(pos)
        };
        if spec.hosts.is_empty() {
            self.error(
                spec_pos,
                "no hosts",
                "list the machines under `spec.hosts` with their roles",
            );
        } else if control_planes == 0 {
            self.error(
                pos(&spec.hosts[0]),
                "no host has the `controlPlane` role",
                "a cluster needs at least one control plane; three tolerate the loss of one",
            );
        } else if control_planes > 0 && (control_planes < 3 || control_planes % 2 == 0) {
            let tolerated = (control_planes - 1) / 2;
            self.warn(
                first_with(Role::ControlPlane),
                format!(
                    "{control_planes} control plane(s): etcd tolerates {tolerated} failure(s)"
                ),
                "use an odd number of at least three control planes (3 tolerate 1 failure, 5 tolerate 2)",
            );
        }
        if count(Role::Worker) == 0 && control_planes > 0 {
            self.warn(
                first_with(Role::ControlPlane),
                "no workers: workloads will run on the control planes",
                "kubeha leaves the control planes untainted; add hosts with the `worker` role to keep them apart",
            );
        }
        hosts
    }

    fn host(&mut self, entry: &S<raw::Host>, ssh: &HostSshDefaults) -> Option<Host> {
        let h = &entry.value;
        let Some(name) = &h.name else {
            self.error(
                pos(entry),
                "host without a `name`",
                "give every host a unique name",
            );
            return None;
        };
        if !rules::is_dns_subdomain(&name.value) {
            self.error(
                pos(name),
                format!("host name `{}` is not a valid node name", name.value),
                "node names are lowercase DNS names: letters, digits, '-' and '.'",
            );
        }
        let Some(address_field) = &h.address else {
            self.error(
                pos(name),
                format!("host `{}` has no `address`", name.value),
                "give the IP address kubeha connects to over SSH",
            );
            return None;
        };
        let address = self.ip(address_field)?;
        let internal_address = match &h.internal_address {
            Some(a) => Some(self.ip(a)?),
            None => None,
        };
        let roles: BTreeSet<Role> = h
            .roles
            .as_ref()
            .map(|r| r.value.iter().map(|r| r.value).collect())
            .unwrap_or_default();
        if roles.is_empty() {
            self.error(
                opt_pos(&h.roles).or(pos(name)),
                format!("host `{}` has no role", name.value),
                "add `roles:` with one or more of loadBalancer, controlPlane, worker",
            );
        }
        let host_ssh = h.ssh.as_ref().map(|s| &s.value);
        let user = match host_ssh.and_then(|s| s.user.as_ref()) {
            Some(u) => self.ssh_user(u)?,
            None => ssh.user.clone(),
        };
        let identity_file = match host_ssh.and_then(|s| s.identity_file.as_ref()) {
            Some(f) => Some(self.existing_file(f, "identity file")?),
            None => ssh.identity_file.clone(),
        };
        let port = match host_ssh.and_then(|s| s.port.as_ref()) {
            Some(p) => self.port(Some(p), 22)?,
            None => ssh.port,
        };
        let sudo = ssh.sudo.unwrap_or(user != "root");
        let labels = self.labels(&h.labels);
        let taints = h.taints.iter().filter_map(|t| self.taint(t)).collect();
        Some(Host {
            name: name.value.to_string(),
            address,
            internal_address,
            roles,
            ssh: SshTarget {
                user,
                port,
                identity_file,
                sudo,
            },
            labels,
            taints,
        })
    }

    fn labels(&mut self, labels: &BTreeMap<Text, S<Text>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in labels {
            let prefix = key.rsplit_once('/').map(|(p, _)| p);
            let restricted = prefix.is_some_and(|p| {
                (p.ends_with("kubernetes.io") || p.ends_with("k8s.io"))
                    && !matches!(p, "kubelet.kubernetes.io" | "node.kubernetes.io")
                    && !p.ends_with(".kubelet.kubernetes.io")
                    && !p.ends_with(".node.kubernetes.io")
            });
            if restricted {
                self.error(
                    pos(value),
                    format!("kubelet may not set the label `{key}`"),
                    "the NodeRestriction admission plugin reserves kubernetes.io and k8s.io prefixes; use your own prefix such as `example.com/role`",
                );
            } else if !rules::is_label_key(key) || !rules::is_label_value(&value.value) {
                self.error(
                    pos(value),
                    format!("`{key}: {}` is not a valid Kubernetes label", value.value),
                    "keys are [prefix/]name and values at most 63 characters of letters, digits, '-', '_' and '.'",
                );
            } else {
                out.insert(key.to_string(), value.value.to_string());
            }
        }
        out
    }

    fn taint(&mut self, t: &S<raw::Taint>) -> Option<Taint> {
        let (Some(key), Some(effect)) = (&t.value.key, &t.value.effect) else {
            self.error(
                pos(t),
                "a taint needs a `key` and an `effect`",
                "e.g. `{key: dedicated, value: gpu, effect: NoSchedule}`",
            );
            return None;
        };
        if !rules::is_label_key(&key.value) {
            self.error(
                pos(key),
                format!("taint key `{}` is not valid", key.value),
                "taint keys follow the label key syntax: [prefix/]name",
            );
            return None;
        }
        if let Some(value) = t
            .value
            .value
            .as_ref()
            .filter(|v| !rules::is_label_value(&v.value))
        {
            self.error(
                pos(value),
                format!("taint value `{}` is not valid", value.value),
                "taint values follow the label value syntax: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            );
            return None;
        }
        Some(Taint {
            key: key.value.to_string(),
            value: t.value.value.as_ref().map(|v| v.value.to_string()),
            effect: effect.value,
        })
    }

    fn api_endpoint(
        &mut self,
        e: Option<&S<raw::ApiEndpoint>>,
        spec: &raw::Spec,
    ) -> Option<ApiEndpoint> {
        let raw_host = e.and_then(|e| e.value.host.as_ref());
        let host = match raw_host {
            None => EndpointHost::Name(DEFAULT_ENDPOINT_HOST.into()),
            Some(h) => match h.value.parse::<IpAddr>() {
                Ok(ip) => EndpointHost::Ip(ip),
                Err(_) if rules::is_dns_subdomain(&h.value) => {
                    EndpointHost::Name(h.value.to_string())
                }
                Err(_) => {
                    self.error(
                        pos(h),
                        format!("endpoint host `{}` is neither an IP address nor a DNS name", h.value),
                        "write the load balancer's DNS name or virtual IP, without a port or scheme",
                    );
                    return None;
                }
            },
        };
        let port = self.port(e.and_then(|e| e.value.port.as_ref()), APISERVER_PORT)?;
        let port_field = e.and_then(|e| e.value.port.as_ref());
        let stacked = spec.hosts.iter().find_map(|h| {
            let roles = h.value.roles.as_ref()?;
            let has = |role| roles.value.iter().any(|r| r.value == role);
            (has(Role::LoadBalancer) && has(Role::ControlPlane)).then_some((&h.value, roles))
        });
        if let (Some((h, roles)), true) = (stacked, port == APISERVER_PORT) {
            let name = h.name.as_ref().map_or("?", |n| &*n.value);
            self.error(
                port_field.and_then(pos).or(pos(roles)),
                format!(
                    "`{name}` runs both HAProxy and kube-apiserver, which cannot both bind port {APISERVER_PORT}"
                ),
                "set `apiEndpoint.port` to another port such as 8443",
            );
        }
        let mut extra_sans = Vec::new();
        for san in e.map(|e| e.value.extra_sans.as_slice()).unwrap_or_default() {
            if san.value.parse::<IpAddr>().is_ok() || rules::is_dns_subdomain(&san.value) {
                extra_sans.push(san.value.to_string());
            } else {
                self.error(
                    pos(san),
                    format!("`{}` is not an IP address or DNS name", san.value),
                    "certificate SANs are bare names or addresses",
                );
            }
        }
        let manage = e.and_then(|e| e.value.manage_hosts_entry.as_ref());
        if let (EndpointHost::Name(name), Some(m)) = (&host, manage) {
            if !m.value {
                // `check` cannot see the nodes: `plan` tells which of them do not resolve it.
                self.warn(
                    pos(m),
                    format!("`apiEndpoint.manageHostsEntry` is off: every node must resolve `{name}` through DNS"),
                    "`kubeha plan` checks each node and warns where it does not; leave it on to let kubeha map it",
                );
            }
        }
        Some(ApiEndpoint {
            host,
            port,
            extra_sans,
            manage_hosts_entry: manage.is_none_or(|m| m.value),
        })
    }

    fn packages(
        &mut self,
        p: Option<&S<raw::Packages>>,
        version: &KubernetesVersion,
    ) -> Option<Packages> {
        let p = p.map(|p| &p.value);
        let url = |this: &mut Self, field: Option<&S<Text>>, default: String| match field {
            None => Some(default),
            Some(u) => this.repository_url(u),
        };
        let kubernetes_repository = url(
            self,
            p.and_then(|p| p.kubernetes_repository.as_ref()),
            default_kubernetes_repository(version),
        )?;
        let docker_repository = url(
            self,
            p.and_then(|p| p.docker_repository.as_ref()),
            DEFAULT_DOCKER_REPOSITORY.into(),
        )?;
        let mirror = match p.and_then(|p| p.mirror.as_ref()) {
            None => None,
            Some(m) => Some(self.mirror(m)?),
        };
        Some(Packages {
            containerd: p
                .and_then(|p| p.containerd.as_ref())
                .map_or(ContainerdSource::Docker, |c| c.value),
            kubernetes_repository,
            docker_repository,
            mirror,
        })
    }

    fn mirror(&mut self, m: &S<raw::Mirror>) -> Option<Mirror> {
        let (Some(url), Some(key)) = (&m.value.url, &m.value.key_file) else {
            self.error(
                pos(m),
                "a mirror needs a `url` and a `keyFile`",
                "kubeha verifies the mirror's Release file with that OpenPGP key",
            );
            return None;
        };
        // The key file pins the mirror: apt checks its signature, so plain http is fine.
        let url = self.url(url, UrlUse::Repository)?;
        let key_file = self.existing_file(key, "mirror key file")?;
        let words = m.value.suite.iter().chain(&m.value.components);
        if let Some(bad) = words.clone().find(|w| !rules::is_apt_word(&w.value)) {
            self.error(
                pos(bad),
                format!("`{}` is not an apt suite or component", bad.value),
                "apt suites and components are single words of letters, digits and . _ - + ~ : /",
            );
            return None;
        }
        let suite = m
            .value
            .suite
            .as_ref()
            .map_or_else(|| "stable".into(), |s| s.value.to_string());
        let components: Vec<String> = m
            .value
            .components
            .iter()
            .map(|c| c.value.to_string())
            .collect();
        if suite.ends_with('/') != components.is_empty() {
            self.error(
                opt_pos(&m.value.suite).or(pos(m)),
                format!("mirror suite `{suite}` does not match its components"),
                "a flat repository has a suite ending in '/' and no components; otherwise list the components, e.g. [main]",
            );
            return None;
        }
        Some(Mirror {
            url,
            suite,
            components,
            key_file,
        })
    }

    fn load_balancer(
        &mut self,
        lb: Option<&S<raw::LoadBalancer>>,
        hosts: &[Host],
        endpoint: &Option<ApiEndpoint>,
    ) -> Option<LoadBalancer> {
        let default = raw::LoadBalancer::default();
        let lb_raw = lb.map_or(&default, |l| &l.value);
        let haproxy_default = raw::Haproxy::default();
        let haproxy = lb_raw
            .haproxy
            .as_ref()
            .map_or(&haproxy_default, |h| &h.value);
        let hc_default = raw::HealthCheck::default();
        let hc = haproxy
            .health_check
            .as_ref()
            .map_or(&hc_default, |h| &h.value);

        let path = match &hc.path {
            None => "/readyz".to_string(),
            Some(p) if rules::is_http_path(&p.value) => p.value.to_string(),
            Some(p) => {
                self.error(
                    pos(p),
                    format!(
                        "health-check path `{}` is not an absolute URL path",
                        p.value
                    ),
                    "use `/readyz` (recommended) or `/livez`; paths hold letters, digits, percent escapes and - . _ ~ / : @ = & , + (and one `?` before a query)",
                );
                return None;
            }
        };
        let interval = match &hc.interval {
            Some(i) => self.duration(i)?,
            None => Duration::from_secs(2),
        };
        let fall = self.count_in(hc.fall.as_ref(), 3, 1..=100)?;
        let rise = self.count_in(hc.rise.as_ref(), 2, 1..=100)?;
        let client_timeout = match &haproxy.client_timeout {
            Some(t) => self.duration(t)?,
            None => Duration::from_secs(300),
        };
        let server_timeout = match &haproxy.server_timeout {
            Some(t) => self.duration(t)?,
            None => Duration::from_secs(300),
        };
        let lb_count = hosts.iter().filter(|h| h.has(Role::LoadBalancer)).count();
        if lb_count == 0 && !hosts.is_empty() {
            let at = lb.and_then(pos);
            self.warn(
                at,
                "no host has the `loadBalancer` role: kubeha will not manage the API endpoint",
                "make sure the endpoint forwards TCP to port 6443 of every control plane",
            );
        }
        let virtual_ip = match &lb_raw.virtual_ip {
            None => {
                if lb_count > 1 {
                    self.warn(
                        lb.and_then(pos),
                        format!("{lb_count} load balancers without `virtualIP`"),
                        "clients need one address: add `loadBalancer.virtualIP` so keepalived moves it between them, or point a DNS name at all of them",
                    );
                }
                None
            }
            Some(vip) => Some(self.virtual_ip(vip, hosts, lb_count, endpoint)?),
        };
        Some(LoadBalancer {
            health_check: HealthCheck {
                path,
                interval,
                fall,
                rise,
            },
            client_timeout,
            server_timeout,
            virtual_ip,
        })
    }

    fn virtual_ip(
        &mut self,
        vip: &S<raw::VirtualIp>,
        hosts: &[Host],
        lb_count: usize,
        endpoint: &Option<ApiEndpoint>,
    ) -> Option<VirtualIp> {
        let Some(address) = &vip.value.address else {
            self.error(
                pos(vip),
                "`virtualIP` needs an `address`",
                "e.g. `address: 10.0.0.100/24`",
            );
            return None;
        };
        let (ip, prefix) = address
            .value
            .split_once('/')
            .map_or((&*address.value, None), |(ip, p)| (ip, Some(p)));
        let Ok(ip) = ip.parse::<IpAddr>() else {
            self.error(
                pos(address),
                format!("`{}` is not an IP address", address.value),
                "write the virtual IP, optionally with its prefix length, e.g. `10.0.0.100/24`",
            );
            return None;
        };
        let max_prefix = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => Some(max_prefix),
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() && p.len() <= 3 => p
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=max_prefix).contains(n)),
            Some(_) => None,
        };
        let Some(prefix_len) = prefix_len else {
            self.error(
                pos(address),
                format!("`{}` has no valid prefix length", address.value),
                format!(
                    "an IPv{} prefix length is 1 to {max_prefix}",
                    if ip.is_ipv4() { 4 } else { 6 }
                ),
            );
            return None;
        };
        if lb_count == 0 {
            self.error(
                pos(address),
                "a virtual IP needs hosts with the `loadBalancer` role to hold it",
                "give the `loadBalancer` role to two or more hosts in the VIP's subnet",
            );
        } else if lb_count == 1 {
            self.warn(
                pos(address),
                "a virtual IP with a single load balancer does not remove the single point of failure",
                "add a second host with the `loadBalancer` role",
            );
        }
        if let Some(h) = hosts.iter().find(|h| h.address == ip || h.node_ip() == ip) {
            self.error(
                pos(address),
                format!("virtual IP {ip} is the address of host `{}`", h.name),
                "the virtual IP must be a free address in the load balancers' subnet",
            );
        }
        if let Some(EndpointHost::Ip(e)) = endpoint.as_ref().map(|e| &e.host) {
            if *e != ip {
                self.warn(
                    pos(address),
                    format!("the API endpoint {e} is not the virtual IP {ip}"),
                    "clients reach the cluster through the endpoint; point it at the virtual IP",
                );
            }
        }
        let interface = match &vip.value.interface {
            None => "eth0".to_string(),
            Some(i) if rules::is_interface_name(&i.value) => i.value.to_string(),
            Some(i) => {
                self.error(
                    pos(i),
                    format!("`{}` is not a network interface name", i.value),
                    "interface names are 1-15 letters, digits, '_', '.' or '-', not starting with '-', as `ip link` shows them",
                );
                return None;
            }
        };
        let virtual_router_id = self.count_in(vip.value.virtual_router_id.as_ref(), 51, 1..=255)?;
        Some(VirtualIp {
            address: ip,
            prefix_len,
            interface,
            virtual_router_id: virtual_router_id as u8,
        })
    }

    fn calico(&mut self, cni: Option<&S<raw::Cni>>) -> Option<Calico> {
        let calico = cni.and_then(|c| c.value.calico.as_ref()).map(|c| &c.value);
        let version = match calico.and_then(|c| c.version.as_ref()) {
            None => DEFAULT_CALICO_VERSION.to_string(),
            Some(v) if v.value.starts_with('v') && KubernetesVersion::parse(&v.value).is_some() => {
                v.value.to_string()
            }
            Some(v) => {
                self.error(
                    pos(v),
                    format!("`{}` is not a Calico release", v.value),
                    "write a release tag such as `v3.28.1`",
                );
                return None;
            }
        };
        let sha256 = match calico.and_then(|c| c.sha256.as_ref()) {
            None => None,
            Some(h) if rules::is_sha256_hex(&h.value) => Some(h.value.to_string()),
            Some(h) => {
                self.error(
                    pos(h),
                    format!("`{}` is not a SHA-256 digest", h.value),
                    "write the 64 lowercase hex digits `sha256sum calico.yaml` prints",
                );
                return None;
            }
        };
        let manifest = match calico.and_then(|c| c.manifest.as_ref()) {
            None => ManifestSource::Url(default_calico_manifest(&version)),
            Some(m) if m.value.contains("://") => {
                let url = self.url(m, UrlUse::Download)?;
                let insecure = calico.and_then(|c| c.insecure.as_ref());
                if rules::is_plain_http(&url) && sha256.is_none() {
                    match insecure {
                        Some(i) if i.value => self.warn(
                            pos(i),
                            "the Calico manifest is fetched over plain http without a `sha256`",
                            "anyone on the path can change what is applied to the cluster; add `sha256`",
                        ),
                        _ => {
                            self.error(
                                pos(m),
                                format!("the Calico manifest `{url}` is plain http and not pinned"),
                                "use https, pin the manifest with `sha256: <hex>`, or accept the risk with `insecure: true`",
                            );
                            return None;
                        }
                    }
                }
                ManifestSource::Url(url)
            }
            Some(m) => ManifestSource::File(self.existing_file(m, "Calico manifest")?),
        };
        Some(Calico {
            version,
            manifest,
            sha256,
        })
    }

    fn availability(&mut self, a: Option<&S<raw::Availability>>) -> Option<Availability> {
        let default = raw::Availability::default();
        let a = a.map_or(&default, |a| &a.value);
        let max_api_outage = match &a.max_api_outage {
            Some(d) => self.duration(d)?,
            None => Duration::from_secs(10),
        };
        let min_success_ratio = match &a.min_success_ratio {
            None => None,
            Some(r) if (0.0..=1.0).contains(&r.value) => Some(r.value),
            Some(r) => {
                self.error(
                    pos(r),
                    format!("success ratio {} is not between 0 and 1", r.value),
                    "write a fraction such as 0.95",
                );
                return None;
            }
        };
        Some(Availability {
            max_api_outage,
            min_success_ratio,
        })
    }

    fn ip(&mut self, s: &S<Text>) -> Option<IpAddr> {
        match s.value.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    pos(s),
                    format!("`{}` is not an IP address", s.value),
                    "write an IPv4 or IPv6 address without a port, e.g. 10.0.0.10",
                );
                None
            }
        }
    }

    fn port(&mut self, p: Option<&S<i64>>, default: u16) -> Option<u16> {
        match p {
            None => Some(default),
            Some(p) => match u16::try_from(p.value) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        pos(p),
                        format!("port {} is out of range", p.value),
                        "ports are 1-65535",
                    );
                    None
                }
            },
        }
    }

    fn count_in(
        &mut self,
        n: Option<&S<i64>>,
        default: u32,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<u32> {
        match n {
            None => Some(default),
            Some(n) if range.contains(&n.value) => Some(n.value as u32),
            Some(n) => {
                self.error(
                    pos(n),
                    format!("{} is out of range", n.value),
                    format!("use a value from {} to {}", range.start(), range.end()),
                );
                None
            }
        }
    }

    fn duration(&mut self, s: &S<Text>) -> Option<Duration> {
        match humantime::parse_duration(&s.value) {
            Ok(d) if d >= Duration::from_millis(100) => Some(d),
            _ => {
                self.error(
                    pos(s),
                    format!("`{}` is not a usable duration", s.value),
                    "write a duration of at least 100ms, such as `2s`, `500ms` or `5m`",
                );
                None
            }
        }
    }

    fn url(&mut self, s: &S<Text>, what: UrlUse) -> Option<String> {
        match rules::url_problem(&s.value, what) {
            None => Some(s.value.to_string()),
            Some(problem) => {
                self.error(
                    pos(s),
                    format!(
                        "`{}` is not a usable http(s) URL: {problem}",
                        rules::redact_url(&s.value)
                    ),
                    "write the full URL, e.g. `https://mirror.example.com/debian`",
                );
                None
            }
        }
    }

    /// A repository whose key kubeha downloads from the repository itself: over plain
    /// http anyone on the path could swap both key and packages, so only https.
    fn repository_url(&mut self, s: &S<Text>) -> Option<String> {
        let url = self.url(s, UrlUse::Repository)?;
        if rules::is_plain_http(&url) {
            self.error(
                pos(s),
                format!("repository `{url}` is plain http, and its signing key would be fetched from it too"),
                "use https, or `packages.mirror` with a local `keyFile` (then apt checks every package against that key)",
            );
            return None;
        }
        Some(url)
    }

    fn ssh_user(&mut self, u: &S<Text>) -> Option<String> {
        if rules::is_ssh_user(&u.value) {
            return Some(u.value.to_string());
        }
        self.error(
            pos(u),
            format!("`{}` is not a valid user name", u.value),
            "user names are at most 32 of a-z, 0-9, '_', '.', '-', starting with a letter or '_', optionally ending in '$'",
        );
        None
    }

    fn existing_file(&mut self, s: &S<Text>, what: &str) -> Option<PathBuf> {
        if let Some(problem) = rules::path_problem(&s.value) {
            self.error(
                pos(s),
                format!("{what} `{}` is not a usable path: {problem}", s.value),
                "name the file plainly; relative paths are resolved against the spec file's folder",
            );
            return None;
        }
        let path = self.paths.resolve(&s.value);
        if path.is_file() {
            Some(path)
        } else {
            self.error(
                pos(s),
                format!("{what} `{}` does not exist", path.display()),
                "relative paths are resolved against the spec file's folder; `~/` is your home",
            );
            None
        }
    }
}

fn subnets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Suggest a field name for an unknown one; used by the loader for serde's errors.
pub fn suggest<'a>(word: &str, expected: &[&'a str]) -> Option<&'a str> {
    did_you_mean(word, expected.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_starter_with(calico: &str) -> Result<super::super::Loaded, super::super::Report> {
        let text = super::super::starter::STARTER_SPEC.replace(
            "      # manifest: calico.yaml        # a local copy instead of the release URL, or a URL",
            calico,
        );
        let paths = PathContext {
            spec_dir: "/nonexistent".into(),
            home: None,
        };
        super::super::load_str(Path::new("c.yaml"), text, &paths)
    }

    #[test]
    fn plain_http_manifest_needs_a_pin_or_an_insecure_mark() {
        let url = "      manifest: http://mirror.internal/calico.yaml";
        let refused = load_starter_with(url).unwrap_err();
        assert!(refused
            .render(false)
            .contains("is plain http and not pinned"));
        let pinned =
            load_starter_with(&format!("{url}\n      sha256: {}", "ab".repeat(32))).unwrap();
        assert!(!pinned.report.render(false).contains("plain http"));
        assert_eq!(pinned.cluster.calico.sha256, Some("ab".repeat(32)));
        let insecure = load_starter_with(&format!("{url}\n      insecure: true")).unwrap();
        let warnings = insecure.report.render(false);
        assert!(
            warnings.contains(
                "warning: the Calico manifest is fetched over plain http without a `sha256`"
            ),
            "{warnings}"
        );
    }

    #[test]
    fn an_unmanaged_endpoint_name_warns_that_dns_must_serve_it() {
        let load = |manage: &str| {
            let text = super::super::starter::STARTER_SPEC.replace(
                "    # manageHostsEntry: true  #",
                &format!("    manageHostsEntry: {manage}  #"),
            );
            let paths = PathContext {
                spec_dir: "/nonexistent".into(),
                home: None,
            };
            super::super::load_str(Path::new("c.yaml"), text, &paths)
                .unwrap()
                .report
                .render(false)
        };
        let off = load("false");
        assert!(
            off.contains("warning: `apiEndpoint.manageHostsEntry` is off: every node must resolve `load-balancer.local` through DNS"),
            "{off}"
        );
        assert!(!load("true").contains("manageHostsEntry"));
    }

    #[test]
    fn overlap_is_symmetric() {
        let a: IpNet = "10.0.0.0/8".parse().unwrap();
        let b: IpNet = "10.96.0.0/12".parse().unwrap();
        let c: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(subnets_overlap(&a, &b) && subnets_overlap(&b, &a));
        assert!(!subnets_overlap(&a, &c));
    }

    #[test]
    fn paths_resolve_against_spec_dir_and_home() {
        let ctx = PathContext {
            spec_dir: "/specs".into(),
            home: Some("/home/op".into()),
        };
        assert_eq!(ctx.resolve("keys/id"), PathBuf::from("/specs/keys/id"));
        assert_eq!(ctx.resolve("~/.ssh/id"), PathBuf::from("/home/op/.ssh/id"));
        assert_eq!(ctx.resolve("/abs"), PathBuf::from("/abs"));
    }
}
