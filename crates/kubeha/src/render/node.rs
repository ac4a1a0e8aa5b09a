//! Kernel modules, sysctls and the Calico manifest: the seed's node preparation.

use crate::spec::Cluster;

pub const MODULES_PATH: &str = "/etc/modules-load.d/containerd.conf";
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/k8s.conf";

/// Kernel modules containerd and kube-proxy need, loaded at every boot.
pub const MODULES: [&str; 2] = ["overlay", "br_netfilter"];

/// Sysctls kubeadm's preflight checks and pod networking need.
pub const SYSCTLS: [(&str, &str); 3] = [
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.ipv4.ip_forward", "1"),
];

pub fn modules() -> String {
    MODULES.iter().map(|m| format!("{m}\n")).collect()
}

pub fn sysctl() -> String {
    SYSCTLS
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

const POOL_CIDR_COMMENTED: &str =
    "            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n";

/// Calico's manifest with `CALICO_IPV4POOL_CIDR` set to the spec's pod subnet.
///
/// The release manifest ships the variable commented out; kubeha sets it explicitly so
/// the pool always matches kubeadm's `podSubnet`. Errors when the manifest does not have
/// the expected shape (another Calico release may need another edit).
pub fn calico_manifest(cluster: &Cluster, manifest: &str) -> Result<String, String> {
    if !manifest.contains(POOL_CIDR_COMMENTED) {
        return Err(
            "the Calico manifest has no commented CALICO_IPV4POOL_CIDR entry in calico-node; \
             set the pool CIDR in the manifest yourself or use the release manifest"
                .into(),
        );
    }
    let set = format!(
        "            - name: CALICO_IPV4POOL_CIDR\n              value: \"{}\"\n",
        cluster.kubernetes.pod_subnet
    );
    Ok(manifest.replacen(POOL_CIDR_COMMENTED, &set, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    #[test]
    fn modules_and_sysctls_match_the_seed() {
        assert_eq!(modules(), "overlay\nbr_netfilter\n");
        assert_eq!(
            sysctl(),
            "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n"
        );
    }

    #[test]
    fn calico_pool_follows_the_pod_subnet() {
        let cluster = cluster_from(|s| s.replace("192.168.0.0/16 ", "172.20.0.0/16 "));
        let fixture = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/calico-v3.28.1.yaml"
        ));
        // The shared fixture sits beside the repository; fall back to a minimal excerpt.
        let manifest = fixture.unwrap_or_else(|_| format!("env:\n{POOL_CIDR_COMMENTED}"));
        let out = calico_manifest(&cluster, &manifest).unwrap();
        assert!(out.contains(
            "            - name: CALICO_IPV4POOL_CIDR\n              value: \"172.20.0.0/16\"\n"
        ));
        assert!(!out.contains("#   value: \"192.168.0.0/16\""));
        assert!(calico_manifest(&cluster, "kind: DaemonSet\n").is_err());
    }
}
