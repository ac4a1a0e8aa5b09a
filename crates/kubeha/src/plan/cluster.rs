//! Cluster-level rules: refusing hosts that belong elsewhere, and the kubeadm phases
//! (init once, control-plane joins one at a time, workers, then the CNI).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Action, Conflict, Inputs, Phase, Step};
use crate::facts::HostFacts;
use crate::spec::{Host, Role};

/// What the Kubernetes API reported.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterState {
    /// Registered nodes and whether each is Ready.
    pub nodes: BTreeMap<String, bool>,
    /// The `calico-node` DaemonSet exists.
    pub calico: bool,
}

/// kubeadm 1.31's preflight minimums for a control plane.
const MIN_CONTROL_PLANE_CPUS: u32 = 2;
const MIN_CONTROL_PLANE_MEMORY_MB: u64 = 1700;

/// A host that finished joining (or init): kubelet bootstrapped and, for control
/// planes, the control-plane kubeconfig and etcd member are in place.
pub fn joined(host: &Host, f: &HostFacts) -> bool {
    let k = &f.kubeadm;
    if host.has(Role::ControlPlane) {
        // Only a definite "kubeadm-config is missing" marks an unfinished init; an API
        // that did not answer is no reason to redo a control plane.
        k.kubelet_conf && k.admin_conf && k.etcd_manifest && k.config_uploaded != Some(false)
    } else {
        k.kubelet_conf
    }
}

/// The CA every joined host must share: the first initialised control plane's.
fn reference_ca<'a>(inputs: &'a Inputs) -> Option<(&'a str, &'a str)> {
    let cps = inputs.cluster.control_planes();
    let mut with_ca = inputs.cluster.hosts.iter().filter_map(|h| {
        Some((
            h.name.as_str(),
            inputs.facts[&h.name].kubeadm.ca_cert.as_deref()?,
        ))
    });
    cps.filter(|h| joined(h, &inputs.facts[&h.name]))
        .find_map(|h| {
            Some((
                h.name.as_str(),
                inputs.facts[&h.name].kubeadm.ca_cert.as_deref()?,
            ))
        })
        .or_else(|| with_ca.next())
}

pub fn conflicts(inputs: &Inputs) -> Vec<Conflict> {
    let cluster = inputs.cluster;
    let mut out = Vec::new();
    let mut conflict = |host: &Host, message: String| {
        out.push(Conflict {
            host: host.name.clone(),
            message,
        })
    };
    let reference = reference_ca(inputs);
    for h in &cluster.hosts {
        let f = &inputs.facts[&h.name];
        if let Err(refused) = crate::render::Distro::from_host(&f.os.id, &f.os.codename) {
            // Both values end up in apt source lines and key URLs.
            conflict(h, refused);
        } else if !matches!(f.os.id.as_str(), "debian" | "ubuntu") {
            conflict(
                h,
                format!(
                    "unsupported operating system `{}`: kubeha manages Debian and Ubuntu hosts (apt and systemd)",
                    crate::spec::escape_controls(&f.os.pretty_name)
                ),
            );
        }
        if f.kubeadm_running {
            conflict(
                h,
                "a kubeadm process is still running there; wait for it to end (or stop it) and run again".into(),
            );
        }
        if let Some(marker) = &f.cluster_marker {
            if *marker != cluster.name {
                conflict(
                    h,
                    format!(
                        "belongs to cluster `{marker}`, not `{}`; refusing to touch it",
                        cluster.name
                    ),
                );
                continue;
            }
        }
        if let (Some((ref_host, ref_ca)), Some(ca)) = (reference, f.kubeadm.ca_cert.as_deref()) {
            if ca != ref_ca {
                conflict(
                    h,
                    format!(
                        "its Kubernetes CA differs from {ref_host}'s: it belongs to another cluster; \
                         run `kubeadm reset` on it yourself if it should join this one"
                    ),
                );
            }
        }
        if h.is_kube_node() && joined(h, f) {
            let want = cluster.kubernetes.version.deb_version();
            if let Some(have) = f.packages.get("kubeadm").filter(|v| **v != want) {
                conflict(
                    h,
                    format!("runs kubeadm {have} but the spec says {want}: change versions with `kubeha upgrade`"),
                );
            }
        }
        if h.has(Role::ControlPlane) {
            if f.cpus < MIN_CONTROL_PLANE_CPUS {
                conflict(
                    h,
                    format!(
                        "has {} CPU(s); a control plane needs at least {MIN_CONTROL_PLANE_CPUS}",
                        f.cpus
                    ),
                );
            }
            if f.memory_mb < MIN_CONTROL_PLANE_MEMORY_MB {
                conflict(
                    h,
                    format!(
                        "has {} MB of memory; a control plane needs at least {MIN_CONTROL_PLANE_MEMORY_MB} MB",
                        f.memory_mb
                    ),
                );
            }
        }
    }
    out
}

pub fn kubeadm_steps(inputs: &Inputs) -> Vec<Step> {
    let cluster = inputs.cluster;
    let facts = |h: &Host| &inputs.facts[&h.name];
    let registered = |h: &Host| {
        inputs
            .cluster_state
            .is_none_or(|s| s.nodes.contains_key(&h.name))
    };
    let mut steps = Vec::new();
    let mut push = |phase, host: &Host, action| {
        steps.push(Step {
            phase,
            host: Some(host.name.clone()),
            action,
        })
    };
    let initialised = cluster.control_planes().any(|h| joined(h, facts(h)));
    for h in cluster.kube_nodes() {
        let f = facts(h);
        let is_cp = h.has(Role::ControlPlane);
        let first = std::ptr::eq(h, cluster.first_control_plane());
        // A joined node the API no longer knows (deleted) joins again; the init host never.
        if joined(h, f) && (registered(h) || first) {
            continue;
        }
        let phase = match (is_cp, first && !initialised) {
            (_, true) => Phase::Init,
            (true, false) => Phase::JoinControlPlanes,
            (false, _) => Phase::JoinWorkers,
        };
        if f.kubeadm.any() {
            push(phase, h, Action::ResetPartialJoin);
        }
        let action = if phase == Phase::Init {
            Action::KubeadmInit
        } else {
            Action::KubeadmJoin {
                control_plane: is_cp,
            }
        };
        push(phase, h, action);
    }
    if inputs.cluster_state.is_none_or(|s| !s.calico) {
        steps.push(Step {
            phase: Phase::Network,
            host: None,
            action: Action::ApplyCalico,
        });
    }
    steps
}
