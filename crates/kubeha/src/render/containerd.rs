//! containerd's `config.toml`: the CRI plugin with the systemd cgroup driver (kubelet's
//! default since kubeadm 1.22) and the pause image kubeadm expects.

use crate::spec::{Cluster, ContainerdSource};

pub const PATH: &str = "/etc/containerd/config.toml";

pub fn package_name(cluster: &Cluster) -> &'static str {
    match cluster.packages.containerd {
        ContainerdSource::Docker => "containerd.io",
        ContainerdSource::Distribution => "containerd",
    }
}

/// The sandbox image each kubeadm minor pulls (`kubeadm config images list`).
fn pause_image(cluster: &Cluster) -> &'static str {
    match cluster.kubernetes.version.minor {
        31 | 32 => "registry.k8s.io/pause:3.10",
        minor => unreachable!("validation admits only supported minors, got 1.{minor}"),
    }
}

/// Config format version 2 is read by containerd 1.6, 1.7 and (migrated on load) 2.x.
pub fn render(cluster: &Cluster) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        "{header}version = 2\n\
         \n\
         [{cri}]\n  sandbox_image = \"{pause}\"\n\
         \n\
         [{cri}.containerd]\n  default_runtime_name = \"runc\"\n\
         \n\
         [{cri}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [{cri}.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n\
         \n\
         [{cri}.registry]\n  config_path = \"/etc/containerd/certs.d\"\n",
        header = super::managed_header("#", cluster),
        pause = pause_image(cluster),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    #[test]
    fn systemd_cgroup_and_pause_image() {
        let text = render(&seed());
        assert!(text.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n"));
        assert!(text.contains("sandbox_image = \"registry.k8s.io/pause:3.10\""));
        assert!(text.starts_with("# Managed by kubeha for cluster k8s-ha"));
    }
}
