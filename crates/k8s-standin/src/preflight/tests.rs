use super::*;
use std::path::PathBuf;

/// A fake node: files under a temporary root, probes from fields.
struct Fake {
    files: RealHost,
    ports_in_use: Vec<u16>,
    kubelet_enabled: bool,
    cri_ok: bool,
    missing_exes: Vec<&'static str>,
}

impl Host for Fake {
    fn read(&self, p: &str) -> Option<Vec<u8>> {
        self.files.read(p)
    }
    fn exists(&self, p: &str) -> bool {
        self.files.exists(p)
    }
    fn dir_nonempty(&self, p: &str) -> bool {
        self.files.dir_nonempty(p)
    }
    fn is_root(&self) -> bool {
        self.files.is_root()
    }
    fn num_cpu(&self) -> usize {
        self.files.num_cpu()
    }
    fn mem_mb(&self) -> Option<u64> {
        self.files.mem_mb()
    }
    fn port_in_use(&self, port: u16) -> bool {
        self.ports_in_use.contains(&port)
    }
    fn in_path(&self, exe: &str) -> bool {
        !self.missing_exes.contains(&exe)
    }
    fn systemctl(&self, verb: &str, unit: &str) -> bool {
        verb == "is-enabled" && unit == "kubelet.service" && self.kubelet_enabled
    }
    fn cri_status(&self, socket: &str) -> Result<(), String> {
        if self.cri_ok {
            Ok(())
        } else {
            Err(format!(
                "dial unix {socket}: connect: no such file or directory"
            ))
        }
    }
    fn kubelet_version(&self) -> Result<String, String> {
        Ok("v1.31.0".into())
    }
    fn resolves(&self, _: &str) -> bool {
        true
    }
}

fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root =
        std::env::temp_dir().join(format!("standin-preflight-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (p, c) in files {
        let full = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, c).unwrap();
    }
    root
}

const GOOD_NODE: &[(&str, &str)] = &[
    (
        "/proc/self/status",
        "Name:\tkubeadm\nUid:\t0\t0\t0\t0\nCpus_allowed_list:\t0-1\n",
    ),
    (
        "/proc/meminfo",
        "MemTotal:        4028000 kB\nMemFree: 1 kB\n",
    ),
    (
        "/proc/swaps",
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
    ),
    ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n"),
    ("/proc/sys/net/ipv4/ip_forward", "1\n"),
];

fn fake(name: &str, files: &[(&str, &str)]) -> Fake {
    Fake {
        files: RealHost {
            root: tree(name, files),
            cri: Box::new(|_| Ok(())),
        },
        ports_in_use: vec![],
        kubelet_enabled: true,
        cri_ok: true,
        missing_exes: vec![],
    }
}

fn params() -> NodeParams {
    NodeParams {
        node_name: "cp1".into(),
        cri_socket: "unix:///var/run/containerd/containerd.sock".into(),
        kubernetes_version: "v1.31.0".into(),
        advertise_address: "10.0.0.11".into(),
        bind_port: 6443,
        service_subnet: "10.96.0.0/12".into(),
        etcd_data_dir: "/var/lib/etcd".into(),
    }
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

#[test]
fn healthy_node_passes() {
    let h = fake("healthy", GOOD_NODE);
    let r = run(&init_checks(&params(), false), &h, &none());
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.lines.is_empty(), "{:?}", r.lines);
}

#[test]
fn init_check_order_matches_kubeadm() {
    let names: Vec<String> = init_checks(&params(), false)
        .iter()
        .map(Check::name)
        .collect();
    let want = [
        "IsPrivilegedUser",
        "NumCPU",
        "Mem",
        "KubernetesVersion",
        "Firewalld",
        "Port-6443",
        "Port-10259",
        "Port-10257",
        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
        "FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml",
        "FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml",
        "FileAvailable--etc-kubernetes-manifests-etcd.yaml",
        "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
        "FileContent--proc-sys-net-ipv4-ip_forward",
        "CRI",
        "Swap",
        "FileExisting-conntrack",
        "FileExisting-ip",
        "FileExisting-iptables",
        "FileExisting-mount",
        "FileExisting-nsenter",
        "FileExisting-ethtool",
        "FileExisting-tc",
        "FileExisting-touch",
        "SystemVerification",
        "Hostname",
        "KubeletVersion",
        "Service-Kubelet",
        "Port-10250",
        "Port-2379",
        "Port-2380",
        "DirAvailable--var-lib-etcd",
    ];
    assert_eq!(names, want);
    let join: Vec<String> = join_checks(&params()).iter().map(Check::name).collect();
    assert_eq!(
        &join[..4],
        [
            "IsPrivilegedUser",
            "DirAvailable--etc-kubernetes-manifests",
            "FileAvailable--etc-kubernetes-kubelet.conf",
            "FileAvailable--etc-kubernetes-bootstrap-kubelet.conf"
        ]
    );
}

#[test]
fn broken_node_reports_kubeadm_errors_in_order() {
    let mut h = fake(
        "broken",
        &[
            (
                "/proc/self/status",
                "Uid:\t0\t0\t0\t0\nCpus_allowed_list:\t0\n",
            ),
            ("/proc/meminfo", "MemTotal:        1024000 kB\n"),
            (
                "/proc/swaps",
                "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n",
            ),
            ("/proc/sys/net/bridge/bridge-nf-call-iptables", "0\n"),
            ("/var/lib/etcd/member/snap", "x"),
            ("/etc/kubernetes/manifests/etcd.yaml", "x"),
        ],
    );
    h.ports_in_use = vec![6443];
    h.kubelet_enabled = false;
    h.cri_ok = false;
    h.missing_exes = vec!["conntrack", "ethtool"];
    let r = run(&init_checks(&params(), false), &h, &none());
    assert_eq!(
        r.lines,
        vec![
            "\t[WARNING Swap]: swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node",
            "\t[WARNING FileExisting-ethtool]: ethtool not found in system path",
            "\t[WARNING Service-Kubelet]: kubelet service is not enabled, please run 'systemctl enable kubelet.service'",
        ]
    );
    let e = r.error.unwrap();
    let want = "[preflight] Some fatal errors occurred:\n\
\t[ERROR NumCPU]: the number of available CPUs 1 is less than the required 2\n\
\t[ERROR Mem]: the system RAM (1000 MB) is less than the minimum 1700 MB\n\
\t[ERROR Port-6443]: Port 6443 is in use\n\
\t[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]: /etc/kubernetes/manifests/etcd.yaml already exists\n\
\t[ERROR FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: /proc/sys/net/bridge/bridge-nf-call-iptables contents are not set to 1\n\
\t[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward does not exist\n\
\t[ERROR CRI]: container runtime is not running: output: dial unix unix:///var/run/containerd/containerd.sock: connect: no such file or directory\n, error: exit status 1\n\
\t[ERROR FileExisting-conntrack]: conntrack not found in system path\n\
\t[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty\n\
[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`";
    assert_eq!(e, want);
}

#[test]
fn ignored_errors_become_warnings() {
    let h = fake(
        "ignored",
        &[
            (
                "/proc/self/status",
                "Uid:\t0\t0\t0\t0\nCpus_allowed_list:\t0\n",
            ),
            ("/proc/meminfo", "MemTotal: 1024000 kB\n"),
            ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"),
            ("/proc/sys/net/ipv4/ip_forward", "1"),
        ],
    );
    let ignore = ignore_set(&["numcpu".into()], &["Mem".into()]).unwrap();
    let r = run(&init_checks(&params(), false), &h, &ignore);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        r.lines[0],
        "\t[WARNING NumCPU]: the number of available CPUs 1 is less than the required 2"
    );
    assert_eq!(
        r.lines[1],
        "\t[WARNING Mem]: the system RAM (1000 MB) is less than the minimum 1700 MB"
    );
    let all = ignore_set(&["all".into()], &[]).unwrap();
    assert!(run(&init_checks(&params(), false), &h, &all)
        .error
        .is_none());
    assert!(ignore_set(&["all".into(), "Swap".into()], &[])
        .unwrap_err()
        .contains("don't specify individual checks if 'all' is used"));
}

#[test]
fn non_root_fails() {
    let h = fake(
        "nonroot",
        &[(
            "/proc/self/status",
            "Uid:\t1000\t1000\t1000\t1000\nCpus_allowed_list:\t0-3\n",
        )],
    );
    let r = run(&[Check::IsPrivilegedUser], &h, &none());
    assert_eq!(
        r.error.unwrap().lines().nth(1).unwrap(),
        "\t[ERROR IsPrivilegedUser]: user is not running as root"
    );
}

#[test]
fn cpu_list_and_meminfo_parsing() {
    assert_eq!(host::count_cpu_list("0-3,6\n"), 5);
    assert_eq!(host::count_cpu_list("0"), 1);
    assert_eq!(host::meminfo_mb("MemTotal:  2048000 kB\n"), Some(2000));
}

#[test]
fn conntrack_not_required_for_1_32() {
    let mut p = params();
    p.kubernetes_version = "v1.32.0".into();
    assert!(!init_checks(&p, false)
        .iter()
        .any(|c| c.name() == "FileExisting-conntrack"));
}
