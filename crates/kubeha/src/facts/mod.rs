//! What a host is now, learned in one round trip: a generated shell script prints
//! `key=value` lines and a pure parser turns them into [`HostFacts`]. A control plane's
//! script also lists etcd's members, so cluster facts cost no extra round trip.

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::quote::shell as quote;
use crate::render::hosts_entry;
use crate::spec::{Cluster, EndpointHost};

/// Services kubeha manages.
pub const SERVICES: [&str; 5] = [
    "haproxy",
    "keepalived",
    "containerd",
    "kubelet",
    hosts_entry::UNIT,
];
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
    /// cloud-init regenerates /etc/hosts from its template at every boot.
    pub cloud_init_hosts: bool,
    /// The lines between kubeha's markers in that template, when cloud-init uses it.
    pub template_block: Option<String>,
    /// How the host resolves the API endpoint name; `None` when the endpoint is an address.
    pub endpoint: Option<EndpointResolution>,
    pub kubeadm: KubeadmState,
    /// The cluster name in [`CLUSTER_MARKER`].
    pub cluster_marker: Option<String>,
    /// A kubeadm process is running (an earlier, interrupted kubeha's, or another
    /// operator's): its state is in flux until it ends.
    pub kubeadm_running: bool,
    /// etcd as this control plane's `etcdctl` sees it; `None` when etcd did not answer.
    pub etcd: Option<cluster::EtcdView>,
    /// A control plane's certificates (see [`CERTIFICATES_SECTION`]): path → notAfter
    /// (Unix seconds).
    pub certificates: BTreeMap<String, i64>,
    /// The host's clock (Unix seconds) when it reported its certificates: their expiry is
    /// judged by the clock of the host that uses them.
    pub clock: Option<i64>,
}

/// The addresses a host finds for the endpoint name, by source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointResolution {
    /// As every program there resolves it now (`getent ahosts`), kubeha's block included.
    pub resolved: BTreeSet<String>,
    /// From /etc/hosts lines outside kubeha's block.
    pub hosts_file: BTreeSet<String>,
    /// From the name services after `files` in nsswitch.conf (DNS, mDNS, systemd-resolved).
    pub name_services: BTreeSet<String>,
}

impl HostFacts {
    /// The endpoint name resolves without kubeha's block, so none is needed. systemd-resolved
    /// answers from /etc/hosts too: while the block is there, a name service that only
    /// repeats its addresses is no evidence, and the block stays.
    pub fn endpoint_resolves_without_kubeha(&self) -> bool {
        let Some(e) = &self.endpoint else {
            return false;
        };
        let ours: BTreeSet<&str> = self
            .hosts_block
            .iter()
            .flat_map(|b| b.lines())
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        !e.hosts_file.is_empty() || e.name_services.iter().any(|a| !ours.contains(a.as_str()))
    }

    pub fn service(&self, name: &str) -> ServiceState {
        self.services.get(name).copied().unwrap_or_default()
    }

    pub fn sysctl(&self, key: &str) -> Option<&str> {
        self.sysctls.get(key).map(String::as_str)
    }

    /// The certificate that expires first, judged by the host's clock.
    pub fn nearest_certificate(&self) -> Option<CertificateExpiry> {
        let clock = self.clock?;
        let (file, not_after) = self.certificates.iter().min_by_key(|(_, t)| **t)?;
        Some(CertificateExpiry {
            file: file.clone(),
            not_after: *not_after,
            days_left: crate::dr::certs::days_left(*not_after, clock),
        })
    }
}

/// When a certificate ends (named as `kubeha certs check` names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateExpiry {
    pub file: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Whole days from the host's clock; negative once expired.
    pub days_left: i64,
}

impl CertificateExpiry {
    /// Inside `kubeha certs`' warning threshold (30 days), or expired.
    pub fn warn(&self) -> bool {
        self.days_left < crate::dr::certs::WARN_DAYS
    }

    /// The expiry as a person reads it: the date, and the days left or since.
    pub fn describe(&self) -> String {
        let date = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(self.not_after).unwrap_or(0));
        let date = humantime::format_rfc3339_seconds(date).to_string();
        let date = date.split('T').next().unwrap_or_default().to_string();
        match self.days_left {
            d if d < 0 => format!("{} expired on {date} ({} day(s) ago)", self.file, -d),
            d => format!("{} expires on {date} (in {d} day(s))", self.file),
        }
    }
}

/// The endpoint's name, which the facts resolve on each host; `None` for an address.
pub fn endpoint_name(cluster: &Cluster) -> Option<&str> {
    match &cluster.api_endpoint.host {
        EndpointHost::Name(name) => Some(name),
        EndpointHost::Ip(_) => None,
    }
}

/// Prints `key=` and the addresses (first column of `getent ahosts`) the command prints.
fn addresses(key: &str, command: &str) -> String {
    format!(
        "echo \"{key}=$({command} 2>/dev/null | awk '{{print $1}}' | sort -u | tr '\\n' ' ')\"\n"
    )
}

/// The one script that prints every fact; `files` are the managed paths to hash,
/// `apiserver` this control plane's own API address (`https://IP:6443`) and `endpoint`
/// the API endpoint's name.
pub fn script(files: &[String], apiserver: Option<&str>, endpoint: Option<&str>) -> String {
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
if {manages}; then
  echo cloud_init_hosts=1
  sed -n '/^{HOSTS_BEGIN}$/,/^{HOSTS_END}$/p' {template} | sed '1d;$d' | sed 's/^/template_block=/'
fi
for f in admin.conf kubelet.conf manifests/etcd.yaml; do [ -f "/etc/kubernetes/$f" ] && echo "kubeadm.$f=1"; done
[ -f {CA_CERT} ] && echo "kubeadm.ca=$(base64 -w0 {CA_CERT})"
[ -f {CLUSTER_MARKER} ] && echo "cluster_marker=$(head -n1 {CLUSTER_MARKER})"
pgrep -x kubeadm >/dev/null && echo "kubeadm_running=1"
"#,
        manages = hosts_entry::CLOUD_INIT_MANAGES_HOSTS,
        template = hosts_entry::CLOUD_INIT_TEMPLATE,
    ));
    if let Some(name) = endpoint {
        // A resolver that does not answer must not hold up the facts.
        let n = quote(name);
        s.push_str(&format!("n={n}\n"));
        s.push_str(&addresses(
            "endpoint.resolved",
            "timeout 5 getent ahosts \"$n\"",
        ));
        s.push_str(&addresses(
            "endpoint.hosts_file",
            &format!(
                "sed '/^{HOSTS_BEGIN}$/,/^{HOSTS_END}$/d' /etc/hosts | awk -v n=\"$n\" '$1 !~ /^#/ {{ for (i = 2; i <= NF && $i !~ /^#/; i++) if (tolower($i) == tolower(n)) print $1 }}'"
            ),
        ));
        // The same lookup without `files`: e.g. `mdns4_minimal [NOTFOUND=return] dns`.
        s.push_str(
            "services=$(sed -n 's/^hosts:[[:space:]]*//p' /etc/nsswitch.conf 2>/dev/null | sed -E 's/(^|[[:space:]])files([[:space:]]|$)/\\1\\2/g')\n",
        );
        s.push_str(&addresses(
            "endpoint.name_services",
            "case \"$services\" in *[a-z]*) timeout 5 getent -s \"hosts:$services\" ahosts \"$n\";; esac",
        ));
    }
    if apiserver.is_some() {
        // Base64 keeps etcdctl's JSON on one line; an etcd that does not answer prints none.
        let etcdctl = crate::render::kubeadm::etcdctl;
        s.push_str(&format!(
            "if [ -f /etc/kubernetes/pki/etcd/healthcheck-client.crt ] && command -v etcdctl >/dev/null; then\n\
             \x20 echo \"etcd.members=$({} 2>/dev/null | base64 -w0)\"\n\
             \x20 echo \"etcd.health=$({} 2>/dev/null | base64 -w0)\"\n\
             \x20 echo \"etcd.status=$({} 2>/dev/null | base64 -w0)\"\n\
             fi\n",
            etcdctl("member list -w json"),
            etcdctl("endpoint health --cluster -w json"),
            etcdctl("endpoint status -w json"),
        ));
    }
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
    if apiserver.is_some() {
        s.push_str(CERTIFICATES_SECTION);
    }
    s.push_str("exit 0\n");
    s
}

/// A control plane's certificates (kubeadm's under /etc/kubernetes/pki and the client
/// certificates its kubeconfigs embed) for `status` and the plan's expiry warnings, in one
/// `awk` (plus `date` for the host's clock): `cert.PATH=` the base64 of each `.crt`
/// file's first certificate (its PEM body, which is the DER in base64) or of a
/// kubeconfig's `client-certificate-data` (a PEM). Private keys are never read.
const CERTIFICATES_SECTION: &str = concat!(
    "# --- certificates: expiry (kubeha status, plan warnings) ---\n",
    "if [ -d /etc/kubernetes/pki ]; then\n",
    "  set --\n",
    "  for f in /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt /etc/kubernetes/*.conf; do [ -f \"$f\" ] && set -- \"$@\" \"$f\"; done\n",
    "  echo \"clock=$(date +%s)\"\n",
    "  [ $# -gt 0 ] && awk 'FNR == 1 { pem = 0; seen = 0 }\n",
    "    /^ *client-certificate-data:/ { print \"cert.\" FILENAME \"=\" $2; next }\n",
    "    /^-----BEGIN CERTIFICATE-----/ { if (!seen) { pem = 1; body = \"\" }; next }\n",
    "    /^-----END CERTIFICATE-----/ { if (pem) print \"cert.\" FILENAME \"=\" body; pem = 0; seen = 1; next }\n",
    "    pem { body = body $0 }' \"$@\" 2>/dev/null\n",
    "fi\n",
    "# --- end of certificates ---\n",
);

/// Parses the script's output. Unknown or malformed lines are ignored: facts only ever
/// make the planner do more, never skip work.
pub fn parse(output: &str) -> HostFacts {
    let mut f = HostFacts::default();
    let mut block = Vec::new();
    let mut template_block = Vec::new();
    let mut etcd: BTreeMap<&str, String> = BTreeMap::new();
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
            "template_block" => template_block.push(value),
            "cloud_init_hosts" => f.cloud_init_hosts = true,
            "kubeadm.admin.conf" => f.kubeadm.admin_conf = true,
            "kubeadm.kubelet.conf" => f.kubeadm.kubelet_conf = true,
            "kubeadm.manifests/etcd.yaml" => f.kubeadm.etcd_manifest = true,
            "kubeadm.config" => f.kubeadm.config_uploaded = Some(value.trim() == "1"),
            "kubeadm_running" => f.kubeadm_running = true,
            "clock" => f.clock = value.trim().parse().ok(),
            "etcd.members" | "etcd.health" | "etcd.status" => {
                etcd.insert(key, decode_base64(value).unwrap_or_default());
            }
            "kubeadm.ca" => {
                f.kubeadm.ca_cert = decode_base64(value);
            }
            "cluster_marker" => {
                f.cluster_marker = Some(value.trim().into()).filter(|v: &String| !v.is_empty())
            }
            _ => {
                if let Some(source) = key.strip_prefix("endpoint.") {
                    let e = f.endpoint.get_or_insert_with(Default::default);
                    let set = match source {
                        "resolved" => &mut e.resolved,
                        "hosts_file" => &mut e.hosts_file,
                        "name_services" => &mut e.name_services,
                        _ => continue,
                    };
                    set.extend(value.split_whitespace().map(String::from));
                } else if let Some(k) = key.strip_prefix("sysctl.") {
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
                } else if let Some(path) = key.strip_prefix("cert.") {
                    let expiry =
                        decode_base64_bytes(value).and_then(|b| crate::pki::not_after(&b).ok());
                    if let Some(t) = expiry {
                        f.certificates.insert(path.into(), t);
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
    f.hosts_block = lines(&block);
    f.template_block = lines(&template_block);
    if let Some(members) = etcd.get("etcd.members") {
        let other = |k: &str| etcd.get(k).map_or("", String::as_str);
        f.etcd = cluster::parse_etcd(members, other("etcd.health"), other("etcd.status"));
    }
    f
}

fn decode_base64(value: &str) -> Option<String> {
    decode_base64_bytes(value).and_then(|b| String::from_utf8(b).ok())
}

fn decode_base64_bytes(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
}

fn lines(lines: &[&str]) -> Option<String> {
    (!lines.is_empty()).then(|| lines.iter().map(|l| format!("{l}\n")).collect())
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
            Some("load-balancer.local"),
        );
        assert!(s.contains("if [ -f '/etc/a b.conf' ]"));
        assert!(s.contains("\nn=load-balancer.local\n"));
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
            .arg(script(&["/etc/hostname".into()], None, Some("localhost")))
            .output()
            .unwrap();
        let f = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(f.cpus >= 1 && f.memory_mb > 0 && !f.arch.is_empty());
        assert!(f.files.contains_key("/etc/hostname"));
        assert_eq!(f.services.len(), SERVICES.len());
        // This machine's /etc/hosts maps localhost, outside any kubeha block.
        let e = f.endpoint.clone().expect("the endpoint was resolved");
        assert!(e.resolved.contains("127.0.0.1"), "{e:?}");
        assert!(e.hosts_file.contains("127.0.0.1"), "{e:?}");
        assert!(f.endpoint_resolves_without_kubeha());
    }

    #[test]
    fn endpoint_resolution_is_parsed_by_source() {
        let f = parse(recorded::CONTROL_PLANE);
        let e = f.endpoint.clone().unwrap();
        assert_eq!(e.resolved, BTreeSet::from(["10.0.0.5".to_string()]));
        assert!(e.hosts_file.is_empty() && e.name_services.is_empty());
        assert!(
            !f.endpoint_resolves_without_kubeha(),
            "only through kubeha's block"
        );
        let fresh = parse(recorded::FRESH);
        assert!(fresh.endpoint.unwrap().resolved.is_empty());
        assert!(!fresh.cloud_init_hosts && fresh.template_block.is_none());
        assert_eq!(
            parse("os.id=debian\n").endpoint,
            None,
            "not asked: an IP endpoint"
        );
    }

    #[test]
    fn a_name_service_that_repeats_kubehas_block_is_no_evidence() {
        let mut f = parse(recorded::CONTROL_PLANE);
        let e = f.endpoint.as_mut().unwrap();
        // systemd-resolved serves /etc/hosts, kubeha's block included.
        e.name_services.insert("10.0.0.5".into());
        assert!(!f.endpoint_resolves_without_kubeha());
        // Without the block, the same answer is DNS's own.
        f.hosts_block = None;
        assert!(f.endpoint_resolves_without_kubeha());
        // DNS with another address, or the operator's own /etc/hosts line, is evidence.
        let mut f = parse(recorded::CONTROL_PLANE);
        let e = f.endpoint.as_mut().unwrap();
        e.name_services.insert("10.0.0.7".into());
        assert!(f.endpoint_resolves_without_kubeha());
        let mut f = parse(recorded::CONTROL_PLANE);
        f.endpoint
            .as_mut()
            .unwrap()
            .hosts_file
            .insert("10.0.0.5".into());
        assert!(f.endpoint_resolves_without_kubeha());
    }

    #[test]
    fn a_control_planes_etcd_view_is_parsed_from_base64_lines() {
        use base64::Engine;
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let out = format!(
            "etcd.members={}\netcd.health={}\netcd.status={}\n",
            b(cluster::tests::MEMBERS),
            b(cluster::tests::HEALTH),
            b(cluster::tests::STATUS)
        );
        let etcd = parse(&out).etcd.unwrap();
        assert_eq!(etcd.members.len(), 3);
        assert!(etcd.members[0].leader);
        // etcd did not answer: the lines are there, empty.
        assert_eq!(parse("etcd.members=\netcd.health=\n").etcd, None);
        assert_eq!(parse(recorded::FRESH).etcd, None);
    }

    #[test]
    fn the_certificates_section_reads_crt_files_and_kubeconfigs_but_no_key() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubernetes");
        std::fs::create_dir_all(root.join("pki/etcd")).unwrap();
        std::fs::write(root.join("pki/ca.crt"), recorded::CA_PEM).unwrap();
        // A chain: only the first certificate counts.
        let chain = format!("{}{}", recorded::CA_PEM, recorded::CA_PEM);
        std::fs::write(root.join("pki/etcd/server.crt"), chain).unwrap();
        std::fs::write(
            root.join("pki/ca.key"),
            "-----BEGIN PRIVATE KEY-----\nS0VZ\n",
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(recorded::CA_PEM);
        std::fs::write(
            root.join("admin.conf"),
            format!("users:\n- name: a\n  user:\n    client-certificate-data: {b64}\n    client-key-data: S0VZ\n"),
        )
        .unwrap();
        std::fs::write(root.join("kubelet.conf"), "users: []\n").unwrap();
        let section = CERTIFICATES_SECTION.replace("/etc/kubernetes", root.to_str().unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&section)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("S0VZ"), "a key was read:\n{stdout}");
        let f = parse(&stdout);
        let at = |p: &str| root.join(p).display().to_string();
        let end = crate::pki::not_after(recorded::CA_PEM.as_bytes()).unwrap();
        assert_eq!(
            f.certificates,
            BTreeMap::from([
                (at("admin.conf"), end),
                (at("pki/ca.crt"), end),
                (at("pki/etcd/server.crt"), end),
            ]),
            "{stdout}"
        );
        let clock = f.clock.expect("the host's clock");
        let nearest = f.nearest_certificate().unwrap();
        assert_eq!(nearest.days_left, crate::dr::certs::days_left(end, clock));
        assert!(!nearest.warn());
        // Without kubeadm's folder: no certificates, no clock.
        let none = CERTIFICATES_SECTION.replace("/etc/kubernetes", "/nonexistent");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&none)
            .output()
            .unwrap();
        assert!(out.stdout.is_empty());
        // Only control planes run it.
        assert!(!script(&[], None, None).contains("client-certificate-data"));
        assert!(script(&[], Some("https://10.0.0.11:6443"), None).contains(CERTIFICATES_SECTION));
    }

    #[test]
    fn certificate_expiry_is_judged_by_the_hosts_clock() {
        let mut f = HostFacts::default();
        assert_eq!(f.nearest_certificate(), None);
        f.certificates = BTreeMap::from([
            ("/a.crt".into(), 86_400 * 40),
            ("/b.crt".into(), 86_400 * 45),
        ]);
        assert_eq!(f.nearest_certificate(), None, "no clock, no verdict");
        f.clock = Some(86_400 * 11);
        let n = f.nearest_certificate().unwrap();
        assert_eq!((n.file.as_str(), n.days_left), ("/a.crt", 29));
        assert!(n.warn());
        assert_eq!(n.describe(), "/a.crt expires on 1970-02-10 (in 29 day(s))");
        f.clock = Some(86_400 * 50);
        assert_eq!(
            f.nearest_certificate().unwrap().describe(),
            "/a.crt expired on 1970-02-10 (10 day(s) ago)"
        );
        assert_eq!(
            parse("clock=1796126400\ncert./x.crt=bm90IGEgY2VydA==\n")
                .certificates
                .len(),
            0
        );
    }

    #[test]
    fn cloud_init_template_facts() {
        let f = parse("cloud_init_hosts=1\ntemplate_block=10.0.0.5 load-balancer.local\n");
        assert!(f.cloud_init_hosts);
        assert_eq!(
            f.template_block.as_deref(),
            Some("10.0.0.5 load-balancer.local\n")
        );
    }
}
