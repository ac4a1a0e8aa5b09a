//! Membership changes as data, pure: how many control planes etcd can lose right now,
//! the quorum guard, and the ordered steps of `kubeha node remove`, all from recorded
//! facts. The shell that runs the steps is `crate::node`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::cluster::{peer_url, ClusterState};
use super::{unified_diff, Conflict};
use crate::facts::cluster::{EtcdMember, EtcdView};
use crate::facts::{sha256_hex, HostFacts};
use crate::render::haproxy;
use crate::spec::{Cluster, Host, Role};

/// Votes etcd needs to commit anything with `members` voting members.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

/// etcd's voting membership as one control plane whose own member is healthy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdQuorum {
    /// The control plane whose `etcdctl` this comes from.
    pub seen_from: String,
    /// Voting members (learners do not vote).
    pub members: usize,
    pub healthy: usize,
    pub quorum: usize,
    /// How many more members (control planes) etcd can lose and keep quorum.
    pub fault_tolerance: usize,
    /// Voting members that are not healthy, by name (the ID for one never started).
    pub unhealthy: Vec<String>,
}

fn member_label(m: &EtcdMember) -> String {
    if m.started() {
        m.name.clone()
    } else {
        format!("{} (never started)", m.id)
    }
}

impl EtcdQuorum {
    pub fn of(seen_from: &str, view: &EtcdView) -> Self {
        let (healthy, members) = view.votes();
        let voting = view.members.iter().filter(|m| !m.learner);
        EtcdQuorum {
            seen_from: seen_from.into(),
            members,
            healthy,
            quorum: quorum(members),
            fault_tolerance: healthy.saturating_sub(quorum(members)),
            unhealthy: voting
                .filter(|m| !(m.healthy && m.started()))
                .map(member_label)
                .collect(),
        }
    }
}

impl fmt::Display for EtcdQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "etcd has {} member(s), {} healthy (quorum {}): ",
            self.members, self.healthy, self.quorum
        )?;
        if self.healthy < self.quorum {
            f.write_str("no quorum")?;
        } else {
            write!(
                f,
                "the cluster can lose {} control plane(s) now",
                self.fault_tolerance
            )?;
        }
        if !self.unhealthy.is_empty() {
            write!(f, " (not healthy: {})", self.unhealthy.join(", "))?;
        }
        Ok(())
    }
}

/// The first control plane (spec order, `except` left out) whose own etcd member is
/// healthy, and its view: the member list every membership decision trusts.
fn healthy_view<'a>(
    cluster: &'a Cluster,
    facts: &'a BTreeMap<String, HostFacts>,
    except: Option<&str>,
) -> Option<(&'a Host, &'a EtcdView)> {
    cluster
        .control_planes()
        .filter(|h| Some(h.name.as_str()) != except)
        .filter_map(|h| Some((h, facts.get(&h.name)?.etcd.as_ref()?)))
        .find(|(h, v)| v.with_peer(&peer_url(h)).any(|m| m.healthy && m.started()))
}

/// What `plan` and `status` say about fault tolerance; `None` when no control plane
/// with a healthy member answered.
pub fn etcd_quorum(cluster: &Cluster, facts: &BTreeMap<String, HostFacts>) -> Option<EtcdQuorum> {
    healthy_view(cluster, facts, None).map(|(h, v)| EtcdQuorum::of(&h.name, v))
}

/// One step of a removal, in the order it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum RemoveStep {
    /// Mark the Node unschedulable.
    Cordon { node: String },
    /// Evict its pods, honouring PodDisruptionBudgets, within `timeout_seconds`; with
    /// `force_delete` (no kubelet will ever end them) pods left are deleted.
    Drain {
        node: String,
        timeout_seconds: u64,
        force_delete: bool,
    },
    /// A verified etcd backup written locally (0600) before etcd changes.
    Backup,
    /// Take the node's server out of rotation on the load balancers (HAProxy `maint`,
    /// then its remaining sessions closed), before their config drops it.
    OutOfRotation {
        server: String,
        load_balancers: Vec<String>,
    },
    /// Write `haproxy.cfg` without the node's server and reload HAProxy (established
    /// connections stay with the old worker until they end).
    UpdateLoadBalancer {
        host: String,
        #[serde(skip)]
        config: String,
        diff: Option<String>,
    },
    /// Stop the node's apiserver (its static-pod manifest moved aside) and wait until it
    /// no longer answers: its graceful shutdown closes the sessions the old HAProxy
    /// worker still holds, so their clients reconnect to the others before etcd changes.
    StopApiserver { host: String, apiserver: String },
    /// `etcdctl move-leader` on the node itself when its member leads etcd: removing the
    /// leader makes the others wait an election timeout (about a second) before anything
    /// is committed, which clients see as API errors; a transfer is immediate.
    MoveEtcdLeader {
        host: String,
        to_id: String,
        to_name: String,
    },
    /// `etcdctl member remove` through a control plane whose own member is healthy.
    RemoveEtcdMember {
        id: String,
        name: String,
        through: String,
    },
    /// `kubeadm reset -f` on the host, and kubeadm's PKI and etcd data removed.
    Reset { host: String },
    /// Delete the Node object.
    DeleteNode { node: String },
}

impl fmt::Display for RemoveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveStep::Cordon { node } => write!(f, "cordon node {node}"),
            RemoveStep::Drain {
                node,
                timeout_seconds,
                force_delete,
            } => write!(
                f,
                "drain node {node} (PodDisruptionBudgets honoured, {timeout_seconds}s at most{})",
                if *force_delete {
                    "; pods its kubelet cannot end are deleted"
                } else {
                    ""
                }
            ),
            RemoveStep::Backup => {
                f.write_str("take a verified etcd backup (written locally, 0600)")
            }
            RemoveStep::OutOfRotation {
                server,
                load_balancers,
            } => write!(
                f,
                "take {server} out of rotation on {} (no new requests; its sessions closed after 1s)",
                load_balancers.join(", ")
            ),
            RemoveStep::UpdateLoadBalancer { host, .. } => write!(
                f,
                "{host}: write {} without the node's server and reload haproxy",
                haproxy::PATH
            ),
            RemoveStep::StopApiserver { host, .. } => write!(
                f,
                "{host}: stop the apiserver (manifest moved aside) and wait until it no longer answers"
            ),
            RemoveStep::MoveEtcdLeader {
                host,
                to_id,
                to_name,
            } => write!(
                f,
                "{host}: hand etcd's leadership to member {to_id} ({to_name}) before its member goes"
            ),
            RemoveStep::RemoveEtcdMember { id, name, through } => {
                write!(f, "remove etcd member {id} ({name}) through {through}")
            }
            RemoveStep::Reset { host } => write!(
                f,
                "{host}: kubeadm reset -f, remove /etc/kubernetes/pki and /var/lib/etcd"
            ),
            RemoveStep::DeleteNode { node } => write!(f, "delete node {node}"),
        }
    }
}

/// What `node remove` plans from.
pub struct RemovalInputs<'a> {
    /// The spec as loaded: it may still list the node, or no longer.
    pub cluster: &'a Cluster,
    pub name: &'a str,
    /// Facts of every host reached (the node's only when it was contacted).
    pub facts: &'a BTreeMap<String, HostFacts>,
    /// Spec hosts not reached, and why.
    pub unreachable: &'a BTreeMap<String, String>,
    pub cluster_state: Option<&'a ClusterState>,
    /// The node is gone: it is not contacted, and pods left on it are deleted.
    pub force: bool,
    pub drain_timeout: Duration,
}

/// The removal as `node remove` shows it before it asks, and then runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    pub node: String,
    pub control_plane: bool,
    /// The spec still lists the node (the user is told to delete it afterwards).
    pub in_spec: bool,
    /// etcd before the removal, for a control plane.
    pub etcd: Option<EtcdQuorum>,
    /// How many control planes etcd can lose once the member is gone.
    pub fault_tolerance_after: Option<usize>,
    pub steps: Vec<RemoveStep>,
    /// What the user should know (no SSH to the node, what to do next).
    pub notes: Vec<String>,
}

fn refuse(host: &str, message: String) -> Vec<Conflict> {
    vec![Conflict {
        host: host.into(),
        message,
    }]
}

/// The steps that remove `name` from the cluster, or why that is refused (nothing is
/// changed then).
pub fn plan_removal(inputs: &RemovalInputs) -> Result<Removal, Vec<Conflict>> {
    let (cluster, name) = (inputs.cluster, inputs.name);
    let host = cluster.hosts.iter().find(|h| h.name == name);
    let node = inputs.cluster_state.and_then(|s| s.nodes.get(name));
    let target_peer = host.map(peer_url);
    let is_target = |m: &EtcdMember| {
        m.name == name
            || target_peer
                .as_ref()
                .is_some_and(|p| m.peer_urls.iter().any(|u| u == p))
    };
    // The member list is trusted from another control plane whose own member is healthy
    // (the one the removal goes through), else from the node itself, so that the quorum
    // guard can still say which other member is down.
    let through = healthy_view(cluster, inputs.facts, Some(name)).map(|(h, _)| h);
    let view = through
        .and_then(|h| Some((h, inputs.facts.get(&h.name)?.etcd.as_ref()?)))
        .or_else(|| healthy_view(cluster, inputs.facts, None));
    let members: Vec<&EtcdMember> = view
        .map(|(_, v)| v.members.iter().filter(|m| is_target(m)).collect())
        .unwrap_or_default();
    let control_plane = host.is_some_and(|h| h.has(Role::ControlPlane))
        || !members.is_empty()
        || node.is_some_and(|n| {
            n.labels
                .contains_key("node-role.kubernetes.io/control-plane")
        });
    if host.is_none() && node.is_none() && members.is_empty() {
        return Err(refuse(
            name,
            "no such node: the spec, the Kubernetes API and etcd know nothing of that name".into(),
        ));
    }
    if let Some(h) = host.filter(|h| !h.is_kube_node()) {
        return Err(refuse(
            &h.name,
            "is a load balancer only: `node remove` removes control planes and workers; \
             delete it from the spec and run `kubeha apply` to re-render the others"
                .into(),
        ));
    }
    let reached = inputs.facts.get(name);
    if let (Some(_), None, false) = (host, reached, inputs.force) {
        let why = inputs
            .unreachable
            .get(name)
            .map_or("it was not contacted".to_string(), Clone::clone);
        return Err(refuse(
            name,
            format!(
                "cannot reach it ({why}); if it is gone for good, run again with `--force`: \
                 its etcd member and Node are removed without SSH to it"
            ),
        ));
    }
    let no_api = || {
        refuse(
            name,
            "the Kubernetes API did not answer: kubeha cannot drain the node or delete it; \
             nothing was changed. Bring the API back (`kubeha status`) and run again"
                .into(),
        )
    };
    let mut notes = Vec::new();
    let mut steps = Vec::new();
    let (mut etcd, mut fault_tolerance_after) = (None, None);
    if control_plane {
        let down: Vec<String> = cluster
            .control_planes()
            .filter(|h| h.name != name)
            .filter_map(|h| Some(format!("{} ({})", h.name, inputs.unreachable.get(&h.name)?)))
            .collect();
        let no_member = || {
            refuse(
                name,
                format!(
                    "quorum guard: no other control plane has a healthy etcd member to remove \
                     this one through (etcd has no quorum or did not answer{}); nothing was \
                     changed. Bring the other control planes back and run again (`kubeha status` \
                     shows each member; `kubeha restore` brings back a cluster that lost quorum)",
                    match down.as_slice() {
                        [] => String::new(),
                        d => format!("; unreachable: {}", d.join(", ")),
                    }
                ),
            )
        };
        let Some((seen_from, v)) = view else {
            return Err(no_member());
        };
        let before = EtcdQuorum::of(&seen_from.name, v);
        let others: Vec<String> = v
            .members
            .iter()
            .filter(|m| !m.learner && !is_target(m))
            .filter(|m| !(m.healthy && m.started()))
            .map(|m| {
                let label = member_label(m);
                match inputs.unreachable.get(&m.name) {
                    Some(why) => format!("{label} (unreachable: {why})"),
                    None => label,
                }
            })
            .collect();
        if !others.is_empty() {
            return Err(refuse(
                name,
                format!(
                    "quorum guard: another etcd member is not healthy ({}); removing {name} now \
                     could leave etcd without quorum. Nothing was changed. Bring that member \
                     back (`kubeha status` shows each one) and run again; if it is gone for \
                     good, remove it first with `kubeha node remove <name> --force`",
                    others.join(", ")
                ),
            ));
        }
        let voting = |m: &&&EtcdMember| !m.learner;
        let removed = members.iter().filter(voting).count();
        let removed_healthy = members
            .iter()
            .filter(voting)
            .filter(|m| m.healthy && m.started())
            .count();
        let (n, healthy) = (before.members - removed, before.healthy - removed_healthy);
        if n == 0 {
            return Err(refuse(
                name,
                "holds the last etcd member: removing it ends the cluster; use `kubeha reset`"
                    .into(),
            ));
        }
        if healthy < quorum(n) {
            return Err(refuse(
                name,
                format!(
                    "quorum guard: with its member gone etcd would have {healthy} healthy of {n} \
                     (quorum {}); nothing was changed. Add a control plane first (list it in the \
                     spec and run `kubeha apply`), then remove this one",
                    quorum(n)
                ),
            ));
        }
        let through = through.ok_or_else(no_member)?;
        if inputs.cluster_state.is_none() {
            return Err(no_api());
        }
        fault_tolerance_after = Some(healthy - quorum(n));
        if members.is_empty() {
            notes.push(format!("{name} has no etcd member: etcd is left as it is"));
        }
        etcd = Some(before);
        let through = through.name.clone();
        if let Some(n) = node {
            steps.extend(drain(name, n.cordoned, inputs, reached.is_none()));
        }
        if !members.is_empty() {
            steps.push(RemoveStep::Backup);
        }
        let lbs = load_balancers(inputs)?;
        let rotating: Vec<String> = lbs
            .iter()
            .filter_map(|s| match s {
                RemoveStep::UpdateLoadBalancer { host, .. } => Some(host.clone()),
                _ => None,
            })
            .collect();
        if !rotating.is_empty() {
            steps.push(RemoveStep::OutOfRotation {
                server: name.into(),
                load_balancers: rotating,
            });
        }
        steps.extend(lbs);
        if let (Some(h), Some(f)) = (host, reached) {
            if f.kubeadm.admin_conf {
                steps.push(RemoveStep::StopApiserver {
                    host: name.into(),
                    apiserver: format!(
                        "https://{}:{}",
                        crate::spec::url_host(h.node_ip()),
                        crate::spec::APISERVER_PORT
                    ),
                });
            }
        }
        if let Some(step) = leadership_handover(name, reached, &members, view, &through) {
            steps.push(step);
        }
        steps.extend(members.iter().map(|m| RemoveStep::RemoveEtcdMember {
            id: m.id.clone(),
            name: member_label(m),
            through: through.clone(),
        }));
    } else if inputs.cluster_state.is_none() {
        return Err(no_api());
    } else if let Some(n) = node {
        steps.extend(drain(name, n.cordoned, inputs, reached.is_none()));
    }
    match reached {
        Some(f) if f.kubeadm.any() => steps.push(RemoveStep::Reset { host: name.into() }),
        Some(_) => notes.push(format!(
            "{name} has no kubeadm state: nothing to reset there"
        )),
        None => notes.push(format!(
            "{name} is not contacted ({}): run `kubeadm reset -f` on it before it comes back; \
             until then kubeha refuses to join it with its old etcd data",
            if host.is_none() {
                "the spec does not list it"
            } else {
                "--force"
            }
        )),
    }
    if node.is_some() {
        steps.push(RemoveStep::DeleteNode { node: name.into() });
    }
    if host.is_some() {
        notes.push(format!(
            "delete {name} from the spec (cluster.yaml) now: while it is listed, `kubeha apply` joins it again"
        ));
    }
    Ok(Removal {
        node: name.into(),
        control_plane,
        in_spec: host.is_some(),
        etcd,
        fault_tolerance_after,
        steps,
        notes,
    })
}

fn drain(name: &str, cordoned: bool, inputs: &RemovalInputs, unreachable: bool) -> Vec<RemoveStep> {
    let mut steps = Vec::new();
    if !cordoned {
        steps.push(RemoveStep::Cordon { node: name.into() });
    }
    steps.push(RemoveStep::Drain {
        node: name.into(),
        timeout_seconds: inputs.drain_timeout.as_secs(),
        force_delete: unreachable,
    });
    steps
}

/// Each load balancer whose `haproxy.cfg` still sends to the node: the config rendered
/// for the spec without it. An unreachable load balancer would keep sending there.
fn load_balancers(inputs: &RemovalInputs) -> Result<Vec<RemoveStep>, Vec<Conflict>> {
    let mut rest = inputs.cluster.clone();
    rest.hosts.retain(|h| h.name != inputs.name);
    let config = haproxy::render(&rest);
    let digest = sha256_hex(config.as_bytes());
    let mut steps = Vec::new();
    for lb in inputs.cluster.hosts_with(Role::LoadBalancer) {
        let Some(f) = inputs.facts.get(&lb.name) else {
            return Err(refuse(
                &lb.name,
                format!(
                    "load balancer unreachable ({}): its HAProxy would keep sending API traffic \
                     to {}; bring it back and run again",
                    inputs
                        .unreachable
                        .get(&lb.name)
                        .map_or("not contacted", String::as_str),
                    inputs.name
                ),
            ));
        };
        let have = f.files.get(haproxy::PATH).cloned().flatten();
        if have.as_deref() != Some(digest.as_str()) {
            steps.push(RemoveStep::UpdateLoadBalancer {
                host: lb.name.clone(),
                diff: None,
                config: config.clone(),
            });
        }
    }
    Ok(steps)
}

/// Fills in each load-balancer step's diff from the current `haproxy.cfg` bytes.
pub fn with_diffs(removal: &mut Removal, current: &BTreeMap<String, Vec<u8>>) {
    for step in &mut removal.steps {
        if let RemoveStep::UpdateLoadBalancer { host, config, diff } = step {
            if let Some(old) = current.get(host) {
                *diff = unified_diff(haproxy::PATH, old, config.as_bytes());
            }
        }
    }
}

/// The leadership transfer a removal needs when the removed member leads etcd and its
/// host answers (`move-leader` must reach the leader): to `through`'s member, else to
/// another healthy voting member.
fn leadership_handover(
    name: &str,
    reached: Option<&HostFacts>,
    removed: &[&EtcdMember],
    view: Option<(&Host, &EtcdView)>,
    through: &str,
) -> Option<RemoveStep> {
    reached?;
    removed.iter().find(|m| m.leader)?;
    let (_, view) = view?;
    let candidates = || {
        view.members.iter().filter(|m| {
            m.healthy && m.started() && !m.learner && !removed.iter().any(|r| r.id == m.id)
        })
    };
    let to = candidates()
        .find(|m| m.name == through)
        .or_else(|| candidates().next())?;
    Some(RemoveStep::MoveEtcdLeader {
        host: name.into(),
        to_id: to.id.clone(),
        to_name: to.name.clone(),
    })
}

/// Registered Nodes and etcd members the spec does not list: `plan` reports them, and
/// only `node remove` removes them.
pub fn not_in_spec(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: Option<&ClusterState>,
) -> Vec<Conflict> {
    let names: BTreeSet<&str> = cluster.kube_nodes().map(|h| h.name.as_str()).collect();
    let peers: BTreeSet<String> = cluster.control_planes().map(peer_url).collect();
    let mut out = Vec::new();
    for node in state.iter().flat_map(|s| s.nodes.keys()) {
        if !names.contains(node.as_str()) {
            out.push(Conflict {
                host: node.clone(),
                message: format!(
                    "a Node not in the spec: apply leaves it; remove it with `kubeha node remove {node}`"
                ),
            });
        }
    }
    if let Some((_, v)) = healthy_view(cluster, facts, None) {
        for m in &v.members {
            let listed = m.peer_urls.iter().any(|u| peers.contains(u));
            if !listed && m.started() {
                out.push(Conflict {
                    host: m.name.clone(),
                    message: format!(
                        "etcd member {} ({}) is not in the spec: apply leaves it; remove it with \
                         `kubeha node remove {}`",
                        m.id,
                        m.peer_urls.join(", "),
                        m.name
                    ),
                });
            }
        }
    }
    out
}
