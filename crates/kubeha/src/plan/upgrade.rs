//! A rolling Kubernetes upgrade, planned from facts: the refusals that keep a cluster
//! out of a half-upgraded state nobody can finish, then kubeadm's order (the first
//! control plane's `upgrade apply`, every other control plane's `upgrade node` one at a
//! time, the control planes' kubelets one at a time, the workers in batches). Every step
//! exists because a fact shows it has not happened yet, so a run killed anywhere is
//! finished by the next one: `upgrade apply` never runs on a cluster whose kubeadm-config
//! already has the target, nodes at the target are left alone, and a node kubeha cordoned
//! is uncordoned. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::cluster::{bootstrap, etcd_disagreements, etcd_views, joined, node, peer_url, CLUSTER};
use super::{Action, ClusterState, Conflict, Inputs, Phase, Step};
use crate::facts::HostFacts;
use crate::spec::{Cluster, Host, KubernetesVersion, Role};

/// The packages an upgrade moves, on every node.
pub const PACKAGES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];
/// Certificates must outlive the start of an upgrade by this much (seconds): one that
/// expires while nodes are half-upgraded stops the rest.
pub const CERTIFICATE_MARGIN: i64 = 2 * 86_400;
/// How many minors a kubelet may lag the API server (the skew policy since 1.28).
pub const KUBELET_SKEW: u32 = 3;

/// What an upgrade needs to know beyond the shared facts, gathered over SSH only while
/// an upgrade is pending.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeFacts {
    /// Per control plane, the version its kube-apiserver manifest runs (`v1.31.0`).
    pub apiserver_manifests: BTreeMap<String, String>,
    /// Per host checked, the versions of each Kubernetes package the target
    /// repository offers (`apt-cache policy`, dpkg's own record left out).
    pub available: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Hosts whose repository could not be asked, and why.
    pub repository_problems: BTreeMap<String, String>,
    /// Every control-plane certificate: host, file, notAfter (Unix seconds).
    pub certificates: Vec<(String, String, i64)>,
    /// When these facts were gathered (Unix seconds).
    pub now: i64,
    /// HAProxy's state of each apiserver backend (`UP`, `MAINT`, …), per load balancer.
    pub backends: BTreeMap<String, BTreeMap<String, String>>,
}

/// An upgrade has work left: the cluster's version, a joined node's packages or
/// kubelet differ from the spec's, or a node kubeha cordoned is still cordoned.
pub fn pending(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: Option<&ClusterState>,
) -> bool {
    let want = cluster.kubernetes.version.to_string();
    let deb = cluster.kubernetes.version.deb_version();
    let live = state
        .and_then(|s| s.kubeadm_config.as_ref())
        .map(|c| c.kubernetes_version.as_str());
    if live.is_some_and(|v| !v.is_empty() && v != want) {
        return true;
    }
    cluster.kube_nodes().any(|h| {
        let f = &facts[&h.name];
        let packages = joined(h, f)
            && PACKAGES
                .iter()
                .any(|p| f.packages.get(*p).is_some_and(|v| *v != deb));
        let node = state.and_then(|s| s.nodes.get(&h.name));
        packages
            || node.is_some_and(|n| {
                n.cordoned_by_kubeha || (!n.kubelet_version.is_empty() && n.kubelet_version != want)
            })
    })
}

fn refusal(host: &str, message: String) -> Conflict {
    Conflict {
        host: host.into(),
        message,
    }
}

/// Everything that makes the upgrade unsafe to start (or to go on with); empty when it
/// may run. Nothing has changed on any host when these are reported.
pub fn preflight(inputs: &Inputs) -> Vec<Conflict> {
    let cluster = inputs.cluster;
    let target = cluster.kubernetes.version;
    let mut out = Vec::new();
    let Some(state) = inputs.cluster_state else {
        return vec![refusal(
            CLUSTER,
            "the Kubernetes API did not answer: an upgrade needs the cluster's version and its Nodes"
                .into(),
        )];
    };
    // A missing kubeadm-config is a conflict of its own (see `cluster`).
    let Some(config) = &state.kubeadm_config else {
        return out;
    };
    let Some(live) = KubernetesVersion::parse(&config.kubernetes_version) else {
        return vec![refusal(
            CLUSTER,
            format!(
                "kubeadm-config names Kubernetes `{}`, which is not a version kubeha can upgrade from",
                crate::spec::escape_controls(&config.kubernetes_version)
            ),
        )];
    };
    if target < live {
        out.push(refusal(
            CLUSTER,
            format!(
                "the cluster runs Kubernetes {live} and the spec says {target}: kubeadm does not \
                 downgrade; put `kubernetes.version: {live}` back in the spec (a backup taken before \
                 the upgrade restores the old data, not the old version)"
            ),
        ));
        return out;
    }
    if target.major != live.major || target.minor > live.minor + 1 {
        out.push(refusal(
            CLUSTER,
            format!(
                "the cluster runs Kubernetes {live} and the spec says {target}: kubeadm upgrades one \
                 minor version at a time; upgrade to v{}.{}.x first, then to {target}",
                live.major,
                live.minor + 1
            ),
        ));
        return out;
    }
    for h in cluster.kube_nodes() {
        let f = &inputs.facts[&h.name];
        let Some(n) = node(inputs, h).filter(|_| joined(h, f)) else {
            out.push(refusal(
                &h.name,
                format!(
                    "it is not a node of the cluster yet: join it at the cluster's version first \
                     (`kubernetes.version: {live}`, then `kubeha apply`), then upgrade"
                ),
            ));
            continue;
        };
        if !n.ready {
            out.push(refusal(
                &h.name,
                "its node is not Ready: an upgrade drains nodes one after another and needs every \
                 node Ready; repair it first (`kubeha status`)"
                    .into(),
            ));
        }
        let Some(kubelet) = KubernetesVersion::parse(&n.kubelet_version) else {
            continue;
        };
        if kubelet > live {
            out.push(refusal(
                &h.name,
                format!(
                    "its kubelet runs {kubelet}, newer than the control plane's {live}: a kubelet \
                     must never be newer than the API server; put its packages back to {live}"
                ),
            ));
        } else if target.minor > kubelet.minor + KUBELET_SKEW {
            out.push(refusal(
                &h.name,
                format!(
                    "its kubelet runs {kubelet}, more than {KUBELET_SKEW} minor versions behind \
                     {target} (the kubelet skew policy): bring it to v{}.{} first",
                    live.major, live.minor
                ),
            ));
        }
    }
    etcd_refusals(inputs, &mut out);
    let Some(upgrade) = inputs.upgrade else {
        out.push(refusal(
            CLUSTER,
            "the upgrade's checks (packages, certificates, manifests) were not gathered".into(),
        ));
        return out;
    };
    let deb = target.deb_version();
    for (host, problem) in &upgrade.repository_problems {
        out.push(refusal(
            host,
            format!("cannot ask the target repository for the {deb} packages: {problem}"),
        ));
    }
    for (host, offered) in &upgrade.available {
        for package in PACKAGES {
            let versions = offered.get(package).map_or(&[][..], Vec::as_slice);
            if !versions.contains(&deb) {
                let seen = if versions.is_empty() {
                    "none".to_string()
                } else {
                    versions.join(", ")
                };
                out.push(refusal(
                    host,
                    format!(
                        "the configured repository has no {package} {deb} (it offers: {seen}); \
                         publish it there (or fix `packages`) before upgrading"
                    ),
                ));
            }
        }
    }
    for (host, file, not_after) in &upgrade.certificates {
        let left = not_after - upgrade.now;
        if left < CERTIFICATE_MARGIN {
            out.push(refusal(
                host,
                format!(
                    "{file} {}: renew the certificates first (`kubeha certs renew`)",
                    if left <= 0 {
                        "has expired".to_string()
                    } else {
                        format!(
                            "expires in {} hour(s), during the upgrade window",
                            left / 3600
                        )
                    }
                ),
            ));
        }
    }
    out
}

/// etcd must be whole, agreed and able to lose one member: each control plane's
/// upgrade restarts its static pods.
fn etcd_refusals(inputs: &Inputs, out: &mut Vec<Conflict>) {
    for h in inputs.cluster.control_planes() {
        let healthy = inputs.facts[&h.name]
            .etcd
            .as_ref()
            .is_some_and(|v| v.with_peer(&peer_url(h)).any(|m| m.healthy && m.started()));
        if !healthy {
            out.push(refusal(
                &h.name,
                "its etcd member is not healthy (or etcd did not answer there): repair etcd before \
                 upgrading (`kubeha status`)"
                    .into(),
            ));
        }
    }
    for d in etcd_disagreements(inputs) {
        out.push(refusal(
            &d.host,
            format!(
                "{}: etcd membership is changing; upgrade once it settles",
                d.message
            ),
        ));
    }
    let Some((_, view)) = etcd_views(inputs).next() else {
        return;
    };
    let voting: Vec<_> = view
        .members
        .iter()
        .filter(|m| m.started() && !m.learner)
        .collect();
    let healthy = voting.iter().filter(|m| m.healthy).count();
    let quorum = voting.len() / 2 + 1;
    if voting.len() > 1 && healthy.saturating_sub(1) < quorum {
        out.push(refusal(
            CLUSTER,
            format!(
                "etcd has {healthy} healthy of {} voting members: upgrading a control plane restarts \
                 its member, which would leave etcd without quorum; repair etcd first",
                voting.len()
            ),
        ));
    }
}

/// The upgrade's steps and the worker batches, in kubeadm's order; only what the facts
/// show has not happened yet.
pub fn steps(inputs: &Inputs) -> (Vec<Step>, Vec<Vec<String>>) {
    let cluster = inputs.cluster;
    let target = cluster.kubernetes.version.to_string();
    let deb = cluster.kubernetes.version.deb_version();
    let facts = |h: &Host| &inputs.facts[&h.name];
    let at_target = |h: &Host, package: &str| facts(h).packages.get(package) == Some(&deb);
    let empty = BTreeMap::new();
    let manifests = inputs.upgrade.map_or(&empty, |u| &u.apiserver_manifests);
    let live = inputs
        .cluster_state
        .and_then(|s| s.kubeadm_config.as_ref())
        .map(|c| c.kubernetes_version.clone())
        .unwrap_or_default();
    let load_balancers: Vec<String> = cluster.load_balancers().map(|h| h.name.clone()).collect();
    let mut steps = Vec::new();
    let mut kubeadm_upgraded = BTreeSet::new();
    let mut upgrade_kubeadm = |h: &Host, phase: Phase, steps: &mut Vec<Step>| {
        if !at_target(h, "kubeadm") && kubeadm_upgraded.insert(h.name.clone()) {
            steps.push(Step::new(
                phase,
                Some(&h.name),
                Action::UpgradePackages {
                    packages: vec!["kubeadm".into()],
                    version: deb.clone(),
                    restart_kubelet: false,
                },
            ));
        }
    };

    // Control planes: `upgrade apply` once (only while kubeadm-config has the old version),
    // then `upgrade node` wherever the apiserver manifest is not at the target yet.
    let first = bootstrap(inputs).unwrap_or(cluster.first_control_plane());
    let mut upgraded_control_planes = BTreeSet::new();
    if live != target {
        upgrade_kubeadm(first, Phase::UpgradeControlPlanes, &mut steps);
        steps.push(Step::new(
            Phase::UpgradeControlPlanes,
            Some(&first.name),
            Action::KubeadmUpgradeApply {
                version: target.clone(),
                load_balancers: load_balancers.clone(),
            },
        ));
        upgraded_control_planes.insert(first.name.clone());
    }
    // Backends an interrupted run left in maintenance, put back where the control plane
    // has nothing left to do (a planned `upgrade` puts its own back).
    let in_maintenance: BTreeSet<&String> = inputs
        .upgrade
        .iter()
        .flat_map(|u| u.backends.values())
        .flat_map(|servers| servers.iter())
        .filter(|(_, state)| state.starts_with("MAINT"))
        .map(|(server, _)| server)
        .collect();
    let ordered =
        std::iter::once(first).chain(cluster.control_planes().filter(|h| h.name != first.name));
    for h in ordered {
        if upgraded_control_planes.contains(&h.name) {
            continue;
        }
        if manifests.get(&h.name) == Some(&target) {
            if in_maintenance.contains(&h.name) {
                steps.push(Step::new(
                    Phase::UpgradeControlPlanes,
                    Some(&h.name),
                    Action::EnableBackend {
                        load_balancers: load_balancers.clone(),
                    },
                ));
            }
            continue;
        }
        upgrade_kubeadm(h, Phase::UpgradeControlPlanes, &mut steps);
        steps.push(Step::new(
            Phase::UpgradeControlPlanes,
            Some(&h.name),
            Action::KubeadmUpgradeNode {
                control_plane: true,
                load_balancers: load_balancers.clone(),
            },
        ));
        upgraded_control_planes.insert(h.name.clone());
    }
    // kubelets: control planes one at a time, then workers.
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut pending_workers = Vec::new();
    for h in cluster.control_planes().chain(cluster.workers()) {
        let Some(n) = node(inputs, h) else { continue };
        let kubelet_done =
            at_target(h, "kubelet") && at_target(h, "kubectl") && n.kubelet_version == target;
        if kubelet_done && !n.cordoned_by_kubeha && at_target(h, "kubeadm") {
            continue;
        }
        let worker = !h.has(Role::ControlPlane);
        let phase = if worker {
            Phase::UpgradeWorkers
        } else {
            Phase::UpgradeKubelets
        };
        upgrade_kubeadm(h, phase, &mut steps);
        let mut push = |action| steps.push(Step::new(phase, Some(&h.name), action));
        if !kubelet_done {
            if worker {
                push(Action::KubeadmUpgradeNode {
                    control_plane: false,
                    load_balancers: Vec::new(),
                });
            }
            push(Action::Drain {
                node: h.name.clone(),
            });
            push(Action::UpgradePackages {
                packages: vec!["kubelet".into(), "kubectl".into()],
                version: deb.clone(),
                restart_kubelet: true,
            });
        }
        if !kubelet_done || n.cordoned_by_kubeha {
            push(Action::WaitNodeVersion {
                node: h.name.clone(),
                version: target.clone(),
            });
            push(Action::Uncordon {
                node: h.name.clone(),
            });
        }
        if worker {
            pending_workers.push(h.name.clone());
        }
    }
    for chunk in pending_workers.chunks(inputs.max_unavailable.max(1)) {
        batches.push(chunk.to_vec());
    }

    // Before anything changes a host: the etcd backup.
    let changes = steps.iter().any(|s| {
        !matches!(
            s.action,
            Action::WaitNodeVersion { .. } | Action::Uncordon { .. } | Action::EnableBackend { .. }
        )
    });
    if changes {
        steps.insert(0, Step::new(Phase::Backup, None, Action::Backup));
    }
    (steps, batches)
}

/// The versions of each package `apt-cache policy` lists from a repository (versions
/// known only from dpkg's status file, i.e. installed but no longer offered, are left out).
pub fn policy_versions(output: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut package: Option<String> = None;
    let mut version: Option<String> = None;
    let mut in_table = false;
    for line in output.lines() {
        let trimmed = line.trim();
        if !line.starts_with(' ') && trimmed.ends_with(':') {
            let name = trimmed.trim_end_matches(':').to_string();
            out.entry(name.clone()).or_default();
            package = Some(name);
            (in_table, version) = (false, None);
            continue;
        }
        if trimmed == "Version table:" {
            in_table = true;
            continue;
        }
        let Some(package) = package.as_ref().filter(|_| in_table) else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        if trimmed.starts_with("***") || indent <= 5 {
            version = trimmed
                .trim_start_matches("***")
                .split_whitespace()
                .next()
                .map(String::from);
        } else if let Some(v) = &version {
            let from_repository = !trimmed.ends_with("/var/lib/dpkg/status");
            let list = out.entry(package.clone()).or_default();
            if from_repository && !list.contains(v) {
                list.push(v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
