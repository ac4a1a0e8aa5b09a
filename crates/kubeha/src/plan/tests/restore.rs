//! What the restore's preparation of new machines asks of the planner: new control
//! planes (no kubeadm state at all) beside the old, still joined workers plan their
//! preparation without a conflict.

use super::*;

#[test]
fn new_control_planes_beside_old_workers_are_prepared() {
    let c = seed();
    let mut facts = converged(&c);
    for cp in ["k8s-master-1", "k8s-master-2", "k8s-master-3"] {
        facts.insert(cp.into(), parse(recorded::FRESH));
    }
    let plan = run(&c, &facts, None).unwrap();
    let text = lines(&plan);
    for cp in ["k8s-master-1", "k8s-master-2", "k8s-master-3"] {
        assert!(
            text.contains(&format!("prepare {cp}: turn swap off now and at boot")),
            "{text:#?}"
        );
        assert!(
            plan.phase(Phase::Prepare)
                .any(|s| s.host.as_deref() == Some(cp)
                    && matches!(&s.action, Action::Install { packages } if packages.iter().any(|p| p.name == "etcd-client"))),
            "{cp} gets etcdctl: {text:#?}"
        );
    }
    assert!(
        !plan.phase(Phase::Prepare).any(|s| s
            .host
            .as_deref()
            .is_some_and(|h| h.starts_with("k8s-worker"))),
        "the old workers are as the spec says: {text:#?}"
    );
}
