//! Pure renderers: the validated cluster in, every file kubeha writes out.
//!
//! Nothing here touches a host. Values only known at apply time (secrets, the host's
//! distribution) come in through [`RenderInputs`], which `render` fills with visible
//! placeholders and `apply` with real values.

pub mod apt;
mod containerd;
pub mod etcd_backup;
pub mod haproxy;
pub mod hosts_entry;
mod keepalived;
pub mod kubeadm;
pub mod node;
pub mod runbook;

use std::path::PathBuf;

use serde::Serialize;

use crate::spec::{Cluster, Host, Role};

/// What to do on the host after a file changed, so the change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// Nothing: the file is read when it is next used (kubeadm configs, apt sources).
    None,
    LoadModules,
    ApplySysctl,
    AptUpdate,
    RestartContainerd,
    ReloadHaproxy,
    RestartKeepalived,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Content {
    Text(String),
    /// Copied verbatim from the operator's machine (e.g. an apt key).
    LocalFile(PathBuf),
    /// kubeha owns only these lines, between its markers, in a file others edit too
    /// (`/etc/hosts`).
    ManagedBlock(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedFile {
    /// Absolute path on the host.
    pub path: String,
    pub mode: u32,
    #[serde(skip)]
    pub content: Content,
    pub activation: Activation,
    /// The file holds (or will hold) a secret: written 0600 and never shown in plans.
    pub secret: bool,
}

impl RenderedFile {
    fn text(path: &str, content: String, activation: Activation) -> Self {
        Self {
            path: path.to_string(),
            mode: 0o644,
            content: Content::Text(content),
            activation,
            secret: false,
        }
    }

    fn secret(path: &str, content: String) -> Self {
        Self {
            mode: 0o600,
            secret: true,
            ..Self::text(path, content, Activation::None)
        }
    }

    fn executable(mut self) -> Self {
        self.mode = 0o755;
        self
    }
}

/// The kubeadm secrets kubeha generates. `render` shows placeholders; `apply` fills them.
#[derive(Clone)]
pub struct KubeadmSecrets {
    pub bootstrap_token: String,
    pub certificate_key: String,
    pub ca_cert_hash: String,
}

/// Never prints the values.
impl std::fmt::Debug for KubeadmSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeadmSecrets(<redacted>)")
    }
}

impl KubeadmSecrets {
    pub const TOKEN_VAR: &'static str = "KUBEHA_BOOTSTRAP_TOKEN";
    pub const CERT_KEY_VAR: &'static str = "KUBEHA_CERTIFICATE_KEY";
    pub const CA_HASH_VAR: &'static str = "KUBEHA_CA_CERT_HASH";

    pub fn placeholders() -> Self {
        Self {
            bootstrap_token: format!("${{{}}}", Self::TOKEN_VAR),
            certificate_key: format!("${{{}}}", Self::CERT_KEY_VAR),
            ca_cert_hash: format!("${{{}}}", Self::CA_HASH_VAR),
        }
    }
}

/// A host's distribution, which Docker's repository path depends on.
#[derive(Debug, Clone)]
pub struct Distro {
    /// `/etc/os-release` ID: `ubuntu`, `debian`.
    pub id: String,
    /// `/etc/os-release` VERSION_CODENAME: `noble`, `bookworm`.
    pub codename: String,
}

impl Distro {
    pub const ID_VAR: &'static str = "DISTRO_ID";
    pub const CODENAME_VAR: &'static str = "DISTRO_CODENAME";

    pub fn placeholders() -> Self {
        Self {
            id: format!("${{{}}}", Self::ID_VAR),
            codename: format!("${{{}}}", Self::CODENAME_VAR),
        }
    }

    /// The distribution a host reports in /etc/os-release, refused unless both values
    /// are plain words (`[a-z0-9._-]+`, as every distribution writes them): they end up
    /// in apt source lines and key URLs, and a host's data is never trusted.
    pub fn from_host(id: &str, codename: &str) -> Result<Self, String> {
        let plain = |s: &str| {
            (1..=64).contains(&s.len())
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        };
        for (what, value) in [("ID", id), ("VERSION_CODENAME", codename)] {
            if !plain(value) {
                return Err(format!(
                    "the host's /etc/os-release {what} {} is not a plain word",
                    crate::spec::escape_controls(&format!("{value:?}"))
                ));
            }
        }
        Ok(Self {
            id: id.into(),
            codename: codename.into(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct RenderInputs {
    pub secrets: KubeadmSecrets,
    pub distro: Distro,
}

impl RenderInputs {
    pub fn placeholders() -> Self {
        Self {
            secrets: KubeadmSecrets::placeholders(),
            distro: Distro::placeholders(),
        }
    }
}

/// A package kubeha installs, pinned where the version matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: Option<String>,
    /// `apt-mark hold` so an unattended upgrade cannot move it.
    pub hold: bool,
}

impl Package {
    /// `name=version` when pinned, as apt-get install takes it.
    pub fn apt_arg(&self) -> String {
        match &self.version {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Every package a host needs, in install order.
pub fn packages(cluster: &Cluster, host: &Host) -> Vec<Package> {
    let mut out = Vec::new();
    let plain = |name: &str| Package {
        name: name.into(),
        version: None,
        hold: false,
    };
    if host.has(Role::LoadBalancer) {
        out.push(plain("haproxy"));
        if cluster.load_balancer.virtual_ip.is_some() {
            out.push(plain("keepalived"));
        }
    }
    if host.is_kube_node() {
        out.push(plain(containerd::package_name(cluster)));
        if host.has(Role::ControlPlane) {
            // etcdctl: kubeha checks etcd health and membership with it.
            out.push(plain("etcd-client"));
        }
        let version = cluster.kubernetes.version.deb_version();
        for name in ["kubelet", "kubeadm", "kubectl"] {
            out.push(Package {
                name: name.into(),
                version: Some(version.clone()),
                hold: true,
            });
        }
    }
    out
}

/// Files kubeadm's configs live in on the host.
pub const KUBEADM_INIT_CONFIG: &str = "/etc/kubeha/kubeadm-init.yaml";
pub const KUBEADM_JOIN_CONFIG: &str = "/etc/kubeha/kubeadm-join.yaml";
/// The config `kubeadm init phase upload-certs` reads the certificate key from.
pub const UPLOAD_CERTS_CONFIG: &str = "/etc/kubeha/kubeadm-upload-certs.yaml";
/// Every file kubeha puts a secret in on a host; a killed run can leave any of them, and
/// the temporaries of their writes (`<path>.kubeha-XXXXXX`, see `Remote::write_file`).
pub const SECRET_FILES: [&str; 3] = [
    KUBEADM_INIT_CONFIG,
    KUBEADM_JOIN_CONFIG,
    UPLOAD_CERTS_CONFIG,
];
/// What [`SECRET_FILES`]' write temporaries add to the name.
pub const WRITE_TEMP_INFIX: &str = ".kubeha-";

/// [`SECRET_FILES`] and the globs of their write temporaries, quoted for a shell word list.
pub fn secret_file_globs() -> String {
    let words: Vec<String> = SECRET_FILES
        .iter()
        .map(|f| format!("{q} {q}{WRITE_TEMP_INFIX}*", q = crate::quote::shell(f)))
        .collect();
    words.join(" ")
}

/// `path` is one of [`SECRET_FILES`] or a write temporary of one (`mktemp`'s suffix).
pub fn is_secret_file(path: &str) -> bool {
    SECRET_FILES.iter().any(|f| {
        path == *f
            || path
                .strip_prefix(f)
                .and_then(|rest| rest.strip_prefix(WRITE_TEMP_INFIX))
                .is_some_and(|suffix| {
                    (1..=16).contains(&suffix.len())
                        && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
                })
    })
}

/// Every file kubeha manages on one host, in the order it writes them.
pub fn host_files(cluster: &Cluster, host: &Host, inputs: &RenderInputs) -> Vec<RenderedFile> {
    let mut files = Vec::new();
    files.extend(apt::sources(cluster, host, &inputs.distro));
    files.extend(hosts_entry::render(cluster, host));
    if host.has(Role::LoadBalancer) {
        files.push(RenderedFile::text(
            haproxy::PATH,
            haproxy::render(cluster),
            Activation::ReloadHaproxy,
        ));
        if cluster.load_balancer.virtual_ip.is_some() {
            files.push(RenderedFile::text(
                keepalived::CONFIG_PATH,
                keepalived::render(cluster, host),
                Activation::RestartKeepalived,
            ));
            files.push(
                RenderedFile::text(
                    keepalived::CHECK_PATH,
                    keepalived::check_script(cluster),
                    Activation::RestartKeepalived,
                )
                .executable(),
            );
        }
    }
    if host.is_kube_node() {
        files.push(RenderedFile::text(
            node::MODULES_PATH,
            node::modules(),
            Activation::LoadModules,
        ));
        files.push(RenderedFile::text(
            node::SYSCTL_PATH,
            node::sysctl(),
            Activation::ApplySysctl,
        ));
        files.push(RenderedFile::text(
            containerd::PATH,
            containerd::render(cluster),
            Activation::RestartContainerd,
        ));
        let secrets = &inputs.secrets;
        if std::ptr::eq(host, cluster.first_control_plane()) {
            files.push(RenderedFile::secret(
                KUBEADM_INIT_CONFIG,
                kubeadm::init_config(cluster, host, secrets),
            ));
        } else {
            files.push(RenderedFile::secret(
                KUBEADM_JOIN_CONFIG,
                kubeadm::join_config(cluster, host, secrets),
            ));
        }
    }
    files
}

/// Files for the whole cluster, host by host in spec order.
pub fn cluster_files<'a>(
    cluster: &'a Cluster,
    inputs: &RenderInputs,
) -> Vec<(&'a Host, Vec<RenderedFile>)> {
    cluster
        .hosts
        .iter()
        .map(|h| (h, host_files(cluster, h, inputs)))
        .collect()
}

/// The Calico manifest with the spec's pod subnet wired into `CALICO_IPV4POOL_CIDR`.
pub use node::{calico_manifest, verify_manifest, ManifestMismatch};

/// Header every managed text file starts with, in the file's comment syntax.
fn managed_header(comment: &str, cluster: &Cluster) -> String {
    format!(
        "{comment} Managed by kubeha for cluster {}: local changes are overwritten.\n",
        cluster.name
    )
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::spec::{load_str, Cluster, PathContext};

    /// The starter spec, optionally edited, loaded as a cluster.
    pub fn cluster_from(edit: impl Fn(String) -> String) -> Cluster {
        let text = edit(crate::spec::starter::STARTER_SPEC.to_string());
        let paths = PathContext {
            spec_dir: "/nonexistent".into(),
            home: None,
        };
        match load_str("cluster.yaml".as_ref(), text, &paths) {
            Ok(loaded) => loaded.cluster,
            Err(report) => panic!("{}", report.render(false)),
        }
    }

    pub fn seed() -> Cluster {
        cluster_from(|s| s)
    }

    /// The seed with its first worker labelled and tainted (the starter's commented lines).
    pub fn labelled_and_tainted() -> Cluster {
        cluster_from(|s| {
            s.replace(
                "      # labels: {example.com/pool: general}",
                "      labels: {example.com/pool: general}",
            )
            .replace(
                "      # taints: [{key: dedicated, value: batch, effect: NoSchedule}]",
                "      taints: [{key: dedicated, value: batch, effect: NoSchedule}]",
            )
        })
    }

    /// A rendered file's text.
    pub fn text(f: &super::RenderedFile) -> &str {
        match &f.content {
            super::Content::Text(t) => t,
            other => panic!("{}: not text: {other:?}", f.path),
        }
    }

    /// The seed with two load balancers sharing a virtual IP.
    pub fn seed_with_vip() -> Cluster {
        cluster_from(|s| {
            s.replace(
                "    - name: k8s-master-1 ",
                "    - name: load-balancer-2\n      address: 192.0.2.6\n      roles: [loadBalancer]\n    - name: k8s-master-1 ",
            )
            .replace("    # virtualIP:", "    virtualIP:")
            .replace("    #   address: 192.0.2.100/24", "      address: 192.0.2.100/24")
            .replace("    #   interface: eth0", "      interface: eth0")
            .replace("    #   virtualRouterId: 51", "      virtualRouterId: 51")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn paths(cluster: &Cluster, host: &str) -> Vec<String> {
        let host = cluster.hosts.iter().find(|h| h.name == host).unwrap();
        host_files(cluster, host, &RenderInputs::placeholders())
            .into_iter()
            .map(|f| f.path)
            .collect()
    }

    #[test]
    fn each_role_gets_its_files() {
        let c = seed();
        assert_eq!(paths(&c, "load-balancer"), vec!["/etc/haproxy/haproxy.cfg"]);
        assert_eq!(
            paths(&c, "k8s-master-1"),
            vec![
                "/etc/apt/sources.list.d/kubernetes.list",
                "/etc/apt/sources.list.d/docker.list",
                "/etc/hosts",
                hosts_entry::BLOCK_FILE,
                hosts_entry::RESTORE_SCRIPT,
                hosts_entry::UNIT_PATH,
                "/etc/modules-load.d/containerd.conf",
                "/etc/sysctl.d/k8s.conf",
                "/etc/containerd/config.toml",
                KUBEADM_INIT_CONFIG,
            ]
        );
        assert!(paths(&c, "k8s-master-2").contains(&KUBEADM_JOIN_CONFIG.to_string()));
        assert!(paths(&c, "k8s-worker-1").contains(&KUBEADM_JOIN_CONFIG.to_string()));
    }

    #[test]
    fn vip_adds_keepalived_on_every_load_balancer() {
        let c = seed_with_vip();
        for lb in ["load-balancer", "load-balancer-2"] {
            let p = paths(&c, lb);
            assert!(
                p.contains(&"/etc/keepalived/keepalived.conf".to_string()),
                "{lb}: {p:?}"
            );
            assert!(p.contains(&"/etc/keepalived/check_apiserver.sh".to_string()));
        }
    }

    #[test]
    fn host_distribution_must_be_plain_words() {
        let d = Distro::from_host("ubuntu", "noble").unwrap();
        assert_eq!((d.id.as_str(), d.codename.as_str()), ("ubuntu", "noble"));
        for (id, codename) in [
            ("ubuntu", ""),
            ("ubuntu/../../x", "noble"),
            ("debian", "bookworm main\ndeb [trusted=yes] http://evil/ x"),
            ("a|b", "noble"),
            ("$(id)", "noble"),
        ] {
            let err = Distro::from_host(id, codename).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn kubeadm_configs_are_secret_files() {
        let c = seed();
        let files = host_files(&c, c.first_control_plane(), &RenderInputs::placeholders());
        let init = files
            .iter()
            .find(|f| f.path == KUBEADM_INIT_CONFIG)
            .unwrap();
        assert!(init.secret);
        assert_eq!(init.mode, 0o600);
    }

    #[test]
    fn packages_are_pinned_and_held_on_nodes_only() {
        let c = seed();
        let lb = packages(&c, &c.hosts[0]);
        assert_eq!(
            lb.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["haproxy"]
        );
        let cp = packages(&c, c.first_control_plane());
        let names: Vec<_> = cp.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "containerd.io",
                "etcd-client",
                "kubelet",
                "kubeadm",
                "kubectl"
            ]
        );
        assert!(cp[2..]
            .iter()
            .all(|p| p.hold && p.version.as_deref() == Some("1.31.0-1.1")));
        let worker = packages(&c, c.workers().next().unwrap());
        assert!(!worker.iter().any(|p| p.name == "etcd-client"));
    }
}
