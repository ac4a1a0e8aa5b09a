//! kubeadm 1.31's preflight checks, with its names, order, messages and
//! `--ignore-preflight-errors` handling, run against the node through `Host`
//! (a root directory for files, plus probes) so tests can use fake trees.

pub mod host;

pub use host::{Host, RealHost};
use std::collections::BTreeSet;

pub const CONTROL_PLANE_NUM_CPU: usize = 2;
pub const CONTROL_PLANE_MEM_MB: u64 = 1700;
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
const IPV4_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const BRIDGE_NF6: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";
const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/default/forwarding";
const MANIFESTS: &str = "/etc/kubernetes/manifests";

/// One kubeadm preflight check.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    IsPrivilegedUser,
    NumCpu(usize),
    Mem(u64),
    KubernetesVersion { k8s: String, kubeadm: String },
    Firewalld(Vec<u16>),
    Port(u16),
    FileAvailable(String),
    DirAvailable(String),
    FileContent(String, &'static str),
    Cri(String),
    Swap,
    InPath { exe: &'static str, mandatory: bool },
    SystemVerification,
    Hostname(String),
    KubeletVersion(String),
    ServiceKubelet,
}

fn path_name(p: &str) -> String {
    p.replace('/', "-")
}

impl Check {
    /// The name kubeadm prints and matches against ignorePreflightErrors.
    pub fn name(&self) -> String {
        match self {
            Check::IsPrivilegedUser => "IsPrivilegedUser".into(),
            Check::NumCpu(_) => "NumCPU".into(),
            Check::Mem(_) => "Mem".into(),
            Check::KubernetesVersion { .. } => "KubernetesVersion".into(),
            Check::Firewalld(_) => "Firewalld".into(),
            Check::Port(p) => format!("Port-{p}"),
            Check::FileAvailable(p) => format!("FileAvailable-{}", path_name(p)),
            Check::DirAvailable(p) => format!("DirAvailable-{}", path_name(p)),
            Check::FileContent(p, _) => format!("FileContent-{}", path_name(p)),
            Check::Cri(_) => "CRI".into(),
            Check::Swap => "Swap".into(),
            Check::InPath { exe, .. } => format!("FileExisting-{exe}"),
            Check::SystemVerification => "SystemVerification".into(),
            Check::Hostname(_) => "Hostname".into(),
            Check::KubeletVersion(_) => "KubeletVersion".into(),
            Check::ServiceKubelet => "Service-Kubelet".into(),
        }
    }

    /// Runs the check: (warnings, errors).
    pub fn run(&self, h: &dyn Host) -> (Vec<String>, Vec<String>) {
        let err = |m: String| (vec![], vec![m]);
        let warn = |m: String| (vec![m], vec![]);
        let ok = || (vec![], vec![]);
        match self {
            Check::IsPrivilegedUser if !h.is_root() => err("user is not running as root".into()),
            Check::NumCpu(min) => {
                let n = h.num_cpu();
                if n < *min {
                    err(format!("the number of available CPUs {n} is less than the required {min}"))
                } else {
                    ok()
                }
            }
            Check::Mem(min) => match h.mem_mb() {
                Some(mb) if mb < *min => err(format!("the system RAM ({mb} MB) is less than the minimum {min} MB")),
                _ => ok(),
            },
            Check::KubernetesVersion { k8s, kubeadm } => kubernetes_version(k8s, kubeadm),
            Check::Firewalld(ports) if h.systemctl("is-active", "firewalld") => {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                warn(format!(
                    "firewalld is active, please ensure ports [{}] are open or your cluster may not function correctly",
                    list.join(" ")
                ))
            }
            Check::Port(p) if h.port_in_use(*p) => err(format!("Port {p} is in use")),
            Check::FileAvailable(p) if h.exists(p) => err(format!("{p} already exists")),
            Check::DirAvailable(p) if h.dir_nonempty(p) => err(format!("{p} is not empty")),
            Check::FileContent(p, want) => match h.read(p) {
                None => err(format!("{p} does not exist")),
                Some(b) if !b.starts_with(want.as_bytes()) => err(format!("{p} contents are not set to {want}")),
                Some(_) => ok(),
            },
            Check::Cri(sock) => match h.cri_status(sock) {
                Ok(()) => ok(),
                Err(m) => err(format!("container runtime is not running: output: {m}\n, error: exit status 1")),
            },
            Check::Swap => match h.read("/proc/swaps") {
                Some(b) if String::from_utf8_lossy(&b).lines().count() > 1 => warn(
                    "swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node".into(),
                ),
                _ => ok(),
            },
            Check::InPath { exe, mandatory } if !h.in_path(exe) => {
                let m = format!("{exe} not found in system path");
                if *mandatory {
                    err(m)
                } else {
                    warn(m)
                }
            }
            Check::Hostname(name) if !h.resolves(name) => (
                vec![
                    format!("hostname \"{name}\" could not be reached"),
                    format!("hostname \"{name}\": lookup {name}: no such host"),
                ],
                vec![],
            ),
            Check::KubeletVersion(k8s) => match h.kubelet_version() {
                Err(e) => err(format!("couldn't get kubelet version: {e}")),
                Ok(v) => kubelet_version(&v, k8s),
            },
            Check::ServiceKubelet if !h.systemctl("is-enabled", "kubelet.service") => {
                warn("kubelet service is not enabled, please run 'systemctl enable kubelet.service'".into())
            }
            _ => ok(),
        }
    }
}

fn kubernetes_version(k8s: &str, kubeadm: &str) -> (Vec<String>, Vec<String>) {
    use crate::config::validate::parse_version;
    match (parse_version(k8s), parse_version(kubeadm)) {
        (Some(k), Some(a)) if (k.0, k.1) > (a.0, a.1) => (
            vec![format!(
                "Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: {}. Kubeadm version: {}.{}.x",
                k8s.trim_start_matches('v'),
                a.0,
                a.1
            )],
            vec![],
        ),
        _ => (vec![], vec![]),
    }
}

fn kubelet_version(kubelet: &str, k8s: &str) -> (Vec<String>, Vec<String>) {
    use crate::config::validate::parse_version;
    let (Some(kv), Some(cv)) = (parse_version(kubelet), parse_version(k8s)) else {
        return (
            vec![],
            vec![format!(
                "couldn't get kubelet version: cannot parse {kubelet:?}"
            )],
        );
    };
    let kubeadm = parse_version(crate::VERSION).unwrap_or((1, 31, 0));
    if (kv.0, kv.1) < (kubeadm.0, kubeadm.1 - 1) {
        return (vec![], vec![format!("Kubelet version \"{kubelet}\" is lower than kubeadm can support. Please upgrade kubelet")]);
    }
    if (kv.0, kv.1) > (cv.0, cv.1) {
        return (
            vec![],
            vec![format!(
                "the kubelet version is higher than the control plane version. This is not a supported version skew and may lead to a malfunctional cluster. Kubelet version: \"{kubelet}\" Control plane version: \"{k8s}\""
            )],
        );
    }
    (vec![], vec![])
}

/// What decides the list of checks.
#[derive(Debug, Clone)]
pub struct NodeParams {
    pub node_name: String,
    pub cri_socket: String,
    pub kubernetes_version: String,
    pub advertise_address: String,
    pub bind_port: u16,
    pub service_subnet: String,
    pub etcd_data_dir: String,
}

fn ipv4_checks(p: &NodeParams) -> (bool, bool) {
    let mut v4 = false;
    let mut v6 = false;
    for s in p
        .service_subnet
        .split(',')
        .chain(std::iter::once(p.advertise_address.as_str()))
    {
        if s.contains(':') {
            v6 = true;
        } else if !s.is_empty() {
            v4 = true;
        }
    }
    (v4, v6)
}

fn common_checks(p: &NodeParams) -> Vec<Check> {
    let mut c = vec![Check::Cri(p.cri_socket.clone()), Check::Swap];
    // kube-proxy stopped needing conntrack in 1.32.
    if crate::config::validate::parse_version(&p.kubernetes_version)
        .is_some_and(|v| (v.0, v.1) < (1, 32))
    {
        c.push(Check::InPath {
            exe: "conntrack",
            mandatory: true,
        });
    }
    for (exe, mandatory) in [
        ("ip", true),
        ("iptables", true),
        ("mount", true),
        ("nsenter", true),
        ("ethtool", false),
        ("tc", false),
        ("touch", false),
    ] {
        c.push(Check::InPath { exe, mandatory });
    }
    c.extend([
        Check::SystemVerification,
        Check::Hostname(p.node_name.clone()),
        Check::KubeletVersion(p.kubernetes_version.clone()),
        Check::ServiceKubelet,
        Check::Port(10250),
    ]);
    c
}

fn ip_checks(p: &NodeParams) -> Vec<Check> {
    let (v4, v6) = ipv4_checks(p);
    let mut c = vec![];
    if v4 {
        c.push(Check::FileContent(BRIDGE_NF.into(), "1"));
        c.push(Check::FileContent(IPV4_FORWARD.into(), "1"));
    }
    if v6 {
        c.push(Check::FileContent(BRIDGE_NF6.into(), "1"));
        c.push(Check::FileContent(IPV6_FORWARD.into(), "1"));
    }
    c
}

/// RunInitNodeChecks: `secondary` for a control-plane join (common checks ran already).
pub fn init_checks(p: &NodeParams, secondary: bool) -> Vec<Check> {
    let mut c = vec![];
    if !secondary {
        c.push(Check::IsPrivilegedUser);
    }
    c.extend([
        Check::NumCpu(CONTROL_PLANE_NUM_CPU),
        Check::Mem(CONTROL_PLANE_MEM_MB),
        Check::KubernetesVersion {
            k8s: p.kubernetes_version.clone(),
            kubeadm: crate::VERSION.into(),
        },
        Check::Firewalld(vec![p.bind_port, 10250]),
        Check::Port(p.bind_port),
        Check::Port(10259),
        Check::Port(10257),
    ]);
    for comp in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        c.push(Check::FileAvailable(format!("{MANIFESTS}/{comp}.yaml")));
    }
    if !secondary {
        c.extend(ip_checks(p));
        c.extend(common_checks(p));
    }
    c.extend([
        Check::Port(2379),
        Check::Port(2380),
        Check::DirAvailable(p.etcd_data_dir.clone()),
    ]);
    c
}

/// JoinNodeChecks (run before the control-plane checks of a control-plane join).
pub fn join_checks(p: &NodeParams) -> Vec<Check> {
    let mut c = vec![
        Check::IsPrivilegedUser,
        Check::DirAvailable(MANIFESTS.into()),
        Check::FileAvailable("/etc/kubernetes/kubelet.conf".into()),
        Check::FileAvailable("/etc/kubernetes/bootstrap-kubelet.conf".into()),
    ];
    c.extend(common_checks(p));
    c.extend(ip_checks(p));
    c
}

/// The lowercased ignore set from the flag and the config, validated like kubeadm.
pub fn ignore_set(flag: &[String], config: &[String]) -> Result<BTreeSet<String>, String> {
    let set: BTreeSet<String> = flag
        .iter()
        .chain(config)
        .map(|s| s.to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if set.contains("all") && set.len() > 1 {
        return Err("ignore-preflight-errors: Invalid value: \"all\": don't specify individual checks if 'all' is used".into());
    }
    Ok(set)
}

/// The outcome: warning lines (already formatted) and kubeadm's fatal error text.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub error: Option<String>,
}

/// RunChecks: ignored errors become warnings; errors are aggregated.
pub fn run(checks: &[Check], h: &dyn Host, ignore: &BTreeSet<String>) -> Report {
    let mut r = Report::default();
    let mut errors = String::new();
    for c in checks {
        let name = c.name();
        let (mut warnings, mut errs) = c.run(h);
        if ignore.contains("all") || ignore.contains(&name.to_lowercase()) {
            warnings.append(&mut errs);
        }
        for w in warnings {
            r.lines.push(format!("\t[WARNING {name}]: {w}"));
        }
        for e in errs {
            errors.push_str(&format!("\t[ERROR {name}]: {e}\n"));
        }
    }
    if !errors.is_empty() {
        r.error = Some(format!(
            "[preflight] Some fatal errors occurred:\n{errors}[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
        ));
    }
    r
}

#[cfg(test)]
mod tests;
