//! Disaster recovery in the lab: the seed cluster is backed up, loses etcd and the PKI on
//! every control plane, and `kubeha restore` brings it back with the same data, the same
//! service-account tokens and the workers never rejoining. Bad archives are refused first.
//!
//! The first loss is simulated over SSH on the same containers (kubelet stopped, etcd and
//! the control plane killed, /var/lib/etcd and /etc/kubernetes/pki deleted on all three);
//! the second replaces all three with fresh containers at new addresses. Needs Docker; skipped with a message only when Docker is
//! absent and CI is not set.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{kubeha, stderr, stdout};
#[path = "common/lab.rs"]
mod lab;
use kubeha::dr::archive::{Archive, SNAPSHOT};
use lab::{assert_no_changes, docker_available, last_json, Probe, SeedLab};

const CONTROL_PLANES: [&str; 3] = ["cp-1", "cp-2", "cp-3"];
const WORKERS: [&str; 2] = ["worker-1", "worker-2"];
const CONFIGMAPS: usize = 200;

/// The seed lab, taken down however the test ends.
struct Lab {
    seed: SeedLab,
}

const NAME: &str = "e2e-dr";

impl Lab {
    fn up() -> Self {
        Lab {
            seed: SeedLab::up(NAME, &["1.31.0"]),
        }
    }

    fn spec(&self) -> String {
        self.seed.spec()
    }

    /// `sh -c script` as root on `host`.
    fn sh(&self, host: &str, script: &str) -> Output {
        let state = self.seed.state.display().to_string();
        kubeha(
            &[
                "lab",
                "--name",
                NAME,
                "--state-dir",
                &state,
                "ssh",
                host,
                "--",
                "sudo",
                "sh",
                "-c",
                script,
            ],
            Path::new("."),
        )
    }

    fn ok(&self, host: &str, script: &str) -> String {
        let out = self.sh(host, script);
        assert!(
            out.status.success(),
            "{host}: {script}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.seed.kubeconfig()
    }

    /// This machine's kubectl through the endpoint with the operator's kubeconfig (the
    /// lab hosts' Debian kubectl predates `create token` and `auth whoami`).
    fn kubectl(&self, args: &[&str], input: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    fn kubectl_ok(&self, args: &[&str], input: Option<&str>) -> String {
        let out = self.kubectl(args, input);
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// `name=uid` of every proof ConfigMap, sorted.
    fn configmap_uids(&self) -> Vec<String> {
        let text = self.kubectl_ok(
            &[
                "get",
                "configmaps",
                "-l",
                "kubeha-dr=proof",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{\"\\n\"}{end}",
            ],
            None,
        );
        let mut uids: Vec<String> = text.lines().map(str::to_string).collect();
        uids.sort();
        uids
    }

    /// What shows a worker did not rejoin: its kubelet process and its kubeconfig.
    fn worker_identity(&self, worker: &str) -> String {
        self.ok(
            worker,
            "systemctl show -p MainPID --value kubelet; sha256sum /etc/kubernetes/kubelet.conf",
        )
    }

    /// Who the API says `token` is: with no client certificate beside it, which the
    /// API would authenticate first.
    fn whoami(&self, token: &str) -> String {
        let out = Command::new("kubectl")
            .args(["--kubeconfig", "/dev/null", "--insecure-skip-tls-verify"])
            .args([
                "--server",
                "https://load-balancer.local:6443",
                "--token",
                token,
            ])
            .args([
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "whoami: {}", stderr(&out));
        stdout(&out)
    }
}

/// A restore from `archive` is refused with exit 2 before any host is touched: its
/// run folder (where every connection's log would go) is never made.
fn assert_refused_untouched(spec: &str, archive: &Path, why: &str, scratch: &Path) {
    let logs = scratch.join(format!("refused-{why}"));
    let (archive_arg, log_arg) = (archive.display().to_string(), logs.display().to_string());
    let out = kubeha(
        &[
            "restore",
            "-f",
            spec,
            "--from",
            &archive_arg,
            "--yes",
            "--force",
            "--log-dir",
            &log_arg,
        ],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(2), "{why}: {}", stderr(&out));
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
    assert!(!logs.exists(), "a host was contacted for a {why} archive");
}

/// `kubeha backup -f SPEC --out DIR EXTRA…`, which must succeed; the archive it wrote.
fn backup(spec: &str, dir: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["backup", "-f", spec, "--out", dir, "-o", "json"];
    args.extend_from_slice(extra);
    let out = kubeha(&args, Path::new("."));
    assert!(
        out.status.success(),
        "backup {extra:?} failed:\n{}",
        stderr(&out)
    );
    PathBuf::from(last_json(&out)["path"].as_str().unwrap())
}

#[test]
fn backup_restore_renew_and_reset_the_seed_cluster() {
    if !docker_available() {
        return;
    }
    let lab = Lab::up();
    let spec = lab.spec();
    let out = kubeha(&["apply", "-f", &spec, "--yes"], Path::new("."));
    assert!(out.status.success(), "apply failed:\n{}", stderr(&out));

    // The data and credentials that must survive.
    let manifests: String = (1..=CONFIGMAPS)
        .map(|i| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dr-{i:03}\n  labels:\n    kubeha-dr: proof\ndata:\n  i: \"{i}\"\n---\n")
        })
        .collect();
    lab.kubectl_ok(&["create", "-f", "-"], Some(&manifests));
    let uids = lab.configmap_uids();
    assert_eq!(uids.len(), CONFIGMAPS);
    // The stand-in's controller manager makes no `default` ServiceAccount: one of our own.
    lab.kubectl_ok(&["create", "serviceaccount", "dr-proof"], None);
    let token = lab
        .kubectl_ok(&["create", "token", "dr-proof", "--duration=24h"], None)
        .trim()
        .to_string();
    let sa = "system:serviceaccount:default:dr-proof";
    assert_eq!(lab.whoami(&token), sa);
    let workers: Vec<String> = WORKERS.iter().map(|w| lab.worker_identity(w)).collect();

    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("backups");
    let dir_arg = dir.display().to_string();
    // An empty file is no archive.
    let out = kubeha(
        &["restore", "-f", &spec, "--from", "/dev/null", "--yes"],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let started = Instant::now();
    let path = backup(&spec, &dir_arg, &[]);
    let backup_seconds = started.elapsed().as_secs_f64();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the archive is private");
    let bytes = std::fs::read(&path).unwrap();
    let archive = Archive::from_tar(&bytes).unwrap();
    assert!(archive.manifest.about.snapshot.total_keys as usize > CONFIGMAPS);
    assert_no_key_in_logs(&lab.seed.state.join(".kubeha"));
    for cp in CONTROL_PLANES {
        let left = lab.ok(cp, "ls -A /var/lib/kubeha/dr 2>/dev/null || true");
        assert_eq!(left.trim(), "", "{cp} kept a copy of the snapshot");
    }
    eprintln!(
        "backup: {} bytes in {backup_seconds:.1}s from {} (revision {}, {} keys)",
        bytes.len(),
        archive.manifest.about.source_host,
        archive.manifest.about.snapshot.revision,
        archive.manifest.about.snapshot.total_keys
    );

    // The same backup encrypted to an age recipient: the disaster restore below opens it
    // with the identity.
    let identity = age::x25519::Identity::generate();
    let key = scratch.path().join("backup-key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    }
    let sealed = backup(
        &spec,
        &dir_arg,
        &["--encrypt-to", &identity.to_public().to_string()],
    );
    assert!(
        sealed.to_str().unwrap().ends_with(".tar.age"),
        "{}",
        sealed.display()
    );
    let mode = std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the encrypted archive is private too");
    let sealed_bytes = std::fs::read(&sealed).unwrap();
    assert!(kubeha::dr::encrypt::is_encrypted(&sealed_bytes));
    assert!(
        Archive::from_tar(&sealed_bytes).is_err(),
        "no tar in the clear"
    );

    // A restore while etcd has quorum would roll back live data.
    let out = restore(&spec, &path);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("quorum"), "{}", stderr(&out));

    // With a passphrase from a 0600 file: restore opens and checks that archive too, and
    // gets as far as the same refusal; a wrong passphrase is refused before any host.
    let passphrase = scratch.path().join("passphrase.txt");
    std::fs::write(&passphrase, "a lab passphrase\n").unwrap();
    std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
    let passphrase = passphrase.display().to_string();
    let locked = backup(&spec, &dir_arg, &["--passphrase-file", &passphrase]);
    let mode = std::fs::metadata(&locked).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(kubeha::dr::encrypt::is_encrypted(
        &std::fs::read(&locked).unwrap()
    ));
    let out = restore_with(&spec, &locked, &["--passphrase-file", &passphrase]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("quorum"), "{}", stderr(&out));
    let from = locked.display().to_string();
    let out = common::kubeha_with_env(
        &[
            "restore",
            "-f",
            &spec,
            "--from",
            &from,
            "--yes",
            "--passphrase-env",
            "DR_PASSPHRASE",
        ],
        Path::new("."),
        &[("DR_PASSPHRASE", "not the lab passphrase")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be opened with this passphrase"),
        "{}",
        stderr(&out)
    );

    // A flipped byte in the snapshot, and a well-formed backup of another cluster.
    let offset = tar::Archive::new(bytes.as_slice())
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_str() == Some(SNAPSHOT))
        .map(|e| e.raw_file_position() as usize)
        .unwrap();
    let mut corrupted = bytes.clone();
    corrupted[offset + 100] ^= 0x20;
    let corrupted_path = scratch.path().join("corrupted.tar");
    std::fs::write(&corrupted_path, corrupted).unwrap();
    assert_refused_untouched(&spec, &corrupted_path, "corrupted", scratch.path());
    let mut foreign = archive.clone();
    foreign.manifest.about.cluster = "elsewhere".into();
    let foreign_path = scratch.path().join("foreign.tar");
    std::fs::write(&foreign_path, foreign.to_tar()).unwrap();
    assert_refused_untouched(&spec, &foreign_path, "elsewhere", scratch.path());

    // Every control plane loses etcd and its PKI.
    for cp in CONTROL_PLANES {
        lab.ok(
            cp,
            "systemctl stop kubelet; pkill -KILL -x etcd; pkill -KILL -x kube-apiserver; \
             rm -rf /var/lib/etcd /etc/kubernetes/pki; sleep 1; ! pgrep -x etcd",
        );
    }
    assert!(!lab
        .kubectl(&["get", "--raw", "/readyz"], None)
        .status
        .success());

    let started = Instant::now();
    let key_arg = key.display().to_string();
    let out = restore_with(&spec, &sealed, &["--identity", &key_arg]);
    assert!(out.status.success(), "restore failed:\n{}", stderr(&out));
    let restore_seconds = started.elapsed().as_secs_f64();
    eprintln!("restore took {restore_seconds:.0}s\n{}", stderr(&out));

    assert_eq!(lab.configmap_uids(), uids, "the same ConfigMaps, same UIDs");
    assert_eq!(lab.whoami(&token), sa, "the old token authenticates");
    for (w, before) in WORKERS.iter().zip(&workers) {
        assert_eq!(&lab.worker_identity(w), before, "{w} rejoined or restarted");
    }
    let status = wait_healthy(&spec);
    let mut members: Vec<&str> = status["etcd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    members.sort();
    assert_eq!(members, CONTROL_PLANES);
    assert_no_changes(&spec);
    eprintln!(
        "disaster recovery: backup {} bytes in {backup_seconds:.1}s; restore {restore_seconds:.0}s",
        bytes.len()
    );

    // Renewal: every control plane's apiserver certificate ends later, and the API stays
    // up through the endpoint: each control plane is out of HAProxy while it restarts.
    let before = apiserver_not_after(&spec);
    let probe = Probe::start();
    let started = Instant::now();
    let out = kubeha(
        &["certs", "renew", "-f", &spec, "--yes", "-o", "json"],
        Path::new("."),
    );
    assert!(
        out.status.success(),
        "certs renew failed:\n{}",
        stderr(&out)
    );
    let renew_seconds = started.elapsed().as_secs_f64();
    let (ok, all, _) = probe.stop();
    let report = last_json(&out);
    let after = apiserver_not_after(&spec);
    assert_eq!(before.len(), 3, "{before:?}");
    for (host, end) in &before {
        assert!(
            after[host] > *end,
            "{host}: notAfter did not move: {before:?} {after:?}"
        );
    }
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for cp in CONTROL_PLANES {
        assert!(
            steps.contains(
                &format!("{cp}: back into HAProxy on lb-1; wait until each reports it UP").as_str()
            ),
            "{steps:?}"
        );
    }
    let own = &report["availability"];
    eprintln!(
        "certs renew took {renew_seconds:.0}s; API answered {ok}/{all} of this test's probes ({:.2} %); \
         kubeha measured {}/{} ({:.2} %, longest outage {} ms)",
        ok as f64 * 100.0 / all as f64,
        own["requests"].as_u64().unwrap() - own["failures"].as_u64().unwrap(),
        own["requests"],
        own["success_ratio"].as_f64().unwrap() * 100.0,
        own["longest_outage_ms"]
    );
    assert!(all > 100, "the probe ran through the renewal: {all}");
    assert!(
        ok as f64 >= 0.999 * all as f64,
        "the test's probe: {ok}/{all} answered"
    );
    assert!(own["requests"].as_u64().unwrap() > 100, "{own}");
    assert!(own["success_ratio"].as_f64().unwrap() >= 0.999, "{own}");
    wait_healthy(&spec);
    assert_no_changes(&spec);

    restore_onto_new_machines(&lab, &spec, &dir_arg, &uids, (&token, sa), &workers);

    extra_sans(&lab, &spec);

    scheduled_snapshots(&lab, &spec);

    // Reset leaves nothing of the cluster; a second reset has nothing to do.
    for round in ["first", "second"] {
        let out = kubeha(&["reset", "-f", &spec, "--yes"], Path::new("."));
        assert!(
            out.status.success(),
            "{round} reset failed:\n{}",
            stderr(&out)
        );
    }
    for host in CONTROL_PLANES.iter().chain(&WORKERS).chain(&["lb-1"]) {
        let left = lab.ok(
            host,
            "ls -d /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf /var/lib/etcd/member /etc/kubeha /etc/haproxy/haproxy.cfg \
             /etc/systemd/system/kubeha-etcd-backup.timer /usr/local/sbin/kubeha-etcd-backup 2>/dev/null || true; \
             grep -c 'BEGIN kubeha' /etc/hosts || true",
        );
        assert_eq!(left.trim(), "0", "{host} kept: {left}");
    }
}

/// The disaster on new machines: every control plane replaced by a fresh container (no
/// packages, no etcd, no PKI) at a new address, the spec following with the same names.
/// `restore` prepares them, restores the snapshot on one, signs its certificates for its
/// new address from the restored CAs and joins the others afresh: the data, the old
/// token and the workers are as before, and etcd and every apiserver are at the new
/// addresses, serving certificates for them.
fn restore_onto_new_machines(
    lab: &Lab,
    spec: &str,
    dir: &str,
    uids: &[String],
    (token, sa): (&str, &str),
    workers: &[String],
) {
    let archive = backup(spec, dir, &[]);
    let before = control_plane_addresses(&std::fs::read_to_string(spec).unwrap());
    let state = lab.seed.state.display().to_string();
    for cp in CONTROL_PLANES {
        let out = kubeha(
            &[
                "lab",
                "--name",
                NAME,
                "--state-dir",
                &state,
                "replace-host",
                cp,
                "--new-address",
            ],
            Path::new("."),
        );
        assert!(out.status.success(), "replace {cp}: {}", stderr(&out));
    }
    let after = control_plane_addresses(&std::fs::read_to_string(spec).unwrap());
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old, new, "{before:?} {after:?}");
    }
    assert!(!lab
        .kubectl(&["get", "--raw", "/readyz"], None)
        .status
        .success());

    let started = Instant::now();
    let out = restore(spec, &archive);
    assert!(
        out.status.success(),
        "restore onto new machines failed:\n{}",
        stderr(&out)
    );
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "restore onto new machines took {seconds:.0}s\n{}",
        stderr(&out)
    );

    assert_eq!(lab.configmap_uids(), uids, "the same ConfigMaps, same UIDs");
    assert_eq!(lab.whoami(token), sa, "the old token authenticates");
    for (w, before) in WORKERS.iter().zip(workers) {
        assert_eq!(&lab.worker_identity(w), before, "{w} rejoined or restarted");
    }
    let status = wait_healthy(spec);
    let mut members: Vec<(String, String)> = status["etcd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap().to_string();
            (name, m["peer_url"].as_str().unwrap().to_string())
        })
        .collect();
    members.sort();
    let want: Vec<(String, String)> = CONTROL_PLANES
        .iter()
        .zip(&after)
        .map(|(cp, a)| (cp.to_string(), format!("https://{a}:2380")))
        .collect();
    assert_eq!(members, want);
    // kubectl verifies each apiserver's certificate for its new address against the CA.
    for (cp, address) in CONTROL_PLANES.iter().zip(&after) {
        lab.kubectl_ok(
            &[
                "--server",
                &format!("https://{address}:6443"),
                "get",
                "--raw",
                "/readyz",
            ],
            None,
        );
        eprintln!("{cp} serves the API at {address}");
    }
    assert_no_changes(spec);
}

/// A name and an address added to the spec's `extraSANs` after init: `plan` shows each
/// control plane's certificate signed again with them, `apply` does it one control plane
/// at a time, and every apiserver then serves a certificate this machine's kubectl
/// accepts for both (verified against the cluster CA), after which `plan` has nothing
/// left. The wider spec is a second file beside the lab's, which stays as it was.
fn extra_sans(lab: &Lab, spec: &str) {
    const NAME: &str = "api.e2e-dr.test";
    const ADDRESS: &str = "10.99.0.9";
    let text = std::fs::read_to_string(spec).unwrap();
    let edited = text.replace(
        "    port: 6443\n",
        &format!("    port: 6443\n    extraSANs: [{NAME}, {ADDRESS}]\n"),
    );
    assert_ne!(edited, text, "the lab's spec has the endpoint's port line");
    let wider = Path::new(spec).with_file_name("cluster-extra-sans.yaml");
    std::fs::write(&wider, edited).unwrap();
    let wider = wider.display().to_string();
    let addresses = control_plane_addresses(&text);
    // Served for: kubectl's own TLS verification against the cluster CA, with the name
    // (or address) it is asked to see in the certificate.
    let serves = |address: &str, san: &str| {
        lab.kubectl(
            &[
                "--server",
                &format!("https://{address}:6443"),
                "--tls-server-name",
                san,
                "get",
                "--raw",
                "/readyz",
            ],
            None,
        )
        .status
        .success()
    };
    assert!(
        !serves(&addresses[0], NAME),
        "served before it was asked for"
    );

    let out = kubeha(&["plan", "-f", &wider, "-o", "json"], Path::new("."));
    assert!(out.status.success(), "plan: {}", stderr(&out));
    let plan = last_json(&out);
    let steps: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["host"].as_str().unwrap_or("cluster"),
                s["description"].as_str().unwrap()
            )
        })
        .collect();
    let mut want = vec![format!(
        "cluster set apiServer.certSANs in kube-system/kubeadm-config to [load-balancer.local, {NAME}, {ADDRESS}]"
    )];
    want.extend(CONTROL_PLANES.iter().map(|cp| format!(
        "{cp} regenerate the apiserver certificate from the cluster CA (SANs added: {ADDRESS}, {NAME}), restart its apiserver out of HAProxy on lb-1"
    )));
    assert_eq!(steps, want);

    let probe = Probe::start();
    let started = Instant::now();
    let out = kubeha(&["apply", "-f", &wider, "--yes"], Path::new("."));
    assert!(
        out.status.success(),
        "apply of the new SANs: {}",
        stderr(&out)
    );
    let seconds = started.elapsed().as_secs_f64();
    let (ok, all, longest) = probe.stop();
    eprintln!(
        "extra SANs: apply took {seconds:.0}s; API answered {ok}/{all} of this test's probes \
         ({:.2} %, longest outage {longest:?})",
        ok as f64 * 100.0 / all.max(1) as f64
    );
    for (cp, address) in CONTROL_PLANES.iter().zip(&addresses) {
        for san in [NAME, ADDRESS] {
            assert!(serves(address, san), "{cp} does not serve {san}");
        }
    }
    let config = lab.kubectl_ok(
        &[
            "-n",
            "kube-system",
            "get",
            "configmap",
            "kubeadm-config",
            "-o",
            "jsonpath={.data.ClusterConfiguration}",
        ],
        None,
    );
    assert!(
        config.contains(NAME) && config.contains(ADDRESS),
        "{config}"
    );
    wait_healthy(&wider);
    assert_no_changes(&wider);
}

/// The control planes' addresses, in [`CONTROL_PLANES`]' order, from the lab's spec.
fn control_plane_addresses(spec: &str) -> Vec<String> {
    CONTROL_PLANES
        .iter()
        .map(|cp| {
            let at = spec
                .find(&format!("- name: {cp}\n"))
                .expect("a control plane");
            spec[at..]
                .lines()
                .find_map(|l| l.trim().strip_prefix("address: "))
                .expect("its address")
                .trim_matches('"')
                .to_string()
        })
        .collect()
}

/// `backup --schedule`: a timer on every control plane; its service run by hand three
/// times with keep 2 leaves the two newest snapshots (0600 in a 0700 folder) that etcd's
/// own tool reads; `--list` shows them, `--unschedule` removes the timer and keeps them.
/// Scheduled again at the end, so that `reset` has a timer to remove.
fn scheduled_snapshots(lab: &Lab, spec: &str) {
    const DIR: &str = "/var/lib/kubeha/backups";
    let out = kubeha(
        &[
            "backup",
            "-f",
            spec,
            "--schedule",
            "daily",
            "--keep",
            "2",
            "-o",
            "json",
        ],
        Path::new("."),
    );
    assert!(out.status.success(), "backup --schedule: {}", stderr(&out));
    assert_eq!(
        last_json(&out)["scheduled"]["hosts"],
        serde_json::json!(CONTROL_PLANES)
    );
    let timer_state = "systemctl is-enabled kubeha-etcd-backup.timer; systemctl is-active kubeha-etcd-backup.timer; true";
    for cp in CONTROL_PLANES {
        assert_eq!(lab.ok(cp, timer_state), "enabled\nactive\n", "{cp}");
    }
    for _ in 0..3 {
        // Snapshots are named by the second.
        lab.ok(
            "cp-1",
            "systemctl start kubeha-etcd-backup.service && sleep 1.1",
        );
    }
    let modes = lab.ok("cp-1", &format!("stat -c '%a %n' {DIR} {DIR}/*"));
    let modes: Vec<&str> = modes.lines().collect();
    assert_eq!(modes.len(), 3, "keep 2 pruned the oldest: {modes:?}");
    assert_eq!(modes[0], format!("700 {DIR}"));
    for m in &modes[1..] {
        assert!(m.starts_with(&format!("600 {DIR}/etcd-")), "{modes:?}");
    }
    let newest = modes[2].split_once(' ').unwrap().1;
    let status = lab.ok(
        "cp-1",
        &format!(
            "if command -v etcdutl >/dev/null; then etcdutl snapshot status -w json {newest}; \
             else ETCDCTL_API=3 etcdctl snapshot status -w json {newest}; fi"
        ),
    );
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert!(
        status["totalKey"].as_u64().unwrap() > CONFIGMAPS as u64,
        "{status}"
    );

    let out = kubeha(
        &["backup", "-f", spec, "--list", "-o", "json"],
        Path::new("."),
    );
    assert!(out.status.success(), "backup --list: {}", stderr(&out));
    let listing = last_json(&out);
    for cp in listing["controlPlanes"].as_array().unwrap() {
        assert_eq!(cp["scheduled"], true, "{cp}");
        assert_eq!(cp["calendar"], "daily", "{cp}");
        let kept = cp["snapshots"].as_array().unwrap().len();
        assert_eq!(kept, if cp["host"] == "cp-1" { 2 } else { 0 }, "{cp}");
    }

    let out = kubeha(&["backup", "-f", spec, "--unschedule"], Path::new("."));
    assert!(
        out.status.success(),
        "backup --unschedule: {}",
        stderr(&out)
    );
    for cp in CONTROL_PLANES {
        let left = lab.ok(
            cp,
            "systemctl is-enabled kubeha-etcd-backup.timer 2>/dev/null; ls /etc/systemd/system/kubeha-etcd-backup.* 2>/dev/null; true",
        );
        assert!(
            !left.contains("enabled") && !left.contains("/etc/"),
            "{cp}: {left}"
        );
    }
    assert_eq!(
        lab.ok("cp-1", &format!("ls {DIR} | wc -l")).trim(),
        "2",
        "the snapshots stay"
    );
    let out = kubeha(
        &["backup", "-f", spec, "--schedule", "hourly"],
        Path::new("."),
    );
    assert!(
        out.status.success(),
        "backup --schedule hourly: {}",
        stderr(&out)
    );
}

/// `kubeha restore --yes` from `archive`.
fn restore(spec: &str, archive: &Path) -> Output {
    restore_with(spec, archive, &[])
}

fn restore_with(spec: &str, archive: &Path, extra: &[&str]) -> Output {
    let from = archive.display().to_string();
    let mut args = vec!["restore", "-f", spec, "--from", &from, "--yes"];
    args.extend(extra);
    kubeha(&args, Path::new("."))
}

/// No run log holds a key the backup read, as PEM or as the base64 `read_file` moves.
fn assert_no_key_in_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert_no_key_in_logs(&p);
        } else if p.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&p).unwrap();
            // PEM private keys, plain and as base64 from the file's start (certificates,
            // such as the CA the facts report, are public).
            for shape in [
                "PRIVATE KEY",
                "LS0tLS1CRUdJTiBSU0EgUFJJVkFU",
                "LS0tLS1CRUdJTiBQUklWQVRFIEtF",
                "LS0tLS1CRUdJTiBFQyBQUklWQVRF",
            ] {
                assert!(!text.contains(shape), "{} holds {shape}", p.display());
            }
        }
    }
}

/// `certs check`'s notAfter of each control plane's apiserver certificate.
fn apiserver_not_after(spec: &str) -> std::collections::BTreeMap<String, i64> {
    let out = kubeha(
        &["certs", "check", "-f", spec, "-o", "json"],
        Path::new("."),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = last_json(&out);
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["file"] == "/etc/kubernetes/pki/apiserver.crt")
        .map(|c| {
            assert!(c["days_left"].as_i64().unwrap() > 300, "{c}");
            (
                c["host"].as_str().unwrap().to_string(),
                c["not_after"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Polls `kubeha status` until every node is Ready and three etcd members are healthy
/// (at most 180 s); returns that status.
fn wait_healthy(spec: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let out = kubeha(&["status", "-f", spec, "-o", "json"], Path::new("."));
        let s = last_json(&out);
        let count = |list: &str, key: &str| {
            s[list]
                .as_array()
                .map_or(0, |a| a.iter().filter(|n| n[key] == true).count())
        };
        if (count("nodes", "ready"), count("etcd", "healthy")) == (5, 3) {
            return s;
        }
        assert!(
            started.elapsed().as_secs() < 180,
            "the cluster is not whole: {s:#}"
        );
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
}
