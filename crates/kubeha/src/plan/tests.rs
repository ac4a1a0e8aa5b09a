//! Planner tests on recorded facts: fresh hosts, converged hosts, half-provisioned
//! hosts and hosts of another cluster.

mod certificates;
mod membership;
mod restore;

use std::collections::BTreeMap;

use super::*;
use crate::facts::cluster::{
    CalicoState, EtcdMember, EtcdView, LiveClusterConfig, LiveKubeletConfig, NodeState, NodeTaint,
};
use crate::facts::{parse, recorded, sha256_hex, HostFacts};
use crate::render::test_support::seed;
use crate::render::{Content, RenderInputs};
use crate::spec::Cluster;

pub(super) fn desired(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
) -> BTreeMap<String, Vec<DesiredFile>> {
    cluster
        .hosts
        .iter()
        .map(|h| {
            let inputs = RenderInputs {
                distro: host::distro(&facts[&h.name]),
                ..RenderInputs::placeholders()
            };
            let files = crate::render::host_files(cluster, h, &inputs)
                .into_iter()
                .filter(|f| !f.secret)
                .map(|f| DesiredFile {
                    bytes: match &f.content {
                        Content::Text(t) | Content::ManagedBlock(t) => t.clone().into_bytes(),
                        Content::LocalFile(_) => b"key".to_vec(),
                    },
                    file: f,
                })
                .collect();
            (h.name.clone(), files)
        })
        .collect()
}

fn fresh(cluster: &Cluster) -> BTreeMap<String, HostFacts> {
    cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), parse(recorded::FRESH)))
        .collect()
}

/// Facts of a host on which every planned step already happened.
fn converge(cluster: &Cluster, facts: &mut BTreeMap<String, HostFacts>) {
    let want = desired(cluster, facts);
    for h in &cluster.hosts {
        let f = facts.get_mut(&h.name).unwrap();
        *f = parse(recorded::CONTROL_PLANE);
        f.packages.clear();
        f.held.clear();
        f.hosts_block = None;
        f.kubeadm = Default::default();
        for d in &want[&h.name] {
            match &d.file.content {
                Content::ManagedBlock(b) => f.hosts_block = Some(b.clone()),
                _ => {
                    f.files
                        .insert(d.file.path.clone(), Some(sha256_hex(&d.bytes)));
                }
            }
        }
        for key in crate::render::apt::remote_keys(cluster, h, &host::distro(f)) {
            f.files.insert(key.path.into(), Some("k".into()));
        }
        for p in crate::render::packages(cluster, h) {
            f.packages
                .insert(p.name.clone(), p.version.clone().unwrap_or("1".into()));
            if p.hold {
                f.held.insert(p.name);
            }
        }
        let svc = crate::facts::ServiceState {
            active: true,
            enabled: true,
            since: Some(1764000000),
            present: true,
        };
        for s in crate::facts::SERVICES {
            f.services.insert(s.into(), svc);
        }
        if h.is_kube_node() {
            f.kubeadm.kubelet_conf = true;
            f.kubeadm.ca_cert = Some(recorded::CA_PEM.into());
            if h.has(crate::spec::Role::ControlPlane) {
                f.kubeadm.admin_conf = true;
                f.kubeadm.etcd_manifest = true;
            }
        }
    }
}

fn converged(cluster: &Cluster) -> BTreeMap<String, HostFacts> {
    let mut facts = fresh(cluster);
    converge(cluster, &mut facts);
    facts
}

/// Only the first control plane has run kubeadm; every other node is still to join.
fn only_first_control_plane_initialised(facts: &mut BTreeMap<String, HostFacts>) {
    for h in [
        "k8s-master-2",
        "k8s-master-3",
        "k8s-worker-1",
        "k8s-worker-2",
    ] {
        facts.get_mut(h).unwrap().kubeadm = Default::default();
    }
}

/// The ClusterConfiguration kubeadm uploads for the spec.
fn live_config(cluster: &Cluster) -> LiveClusterConfig {
    let k = &cluster.kubernetes;
    LiveClusterConfig {
        cluster_name: cluster.name.clone(),
        kubernetes_version: k.version.to_string(),
        pod_subnet: k.pod_subnet.to_string(),
        service_subnet: k.service_subnet.to_string(),
        dns_domain: k.dns_domain.clone(),
        control_plane_endpoint: cluster.api_endpoint.to_string(),
        cert_sans: crate::render::kubeadm::cert_sans(cluster),
    }
}

/// The Node kubeadm registers for a host: its labels and taints as the spec says.
fn ready_node(cluster: &Cluster, h: &crate::spec::Host) -> NodeState {
    NodeState {
        ready: true,
        cordoned: false,
        cordoned_by_kubeha: false,
        kubelet_version: cluster.kubernetes.version.to_string(),
        labels: h.labels.clone(),
        taints: h.taints.iter().map(NodeTaint::from).collect(),
        conditions: vec![crate::facts::cluster::NodeCondition {
            kind: "Ready".into(),
            status: "True".into(),
            reason: "KubeletReady".into(),
            message: "kubelet is posting ready status".into(),
        }],
        // What kubeha's annotations record once it has seen the Node.
        managed_labels: h.labels.keys().cloned().collect(),
        managed_taints: h
            .taints
            .iter()
            .map(|t| NodeTaint::from(t).identity())
            .collect(),
    }
}

fn all_ready(cluster: &Cluster) -> ClusterState {
    ClusterState {
        nodes: cluster
            .kube_nodes()
            .map(|h| (h.name.clone(), ready_node(cluster, h)))
            .collect(),
        calico: true,
        kubeadm_config: Some(live_config(cluster)),
        kubelet_config: Some(LiveKubeletConfig {
            cgroup_driver: "systemd".into(),
            cluster_domain: cluster.kubernetes.dns_domain.clone(),
        }),
        calico_state: Some(CalicoState {
            version: Some(cluster.calico.version.clone()),
            pool_env: Some(cluster.kubernetes.pod_subnet.to_string()),
            ip_pools: vec![cluster.kubernetes.pod_subnet.to_string()],
        }),
    }
}

/// The release manifest's shape: the pool CIDR commented out in calico-node.
pub(super) fn calico_release() -> Result<String, String> {
    Ok(format!(
        "kind: DaemonSet\nmetadata:\n  name: calico-node\n{}",
        "            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n"
    ))
}

fn run(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: Option<&ClusterState>,
) -> Result<Plan, Vec<Conflict>> {
    run_replacing(cluster, facts, state, &[])
}

fn run_replacing(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: Option<&ClusterState>,
    replace: &[&str],
) -> Result<Plan, Vec<Conflict>> {
    run_with(cluster, facts, state, replace, &calico_release())
}

fn run_with(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: Option<&ClusterState>,
    replace: &[&str],
    manifest: &Result<String, String>,
) -> Result<Plan, Vec<Conflict>> {
    let desired = desired(cluster, facts);
    let current = BTreeMap::new();
    let replace = replace.iter().map(|h| h.to_string()).collect();
    plan(&Inputs {
        cluster,
        facts,
        desired: &desired,
        current: &current,
        cluster_state: state,
        calico_manifest: Some(manifest),
        replace: &replace,
        upgrade: None,
        max_unavailable: 1,
    })
}

pub(super) fn lines(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| {
            format!(
                "{} {}: {}",
                s.phase,
                s.host.as_deref().unwrap_or("cluster"),
                s.action
            )
        })
        .collect()
}

#[test]
fn fresh_hosts_get_the_whole_runbook_in_order() {
    let c = seed();
    let facts = fresh(&c);
    let plan = run(&c, &facts, None).unwrap();
    let text = lines(&plan);
    let has = |s: &str| text.iter().any(|l| l == s);
    assert!(has("prepare load-balancer: install haproxy"), "{text:#?}");
    assert!(has(
        "prepare load-balancer: create /etc/haproxy/haproxy.cfg (mode 0644)"
    ));
    assert!(
        has("prepare load-balancer: restart haproxy"),
        "the package starts it with its own config"
    );
    assert!(has("prepare load-balancer: enable haproxy"));
    assert!(has("prepare k8s-worker-2: restart containerd"));
    assert!(has("prepare k8s-master-1: download apt key https://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key to /etc/apt/keyrings/kubernetes-apt-keyring.gpg"));
    assert!(has("prepare k8s-master-1: download apt key https://download.docker.com/linux/debian/gpg to /etc/apt/keyrings/docker.asc"));
    assert!(has("prepare k8s-worker-2: turn swap off now and at boot"));
    // One apt transaction per host, after the kernel is ready and before containerd's
    // config and the hold.
    let at = |s: &str| {
        text.iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} not in {text:#?}"))
    };
    let install = at("prepare k8s-worker-2: install containerd.io kubelet=1.31.0-1.1 kubeadm=1.31.0-1.1 kubectl=1.31.0-1.1");
    assert!(at("prepare k8s-worker-2: load kernel modules overlay, br_netfilter") < install);
    assert!(install < at("prepare k8s-worker-2: create /etc/containerd/config.toml (mode 0644)"));
    assert!(install < at("prepare k8s-worker-2: apt-mark hold kubelet kubeadm kubectl"));
    for host in ["load-balancer", "k8s-master-1", "k8s-worker-2"] {
        let installs = text
            .iter()
            .filter(|l| l.starts_with(&format!("prepare {host}: install ")))
            .count();
        assert_eq!(installs, 1, "{host}: {text:#?}");
    }
    let kubeadm: Vec<&String> = text.iter().filter(|l| !l.starts_with("prepare")).collect();
    assert_eq!(
        kubeadm,
        [
            "init k8s-master-1: kubeadm init --upload-certs (generated token and certificate key)",
            "network cluster: apply the Calico manifest (server-side apply, sha256:cc42628815fc)",
            "join control planes k8s-master-2: kubeadm join as a control plane (adds an etcd member)",
            "join control planes k8s-master-3: kubeadm join as a control plane (adds an etcd member)",
            "join workers k8s-worker-1: kubeadm join as a worker",
            "join workers k8s-worker-2: kubeadm join as a worker",
            "cluster cluster: wait for 5 node(s) to be Ready and kube-system to be healthy",
            "cluster cluster: write the admin kubeconfig (mode 0600)",
        ]
    );
    assert_eq!(plan.bootstrap.as_deref(), Some("k8s-master-1"));
    // Docker's repository path follows the host's distribution.
    let docker_list = plan.steps.iter().find_map(|s| match &s.action {
        Action::WriteFile { file, bytes, .. } if file.path.ends_with("docker.list") => {
            Some(String::from_utf8(bytes.clone()).unwrap())
        }
        _ => None,
    });
    assert!(docker_list
        .unwrap()
        .contains("https://download.docker.com/linux/debian bookworm stable"));
}

/// The runbook is rendered from `fresh_cluster`: it must be the plan apply makes for
/// recorded fresh machines, step for step.
#[test]
fn the_runbooks_plan_is_applys_plan_for_fresh_machines() {
    for c in [seed(), crate::render::test_support::seed_with_vip()] {
        let facts = fresh(&c);
        let applied = run(&c, &facts, None).unwrap();
        let distro = host::distro(&facts["k8s-master-1"]);
        let fresh = fresh_cluster(&c, &distro, &desired(&c, &facts), &calico_release()).unwrap();
        assert_eq!(lines(&fresh), lines(&applied));
        assert_eq!(fresh.bootstrap, applied.bootstrap);
    }
}

#[test]
fn a_converged_cluster_plans_nothing() {
    let c = seed();
    let facts = converged(&c);
    let plan = run(&c, &facts, Some(&all_ready(&c))).unwrap();
    assert!(plan.is_empty(), "{:#?}", lines(&plan));
}

#[test]
fn a_changed_file_is_diffed_and_its_service_reloaded() {
    let c = seed();
    let mut facts = converged(&c);
    facts
        .get_mut("load-balancer")
        .unwrap()
        .files
        .insert("/etc/haproxy/haproxy.cfg".into(), Some("old".into()));
    let desired = desired(&c, &facts);
    let new = &desired["load-balancer"]
        .iter()
        .find(|d| d.file.path == "/etc/haproxy/haproxy.cfg")
        .unwrap()
        .bytes;
    let old = String::from_utf8(new.clone())
        .unwrap()
        .replace("inter 2000ms", "inter 10s");
    let current = BTreeMap::from([(
        (
            "load-balancer".to_string(),
            "/etc/haproxy/haproxy.cfg".to_string(),
        ),
        old.into_bytes(),
    )]);
    let state = all_ready(&c);
    let plan = plan(&Inputs {
        cluster: &c,
        facts: &facts,
        desired: &desired,
        current: &current,
        cluster_state: Some(&state),
        calico_manifest: None,
        replace: &Default::default(),
        upgrade: None,
        max_unavailable: 1,
    })
    .unwrap();
    assert_eq!(
        lines(&plan),
        [
            "prepare load-balancer: update /etc/haproxy/haproxy.cfg (mode 0644)",
            "prepare load-balancer: reload haproxy"
        ]
    );
    let Action::WriteFile {
        diff: Some(diff), ..
    } = &plan.steps[0].action
    else {
        panic!("no diff")
    };
    assert!(
        diff.contains("-    default-server check verify none inter 10s"),
        "{diff}"
    );
    assert!(
        diff.contains("+    default-server check verify none inter 2000ms"),
        "{diff}"
    );
}

#[test]
fn an_interrupted_control_plane_join_is_reset_then_joined_again() {
    let c = seed();
    let mut facts = converged(&c);
    // k8s-master-3 was killed mid-join: kubelet bootstrapped, no etcd member yet.
    let k = &mut facts.get_mut("k8s-master-3").unwrap().kubeadm;
    k.etcd_manifest = false;
    k.admin_conf = false;
    // Its Node was not registered when the survey asked, but its kubelet may register it
    // (and, with Calico running, make it Ready) before the reset stops it.
    let mut state = all_ready(&c);
    state.nodes.remove("k8s-master-3");
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
        lines(&plan),
        [
            "join credentials k8s-master-1: make a bootstrap token and upload the control-plane certificates (revoked when the run ends)",
            "join control planes k8s-master-3: kubeadm reset -f (an earlier init or join did not finish)",
            "join control planes k8s-master-3: delete Node k8s-master-3 from the API, if its earlier kubelet registered it (kubeadm join refuses a Ready Node of its name)",
            "join control planes k8s-master-3: kubeadm join as a control plane (adds an etcd member)",
            "cluster cluster: wait for 5 node(s) to be Ready and kube-system to be healthy",
            "cluster cluster: write the admin kubeconfig (mode 0600)",
        ]
    );
}

#[test]
fn an_initialised_cluster_is_never_initialised_again() {
    let c = seed();
    let mut facts = converged(&c);
    only_first_control_plane_initialised(&mut facts);
    let plan = run(&c, &facts, None).unwrap();
    let text = lines(&plan);
    assert!(
        !text.iter().any(|l| l.contains("kubeadm init")),
        "{text:#?}"
    );
    assert_eq!(
        text.iter().filter(|l| l.contains("kubeadm join")).count(),
        4
    );
}

#[test]
fn hosts_of_another_cluster_are_refused() {
    let c = seed();
    let mut facts = converged(&c);
    facts.get_mut("k8s-worker-1").unwrap().cluster_marker = Some("prod-eu".into());
    let other_ca = recorded::CA_PEM.replace("MII", "MIJ");
    facts.get_mut("k8s-worker-2").unwrap().kubeadm.ca_cert = Some(other_ca);
    let conflicts = run(&c, &facts, None).unwrap_err();
    let text: Vec<String> = conflicts.iter().map(|c| c.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].starts_with("k8s-worker-1: belongs to cluster `prod-eu`"));
    assert!(text[1].starts_with("k8s-worker-2: its Kubernetes CA differs from k8s-master-1's"));
}

#[test]
fn unsupported_os_small_control_planes_and_version_drift_are_refused() {
    let c = seed();
    let mut facts = converged(&c);
    let lb = facts.get_mut("load-balancer").unwrap();
    lb.os.id = "rhel".into();
    lb.os.pretty_name = "Red Hat Enterprise Linux 9".into();
    facts.get_mut("k8s-master-2").unwrap().cpus = 1;
    facts
        .get_mut("k8s-master-3")
        .unwrap()
        .packages
        .insert("kubeadm".into(), "1.32.0-1.1".into());
    let text: Vec<String> = run(&c, &facts, None)
        .unwrap_err()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(text[0].contains("unsupported operating system `Red Hat Enterprise Linux 9`"));
    assert!(text[1].contains("k8s-master-2: has 1 CPU(s)"));
    // A joined node's kubeadm at another version is an upgrade, which needs the API.
    assert!(
        text[2].contains("an upgrade needs the cluster's version"),
        "{text:#?}"
    );
}

#[test]
fn os_release_values_that_are_not_plain_words_are_refused() {
    let c = seed();
    let mut facts = converged(&c);
    let w = facts.get_mut("k8s-worker-1").unwrap();
    w.os.id = "debian/e".into();
    w.os.codename = "bookworm\nrm -rf /".into();
    let text: Vec<String> = run(&c, &facts, None)
        .unwrap_err()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(text.len(), 1, "{text:#?}");
    assert!(
        text[0].starts_with(
            "k8s-worker-1: the host's /etc/os-release ID \"debian/e\" is not a plain word"
        ),
        "{text:#?}"
    );
}

#[test]
fn a_stopped_service_is_started_without_a_restart() {
    let c = seed();
    let mut facts = converged(&c);
    let lb = facts.get_mut("load-balancer").unwrap();
    lb.services.get_mut("haproxy").unwrap().active = false;
    assert_eq!(
        lines(&run(&c, &facts, Some(&all_ready(&c))).unwrap()),
        ["prepare load-balancer: enable and start haproxy"]
    );
}

#[test]
fn a_config_written_after_the_last_start_restarts_the_service() {
    // An earlier run wrote haproxy.cfg and was killed before restarting HAProxy.
    let c = seed();
    let mut facts = converged(&c);
    let lb = facts.get_mut("load-balancer").unwrap();
    lb.mtimes
        .insert("/etc/haproxy/haproxy.cfg".into(), 1764000100);
    assert_eq!(
        lines(&run(&c, &facts, Some(&all_ready(&c))).unwrap()),
        ["prepare load-balancer: reload haproxy"]
    );
}

#[test]
fn an_init_that_stopped_before_uploading_its_config_is_redone() {
    let c = seed();
    let mut facts = converged(&c);
    only_first_control_plane_initialised(&mut facts);
    facts
        .get_mut("k8s-master-1")
        .unwrap()
        .kubeadm
        .config_uploaded = Some(false);
    let text = lines(&run(&c, &facts, None).unwrap());
    assert_eq!(
        text[0],
        "init k8s-master-1: kubeadm reset -f (an earlier init or join did not finish)"
    );
    assert_eq!(
        text[1],
        "init k8s-master-1: kubeadm init --upload-certs (generated token and certificate key)"
    );
    // The init makes the cluster anew: there is no Node to delete.
    assert!(!text.iter().any(|l| l.contains("delete Node")), "{text:#?}");
    // An API that did not answer is not evidence: the control plane is left alone, and
    // the joins go through it.
    facts
        .get_mut("k8s-master-1")
        .unwrap()
        .kubeadm
        .config_uploaded = None;
    let text = lines(&run(&c, &facts, None).unwrap());
    assert_eq!(
        text.iter().filter(|l| l.contains("k8s-master-1")).collect::<Vec<_>>(),
        ["join credentials k8s-master-1: make a bootstrap token and upload the control-plane certificates (revoked when the run ends)"],
    );
}

#[test]
fn a_reload_kubeha_recorded_counts_as_putting_the_config_in_effect() {
    let c = seed();
    let mut facts = converged(&c);
    let lb = facts.get_mut("load-balancer").unwrap();
    lb.mtimes
        .insert("/etc/haproxy/haproxy.cfg".into(), 1764000100);
    lb.activated.insert("haproxy".into(), 1764000200);
    assert!(run(&c, &facts, Some(&all_ready(&c))).unwrap().is_empty());
}

#[test]
fn calico_is_applied_once() {
    let c = seed();
    let facts = converged(&c);
    let mut state = all_ready(&c);
    state.calico = false;
    let plan = run(&c, &facts, Some(&state)).unwrap();
    let text = lines(&plan);
    assert!(
        text[0]
            .starts_with("network cluster: apply the Calico manifest (server-side apply, sha256:"),
        "{text:#?}"
    );
    assert_eq!(
        text[1..],
        [
            "cluster cluster: wait for 5 node(s) to be Ready and kube-system to be healthy",
            "cluster cluster: write the admin kubeconfig (mode 0600)",
        ]
    );
    // The step carries the manifest with the spec's pool CIDR wired in.
    let Action::ApplyCalico { manifest, digest } = &plan.steps[0].action else {
        panic!("{:?}", plan.steps[0]);
    };
    assert!(manifest.contains(&format!("value: \"{}\"", c.kubernetes.pod_subnet)));
    assert_eq!(
        *digest,
        format!("sha256:{}", sha256_hex(manifest.as_bytes()))
    );
}

/// The plan's lines for one host.
fn host_lines(plan: &Plan, host: &str) -> Vec<String> {
    let prefix = format!("prepare {host}: ");
    lines(plan)
        .into_iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(String::from))
        .collect()
}

const ENDPOINT_STEPS: [&str; 5] = [
    "create /etc/kubeha/hosts-block (mode 0644)",
    "create /usr/local/sbin/kubeha-restore-hosts (mode 0755)",
    "create /etc/systemd/system/kubeha-hosts.service (mode 0644)",
    "update kubeha's block in /etc/hosts",
    "enable and start kubeha-hosts",
];

#[test]
fn fresh_nodes_get_the_endpoint_entry_and_its_boot_unit() {
    let c = seed();
    let plan = run(&c, &fresh(&c), None).unwrap();
    for host in ["k8s-master-1", "k8s-worker-2"] {
        let text = host_lines(&plan, host);
        let endpoint: Vec<&str> = text
            .iter()
            .map(String::as_str)
            .filter(|l| ENDPOINT_STEPS.contains(l))
            .collect();
        assert_eq!(endpoint, ENDPOINT_STEPS, "{host}: {text:#?}");
    }
    assert!(
        !host_lines(&plan, "load-balancer")
            .iter()
            .any(|l| l.contains("hosts")),
        "the load balancer needs no entry"
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn a_reboot_that_regenerated_etc_hosts_plans_only_the_block() {
    // What kubeha finds when a boot rewrote /etc/hosts and the unit did not put it back.
    let c = seed();
    let mut facts = converged(&c);
    facts.get_mut("k8s-worker-1").unwrap().hosts_block = None;
    assert_eq!(
        lines(&run(&c, &facts, Some(&all_ready(&c))).unwrap()),
        ["prepare k8s-worker-1: update kubeha's block in /etc/hosts"]
    );
}

#[test]
fn a_missing_or_disabled_boot_unit_is_repaired() {
    let c = seed();
    let mut facts = converged(&c);
    let f = facts.get_mut("k8s-master-2").unwrap();
    f.files
        .insert(crate::render::hosts_entry::UNIT_PATH.into(), None);
    f.services
        .get_mut(crate::render::hosts_entry::UNIT)
        .unwrap()
        .enabled = false;
    facts
        .get_mut("k8s-master-3")
        .unwrap()
        .services
        .get_mut(crate::render::hosts_entry::UNIT)
        .unwrap()
        .enabled = false;
    assert_eq!(
        lines(&run(&c, &facts, Some(&all_ready(&c))).unwrap()),
        [
            "prepare k8s-master-2: create /etc/systemd/system/kubeha-hosts.service (mode 0644)",
            "prepare k8s-master-2: enable and start kubeha-hosts",
            "prepare k8s-master-3: enable and start kubeha-hosts",
        ]
    );
}

#[test]
fn a_cloud_init_hosts_template_gets_the_block_too() {
    let c = seed();
    let mut facts = converged(&c);
    let f = facts.get_mut("k8s-worker-2").unwrap();
    f.cloud_init_hosts = true;
    let plan = run(&c, &facts, Some(&all_ready(&c))).unwrap();
    assert_eq!(
        lines(&plan),
        ["prepare k8s-worker-2: update kubeha's block in /etc/cloud/templates/hosts.debian.tmpl"]
    );
    let Action::MergeBlock { block, .. } = &plan.steps[0].action else {
        panic!("{:?}", plan.steps[0]);
    };
    assert_eq!(block, "192.0.2.5 load-balancer.local\n");
    facts.get_mut("k8s-worker-2").unwrap().template_block = Some(block.clone());
    assert!(run(&c, &facts, Some(&all_ready(&c))).unwrap().is_empty());
}

#[test]
fn a_name_dns_already_resolves_gets_no_entry() {
    let c = seed();
    let mut facts = fresh(&c);
    for f in facts.values_mut() {
        let e = f.endpoint.as_mut().unwrap();
        e.name_services.insert("192.0.2.5".into());
        e.resolved.insert("192.0.2.5".into());
    }
    let plan = run(&c, &facts, None).unwrap();
    let text = lines(&plan);
    assert!(!text.iter().any(|l| l.contains("hosts")), "{text:#?}");
    assert!(plan.warnings.is_empty());
}

#[test]
fn an_unresolvable_name_kubeha_does_not_map_is_a_warning() {
    let off = crate::render::test_support::cluster_from(|s| {
        s.replace("# manageHostsEntry: true", "manageHostsEntry: false")
    });
    let mut facts = converged(&off);
    facts
        .get_mut("k8s-worker-1")
        .unwrap()
        .endpoint
        .as_mut()
        .unwrap()
        .resolved
        .clear();
    let plan = run(&off, &facts, Some(&all_ready(&off))).unwrap();
    assert!(plan.is_empty(), "a warning is not a change");
    let warnings: Vec<String> = plan.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].starts_with(
        "k8s-worker-1: the API endpoint `load-balancer.local` does not resolve here and `apiEndpoint.manageHostsEntry` is off"
    ));
    // Where kubeha maps the name, an unresolved name is a planned step, not a warning.
    let on = seed();
    let mut facts = converged(&on);
    let f = facts.get_mut("k8s-worker-1").unwrap();
    f.endpoint.as_mut().unwrap().resolved.clear();
    f.hosts_block = None;
    let plan = run(&on, &facts, Some(&all_ready(&on))).unwrap();
    assert!(plan.warnings.is_empty());
    assert_eq!(plan.steps.len(), 1);
}

/// etcd as every control plane sees it: one started, healthy member per control plane
/// of the seed, the first the leader.
pub(super) fn etcd_of(cluster: &Cluster, facts: &mut BTreeMap<String, HostFacts>) {
    let members: Vec<EtcdMember> = cluster
        .control_planes()
        .enumerate()
        .map(|(i, h)| EtcdMember {
            id: format!("{:x}", 0xa1 + i),
            name: h.name.clone(),
            peer_urls: vec![format!("https://{}:2380", h.node_ip())],
            learner: false,
            healthy: true,
            leader: i == 0,
        })
        .collect();
    for h in cluster.control_planes() {
        facts.get_mut(&h.name).unwrap().etcd = Some(EtcdView {
            members: members.clone(),
        });
    }
}

/// A converged seed cluster with its etcd and its API, as a survey would record it.
pub(super) fn live(cluster: &Cluster) -> (BTreeMap<String, HostFacts>, ClusterState) {
    let mut facts = converged(cluster);
    etcd_of(cluster, &mut facts);
    (facts, all_ready(cluster))
}

pub(super) fn messages(conflicts: &[Conflict]) -> Vec<String> {
    conflicts.iter().map(ToString::to_string).collect()
}

#[test]
fn a_live_cluster_with_its_etcd_plans_nothing() {
    let c = seed();
    let (facts, state) = live(&c);
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert!(plan.is_empty(), "{:#?}", lines(&plan));
}

/// Only the hosts where the facts found them: a run that changes one host does not send
/// every host a command.
#[test]
fn secret_files_a_killed_run_left_are_removed_where_they_are_and_only_there() {
    let c = seed();
    let (mut facts, state) = live(&c);
    let worker = c.workers().next().unwrap().name.clone();
    let leftovers = [
        "/etc/kubeha/kubeadm-join.yaml",
        "/etc/kubeha/kubeadm-join.yaml.kubeha-Ab12Cd",
    ];
    facts.get_mut(&worker).unwrap().secret_leftovers =
        leftovers.iter().map(|p| p.to_string()).collect();
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
        lines(&plan),
        [format!(
            "prepare {worker}: remove what a killed run left holding kubeadm secrets: {}",
            leftovers.join(", ")
        )]
    );
    // On a fresh host, before anything else it is given.
    let mut facts = fresh(&c);
    facts.get_mut(&worker).unwrap().secret_leftovers =
        leftovers.iter().map(|p| p.to_string()).collect();
    let plan = run(&c, &facts, None).unwrap();
    let first = plan
        .steps
        .iter()
        .find(|s| s.host.as_deref() == Some(worker.as_str()))
        .unwrap();
    assert!(
        matches!(first.action, Action::RemoveSecretLeftovers { .. }),
        "{first:?}"
    );
    let removals = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::RemoveSecretLeftovers { .. }))
        .count();
    assert_eq!(removals, 1);
}

#[test]
fn a_deleted_kubeadm_config_with_healthy_etcd_is_a_conflict_and_never_a_reset() {
    let c = seed();
    let (mut facts, mut state) = live(&c);
    state.kubeadm_config = None;
    for h in c.control_planes() {
        facts.get_mut(&h.name).unwrap().kubeadm.config_uploaded = Some(false);
    }
    let text = messages(&run(&c, &facts, Some(&state)).unwrap_err());
    assert_eq!(text.len(), 1, "{text:#?}");
    assert!(
        text[0].starts_with(
            "cluster: kube-system/kubeadm-config is missing, but etcd is healthy with 3 member(s) and 5 node(s) are Ready"
        ),
        "{text:#?}"
    );
    assert!(
        text[0].contains("`kubeadm init phase upload-config kubeadm --config"),
        "{text:#?}"
    );
    // The API unreachable, the control planes' own answer and etcd are enough.
    let text = messages(&run(&c, &facts, None).unwrap_err());
    assert!(
        text[0].contains("missing, but etcd is healthy with 3 members"),
        "{text:#?}"
    );
}

#[test]
fn immutable_fields_that_differ_from_the_live_configuration_are_conflicts() {
    let c = seed();
    let (facts, mut state) = live(&c);
    let live = state.kubeadm_config.as_mut().unwrap();
    live.pod_subnet = "10.244.0.0/16".into();
    live.dns_domain = "corp.local".into();
    let text = messages(&run(&c, &facts, Some(&state)).unwrap_err());
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0].starts_with(&format!(
            "cluster: the live ClusterConfiguration has networking.podSubnet `10.244.0.0/16` but the spec's `kubernetes.podSubnet` is `{}`",
            c.kubernetes.pod_subnet
        )),
        "{text:#?}"
    );
    assert!(text[0].contains("cannot change after `kubeadm init`"));
    assert!(text[1].contains("networking.dnsDomain `corp.local`"));
}

#[test]
fn a_label_or_taint_changed_in_the_spec_is_one_api_step() {
    let c = crate::render::test_support::cluster_from(|s| {
        s.replacen(
            "      roles: [worker]\n",
            "      roles: [worker]\n      labels: {tier: web}\n      taints: [{key: dedicated, value: web, effect: NoSchedule}]\n",
            1,
        )
    });
    let worker = c.hosts.iter().find(|h| !h.labels.is_empty()).unwrap();
    let (facts, mut state) = live(&c);
    let node = state.nodes.get_mut(&worker.name).unwrap();
    node.labels = BTreeMap::from([("tier".into(), "db".into()), ("zone".into(), "a".into())]);
    node.taints = vec![NodeTaint {
        key: "dedicated".into(),
        value: Some("db".into()),
        effect: "NoSchedule".into(),
    }];
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
        lines(&plan),
        [format!(
            "cluster cluster: set label tier=web, set taints [dedicated=web:NoSchedule] on node {} through the API",
            worker.name
        )]
    );
    let Action::ApplyLabelsAndTaints { labels, taints, .. } = &plan.steps[0].action else {
        panic!()
    };
    assert_eq!(labels, &BTreeMap::from([("tier".into(), "web".into())]));
    assert_eq!(
        taints.as_ref().unwrap().len(),
        1,
        "same key and effect: replaced"
    );
    // Applied: nothing left to do.
    let node = state.nodes.get_mut(&worker.name).unwrap();
    node.labels.insert("tier".into(), "web".into());
    node.taints = taints.clone().unwrap();
    assert!(run(&c, &facts, Some(&state)).unwrap().is_empty());
}

/// The seed with `k8s-worker-1` labelled and tainted by the spec, and its live Node as
/// kubeha left it after an earlier run (annotations included), plus what others set.
fn labelled_worker() -> (Cluster, BTreeMap<String, HostFacts>, ClusterState) {
    let c = crate::render::test_support::cluster_from(|s| {
        s.replacen(
            "      roles: [worker]\n",
            "      roles: [worker]\n      labels: {tier: web, zone: a}\n      taints: [{key: dedicated, value: web, effect: NoSchedule}]\n",
            1,
        )
    });
    let (facts, mut state) = live(&c);
    let node = state.nodes.get_mut("k8s-worker-1").unwrap();
    // Set by someone else: never kubeha's to remove.
    node.labels.insert("team".into(), "payments".into());
    node.taints.push(NodeTaint {
        key: "maintenance".into(),
        value: None,
        effect: "NoExecute".into(),
    });
    (c, facts, state)
}

fn without_labels_and_taints(c: &Cluster) -> Cluster {
    let mut c = c.clone();
    let h = c
        .hosts
        .iter_mut()
        .find(|h| h.name == "k8s-worker-1")
        .unwrap();
    h.labels.retain(|k, _| k == "tier");
    h.taints.clear();
    c
}

#[test]
fn labels_and_taints_removed_from_the_spec_are_removed_when_kubeha_set_them() {
    let (c, facts, state) = labelled_worker();
    assert!(
        run(&c, &facts, Some(&state)).unwrap().is_empty(),
        "converged"
    );
    let trimmed = without_labels_and_taints(&c);
    let plan = run(&trimmed, &facts, Some(&state)).unwrap();
    assert_eq!(
        lines(&plan),
        ["cluster cluster: remove label zone, remove taint dedicated=web:NoSchedule, set taints [maintenance:NoExecute] on node k8s-worker-1 through the API"]
    );
    let action = &plan.steps[0].action;
    let Action::ApplyLabelsAndTaints {
        remove_labels,
        taints,
        managed_labels,
        managed_taints,
        ..
    } = action
    else {
        panic!("{action:?}")
    };
    assert_eq!(remove_labels, &["zone".to_string()]);
    assert_eq!(taints.as_ref().unwrap().len(), 1, "the other taint stays");
    assert_eq!(managed_labels, &["tier".to_string()]);
    assert!(managed_taints.is_empty());
    // The patch removes with null, keeps `team`, and drops the emptied annotation.
    let patch = crate::plan::node_patch(action).unwrap();
    assert_eq!(
        patch,
        serde_json::json!({
            "metadata": {
                "labels": {"zone": null},
                "annotations": {
                    "kubeha.dev/managed-labels": "tier",
                    "kubeha.dev/managed-taints": null,
                },
            },
            "spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]},
        })
    );
    // Applied: the Node as the patch leaves it plans nothing.
    let mut after = state.clone();
    let node = after.nodes.get_mut("k8s-worker-1").unwrap();
    node.labels.remove("zone");
    node.taints = taints.clone().unwrap();
    node.managed_labels = ["tier".to_string()].into();
    node.managed_taints.clear();
    assert!(run(&trimmed, &facts, Some(&after)).unwrap().is_empty());
}

#[test]
fn labels_and_taints_kubeha_did_not_set_are_never_removed() {
    let (c, facts, mut state) = labelled_worker();
    // A Node labelled before kubeha recorded what it set: nothing is known to be kubeha's.
    let node = state.nodes.get_mut("k8s-worker-1").unwrap();
    node.managed_labels.clear();
    node.managed_taints.clear();
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
        lines(&plan),
        ["cluster cluster: record on node k8s-worker-1 which of its labels and taints are kubeha's (annotations)"]
    );
    let patch = crate::plan::node_patch(&plan.steps[0].action).unwrap();
    assert_eq!(
        patch["metadata"]["annotations"],
        serde_json::json!({
            "kubeha.dev/managed-labels": "tier,zone",
            "kubeha.dev/managed-taints": "dedicated:NoSchedule",
        })
    );
    assert_eq!(patch["metadata"]["labels"], serde_json::json!({}));
    assert!(patch.get("spec").is_none(), "the taints are left alone");
    // Removed from the spec then: with nothing recorded, `zone` and the taint stay.
    let trimmed = without_labels_and_taints(&c);
    let plan = run(&trimmed, &facts, Some(&state)).unwrap();
    let Action::ApplyLabelsAndTaints {
        remove_labels,
        taints,
        ..
    } = &plan.steps[0].action
    else {
        panic!()
    };
    assert!(remove_labels.is_empty() && taints.is_none(), "{plan:?}");
}

#[test]
fn a_joining_node_with_labels_gets_kubehas_annotations_once_registered() {
    let (c, mut facts, mut state) = labelled_worker();
    state.nodes.remove("k8s-worker-1");
    facts.insert("k8s-worker-1".into(), parse(recorded::FRESH));
    let plan = run(&c, &facts, Some(&state)).unwrap();
    let cluster_steps: Vec<&str> = plan
        .phase(Phase::Cluster)
        .map(|s| s.description.as_str())
        .collect();
    assert_eq!(
        cluster_steps,
        [
            "wait for 5 node(s) to be Ready and kube-system to be healthy",
            "record on node k8s-worker-1 which of its labels and taints are kubeha's (annotations)",
            "write the admin kubeconfig (mode 0600)",
        ]
    );
    // kubeadm gave the Node its labels and taints: the patch only records them.
    let patch = crate::plan::node_patch(&plan.phase(Phase::Cluster).nth(1).unwrap().action);
    let patch = patch.unwrap();
    assert_eq!(patch["metadata"]["labels"], serde_json::json!({}));
    assert!(patch.get("spec").is_none());
}

#[test]
fn certificates_ending_within_thirty_days_and_troubled_nodes_are_plan_warnings() {
    let c = seed();
    let (mut facts, mut state) = live(&c);
    let clock = 1_796_126_400;
    for (cp, days) in [
        ("k8s-master-1", 200),
        ("k8s-master-2", 12),
        ("k8s-master-3", -2),
    ] {
        let f = facts.get_mut(cp).unwrap();
        f.clock = Some(clock);
        f.certificates = BTreeMap::from([
            ("/etc/kubernetes/pki/ca.crt".into(), clock + 3_000 * 86_400),
            (
                "/etc/kubernetes/pki/apiserver.crt".into(),
                clock + days * 86_400,
            ),
        ]);
    }
    state
        .nodes
        .get_mut("k8s-worker-2")
        .unwrap()
        .conditions
        .push(crate::facts::cluster::NodeCondition {
            kind: "MemoryPressure".into(),
            status: "True".into(),
            reason: "KubeletHasInsufficientMemory".into(),
            message: "kubelet has insufficient memory available".into(),
        });
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert!(plan.is_empty(), "warnings, not steps");
    assert_eq!(
        messages(&plan.warnings),
        [
            "k8s-master-2: /etc/kubernetes/pki/apiserver.crt expires on 2026-12-13 (in 12 day(s)): renew its certificates with `kubeha certs renew`",
            "k8s-master-3: /etc/kubernetes/pki/apiserver.crt expired on 2026-11-29 (2 day(s) ago): renew its certificates with `kubeha certs renew`",
            "k8s-worker-2: its Node reports MemoryPressure (KubeletHasInsufficientMemory): kubelet has insufficient memory available",
        ]
    );
}

#[test]
fn kubelet_and_calico_drift_from_the_spec_are_warnings() {
    let c = seed();
    let (facts, mut state) = live(&c);
    let kubelet = state.kubelet_config.as_mut().unwrap();
    kubelet.cgroup_driver = "cgroupfs".into();
    kubelet.cluster_domain = "corp.internal".into();
    let calico = state.calico_state.as_mut().unwrap();
    calico.version = Some("v3.27.0".into());
    calico.ip_pools = vec!["10.244.0.0/16".into(), "fd00:10::/64".into()];
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert!(plan.is_empty(), "warnings, not steps");
    let text = messages(&plan.warnings);
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(
        text[0].starts_with("cluster: kube-system/kubelet-config sets cgroupDriver `cgroupfs`"),
        "{text:#?}"
    );
    assert!(text[1].starts_with("cluster: kube-system/kubelet-config sets clusterDomain `corp.internal` but the spec's `kubernetes.dnsDomain` is `cluster.local`"), "{text:#?}");
    assert!(
        text[2].starts_with("cluster: calico-node runs Calico v3.27.0 but the spec says v3.28.1"),
        "{text:#?}"
    );
    assert!(text[3].starts_with("cluster: Calico's IP pool is 10.244.0.0/16 but the spec's `kubernetes.podSubnet` is 192.168.0.0/16"), "{text:#?}");
    // Without IPPools (Calico's CRDs not served), calico-node's own pool CIDR counts.
    let calico = state.calico_state.as_mut().unwrap();
    calico.ip_pools.clear();
    calico.pool_env = Some("192.168.0.0/16".into());
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert!(!messages(&plan.warnings)
        .iter()
        .any(|w| w.contains("IP pool")));
    state.calico_state.as_mut().unwrap().pool_env = Some("172.16.0.0/16".into());
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert!(messages(&plan.warnings)
        .iter()
        .any(|w| w.contains("IP pool is 172.16.0.0/16")));
}

#[test]
fn a_stale_etcd_member_is_removed_through_a_healthy_one_before_its_host_rejoins() {
    let c = seed();
    let (mut facts, mut state) = live(&c);
    // k8s-master-3's join was interrupted after its member was added: never started.
    facts.get_mut("k8s-master-3").unwrap().kubeadm = crate::facts::KubeadmState {
        kubelet_conf: true,
        ca_cert: Some(recorded::CA_PEM.into()),
        ..Default::default()
    };
    state.nodes.get_mut("k8s-master-3").unwrap().ready = false;
    for h in c.control_planes() {
        let m = &mut facts
            .get_mut(&h.name)
            .unwrap()
            .etcd
            .as_mut()
            .unwrap()
            .members[2];
        m.name.clear();
        m.healthy = false;
    }
    let plan = run(&c, &facts, Some(&state)).unwrap();
    let joins: Vec<String> = lines(&plan)
        .into_iter()
        .filter(|l| l.starts_with("join control planes"))
        .collect();
    assert_eq!(
        joins,
        [
            "join control planes k8s-master-3: kubeadm reset -f (an earlier init or join did not finish)",
            "join control planes k8s-master-3: delete Node k8s-master-3 from the API, if its earlier kubelet registered it (kubeadm join refuses a Ready Node of its name)",
            "join control planes k8s-master-3: remove stale etcd member a3 (never started, https://192.0.2.12:2380) through k8s-master-1",
            "join control planes k8s-master-3: kubeadm join as a control plane (adds an etcd member)",
        ]
    );
    let removal = plan
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::RemoveEtcdMember { id, through, .. } => Some((id.clone(), through.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(removal, ("a3".to_string(), "k8s-master-1".to_string()));
}

#[test]
fn with_the_first_control_plane_gone_another_healthy_one_is_the_bootstrap() {
    let c = seed();
    let (mut facts, mut state) = live(&c);
    // k8s-master-1 was rebuilt from scratch: no kubeadm state, its member gone.
    let f = facts.get_mut("k8s-master-1").unwrap();
    f.kubeadm = Default::default();
    f.etcd = None;
    state.nodes.remove("k8s-master-1");
    for h in ["k8s-master-2", "k8s-master-3"] {
        facts
            .get_mut(h)
            .unwrap()
            .etcd
            .as_mut()
            .unwrap()
            .members
            .remove(0);
    }
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(plan.bootstrap.as_deref(), Some("k8s-master-2"));
    let text = lines(&plan);
    assert!(
        !text.iter().any(|l| l.contains("kubeadm init")),
        "{text:#?}"
    );
    assert_eq!(
        text[..2],
        [
            "join credentials k8s-master-2: make a bootstrap token and upload the control-plane certificates (revoked when the run ends)",
            "join control planes k8s-master-1: kubeadm join as a control plane (adds an etcd member)",
        ]
    );
    // A control plane whose own member is unhealthy is never the bootstrap.
    for m in &mut facts
        .get_mut("k8s-master-2")
        .unwrap()
        .etcd
        .as_mut()
        .unwrap()
        .members
    {
        if m.name == "k8s-master-2" {
            m.healthy = false;
        }
    }
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(plan.bootstrap.as_deref(), Some("k8s-master-3"));
}

#[test]
fn a_host_holding_live_data_is_reset_only_when_named() {
    let c = seed();
    let (mut facts, mut state) = live(&c);
    // k8s-worker-1 lost its kubelet.conf but its Node is Ready; k8s-master-2 lost its
    // admin.conf and its Node is not Ready, but it is a healthy etcd member.
    facts.get_mut("k8s-worker-1").unwrap().kubeadm.kubelet_conf = false;
    facts.get_mut("k8s-master-2").unwrap().kubeadm.admin_conf = false;
    state.nodes.get_mut("k8s-master-2").unwrap().ready = false;
    let text = messages(&run(&c, &facts, Some(&state)).unwrap_err());
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].starts_with(
        "k8s-master-2: rejoining it needs `kubeadm reset`, but it is a healthy etcd member"
    ));
    assert!(text[0].ends_with("(`--replace k8s-master-2`)"));
    assert!(text[1]
        .starts_with("k8s-worker-1: rejoining it needs `kubeadm reset`, but its node is Ready"));
    let text = messages(&run_replacing(&c, &facts, Some(&state), &["k8s-wrker-1"]).unwrap_err());
    assert!(
        text.contains(&"k8s-wrker-1: `--replace k8s-wrker-1`: the spec has no control plane or worker of that name".to_string()),
        "{text:#?}"
    );
    let plan = run_replacing(&c, &facts, Some(&state), &["k8s-master-2", "k8s-worker-1"]).unwrap();
    let text = lines(&plan);
    // Each replaced host: reset, then its old Node deleted (the worker's is Ready, which
    // kubeadm join refuses), then the join.
    for (host, phase) in [
        ("k8s-master-2", "join control planes"),
        ("k8s-worker-1", "join workers"),
    ] {
        let steps: Vec<&str> = text
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{phase} {host}: ")))
            .collect();
        assert_eq!(steps.len(), 3, "{text:#?}");
        assert_eq!(
            steps[0],
            "kubeadm reset -f (an earlier init or join did not finish)"
        );
        assert!(steps[1].starts_with(&format!("delete Node {host} from the API")));
        assert!(steps[2].starts_with("kubeadm join as a "));
    }
    let deleted: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::DeleteNode { node } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["k8s-master-2", "k8s-worker-1"]);
}

#[test]
fn a_reset_join_deletes_a_node_only_when_its_host_may_have_registered_one() {
    let c = seed();
    // (A half-done init, reset and made anew, deletes none: see
    // `an_init_that_stopped_before_uploading_its_config_is_redone`.)
    // A join killed before its kubelet bootstrapped, its host unknown to the API: the
    // reset is all it needs.
    let mut facts = converged(&c);
    let k = &mut facts.get_mut("k8s-master-3").unwrap().kubeadm;
    (k.etcd_manifest, k.admin_conf, k.kubelet_conf) = (false, false, false);
    let mut state = all_ready(&c);
    state.nodes.remove("k8s-master-3");
    let text = lines(&run(&c, &facts, Some(&state)).unwrap());
    assert!(
        text.iter().any(|l| l
            .ends_with("k8s-master-3: kubeadm reset -f (an earlier init or join did not finish)")),
        "{text:#?}"
    );
    assert!(!text.iter().any(|l| l.contains("delete Node")), "{text:#?}");
    // The same host with a NotReady Node the API still lists: the Node goes.
    state.nodes.insert(
        "k8s-master-3".into(),
        NodeState {
            ready: false,
            ..ready_node(
                &c,
                c.hosts.iter().find(|h| h.name == "k8s-master-3").unwrap(),
            )
        },
    );
    let text = lines(&run(&c, &facts, Some(&state)).unwrap());
    assert!(
        text.iter()
            .any(|l| l.starts_with("join control planes k8s-master-3: delete Node k8s-master-3")),
        "{text:#?}"
    );
    // No other host's Node is ever deleted.
    assert_eq!(text.iter().filter(|l| l.contains("delete Node")).count(), 1);
}

#[test]
fn a_manifest_the_pool_cidr_cannot_be_wired_into_is_a_plan_error() {
    let c = seed();
    let manifest = Ok("kind: DaemonSet\n".to_string());
    let conflicts = run_with(&c, &fresh(&c), None, &[], &manifest).unwrap_err();
    let text = messages(&conflicts);
    assert_eq!(text.len(), 1);
    assert!(
        text[0].starts_with("cluster: the Calico manifest has no commented CALICO_IPV4POOL_CIDR"),
        "{text:#?}"
    );
}

#[test]
fn the_json_plan_names_every_step_with_its_description() {
    let c = seed();
    let plan = run(&c, &fresh(&c), None).unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), plan.steps.len());
    for (j, s) in steps.iter().zip(&plan.steps) {
        assert_eq!(j["description"], s.action.to_string());
    }
    let calico = steps
        .iter()
        .find(|s| s["action"] == "apply-calico")
        .unwrap();
    assert!(calico["digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71));
    assert!(
        calico.get("manifest").is_none(),
        "the bytes stay out of the JSON"
    );
}

#[test]
fn control_planes_that_disagree_on_etcds_members_are_a_warning() {
    let c = seed();
    let (mut facts, state) = live(&c);
    assert!(run(&c, &facts, Some(&state)).unwrap().warnings.is_empty());
    facts
        .get_mut("k8s-master-3")
        .unwrap()
        .etcd
        .as_mut()
        .unwrap()
        .members
        .pop();
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
        messages(&plan.warnings),
        ["k8s-master-3: its etcd lists members [a1, a2] but k8s-master-1's lists [a1, a2, a3]"]
    );
}
