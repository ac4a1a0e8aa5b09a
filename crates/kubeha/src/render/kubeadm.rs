//! kubeadm configuration files (API `kubeadm.k8s.io/v1beta4`, the only one kubeha emits).
//!
//! Secrets are passed to kubeadm inside these files (never on a command line, where
//! they would show in `ps` and shell history): `--certificate-key` cannot be mixed with
//! `--config` anyway.

use serde::Serialize;

use super::KubeadmSecrets;
use crate::spec::{Cluster, EndpointHost, Host, TaintEffect, APISERVER_PORT};

const API_VERSION: &str = "kubeadm.k8s.io/v1beta4";
pub const CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
/// The group kubeadm's default bootstrap token belongs to, which its RBAC rules allow to join.
const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitConfiguration<'a> {
    api_version: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bootstrap_tokens: Vec<BootstrapToken<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    certificate_key: &'a str,
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: LocalApiEndpoint,
    node_registration: NodeRegistration,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skip_phases: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapToken<'a> {
    token: &'a str,
    description: &'a str,
    ttl: &'a str,
    usages: [&'a str; 2],
    groups: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocalApiEndpoint {
    advertise_address: String,
    bind_port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRegistration {
    name: String,
    cri_socket: &'static str,
    kubelet_extra_args: Vec<Arg>,
    /// `None` keeps kubeadm's default (the control-plane taint on control planes).
    #[serde(skip_serializing_if = "Option::is_none")]
    taints: Option<Vec<Taint>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ignore_preflight_errors: Vec<&'static str>,
}

#[derive(Serialize)]
struct Arg {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
struct Taint {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    effect: TaintEffect,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfiguration<'a> {
    api_version: &'a str,
    kind: &'a str,
    cluster_name: &'a str,
    kubernetes_version: String,
    control_plane_endpoint: String,
    networking: Networking,
    api_server: ApiServer,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Networking {
    pod_subnet: String,
    service_subnet: String,
    dns_domain: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeletConfiguration<'a> {
    api_version: &'a str,
    kind: &'a str,
    /// Must match containerd's `SystemdCgroup = true`.
    cgroup_driver: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinConfiguration<'a> {
    api_version: &'a str,
    kind: &'a str,
    discovery: Discovery<'a>,
    node_registration: NodeRegistration,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane: Option<JoinControlPlane<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Discovery<'a> {
    bootstrap_token: BootstrapTokenDiscovery<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapTokenDiscovery<'a> {
    api_server_endpoint: String,
    token: &'a str,
    ca_cert_hashes: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinControlPlane<'a> {
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: LocalApiEndpoint,
    certificate_key: &'a str,
}

/// Where secrets sit in a rendered config, as `(what precedes the value, placeholder
/// variable)`: rendered with [`KubeadmSecrets::placeholders`], every secret is the whole
/// value at the end of a line `…{prefix}${VAR}`. `apply` renders the real values into
/// these fields directly; the runbook fills exactly these lines and no other text.
pub fn secret_slots() -> [(&'static str, &'static str); 3] {
    [
        ("token: ", KubeadmSecrets::TOKEN_VAR),
        ("certificateKey: ", KubeadmSecrets::CERT_KEY_VAR),
        ("- ", KubeadmSecrets::CA_HASH_VAR),
    ]
}

/// etcdctl against the local stacked etcd member with kubeadm's certificates.
pub fn etcdctl(args: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt \
         --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key \
         --command-timeout 10s {args}"
    )
}

/// `kubeadm init --config`: Init + Cluster + Kubelet configuration documents.
pub fn init_config(cluster: &Cluster, host: &Host, secrets: &KubeadmSecrets) -> String {
    let init = InitConfiguration {
        api_version: API_VERSION,
        kind: "InitConfiguration",
        bootstrap_tokens: vec![BootstrapToken {
            token: &secrets.bootstrap_token,
            description: "kubeha: joins this cluster's nodes",
            ttl: "24h0m0s",
            usages: ["signing", "authentication"],
            groups: [TOKEN_GROUP],
        }],
        certificate_key: &secrets.certificate_key,
        local_api_endpoint: local_endpoint(host),
        node_registration: node_registration(cluster, host),
        skip_phases: Vec::new(),
    };
    let config = cluster_configuration(cluster);
    documents(
        cluster,
        &[yaml(&init), yaml(&config), yaml(&kubelet_configuration())],
    )
}

/// `kubeadm init phase certs apiserver --config` on a joined control plane: its own
/// advertise address and node name with the spec's ClusterConfiguration, and no secret
/// (kubeadm signs the new certificate with the cluster CA already on the host).
pub fn apiserver_certs_config(cluster: &Cluster, host: &Host) -> String {
    let init = secretless_init(host, node_registration(cluster, host), Vec::new());
    documents(
        cluster,
        &[yaml(&init), yaml(&cluster_configuration(cluster))],
    )
}

/// `kubeadm init --config` on a new machine around an etcd data folder restored from a
/// backup, with the cluster's CAs and service-account keys already put back: kubeadm
/// reuses them and signs this host's certificates for its address in the spec. Its
/// preflight would refuse the non-empty /var/lib/etcd; the restored data has its
/// bootstrap-token RBAC and cluster-info, so no token is made (nor written here: this
/// file holds no secret).
pub fn restored_init_config(cluster: &Cluster, host: &Host) -> String {
    let mut node_registration = node_registration(cluster, host);
    node_registration.ignore_preflight_errors = vec!["DirAvailable--var-lib-etcd"];
    let init = secretless_init(host, node_registration, vec!["bootstrap-token"]);
    documents(
        cluster,
        &[
            yaml(&init),
            yaml(&cluster_configuration(cluster)),
            yaml(&kubelet_configuration()),
        ],
    )
}

/// An InitConfiguration for `host` with no bootstrap token and no certificate key.
fn secretless_init(
    host: &Host,
    node_registration: NodeRegistration,
    skip_phases: Vec<&'static str>,
) -> InitConfiguration<'static> {
    InitConfiguration {
        api_version: API_VERSION,
        kind: "InitConfiguration",
        bootstrap_tokens: Vec::new(),
        certificate_key: "",
        local_api_endpoint: local_endpoint(host),
        node_registration,
        skip_phases,
    }
}

fn kubelet_configuration() -> KubeletConfiguration<'static> {
    KubeletConfiguration {
        api_version: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        cgroup_driver: "systemd",
    }
}

fn cluster_configuration(cluster: &Cluster) -> ClusterConfiguration<'_> {
    let k = &cluster.kubernetes;
    ClusterConfiguration {
        api_version: API_VERSION,
        kind: "ClusterConfiguration",
        cluster_name: &cluster.name,
        kubernetes_version: k.version.to_string(),
        control_plane_endpoint: cluster.api_endpoint.to_string(),
        networking: Networking {
            pod_subnet: k.pod_subnet.to_string(),
            service_subnet: k.service_subnet.to_string(),
            dns_domain: k.dns_domain.clone(),
        },
        api_server: ApiServer {
            cert_sans: cert_sans(cluster),
        },
    }
}

/// `kubeadm join --config`: a control-plane join when the host is a control plane.
pub fn join_config(cluster: &Cluster, host: &Host, secrets: &KubeadmSecrets) -> String {
    let join = JoinConfiguration {
        api_version: API_VERSION,
        kind: "JoinConfiguration",
        discovery: Discovery {
            bootstrap_token: BootstrapTokenDiscovery {
                api_server_endpoint: cluster.api_endpoint.to_string(),
                token: &secrets.bootstrap_token,
                ca_cert_hashes: [&secrets.ca_cert_hash],
            },
        },
        node_registration: node_registration(cluster, host),
        control_plane: host
            .has(crate::spec::Role::ControlPlane)
            .then(|| JoinControlPlane {
                local_api_endpoint: local_endpoint(host),
                certificate_key: &secrets.certificate_key,
            }),
    };
    documents(cluster, &[yaml(&join)])
}

fn local_endpoint(host: &Host) -> LocalApiEndpoint {
    LocalApiEndpoint {
        advertise_address: host.node_ip().to_string(),
        bind_port: APISERVER_PORT,
    }
}

fn node_registration(cluster: &Cluster, host: &Host) -> NodeRegistration {
    let mut kubelet_extra_args = vec![Arg {
        name: "node-ip",
        value: host.node_ip().to_string(),
    }];
    if !host.labels.is_empty() {
        let labels: Vec<String> = host
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        kubelet_extra_args.push(Arg {
            name: "node-labels",
            value: labels.join(","),
        });
    }
    let is_cp = host.has(crate::spec::Role::ControlPlane);
    let mut taints: Vec<Taint> = Vec::new();
    if is_cp && !cluster.control_planes_schedulable() {
        taints.push(Taint {
            key: CONTROL_PLANE_TAINT.into(),
            value: None,
            effect: TaintEffect::NoSchedule,
        });
    }
    taints.extend(host.taints.iter().map(|t| Taint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: t.effect,
    }));
    // Spell the list out whenever it differs from kubeadm's default for the node kind.
    let default = if is_cp {
        taints.len() == 1 && host.taints.is_empty()
    } else {
        taints.is_empty()
    };
    NodeRegistration {
        name: host.name.clone(),
        cri_socket: CRI_SOCKET,
        kubelet_extra_args,
        taints: (!default).then_some(taints),
        ignore_preflight_errors: Vec::new(),
    }
}

/// kubeadm adds the endpoint host itself; the VIP and any extra names must be listed.
pub fn cert_sans(cluster: &Cluster) -> Vec<String> {
    let mut sans = vec![cluster.api_endpoint.host.to_string()];
    if let EndpointHost::Ip(ip) = cluster.api_endpoint.host {
        sans[0] = ip.to_string();
    }
    if let Some(vip) = &cluster.load_balancer.virtual_ip {
        sans.push(vip.address.to_string());
    }
    sans.extend(cluster.api_endpoint.extra_sans.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

/// Every name and address kubeadm signs `host`'s apiserver certificate for, from the
/// configs above (`GetAPIServerAltNames` in kubeadm's pkiutil): the node name, the
/// `kubernetes` Service's names and first address, the advertise address, the endpoint
/// and the certSANs.
pub fn apiserver_sans(cluster: &Cluster, host: &Host) -> Vec<String> {
    let k = &cluster.kubernetes;
    let service_ip = match k.service_subnet {
        ipnet::IpNet::V4(n) => std::net::IpAddr::from(std::net::Ipv4Addr::from(
            u32::from(n.network()).wrapping_add(1),
        )),
        ipnet::IpNet::V6(n) => std::net::IpAddr::from(std::net::Ipv6Addr::from(
            u128::from(n.network()).wrapping_add(1),
        )),
    };
    let mut sans = vec![
        host.name.clone(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", k.dns_domain),
        service_ip.to_string(),
        host.node_ip().to_string(),
    ];
    sans.extend(cert_sans(cluster));
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

fn yaml<T: Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).expect("kubeadm config types always serialize")
}

fn documents(cluster: &Cluster, docs: &[String]) -> String {
    let mut out = super::managed_header("#", cluster);
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(doc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    fn secrets() -> KubeadmSecrets {
        KubeadmSecrets {
            bootstrap_token: "abcdef.0123456789abcdef".into(),
            certificate_key: "ab".repeat(32),
            ca_cert_hash: format!("sha256:{}", "cd".repeat(32)),
        }
    }

    #[test]
    fn init_config_reproduces_the_seed() {
        let c = seed();
        let text = init_config(&c, c.first_control_plane(), &secrets());
        for expected in [
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n",
            "token: abcdef.0123456789abcdef\n",
            "controlPlaneEndpoint: load-balancer.local:6443\n",
            "kubernetesVersion: v1.31.0\n",
            "podSubnet: 192.168.0.0/16\n",
            "serviceSubnet: 10.96.0.0/12\n",
            "advertiseAddress: \"192.0.2.10\"\n",
            "criSocket: unix:///var/run/containerd/containerd.sock\n",
            "cgroupDriver: systemd\n",
            "clusterName: k8s-ha\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(text.contains(&format!("certificateKey: {}\n", "ab".repeat(32))));
        assert!(
            !text.contains("taints"),
            "control planes keep kubeadm's default taint"
        );
        assert_eq!(text.matches("\n---\n").count(), 2);
    }

    #[test]
    fn join_configs_differ_for_control_planes_and_workers() {
        let c = seed();
        let cp = c.hosts.iter().find(|h| h.name == "k8s-master-2").unwrap();
        let worker = c.hosts.iter().find(|h| h.name == "k8s-worker-1").unwrap();
        let cp_text = join_config(&c, cp, &secrets());
        assert!(cp_text.contains("controlPlane:\n"));
        assert!(cp_text.contains("apiServerEndpoint: load-balancer.local:6443\n"));
        assert!(cp_text.contains(&format!("- sha256:{}\n", "cd".repeat(32))));
        assert!(cp_text.contains("advertiseAddress: \"192.0.2.11\"\n"));
        let w = join_config(&c, worker, &secrets());
        assert!(!w.contains("controlPlane"));
        assert!(!w.contains("certificateKey"));
        assert!(w.contains("name: k8s-worker-1\n"));
    }

    #[test]
    fn without_workers_control_planes_are_untainted() {
        let c = cluster_from(|s| {
            let cut = s.find("    - name: k8s-worker-1").unwrap();
            let end = s.find("  apiEndpoint:").unwrap();
            format!("{}{}", &s[..cut], &s[end..])
        });
        let text = init_config(&c, c.first_control_plane(), &secrets());
        assert!(text.contains("taints: []\n"), "{text}");
    }

    #[test]
    fn custom_taints_and_labels_reach_kubeadm() {
        let c = labelled_and_tainted();
        let worker = c.hosts.iter().find(|h| h.name == "k8s-worker-1").unwrap();
        let text = join_config(&c, worker, &secrets());
        assert!(text.contains("value: example.com/pool=general"), "{text}");
        assert!(text.contains("key: dedicated"));
        assert!(text.contains("effect: NoSchedule"));
    }

    /// The runbook's way (placeholders, then only the slot lines filled) gives exactly
    /// the file `apply` renders with the real secrets.
    #[test]
    fn filling_the_slots_equals_rendering_the_secrets() {
        let c = seed();
        let real = secrets();
        let value = |var: &str| match var {
            KubeadmSecrets::TOKEN_VAR => real.bootstrap_token.clone(),
            KubeadmSecrets::CERT_KEY_VAR => real.certificate_key.clone(),
            _ => real.ca_cert_hash.clone(),
        };
        let fill = |text: String| -> String {
            text.lines()
                .map(|line| {
                    for (prefix, var) in secret_slots() {
                        let slot = format!("{prefix}${{{var}}}");
                        if let Some(head) = line.strip_suffix(&slot) {
                            return format!("{head}{prefix}{}\n", value(var));
                        }
                    }
                    assert!(
                        !line.contains("${KUBEHA_"),
                        "placeholder outside a slot: {line}"
                    );
                    format!("{line}\n")
                })
                .collect()
        };
        let placeholders = KubeadmSecrets::placeholders();
        let cp = c.first_control_plane();
        assert_eq!(
            fill(init_config(&c, cp, &placeholders)),
            init_config(&c, cp, &real)
        );
        for host in c.kube_nodes().filter(|h| !std::ptr::eq(*h, cp)) {
            assert_eq!(
                fill(join_config(&c, host, &placeholders)),
                join_config(&c, host, &real)
            );
        }
    }

    #[test]
    fn apiserver_sans_are_kubeadms() {
        let c = seed();
        let cp = c.control_planes().nth(1).unwrap();
        assert_eq!(
            apiserver_sans(&c, cp),
            [
                "k8s-master-2",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.96.0.1",
                "192.0.2.11",
                "load-balancer.local",
            ]
        );
        let config = apiserver_certs_config(&c, cp);
        assert!(
            config.contains("advertiseAddress: \"192.0.2.11\""),
            "{config}"
        );
        assert!(config.contains("- load-balancer.local"), "{config}");
        assert!(config.contains("kind: ClusterConfiguration"), "{config}");
        assert!(
            !config.contains("token") && !config.contains("certificateKey"),
            "{config}"
        );
    }

    #[test]
    fn a_restored_init_reuses_the_etcd_data_and_makes_no_token() {
        let c = seed();
        let cp = c.control_planes().nth(2).unwrap();
        let text = restored_init_config(&c, cp);
        for want in [
            "ignorePreflightErrors:\n  - DirAvailable--var-lib-etcd",
            "skipPhases:\n- bootstrap-token",
            "advertiseAddress: \"192.0.2.12\"",
            "kind: ClusterConfiguration",
            "cgroupDriver: systemd",
        ] {
            assert!(text.contains(want), "{want}:\n{text}");
        }
        assert!(
            !text.contains("token:") && !text.contains("certificateKey"),
            "{text}"
        );
        // The ordinary init and join configs are as they were.
        let init = init_config(&c, c.first_control_plane(), &secrets());
        assert!(!init.contains("skipPhases") && !init.contains("ignorePreflightErrors"));
    }

    #[test]
    fn vip_and_extra_names_are_cert_sans() {
        let c = seed_with_vip();
        let sans = cert_sans(&c);
        assert_eq!(sans, ["load-balancer.local", "192.0.2.100"]);
    }
}
