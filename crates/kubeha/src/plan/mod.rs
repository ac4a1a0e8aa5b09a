//! spec + facts → the ordered steps `apply` runs and `plan` prints. Pure.
//!
//! Every step exists because a fact says the host differs from the spec, so a
//! converged cluster plans nothing and a half-provisioned one plans exactly what is
//! missing: that is what makes re-runs safe and resumable.

mod certificates;
mod cluster;
mod host;
pub mod membership;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::facts::cluster::NodeTaint;
use crate::facts::HostFacts;
use crate::render::{Package, RenderedFile};
use crate::spec::Cluster;

pub use cluster::{joined, node_patch, peer_url, ClusterState};
pub use host::distro;

/// Phases run in this order; within a phase, hosts run as [`Phase::parallel`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// An etcd backup before an upgrade changes anything.
    Backup,
    /// Load balancers and node preparation, all hosts in parallel.
    Prepare,
    /// `kubeadm init` on the first control plane.
    Init,
    /// Calico, through the Kubernetes API, right after the init as kubeadm documents it:
    /// its rollout then overlaps the joins, and each node that joins later gets
    /// calico-node as soon as it registers.
    Network,
    /// A bootstrap token (and the control-plane certificates) for the joins, when no
    /// init makes them.
    Credentials,
    /// Control planes join one at a time: each adds an etcd member.
    JoinControlPlanes,
    /// Workers join in parallel.
    JoinWorkers,
    /// apiserver certificates re-signed for the spec's SANs, one control plane at a time.
    Certificates,
    /// `kubeadm upgrade apply` on one control plane, then `kubeadm upgrade node` on each
    /// other one, one at a time.
    UpgradeControlPlanes,
    /// kubelet and kubectl on the control planes, one node at a time.
    UpgradeKubelets,
    /// Workers, in batches of `--max-unavailable` (see [`Plan::batches`]).
    UpgradeWorkers,
    /// Node labels and taints, readiness, the local kubeconfig: through the API.
    Cluster,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::Backup,
        Phase::Prepare,
        Phase::Init,
        Phase::Network,
        Phase::Credentials,
        Phase::JoinControlPlanes,
        Phase::JoinWorkers,
        Phase::Certificates,
        Phase::UpgradeControlPlanes,
        Phase::UpgradeKubelets,
        Phase::UpgradeWorkers,
        Phase::Cluster,
    ];

    pub fn parallel(self) -> bool {
        matches!(self, Phase::Prepare | Phase::JoinWorkers)
    }

    /// The phases of a Kubernetes upgrade, run node by node under an API probe.
    pub fn upgrade(self) -> bool {
        matches!(
            self,
            Phase::Backup
                | Phase::UpgradeControlPlanes
                | Phase::UpgradeKubelets
                | Phase::UpgradeWorkers
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Backup => "backup",
            Phase::Prepare => "prepare",
            Phase::Init => "init",
            Phase::Credentials => "join credentials",
            Phase::JoinControlPlanes => "join control planes",
            Phase::JoinWorkers => "join workers",
            Phase::Network => "network",
            Phase::Certificates => "apiserver certificates",
            Phase::UpgradeControlPlanes => "upgrade control planes",
            Phase::UpgradeKubelets => "upgrade control-plane kubelets",
            Phase::UpgradeWorkers => "upgrade workers",
            Phase::Cluster => "cluster",
        })
    }
}

/// One change on one host (or, without a host, on the cluster through its API). Each
/// carries everything its executor needs, so that executing is one `match` that decides
/// nothing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write a managed file; `diff` is a unified diff, or `None` for secrets and binaries.
    WriteFile {
        #[serde(flatten)]
        file: RenderedFile,
        #[serde(skip)]
        bytes: Vec<u8>,
        diff: Option<String>,
        created: bool,
    },
    /// Replace kubeha's marked block in a file others edit too.
    MergeBlock {
        path: String,
        block: String,
    },
    DownloadKey {
        url: String,
        path: String,
        dearmor: bool,
    },
    AptUpdate,
    Install {
        packages: Vec<Package>,
    },
    Hold {
        packages: Vec<String>,
    },
    LoadModules,
    ApplySysctl,
    DisableSwap,
    /// Restart (or reload, where the unit supports it) so a new config takes effect.
    Restart {
        service: String,
        reload: bool,
    },
    /// `systemctl enable`, and start it too unless something else starts it (the
    /// kubelet is started by kubeadm).
    Enable {
        service: String,
        start: bool,
    },
    MarkCluster,
    /// Remove the files holding kubeadm secrets (a token, a certificate key) that a killed
    /// run left on the host.
    RemoveSecretLeftovers {
        paths: Vec<String>,
    },
    /// Clear what an interrupted `kubeadm join` left before joining again.
    ResetPartialJoin,
    /// Delete, after its host's reset, the Node the host registered before (an
    /// interrupted join's kubelet, or the replaced host's): `kubeadm join` refuses to
    /// register a name a Ready Node has, and the API keeps a stopped kubelet's Node Ready
    /// for its grace period. Deleting a Node that is already gone is the outcome asked for.
    DeleteNode {
        node: String,
    },
    KubeadmInit,
    KubeadmJoin {
        control_plane: bool,
    },
    /// Remove an etcd member that was added for this host but is not a healthy member
    /// (an interrupted join), through the healthy control plane `through`, so that the
    /// host's join does not add a second member for the same peer URL.
    RemoveEtcdMember {
        id: String,
        name: String,
        peer_url: String,
        through: String,
    },
    /// Make a bootstrap token through the API and, for control-plane joins, upload the
    /// control-plane certificates; both are revoked when the run ends.
    MintJoinCredentials {
        upload_certificates: bool,
    },
    /// Server-side apply of the fetched, checked and pool-wired Calico manifest.
    ApplyCalico {
        #[serde(skip)]
        manifest: String,
        /// `sha256:<hex>` of `manifest`, as digests are written (and told from secrets).
        digest: String,
    },
    /// Patch a registered Node: set `labels`, remove `remove_labels`, replace its taints
    /// with `taints` (its live taints with the spec's merged in and `remove_taints` left
    /// out) when they differ, and record in its annotations which labels and taints are
    /// kubeha's (the only ones a later run removes). See [`node_patch`].
    ApplyLabelsAndTaints {
        node: String,
        labels: BTreeMap<String, String>,
        /// Labels kubeha set earlier that the spec no longer names.
        remove_labels: Vec<String>,
        taints: Option<Vec<NodeTaint>>,
        /// Taints kubeha set earlier that the spec no longer names (left out of `taints`).
        remove_taints: Vec<NodeTaint>,
        /// The label keys the managed-labels annotation holds afterwards.
        managed_labels: Vec<String>,
        /// The taints (`key:effect`) the managed-taints annotation holds afterwards.
        managed_taints: Vec<String>,
    },
    /// Wait until these nodes are Ready and kube-system is healthy.
    WaitReady {
        nodes: Vec<String>,
    },
    /// Write the bootstrap control plane's trimmed admin kubeconfig locally (0600).
    WriteKubeconfig,
    /// Save a verified etcd backup on the operator's machine before an upgrade.
    Backup,
    /// Record the spec's certSANs in kubeadm-config's ClusterConfiguration, which the
    /// control planes that join later sign their apiserver certificates for.
    UpdateCertSans {
        cert_sans: Vec<String>,
    },
    /// Sign the host's apiserver certificate again for the SANs the spec gives it, with
    /// the cluster CA on the host (the old pair moved aside, `kubeadm init phase certs
    /// apiserver --config`), its apiserver out of the load balancers until it serves it.
    RegenerateApiserverCertificate {
        added: Vec<String>,
        removed: Vec<String>,
        load_balancers: Vec<String>,
        /// The InitConfiguration and ClusterConfiguration kubeadm signs from (no secret).
        #[serde(skip)]
        config: String,
    },
    /// Unhold, upgrade to `version` (a Debian version) and hold `packages` again.
    UpgradePackages {
        packages: Vec<String>,
        version: String,
        /// Restart the kubelet afterwards, so that it runs (and reports) the new version.
        restart_kubelet: bool,
    },
    /// `kubeadm upgrade apply` on the first control plane, with its apiserver out of the
    /// load balancers' rotation until it is ready again.
    KubeadmUpgradeApply {
        version: String,
        load_balancers: Vec<String>,
    },
    /// `kubeadm upgrade node`; on a control plane with its apiserver out of the load
    /// balancers' rotation until its `/readyz`, etcd member and backends are healthy.
    KubeadmUpgradeNode {
        control_plane: bool,
        load_balancers: Vec<String>,
    },
    /// Put an apiserver an interrupted upgrade left in maintenance back into rotation.
    EnableBackend {
        load_balancers: Vec<String>,
    },
    /// Cordon the node (marked as kubeha's) and evict its pods, PodDisruptionBudgets
    /// respected.
    Drain {
        node: String,
    },
    /// Wait until the node is Ready and its kubelet reports `version`.
    WaitNodeVersion {
        node: String,
        version: String,
    },
    /// Make a node kubeha cordoned schedulable again.
    Uncordon {
        node: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::WriteFile { file, created, .. } => write!(
                f,
                "{} {} (mode {:04o}{})",
                if *created { "create" } else { "update" },
                file.path,
                file.mode,
                if file.secret { ", holds secrets" } else { "" }
            ),
            Action::MergeBlock { path, .. } => write!(f, "update kubeha's block in {path}"),
            Action::DownloadKey { url, path, .. } => write!(f, "download apt key {url} to {path}"),
            Action::AptUpdate => f.write_str("apt-get update"),
            Action::Install { packages } => {
                let names: Vec<String> = packages.iter().map(Package::apt_arg).collect();
                write!(f, "install {}", names.join(" "))
            }
            Action::Hold { packages } => write!(f, "apt-mark hold {}", packages.join(" ")),
            Action::LoadModules => f.write_str("load kernel modules overlay, br_netfilter"),
            Action::ApplySysctl => f.write_str("apply sysctls (sysctl --system)"),
            Action::DisableSwap => f.write_str("turn swap off now and at boot"),
            Action::Restart { service, reload } => {
                write!(
                    f,
                    "{} {service}",
                    if *reload { "reload" } else { "restart" }
                )
            }
            Action::Enable {
                service,
                start: true,
            } => write!(f, "enable and start {service}"),
            Action::Enable {
                service,
                start: false,
            } => write!(f, "enable {service}"),
            Action::MarkCluster => f.write_str("record the cluster name in /etc/kubeha/cluster"),
            Action::RemoveSecretLeftovers { paths } => write!(
                f,
                "remove what a killed run left holding kubeadm secrets: {}",
                paths.join(", ")
            ),
            Action::ResetPartialJoin => {
                f.write_str("kubeadm reset -f (an earlier init or join did not finish)")
            }
            Action::DeleteNode { node } => write!(
                f,
                "delete Node {node} from the API, if its earlier kubelet registered it (kubeadm join refuses a Ready Node of its name)"
            ),
            Action::KubeadmInit => {
                f.write_str("kubeadm init --upload-certs (generated token and certificate key)")
            }
            Action::KubeadmJoin {
                control_plane: true,
            } => f.write_str("kubeadm join as a control plane (adds an etcd member)"),
            Action::KubeadmJoin {
                control_plane: false,
            } => f.write_str("kubeadm join as a worker"),
            Action::RemoveEtcdMember {
                id,
                name,
                peer_url,
                through,
            } => {
                let name = if name.is_empty() {
                    "never started"
                } else {
                    name
                };
                write!(
                    f,
                    "remove stale etcd member {id} ({name}, {peer_url}) through {through}"
                )
            }
            Action::MintJoinCredentials {
                upload_certificates,
            } => write!(
                f,
                "make a bootstrap token{} (revoked when the run ends)",
                if *upload_certificates {
                    " and upload the control-plane certificates"
                } else {
                    ""
                }
            ),
            Action::ApplyCalico { digest, .. } => write!(
                f,
                "apply the Calico manifest (server-side apply, {})",
                &digest[..19.min(digest.len())]
            ),
            Action::ApplyLabelsAndTaints {
                node,
                labels,
                remove_labels,
                taints,
                remove_taints,
                ..
            } => {
                let mut parts: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("set label {k}={v}"))
                    .collect();
                parts.extend(remove_labels.iter().map(|k| format!("remove label {k}")));
                parts.extend(remove_taints.iter().map(|t| format!("remove taint {t}")));
                if let Some(taints) = taints {
                    let list: Vec<String> = taints.iter().map(ToString::to_string).collect();
                    parts.push(format!("set taints [{}]", list.join(", ")));
                }
                if parts.is_empty() {
                    write!(
                        f,
                        "record on node {node} which of its labels and taints are kubeha's (annotations)"
                    )
                } else {
                    write!(f, "{} on node {node} through the API", parts.join(", "))
                }
            }
            Action::WaitReady { nodes } => write!(
                f,
                "wait for {} node(s) to be Ready and kube-system to be healthy",
                nodes.len()
            ),
            Action::WriteKubeconfig => f.write_str("write the admin kubeconfig (mode 0600)"),
            Action::Backup => f.write_str("save a verified etcd backup on this machine (0600)"),
            Action::UpdateCertSans { cert_sans } => write!(
                f,
                "set apiServer.certSANs in kube-system/kubeadm-config to [{}]",
                cert_sans.join(", ")
            ),
            Action::RegenerateApiserverCertificate {
                added,
                removed,
                load_balancers,
                ..
            } => {
                let mut change = Vec::new();
                if !added.is_empty() {
                    change.push(format!("SANs added: {}", added.join(", ")));
                }
                if !removed.is_empty() {
                    change.push(format!("removed: {}", removed.join(", ")));
                }
                write!(
                    f,
                    "regenerate the apiserver certificate from the cluster CA ({}), restart its apiserver{}",
                    change.join("; "),
                    if load_balancers.is_empty() {
                        String::new()
                    } else {
                        format!(" out of HAProxy on {}", load_balancers.join(", "))
                    }
                )
            }
            Action::UpgradePackages {
                packages,
                version,
                restart_kubelet,
            } => write!(
                f,
                "upgrade {} to {version} (unhold, install, hold){}",
                packages.join(" "),
                if *restart_kubelet {
                    ", restart the kubelet"
                } else {
                    ""
                }
            ),
            Action::KubeadmUpgradeApply { version, .. } => write!(
                f,
                "kubeadm upgrade apply {version} (its apiserver out of the load balancers meanwhile)"
            ),
            Action::KubeadmUpgradeNode {
                control_plane: true,
                ..
            } => f.write_str(
                "kubeadm upgrade node (its apiserver out of the load balancers until /readyz, etcd and the backends are healthy)",
            ),
            Action::KubeadmUpgradeNode {
                control_plane: false,
                ..
            } => f.write_str("kubeadm upgrade node (the kubelet's configuration)"),
            Action::EnableBackend { .. } => f.write_str(
                "put its apiserver back into the load balancers (an interrupted upgrade left it in maintenance)",
            ),
            Action::Drain { node } => write!(
                f,
                "drain {node} (cordon, evict its pods, PodDisruptionBudgets respected)"
            ),
            Action::WaitNodeVersion { node, version } => {
                write!(f, "wait for {node} to be Ready with kubelet {version}")
            }
            Action::Uncordon { node } => write!(f, "uncordon {node}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub phase: Phase,
    /// `None` for cluster-wide steps.
    pub host: Option<String>,
    /// The action as `plan` prints it and `apply` reports it when it runs.
    pub description: String,
    #[serde(flatten)]
    pub action: Action,
}

impl Step {
    pub fn new(phase: Phase, host: Option<&str>, action: Action) -> Self {
        Step {
            phase,
            host: host.map(String::from),
            description: action.to_string(),
            action,
        }
    }
}

/// Why a plan cannot be made: the hosts are not what the spec says they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub host: String,
    pub message: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.host, self.message)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// What the facts show will go wrong that no step repairs (same shape as conflicts).
    pub warnings: Vec<Conflict>,
    /// The initialised, healthy control plane joins and API steps go through (the init
    /// host when the cluster is new); `None` when no step needs one.
    pub bootstrap: Option<String>,
    /// etcd's members and how many control planes the cluster can lose now; `None`
    /// when no control plane with a healthy member answered.
    pub etcd: Option<membership::EtcdQuorum>,
    /// The workers an upgrade takes out of service together, batch after batch.
    pub batches: Vec<Vec<String>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.phase == phase)
    }
}

/// Every file a host should have, with its bytes (local files already read).
#[derive(Debug, Clone)]
pub struct DesiredFile {
    pub file: RenderedFile,
    pub bytes: Vec<u8>,
}

/// What the planner knows about the hosts and the cluster.
pub struct Inputs<'a> {
    pub cluster: &'a Cluster,
    pub facts: &'a BTreeMap<String, HostFacts>,
    /// Managed files per host (without kubeadm's secret-bearing configs).
    pub desired: &'a BTreeMap<String, Vec<DesiredFile>>,
    /// Current contents of files that differ, for diffs; absent entries show no diff.
    pub current: &'a BTreeMap<(String, String), Vec<u8>>,
    /// What the Kubernetes API says, when it could be reached.
    pub cluster_state: Option<&'a ClusterState>,
    /// The Calico manifest as fetched during the survey (`None`: not fetched, Calico runs).
    pub calico_manifest: Option<&'a Result<String, String>>,
    /// Hosts the user asked to rebuild by name: the only ones holding live data that
    /// may be reset.
    pub replace: &'a BTreeSet<String>,
    /// What an upgrade's checks found, when the cluster's versions differ from the spec's.
    pub upgrade: Option<&'a upgrade::UpgradeFacts>,
    /// Workers an upgrade drains at once.
    pub max_unavailable: usize,
}

/// The plan, or every conflict that makes one unsafe.
pub fn plan(inputs: &Inputs) -> Result<Plan, Vec<Conflict>> {
    let mut conflicts = cluster::conflicts(inputs);
    let upgrading = upgrade::pending(inputs.cluster, inputs.facts, inputs.cluster_state);
    if upgrading {
        conflicts.extend(upgrade::preflight(inputs));
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let (mut steps, bootstrap) = steps(inputs)?;
    // Live certificates only: a fresh cluster's (the runbook's) are made by kubeadm init.
    steps.extend(certificates::steps(inputs));
    let mut batches = Vec::new();
    if upgrading {
        let (upgrade, worker_batches) = upgrade::steps(inputs);
        steps.extend(upgrade);
        batches = worker_batches;
    }
    // In the order apply runs them (stable: within a phase, as planned).
    steps.sort_by_key(|s| s.phase);
    let mut warnings = unresolved_endpoint(inputs);
    warnings.extend(cluster::etcd_disagreements(inputs));
    warnings.extend(cluster::health_warnings(inputs));
    warnings.extend(cluster::drift_warnings(inputs));
    warnings.extend(membership::not_in_spec(
        inputs.cluster,
        inputs.facts,
        inputs.cluster_state,
    ));
    warnings.extend(even_control_planes(inputs.cluster, &steps));
    Ok(Plan {
        steps,
        warnings,
        bootstrap,
        etcd: membership::etcd_quorum(inputs.cluster, inputs.facts),
        batches,
    })
}

/// Every host's preparation, then the kubeadm, network and cluster steps, and the
/// control plane those go through.
fn steps(inputs: &Inputs) -> Result<(Vec<Step>, Option<String>), Vec<Conflict>> {
    let mut steps = Vec::new();
    for h in &inputs.cluster.hosts {
        let facts = &inputs.facts[&h.name];
        let desired = inputs.desired.get(&h.name).map_or(&[][..], Vec::as_slice);
        for action in host::prepare(inputs, h, facts, desired) {
            steps.push(Step::new(Phase::Prepare, Some(&h.name), action));
        }
    }
    let (kubeadm, bootstrap) = cluster::kubeadm_steps(inputs)?;
    steps.extend(kubeadm);
    Ok((steps, bootstrap))
}

/// Joining control planes up to an even count adds an etcd member that buys no fault
/// tolerance: 4 members tolerate one failure, as 3 do.
fn even_control_planes(cluster: &Cluster, steps: &[Step]) -> Option<Conflict> {
    let count = cluster.control_planes().count();
    let grows = steps.iter().any(|s| {
        matches!(
            s.action,
            Action::KubeadmJoin {
                control_plane: true
            }
        )
    });
    (grows && count % 2 == 0).then(|| Conflict {
        host: "cluster".into(),
        message: format!(
            "this apply grows etcd to {count} members, an even number: it tolerates {} failure(s), \
             as {} members do; add or remove one more control plane",
            (count - 1) / 2,
            count - 1
        ),
    })
}

/// The steps `apply` plans for a cluster of fresh machines of `distro` (swap on, nothing
/// installed, loaded or enabled, no cluster yet), with `desired` files per host and
/// `calico_manifest` as the survey would have read it, in apply's order, and the control
/// plane they go through. `render`'s runbook is made of these, so that the two cannot
/// drift. The machines' own checks (operating system, CPUs, memory) are not made: the
/// runbook does not know them.
pub fn fresh_cluster(
    cluster: &Cluster,
    distro: &crate::render::Distro,
    desired: &BTreeMap<String, Vec<DesiredFile>>,
    calico_manifest: &Result<String, String>,
) -> Result<Plan, Vec<Conflict>> {
    let facts = HostFacts {
        os: crate::facts::Os {
            id: distro.id.clone(),
            codename: distro.codename.clone(),
            ..Default::default()
        },
        swap_active: true,
        swap_in_fstab: true,
        ..Default::default()
    };
    let all = cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), facts.clone()))
        .collect();
    let (steps, bootstrap) = steps(&Inputs {
        cluster,
        facts: &all,
        desired,
        current: &BTreeMap::new(),
        cluster_state: None,
        calico_manifest: Some(calico_manifest),
        replace: &BTreeSet::new(),
        upgrade: None,
        max_unavailable: 1,
    })?;
    Ok(Plan {
        steps,
        bootstrap,
        ..Plan::default()
    })
}

/// Nodes on which the endpoint name resolves nowhere and kubeha will not map it: their
/// kubelet could not reach the API.
fn unresolved_endpoint(inputs: &Inputs) -> Vec<Conflict> {
    let cluster = inputs.cluster;
    let why = if cluster.api_endpoint.manage_hosts_entry {
        "kubeha knows no single address for it (no `loadBalancer.virtualIP` and not exactly one load balancer)"
    } else {
        "`apiEndpoint.manageHostsEntry` is off"
    };
    cluster
        .kube_nodes()
        .filter(|h| {
            let mapped = inputs.desired.get(&h.name).is_some_and(|files| {
                files
                    .iter()
                    .any(|d| d.file.path == crate::render::hosts_entry::PATH)
            });
            let resolved = inputs.facts[&h.name]
                .endpoint
                .as_ref()
                .is_none_or(|e| !e.resolved.is_empty());
            !mapped && !resolved
        })
        .map(|h| Conflict {
            host: h.name.clone(),
            message: format!(
                "the API endpoint `{}` does not resolve here and {why}: its kubelet cannot reach the API; \
                 add the name to DNS, or let kubeha map it (`manageHostsEntry: true`)",
                cluster.api_endpoint.host
            ),
        })
        .collect()
}

/// A unified diff of two texts, or `None` when either is not UTF-8.
pub fn unified_diff(path: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let (old, new) = (
        std::str::from_utf8(old).ok()?,
        std::str::from_utf8(new).ok()?,
    );
    Some(
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(2)
            .header(&format!("{path} (now)"), &format!("{path} (planned)"))
            .to_string(),
    )
}

#[cfg(test)]
mod tests;
