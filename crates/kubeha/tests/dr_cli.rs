//! `restore` refuses a corrupted, foreign or unconfirmed archive before it contacts any
//! host: the spec's hosts are loopback addresses, and the run folder every connection
//! logs into is never made.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{kubeha, stderr, stdout};
use kubeha::dr::archive::{
    About, Archive, SnapshotStatus, CLUSTER_CONFIGURATION, PKI_PREFIX, SHARED_PKI, SNAPSHOT,
};

fn archive(cluster: &str) -> Archive {
    let mut files = BTreeMap::new();
    files.insert(SNAPSHOT.to_string(), vec![7u8; 4096]);
    files.insert(
        CLUSTER_CONFIGURATION.to_string(),
        b"kind: ClusterConfiguration\n".to_vec(),
    );
    for f in SHARED_PKI {
        files.insert(format!("{PKI_PREFIX}{f}"), f.as_bytes().to_vec());
    }
    Archive::new(
        About {
            cluster: cluster.into(),
            kubernetes_version: "v1.31.0".into(),
            etcd_version: "3.4.23".into(),
            source_host: "k8s-master-1".into(),
            created: 1,
            snapshot: SnapshotStatus {
                hash: 1,
                revision: 2,
                total_keys: 3,
                total_size: 4096,
            },
        },
        files,
    )
    .unwrap()
}

/// Runs `restore` with `args` added; asserts exit 2 with `why` and no host contacted.
fn refused(dir: &Path, archive: &[u8], extra: &[&str], why: &str) {
    refused_with_env(dir, archive, extra, &[], why)
}

/// [`refused`] with environment variables set for kubeha.
fn refused_with_env(dir: &Path, archive: &[u8], extra: &[&str], env: &[(&str, &str)], why: &str) {
    let path = dir.join("backup.tar");
    std::fs::write(&path, archive).unwrap();
    let logs = dir.join("run");
    let (p, l) = (path.display().to_string(), logs.display().to_string());
    let mut args = vec![
        "restore",
        "-f",
        "cluster.yaml",
        "--from",
        &p,
        "--log-dir",
        &l,
    ];
    args.extend(extra);
    let out = common::kubeha_with_env(&args, dir, env);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
    assert!(!logs.exists(), "a host was contacted");
}

#[test]
fn bad_archives_are_refused_before_any_host() {
    let dir = tempfile::tempdir().unwrap();
    let spec = stdout(&kubeha(&["init", "--out", "-"], dir.path())).replace("192.0.2.", "127.0.0.");
    std::fs::write(dir.path().join("cluster.yaml"), spec).unwrap();

    let good = archive("k8s-ha").to_tar();
    let at = good.windows(64).position(|w| w == [7u8; 64]).unwrap();
    let mut corrupted = good.clone();
    corrupted[at + 10] ^= 1;
    refused(dir.path(), &corrupted, &["--yes", "--force"], "corrupted");
    refused(
        dir.path(),
        &good[..good.len() / 3],
        &["--yes"],
        "backup.tar",
    );
    refused(
        dir.path(),
        &archive("elsewhere").to_tar(),
        &["--yes"],
        "cluster `elsewhere`, not `k8s-ha`",
    );
    // A sound archive still needs --yes without a terminal.
    refused(dir.path(), &good, &[], "pass --yes");
}

#[test]
fn reset_needs_yes_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let spec = stdout(&kubeha(&["init", "--out", "-"], dir.path())).replace("192.0.2.", "127.0.0.");
    std::fs::write(dir.path().join("cluster.yaml"), spec).unwrap();
    let out = kubeha(
        &["reset", "-f", "cluster.yaml", "--log-dir", "run"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pass --yes"));
    assert!(!dir.path().join("run").exists());
}

#[test]
fn bad_backup_options_are_refused_before_any_host() {
    let dir = tempfile::tempdir().unwrap();
    common::write_unreachable_starter(dir.path());
    private_file(&dir.path().join("p.txt"), "a passphrase\n");
    private_file(&dir.path().join("empty.txt"), "\n");
    std::fs::write(dir.path().join("open.txt"), "a passphrase\n").unwrap();
    chmod(&dir.path().join("open.txt"), 0o644);
    for (args, why) in [
        (
            &["--schedule", "daily\nExecStart=/bin/sh"][..],
            "systemd calendar",
        ),
        (&["--schedule", "daily", "--keep", "0"][..], "--keep"),
        (&["--keep", "3"][..], "--schedule"),
        (
            &["--schedule", "daily", "--unschedule"][..],
            "cannot be used with",
        ),
        (&["--encrypt-to", "age1nope"][..], "--encrypt-to"),
        (
            &[
                "--encrypt-to",
                "age1nope",
                "--passphrase-env",
                "KUBEHA_TEST_PASSPHRASE",
            ][..],
            "cannot be used with",
        ),
        (
            &[
                "--passphrase-file",
                "p.txt",
                "--passphrase-env",
                "KUBEHA_TEST_PASSPHRASE",
            ][..],
            "cannot be used with",
        ),
        (&["--passphrase-file", "open.txt"][..], "chmod 600"),
        (&["--passphrase-file", "missing.txt"][..], "missing.txt"),
        (
            &["--passphrase-file", "empty.txt"][..],
            "the passphrase is empty",
        ),
        (
            &["--passphrase-env", "KUBEHA_TEST_UNSET"][..],
            "no such environment variable",
        ),
    ] {
        let mut all = vec!["backup", "-f", "cluster.yaml", "--log-dir", "run"];
        all.extend(args);
        let out = kubeha(&all, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        assert!(
            !dir.path().join("run").exists(),
            "{args:?} contacted a host"
        );
    }
}

#[test]
fn an_encrypted_archive_opens_only_with_its_identity() {
    use age::secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    common::write_unreachable_starter(dir.path());
    let key = |name: &str| {
        let id = age::x25519::Identity::generate();
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
        (path.display().to_string(), id.to_public())
    };
    let (mine, me) = key("mine.txt");
    let (other, _) = key("other.txt");
    let sealed = kubeha::dr::encrypt::encrypt(
        &archive("k8s-ha").to_tar(),
        &kubeha::dr::encrypt::Sealing::Recipients(vec![me]),
    )
    .unwrap();
    refused(dir.path(), &sealed, &["--yes"], "pass --identity");
    refused(
        dir.path(),
        &sealed,
        &["--yes", "--identity", &other],
        "cannot be opened with this identity",
    );
    refused(
        dir.path(),
        &sealed,
        &["--yes", "--identity", "/dev/null"],
        "holds no age identity",
    );
    // Opened and checked: all that stops it now is the missing --yes.
    refused(dir.path(), &sealed, &["--identity", &mine], "pass --yes");
    let mut damaged = sealed.clone();
    let n = damaged.len();
    damaged[n - 30] ^= 1;
    refused(
        dir.path(),
        &damaged,
        &["--yes", "--identity", &mine],
        "backup.tar",
    );
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `text` into a 0600 file.
fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    chmod(path, 0o600);
}

#[test]
fn a_passphrase_archive_opens_only_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    common::write_unreachable_starter(dir.path());
    let right = "correct horse battery staple";
    let sealed = kubeha::dr::encrypt::encrypt(
        &archive("k8s-ha").to_tar(),
        &kubeha::dr::encrypt::Sealing::Passphrase(right.to_string().into()),
    )
    .unwrap();
    let file = dir.path().join("passphrase.txt");
    private_file(&file, &format!("{right}\n"));
    let file = file.display().to_string();
    let env = [("BACKUP_PASSPHRASE", right)];
    // Opened and checked, from the file and from the variable: only --yes is missing.
    refused(
        dir.path(),
        &sealed,
        &["--passphrase-file", &file],
        "pass --yes",
    );
    refused_with_env(
        dir.path(),
        &sealed,
        &["--passphrase-env", "BACKUP_PASSPHRASE"],
        &env,
        "pass --yes",
    );
    let wrong = [("BACKUP_PASSPHRASE", "correct horse battery stapler")];
    refused_with_env(
        dir.path(),
        &sealed,
        &["--yes", "--passphrase-env", "BACKUP_PASSPHRASE"],
        &wrong,
        "cannot be opened with this passphrase",
    );
    refused(dir.path(), &sealed, &["--yes"], "--passphrase-file FILE");
    let (key, _) = {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let path = dir.path().join("key.txt");
        std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
        (path.display().to_string(), id.to_public())
    };
    refused(
        dir.path(),
        &sealed,
        &["--yes", "--identity", &key],
        "is encrypted with a passphrase",
    );
    chmod(Path::new(&file), 0o640);
    refused(
        dir.path(),
        &sealed,
        &["--yes", "--passphrase-file", &file],
        "chmod 600",
    );
    // The passphrase is in no message, whatever happened.
    let out = common::kubeha_with_env(
        &[
            "restore",
            "-f",
            "cluster.yaml",
            "--from",
            "/dev/null",
            "--passphrase-env",
            "BACKUP_PASSPHRASE",
        ],
        dir.path(),
        &wrong,
    );
    assert!(!stderr(&out).contains("correct horse"), "{}", stderr(&out));
}
