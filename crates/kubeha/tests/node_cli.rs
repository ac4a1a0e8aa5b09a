//! `node remove|replace` refuse bad input before contacting any host (exit 2, no run
//! folder made), and plan around hosts that do not answer. Every host of the spec is a
//! loopback address whose SSH port is closed.

mod common;

use std::path::Path;

use common::{kubeha, stderr};

fn unreachable_spec(dir: &Path) {
    common::write_unreachable_starter(dir);
}

fn runs(dir: &Path) -> bool {
    dir.join(".kubeha/k8s-ha/runs").exists()
}

#[test]
fn bad_names_load_balancers_and_unconfirmed_runs_touch_no_host() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_spec(dir.path());
    let cases: [(&[&str], &str); 5] = [
        (
            &["node", "remove", "load-balancer", "--yes"],
            "is a load balancer",
        ),
        (
            &["node", "remove", "Bad;name", "--yes"],
            "is not a node name",
        ),
        (&["node", "remove", "k8s-worker-1"], "pass --yes"),
        (
            &["node", "replace", "k8s-worker-1", "k8s-worker-9", "--yes"],
            "k8s-worker-9 is not in the spec",
        ),
        (
            &["node", "replace", "k8s-worker-1", "k8s-master-2", "--yes"],
            "different roles",
        ),
    ];
    for (args, why) in cases {
        let out = kubeha(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        assert!(!runs(dir.path()), "{args:?} contacted a host");
    }
}

#[test]
fn an_unreachable_node_needs_force_and_no_answer_from_the_api_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_spec(dir.path());
    let out = kubeha(&["node", "remove", "k8s-worker-1", "--yes"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("k8s-worker-1: cannot reach it (")
            && stderr(&out).contains("run again with `--force`"),
        "{}",
        stderr(&out)
    );
    // --force never connects to the node; without an API nothing can be drained.
    let out = kubeha(
        &["node", "remove", "k8s-worker-1", "--yes", "--force"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("[k8s-worker-1] connecting"), "{err}");
    assert!(err.contains("[k8s-worker-2] connecting"), "{err}");
    assert!(err.contains("the Kubernetes API did not answer"), "{err}");
    // A control plane: the quorum guard finds no healthy member and names who is down.
    let out = kubeha(
        &["node", "remove", "k8s-master-3", "--yes", "--force"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("quorum guard") && err.contains("unreachable: k8s-master-1 ("),
        "{err}"
    );
}
