//! The restore's etcd steps against the real etcd and etcdctl (Debian's, as on the lab
//! hosts): a snapshot's status parses, the restore script brings it back as a one-member
//! cluster with the new name, peer URL and token, and every key is there. Skips with a
//! message when etcd is not installed (outside CI).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubeha::dr::archive::SnapshotStatus;
use kubeha::dr::{member_status, steps};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An etcd on loopback, killed when dropped.
struct Etcd {
    child: Child,
    client: String,
}

impl Etcd {
    /// Starts etcd on `data` (a restored folder keeps its own membership).
    fn start(dir: &Path, name: &str, data: &Path, peer_port: u16) -> Self {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", name, "--data-dir"])
            .arg(data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let etcd = Etcd { child, client };
        let started = Instant::now();
        while !etcd.ctl(&["endpoint", "health"]).0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "etcd did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    fn ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.client])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_snapshot_restores_as_a_new_one_member_cluster() {
    if Command::new("etcd").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd is required in CI"
        );
        eprintln!("SKIPPED: etcd is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.db");
    let old_id = {
        let etcd = Etcd::start(dir.path(), "old", &dir.path().join("old"), free_port());
        for i in 0..50 {
            assert!(
                etcd.ctl(&["put", &format!("/registry/k{i}"), &format!("v{i}")])
                    .0
            );
        }
        let (ok, status) = etcd.ctl(&["endpoint", "status", "-w", "json"]);
        assert!(ok);
        let member = member_status(&status).expect("endpoint status parses");
        assert!(member.leader, "a one-member cluster leads itself");
        assert!(member.version.starts_with("3."), "{}", member.version);
        assert!(
            etcd.ctl(&["snapshot", "save", snapshot.to_str().unwrap()])
                .0
        );
        etcd.ctl(&["member", "list", "-w", "json"]).1
    };
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snapshot)
        .output()
        .unwrap();
    let status = SnapshotStatus::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(
        status.total_keys >= 50 && status.revision >= 51,
        "{status:?}"
    );

    let data = dir.path().join("restored");
    let peer_port = free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let script = steps::restore_script(
        snapshot.to_str().unwrap(),
        data.to_str().unwrap(),
        "cp-2",
        &peer,
        "kubeha-restore-test",
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let etcd = Etcd::start(dir.path(), "cp-2", &data, peer_port);
    let (_, members) = etcd.ctl(&["member", "list", "-w", "json"]);
    let members: serde_json::Value = serde_json::from_str(&members).unwrap();
    let list = members["members"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{members}");
    assert_eq!(list[0]["name"], "cp-2");
    assert_eq!(list[0]["peerURLs"][0], peer.as_str());
    let old: serde_json::Value = serde_json::from_str(&old_id).unwrap();
    assert_ne!(
        old["header"]["cluster_id"], members["header"]["cluster_id"],
        "a new cluster token makes a new cluster"
    );
    for i in [0, 25, 49] {
        let (ok, value) = etcd.ctl(&["get", &format!("/registry/k{i}"), "--print-value-only"]);
        assert!(ok);
        assert_eq!(value.trim(), format!("v{i}"));
    }
}
