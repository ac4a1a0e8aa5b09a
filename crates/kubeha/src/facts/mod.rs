//! What a host is now, learned in one round trip: a generated shell script prints
//! `key=value` lines and a pure parser turns them into [`HostFacts`]. A control plane's
//! script also lists etcd's members, so cluster facts cost no extra round trip.

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::quote::shell as quote;
use crate::render::{self, hosts_entry};
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
/// The apiserver's serving certificate, whose SANs the plan compares with the spec's.
pub const APISERVER_CERT: &str = "/etc/kubernetes/pki/apiserver.crt";
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
    /// Whether the cluster's `kubeadm-config` ConfigMap exists: not asked by the script
    /// (a kubectl per control plane would cost every run ~0.1 s of CPU each) but set by
    /// the survey from the API's own answer on each control plane with an admin
    /// kubeconfig. `Some(false)` means `kubeadm init` stopped before uploading its
    /// configuration; `None` that the API did not answer.
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
    /// The subject alternative names of [`APISERVER_CERT`], when it was read.
    pub apiserver_sans: Option<Vec<String>>,
    /// The host's clock (Unix seconds) when it reported its certificates: their expiry is
    /// judged by the clock of the host that uses them.
    pub clock: Option<i64>,
    /// A load balancer's HAProxy and virtual IP ([`load_balancer_queries`]); `None` on
    /// other hosts.
    pub load_balancer: Option<LoadBalancerFacts>,
    /// Files holding kubeadm secrets that a killed run left ([`render::SECRET_FILES`] and
    /// their write temporaries): a run removes them only where they are.
    pub secret_leftovers: BTreeSet<String>,
}

/// What a load balancer reports in the facts' round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerFacts {
    /// HAProxy's statistics (CSV), or why they could not be read.
    pub stats: Result<String, String>,
    /// Whether this host holds the virtual IP; `None` without one.
    pub holds_vip: Option<bool>,
}

/// A load balancer's questions: HAProxy's statistics (base64 CSV, or curl's error) and,
/// with a virtual IP, whether this host holds it. Part of its facts script, and alone
/// what `verify` polls during its drills.
pub fn load_balancer_queries(cluster: &crate::spec::Cluster) -> String {
    let mut s = format!(
        "if lb=$({} 2>&1); then printf 'lb.stats=%s\\n' \"$(printf '%s' \"$lb\" | base64 -w0)\"; \
         else printf 'lb.stats_error=%s\\n' \"$(printf '%s' \"$lb\" | tr '\\n' ' ')\"; fi\n",
        crate::render::haproxy::stats_command()
    );
    if let Some(vip) = &cluster.load_balancer.virtual_ip {
        s.push_str(&format!(
            "ip -o addr show | grep -qw {} && echo lb.vip=1 || echo lb.vip=0\n",
            quote(&vip.address.to_string())
        ));
    }
    s
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

/// The key prefix of output lines that carry a secret (a control plane's admin
/// kubeconfig): kept out of the host log (see [`crate::remote::Remote::run_keeping_secrets`])
/// and out of [`HostFacts`].
pub const SECRET_PREFIX: &str = "secret.";
/// Where kubeadm leaves the admin kubeconfig on a control plane.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
const ADMIN_CONF_KEY: &str = "secret.admin.conf";

/// Prints `key=` once (so an empty answer is still an answer), then `key=ADDRESS` for the
/// first column of each line `command` prints.
fn addresses(key: &str, command: &str) -> String {
    format!(
        "echo {key}=\n{command} 2>/dev/null | while read -r a _; do printf '%s\\n' \"{key}=$a\"; done\n"
    )
}

/// A control plane's slow questions (etcdctl is a Go program that starts, dials and
/// handshakes for tens of milliseconds each time), started in the background first so
/// they overlap each other and the rest of the script. Each writes its own file in a
/// private temporary folder: lines from concurrent writers would interleave. The script
/// prints the files at its end (`wait; cat`) and the folder goes when the shell exits.
fn control_plane_queries() -> String {
    let mut s = String::from("d=$(mktemp -d) || exit 1\ntrap 'rm -rf \"$d\"' EXIT\n");
    // Base64 keeps etcdctl's JSON on one line; an etcd that does not answer prints none.
    let etcdctl = crate::render::kubeadm::etcdctl;
    s.push_str("if [ -f /etc/kubernetes/pki/etcd/healthcheck-client.crt ] && command -v etcdctl >/dev/null; then\n");
    for (key, args) in [
        ("members", "member list -w json"),
        ("health", "endpoint health --cluster -w json"),
        ("status", "endpoint status -w json"),
    ] {
        s.push_str(&format!(
            "  {{ printf etcd.{key}=; {} 2>/dev/null | base64 -w0; echo; }} > \"$d/etcd.{key}\" &\n",
            etcdctl(args)
        ));
    }
    s.push_str("fi\n");
    s
}

/// The one script that prints every fact; `files` are the managed paths to hash,
/// `control_plane` whether the host is one (it asks etcd too) and `endpoint` the API
/// endpoint's name.
///
/// It runs on every host at every `plan`, so it forks as little as it can: shell
/// builtins (`read`, `[`, `printf`) read small files, one `awk` reads /proc and
/// /etc/hosts, one `systemctl show` covers every service, one `sha256sum` and one
/// `stat` cover every managed file, and the parser (not the shell) reformats values.
/// Add a fact as its own section with a `key=value` line and a match arm in [`parse`].
/// `load_balancer`: a load balancer's [`load_balancer_queries`].
pub fn script(
    files: &[String],
    control_plane: bool,
    endpoint: Option<&str>,
    load_balancer: Option<&str>,
) -> String {
    let mut s = String::from(
        r#"export LC_ALL=C
. /etc/os-release 2>/dev/null
echo "os.id=$ID"
echo "os.version_id=$VERSION_ID"
echo "os.codename=$VERSION_CODENAME"
echo "os.pretty_name=$PRETTY_NAME"
printf arch=; uname -m
printf cpus=; nproc
[ -d /proc/sys/net/bridge ] && echo br_netfilter=1 || echo br_netfilter=0
"#,
    );
    if control_plane {
        s.push_str(&control_plane_queries());
    }
    for key in SYSCTLS {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        s.push_str(&format!(
            "v=; read -r v 2>/dev/null < {}; echo \"sysctl.{key}=$v\"\n",
            quote(&path)
        ));
    }
    // `${db:Status-Abbrev}` is `hi ` for a held, installed package: the parser reads
    // both the installed state and the hold from it.
    s.push_str(&format!(
        "dpkg-query -W -f='pkg.${{Package}}=${{Version}} ${{db:Status-Abbrev}}\\n' {} 2>/dev/null\n",
        PACKAGES.join(" ")
    ));
    // One block of properties per unit, blocks separated by an empty line.
    s.push_str(&format!(
        "systemctl show --timestamp=us+utc -p Id,LoadState,ActiveState,UnitFileState,ActiveEnterTimestamp {} 2>/dev/null \
         | while IFS= read -r l; do printf '%s\\n' \"unit.$l\"; done\n",
        SERVICES.join(" ")
    ));
    s.push_str(&format!(
        "cd {ACTIVATION_STAMPS} 2>/dev/null && stat -c 'stamp.%n=%.6Y' -- {} 2>/dev/null; cd /\n",
        SERVICES.join(" ")
    ));
    if !files.is_empty() {
        let list: Vec<String> = files.iter().map(|f| quote(f)).collect();
        let list = list.join(" ");
        s.push_str(&format!(
            "for f in {list}; do [ -f \"$f\" ] || printf '%s\\n' \"file.$f=\"; done\n\
             sha256sum -- {list} 2>/dev/null | while read -r h p; do printf '%s\\n' \"file.$p=$h\"; done\n\
             stat -c 'mtime.%n=%.6Y' -- {list} 2>/dev/null\n"
        ));
    }
    s.push_str(&format!(
        r#"t=
if {manages}; then
  echo cloud_init_hosts=1
  t={template}
fi
"#,
        manages = hosts_entry::CLOUD_INIT_MANAGES_HOSTS,
        template = hosts_entry::CLOUD_INIT_TEMPLATE,
    ));
    match endpoint {
        Some(name) => s.push_str(&format!("n={}\necho endpoint.hosts_file=\n", quote(name))),
        None => s.push_str("n=\n"),
    }
    // Builtins only: a glob that matches nothing stays itself and fails the test.
    s.push_str(&format!(
        "for f in {}; do {{ [ -e \"$f\" ] || [ -L \"$f\" ]; }} && printf 'secret_leftover=%s\\n' \"$f\"; done\n",
        render::secret_file_globs()
    ));
    // One awk over the files it can open (mawk stops at the first it cannot): memory,
    // swap, overlay, kubeha's block in /etc/hosts (and the cloud-init template), and the
    // lines outside that block naming the endpoint.
    s.push_str(&format!(
        r#"set --
for f in /proc/meminfo /proc/swaps /proc/filesystems /etc/fstab /etc/hosts $t; do [ -r "$f" ] && set -- "$@" "$f"; done
awk -v b='{HOSTS_BEGIN}' -v e='{HOSTS_END}' -v n="$n" -v t="$t" '
FNR == 1 {{ inb = 0 }}
FILENAME == "/proc/meminfo" && $1 == "MemTotal:" {{ print "mem_kb=" $2 }}
FILENAME == "/proc/swaps" && FNR > 1 {{ swaps++ }}
FILENAME == "/proc/filesystems" && $NF == "overlay" {{ overlay = 1 }}
FILENAME == "/etc/fstab" && $1 !~ /^#/ && $3 == "swap" {{ fstab++ }}
FILENAME == "/etc/hosts" || FILENAME == t {{
  if ($0 == b) {{ inb = 1; next }}
  if ($0 == e) {{ inb = 0; next }}
  if (inb) {{ print (FILENAME == t ? "template_block=" : "hosts_block=") $0; next }}
  if (FILENAME == "/etc/hosts" && n != "" && $1 !~ /^#/)
    for (i = 2; i <= NF && $i !~ /^#/; i++) if (tolower($i) == tolower(n)) print "endpoint.hosts_file=" $1
}}
END {{ print "swap_active=" swaps + 0; print "swap_in_fstab=" fstab + 0; print "overlay=" overlay + 0 }}
' "$@"
for f in admin.conf kubelet.conf manifests/etcd.yaml; do [ -f "/etc/kubernetes/$f" ] && echo "kubeadm.$f=1"; done
[ -f {CA_CERT} ] && {{ printf kubeadm.ca=; base64 -w0 {CA_CERT}; echo; }}
[ -f {CLUSTER_MARKER} ] && {{ m=; read -r m 2>/dev/null < {CLUSTER_MARKER}; printf '%s\n' "cluster_marker=$m"; }}
for c in /proc/[0-9]*/comm; do x=; read -r x 2>/dev/null < "$c"; [ "$x" = kubeadm ] && {{ echo kubeadm_running=1; break; }}; done
"#
    ));
    if endpoint.is_some() {
        // A resolver that does not answer must not hold up the facts.
        s.push_str(&addresses(
            "endpoint.resolved",
            "timeout 5 getent ahosts \"$n\"",
        ));
        // The same lookup without `files`: e.g. `mdns4_minimal [NOTFOUND=return] dns`.
        s.push_str(
            "v=; [ -r /etc/nsswitch.conf ] && while read -r k w; do [ \"$k\" = hosts: ] && v=$w; done < /etc/nsswitch.conf\n\
             set -f; services=; for w in $v; do [ \"$w\" = files ] || services=\"$services $w\"; done; set +f\n",
        );
        s.push_str(&addresses(
            "endpoint.name_services",
            "case \"$services\" in *[a-z]*) timeout 5 getent -s \"hosts:$services\" ahosts \"$n\";; esac",
        ));
    }
    if control_plane {
        // The kubeconfig the survey talks to the API with, in this same round trip (and
        // never in a file: it holds the cluster admin's key).
        s.push_str(&format!(
            "[ -f {ADMIN_CONF} ] && {{ printf {ADMIN_CONF_KEY}=; base64 -w0 {ADMIN_CONF}; echo; }}\n"
        ));
        s.push_str("wait\ncat \"$d\"/* 2>/dev/null\n");
        s.push_str(CERTIFICATES_SECTION);
    }
    s.push_str(load_balancer.unwrap_or_default());
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

/// The admin kubeconfig a control plane's script printed (untrimmed: pass it through
/// [`crate::api::trusted_kubeconfig`]); `None` when the host has none.
pub fn admin_kubeconfig(output: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let value = output
        .lines()
        .find_map(|l| l.strip_prefix(ADMIN_CONF_KEY)?.strip_prefix('='))?;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
}

/// A `systemctl show --timestamp=us+utc` time (`Tue 2026-12-01 12:00:00.123456 UTC`) in
/// Unix microseconds.
fn systemd_time_us(text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    let (_weekday, date, time, zone) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if zone != "UTC" || words.next().is_some() {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{date}T{time}Z")).ok()?;
    let us = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_micros();
    u64::try_from(us).ok()
}

/// `stat -c %.6Y` (seconds with a six-digit fraction) in microseconds.
fn stat_time_us(text: &str) -> Option<u64> {
    text.trim().replace('.', "").parse().ok()
}

/// Ends one unit's block of `systemctl show` properties.
fn end_unit(unit: &mut BTreeMap<&str, &str>, f: &mut HostFacts) {
    if let Some(id) = unit.get("Id") {
        let name = id.strip_suffix(".service").unwrap_or(id);
        f.services.insert(name.into(), service_state(unit));
    }
    unit.clear();
}

/// One unit's block of `systemctl show` properties.
fn service_state(props: &BTreeMap<&str, &str>) -> ServiceState {
    let file_state = props.get("UnitFileState").copied().unwrap_or("");
    let load_state = props.get("LoadState").copied().unwrap_or("");
    ServiceState {
        active: props.get("ActiveState") == Some(&"active"),
        enabled: file_state == "enabled",
        since: props
            .get("ActiveEnterTimestamp")
            .and_then(|t| systemd_time_us(t))
            .filter(|t| *t > 0),
        present: !file_state.is_empty() || !matches!(load_state, "" | "not-found"),
    }
}

/// Parses the script's output. Unknown or malformed lines are ignored: facts only ever
/// make the planner do more, never skip work.
pub fn parse(output: &str) -> HostFacts {
    let mut f = HostFacts::default();
    let mut block = Vec::new();
    let mut template_block = Vec::new();
    let mut etcd: BTreeMap<&str, String> = BTreeMap::new();
    let mut unit: BTreeMap<&str, &str> = BTreeMap::new();
    for line in output.lines() {
        if let Some(property) = line.strip_prefix("unit.") {
            match property.split_once('=') {
                Some((k, v)) => {
                    unit.insert(k, v);
                }
                None => end_unit(&mut unit, &mut f),
            }
            continue;
        }
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
            "hosts_block" => block.push(value),
            "template_block" => template_block.push(value),
            "cloud_init_hosts" => f.cloud_init_hosts = true,
            "kubeadm.admin.conf" => f.kubeadm.admin_conf = true,
            "kubeadm.kubelet.conf" => f.kubeadm.kubelet_conf = true,
            "kubeadm.manifests/etcd.yaml" => f.kubeadm.etcd_manifest = true,
            "kubeadm_running" => f.kubeadm_running = true,
            "secret_leftover" if render::is_secret_file(value) => {
                f.secret_leftovers.insert(value.into());
            }
            "clock" => f.clock = value.trim().parse().ok(),
            "lb.stats" => {
                load_balancer(&mut f).stats = Ok(decode_base64(value).unwrap_or_default())
            }
            "lb.stats_error" => load_balancer(&mut f).stats = Err(value.trim().into()),
            "lb.vip" => load_balancer(&mut f).holds_vip = Some(value.trim() == "1"),
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
                    // `VERSION STATUS`: the status's first letter is the selection
                    // (`h`: held), its second the state (`i`: installed).
                    let (version, status) = value.split_once(' ').unwrap_or((value, ""));
                    let mut status = status.chars();
                    if status.next() == Some('h') {
                        f.held.insert(name.into());
                    }
                    if status.next() == Some('i') {
                        f.packages.insert(name.into(), version.into());
                    }
                } else if let Some(svc) = key.strip_prefix("stamp.") {
                    if let Some(t) = stat_time_us(value) {
                        f.activated.insert(svc.into(), t);
                    }
                } else if let Some(path) = key.strip_prefix("cert.") {
                    let der = decode_base64_bytes(value).unwrap_or_default();
                    if let Ok(t) = crate::pki::not_after(&der) {
                        f.certificates.insert(path.into(), t);
                    }
                    if path == APISERVER_CERT {
                        f.apiserver_sans = crate::pki::subject_alt_names(&der).ok();
                    }
                } else if let Some(path) = key.strip_prefix("mtime.") {
                    if let Some(t) = stat_time_us(value) {
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
    end_unit(&mut unit, &mut f);
    f.hosts_block = lines(&block);
    f.template_block = lines(&template_block);
    if let Some(members) = etcd.get("etcd.members") {
        let other = |k: &str| etcd.get(k).map_or("", String::as_str);
        f.etcd = cluster::parse_etcd(members, other("etcd.health"), other("etcd.status"));
    }
    f
}

/// The load balancer's facts, made on its first line.
fn load_balancer(f: &mut HostFacts) -> &mut LoadBalancerFacts {
    f.load_balancer.get_or_insert_with(|| LoadBalancerFacts {
        stats: Err("HAProxy's statistics were not reported".into()),
        holds_vip: None,
    })
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
        assert!(!f.kubeadm_running);
        assert!(parse("kubeadm_running=1\n").kubeadm_running);
        assert_eq!(
            f.files.get("/etc/sysctl.d/k8s.conf").cloned().flatten(),
            Some(sha256_hex(crate::render::node::sysctl().as_bytes()))
        );
    }

    #[test]
    fn script_is_valid_sh_and_quotes_paths() {
        let lb = load_balancer_queries(&crate::render::test_support::seed_with_vip());
        let s = script(
            &["/etc/a b.conf".to_string()],
            true,
            Some("load-balancer.local"),
            Some(&lb),
        );
        assert!(s.contains("ip -o addr show | grep -qw 192.0.2.100 && echo lb.vip=1"));
        assert!(s.contains("for f in '/etc/a b.conf'; do"));
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
    fn a_load_balancers_haproxy_and_vip_come_with_its_facts() {
        use base64::Engine;
        let csv = "# pxname,svname,status\nkube-apiserver,k8s-master-1,UP\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(csv);
        let f = parse(&format!("os.id=debian\nlb.stats={b64}\nlb.vip=1\n"));
        assert_eq!(
            f.load_balancer,
            Some(LoadBalancerFacts {
                stats: Ok(csv.into()),
                holds_vip: Some(true)
            })
        );
        let f = parse("lb.stats_error=curl: (7) Failed to connect \n");
        assert_eq!(
            f.load_balancer.unwrap().stats,
            Err("curl: (7) Failed to connect".into())
        );
        assert_eq!(parse("os.id=debian\n").load_balancer, None);
        // Run here, where no HAProxy answers: the error and the VIP's absence are facts too.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(load_balancer_queries(
                &crate::render::test_support::seed_with_vip(),
            ))
            .output()
            .unwrap();
        let f = parse(&String::from_utf8_lossy(&out.stdout))
            .load_balancer
            .unwrap();
        assert!(f.stats.is_err(), "{f:?}");
        assert_eq!(f.holds_vip, Some(false));
    }

    #[test]
    fn script_runs_on_this_machine() {
        // The script only reads; running it locally checks the commands and the parser agree.
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("a b.conf");
        std::fs::write(&spaced, "x = 1\n").unwrap();
        let spaced = spaced.display().to_string();
        let missing = dir.path().join("missing.conf").display().to_string();
        let paths = ["/etc/hostname".to_string(), spaced.clone(), missing.clone()];
        // As a control plane's: its background queries find no etcd here.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&paths, true, Some("localhost"), None))
            .output()
            .unwrap();
        let f = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(f.cpus >= 1 && f.memory_mb > 0 && !f.arch.is_empty());
        assert!(f.files.contains_key("/etc/hostname"));
        assert_eq!(f.files[&spaced], Some(sha256_hex(b"x = 1\n")));
        assert_eq!(f.files[&missing], None);
        let mtime = std::fs::metadata(&spaced).unwrap().modified().unwrap();
        let us = mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        assert_eq!(
            f.mtimes[&spaced], us,
            "microseconds, as the file system has them"
        );
        assert!(!f.mtimes.contains_key(&missing));
        // This machine's /etc/hosts maps localhost, outside any kubeha block.
        let e = f.endpoint.clone().expect("the endpoint was resolved");
        assert!(e.resolved.contains("127.0.0.1"), "{e:?}");
        assert!(e.hosts_file.contains("127.0.0.1"), "{e:?}");
        assert!(f.endpoint_resolves_without_kubeha());
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn secret_files_a_killed_run_left_are_found_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let etc = dir.path().join("etc/kubeha");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("kubeadm-join.yaml"), "token: x").unwrap();
        std::fs::write(etc.join("kubeadm-init.yaml.kubeha-Ab12Cd"), "token: x").unwrap();
        // A dangling symlink is still a file `rm -f` removes.
        std::os::unix::fs::symlink("/nonexistent", etc.join("kubeadm-upload-certs.yaml")).unwrap();
        std::fs::write(etc.join("kubeadm-other.yaml"), "").unwrap();
        std::fs::write(etc.join("keepalived-check.sh"), "").unwrap();
        // The same script, aimed under the temporary root, and its answer read back as
        // the host's own paths.
        let script = script(&[], false, None, None)
            .replace(" /etc/kubeha/", &format!(" {root}/etc/kubeha/"));
        assert!(script.contains(&root));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).replace(&root, "");
        let facts = parse(&stdout);
        let found: Vec<&str> = facts.secret_leftovers.iter().map(String::as_str).collect();
        assert_eq!(
            found,
            [
                "/etc/kubeha/kubeadm-init.yaml.kubeha-Ab12Cd",
                "/etc/kubeha/kubeadm-join.yaml",
                "/etc/kubeha/kubeadm-upload-certs.yaml",
            ]
        );
        // A host cannot make the plan name any other path.
        let hostile = "secret_leftover=/etc/passwd\n\
            secret_leftover=/etc/kubeha/kubeadm-join.yaml.kubeha-../../x\n\
            secret_leftover=/etc/kubeha/kubeadm-join.yaml.kubeha-\n\
            secret_leftover=/etc/kubeha/kubeadm-join.yaml.kubeha-Ab1 rm\n";
        assert!(parse(hostile).secret_leftovers.is_empty());
    }

    #[test]
    fn a_running_kubeadm_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let kubeadm = dir.path().join("kubeadm");
        std::fs::copy("/bin/sleep", &kubeadm).unwrap();
        let run = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script(&[], false, None, None))
                .output()
                .unwrap();
            parse(&String::from_utf8_lossy(&out.stdout)).kubeadm_running
        };
        // (Not asserted false first: a lab container's kubeadm shows in this host's /proc.)
        let mut child = std::process::Command::new(&kubeadm)
            .arg("30")
            .spawn()
            .unwrap();
        let seen = run();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen, "a process named kubeadm runs");
    }

    #[test]
    fn services_come_from_one_systemctl_show() {
        let out = "unit.Id=kubelet.service\nunit.LoadState=loaded\nunit.ActiveState=active\n\
                   unit.UnitFileState=enabled\n\
                   unit.ActiveEnterTimestamp=Tue 2026-12-01 12:00:00.123456 UTC\nunit.\n\
                   unit.ActiveState=inactive\nunit.Id=haproxy.service\nunit.LoadState=not-found\n\
                   unit.UnitFileState=\nunit.ActiveEnterTimestamp=\nunit.\n\
                   unit.Id=keepalived.service\nunit.LoadState=masked\nunit.ActiveState=inactive\n\
                   unit.UnitFileState=masked\nunit.ActiveEnterTimestamp=\n";
        let f = parse(out);
        assert_eq!(
            f.service("kubelet"),
            ServiceState {
                active: true,
                enabled: true,
                since: Some(1_796_126_400_123_456),
                present: true
            }
        );
        assert_eq!(f.service("haproxy"), ServiceState::default());
        let masked = f.service("keepalived");
        assert!(masked.present && !masked.enabled && !masked.active);
        assert_eq!(f.services.len(), 3, "the last block needs no empty line");
        assert_eq!(systemd_time_us("Tue 2026-12-01 12:00:00.123456 CET"), None);
    }

    #[test]
    fn packages_and_holds_come_from_dpkgs_status() {
        let f = parse("pkg.kubelet=1.31.0-1.1 hi \npkg.kubeadm=1.31.0-1.1 ii \npkg.haproxy= un \npkg.etcd-client=3.4 rc \n");
        assert_eq!(
            f.packages.keys().collect::<Vec<_>>(),
            ["kubeadm", "kubelet"]
        );
        assert_eq!(f.held, BTreeSet::from(["kubelet".to_string()]));
    }

    #[test]
    fn the_admin_kubeconfig_is_read_with_the_facts_but_is_no_fact() {
        use base64::Engine;
        let conf = "apiVersion: v1\nusers:\n- user:\n    client-key-data: S0VZ\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(conf);
        let out = format!("os.id=debian\nkubeadm.admin.conf=1\n{ADMIN_CONF_KEY}={b64}\n");
        assert_eq!(admin_kubeconfig(&out).as_deref(), Some(conf.as_bytes()));
        let f = parse(&out);
        assert!(f.kubeadm.admin_conf);
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains(&b64) && !json.contains("S0VZ"), "{json}");
        assert!(ADMIN_CONF_KEY.starts_with(SECRET_PREFIX));
        assert_eq!(admin_kubeconfig("os.id=debian\n"), None);
        // Only a control plane's script reads it.
        assert!(!script(&[], false, None, None).contains(ADMIN_CONF_KEY));
        assert!(script(&[], true, None, None).contains(ADMIN_CONF_KEY));
    }

    #[test]
    fn only_a_control_plane_starts_go_programs_and_only_etcdctl() {
        // Every plan pays for each program the script starts on every host: a control
        // plane asks etcd three times, in the background, and asks the API nothing (the
        // survey does, once for the whole cluster).
        let starts = |s: &str, program: &str| {
            s.lines()
                .filter(|l| l.contains(&format!("{program} --")))
                .count()
        };
        let cp = script(&["/etc/a.conf".into()], true, Some("lb.local"), None);
        let worker = script(&["/etc/a.conf".into()], false, Some("lb.local"), None);
        assert_eq!(starts(&cp, "etcdctl"), 3, "{cp}");
        assert_eq!(starts(&cp, "kubectl"), 0, "{cp}");
        assert_eq!(starts(&worker, "etcdctl") + starts(&worker, "kubectl"), 0);
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
        assert!(!script(&[], false, None, None).contains("client-certificate-data"));
        assert!(script(&[], true, None, None).contains(CERTIFICATES_SECTION));
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
