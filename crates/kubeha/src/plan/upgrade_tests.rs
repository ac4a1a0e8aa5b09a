//! Upgrade planning on recorded facts: the whole rolling upgrade, each refusal, and the
//! plans a re-run makes after a kill at each point of an upgrade.

use std::collections::BTreeMap;

use super::*;
use crate::facts::HostFacts;
use crate::plan::tests::{calico_release, desired, lines, live, messages};
use crate::plan::{plan, Plan};
use crate::render::test_support::{cluster_from, seed};

const OLD: &str = "v1.31.0";
const NEW: &str = "v1.32.0";
const OLD_DEB: &str = "1.31.0-1.1";
const NEW_DEB: &str = "1.32.0-1.1";
const CONTROL_PLANES: [&str; 3] = ["k8s-master-1", "k8s-master-2", "k8s-master-3"];
const WORKERS: [&str; 2] = ["k8s-worker-1", "k8s-worker-2"];

fn target() -> Cluster {
    cluster_from(|s| s.replace("version: v1.31.0", "version: v1.32.0"))
}

/// What the upgrade's survey finds on a healthy cluster whose apiserver manifests run
/// `manifest` on every control plane: both versions offered, certificates for a year,
/// every backend UP.
fn checks(manifest: &str) -> UpgradeFacts {
    let offered = || -> BTreeMap<String, Vec<String>> {
        PACKAGES
            .iter()
            .map(|p| (p.to_string(), vec![NEW_DEB.into(), OLD_DEB.into()]))
            .collect()
    };
    let now = 1_800_000_000;
    UpgradeFacts {
        apiserver_manifests: CONTROL_PLANES
            .iter()
            .map(|h| (h.to_string(), manifest.to_string()))
            .collect(),
        available: CONTROL_PLANES
            .iter()
            .chain(&WORKERS)
            .map(|h| (h.to_string(), offered()))
            .collect(),
        repository_problems: BTreeMap::new(),
        certificates: vec![(
            "k8s-master-1".into(),
            "/etc/kubernetes/pki/apiserver.crt".into(),
            now + 365 * 86_400,
        )],
        now,
        backends: BTreeMap::from([(
            "load-balancer".to_string(),
            CONTROL_PLANES
                .iter()
                .map(|h| (h.to_string(), "UP".to_string()))
                .collect(),
        )]),
    }
}

fn upgrade_plan(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: &ClusterState,
    checks: &UpgradeFacts,
    max_unavailable: usize,
) -> Result<Plan, Vec<Conflict>> {
    let desired = desired(cluster, facts);
    let current = BTreeMap::new();
    plan(&Inputs {
        cluster,
        facts,
        desired: &desired,
        current: &current,
        cluster_state: Some(state),
        calico_manifest: Some(&calico_release()),
        replace: &Default::default(),
        upgrade: Some(checks),
        max_unavailable,
    })
}

/// Sets a node's Kubernetes packages (and its Node's kubelet) as an upgrade would.
fn node_at(
    facts: &mut BTreeMap<String, HostFacts>,
    state: &mut ClusterState,
    host: &str,
    deb: &str,
    kubelet: &str,
) {
    for p in PACKAGES {
        facts
            .get_mut(host)
            .unwrap()
            .packages
            .insert(p.into(), deb.into());
    }
    state.nodes.get_mut(host).unwrap().kubelet_version = kubelet.into();
}

/// The target spec's converged cluster taken back to v1.31.0 everywhere (its apt
/// sources already switched): where every resume test starts from.
fn before_upgrade() -> (Cluster, BTreeMap<String, HostFacts>, ClusterState) {
    let c = target();
    let (mut facts, mut state) = live(&c);
    for h in CONTROL_PLANES.iter().chain(&WORKERS) {
        node_at(&mut facts, &mut state, h, OLD_DEB, OLD);
    }
    state.kubeadm_config.as_mut().unwrap().kubernetes_version = OLD.into();
    (c, facts, state)
}

fn upgrade_lines(plan: &Plan) -> Vec<String> {
    lines(plan)
        .into_iter()
        .filter(|l| !l.starts_with("prepare"))
        .collect()
}

fn node_steps(host: &str, phase: &str, worker: bool, kubeadm: bool) -> Vec<String> {
    let mut out = Vec::new();
    if kubeadm {
        out.push(format!(
            "{phase} {host}: upgrade kubeadm to {NEW_DEB} (unhold, install, hold)"
        ));
    }
    if worker {
        out.push(format!(
            "{phase} {host}: kubeadm upgrade node (the kubelet's configuration)"
        ));
    }
    out.extend([
        format!("{phase} {host}: drain {host} (cordon, evict its pods, PodDisruptionBudgets respected)"),
        format!("{phase} {host}: upgrade kubelet kubectl to {NEW_DEB} (unhold, install, hold), restart the kubelet"),
        format!("{phase} {host}: wait for {host} to be Ready with kubelet {NEW}"),
        format!("{phase} {host}: uncordon {host}"),
    ]);
    out
}

const UPGRADE_NODE: &str = "kubeadm upgrade node (its apiserver out of the load balancers until /readyz, etcd and the backends are healthy)";

fn control_plane_node(host: &str, kubeadm: bool) -> Vec<String> {
    let mut out = Vec::new();
    if kubeadm {
        out.push(format!(
            "upgrade control planes {host}: upgrade kubeadm to {NEW_DEB} (unhold, install, hold)"
        ));
    }
    out.push(format!("upgrade control planes {host}: {UPGRADE_NODE}"));
    out
}

fn kubelets_and_workers(workers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for h in CONTROL_PLANES {
        out.extend(node_steps(
            h,
            "upgrade control-plane kubelets",
            false,
            false,
        ));
    }
    for h in workers {
        out.extend(node_steps(h, "upgrade workers", true, true));
    }
    out
}

#[test]
fn a_version_change_plans_the_rolling_upgrade_in_kubeadms_order() {
    // The cluster was built from the v1.31.0 spec; the spec now says v1.32.0.
    let (facts, state) = live(&seed());
    let c = target();
    let plan = upgrade_plan(&c, &facts, &state, &checks(OLD), 1).unwrap();
    let all = lines(&plan);
    assert_eq!(
        all[0], "backup cluster: save a verified etcd backup on this machine (0600)",
        "the backup comes before any change"
    );
    // The apt source moves to the new minor; packages move only in the upgrade's steps.
    let prepare: Vec<&String> = all.iter().filter(|l| l.starts_with("prepare")).collect();
    assert!(
        prepare.contains(
            &&"prepare k8s-worker-1: update /etc/apt/sources.list.d/kubernetes.list (mode 0644)"
                .to_string()
        ),
        "{prepare:#?}"
    );
    assert!(prepare.contains(&&"prepare k8s-worker-1: apt-get update".to_string()));
    assert!(
        !prepare.iter().any(|l| l.contains("install")),
        "{prepare:#?}"
    );
    let mut want = vec![
        "backup cluster: save a verified etcd backup on this machine (0600)".to_string(),
        format!("upgrade control planes k8s-master-1: upgrade kubeadm to {NEW_DEB} (unhold, install, hold)"),
        format!("upgrade control planes k8s-master-1: kubeadm upgrade apply {NEW} (its apiserver out of the load balancers meanwhile)"),
    ];
    want.extend(control_plane_node("k8s-master-2", true));
    want.extend(control_plane_node("k8s-master-3", true));
    want.extend(kubelets_and_workers(&WORKERS));
    assert_eq!(upgrade_lines(&plan), want);
    assert_eq!(plan.batches, [vec!["k8s-worker-1"], vec!["k8s-worker-2"]]);
    let apply = plan
        .steps
        .iter()
        .find(|s| matches!(s.action, Action::KubeadmUpgradeApply { .. }))
        .unwrap();
    assert!(
        matches!(&apply.action, Action::KubeadmUpgradeApply { load_balancers, .. } if load_balancers == &["load-balancer"])
    );

    let two = upgrade_plan(&c, &facts, &state, &checks(OLD), 2).unwrap();
    assert_eq!(two.batches, [vec!["k8s-worker-1", "k8s-worker-2"]]);
}

#[test]
fn an_upgraded_cluster_plans_nothing() {
    let c = target();
    let (facts, state) = live(&c);
    assert!(!pending(&c, &facts, Some(&state)));
    let plan = upgrade_plan(&c, &facts, &state, &checks(NEW), 1).unwrap();
    assert!(plan.is_empty(), "{:#?}", lines(&plan));
}

#[test]
fn refusals_change_nothing_and_say_why() {
    let refused = |c: &Cluster,
                   facts: &BTreeMap<String, HostFacts>,
                   state: &ClusterState,
                   checks: &UpgradeFacts| {
        messages(&upgrade_plan(c, facts, state, checks, 1).unwrap_err())
    };
    let (c, facts, state) = before_upgrade();

    // Two minors at once.
    let mut old = state.clone();
    old.kubeadm_config.as_mut().unwrap().kubernetes_version = "v1.30.4".into();
    for n in old.nodes.values_mut() {
        n.kubelet_version = "v1.30.4".into();
    }
    let text = refused(&c, &facts, &old, &checks(OLD));
    assert_eq!(text.len(), 1, "{text:#?}");
    assert!(text[0].starts_with("cluster: the cluster runs Kubernetes v1.30.4 and the spec says v1.32.0: kubeadm upgrades one minor version at a time; upgrade to v1.31.x first"), "{text:#?}");

    // A downgrade.
    let (facts_new, state_new) = live(&target());
    let text = refused(&seed(), &facts_new, &state_new, &checks(NEW));
    assert!(text[0].starts_with("cluster: the cluster runs Kubernetes v1.32.0 and the spec says v1.31.0: kubeadm does not downgrade"), "{text:#?}");

    // A NotReady node.
    let mut not_ready = state.clone();
    not_ready.nodes.get_mut("k8s-worker-2").unwrap().ready = false;
    let text = refused(&c, &facts, &not_ready, &checks(OLD));
    assert_eq!(text, ["k8s-worker-2: its node is not Ready: an upgrade drains nodes one after another and needs every node Ready; repair it first (`kubeha status`)"]);

    // An unhealthy etcd member: no quorum headroom either.
    let mut sick = facts.clone();
    for h in CONTROL_PLANES {
        let view = sick.get_mut(h).unwrap().etcd.as_mut().unwrap();
        view.members[2].healthy = false;
    }
    let text = refused(&c, &sick, &state, &checks(OLD));
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].starts_with("k8s-master-3: its etcd member is not healthy"));
    assert!(text[1].starts_with("cluster: etcd has 2 healthy of 3 voting members"));

    // A kubelet newer than the control plane.
    let mut skew = state.clone();
    skew.nodes.get_mut("k8s-worker-1").unwrap().kubelet_version = NEW.into();
    let text = refused(&c, &facts, &skew, &checks(OLD));
    assert!(
        text[0].starts_with(
            "k8s-worker-1: its kubelet runs v1.32.0, newer than the control plane's v1.31.0"
        ),
        "{text:#?}"
    );

    // The target packages missing from the repository, and a repository that did not answer.
    let mut missing = checks(OLD);
    missing
        .available
        .get_mut("k8s-worker-1")
        .unwrap()
        .insert("kubelet".into(), vec![OLD_DEB.into()]);
    missing.repository_problems.insert(
        "k8s-worker-2".into(),
        "E: The repository is not signed.".into(),
    );
    let text = refused(&c, &facts, &state, &missing);
    assert_eq!(text, [
        "k8s-worker-2: cannot ask the target repository for the 1.32.0-1.1 packages: E: The repository is not signed.",
        "k8s-worker-1: the configured repository has no kubelet 1.32.0-1.1 (it offers: 1.31.0-1.1); publish it there (or fix `packages`) before upgrading",
    ]);

    // A certificate that expires during the upgrade window.
    let mut expiring = checks(OLD);
    expiring.certificates[0].2 = expiring.now + 5 * 3600;
    let text = refused(&c, &facts, &state, &expiring);
    assert_eq!(text, ["k8s-master-1: /etc/kubernetes/pki/apiserver.crt expires in 5 hour(s), during the upgrade window: renew the certificates first (`kubeha certs renew`)"]);

    // A node that is still to join.
    let mut unjoined = facts.clone();
    unjoined.get_mut("k8s-worker-2").unwrap().kubeadm = Default::default();
    let mut unregistered = state.clone();
    unregistered.nodes.remove("k8s-worker-2");
    let text = refused(&c, &unjoined, &unregistered, &checks(OLD));
    assert!(
        text[0].starts_with("k8s-worker-2: it is not a node of the cluster yet"),
        "{text:#?}"
    );
}

/// `kubeadm upgrade apply` done on k8s-master-1; kubeadm upgraded on `kubeadm_at`.
fn after_first_apply(
    kubeadm_at: &[&str],
) -> (
    Cluster,
    BTreeMap<String, HostFacts>,
    ClusterState,
    UpgradeFacts,
) {
    let (c, mut facts, mut state) = before_upgrade();
    state.kubeadm_config.as_mut().unwrap().kubernetes_version = NEW.into();
    for h in kubeadm_at {
        facts
            .get_mut(*h)
            .unwrap()
            .packages
            .insert("kubeadm".into(), NEW_DEB.into());
    }
    let mut found = checks(OLD);
    found
        .apiserver_manifests
        .insert("k8s-master-1".into(), NEW.into());
    (c, facts, state, found)
}

#[test]
fn killed_after_the_first_control_plane_applied_it_never_applies_again() {
    let (c, facts, state, found) = after_first_apply(&["k8s-master-1"]);
    let plan = upgrade_plan(&c, &facts, &state, &found, 1).unwrap();
    let mut want =
        vec!["backup cluster: save a verified etcd backup on this machine (0600)".to_string()];
    want.extend(control_plane_node("k8s-master-2", true));
    want.extend(control_plane_node("k8s-master-3", true));
    want.extend(kubelets_and_workers(&WORKERS));
    assert_eq!(upgrade_lines(&plan), want);
    assert!(!plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::KubeadmUpgradeApply { .. })));
}

#[test]
fn killed_during_the_second_control_plane_it_upgrades_that_one_again() {
    let (c, facts, state, mut found) = after_first_apply(&["k8s-master-1", "k8s-master-2"]);
    // Killed inside `kubeadm upgrade node`: k8s-master-2 is still out of rotation.
    found
        .backends
        .get_mut("load-balancer")
        .unwrap()
        .insert("k8s-master-2".into(), "MAINT".into());
    let plan = upgrade_plan(&c, &facts, &state, &found, 1).unwrap();
    let mut want =
        vec!["backup cluster: save a verified etcd backup on this machine (0600)".to_string()];
    want.extend(control_plane_node("k8s-master-2", false));
    want.extend(control_plane_node("k8s-master-3", true));
    want.extend(kubelets_and_workers(&WORKERS));
    assert_eq!(upgrade_lines(&plan), want);

    // Killed after its upgrade, before it went back into rotation: only that is left of it.
    found
        .apiserver_manifests
        .insert("k8s-master-2".into(), NEW.into());
    let plan = upgrade_plan(&c, &facts, &state, &found, 1).unwrap();
    let text = upgrade_lines(&plan);
    assert_eq!(
        text[1],
        "upgrade control planes k8s-master-2: put its apiserver back into the load balancers (an interrupted upgrade left it in maintenance)"
    );
    assert!(!text
        .iter()
        .any(|l| l.contains(&format!("k8s-master-2: {UPGRADE_NODE}"))));
}

#[test]
fn killed_during_a_workers_drain_it_drains_that_worker_again_and_uncordons_it() {
    let (c, mut facts, mut state) = before_upgrade();
    state.kubeadm_config.as_mut().unwrap().kubernetes_version = NEW.into();
    for h in CONTROL_PLANES {
        node_at(&mut facts, &mut state, h, NEW_DEB, NEW);
    }
    // k8s-worker-1: kubeadm upgraded, `upgrade node` done, cordoned by kubeha, drain cut short.
    facts
        .get_mut("k8s-worker-1")
        .unwrap()
        .packages
        .insert("kubeadm".into(), NEW_DEB.into());
    let w1 = state.nodes.get_mut("k8s-worker-1").unwrap();
    w1.cordoned = true;
    w1.cordoned_by_kubeha = true;
    let plan = upgrade_plan(&c, &facts, &state, &checks(NEW), 1).unwrap();
    let mut want =
        vec!["backup cluster: save a verified etcd backup on this machine (0600)".to_string()];
    want.extend(node_steps("k8s-worker-1", "upgrade workers", true, false));
    want.extend(node_steps("k8s-worker-2", "upgrade workers", true, true));
    assert_eq!(upgrade_lines(&plan), want);

    // Killed after its kubelet came back, before the uncordon: wait and uncordon only.
    node_at(&mut facts, &mut state, "k8s-worker-1", NEW_DEB, NEW);
    node_at(&mut facts, &mut state, "k8s-worker-2", NEW_DEB, NEW);
    let plan = upgrade_plan(&c, &facts, &state, &checks(NEW), 1).unwrap();
    assert_eq!(
        upgrade_lines(&plan),
        [
            format!("upgrade workers k8s-worker-1: wait for k8s-worker-1 to be Ready with kubelet {NEW}"),
            "upgrade workers k8s-worker-1: uncordon k8s-worker-1".to_string(),
        ],
        "nothing left to change: no backup"
    );
    // A node the operator cordoned is none of the upgrade's business.
    let w1 = state.nodes.get_mut("k8s-worker-1").unwrap();
    w1.cordoned_by_kubeha = false;
    assert!(!pending(&c, &facts, Some(&state)));
}

#[test]
fn apt_cache_policy_lists_what_the_repository_offers() {
    let out = "kubeadm:\n  Installed: 1.31.0-1.1\n  Candidate: 1.32.0-1.1\n  Version table:\n     1.32.0-1.1 500\n        500 http://10.0.0.2/debian kubeha/main amd64 Packages\n *** 1.31.0-1.1 500\n        500 http://10.0.0.2/debian kubeha/main amd64 Packages\n        100 /var/lib/dpkg/status\nkubelet:\n  Installed: 1.30.9-1.1\n  Candidate: 1.30.9-1.1\n  Version table:\n *** 1.30.9-1.1 100\n        100 /var/lib/dpkg/status\nkubectl:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n";
    let v = policy_versions(out);
    assert_eq!(v["kubeadm"], ["1.32.0-1.1", "1.31.0-1.1"]);
    assert!(v["kubelet"].is_empty(), "only dpkg knows it");
    assert!(v["kubectl"].is_empty());
}
