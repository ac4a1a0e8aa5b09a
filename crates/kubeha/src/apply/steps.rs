//! The shell each plan action runs on its host, and the same steps as `render`'s
//! runbook runs them where apply uses its API client or Rust (kubectl for the API
//! steps, the etcd join gate in sh). Pure: every value is quoted, and secrets never
//! appear here (they travel inside files written over stdin).

use std::time::Duration;

use crate::facts::{ACTIVATION_STAMPS, CLUSTER_MARKER};
use crate::plan::Action;
use crate::quote::shell as quote;
use crate::render::hosts_entry::merge_block_sh;
pub use crate::render::kubeadm::etcdctl;
use crate::render::kubeadm::CRI_SOCKET;
use crate::render::node::{MODULES, SYSCTLS};
use crate::render::{KUBEADM_INIT_CONFIG, KUBEADM_JOIN_CONFIG};

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
        // Every such file, not just the paths listed: the command holds no host's words.
        Action::RemoveSecretLeftovers { .. } => {
            format!("rm -f -- {}", crate::render::secret_file_globs())
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
        | Action::DeleteNode { .. }
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

/// `kubeadm init` as apply runs it: the token and certificate key are in its config,
/// and kubeadm does not print them.
const KUBEADM_INIT: &str =
    "kubeadm init --upload-certs --skip-token-print --skip-certificate-key-print";

/// `command --config CONFIG`: kubeadm reads its secrets from the config file.
pub fn with_config(command: &str, config: &str) -> String {
    format!("{command} --config {}", quote(config))
}

/// Removes a file that held secrets, once the command that read it has returned.
pub fn remove(path: &str) -> String {
    format!("rm -f -- {}", quote(path))
}

/// For an init or a join: the config it reads (written 0600 just before, holding the
/// kubeadm secrets, removed right after) and its command.
pub fn kubeadm(action: &Action) -> Option<(&'static str, String)> {
    let (config, command) = match action {
        Action::KubeadmInit => (KUBEADM_INIT_CONFIG, KUBEADM_INIT),
        Action::KubeadmJoin { .. } => (KUBEADM_JOIN_CONFIG, "kubeadm join"),
        _ => return None,
    };
    Some((config, with_config(command, config)))
}

/// Prints the file at `url`; a fresh host may have wget but no curl yet.
pub fn download(url: &str) -> String {
    format!(
        "if command -v curl >/dev/null; then curl -fsSL {u}; else wget -qO- {u}; fi",
        u = quote(url)
    )
}

/// kubectl with a control plane's admin kubeconfig.
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// What apply does through the API for a cluster step, as a kubectl script for a control
/// plane (the runbook has no API client): the same server-side apply of the manifest
/// (on standard input) with kubeha's field manager, the same Node patch, the same
/// readiness conditions. `None` for the steps that are not API calls.
pub fn kubectl(action: &Action, ready_timeout: Duration) -> Option<String> {
    Some(match action {
        Action::ApplyCalico { .. } => format!(
            "{KUBECTL} apply --server-side --force-conflicts --field-manager {} -f -",
            crate::api::FIELD_MANAGER
        ),
        Action::ApplyLabelsAndTaints { node, .. } => {
            let patch = crate::plan::node_patch(action)?;
            format!(
                "{KUBECTL} patch node {} --type merge -p {}",
                quote(node),
                quote(&patch.to_string())
            )
        }
        // Every node Ready, then every kube-system pod Running with no container
        // waiting (or Succeeded), as `api::wait_ready` and `api::wait_kube_system` ask.
        Action::WaitReady { nodes } => {
            let names: Vec<String> = nodes.iter().map(|n| quote(&format!("node/{n}"))).collect();
            let secs = ready_timeout.as_secs();
            [
                "set -e".to_string(),
                format!("{KUBECTL} wait --for=condition=Ready {} --timeout={secs}s >/dev/null", names.join(" ")),
                format!("end=$(( $(date +%s) + {secs} ))"),
                format!("until pods=$({KUBECTL} get pods -n kube-system --no-headers \\"),
                "    -o 'custom-columns=PHASE:.status.phase,WAITING:.status.containerStatuses[*].state.waiting.reason') \\".into(),
                "  && { [ -z \"$pods\" ] || printf '%s\\n' \"$pods\" \\".into(),
                "    | awk '$1 != \"Succeeded\" && !($1 == \"Running\" && $2 == \"<none>\") { bad = 1 } END { exit bad }'; }; do".into(),
                format!("  [ \"$(date +%s)\" -lt \"$end\" ] || {{ echo 'kube-system is not healthy after {secs}s' >&2; exit 1; }}"),
                "  sleep 0.5".into(),
                "done".into(),
            ]
            .join("\n")
        }
        _ => return None,
    })
}

/// How often the join gate asks etcd.
pub const ETCD_POLL: Duration = Duration::from_millis(500);
/// How long a newly joined control plane may take to become a healthy etcd member.
pub const ETCD_HEALTHY_WITHIN: Duration = Duration::from_secs(180);

/// The join gate's questions to etcd, in the order its answers are read.
pub const ETCD_GATE_QUESTIONS: [&str; 3] = [
    "member list -w json",
    "endpoint status --cluster -w json",
    "endpoint health --cluster -w json",
];

/// One poll of apply's join gate: each answer of [`ETCD_GATE_QUESTIONS`] as a line of
/// base64 JSON (empty when etcd did not answer).
pub fn etcd_gate_poll() -> String {
    ETCD_GATE_QUESTIONS
        .map(|args| format!("{} 2>/dev/null | base64 -w0; echo", etcdctl(args)))
        .join("\n")
}

/// apply's join gate as one sh script for the runbook (plain shell has no JSON parser):
/// the same questions, polled every [`ETCD_POLL`] for up to `within`, and the same conditions
/// on etcdctl's one-line JSON: the member with peer URL `peer` started and voting, every
/// member answering healthy on a client URL, and the new member's raft index at least
/// the leader's (in this poll, or as the leader had it one poll before). Exits 1
/// saying why not.
pub fn etcd_gate_sh(peer: &str, host: &str, within: Duration) -> String {
    let [members, status, health] = ETCD_GATE_QUESTIONS.map(etcdctl);
    format!(
        r#"peer={peer}
before=
end=$(( $(date +%s) + {within} ))
while :; do
  list=$({members} 2>/dev/null | tr '{{' '\n' | grep '^"ID":')
  member=$(printf '%s\n' "$list" | grep -F "\"$peer\"" | head -n 1)
  id=$(printf '%s' "$member" | sed -n 's/^"ID":\([0-9]*\).*/\1/p')
  indexes=$({status} 2>/dev/null | tr '{{' '\n' \
    | sed -n 's/.*"member_id":\([0-9]*\).*"leader":\([0-9]*\).*"raftIndex":\([0-9]*\).*/\1 \2 \3/p')
  healthy=$({health} 2>/dev/null | tr '{{' '\n' | grep '"health":true' \
    | sed -n 's/.*"endpoint":"\([^"]*\)".*/\1/p' | tr '\n' ' ')
  sick=$(printf '%s\n' "$list" | awk -v ok=" $healthy " '/^"ID":/ {{
    name = ""; if (match($0, /"name":"[^"]*"/)) name = substr($0, RSTART + 8, RLENGTH - 9)
    id = $0; sub(/^"ID":/, "", id); sub(/[^0-9].*/, "", id)
    good = 0
    if (match($0, /"clientURLs":\[[^]]*\]/)) {{
      n = split(substr($0, RSTART + 14, RLENGTH - 15), urls, ",")
      for (i = 1; i <= n; i++) {{ gsub(/"/, "", urls[i]); if (index(ok, " " urls[i] " ")) good = 1 }}
    }}
    if (!good) printf "%s ", (name != "" ? name : id)
  }}')
  leader=$(printf '%s\n' "$indexes" | awk 'NR == 1 {{ print $2 }}')
  # IDs are 64-bit: compared as strings, not as awk's doubles.
  at() {{ printf '%s\n' "$indexes" | awk -v id="$1" '$1 "" == id "" {{ print $3; exit }}'; }}
  leader_index=${{leader:+$(at "$leader")}}
  member_index=${{id:+$(at "$id")}}
  if [ -z "$list" ]; then why='etcd did not answer'
  elif [ -z "$member" ]; then why="no etcd member has peer URL $peer"
  elif ! printf '%s' "$member" | grep -q '"name":"[^"]'; then why='its etcd member never started'
  elif printf '%s' "$member" | grep -q '"isLearner":true'; then why='its etcd member is still a learner'
  elif [ -n "$sick" ]; then why="etcd members not healthy: $sick"
  elif [ -z "$member_index" ] || [ -z "$leader_index" ] \
    || {{ [ "$member_index" -lt "$leader_index" ] && {{ [ -z "$before" ] || [ "$member_index" -lt "$before" ]; }}; }}; then
    why="its raft index ($member_index) has not caught up with the leader's ($leader_index)"
  else exit 0
  fi
  before=${{leader_index:-$before}}
  [ "$(date +%s)" -lt "$end" ] || {{ echo {host}": joined, but after {within}s $why" >&2; exit 1; }}
  sleep {poll}
done
"#,
        peer = quote(peer),
        host = quote(host),
        within = within.as_secs(),
        poll = ETCD_POLL.as_secs_f64(),
    )
}

/// The content of the cluster marker file.
pub fn marker(cluster_name: &str) -> (String, &'static str) {
    (format!("{cluster_name}\n"), CLUSTER_MARKER)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::render::{Package, SECRET_FILES};

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
            Action::RemoveSecretLeftovers {
                paths: vec!["/etc/kubeha/kubeadm-join.yaml".into()],
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

    #[test]
    fn the_next_run_removes_every_secret_file_a_killed_run_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let mut left = Vec::new();
        for f in SECRET_FILES {
            let file = format!("{root}{f}");
            std::fs::create_dir_all(std::path::Path::new(&file).parent().unwrap()).unwrap();
            std::fs::write(&file, "token: x").unwrap();
            std::fs::write(format!("{file}.kubeha-Ab12Cd"), "token: x").unwrap();
            left.push(file);
        }
        let keep = format!("{root}/etc/kubeha/keepalived-check.sh");
        std::fs::write(&keep, "").unwrap();
        // The same script, aimed under the temporary root.
        let removal = Action::RemoveSecretLeftovers { paths: Vec::new() };
        let script = script(&removal)
            .unwrap()
            .replace(" /etc/", &format!(" {root}/etc/"));
        assert!(script.contains(&root), "{script}");
        let ok = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let remaining: Vec<_> = std::fs::read_dir(format!("{root}/etc/kubeha"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(remaining, ["keepalived-check.sh"]);
    }
}
