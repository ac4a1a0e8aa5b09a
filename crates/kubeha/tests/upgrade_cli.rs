//! `upgrade` refuses bad input before it contacts any host: the spec's hosts are
//! loopback addresses, and the run folder every connection logs into is never made.

mod common;

use common::{kubeha, stderr};

#[test]
fn bad_upgrade_input_is_refused_before_any_host() {
    let dir = tempfile::tempdir().unwrap();
    common::write_unreachable_starter(dir.path());
    for (extra, why) in [
        (
            &["--to", "v1.40.0", "--yes"][..],
            "not a Kubernetes version kubeha installs",
        ),
        (
            &["--to", "1.32", "--yes"][..],
            "not a Kubernetes version kubeha installs",
        ),
        (
            &["--to", "v1.32.0", "--yes", "--max-unavailable", "0"][..],
            "--max-unavailable must be at least 1",
        ),
        (&["--to", "v1.32.0"][..], "pass --yes"),
    ] {
        let mut args = vec!["upgrade", "-f", "cluster.yaml", "--log-dir", "run"];
        args.extend(extra);
        let out = kubeha(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{extra:?}: {}", stderr(&out));
        assert!(!dir.path().join("run").exists(), "a host was contacted");
    }
}
