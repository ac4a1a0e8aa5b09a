//! The OpenSSH client configuration for a run, so every connection's settings are
//! explicit (`ssh -F`) rather than read from the operator's own `~/.ssh/config`.

use crate::spec::Cluster;

/// The alias a bastion is reached by (`ProxyJump`).
pub const BASTION_ALIAS: &str = "kubeha-bastion";

pub fn render(cluster: &Cluster) -> String {
    let ssh = &cluster.ssh;
    let mut out = String::from("# Written by kubeha for this run.\n");
    if let Some(b) = &ssh.bastion {
        out.push_str(&format!(
            "Host {BASTION_ALIAS}\n  HostName {}\n  Port {}\n  User {}\n",
            b.address, b.port, b.user
        ));
        if let Some(key) = &b.identity_file {
            out.push_str(&format!("  IdentityFile \"{}\"\n", key.display()));
        }
    }
    out.push_str(&format!(
        "Host *\n  BatchMode yes\n  IdentitiesOnly {}\n  UserKnownHostsFile \"{}\"\n  StrictHostKeyChecking {}\n  LogLevel ERROR\n",
        if ssh.use_agent { "no" } else { "yes" },
        ssh.known_hosts_file.display(),
        match ssh.host_key_policy {
            crate::spec::HostKeyPolicy::Verify => "yes",
            crate::spec::HostKeyPolicy::AcceptNew => "accept-new",
        },
    ));
    if !ssh.use_agent {
        out.push_str("  IdentityAgent none\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::cluster_from;

    #[test]
    fn verifies_host_keys_by_default() {
        let c = cluster_from(|s| s);
        let text = render(&c);
        assert!(text.contains("StrictHostKeyChecking yes\n"));
        assert!(text.contains("BatchMode yes\n"));
        assert!(!text.contains(BASTION_ALIAS));
    }

    #[test]
    fn bastion_and_trust_on_first_use() {
        let c = cluster_from(|s| {
            s.replace(
                "    # hostKeyPolicy: verify ",
                "    hostKeyPolicy: acceptNew ",
            )
            .replace(
                "    # bastion: {address: jump.example.com, port: 22, user: ops}",
                "    bastion: {address: jump.example.com, port: 2222, user: ops}",
            )
            .replace("    # useAgent: true", "    useAgent: false")
        });
        let text = render(&c);
        assert!(text.contains(
            "Host kubeha-bastion\n  HostName jump.example.com\n  Port 2222\n  User ops\n"
        ));
        assert!(text.contains("StrictHostKeyChecking accept-new\n"));
        assert!(text.contains("IdentityAgent none\n"));
    }
}
