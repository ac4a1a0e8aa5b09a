//! apt sources: pkgs.k8s.io for the Kubernetes minor, Docker's repository for
//! `containerd.io` (the seed's choice), or a single mirror for air-gapped sites.

use super::{Activation, Content, Distro, RenderedFile};
use crate::spec::{Cluster, ContainerdSource, Host};

pub const KEYRING_DIR: &str = "/etc/apt/keyrings";
pub const KUBERNETES_LIST: &str = "/etc/apt/sources.list.d/kubernetes.list";
pub const KUBERNETES_KEYRING: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";
pub const DOCKER_LIST: &str = "/etc/apt/sources.list.d/docker.list";
pub const DOCKER_KEYRING: &str = "/etc/apt/keyrings/docker.asc";
pub const MIRROR_LIST: &str = "/etc/apt/sources.list.d/kubeha-mirror.list";
pub const MIRROR_KEYRING: &str = "/etc/apt/keyrings/kubeha-mirror.gpg";

/// A keyring kubeha downloads on the host before the source that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKey {
    pub url: String,
    pub path: &'static str,
    /// pkgs.k8s.io serves an ASCII-armoured key that apt wants dearmoured.
    pub dearmor: bool,
}

/// Keys to fetch from the internet; none with a mirror, whose key the operator supplies.
pub fn remote_keys(cluster: &Cluster, host: &Host, distro: &Distro) -> Vec<RemoteKey> {
    let p = &cluster.packages;
    if p.mirror.is_some() || !host.is_kube_node() {
        return Vec::new();
    }
    // Over plain http anyone on the path could swap the key along with the packages.
    debug_assert!(
        [&p.kubernetes_repository, &p.docker_repository]
            .iter()
            .all(|u| u.starts_with("https://")),
        "validation refuses plain-http repositories whose key kubeha downloads"
    );
    let mut keys = vec![RemoteKey {
        url: format!("{}Release.key", with_slash(&p.kubernetes_repository)),
        path: KUBERNETES_KEYRING,
        dearmor: true,
    }];
    if p.containerd == ContainerdSource::Docker {
        keys.push(RemoteKey {
            url: format!(
                "{}/{}/gpg",
                p.docker_repository.trim_end_matches('/'),
                distro.id
            ),
            path: DOCKER_KEYRING,
            dearmor: false,
        });
    }
    keys
}

pub fn sources(cluster: &Cluster, host: &Host, distro: &Distro) -> Vec<RenderedFile> {
    // Load balancers only need haproxy/keepalived from the distribution (or the mirror).
    let p = &cluster.packages;
    let list = |path: &str, line: String| {
        RenderedFile::text(path, format!("{line}\n"), Activation::AptUpdate)
    };
    if let Some(m) = &p.mirror {
        let components = m.components.join(" ");
        let line = format!(
            "deb [signed-by={MIRROR_KEYRING}] {} {} {components}",
            m.url, m.suite
        );
        return vec![
            RenderedFile {
                path: MIRROR_KEYRING.into(),
                mode: 0o644,
                content: Content::LocalFile(m.key_file.clone()),
                activation: Activation::AptUpdate,
                secret: false,
            },
            list(MIRROR_LIST, line.trim_end().to_string()),
        ];
    }
    if !host.is_kube_node() {
        return Vec::new();
    }
    let mut files = vec![list(
        KUBERNETES_LIST,
        format!(
            "deb [signed-by={KUBERNETES_KEYRING}] {} /",
            with_slash(&p.kubernetes_repository)
        ),
    )];
    if p.containerd == ContainerdSource::Docker {
        files.push(list(
            DOCKER_LIST,
            format!(
                "deb [signed-by={DOCKER_KEYRING}] {}/{} {} stable",
                p.docker_repository.trim_end_matches('/'),
                distro.id,
                distro.codename
            ),
        ));
    }
    files
}

fn with_slash(url: &str) -> String {
    format!("{}/", url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    #[test]
    fn seed_sources_use_pkgs_k8s_io_and_docker() {
        let c = seed();
        let ubuntu = Distro {
            id: "ubuntu".into(),
            codename: "noble".into(),
        };
        let files = sources(&c, c.first_control_plane(), &ubuntu);
        assert_eq!(
            text(&files[0]),
            "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /\n"
        );
        assert_eq!(
            text(&files[1]),
            "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubuntu noble stable\n"
        );
        let keys = remote_keys(&c, c.first_control_plane(), &ubuntu);
        assert_eq!(
            keys[0].url,
            "https://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key"
        );
        assert_eq!(keys[1].url, "https://download.docker.com/linux/ubuntu/gpg");
        assert!(sources(&c, &c.hosts[0], &ubuntu).is_empty());
    }

    #[test]
    fn minor_version_selects_the_repository() {
        let c = cluster_from(|s| s.replace("version: v1.31.0", "version: v1.32.2"));
        let files = sources(&c, c.first_control_plane(), &Distro::placeholders());
        assert!(text(&files[0]).contains("/core:/stable:/v1.32/deb/ /"));
    }

    #[test]
    fn distribution_containerd_needs_no_docker_repository() {
        let c = cluster_from(|s| s.replace("containerd: docker ", "containerd: distribution "));
        let files = sources(&c, c.first_control_plane(), &Distro::placeholders());
        assert_eq!(files.len(), 1);
        assert_eq!(
            remote_keys(&c, c.first_control_plane(), &Distro::placeholders()).len(),
            1
        );
    }
}
