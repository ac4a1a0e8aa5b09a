//! The OpenSSH client configuration for a run, so every connection's settings are
//! explicit (`ssh -F`) rather than read from the operator's own `~/.ssh/config`.
//!
//! Every value is written with ssh_config's own quoting, so that no value can end its
//! line, start a new directive or be split into several arguments. Values ssh cannot
//! represent (control characters) or would expand (`${VAR}` in paths) are refused.

use std::path::Path;

use crate::quote::{ssh_config, SshExpands};
use crate::spec::Cluster;

/// The alias a bastion is reached by (`ProxyJump`).
pub const BASTION_ALIAS: &str = "kubeha-bastion";

fn path(p: &Path) -> Result<String, String> {
    ssh_config(utf8(p)?, SshExpands::Path)
}

fn utf8(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{}: not valid UTF-8", p.display()))
}

/// A key for `ssh -i`: ssh looks the path up as written, then expands `%` tokens and
/// `${VAR}` in it, so no escape makes such a path work; it is refused instead.
pub fn identity_argument(p: &Path) -> Result<&Path, String> {
    let text = utf8(p)?;
    ssh_config(text, SshExpands::Path)?;
    if text.contains('%') {
        return Err(format!("{text:?}: ssh would expand `%` in a key path"));
    }
    Ok(p)
}

/// The configuration text, or why a value cannot be written safely.
pub fn render(cluster: &Cluster) -> Result<String, String> {
    let ssh = &cluster.ssh;
    let mut out = String::from("# Written by kubeha for this run.\n");
    if let Some(b) = &ssh.bastion {
        out.push_str(&format!(
            "Host {BASTION_ALIAS}\n  HostName {}\n  Port {}\n  User {}\n",
            ssh_config(&b.address, SshExpands::Tokens)?,
            b.port,
            ssh_config(&b.user, SshExpands::Nothing)?
        ));
        if let Some(key) = &b.identity_file {
            out.push_str(&format!("  IdentityFile {}\n", path(key)?));
        }
    }
    out.push_str(&format!(
        "Host *\n  BatchMode yes\n  IdentitiesOnly {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking {}\n  LogLevel ERROR\n",
        if ssh.use_agent { "no" } else { "yes" },
        path(&ssh.known_hosts_file)?,
        match ssh.host_key_policy {
            crate::spec::HostKeyPolicy::Verify => "yes",
            crate::spec::HostKeyPolicy::AcceptNew => "accept-new",
        },
    ));
    if !ssh.use_agent {
        out.push_str("  IdentityAgent none\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::cluster_from;

    #[test]
    fn verifies_host_keys_by_default() {
        let c = cluster_from(|s| s);
        let text = render(&c).unwrap();
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
        let text = render(&c).unwrap();
        assert!(text.contains(
            "Host kubeha-bastion\n  HostName \"jump.example.com\"\n  Port 2222\n  User \"ops\"\n"
        ));
        assert!(text.contains("StrictHostKeyChecking accept-new\n"));
        assert!(text.contains("IdentityAgent none\n"));
    }

    /// What the real `ssh -G` reads back for host `kubeha-bastion` from `config`.
    fn ssh_reads(config: &str) -> std::collections::BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ssh_config");
        std::fs::write(&file, config).unwrap();
        let out = std::process::Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(&file)
            .arg(BASTION_ALIAS)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ssh is installed");
        assert!(
            out.status.success(),
            "ssh -G refused:\n{config}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ssh_reads_every_quoted_value_back_unchanged() {
        let hostile = [
            "plain",
            "two words",
            "quote\"inside",
            "back\\slash",
            "trailing\\",
            "'single'",
            "#not-a-comment",
            "50%h%%",
            "x ProxyCommand touch /tmp/pwned",
        ];
        for value in hostile {
            let config = format!(
                "Host {BASTION_ALIAS}\n  HostName {}\n  UserKnownHostsFile {}\n",
                ssh_config(value, SshExpands::Tokens).unwrap(),
                ssh_config(&format!("/k/{value}"), SshExpands::Path).unwrap(),
            );
            let read = ssh_reads(&config);
            // ssh lower-cases host names, and nothing else.
            assert_eq!(read["hostname"], value.to_lowercase(), "{config}");
            assert_eq!(
                read["userknownhostsfile"],
                format!("/k/{value}"),
                "{config}"
            );
            assert!(!read.contains_key("proxycommand"), "{config}");
        }
        let user = ssh_config("o'p \"s\\", SshExpands::Nothing).unwrap();
        let read = ssh_reads(&format!("Host {BASTION_ALIAS}\n  User {user}\n"));
        assert_eq!(read["user"], "o'p \"s\\");
    }

    #[test]
    fn values_ssh_cannot_hold_are_refused() {
        for bad in ["a\nProxyCommand x", "a\rb", "nul\0", "tab\tx", ""] {
            assert!(ssh_config(bad, SshExpands::Tokens).is_err(), "{bad:?}");
        }
        assert!(ssh_config("/home/${USER}/k", SshExpands::Path).is_err());
        assert!(ssh_config("relative/k", SshExpands::Path).is_err());
        assert!(ssh_config("~/k", SshExpands::Path).is_err());
        assert!(ssh_config("u%n", SshExpands::Nothing).is_err());
    }

    #[test]
    fn key_paths_ssh_would_rewrite_are_refused() {
        assert!(identity_argument(Path::new("/home/op/.ssh/id ed25519")).is_ok());
        for bad in ["/k/50%h", "/k/${HOME}", "k", "~/.ssh/id", "/k/\nx"] {
            assert!(identity_argument(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hostile_bastion_cannot_add_a_directive() {
        let mut c = cluster_from(|s| {
            s.replace(
                "    # bastion: {address: jump.example.com, port: 22, user: ops}",
                "    bastion: {address: jump.example.com, port: 22, user: ops}",
            )
        });
        let b = c.ssh.bastion.as_mut().unwrap();
        b.address = "jump.example.com\n  ProxyCommand touch /tmp/pwned".into();
        assert!(render(&c).is_err());
        let b = c.ssh.bastion.as_mut().unwrap();
        b.address = "jump.example.com ProxyCommand=x".into();
        let read = ssh_reads(&render(&c).unwrap());
        assert_eq!(read["hostname"], "jump.example.com proxycommand=x");
        assert!(!read.contains_key("proxycommand"));
    }
}
