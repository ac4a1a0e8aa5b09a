//! Cluster-level rules: refusing hosts that belong elsewhere or a live cluster the
//! spec no longer describes, guarding every destructive step, and the kubeadm phases
//! (init once, control-plane joins one at a time, workers, the CNI, then the Nodes).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Action, Conflict, Inputs, Phase, Step};
use crate::facts::cluster::{
    CalicoState, EtcdView, LiveClusterConfig, LiveKubeletConfig, NodeState, NodeTaint,
    MANAGED_LABELS, MANAGED_TAINTS,
};
use crate::facts::{sha256_hex, HostFacts};
use crate::spec::{url_host, Cluster, Host, Role};

/// What the Kubernetes API reported.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// Registered nodes.
    pub nodes: BTreeMap<String, NodeState>,
    /// The `calico-node` DaemonSet exists.
    pub calico: bool,
    /// kubeadm's live `ClusterConfiguration`; `None` when `kube-system/kubeadm-config`
    /// does not exist.
    pub kubeadm_config: Option<LiveClusterConfig>,
    /// The live `KubeletConfiguration`; `None` when `kube-system/kubelet-config` does not exist.
    pub kubelet_config: Option<LiveKubeletConfig>,
    /// What Calico runs, when `calico-node` exists.
    pub calico_state: Option<CalicoState>,
}

/// The conflicts' `host` for what concerns the whole cluster.
pub(super) const CLUSTER: &str = "cluster";

/// A host's etcd peer URL, as kubeadm configures it.
pub fn peer_url(host: &Host) -> String {
    format!("https://{}:2380", url_host(host.node_ip()))
}

/// Every control plane's view of etcd that answered.
pub(super) fn etcd_views<'a>(inputs: &'a Inputs) -> impl Iterator<Item = (&'a Host, &'a EtcdView)> {
    inputs
        .cluster
        .control_planes()
        .filter_map(|h| Some((h, inputs.facts[&h.name].etcd.as_ref()?)))
}

pub(super) fn node<'a>(inputs: &'a Inputs, host: &Host) -> Option<&'a NodeState> {
    inputs.cluster_state?.nodes.get(&host.name)
}

/// Control planes whose etcd lists other members than the first view's: a split or a
/// membership change in flight, which the plan's etcd steps may not account for.
pub fn etcd_disagreements(inputs: &Inputs) -> Vec<Conflict> {
    fn ids(v: &EtcdView) -> Vec<&str> {
        let mut ids: Vec<&str> = v.members.iter().map(|m| m.id.as_str()).collect();
        ids.sort();
        ids
    }
    let mut views = etcd_views(inputs);
    let Some((first, reference)) = views.next() else {
        return Vec::new();
    };
    views
        .filter(|(_, v)| ids(v) != ids(reference))
        .map(|(h, v)| Conflict {
            host: h.name.clone(),
            message: format!(
                "its etcd lists members [{}] but {}'s lists [{}]",
                ids(v).join(", "),
                first.name,
                ids(reference).join(", ")
            ),
        })
        .collect()
}

/// What the facts show an operator should act on though no step repairs it: control
/// planes whose certificates end within 30 days, Nodes reporting a troubled condition.
pub fn health_warnings(inputs: &Inputs) -> Vec<Conflict> {
    let mut out = Vec::new();
    for cp in inputs.cluster.control_planes() {
        let nearest = inputs.facts[&cp.name].nearest_certificate();
        if let Some(c) = nearest.filter(crate::facts::CertificateExpiry::warn) {
            out.push(Conflict {
                host: cp.name.clone(),
                message: format!(
                    "{}: renew its certificates with `kubeha certs renew`",
                    c.describe()
                ),
            });
        }
    }
    for h in inputs.cluster.kube_nodes() {
        for trouble in node(inputs, h).map(NodeState::troubles).unwrap_or_default() {
            out.push(Conflict {
                host: h.name.clone(),
                message: format!("its Node reports {trouble}"),
            });
        }
    }
    out
}

/// The live kubelet and Calico configuration where it differs from what kubeha set up:
/// nothing kubeha changes once the cluster runs, but what makes the next join or the
/// next pod go wrong.
pub fn drift_warnings(inputs: &Inputs) -> Vec<Conflict> {
    let Some(state) = inputs.cluster_state else {
        return Vec::new();
    };
    let cluster = inputs.cluster;
    let mut out = Vec::new();
    let mut warn = |message: String| {
        out.push(Conflict {
            host: CLUSTER.into(),
            message,
        })
    };
    if let Some(k) = &state.kubelet_config {
        if !k.cgroup_driver.is_empty() && k.cgroup_driver != "systemd" {
            warn(format!(
                "kube-system/kubelet-config sets cgroupDriver `{}` but containerd runs with the systemd cgroup driver \
                 (`SystemdCgroup = true`): a kubelet that joins now would not start; set `cgroupDriver: systemd` there \
                 (`kubectl -n kube-system edit configmap kubelet-config`)",
                k.cgroup_driver
            ));
        }
        if !k.cluster_domain.is_empty() && k.cluster_domain != cluster.kubernetes.dns_domain {
            warn(format!(
                "kube-system/kubelet-config sets clusterDomain `{}` but the spec's `kubernetes.dnsDomain` is `{}`: \
                 pods on nodes that join now would resolve another domain",
                k.cluster_domain, cluster.kubernetes.dns_domain
            ));
        }
    }
    if let Some(c) = &state.calico_state {
        let want = &cluster.calico.version;
        if let Some(v) = c.version.as_ref().filter(|v| *v != want) {
            warn(format!(
                "calico-node runs Calico {v} but the spec says {want}: kubeha applies Calico only where it \
                 does not run yet; upgrade it with that version's manifest, or put {v} in `cni.calico.version`"
            ));
        }
        let subnet = cluster.kubernetes.pod_subnet.to_string();
        let mut pools: Vec<&String> = if c.ip_pools.is_empty() {
            c.pool_env.iter().collect()
        } else {
            c.ip_pools.iter().collect()
        };
        // An IPv6 pool beside an IPv4 pod subnet is another matter.
        pools.retain(|p| p.contains(':') == subnet.contains(':'));
        if !pools.is_empty() && !pools.iter().any(|p| **p == subnet) {
            let list: Vec<&str> = pools.iter().map(|p| p.as_str()).collect();
            warn(format!(
                "Calico's IP pool is {} but the spec's `kubernetes.podSubnet` is {subnet}: pods get addresses \
                 outside the cluster's pod subnet; the pool cannot be changed by kubeha",
                list.join(", ")
            ));
        }
    }
    out
}

/// Why a host holds data of a live cluster (so that resetting it would lose some), if it does.
fn live_data(inputs: &Inputs, host: &Host) -> Option<String> {
    if node(inputs, host).is_some_and(|n| n.ready) {
        return Some("its node is Ready".into());
    }
    let peer = peer_url(host);
    let member = etcd_views(inputs)
        .flat_map(|(_, v)| v.with_peer(&peer))
        .any(|m| m.healthy && m.started());
    if member {
        return Some("it is a healthy etcd member".into());
    }
    None
}

/// What shows that a cluster runs, whatever kubeadm's ConfigMap says.
fn live_cluster(inputs: &Inputs) -> Option<String> {
    let ready = inputs
        .cluster_state
        .map_or(0, |s| s.nodes.values().filter(|n| n.ready).count());
    let members = etcd_views(inputs)
        .filter(|(_, v)| v.healthy())
        .map(|(_, v)| v.members.iter().filter(|m| m.started()).count())
        .max();
    match (ready, members) {
        (0, None | Some(0..=1)) => None,
        (0, Some(m)) => Some(format!("etcd is healthy with {m} members")),
        (r, None) => Some(format!("{r} node(s) are Ready")),
        (r, Some(m)) => Some(format!(
            "etcd is healthy with {m} member(s) and {r} node(s) are Ready"
        )),
    }
}

/// The initialised control plane joins and API steps go through: the first (in spec
/// order) whose own etcd member is healthy, or, when no etcd answered anywhere, the
/// first initialised one. Never a host the user is replacing.
pub fn bootstrap<'a>(inputs: &'a Inputs) -> Option<&'a Host> {
    let facts = |h: &Host| &inputs.facts[&h.name];
    let initialised: Vec<&Host> = inputs
        .cluster
        .control_planes()
        .filter(|h| joined(h, facts(h)) && !inputs.replace.contains(&h.name))
        .collect();
    let healthy = initialised.iter().copied().find(|h| {
        facts(h)
            .etcd
            .as_ref()
            .is_some_and(|v| v.with_peer(&peer_url(h)).any(|m| m.healthy && m.started()))
    });
    healthy.or_else(|| {
        let nobody_answered = etcd_views(inputs).next().is_none();
        initialised.into_iter().find(|_| nobody_answered)
    })
}

/// A live `ClusterConfiguration` field that cannot change after init, differing from the spec.
fn immutable_drift(cluster: &Cluster, live: &LiveClusterConfig) -> Vec<String> {
    let k = &cluster.kubernetes;
    let fields = [
        (
            "clusterName",
            "`name`",
            cluster.name.clone(),
            &live.cluster_name,
        ),
        (
            "networking.podSubnet",
            "`kubernetes.podSubnet`",
            k.pod_subnet.to_string(),
            &live.pod_subnet,
        ),
        (
            "networking.serviceSubnet",
            "`kubernetes.serviceSubnet`",
            k.service_subnet.to_string(),
            &live.service_subnet,
        ),
        (
            "networking.dnsDomain",
            "`kubernetes.dnsDomain`",
            k.dns_domain.clone(),
            &live.dns_domain,
        ),
        (
            "controlPlaneEndpoint",
            "`apiEndpoint`",
            cluster.api_endpoint.to_string(),
            &live.control_plane_endpoint,
        ),
    ];
    // A version difference is an upgrade (see `upgrade`), not drift.
    fields
        .into_iter()
        .filter(|(_, _, want, live)| !live.is_empty() && *want != **live)
        .map(|(field, spec, want, live)| {
            format!(
                "the live ClusterConfiguration has {field} `{live}` but the spec's {spec} is `{want}`;                  it cannot change after `kubeadm init`: put `{live}` back in the spec, or build a new cluster"
            )
        })
        .collect()
}

/// What the live cluster says that no step can repair.
fn cluster_conflicts(inputs: &Inputs, out: &mut Vec<Conflict>) {
    let cluster = inputs.cluster;
    let mut conflict = |host: &str, message: String| {
        out.push(Conflict {
            host: host.into(),
            message,
        })
    };
    let reported_missing = cluster
        .control_planes()
        .any(|h| inputs.facts[&h.name].kubeadm.config_uploaded == Some(false));
    let config = inputs.cluster_state.map(|s| s.kubeadm_config.as_ref());
    if matches!(config, Some(None)) || reported_missing {
        if let Some(why) = live_cluster(inputs) {
            let cp = cluster
                .control_planes()
                .find(|h| inputs.facts[&h.name].kubeadm.admin_conf)
                .unwrap_or(cluster.first_control_plane());
            conflict(
                CLUSTER,
                format!(
                    "kube-system/kubeadm-config is missing, but {why}: this is a live cluster and kubeha                      will reset none of it. Restore the ConfigMap: `kubeha render --out DIR` writes                      hosts/{first}/etc/kubeha/kubeadm-init.yaml; copy it to {cp}, put any well-formed                      token (e.g. abcdef.0123456789abcdef) in place of the placeholder, and run                      `kubeadm init phase upload-config kubeadm --config <that file>` there",
                    first = cluster.first_control_plane().name,
                    cp = cp.name,
                ),
            );
        }
    }
    if let Some(Some(live)) = config {
        for message in immutable_drift(cluster, live) {
            conflict(CLUSTER, message);
        }
    }
    for name in inputs.replace {
        if !cluster.kube_nodes().any(|h| h.name == *name) {
            conflict(
                name,
                format!("`--replace {name}`: the spec has no control plane or worker of that name"),
            );
        }
    }
}

/// A control plane that still has kubeadm's etcd manifest (and so its etcd data) while
/// the live etcd, seen from a control plane whose own member is healthy, has no member
/// for it: its member was removed (`node remove`). Its etcd would start with data of a
/// cluster it no longer belongs to, so it is refused until reset. An interrupted join
/// always leaves its member listed (kubeadm adds the member before it writes the
/// manifest), which the join steps remove and redo.
fn removed_member_data(inputs: &Inputs, host: &Host) -> Option<String> {
    if !inputs.facts[&host.name].kubeadm.etcd_manifest || inputs.replace.contains(&host.name) {
        return None;
    }
    let (seen_from, view) = etcd_views(inputs).find(|(h, v)| {
        h.name != host.name && v.with_peer(&peer_url(h)).any(|m| m.healthy && m.started())
    })?;
    let peer = peer_url(host);
    let listed = view.with_peer(&peer).next().is_some();
    (!listed).then(|| {
        format!(
            "it holds etcd data, but etcd (as {} sees it) has no member for {peer}: its member was \
             removed, and it must not rejoin with that data. Reset it first: `kubeha apply \
             --replace {}` (kubeadm reset, then a fresh join)",
            seen_from.name, host.name
        )
    })
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
    cluster_conflicts(inputs, &mut out);
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
        if h.has(Role::ControlPlane) {
            if let Some(message) = removed_member_data(inputs, h) {
                conflict(h, message);
            }
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

/// The kubeadm, network and cluster steps, and the bootstrap control plane. Errors
/// with every reset it refuses.
pub fn kubeadm_steps(inputs: &Inputs) -> Result<(Vec<Step>, Option<String>), Vec<Conflict>> {
    let cluster = inputs.cluster;
    let facts = |h: &Host| &inputs.facts[&h.name];
    let registered = |h: &Host| {
        inputs
            .cluster_state
            .is_none_or(|s| s.nodes.contains_key(&h.name))
    };
    let mut conflicts = Vec::new();
    let mut steps = Vec::new();
    let initialised = cluster.control_planes().any(|h| joined(h, facts(h)));
    let bootstrap = bootstrap(inputs);
    if initialised && bootstrap.is_none() {
        return Err(vec![Conflict {
            host: CLUSTER.into(),
            message: "no initialised control plane has a healthy etcd member to join through; \
                      repair etcd first (`kubeha status` shows each member)"
                .into(),
        }]);
    }
    let init_host = (!initialised).then(|| cluster.first_control_plane());
    let through = bootstrap.or(init_host);
    let mut joins = (false, false);
    let mut joining = Vec::new();
    for h in cluster.kube_nodes() {
        let f = facts(h);
        let is_cp = h.has(Role::ControlPlane);
        let replacing = inputs.replace.contains(&h.name);
        let is_bootstrap = bootstrap.is_some_and(|b| std::ptr::eq(b, h));
        // A joined node the API no longer knows (deleted) joins again; the bootstrap never.
        if !replacing && joined(h, f) && (registered(h) || is_bootstrap) {
            continue;
        }
        let is_init = init_host.is_some_and(|i| std::ptr::eq(i, h));
        let phase = match (is_cp, is_init) {
            (_, true) => Phase::Init,
            (true, false) => Phase::JoinControlPlanes,
            (false, _) => Phase::JoinWorkers,
        };
        let mut push = |action| steps.push(Step::new(phase, Some(&h.name), action));
        if f.kubeadm.any() || replacing {
            match live_data(inputs, h).filter(|_| !replacing) {
                Some(why) => {
                    conflicts.push(Conflict {
                        host: h.name.clone(),
                        message: format!(
                            "rejoining it needs `kubeadm reset`, but {why}; kubeha resets a host \
                             holding live data only when asked by name (`--replace {}`)",
                            h.name
                        ),
                    });
                    continue;
                }
                None => {
                    push(Action::ResetPartialJoin);
                    // A join into a running cluster; an init makes the cluster anew.
                    let registered_before = f.kubeadm.kubelet_conf || node(inputs, h).is_some();
                    if !is_init && inputs.cluster_state.is_some() && registered_before {
                        push(Action::DeleteNode {
                            node: h.name.clone(),
                        });
                    }
                }
            }
        }
        if is_cp && !is_init {
            // Members an interrupted join added: one that never started, or is not healthy.
            let b = through.expect("control planes join through the bootstrap or init host");
            let peer = peer_url(h);
            for m in facts(b).etcd.iter().flat_map(|v| v.with_peer(&peer)) {
                if !(m.healthy && m.started()) {
                    push(Action::RemoveEtcdMember {
                        id: m.id.clone(),
                        name: m.name.clone(),
                        peer_url: peer.clone(),
                        through: b.name.clone(),
                    });
                }
            }
        }
        push(if is_init {
            Action::KubeadmInit
        } else {
            if is_cp {
                joins.0 = true
            } else {
                joins.1 = true
            }
            Action::KubeadmJoin {
                control_plane: is_cp,
            }
        });
        joining.push(h.name.as_str());
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    // kubeadm init makes the credentials of the joins that follow it.
    if init_host.is_none() && (joins.0 || joins.1) {
        let b = bootstrap.expect("joins go through an initialised control plane");
        steps.push(Step::new(
            Phase::Credentials,
            Some(&b.name),
            Action::MintJoinCredentials {
                upload_certificates: joins.0,
            },
        ));
    }
    if inputs.cluster_state.is_none_or(|s| !s.calico) {
        steps.push(Step::new(Phase::Network, None, calico(inputs)?));
    }
    // Nodes made, joined or networked: wait for them, and hand out the kubeconfig.
    let nodes_changed = !steps.is_empty();
    let mut registered_later = Vec::new();
    for h in cluster.kube_nodes() {
        if joining.contains(&h.name.as_str()) {
            // kubeadm registers it with the spec's labels and taints; once it is there,
            // the annotations record which are kubeha's.
            let (managed_labels, managed_taints) = managed(h);
            if !managed_labels.is_empty() || !managed_taints.is_empty() {
                registered_later.push(Action::ApplyLabelsAndTaints {
                    node: h.name.clone(),
                    labels: BTreeMap::new(),
                    remove_labels: Vec::new(),
                    taints: None,
                    remove_taints: Vec::new(),
                    managed_labels,
                    managed_taints,
                });
            }
        } else if let Some(action) = node(inputs, h).and_then(|n| labels_and_taints(h, n)) {
            steps.push(Step::new(Phase::Cluster, None, action));
        }
    }
    if nodes_changed {
        let nodes = cluster.kube_nodes().map(|h| h.name.clone()).collect();
        steps.push(Step::new(Phase::Cluster, None, Action::WaitReady { nodes }));
        for action in registered_later {
            steps.push(Step::new(Phase::Cluster, None, action));
        }
        steps.push(Step::new(Phase::Cluster, None, Action::WriteKubeconfig));
    }
    steps.sort_by_key(|s| s.phase);
    Ok((steps, through.map(|h| h.name.clone())))
}

/// The Calico step with the manifest fetched during the survey, pool CIDR wired in.
fn calico(inputs: &Inputs) -> Result<Action, Vec<Conflict>> {
    let refuse = |message: String| {
        vec![Conflict {
            host: CLUSTER.into(),
            message,
        }]
    };
    let text = match inputs.calico_manifest {
        Some(Ok(text)) => text,
        Some(Err(e)) => return Err(refuse(format!("cannot fetch the Calico manifest: {e}"))),
        None => return Err(refuse("the Calico manifest was not fetched".into())),
    };
    let manifest = crate::render::calico_manifest(inputs.cluster, text).map_err(refuse)?;
    Ok(Action::ApplyCalico {
        digest: format!("sha256:{}", sha256_hex(manifest.as_bytes())),
        manifest,
    })
}

/// The label keys and taints (`key:effect`) the spec gives a host, sorted: what kubeha's
/// annotations on its Node record.
fn managed(host: &Host) -> (Vec<String>, Vec<String>) {
    let taints: std::collections::BTreeSet<String> = host
        .taints
        .iter()
        .map(|t| NodeTaint::from(t).identity())
        .collect();
    (
        host.labels.keys().cloned().collect(),
        taints.into_iter().collect(),
    )
}

/// The patch that gives a registered Node the spec's labels and taints, if it lacks any,
/// and removes those kubeha set earlier (its annotations say which) that the spec no
/// longer names. Labels and taints others set are left as they are.
fn labels_and_taints(host: &Host, node: &NodeState) -> Option<Action> {
    let labels: BTreeMap<String, String> = host
        .labels
        .iter()
        .filter(|(k, v)| node.labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove_labels: Vec<String> = node
        .managed_labels
        .iter()
        .filter(|k| !host.labels.contains_key(*k) && node.labels.contains_key(*k))
        .cloned()
        .collect();
    let wanted: Vec<NodeTaint> = host.taints.iter().map(NodeTaint::from).collect();
    let same = |a: &NodeTaint, b: &NodeTaint| a.identity() == b.identity();
    let remove_taints: Vec<NodeTaint> = node
        .taints
        .iter()
        .filter(|t| node.managed_taints.contains(&t.identity()))
        .filter(|t| !wanted.iter().any(|w| same(w, t)))
        .cloned()
        .collect();
    let missing = wanted.iter().any(|t| !node.taints.contains(t));
    let taints = (missing || !remove_taints.is_empty()).then(|| {
        let mut all: Vec<NodeTaint> = node
            .taints
            .iter()
            .filter(|t| !wanted.iter().any(|w| same(w, t)) && !remove_taints.contains(t))
            .cloned()
            .collect();
        all.extend(wanted.iter().cloned());
        all
    });
    let (managed_labels, managed_taints) = managed(host);
    let unrecorded = managed_labels.iter().ne(node.managed_labels.iter())
        || managed_taints.iter().ne(node.managed_taints.iter());
    let changes = !labels.is_empty() || !remove_labels.is_empty() || taints.is_some();
    (changes || unrecorded).then(|| Action::ApplyLabelsAndTaints {
        node: host.name.clone(),
        labels,
        remove_labels,
        taints,
        remove_taints,
        managed_labels,
        managed_taints,
    })
}

/// The JSON merge patch of an [`Action::ApplyLabelsAndTaints`]: labels set or removed
/// (`null`), the whole taint list when it changes, and the managed-labels and
/// managed-taints annotations (removed when kubeha manages none).
pub fn node_patch(action: &Action) -> Option<serde_json::Value> {
    let Action::ApplyLabelsAndTaints {
        labels,
        remove_labels,
        taints,
        managed_labels,
        managed_taints,
        ..
    } = action
    else {
        return None;
    };
    let mut label_patch = serde_json::Map::new();
    for (k, v) in labels {
        label_patch.insert(k.clone(), v.clone().into());
    }
    for k in remove_labels {
        label_patch.insert(k.clone(), serde_json::Value::Null);
    }
    let annotation = |list: &[String]| match list.join(",") {
        joined if joined.is_empty() => serde_json::Value::Null,
        joined => joined.into(),
    };
    let mut patch = serde_json::json!({"metadata": {
        "labels": label_patch,
        "annotations": {
            MANAGED_LABELS: annotation(managed_labels),
            MANAGED_TAINTS: annotation(managed_taints),
        },
    }});
    if let Some(taints) = taints {
        patch["spec"] = serde_json::json!({ "taints": taints });
    }
    Some(patch)
}
