//! Membership planning on recorded facts: fault tolerance, the quorum guard, the steps of
//! `node remove`, and what `plan` says about nodes and members the spec no longer lists.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::membership::{etcd_quorum, plan_removal, quorum, Removal, RemovalInputs};
use super::super::{ClusterState, Conflict};
use super::{converged, etcd_of, live, messages, run, run_replacing};
use crate::facts::HostFacts;
use crate::render::test_support::{cluster_from, seed};
use crate::spec::Cluster;

fn remove(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    state: &ClusterState,
    name: &str,
    force: bool,
) -> Result<Removal, Vec<Conflict>> {
    let unreachable: BTreeMap<String, String> = cluster
        .hosts
        .iter()
        .filter(|h| !facts.contains_key(&h.name))
        .map(|h| (h.name.clone(), "connection refused".to_string()))
        .collect();
    plan_removal(&RemovalInputs {
        cluster,
        name,
        facts,
        unreachable: &unreachable,
        cluster_state: Some(state),
        force,
        drain_timeout: Duration::from_secs(120),
    })
}

fn steps(r: &Removal) -> Vec<String> {
    r.steps.iter().map(ToString::to_string).collect()
}

/// A control plane that stopped: unreachable over SSH, its member unhealthy in the
/// others' views.
fn stopped(facts: &mut BTreeMap<String, HostFacts>, name: &str) {
    facts.remove(name);
    for f in facts.values_mut() {
        for v in f.etcd.iter_mut() {
            for m in v.members.iter_mut().filter(|m| m.name == name) {
                m.healthy = false;
            }
        }
    }
}

#[test]
fn quorum_and_fault_tolerance_come_from_the_recorded_members() {
    assert_eq!(
        (quorum(1), quorum(2), quorum(3), quorum(4), quorum(5)),
        (1, 2, 2, 3, 3)
    );
    let c = seed();
    let (mut facts, _) = live(&c);
    let q = etcd_quorum(&c, &facts).unwrap();
    assert_eq!((q.members, q.healthy, q.fault_tolerance), (3, 3, 1));
    assert_eq!(
        q.to_string(),
        "etcd has 3 member(s), 3 healthy (quorum 2): the cluster can lose 1 control plane(s) now"
    );
    stopped(&mut facts, "k8s-master-2");
    let q = etcd_quorum(&c, &facts).unwrap();
    assert_eq!((q.healthy, q.fault_tolerance), (2, 0));
    assert_eq!(q.unhealthy, ["k8s-master-2"]);
    let plan = run(&c, &facts_with_all(&c, &facts), None);
    assert!(plan.is_ok_and(|p| p.etcd.is_some_and(|e| e.fault_tolerance == 0)));
}

/// The facts map the general planner needs (every spec host), the stopped ones as
/// they last were but without etcd.
fn facts_with_all(c: &Cluster, facts: &BTreeMap<String, HostFacts>) -> BTreeMap<String, HostFacts> {
    let mut all = converged(c);
    for (k, v) in facts {
        all.insert(k.clone(), v.clone());
    }
    all
}

#[test]
fn removing_a_worker_drains_resets_and_deletes_it_and_leaves_etcd_alone() {
    let c = seed();
    let (facts, state) = live(&c);
    let r = remove(&c, &facts, &state, "k8s-worker-2", false).unwrap();
    assert!(!r.control_plane && r.etcd.is_none());
    assert_eq!(
        steps(&r),
        [
            "cordon node k8s-worker-2",
            "drain node k8s-worker-2 (PodDisruptionBudgets honoured, 120s at most)",
            "k8s-worker-2: kubeadm reset -f, remove /etc/kubernetes/pki and /var/lib/etcd",
            "delete node k8s-worker-2",
        ]
    );
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("delete k8s-worker-2 from the spec")));
}

#[test]
fn removing_the_init_control_plane_goes_through_another_healthy_member_before_its_reset() {
    let c = seed();
    let (facts, state) = live(&c);
    let r = remove(&c, &facts, &state, "k8s-master-1", false).unwrap();
    assert!(r.control_plane);
    assert_eq!(r.etcd.as_ref().unwrap().fault_tolerance, 1);
    assert_eq!(r.fault_tolerance_after, Some(0));
    assert_eq!(
        steps(&r),
        [
            "cordon node k8s-master-1",
            "drain node k8s-master-1 (PodDisruptionBudgets honoured, 120s at most)",
            "take a verified etcd backup (written locally, 0600)",
            "take k8s-master-1 out of rotation on load-balancer (no new requests; its sessions closed after 1s)",
            "load-balancer: write /etc/haproxy/haproxy.cfg without the node's server and reload haproxy",
            "k8s-master-1: stop the apiserver (manifest moved aside) and wait until it no longer answers",
            "k8s-master-1: hand etcd's leadership to member a2 (k8s-master-2) before its member goes",
            "remove etcd member a1 (k8s-master-1) through k8s-master-2",
            "k8s-master-1: kubeadm reset -f, remove /etc/kubernetes/pki and /var/lib/etcd",
            "delete node k8s-master-1",
        ]
    );
    let config = r
        .steps
        .iter()
        .find_map(|s| match s {
            super::super::membership::RemoveStep::UpdateLoadBalancer { config, .. } => {
                Some(config.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(!config.contains("server 'k8s-master-1'"), "{config}");
    assert!(config.contains("server 'k8s-master-2'") && config.contains("server 'k8s-master-3'"));
}

#[test]
fn removing_the_leader_hands_its_leadership_over_first() {
    let c = seed();
    let (mut facts, state) = live(&c);
    for f in facts.values_mut() {
        for v in f.etcd.iter_mut() {
            for m in v.members.iter_mut() {
                m.leader = m.name == "k8s-master-1";
            }
        }
    }
    let r = remove(&c, &facts, &state, "k8s-master-1", false).unwrap();
    let steps = steps(&r);
    let at = |prefix: &str| steps.iter().position(|s| s.starts_with(prefix)).unwrap();
    assert_eq!(
        steps[at("k8s-master-1: hand")],
        "k8s-master-1: hand etcd's leadership to member a2 (k8s-master-2) before its member goes"
    );
    assert_eq!(at("k8s-master-1: hand") + 1, at("remove etcd member a1"));
    // A follower's removal needs no transfer, nor can an unreachable leader be asked.
    let r = remove(&c, &facts, &state, "k8s-master-3", false).unwrap();
    assert!(!self::steps(&r).iter().any(|s| s.contains("leadership")));
    stopped(&mut facts, "k8s-master-1");
    for f in facts.values_mut() {
        for v in f.etcd.iter_mut() {
            for m in v.members.iter_mut() {
                m.leader = m.name == "k8s-master-1";
            }
        }
    }
    let r = remove(&c, &facts, &state, "k8s-master-1", true).unwrap();
    assert!(!self::steps(&r).iter().any(|s| s.contains("leadership")));
}

#[test]
fn the_quorum_guard_refuses_while_another_member_is_down_and_changes_nothing() {
    let c = seed();
    let (mut facts, state) = live(&c);
    stopped(&mut facts, "k8s-master-2");
    let refused = messages(&remove(&c, &facts, &state, "k8s-master-3", false).unwrap_err());
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].starts_with("k8s-master-3: quorum guard: another etcd member is not healthy (k8s-master-2 (unreachable: connection refused))"),
        "{refused:?}"
    );
    assert!(refused[0].contains("Nothing was changed"));
    // Two members, one of them down: no member can go.
    let mut two = seed();
    two.hosts.retain(|h| h.name != "k8s-master-1");
    let (mut facts, state) = live(&two);
    stopped(&mut facts, "k8s-master-2");
    let refused = messages(&remove(&two, &facts, &state, "k8s-master-3", false).unwrap_err());
    assert!(refused[0].contains("quorum guard"), "{refused:?}");
}

#[test]
fn a_dead_control_plane_is_removed_with_force_and_no_ssh_to_it() {
    let c = seed();
    let (mut facts, state) = live(&c);
    stopped(&mut facts, "k8s-master-3");
    let refused = messages(&remove(&c, &facts, &state, "k8s-master-3", false).unwrap_err());
    assert!(
        refused[0].contains("cannot reach it (connection refused)")
            && refused[0].contains("--force"),
        "{refused:?}"
    );
    let r = remove(&c, &facts, &state, "k8s-master-3", true).unwrap();
    assert_eq!(
        steps(&r),
        [
            "cordon node k8s-master-3",
            "drain node k8s-master-3 (PodDisruptionBudgets honoured, 120s at most; pods its kubelet cannot end are deleted)",
            "take a verified etcd backup (written locally, 0600)",
            "take k8s-master-3 out of rotation on load-balancer (no new requests; its sessions closed after 1s)",
            "load-balancer: write /etc/haproxy/haproxy.cfg without the node's server and reload haproxy",
            "remove etcd member a3 (k8s-master-3) through k8s-master-1",
            "delete node k8s-master-3",
        ]
    );
    assert_eq!(r.fault_tolerance_after, Some(0), "two healthy of two");
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("not contacted (--force)")));
}

#[test]
fn the_last_member_and_a_removal_below_quorum_are_refused() {
    let mut one = seed();
    one.hosts
        .retain(|h| h.name != "k8s-master-2" && h.name != "k8s-master-3");
    let (facts, state) = live(&one);
    let refused = messages(&remove(&one, &facts, &state, "k8s-master-1", false).unwrap_err());
    assert!(
        refused[0].contains("holds the last etcd member"),
        "{refused:?}"
    );
    // Three members, one never started (an interrupted join): removing a healthy one
    // leaves one healthy of two.
    let c = seed();
    let (mut facts, state) = live(&c);
    for f in facts.values_mut() {
        if let Some(v) = f.etcd.as_mut() {
            v.members[2].healthy = false;
            v.members[2].name.clear();
        }
    }
    let refused = messages(&remove(&c, &facts, &state, "k8s-master-2", false).unwrap_err());
    assert!(refused[0].contains("a3 (never started)"), "{refused:?}");
}

#[test]
fn a_name_nobody_knows_and_a_load_balancer_are_refused() {
    let c = seed();
    let (facts, state) = live(&c);
    let refused = messages(&remove(&c, &facts, &state, "k8s-worker-9", false).unwrap_err());
    assert!(refused[0].contains("no such node"), "{refused:?}");
    let refused = messages(&remove(&c, &facts, &state, "load-balancer", false).unwrap_err());
    assert!(refused[0].contains("load balancer only"), "{refused:?}");
}

#[test]
fn a_node_the_spec_no_longer_lists_is_removed_through_the_api_only() {
    let c = seed();
    let (facts, state) = live(&c);
    let mut spec = c.clone();
    spec.hosts.retain(|h| h.name != "k8s-master-3");
    let mut rest = facts.clone();
    rest.remove("k8s-master-3");
    let r = remove(&spec, &rest, &state, "k8s-master-3", false).unwrap();
    assert!(r.control_plane && !r.in_spec);
    let s = steps(&r);
    assert!(s.contains(&"remove etcd member a3 (k8s-master-3) through k8s-master-1".to_string()));
    assert!(!s.iter().any(|s| s.contains("kubeadm reset")), "{s:?}");
    assert!(
        s.iter().any(|s| s.contains("haproxy")),
        "the load balancer still has its server: {s:?}"
    );
    // What `plan` says of that spec: both are reported, neither is removed.
    let plan = run(&spec, &rest, Some(&state)).unwrap();
    let warnings = messages(&plan.warnings);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("k8s-master-3: a Node not in the spec")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "k8s-master-3: etcd member a3 (https://192.0.2.12:2380) is not in the spec"
        )),
        "{warnings:?}"
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| s.host.as_deref() != Some("k8s-master-3")),
        "nothing is removed by apply"
    );
}

#[test]
fn a_control_plane_back_with_the_data_of_a_removed_member_is_refused_until_reset() {
    let c = seed();
    let (mut facts, mut state) = live(&c);
    // k8s-master-3's member was removed (`node remove --force`) and its Node deleted; the
    // host comes back with its files and etcd data, its etcd refusing to start.
    for f in facts.values_mut() {
        if let Some(v) = f.etcd.as_mut() {
            v.members.retain(|m| m.name != "k8s-master-3");
        }
    }
    facts.get_mut("k8s-master-3").unwrap().etcd = None;
    state.nodes.remove("k8s-master-3");
    let refused = messages(&run(&c, &facts, Some(&state)).unwrap_err());
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("k8s-master-3: it holds etcd data, but etcd (as k8s-master-1 sees it) has no member for https://192.0.2.12:2380")
            && refused[0].contains("--replace k8s-master-3"),
        "{refused:?}"
    );
    let plan = run_replacing(&c, &facts, Some(&state), &["k8s-master-3"]).unwrap();
    let joins: Vec<String> = super::lines(&plan)
        .into_iter()
        .filter(|l| l.contains("k8s-master-3"))
        .collect();
    // Its kubelet, still running on its old kubelet.conf, may register the Node again
    // before the reset stops it.
    assert_eq!(
        joins,
        [
            "join control planes k8s-master-3: kubeadm reset -f (an earlier init or join did not finish)",
            "join control planes k8s-master-3: delete Node k8s-master-3 from the API, if its earlier kubelet registered it (kubeadm join refuses a Ready Node of its name)",
            "join control planes k8s-master-3: kubeadm join as a control plane (adds an etcd member)",
        ]
    );
}

#[test]
fn growing_to_an_even_number_of_control_planes_is_a_warning() {
    let c = cluster_from(|s| {
        s.replace(
            "    - name: k8s-worker-1\n",
            "    - name: k8s-master-4\n      address: 192.0.2.13\n      roles: [controlPlane]\n    - name: k8s-worker-1\n",
        )
    });
    let mut three = c.clone();
    three.hosts.retain(|h| h.name != "k8s-master-4");
    let (mut facts, state) = live(&three);
    etcd_of(&three, &mut facts);
    facts.insert(
        "k8s-master-4".into(),
        crate::facts::parse(crate::facts::recorded::FRESH),
    );
    let plan = run(&c, &facts, Some(&state)).unwrap();
    let warnings = messages(&plan.warnings);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("grows etcd to 4 members, an even number")),
        "{warnings:?}"
    );
    // Adding the control plane re-renders HAProxy on the load balancer in the same apply.
    let lb: Vec<String> = super::lines(&plan)
        .into_iter()
        .filter(|l| l.contains(" load-balancer: "))
        .collect();
    assert_eq!(
        lb,
        [
            "prepare load-balancer: update /etc/haproxy/haproxy.cfg (mode 0644)",
            "prepare load-balancer: reload haproxy",
        ]
    );
}

#[test]
fn growing_from_one_control_plane_to_three_joins_them_one_at_a_time_through_the_first() {
    let c = seed();
    let mut one = c.clone();
    one.hosts
        .retain(|h| !matches!(h.name.as_str(), "k8s-master-2" | "k8s-master-3"));
    let (mut facts, state) = live(&one);
    etcd_of(&one, &mut facts);
    for fresh in ["k8s-master-2", "k8s-master-3"] {
        facts.insert(
            fresh.into(),
            crate::facts::parse(crate::facts::recorded::FRESH),
        );
    }
    let plan = run(&c, &facts, Some(&state)).unwrap();
    let warnings = messages(&plan.warnings);
    assert!(
        !warnings.iter().any(|w| w.contains("an even number")),
        "three members are odd: {warnings:?}"
    );
    let lines = super::lines(&plan);
    let joins: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("join ") || l.contains("kubeadm join"))
        .collect();
    // Credentials minted through the one member there is; then each joins in turn (the
    // join phase runs control planes one at a time, each behind its etcd gate).
    assert_eq!(
        joins,
        [
            "join credentials k8s-master-1: make a bootstrap token and upload the control-plane certificates (revoked when the run ends)",
            "join control planes k8s-master-2: kubeadm join as a control plane (adds an etcd member)",
            "join control planes k8s-master-3: kubeadm join as a control plane (adds an etcd member)",
        ]
    );
    assert!(
        lines.contains(
            &"prepare load-balancer: update /etc/haproxy/haproxy.cfg (mode 0644)".to_string()
        ),
        "HAProxy learns of both in the same apply: {lines:?}"
    );
}
