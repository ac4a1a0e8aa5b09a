//! The offline commands as a user runs them (`init`, `check`, `render`, `version`,
//! `completion`, `man`), and the stdout/stderr split of `-o` for the remote ones.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{kubeha, stderr, stdout};

#[test]
fn init_writes_a_spec_that_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeha(&["init"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kubeha(&["check", "-f", "cluster.yaml"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(
        "cluster k8s-ha is valid: 6 hosts (1 load balancer(s), 3 control plane(s), 2 worker(s)), Kubernetes v1.31.0, endpoint load-balancer.local:6443"
    ));
    assert!(stderr(&out).is_empty(), "the seed topology has no warnings");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), "mine").unwrap();
    let out = kubeha(&["init"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster.yaml")).unwrap(),
        "mine"
    );
    assert!(kubeha(&["init", "--force"], dir.path()).status.success());
    let out = kubeha(&["init", "--out", "-"], dir.path());
    assert!(stdout(&out).starts_with("# kubeha cluster spec"));
}

#[test]
fn warnings_do_not_fail_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = kubeha(&["init", "--out", "-"], dir.path());
    let two_cps = stdout(&spec).replace(
        "    - name: k8s-master-3\n      address: 192.0.2.12\n      roles: [controlPlane]\n",
        "",
    );
    std::fs::write(dir.path().join("c.yaml"), two_cps).unwrap();
    let out = kubeha(&["check", "-f", "c.yaml"], dir.path());
    assert!(out.status.success());
    assert!(stderr(&out).contains("warning: 2 control plane(s): etcd tolerates 0 failure(s)"));
    let out = kubeha(
        &["check", "-f", "c.yaml", "--warnings-as-errors"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let out = kubeha(&["check", "-f", "c.yaml", "-o", "json"], dir.path());
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["warnings"], 1);
    assert_eq!(doc["cluster"]["kubernetes"]["version"], "v1.31.0");
}

#[test]
fn missing_spec_file_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeha(&["check", "-f", "nope.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.yaml: error: cannot read the spec"));
}

#[test]
fn render_writes_every_file_with_modes_and_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    assert!(kubeha(&["init"], dir.path()).status.success());
    let out = kubeha(
        &["render", "-f", "cluster.yaml", "--out", "r", "-o", "json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let files = doc["files"].as_array().unwrap();
    let r = dir.path().join("r");
    for f in files {
        let path = r.join(f["file"].as_str().unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            format!("{mode:04o}"),
            f["mode"].as_str().unwrap(),
            "{}",
            path.display()
        );
    }
    let init =
        std::fs::read_to_string(r.join("hosts/k8s-master-1/etc/kubeha/kubeadm-init.yaml")).unwrap();
    assert!(init.contains("token: ${KUBEHA_BOOTSTRAP_TOKEN}"));
    assert!(init.contains("certificateKey: ${KUBEHA_CERTIFICATE_KEY}"));
    for expected in [
        "hosts/load-balancer/etc/haproxy/haproxy.cfg",
        "hosts/k8s-worker-2/etc/containerd/config.toml",
        "hosts/k8s-worker-2/etc/sysctl.d/k8s.conf",
        "hosts/k8s-worker-2/etc/modules-load.d/containerd.conf",
        "hosts/k8s-worker-2/etc/apt/sources.list.d/kubernetes.list",
        "hosts/k8s-master-3/etc/kubeha/kubeadm-join.yaml",
        "hosts/k8s-master-3/etc/hosts.kubeha-block",
        "runbook.sh",
    ] {
        assert!(r.join(expected).is_file(), "{expected} missing");
    }
    // A second render into the same folder replaces the first.
    let out = kubeha(&["render", "-f", "cluster.yaml", "--out", "r"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn render_refuses_invalid_specs_and_foreign_folders_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: kubeha.dev/v1alpha1\nkind: Cluster\n",
    )
    .unwrap();
    let out = kubeha(&["render", "-f", "bad.yaml", "--out", "r"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !dir.path().join("r").exists(),
        "nothing is written for an invalid spec"
    );

    assert!(kubeha(&["init"], dir.path()).status.success());
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep").unwrap();
    let out = kubeha(
        &["render", "-f", "cluster.yaml", "--out", "mine"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("was not written by `kubeha render`"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mine/notes.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn local_calico_manifest_is_rendered_with_the_pod_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "spec:\n  containers:\n    env:\n            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n";
    std::fs::write(dir.path().join("calico.yaml"), manifest).unwrap();
    let spec = stdout(&kubeha(&["init", "--out", "-"], dir.path()))
        .replace("# manifest: calico.yaml", "manifest: calico.yaml")
        .replace("podSubnet: 192.168.0.0/16", "podSubnet: 172.20.0.0/16");
    std::fs::write(dir.path().join("cluster.yaml"), spec).unwrap();
    let out = kubeha(&["render", "-f", "cluster.yaml", "--out", "r"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let calico = std::fs::read_to_string(dir.path().join("r/cluster/calico.yaml")).unwrap();
    assert!(calico.contains("- name: CALICO_IPV4POOL_CIDR\n              value: \"172.20.0.0/16\""));
    let runbook = std::fs::read_to_string(dir.path().join("r/runbook.sh")).unwrap();
    assert!(runbook.contains("manifest=cluster/calico.yaml"));
}

#[test]
fn version_names_the_commit_and_the_default_versions() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeha(&["version", "-o", "json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["defaultKubernetesVersion"], "v1.31.0");
    assert_eq!(doc["defaultCalicoVersion"], "v3.28.1");
    // This test runs from a git checkout, so the build found its commit.
    let commit = doc["gitCommit"].as_str().unwrap();
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
    let text = stdout(&kubeha(&["version"], dir.path()));
    let flag = stdout(&kubeha(&["--version"], dir.path()));
    assert_eq!(text, flag, "`--version` and `version` say the same");
    assert!(text.starts_with(&format!(
        "kubeha {} (commit {commit})\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("default Kubernetes v1.31.0\ndefault Calico v3.28.1\n"));
}

#[test]
fn yaml_output_is_the_same_document_as_json() {
    let dir = tempfile::tempdir().unwrap();
    assert!(kubeha(&["init"], dir.path()).status.success());
    let json = kubeha(&["check", "-o", "json"], dir.path());
    let yaml = kubeha(&["check", "-o", "yaml"], dir.path());
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    let from_json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&stdout(&yaml)).unwrap();
    assert_eq!(from_json, from_yaml);
    assert!(
        !stdout(&yaml).starts_with("---"),
        "one document, as kubectl prints it"
    );
}

/// The starter spec with every host on a loopback address whose SSH port is closed, so
/// the remote commands fail at once without a lab.
fn unreachable_spec(dir: &std::path::Path) {
    let spec = stdout(&kubeha(&["init", "--out", "-"], dir))
        .replace("192.0.2.", "127.0.0.")
        .replace("    port: 22\n", "    port: 1\n");
    std::fs::write(dir.join("cluster.yaml"), spec).unwrap();
}

#[test]
fn structured_output_keeps_progress_off_stdout() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_spec(dir.path());
    for format in ["json", "yaml"] {
        let out = kubeha(&["status", "-o", format], dir.path());
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stdout(&out),
            "",
            "no progress events on stdout with -o {format}"
        );
        assert!(
            stderr(&out).contains("[k8s-master-1] connecting"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("Connection refused"));
        assert!(
            stderr(&out).contains("every command's full output: ./.kubeha/k8s-ha/runs/"),
            "a failure says where the per-host logs are: {}",
            stderr(&out)
        );
    }
    // Asked for, events stream on stdout, one JSON object a line.
    let out = kubeha(&["apply", "--yes", "--events"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
        .collect();
    assert_eq!(
        events.len(),
        12,
        "connecting and failed for each of 6 hosts"
    );
    for e in &events {
        assert_eq!(e["event"], "progress");
        assert!(
            ["started", "failed"].contains(&e["status"].as_str().unwrap()),
            "{e}"
        );
    }
}

#[test]
fn bash_sources_the_completion_script_and_completes_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeha(&["completion", "bash"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.path().join("kubeha.bash"), &out.stdout).unwrap();
    // What bash does on `kubeha st<TAB>` and `kubeha status --out<TAB>`.
    let script = r#"
        source ./kubeha.bash
        complete -p kubeha
        COMP_WORDS=(kubeha st); COMP_CWORD=1; _kubeha kubeha st kubeha
        echo "commands: ${COMPREPLY[*]}"
        COMP_WORDS=(kubeha status --out); COMP_CWORD=2; _kubeha kubeha --out status
        echo "options: ${COMPREPLY[*]}"
    "#;
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("-F _kubeha kubeha"), "{text}");
    assert!(text.contains("commands: status"), "{text}");
    assert!(text.contains("options: --output"), "{text}");
    for shell in ["zsh", "fish", "powershell"] {
        let out = kubeha(&["completion", shell], dir.path());
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
}

#[test]
fn man_pages_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let page = stdout(&kubeha(&["man"], dir.path()));
    assert!(page.contains(".TH kubeha 1"), "{page}");
    let out = kubeha(&["man", "--out", "man"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "kubeha.1",
        "kubeha-apply.1",
        "kubeha-lab-up.1",
        "kubeha-verify.1",
    ] {
        let page = std::fs::read_to_string(dir.path().join("man").join(name)).unwrap();
        assert!(page.starts_with(".ie"), "{name} is roff");
    }
    // man(1) itself formats the page when it is installed.
    if let Ok(out) = std::process::Command::new("man")
        .args(["-l", "man/kubeha-apply.1"])
        .current_dir(dir.path())
        .env("MANPAGER", "cat")
        .output()
    {
        if out.status.success() {
            assert!(stdout(&out).contains("--yes"));
        }
    }
}

/// The repository's root (this crate is `crates/kubeha`).
fn repository() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bash(script: &str, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("bash")
        .args(["-c", script, "bash"])
        .args(args)
        .current_dir(dir)
        .env_remove("KUBEHA_CALICO_MANIFEST")
        .env_remove("KUBEHA_CALICO_DOWNLOAD")
        .output()
        .unwrap()
}

#[test]
fn a_fresh_clone_finds_a_given_calico_manifest_or_says_where_to_put_one() {
    // A clone of the committed repository, with no ../shared beside it.
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("kubeha");
    let out = std::process::Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repository())
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = tmp.path().join("my-calico.yaml");
    std::fs::write(&manifest, "kind: List\n").unwrap();
    let lookup = r#"source scripts/calico-manifest.sh && calico_manifest "$@""#;

    let out = bash(lookup, &clone, &[manifest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), manifest.to_str().unwrap());

    let out = bash(lookup, &clone, &["typo.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: the Calico manifest typo.yaml does not exist\n"
    );

    // Nothing given: try-lab.sh itself stops before building anything, in one line
    // that names every place the manifest may come from.
    let out = bash("./try-lab.sh", &clone, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let shared = tmp.path().join("shared/fixtures/calico-v3.28.1.yaml");
    assert_eq!(
        stderr(&out),
        format!(
            "error: no Calico manifest: pass its path (./try-lab.sh calico.yaml), set KUBEHA_CALICO_MANIFEST, put it at {}, or set KUBEHA_CALICO_DOWNLOAD=1 to fetch it from github.com\n",
            shared.display()
        )
    );
    assert!(!clone.join("target").exists(), "nothing was built");

    // ../shared is the last place looked at; the script's version is kubeha's default.
    std::fs::create_dir_all(shared.parent().unwrap()).unwrap();
    std::fs::write(&shared, "kind: List\n").unwrap();
    let out = bash(lookup, &clone, &[]);
    assert_eq!(stdout(&out).trim(), shared.to_str().unwrap());
    let version = stdout(&kubeha(&["version", "-o", "json"], tmp.path()));
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let script = std::fs::read_to_string(clone.join("scripts/calico-manifest.sh")).unwrap();
    assert!(script.contains(&format!(
        "\nCALICO_VERSION={}\n",
        version["defaultCalicoVersion"].as_str().unwrap()
    )));
}

#[test]
fn prerequisites_name_the_exact_install_command_for_what_is_missing() {
    // A PATH with every command the script needs except curl.
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tools = [
        "bash",
        "sort",
        "id",
        "dirname",
        "haproxy",
        "keepalived",
        "containerd",
        "debootstrap",
        "etcd",
        "etcdctl",
        "ssh",
        "ssh-keygen",
        "dpkg-scanpackages",
        "apt-ftparchive",
        "gpg",
        "ip",
        "git",
        "cargo-nextest",
    ];
    for tool in tools {
        let found = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists());
        let Some(found) = found else {
            eprintln!("skipped: {tool} is not installed here");
            return;
        };
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let out = std::process::Command::new(bin.join("bash"))
        .arg(repository().join("scripts/prerequisites.sh"))
        .arg("--check")
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(
            "missing: curl; install with: sudo apt-get install -y --no-install-recommends curl\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("haproxy"),
        "present tools are not named: {text}"
    );
}

#[test]
fn verbosity_adds_diagnostics_on_stderr_and_rust_log_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_spec(dir.path());
    let quiet = kubeha(&["status"], dir.path());
    assert!(
        !stderr(&quiet).contains("per-host logs"),
        "{}",
        stderr(&quiet)
    );
    let verbose = kubeha(&["status", "-v"], dir.path());
    assert!(
        stderr(&verbose).contains("INFO per-host logs logs=./.kubeha/k8s-ha/runs/"),
        "{}",
        stderr(&verbose)
    );
    assert!(!stderr(&verbose).contains("DEBUG"));
    let debug = kubeha(&["status", "-vv"], dir.path());
    assert!(stderr(&debug).contains("DEBUG kubeha::cli::remote_args: run options"));
    // RUST_LOG wins over -v: here it silences kubeha entirely.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeha"))
        .args(["status", "-vv"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "kubeha=off")
        .output()
        .unwrap();
    assert!(!stderr(&out).contains("INFO") && !stderr(&out).contains("DEBUG"));
    // The diagnostics stay on stderr: stdout is still one document or nothing.
    let json = kubeha(&["check", "-vv", "-o", "json"], dir.path());
    serde_json::from_str::<serde_json::Value>(&stdout(&json)).expect("one JSON document");
}
