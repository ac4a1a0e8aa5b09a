//! `kubeha reset`: undo what `apply` did, workers first, then control planes (kubeadm
//! reset removes each one's etcd member while the others still have quorum), then load
//! balancers. The script each host runs is pure and idempotent: a second reset is a no-op.

use crate::apply::{ApplyError, Connected, Survey};
use crate::facts::{ACTIVATION_STAMPS, CLUSTER_MARKER, HOSTS_BEGIN, HOSTS_END};
use crate::quote::shell as quote;
use crate::render::{self, kubeadm::CRI_SOCKET, Content, RenderInputs};
use crate::spec::{Cluster, Host, Role};

/// Folders kubeadm, the kubelet, etcd, the CNI and kubeha leave behind on a node.
const NODE_STATE: [&str; 6] = [
    "/etc/kubernetes",
    "/var/lib/etcd",
    "/var/lib/kubelet",
    "/etc/cni/net.d",
    "/var/lib/calico",
    "/var/run/calico",
];

/// Hosts in the order they are reset: workers, control planes, load balancers.
pub fn order(cluster: &Cluster) -> Vec<&Host> {
    let rank = |h: &Host| {
        if h.has(Role::ControlPlane) {
            1
        } else if h.is_kube_node() {
            0
        } else {
            2
        }
    };
    let mut hosts: Vec<&Host> = cluster.hosts.iter().collect();
    hosts.sort_by_key(|h| rank(h));
    hosts
}

/// What one host's reset removes: kubeha's managed files (by path), the packages it
/// installed unless kept, and for Kubernetes nodes kubeadm's state.
pub struct HostReset {
    pub kube_node: bool,
    pub files: Vec<String>,
    /// Files in which kubeha owns only a marked block (`/etc/hosts`).
    pub blocks: Vec<String>,
    pub services: Vec<String>,
    /// Packages purged; empty with `--keep-packages`.
    pub packages: Vec<String>,
}

impl HostReset {
    pub fn new(cluster: &Cluster, host: &Host, inputs: &RenderInputs, keep_packages: bool) -> Self {
        let mut files = Vec::new();
        let mut blocks = Vec::new();
        for f in render::host_files(cluster, host, inputs) {
            match f.content {
                Content::ManagedBlock(_) => blocks.push(f.path),
                _ => files.push(f.path),
            }
        }
        let mut services = Vec::new();
        if host.has(Role::LoadBalancer) {
            services.push("haproxy".to_string());
            if cluster.load_balancer.virtual_ip.is_some() {
                services.push("keepalived".into());
            }
        }
        if !blocks.is_empty() {
            services.push(render::hosts_entry::UNIT.into());
        }
        // `backup --schedule`'s timer; the snapshots it took stay, as data.
        if host.has(Role::ControlPlane) {
            services.push(render::etcd_backup::TIMER.into());
            files.extend(render::etcd_backup::FILES.map(String::from));
        }
        let packages = if keep_packages {
            Vec::new()
        } else {
            render::packages(cluster, host)
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        Self {
            kube_node: host.is_kube_node(),
            files,
            blocks,
            services,
            packages,
        }
    }

    /// The host's reset script; each part tolerates what is already gone.
    pub fn script(&self) -> String {
        let words = |items: &[String]| items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(" ");
        let mut s = String::from("set -e\n");
        for service in &self.services {
            s.push_str(&format!(
                "systemctl disable --now {} 2>/dev/null || true\n",
                quote(service)
            ));
        }
        if self.kube_node {
            s.push_str(&format!(
                "if command -v kubeadm >/dev/null; then kubeadm reset -f --cri-socket {CRI_SOCKET}; fi\n\
                 systemctl stop kubelet 2>/dev/null || true\n\
                 rm -rf {}\n\
                 # Only the chains kube-proxy and Calico made; the host's own rules stay.\n\
                 for t in filter nat mangle raw; do\n\
                 \x20 if command -v iptables-save >/dev/null; then\n\
                 \x20   iptables-save -t $t | grep -v -E -e '(KUBE-|cali-)' | iptables-restore -T $t || true\n\
                 \x20 fi\n\
                 done\n",
                NODE_STATE.join(" ")
            ));
        }
        for block in &self.blocks {
            let p = quote(block);
            s.push_str(&format!(
                "if [ -f {p} ]; then t=$(mktemp); sed '/^{HOSTS_BEGIN}$/,/^{HOSTS_END}$/d' {p} > \"$t\"; \
                 cmp -s \"$t\" {p} || cat \"$t\" > {p}; rm -f \"$t\"; fi\n"
            ));
        }
        if !self.files.is_empty() {
            s.push_str(&format!("rm -f -- {}\n", words(&self.files)));
        }
        if !self.packages.is_empty() {
            let p = words(&self.packages);
            s.push_str(&format!(
                "installed=$(dpkg-query -W -f '${{db:Status-Abbrev}} ${{Package}}\\n' {p} 2>/dev/null | awk '$1 ~ /^i/ {{print $2}}')\n\
                 if [ -n \"$installed\" ]; then apt-mark unhold $installed >/dev/null; \
                 DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 purge $installed; fi\n"
            ));
        }
        s.push_str(&format!(
            "rm -rf {CLUSTER_MARKER} {ACTIVATION_STAMPS} /etc/kubeha\nsystemctl daemon-reload\n"
        ));
        s
    }
}

/// Resets every host in [`order`], one at a time, so control planes leave etcd one by one.
pub async fn reset(c: &Connected, survey: &Survey, keep_packages: bool) -> Result<(), ApplyError> {
    for h in order(&c.cluster) {
        let inputs = RenderInputs {
            distro: crate::plan::distro(&survey.facts[&h.name]),
            ..RenderInputs::placeholders()
        };
        let script = HostReset::new(&c.cluster, h, &inputs, keep_packages).script();
        let started = std::time::Instant::now();
        c.progress.started(&h.name, "reset");
        c.remote(&h.name)
            .run_for("reset failed", &script, c.options.kubeadm_timeout)
            .await?;
        c.progress
            .done(&h.name, "reset", started.elapsed().as_secs_f64());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::seed;

    #[test]
    fn workers_go_first_and_load_balancers_last() {
        let cluster = seed();
        let names: Vec<&str> = order(&cluster).iter().map(|h| h.name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        let cps: Vec<&str> = cluster.control_planes().map(|h| h.name.as_str()).collect();
        let lbs: Vec<&str> = cluster.load_balancers().map(|h| h.name.as_str()).collect();
        let workers: Vec<&str> = cluster.workers().map(|h| h.name.as_str()).collect();
        assert!(!workers.is_empty() && !lbs.is_empty());
        for w in &workers {
            assert!(cps.iter().all(|c| pos(w) < pos(c)));
        }
        for l in &lbs {
            assert!(cps.iter().all(|c| pos(c) < pos(l)));
        }
        assert_eq!(names.len(), cluster.hosts.len());
    }

    #[test]
    fn each_script_removes_what_apply_put_there_and_is_valid_sh() {
        let cluster = seed();
        let inputs = RenderInputs::placeholders();
        for h in &cluster.hosts {
            for keep in [false, true] {
                let reset = HostReset::new(&cluster, h, &inputs, keep);
                let script = reset.script();
                crate::dr::assert_valid_sh(&script);
                for f in render::host_files(&cluster, h, &inputs) {
                    assert!(script.contains(&f.path), "{} keeps {}", h.name, f.path);
                }
                assert_eq!(script.contains("kubeadm reset -f"), h.is_kube_node());
                assert_eq!(script.contains("apt-get"), !keep);
                assert!(script.contains(CLUSTER_MARKER));
            }
        }
        let cp = cluster.control_planes().next().unwrap();
        let script = HostReset::new(&cluster, cp, &inputs, true).script();
        assert!(
            script.contains("disable --now kubeha-etcd-backup.timer"),
            "{script}"
        );
        for f in render::etcd_backup::FILES {
            assert!(script.contains(f), "{script}");
        }
        let lb = cluster.load_balancers().next().unwrap();
        let script = HostReset::new(&cluster, lb, &inputs, false).script();
        assert!(script.contains("disable --now haproxy"), "{script}");
        assert!(script.contains("haproxy"));
    }

    /// The /etc/hosts part keeps every line but kubeha's block, rewriting in place.
    #[test]
    fn only_kubehas_block_leaves_etc_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!(
                "127.0.0.1 localhost\n{HOSTS_BEGIN}\n10.0.0.5 api.example\n{HOSTS_END}\n::1 ip6\n"
            ),
        )
        .unwrap();
        let reset = HostReset {
            kube_node: false,
            files: Vec::new(),
            blocks: vec![hosts.display().to_string()],
            services: Vec::new(),
            packages: Vec::new(),
        };
        let script = reset.script();
        let block_part: String = script
            .lines()
            .filter(|l| l.starts_with("if [ -f"))
            .collect();
        for _ in 0..2 {
            let ok = std::process::Command::new("sh")
                .args(["-c", &block_part])
                .status()
                .unwrap()
                .success();
            assert!(ok);
            assert_eq!(
                std::fs::read_to_string(&hosts).unwrap(),
                "127.0.0.1 localhost\n::1 ip6\n"
            );
        }
    }
}
