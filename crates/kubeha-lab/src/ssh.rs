//! The lab's SSH material: its client keypair, the known_hosts file with each node's real host
//! keys, and the argv of an OpenSSH client invocation.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Context, Error, Result};

/// Creates an ed25519 keypair at `path` (+ `.pub`) unless one is there; the private key is 0600.
pub async fn ensure_keypair(path: &Path, comment: &str) -> Result<()> {
    if !path.exists() {
        let out = tokio::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path)
            .output()
            .await
            .context("running ssh-keygen (is openssh-client installed?)")?;
        if !out.status.success() {
            return Err(Error::Failed {
                context: format!("generating the lab key {}", path.display()),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .context(format!("restricting {}", path.display()))
}

/// known_hosts lines for one host from the `*.pub` host key files' contents
/// (`type base64 [comment]` per line).
pub fn known_hosts_lines(address: Ipv4Addr, host_keys: &str) -> Vec<String> {
    host_keys
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (kind, key) = (parts.next()?, parts.next()?);
            Some(format!("{address} {kind} {key}"))
        })
        .collect()
}

/// An `-o Option=value` argument; values with blanks are quoted the way ssh's own option
/// parser expects.
fn option(name: &str, value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!("{name}=\"{value}\"")
    } else {
        format!("{name}={value}")
    }
}

/// The argv of `ssh` logging in as `user` at `address` with only the lab's key and known hosts.
/// `command` words are shell-quoted so the remote shell sees exactly these arguments.
pub fn ssh_argv(
    user: &str,
    address: Ipv4Addr,
    identity: &Path,
    known_hosts: &Path,
    command: &[String],
) -> Result<Vec<String>> {
    let mut argv: Vec<String> = vec!["ssh".into(), "-i".into(), identity.to_string_lossy().into()];
    for (name, value) in [
        ("UserKnownHostsFile", known_hosts.to_string_lossy().as_ref()),
        ("StrictHostKeyChecking", "yes"),
        ("IdentitiesOnly", "yes"),
        ("PasswordAuthentication", "no"),
        ("BatchMode", "yes"),
        ("ConnectTimeout", "10"),
    ] {
        argv.push("-o".into());
        argv.push(option(name, value));
    }
    argv.extend(["-p".into(), "22".into(), format!("{user}@{address}")]);
    if !command.is_empty() {
        let joined = shlex::try_join(command.iter().map(String::as_str))
            .map_err(|e| Error::Config(format!("cannot quote the remote command: {e}")))?;
        argv.extend(["--".into(), joined]);
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn known_hosts_keep_type_and_key_and_drop_comments() {
        let lines = known_hosts_lines(
            Ipv4Addr::new(172, 29, 7, 11),
            "ssh-ed25519 AAAAC3 root@cp-1\necdsa-sha2-nistp256 AAAAE2\n\n",
        );
        assert_eq!(
            lines,
            [
                "172.29.7.11 ssh-ed25519 AAAAC3",
                "172.29.7.11 ecdsa-sha2-nistp256 AAAAE2"
            ]
        );
    }

    #[test]
    fn argv_pins_key_and_known_hosts_and_quotes_the_command() {
        let argv = ssh_argv(
            "kubeha",
            Ipv4Addr::new(172, 29, 7, 11),
            &PathBuf::from("/s/id_ed25519"),
            &PathBuf::from("/my dir/known_hosts"),
            &["echo".into(), "a b".into(), "$HOME".into()],
        )
        .unwrap();
        assert_eq!(&argv[..3], ["ssh", "-i", "/s/id_ed25519"]);
        assert!(argv.contains(&"UserKnownHostsFile=\"/my dir/known_hosts\"".to_string()));
        assert!(argv.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert_eq!(
            &argv[argv.len() - 3..],
            ["kubeha@172.29.7.11", "--", "echo 'a b' '$HOME'"]
        );
        let bare = ssh_argv(
            "u",
            Ipv4Addr::LOCALHOST,
            Path::new("k"),
            Path::new("h"),
            &[],
        )
        .unwrap();
        assert_eq!(bare.last().unwrap(), "u@127.0.0.1");
    }
}
