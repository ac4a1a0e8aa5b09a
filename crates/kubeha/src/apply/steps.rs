//! The shell each plan action runs on its host. Pure: every value is quoted, and
//! secrets never appear here (they travel inside files written over stdin).

use crate::facts::{ACTIVATION_STAMPS, CLUSTER_MARKER};
use crate::plan::Action;
use crate::quote::shell as quote;
use crate::render::hosts_entry::merge_block_sh;
pub use crate::render::kubeadm::etcdctl;
use crate::render::kubeadm::CRI_SOCKET;
use crate::render::node::{MODULES, SYSCTLS};

/// apt waits for another apt (unattended upgrades on a fresh cloud machine) instead of failing.
const APT: &str = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300";

/// The script for an action that is a plain command; `None` for actions the executor
/// performs itself (file writes, kubeadm, the Kubernetes API).
pub fn script(action: &Action) -> Option<String> {
    Some(match action {
        Action::DownloadKey { url, path, dearmor } => {
            let fetch = if *dearmor {
                format!("curl -fsSL {} | gpg --dearmor --yes -o {p}", quote(url), p = quote(path))
            } else {
                format!("curl -fsSL {} -o {p}", quote(url), p = quote(path))
            };
            format!(
                "set -e\ncommand -v curl >/dev/null && command -v gpg >/dev/null || {{ {APT} update && {APT} install curl gnupg ca-certificates; }}\ninstall -d -m 0755 /etc/apt/keyrings\n{fetch}\nchmod 0644 {}",
                quote(path)
            )
        }
        Action::AptUpdate => format!("{APT} update"),
        Action::Install { packages } => {
            let names: Vec<String> = packages.iter().map(|p| quote(&p.apt_arg())).collect();
            format!(
                "{APT} --allow-change-held-packages --allow-downgrades install {}",
                names.join(" ")
            )
        }
        Action::Hold { packages } => {
            let names: Vec<String> = packages.iter().map(|p| quote(p)).collect();
            format!("apt-mark hold {}", names.join(" "))
        }
        // A module built into the kernel is not in lsmod: check the effect, not modprobe.
        Action::LoadModules => format!(
            "modprobe -a {}\ngrep -qw overlay /proc/filesystems || {{ echo 'overlay is not available' >&2; exit 1; }}\n[ -d /proc/sys/net/bridge ] || {{ echo 'br_netfilter is not active: /proc/sys/net/bridge is missing' >&2; exit 1; }}",
            MODULES.join(" ")
        ),
        Action::ApplySysctl => {
            let mut s = String::from("sysctl --system >/dev/null\n");
            for (key, value) in SYSCTLS {
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                s.push_str(&format!(
                    "[ \"$(cat {p})\" = {v} ] || {{ echo '{key} is not {v} after sysctl --system' >&2; exit 1; }}\n",
                    p = quote(&path),
                    v = quote(value)
                ));
            }
            s
        }
        Action::DisableSwap => concat!(
            "swapoff -a\n",
            "sed -i -E 's@^([^#][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$@# \\1  # disabled by kubeha@' /etc/fstab\n",
            "for unit in $(systemctl list-units --type=swap --all --plain --no-legend | awk '{print $1}'); do systemctl mask \"$unit\"; done\n",
            "[ \"$(awk 'NR > 1' /proc/swaps | wc -l)\" = 0 ] || { echo 'swap is still on' >&2; exit 1; }"
        )
        .to_string(),
        // The stamp records when kubeha last put a config into effect: a reload does not
        // move systemd's start time.
        Action::Restart { service, reload } => {
            let verb = if *reload { "reload" } else { "restart" };
            format!(
                "systemctl {verb} {s}\nmkdir -p {dir}\ntouch {dir}/{s}",
                s = quote(service),
                dir = ACTIVATION_STAMPS
            )
        }
        Action::Enable { service, start } => format!(
            "systemctl enable {}{}",
            if *start { "--now " } else { "" },
            quote(service)
        ),
        Action::MergeBlock { path, .. } => {
            format!("set -e\n{}", merge_block_sh(&quote(path), "cat"))
        }
        Action::ResetPartialJoin => format!(
            "kubeadm reset -f --cri-socket {CRI_SOCKET}\nrm -rf /etc/kubernetes/pki /var/lib/etcd"
        ),
        Action::UpgradePackages {
            packages,
            version,
            restart_kubelet,
        } => {
            let names: Vec<String> = packages.iter().map(|p| quote(p)).collect();
            let pinned: Vec<String> = packages
                .iter()
                .map(|p| quote(&format!("{p}={version}")))
                .collect();
            let mut s = format!(
                "set -e\napt-mark unhold {names} >/dev/null\n{APT} --allow-change-held-packages install {}\napt-mark hold {names} >/dev/null",
                pinned.join(" "),
                names = names.join(" ")
            );
            if *restart_kubelet {
                s.push_str("\nsystemctl daemon-reload\nsystemctl restart kubelet");
            }
            s
        }
        Action::KubeadmUpgradeApply { version, .. } => {
            format!("kubeadm upgrade apply {} --yes", quote(version))
        }
        Action::KubeadmUpgradeNode { .. } => "kubeadm upgrade node".into(),
        Action::WriteFile { .. }
        | Action::MarkCluster
        | Action::KubeadmInit
        | Action::KubeadmJoin { .. }
        | Action::RemoveEtcdMember { .. }
        | Action::MintJoinCredentials { .. }
        | Action::ApplyCalico { .. }
        | Action::ApplyLabelsAndTaints { .. }
        | Action::WaitReady { .. }
        | Action::WriteKubeconfig
        | Action::Backup
        | Action::UpdateCertSans { .. }
        | Action::RegenerateApiserverCertificate { .. }
        | Action::EnableBackend { .. }
        | Action::Drain { .. }
        | Action::WaitNodeVersion { .. }
        | Action::Uncordon { .. } => return None,
    })
}

/// The content of the cluster marker file.
pub fn marker(cluster_name: &str) -> (String, &'static str) {
    (format!("{cluster_name}\n"), CLUSTER_MARKER)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::render::Package;

    /// `sh -n` accepts the script.
    pub(crate) fn sh_syntax_ok(script: &str) -> bool {
        std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .status()
            .unwrap()
            .success()
    }

    #[test]
    fn every_script_is_valid_sh() {
        let actions = [
            Action::DownloadKey {
                url: "https://x/Release.key".into(),
                path: "/etc/apt/keyrings/k.gpg".into(),
                dearmor: true,
            },
            Action::AptUpdate,
            Action::Install {
                packages: vec![Package {
                    name: "kubelet".into(),
                    version: Some("1.31.0-1.1".into()),
                    hold: true,
                }],
            },
            Action::Hold {
                packages: vec!["kubelet".into()],
            },
            Action::LoadModules,
            Action::ApplySysctl,
            Action::DisableSwap,
            Action::Restart {
                service: "haproxy".into(),
                reload: true,
            },
            Action::Enable {
                service: "kubelet".into(),
                start: false,
            },
            Action::MergeBlock {
                path: "/etc/hosts".into(),
                block: "x".into(),
            },
            Action::ResetPartialJoin,
            Action::UpgradePackages {
                packages: vec!["kubelet".into(), "kubectl".into()],
                version: "1.32.0-1.1".into(),
                restart_kubelet: true,
            },
            Action::KubeadmUpgradeApply {
                version: "v1.32.0".into(),
                load_balancers: vec![],
            },
        ];
        for a in &actions {
            let s = script(a).unwrap();
            assert!(sh_syntax_ok(&s), "{a}: {s}");
        }
        assert!(script(&Action::KubeadmInit).is_none());
    }

    #[test]
    fn install_pins_versions_and_enable_respects_start() {
        let s = script(&Action::Install {
            packages: vec![Package {
                name: "kubeadm".into(),
                version: Some("1.31.0-1.1".into()),
                hold: true,
            }],
        })
        .unwrap();
        assert!(s.ends_with("install 'kubeadm=1.31.0-1.1'"), "{s}");
        let upgrade = script(&Action::UpgradePackages {
            packages: vec!["kubeadm".into()],
            version: "1.32.0-1.1".into(),
            restart_kubelet: false,
        })
        .unwrap();
        assert!(
            upgrade.contains("apt-mark unhold kubeadm")
                && upgrade.contains("install 'kubeadm=1.32.0-1.1'")
                && upgrade.ends_with("apt-mark hold kubeadm >/dev/null"),
            "{upgrade}"
        );
        assert_eq!(
            script(&Action::Enable {
                service: "kubelet".into(),
                start: false
            })
            .unwrap(),
            "systemctl enable kubelet"
        );
        assert_eq!(
            script(&Action::Enable {
                service: "haproxy".into(),
                start: true
            })
            .unwrap(),
            "systemctl enable --now haproxy"
        );
    }

    #[test]
    fn merge_block_replaces_only_kubehas_lines() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1 localhost\n# BEGIN kubeha\n10.0.0.9 old\n# END kubeha\n::1 ip6\n",
        )
        .unwrap();
        let s = script(&Action::MergeBlock {
            path: hosts.display().to_string(),
            block: String::new(),
        })
        .unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", &s])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"10.0.0.5 load-balancer.local\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(&hosts).unwrap(),
            "127.0.0.1 localhost\n::1 ip6\n# BEGIN kubeha\n10.0.0.5 load-balancer.local\n# END kubeha\n"
        );
    }
}
