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

/// The release manifest's commented-out pool entry in calico-node, which kubeha sets.
pub const POOL_CIDR_COMMENTED: &str =
    "            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n";

/// Why a manifest cannot be used: it has no [`POOL_CIDR_COMMENTED`] to set.
pub const NO_POOL_ENTRY: &str =
    "the Calico manifest has no commented CALICO_IPV4POOL_CIDR entry in calico-node; \
     set the pool CIDR in the manifest yourself or use the release manifest";

/// What replaces the first [`POOL_CIDR_COMMENTED`]: the entry set to the pod subnet.
pub fn pool_cidr_entry(cluster: &Cluster) -> String {
    format!(
        "            - name: CALICO_IPV4POOL_CIDR\n              value: \"{}\"\n",
        cluster.kubernetes.pod_subnet
    )
}

/// A manifest whose bytes are not the ones the spec pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Calico manifest's SHA-256 is {actual}, not the {expected} the spec pins: refusing to apply it")]
pub struct ManifestMismatch {
    pub expected: String,
    pub actual: String,
}

/// Checks fetched or read manifest bytes against `cni.calico.sha256`, when the spec
/// pins one; call it on the exact bytes, before anything is patched or applied.
pub fn verify_manifest(
    expected_sha256: Option<&str>,
    bytes: &[u8],
) -> Result<(), ManifestMismatch> {
    use sha2::Digest;
    let Some(expected) = expected_sha256 else {
        return Ok(());
    };
    let actual = hex::encode(sha2::Sha256::digest(bytes));
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ManifestMismatch {
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Calico's manifest, checked against the pinned `sha256` (when the spec has one), with
/// `CALICO_IPV4POOL_CIDR` set to the spec's pod subnet.
///
/// The release manifest ships the variable commented out; kubeha sets it explicitly so
/// the pool always matches kubeadm's `podSubnet`. Errors when the manifest does not have
/// the expected shape (another Calico release may need another edit).
pub fn calico_manifest(cluster: &Cluster, manifest: &str) -> Result<String, String> {
    verify_manifest(cluster.calico.sha256.as_deref(), manifest.as_bytes())
        .map_err(|e| e.to_string())?;
    if !manifest.contains(POOL_CIDR_COMMENTED) {
        return Err(NO_POOL_ENTRY.into());
    }
    Ok(manifest.replacen(POOL_CIDR_COMMENTED, &pool_cidr_entry(cluster), 1))
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
    fn manifests_are_checked_against_the_pin() {
        // sha256sum of "abc", as every tool prints it.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(verify_manifest(Some(abc), b"abc"), Ok(()));
        assert_eq!(verify_manifest(None, b"anything"), Ok(()));
        let err = verify_manifest(Some(abc), b"abd").unwrap_err();
        assert_eq!(err.expected, abc);
        assert_ne!(err.actual, abc);
        assert!(err.to_string().contains("refusing to apply"));
    }

    #[test]
    fn a_pinned_manifest_that_changed_is_not_patched() {
        let manifest = format!("env:\n{POOL_CIDR_COMMENTED}");
        let pin = |sha: &str| {
            cluster_from(|s| {
                s.replace(
                    "      # manifest: calico.yaml        # a local copy instead of the release URL, or a URL",
                    &format!("      sha256: {sha}"),
                )
            })
        };
        let good = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest.as_bytes()));
        assert!(calico_manifest(&pin(&good), &manifest).is_ok());
        let err = calico_manifest(&pin(&"0".repeat(64)), &manifest).unwrap_err();
        assert!(err.contains("refusing to apply"), "{err}");
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
