//! The restore as data, pure: which control plane gets the snapshot, what each host
//! does, in order. The shell each step runs is here too, quoted, with no secret in it.

use std::collections::BTreeMap;
use std::fmt;

use crate::facts::HostFacts;
use crate::quote::shell as quote;
use crate::spec::{Cluster, Host};

/// Where kubeadm's stacked etcd keeps its data.
pub const ETCD_DATA: &str = "/var/lib/etcd";
/// Where the snapshot waits on a host while being saved or restored (0700, root).
pub const WORK_DIR: &str = "/var/lib/kubeha/dr";
/// The control-plane processes a restore stops (the kubelet would restart them).
const CONTROL_PLANE_PROCESSES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `apply`'s preparation of every host (packages, containerd, the load balancers'
    /// backends at the spec's addresses): the snapshot goes to a new machine, which
    /// needs etcdctl and kubeadm first.
    Prepare,
    /// Stop the kubelet and every control-plane process, so nothing writes etcd.
    Stop { host: String },
    /// Put the archived PKI back: the shared CAs and keys, and the host's own
    /// certificates when it is the host the snapshot came from.
    PutPki {
        host: String,
        own_certificates: bool,
    },
    /// Restore the snapshot as a new single-member etcd cluster.
    RestoreSnapshot {
        host: String,
        peer_url: String,
        cluster_token: String,
    },
    /// Start the kubelet again (it starts the static pods) and wait for etcd and the API.
    Start { host: String },
    /// On a new machine: `kubeadm init` around the restored etcd data, which signs every
    /// certificate of the host for its address in the spec from the restored CAs and
    /// writes its kubeconfigs and static pods; then wait for etcd and the API.
    InitRestored { host: String },
    /// Forget the lost member: `kubeadm reset`, so `apply` joins it afresh.
    Reset { host: String },
    /// Delete the Node objects of the reset control planes: a join refuses a name whose
    /// Node the restored data still shows Ready.
    DeleteNodes { hosts: Vec<String> },
    /// The normal `apply`: the reset control planes join one at a time.
    Apply,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Prepare => write!(
                f,
                "apply's preparation of every host (packages, containerd, load balancers)"
            ),
            Step::Stop { host } => write!(f, "{host}: stop the kubelet and the control plane"),
            Step::PutPki {
                host,
                own_certificates,
            } => write!(
                f,
                "{host}: put back the cluster CAs and service-account keys{}",
                if *own_certificates {
                    " and its own certificates"
                } else {
                    ""
                }
            ),
            Step::RestoreSnapshot { host, peer_url, .. } => write!(
                f,
                "{host}: restore the snapshot as a new one-member etcd cluster at {peer_url}"
            ),
            Step::Start { host } => {
                write!(f, "{host}: start the kubelet; wait for etcd and the API")
            }
            Step::InitRestored { host } => write!(
                f,
                "{host}: kubeadm init on the restored data (certificates for its address from the restored CAs); wait for etcd and the API"
            ),
            Step::Reset { host } => write!(f, "{host}: kubeadm reset (it rejoins as a new member)"),
            Step::DeleteNodes { hosts } => {
                write!(f, "delete the Node objects of {}", hosts.join(", "))
            }
            Step::Apply => write!(f, "apply: the other control planes join one at a time"),
        }
    }
}

/// A control plane as the restore sees it.
pub struct ControlPlane<'a> {
    pub name: &'a str,
    /// The address etcd advertises (kubeadm's advertise address).
    pub address: std::net::IpAddr,
    /// A new machine: no kubeadm state at all, so nothing to stop or reset, and its
    /// configs, static pods and certificates are all still to be made.
    pub fresh: bool,
}

/// The restore's steps. The snapshot goes to the host it was taken on when that host is
/// in the spec (its own certificates are in the archive), else to the first control
/// plane. On a new machine (same name, maybe a new address) none of the archived host
/// certificates are put back: kubeadm signs new ones there from the restored CAs. The
/// Nodes of the new machines that join afresh (`fresh_workers` and the other control
/// planes) are deleted first: a join refuses a name the restored data shows Ready.
pub fn plan(
    control_planes: &[ControlPlane],
    fresh_workers: &[&str],
    source_host: &str,
    cluster_token: &str,
) -> Result<Vec<Step>, String> {
    let target = control_planes
        .iter()
        .find(|c| c.name == source_host)
        .or(control_planes.first())
        .ok_or("the spec has no control plane")?;
    let host = |c: &ControlPlane| c.name.to_string();
    let others: Vec<&ControlPlane> = control_planes
        .iter()
        .filter(|c| c.name != target.name)
        .collect();
    let mut steps = Vec::new();
    if target.fresh {
        steps.push(Step::Prepare);
    }
    steps.extend(
        control_planes
            .iter()
            .filter(|c| !c.fresh)
            .map(|c| Step::Stop { host: host(c) }),
    );
    steps.push(Step::PutPki {
        host: host(target),
        own_certificates: target.name == source_host && !target.fresh,
    });
    steps.push(Step::RestoreSnapshot {
        host: host(target),
        peer_url: peer_url(target.address),
        cluster_token: cluster_token.to_string(),
    });
    steps.push(if target.fresh {
        Step::InitRestored { host: host(target) }
    } else {
        Step::Start { host: host(target) }
    });
    steps.extend(
        others
            .iter()
            .filter(|c| !c.fresh)
            .map(|c| Step::Reset { host: host(c) }),
    );
    let mut rejoining: Vec<String> = others.iter().map(|c| host(c)).collect();
    rejoining.extend(fresh_workers.iter().map(|w| w.to_string()));
    if !rejoining.is_empty() {
        steps.push(Step::DeleteNodes { hosts: rejoining });
    }
    steps.push(Step::Apply);
    Ok(steps)
}

/// [`plan`] for `cluster` as its hosts' facts show it: a host with no kubeadm state at
/// all is a new machine.
pub fn for_cluster(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    source_host: &str,
    cluster_token: &str,
) -> Result<Vec<Step>, String> {
    let fresh = |h: &Host| !facts[&h.name].kubeadm.any();
    let cps: Vec<ControlPlane> = cluster
        .control_planes()
        .map(|h| ControlPlane {
            name: &h.name,
            address: h.node_ip(),
            fresh: fresh(h),
        })
        .collect();
    let fresh_workers: Vec<&str> = cluster
        .workers()
        .filter(|h| fresh(h))
        .map(|h| h.name.as_str())
        .collect();
    plan(&cps, &fresh_workers, source_host, cluster_token)
}

fn peer_url(address: std::net::IpAddr) -> String {
    format!("https://{}:2380", crate::spec::url_host(address))
}

/// Stops the kubelet, then the control-plane processes it ran, waiting until they are gone.
pub fn stop_script() -> String {
    let names = CONTROL_PLANE_PROCESSES.join(" ");
    // A process name is matched on its first 15 bytes (/proc/PID/comm).
    format!(
        "systemctl stop kubelet\n\
         for p in {names}; do pkill -x \"$(printf %.15s \"$p\")\" || true; done\n\
         for i in $(seq 1 50); do\n\
         \x20 running=0; for p in {names}; do pgrep -x \"$(printf %.15s \"$p\")\" >/dev/null && running=1; done\n\
         \x20 [ $running = 0 ] && exit 0; sleep 0.2\n\
         done\n\
         for p in {names}; do pkill -KILL -x \"$(printf %.15s \"$p\")\" || true; done"
    )
}

/// Restores `snapshot` into a fresh etcd data folder (the caller removes the snapshot).
pub fn restore_script(
    snapshot: &str,
    data_dir: &str,
    name: &str,
    peer_url: &str,
    token: &str,
) -> String {
    let (snapshot, data) = (quote(snapshot), quote(data_dir));
    format!(
        "set -e\n\
         rm -rf {data} {data}.restoring\n\
         ETCDCTL_API=3 etcdctl snapshot restore {snapshot} --name {name} \
         --initial-cluster {name}={peer} --initial-cluster-token {token} \
         --initial-advertise-peer-urls {peer} --data-dir {data}.restoring\n\
         chmod 700 {data}.restoring\n\
         mv {data}.restoring {data}",
        name = quote(name),
        peer = quote(peer_url),
        token = quote(token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps() -> Vec<ControlPlane<'static>> {
        vec![
            ControlPlane {
                name: "cp-1",
                address: "10.0.0.11".parse().unwrap(),
                fresh: false,
            },
            ControlPlane {
                name: "cp-2",
                address: "10.0.0.12".parse().unwrap(),
                fresh: false,
            },
            ControlPlane {
                name: "cp-3",
                address: "fd00::13".parse().unwrap(),
                fresh: false,
            },
        ]
    }

    #[test]
    fn the_snapshot_goes_back_to_its_own_host_and_the_others_rejoin() {
        let steps = plan(&cps(), &[], "cp-2", "tok").unwrap();
        let stop = |h: &str| Step::Stop { host: h.into() };
        let reset = |h: &str| Step::Reset { host: h.into() };
        assert_eq!(
            steps,
            [
                stop("cp-1"),
                stop("cp-2"),
                stop("cp-3"),
                Step::PutPki {
                    host: "cp-2".into(),
                    own_certificates: true
                },
                Step::RestoreSnapshot {
                    host: "cp-2".into(),
                    peer_url: "https://10.0.0.12:2380".into(),
                    cluster_token: "tok".into()
                },
                Step::Start {
                    host: "cp-2".into()
                },
                reset("cp-1"),
                reset("cp-3"),
                Step::DeleteNodes {
                    hosts: vec!["cp-1".into(), "cp-3".into()]
                },
                Step::Apply,
            ]
        );
    }

    #[test]
    fn a_source_host_no_longer_in_the_spec_restores_on_the_first() {
        let steps = plan(&cps()[2..], &[], "gone", "tok").unwrap();
        assert_eq!(
            steps[1],
            Step::PutPki {
                host: "cp-3".into(),
                own_certificates: false
            }
        );
        let Step::RestoreSnapshot { peer_url, .. } = &steps[2] else {
            panic!("{steps:?}")
        };
        assert_eq!(peer_url, "https://[fd00::13]:2380");
        assert_eq!(steps.last(), Some(&Step::Apply));
        assert!(!steps.iter().any(|s| matches!(s, Step::DeleteNodes { .. })));
        assert!(plan(&[], &[], "cp-1", "tok").is_err());
    }

    #[test]
    fn new_machines_are_prepared_then_initialised_on_the_restored_data() {
        // Every control plane is a new machine at a new address, and so is worker-2.
        let mut cps = cps();
        for c in &mut cps {
            c.fresh = true;
        }
        cps[1].address = "10.1.0.12".parse().unwrap();
        let steps = plan(&cps, &["worker-2"], "cp-2", "tok").unwrap();
        assert_eq!(
            steps,
            [
                Step::Prepare,
                Step::PutPki {
                    host: "cp-2".into(),
                    own_certificates: false
                },
                Step::RestoreSnapshot {
                    host: "cp-2".into(),
                    peer_url: "https://10.1.0.12:2380".into(),
                    cluster_token: "tok".into()
                },
                Step::InitRestored {
                    host: "cp-2".into()
                },
                Step::DeleteNodes {
                    hosts: vec!["cp-1".into(), "cp-3".into(), "worker-2".into()]
                },
                Step::Apply,
            ]
        );
        assert_eq!(
            steps[1].to_string(),
            "cp-2: put back the cluster CAs and service-account keys"
        );
        // Only the target new: the old machines are stopped and reset as before.
        let mut cps = self::cps();
        cps[0].fresh = true;
        let steps = plan(&cps, &[], "cp-1", "tok").unwrap();
        let stop = |h: &str| Step::Stop { host: h.into() };
        assert_eq!(&steps[..3], [Step::Prepare, stop("cp-2"), stop("cp-3")]);
        assert!(steps.contains(&Step::InitRestored {
            host: "cp-1".into()
        }));
        assert!(steps.contains(&Step::Reset {
            host: "cp-3".into()
        }));
        assert!(!steps.iter().any(|s| matches!(s, Step::Start { .. })));
        // A new machine elsewhere than the target is neither stopped nor reset.
        let mut cps = self::cps();
        cps[2].fresh = true;
        let steps = plan(&cps, &[], "cp-1", "tok").unwrap();
        assert!(
            !steps.contains(&stop("cp-3"))
                && !steps.contains(&Step::Reset {
                    host: "cp-3".into()
                })
        );
        assert!(!steps.contains(&Step::Prepare));
        assert!(steps.contains(&Step::DeleteNodes {
            hosts: vec!["cp-2".into(), "cp-3".into()]
        }));
    }

    #[test]
    fn new_machines_are_told_from_the_recorded_facts() {
        use crate::facts::{parse, recorded};
        // The seed with k8s-master-2 at a new address.
        let c =
            crate::render::test_support::cluster_from(|s| s.replace("192.0.2.11", "192.0.2.111"));
        let mut facts: BTreeMap<String, HostFacts> = c
            .hosts
            .iter()
            .map(|h| (h.name.clone(), parse(recorded::CONTROL_PLANE)))
            .collect();
        for new in [
            "k8s-master-1",
            "k8s-master-2",
            "k8s-master-3",
            "k8s-worker-2",
        ] {
            facts.insert(new.into(), parse(recorded::FRESH));
        }
        let steps = for_cluster(&c, &facts, "k8s-master-2", "tok").unwrap();
        assert_eq!(steps[0], Step::Prepare);
        assert_eq!(
            steps[2],
            Step::RestoreSnapshot {
                host: "k8s-master-2".into(),
                peer_url: "https://192.0.2.111:2380".into(),
                cluster_token: "tok".into()
            }
        );
        assert_eq!(
            steps[3],
            Step::InitRestored {
                host: "k8s-master-2".into()
            }
        );
        assert_eq!(
            steps[4],
            Step::DeleteNodes {
                hosts: vec![
                    "k8s-master-1".into(),
                    "k8s-master-3".into(),
                    "k8s-worker-2".into()
                ]
            }
        );
        // The old machines (recorded control planes): restored as before.
        let old: BTreeMap<String, HostFacts> = c
            .hosts
            .iter()
            .map(|h| (h.name.clone(), parse(recorded::CONTROL_PLANE)))
            .collect();
        let steps = for_cluster(&c, &old, "k8s-master-2", "tok").unwrap();
        assert!(steps.contains(&Step::Start {
            host: "k8s-master-2".into()
        }));
        assert!(!steps.contains(&Step::Prepare));
    }

    #[test]
    fn the_scripts_are_valid_sh_with_every_value_quoted() {
        let restore = restore_script(
            "/var/lib/kubeha/dr/s.db",
            ETCD_DATA,
            "cp-1; rm",
            "https://x:2380",
            "t",
        );
        assert!(restore.contains("--name 'cp-1; rm'"), "{restore}");
        for script in [stop_script(), restore] {
            crate::dr::assert_valid_sh(&script);
        }
    }
}
