//! What a host is now, learned in one round trip: a generated shell script prints
//! `key=value` lines and a pure parser turns them into [`HostFacts`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::remote::quote;

/// Services kubeha manages.
pub const SERVICES: [&str; 4] = ["haproxy", "keepalived", "containerd", "kubelet"];
/// Packages whose installed versions the planner compares.
pub const PACKAGES: [&str; 8] = [
    "haproxy",
    "etcd-client",
    "keepalived",
    "containerd",
    "containerd.io",
    "kubelet",
    "kubeadm",
    "kubectl",
];
pub const SYSCTLS: [&str; 3] = [
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.ip_forward",
];
/// The file recording which cluster a host was provisioned for.
pub const CLUSTER_MARKER: &str = "/etc/kubeha/cluster";
/// kubeha touches `<dir>/<service>` whenever it restarts or reloads a service.
pub const ACTIVATION_STAMPS: &str = "/var/lib/kubeha/activated";
pub const CA_CERT: &str = "/etc/kubernetes/pki/ca.crt";
pub const HOSTS_BEGIN: &str = "# BEGIN kubeha";
pub const HOSTS_END: &str = "# END kubeha";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Os {
    pub id: String,
    pub version_id: String,
    pub codename: String,
    pub pretty_name: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub active: bool,
    pub enabled: bool,
    /// When it last started (Unix microseconds), if it runs.
    pub since: Option<u64>,
    /// The unit file exists (the package is installed).
    pub present: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmState {
    /// `/etc/kubernetes/admin.conf`: this host ran `kubeadm init` or a control-plane join.
    pub admin_conf: bool,
    /// `/etc/kubernetes/kubelet.conf`: the kubelet finished its TLS bootstrap (joined).
    pub kubelet_conf: bool,
    /// `/etc/kubernetes/manifests/etcd.yaml`: an etcd member was set up here.
    pub etcd_manifest: bool,
    /// The cluster CA certificate (PEM), when present.
    pub ca_cert: Option<String>,
    /// Whether the cluster's `kubeadm-config` ConfigMap exists, asked of this control
    /// plane's own apiserver (not the load balancer): `Some(false)` means `kubeadm init`
    /// stopped before uploading its configuration; `None` that the API did not answer.
    pub config_uploaded: Option<bool>,
}

impl KubeadmState {
    /// Some kubeadm state exists, complete or not.
    pub fn any(&self) -> bool {
        self.admin_conf || self.kubelet_conf || self.etcd_manifest || self.ca_cert.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    pub os: Os,
    pub arch: String,
    pub cpus: u32,
    pub memory_mb: u64,
    pub swap_active: bool,
    pub swap_in_fstab: bool,
    /// `overlay` is in /proc/filesystems (loaded or built in).
    pub overlay: bool,
    /// /proc/sys/net/bridge exists: br_netfilter is loaded or built in.
    pub br_netfilter: bool,
    pub sysctls: BTreeMap<String, String>,
    /// Installed package versions.
    pub packages: BTreeMap<String, String>,
    pub held: BTreeSet<String>,
    pub services: BTreeMap<String, ServiceState>,
    /// sha256 of each managed file; `None` when absent.
    pub files: BTreeMap<String, Option<String>>,
    /// When kubeha last restarted or reloaded each service (Unix microseconds).
    pub activated: BTreeMap<String, u64>,
    /// Last modification (Unix microseconds) of each managed file that exists: a
    /// restart in the same second as the write must still count as after it.
    pub mtimes: BTreeMap<String, u64>,
    /// The lines between kubeha's markers in /etc/hosts.
    pub hosts_block: Option<String>,
    pub kubeadm: KubeadmState,
    /// The cluster name in [`CLUSTER_MARKER`].
    pub cluster_marker: Option<String>,
    /// A kubeadm process is running (an earlier, interrupted kubeha's, or another
    /// operator's): its state is in flux until it ends.
    pub kubeadm_running: bool,
}

impl HostFacts {
    pub fn service(&self, name: &str) -> ServiceState {
        self.services.get(name).copied().unwrap_or_default()
    }

    pub fn sysctl(&self, key: &str) -> Option<&str> {
        self.sysctls.get(key).map(String::as_str)
    }
}

/// The one script that prints every fact; `files` are the managed paths to hash, and
/// `apiserver` this control plane's own API address (`https://IP:6443`).
pub fn script(files: &[String], apiserver: Option<&str>) -> String {
    let mut s = String::from(
        r#"export LC_ALL=C
. /etc/os-release 2>/dev/null
echo "os.id=$ID"
echo "os.version_id=$VERSION_ID"
echo "os.codename=$VERSION_CODENAME"
echo "os.pretty_name=$PRETTY_NAME"
echo "arch=$(uname -m)"
echo "cpus=$(nproc)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "swap_active=$(awk 'NR > 1' /proc/swaps | wc -l)"
echo "swap_in_fstab=$(grep -Ec '^[^#]\S*\s+\S+\s+swap\s' /etc/fstab 2>/dev/null)"
echo "overlay=$(grep -cw overlay /proc/filesystems)"
echo "br_netfilter=$([ -d /proc/sys/net/bridge ] && echo 1 || echo 0)"
"#,
    );
    for key in SYSCTLS {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        s.push_str(&format!(
            "echo \"sysctl.{key}=$(cat {} 2>/dev/null)\"\n",
            quote(&path)
        ));
    }
    s.push_str(&format!(
        "dpkg-query -W -f='pkg.${{Package}}=${{Version}} ${{db:Status-Abbrev}}\\n' {} 2>/dev/null | awk '$2 ~ /^.i/ {{print $1}}'\n",
        PACKAGES.join(" ")
    ));
    s.push_str("apt-mark showhold 2>/dev/null | sed 's/^/held=/'\n");
    for svc in SERVICES {
        // ActiveEnterTimestamp is empty for a unit that never ran.
        s.push_str(&format!(
            "t=$(systemctl show --timestamp=us+utc -p ActiveEnterTimestamp --value {svc} 2>/dev/null)\n\
             [ -f {ACTIVATION_STAMPS}/{svc} ] && echo \"stamp.{svc}=$(stat -c %.6Y {ACTIVATION_STAMPS}/{svc} | tr -d .)\"\n\
             echo \"svc.{svc}=$(systemctl is-active {svc} 2>/dev/null)/$(systemctl is-enabled {svc} 2>/dev/null)/$([ -n \"$t\" ] && date -d \"$t\" +%s%6N)\"\n"
        ));
    }
    for f in files {
        let q = quote(f);
        s.push_str(&format!(
            "if [ -f {q} ]; then echo \"file.{f}=$(sha256sum < {q} | cut -d' ' -f1)\"; echo \"mtime.{f}=$(stat -c %.6Y {q} | tr -d .)\"; else echo \"file.{f}=\"; fi\n"
        ));
    }
    s.push_str(&format!(
        r#"sed -n '/^{HOSTS_BEGIN}$/,/^{HOSTS_END}$/p' /etc/hosts 2>/dev/null | sed '1d;$d' | sed 's/^/hosts_block=/'
for f in admin.conf kubelet.conf manifests/etcd.yaml; do [ -f "/etc/kubernetes/$f" ] && echo "kubeadm.$f=1"; done
[ -f {CA_CERT} ] && echo "kubeadm.ca=$(base64 -w0 {CA_CERT})"
[ -f {CLUSTER_MARKER} ] && echo "cluster_marker=$(head -n1 {CLUSTER_MARKER})"
pgrep -x kubeadm >/dev/null && echo "kubeadm_running=1"
"#
    ));
    if let Some(api) = apiserver {
        // NotFound is an answer; any other failure leaves the fact unknown.
        s.push_str(&format!(
            r#"if [ -f /etc/kubernetes/admin.conf ] && command -v kubectl >/dev/null; then
  out=$(kubectl --kubeconfig /etc/kubernetes/admin.conf --server {api} --request-timeout 5s \
    -n kube-system get configmap kubeadm-config -o name 2>&1) && echo kubeadm.config=1 \
    || {{ echo "$out" | grep -q NotFound && echo kubeadm.config=0; }}
fi
"#,
            api = quote(api)
        ));
    }
    s.push_str("exit 0\n");
    s
}

/// Parses the script's output. Unknown or malformed lines are ignored: facts only ever
/// make the planner do more, never skip work.
pub fn parse(output: &str) -> HostFacts {
    let mut f = HostFacts::default();
    let mut block = Vec::new();
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "os.id" => f.os.id = value.into(),
            "os.version_id" => f.os.version_id = value.into(),
            "os.codename" => f.os.codename = value.into(),
            "os.pretty_name" => f.os.pretty_name = value.into(),
            "arch" => f.arch = value.into(),
            "cpus" => f.cpus = value.trim().parse().unwrap_or(0),
            "mem_kb" => f.memory_mb = value.trim().parse::<u64>().unwrap_or(0) / 1024,
            "swap_active" => f.swap_active = value.trim() != "0",
            "swap_in_fstab" => f.swap_in_fstab = value.trim() != "0",
            "overlay" => f.overlay = value.trim() != "0",
            "br_netfilter" => f.br_netfilter = value.trim() == "1",
            "held" => {
                f.held.insert(value.trim().into());
            }
            "hosts_block" => block.push(value),
            "kubeadm.admin.conf" => f.kubeadm.admin_conf = true,
            "kubeadm.kubelet.conf" => f.kubeadm.kubelet_conf = true,
            "kubeadm.manifests/etcd.yaml" => f.kubeadm.etcd_manifest = true,
            "kubeadm.config" => f.kubeadm.config_uploaded = Some(value.trim() == "1"),
            "kubeadm_running" => f.kubeadm_running = true,
            "kubeadm.ca" => {
                use base64::Engine;
                f.kubeadm.ca_cert = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
            }
            "cluster_marker" => {
                f.cluster_marker = Some(value.trim().into()).filter(|v: &String| !v.is_empty())
            }
            _ => {
                if let Some(k) = key.strip_prefix("sysctl.") {
                    f.sysctls.insert(k.into(), value.trim().into());
                } else if let Some(name) = key.strip_prefix("pkg.") {
                    f.packages
                        .insert(name.into(), value.split(' ').next().unwrap_or("").into());
                } else if let Some(name) = key.strip_prefix("svc.") {
                    let mut parts = value.split('/');
                    let active = parts.next().unwrap_or("");
                    let enabled = parts.next().unwrap_or("");
                    f.services.insert(
                        name.into(),
                        ServiceState {
                            active: active == "active",
                            enabled: enabled == "enabled",
                            since: parts
                                .next()
                                .and_then(|t| t.trim().parse().ok())
                                .filter(|t| *t > 0),
                            present: !enabled.is_empty() && enabled != "not-found",
                        },
                    );
                } else if let Some(svc) = key.strip_prefix("stamp.") {
                    if let Ok(t) = value.trim().parse() {
                        f.activated.insert(svc.into(), t);
                    }
                } else if let Some(path) = key.strip_prefix("mtime.") {
                    if let Ok(t) = value.trim().parse() {
                        f.mtimes.insert(path.into(), t);
                    }
                } else if let Some(path) = key.strip_prefix("file.") {
                    f.files.insert(
                        path.into(),
                        Some(value.to_string()).filter(|v| !v.is_empty()),
                    );
                }
            }
        }
    }
    if !block.is_empty() {
        f.hosts_block = Some(block.iter().map(|l| format!("{l}\n")).collect());
    }
    f
}

/// sha256 of bytes, as the facts script reports it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
pub mod recorded;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fresh_debian_host() {
        let f = parse(recorded::FRESH);
        assert_eq!(f.os.id, "debian");
        assert_eq!(f.os.codename, "bookworm");
        assert_eq!((f.cpus, f.memory_mb), (2, 4000));
        assert!(f.swap_active && f.swap_in_fstab);
        assert!(f.overlay && !f.br_netfilter);
        assert_eq!(f.sysctl("net.ipv4.ip_forward"), Some("0"));
        assert_eq!(f.sysctl("net.bridge.bridge-nf-call-iptables"), Some(""));
        assert!(f.packages.is_empty() && f.held.is_empty());
        assert!(!f.service("containerd").present);
        assert_eq!(f.files.get("/etc/sysctl.d/k8s.conf"), Some(&None));
        assert!(!f.kubeadm.any());
        assert_eq!(f.cluster_marker, None);
    }

    #[test]
    fn parses_a_joined_control_plane() {
        let f = parse(recorded::CONTROL_PLANE);
        assert_eq!(
            f.packages.get("kubeadm").map(String::as_str),
            Some("1.31.0-1.1")
        );
        assert!(f.held.contains("kubelet"));
        assert_eq!(
            f.service("kubelet"),
            ServiceState {
                active: true,
                enabled: true,
                since: Some(1764000000),
                present: true
            }
        );
        assert_eq!(f.mtimes.get("/etc/sysctl.d/k8s.conf"), Some(&1763999000));
        assert!(f.kubeadm.admin_conf && f.kubeadm.kubelet_conf && f.kubeadm.etcd_manifest);
        assert!(f
            .kubeadm
            .ca_cert
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            f.hosts_block.as_deref(),
            Some("10.0.0.5 load-balancer.local\n")
        );
        assert_eq!(f.cluster_marker.as_deref(), Some("k8s-ha"));
        assert_eq!(f.kubeadm.config_uploaded, Some(true));
        assert!(!f.kubeadm_running);
        assert!(parse("kubeadm_running=1\nkubeadm.config=0\n").kubeadm_running);
        assert_eq!(
            parse("kubeadm.config=0\n").kubeadm.config_uploaded,
            Some(false)
        );
        assert_eq!(
            f.files.get("/etc/sysctl.d/k8s.conf").cloned().flatten(),
            Some(sha256_hex(crate::render::node::sysctl().as_bytes()))
        );
    }

    #[test]
    fn script_is_valid_sh_and_quotes_paths() {
        let s = script(
            &["/etc/a b.conf".to_string()],
            Some("https://10.0.0.11:6443"),
        );
        assert!(s.contains("if [ -f '/etc/a b.conf' ]"));
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn script_runs_on_this_machine() {
        // The script only reads; running it locally checks the commands and the parser agree.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&["/etc/hostname".into()], None))
            .output()
            .unwrap();
        let f = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(f.cpus >= 1 && f.memory_mb > 0 && !f.arch.is_empty());
        assert!(f.files.contains_key("/etc/hostname"));
        assert_eq!(f.services.len(), SERVICES.len());
    }
}
