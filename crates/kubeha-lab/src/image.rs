//! The node and mirror images: built from a Debian rootfs by `image/build.sh` (debootstrap +
//! `docker import`, no registry), tagged with a hash of everything that goes into them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};
use bollard::Docker;
use sha2::{Digest, Sha256};

use crate::error::{Context, Error, Result};

const BUILD_SCRIPT: &str = include_str!("../image/build.sh");
/// Files the build script installs into the rootfs, next to it.
const SUPPORT_FILES: [(&str, &str); 3] = [
    ("kubeha-lab-init", include_str!("../image/kubeha-lab-init")),
    (
        "kubeha-lab-modules",
        include_str!("../image/kubeha-lab-modules"),
    ),
    (
        "kubeha-mirror-serve",
        include_str!("../image/kubeha-mirror-serve"),
    ),
];

pub const DEBIAN_SUITE: &str = "bookworm";

/// What a fresh cloud machine has: nothing Kubernetes-related.
pub const NODE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "python3",
    "iproute2",
    "iputils-ping",
    "curl",
    "ca-certificates",
    "gnupg",
    "kmod",
    "iptables",
    "procps",
];

/// What kubeha installs from Debian; the mirror carries these and every dependency the node lacks.
pub const MIRROR_PACKAGES: &[&str] = &[
    "haproxy",
    "keepalived",
    "containerd",
    "runc",
    "etcd-server",
    "etcd-client",
    // What the Kubernetes node packages depend on (kubelet: conntrack, ethtool),
    // as pkgs.k8s.io's packages do.
    "conntrack",
    "ethtool",
];

/// Carried when the suite has them.
pub const OPTIONAL_MIRROR_PACKAGES: &[&str] = &["kubernetes-client"];

const NODE_REPO: &str = "kubeha-lab-node";
/// Set by build.sh on both images.
const IMAGE_LABEL: &str = "dev.kubeha.lab.image";
const MIRROR_REPO: &str = "kubeha-lab-mirror";

/// Tags of the two images for the current build inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub node: String,
    pub mirror: String,
}

/// Hex sha256 (first 16 digits) of the build script, its support files and the package lists.
pub fn inputs_hash() -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        // Length-prefixed so that moving text between fields changes the hash.
        for part in [name, value] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    };
    field("build.sh", BUILD_SCRIPT);
    for (name, content) in SUPPORT_FILES {
        field(name, content);
    }
    field("suite", DEBIAN_SUITE);
    field("node", &NODE_PACKAGES.join(" "));
    field("mirror", &MIRROR_PACKAGES.join(" "));
    field("optional", &OPTIONAL_MIRROR_PACKAGES.join(" "));
    hex::encode(h.finalize())[..16].to_owned()
}

impl Images {
    pub fn current() -> Images {
        let hash = inputs_hash();
        Images {
            node: format!("{NODE_REPO}:{hash}"),
            mirror: format!("{MIRROR_REPO}:{hash}"),
        }
    }
}

/// Where downloaded .debs are kept between image builds.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("kubeha-lab")
}

async fn image_exists(docker: &Docker, tag: &str) -> Result<bool> {
    match docker.inspect_image(tag).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e).context(format!("inspecting image {tag}")),
    }
}

/// Returns the current images, building them first if either is missing. Builds are serialized
/// by a lock in the cache directory, so concurrent `up`s build once.
pub async fn ensure_images(docker: &Docker) -> Result<Images> {
    let images = Images::current();
    if image_exists(docker, &images.node).await? && image_exists(docker, &images.mirror).await? {
        return Ok(images);
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).context(format!("creating {}", cache.display()))?;
    let lock_path = cache.join("build.lock");
    let lock_file =
        std::fs::File::create(&lock_path).context(format!("opening {}", lock_path.display()))?;
    let _lock =
        crate::lock::Flock::exclusive(&lock_file).context("waiting for another image build")?;
    if image_exists(docker, &images.node).await? && image_exists(docker, &images.mirror).await? {
        return Ok(images);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Failed {
            context: "building the lab images".into(),
            detail: "needs root (debootstrap, chroot, mount); run `kubeha lab up` once as root"
                .into(),
        });
    }
    let scripts = cache.join(format!("scripts-{}", inputs_hash()));
    std::fs::create_dir_all(&scripts).context(format!("creating {}", scripts.display()))?;
    for (name, content) in std::iter::once(("build.sh", BUILD_SCRIPT)).chain(SUPPORT_FILES) {
        let path = scripts.join(name);
        std::fs::write(&path, content).context(format!("writing {}", path.display()))?;
    }
    // Progress lines of the build go to our stderr: a cold build takes a minute or more.
    let status = tokio::process::Command::new("bash")
        .arg(scripts.join("build.sh"))
        .env("NODE_TAG", &images.node)
        .env("MIRROR_TAG", &images.mirror)
        .env("NODE_PACKAGES", NODE_PACKAGES.join(" "))
        .env("MIRROR_PACKAGES", MIRROR_PACKAGES.join(" "))
        .env(
            "OPTIONAL_MIRROR_PACKAGES",
            OPTIONAL_MIRROR_PACKAGES.join(" "),
        )
        .env("SUITE", DEBIAN_SUITE)
        .env("CACHE_DIR", &cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .context("running the lab image build (bash)")?;
    let _ = std::fs::remove_dir_all(&scripts);
    if !status.success() {
        return Err(Error::Failed {
            context: "building the lab images".into(),
            detail: format!("image/build.sh exited with {status}; its output is above"),
        });
    }
    prune_old_images(docker, &images).await?;
    Ok(images)
}

/// Removes lab images of earlier build inputs (about 0.5 GB a pair) that no container uses.
async fn prune_old_images(docker: &Docker, current: &Images) -> Result<()> {
    let listed = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![IMAGE_LABEL.to_owned()],
            )])),
            ..Default::default()
        }))
        .await
        .context("listing lab images")?;
    let old = listed.iter().flat_map(|i| &i.repo_tags).filter(|tag| {
        let ours = tag.starts_with(&format!("{NODE_REPO}:"))
            || tag.starts_with(&format!("{MIRROR_REPO}:"));
        ours && **tag != current.node && **tag != current.mirror
    });
    for tag in old {
        match docker
            .remove_image(tag, None::<RemoveImageOptions>, None)
            .await
        {
            // 409: a container (of a lab still up) uses it; it goes once that lab is down.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            })
            | Ok(_) => {}
            Err(e) => return Err(e).context(format!("removing the old lab image {tag}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_inputs_hash() {
        let h = inputs_hash();
        assert_eq!(h.len(), 16);
        assert_eq!(h, inputs_hash());
        let images = Images::current();
        assert_eq!(images.node, format!("kubeha-lab-node:{h}"));
        assert_eq!(images.mirror, format!("kubeha-lab-mirror:{h}"));
    }

    #[test]
    fn node_image_has_nothing_kubernetes_related() {
        for p in [
            "containerd",
            "haproxy",
            "keepalived",
            "runc",
            "kubelet",
            "kubeadm",
        ] {
            assert!(!NODE_PACKAGES.contains(&p), "{p}");
        }
    }
}
