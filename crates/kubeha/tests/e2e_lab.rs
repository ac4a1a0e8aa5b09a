//! End to end in the lab: `kubeha apply` takes the seed's machines (1 load balancer,
//! 3 control planes, 2 workers, as containers with real sshd, systemd, apt, HAProxy,
//! containerd and etcd) to a Ready cluster, survives being killed in the middle of the
//! control-plane joins, and then has nothing left to do.
//!
//! Needs Docker; skipped with a message only when Docker is absent and CI is not set.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kubeha, kubeha_with_env, stderr, stdout};
#[path = "common/lab.rs"]
mod lab;
use lab::{docker_available, kubernetes_debs, workspace};

const LAB: &str = "e2e";

/// A lab that is up, taken down however the test ends.
struct LabGuard {
    name: &'static str,
    state: PathBuf,
}

impl LabGuard {
    /// Brings a lab of `topology` up with the Kubernetes packages and Calico.
    fn up(name: &'static str, topology: &str) -> Self {
        let debs = kubernetes_debs();
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-lab"));
        let _ = std::fs::remove_dir_all(&state);
        let guard = LabGuard { name, state };
        let state_arg = guard.state.display().to_string();
        // The lab has no internet: Calico comes from the copy beside the repository.
        let calico = workspace().join("../shared/fixtures/calico-v3.28.1.yaml");
        assert!(
            calico.is_file(),
            "the Calico fixture is missing at {}",
            calico.display()
        );
        let calico_arg = calico.display().to_string();
        let mut up = vec![
            "lab",
            "up",
            "--name",
            name,
            "--topology",
            topology,
            "--state-dir",
            &state_arg,
            "--calico-manifest",
            &calico_arg,
        ];
        let deb_args: Vec<String> = debs.iter().map(|d| d.display().to_string()).collect();
        for d in &deb_args {
            up.extend(["--debs", d]);
        }
        let out = kubeha(&up, Path::new("."));
        assert!(out.status.success(), "lab up: {}", stderr(&out));
        guard
    }

    fn spec(&self) -> String {
        self.state.join("cluster.yaml").display().to_string()
    }

    /// `kubeha lab ARGS` for this lab.
    fn lab(&self, args: &[&str]) -> std::process::Output {
        let state = self.state.display().to_string();
        let mut all = vec!["lab", "--name", self.name, "--state-dir", &state];
        all.extend(args);
        kubeha(&all, Path::new("."))
    }

    /// Where the lab says `load-balancer.local` should point (the load balancer or the VIP).
    fn endpoint_address(&self) -> String {
        let record = std::fs::read_to_string(self.state.join("lab.json")).unwrap();
        let lab: serde_json::Value = serde_json::from_str(&record).unwrap();
        lab["api_endpoint"].as_str().unwrap().to_string()
    }

    /// `getent hosts load-balancer.local` on `host`.
    fn resolve_endpoint(&self, host: &str) -> std::process::Output {
        self.lab(&["ssh", host, "--", "getent", "hosts", "load-balancer.local"])
    }

    /// A fresh cloud machine does not know the endpoint name.
    fn assert_endpoint_unknown(&self, hosts: &[&str]) {
        for host in hosts {
            let out = self.resolve_endpoint(host);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{host} resolves the endpoint before kubeha ran: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
    }

    /// The endpoint name resolves to the lab's endpoint on each host.
    fn assert_endpoint_resolves(&self, hosts: &[&str]) {
        let want = self.endpoint_address();
        for host in hosts {
            let out = self.resolve_endpoint(host);
            assert!(
                stdout(&out).split_whitespace().next() == Some(want.as_str()),
                "{host} does not resolve load-balancer.local to {want}: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
    }

    /// Reboots `hosts` with `lab fault restart` (Docker regenerates their /etc/hosts, as
    /// cloud-init does at boot) and waits, running no kubeha command on them, until the
    /// cluster is whole again: every node Ready, etcd healthy, every backend up.
    fn reboot_and_wait_healthy(&self, hosts: &[&str]) {
        let before = utc_now();
        for host in hosts {
            let out = self.lab(&["fault", "restart", host]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let rebooted = Instant::now();
        // Ready from a heartbeat sent after the reboot, not the one from before it.
        for host in hosts {
            loop {
                let out = kubectl(
                    self,
                    &format!("get node {host} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}} {{.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}}'"),
                );
                let text = stdout(&out);
                if let Some(("True", beat)) = text.trim().split_once(' ') {
                    if beat > before.as_str() {
                        break;
                    }
                }
                assert!(
                    rebooted.elapsed().as_secs() < 180,
                    "{host} is not Ready again after its reboot: {text}{}",
                    stderr(&out)
                );
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        wait_healthy(&self.spec());
        eprintln!(
            "{} rebooted: Ready again, cluster whole after {:.0}s",
            hosts.join(", "),
            rebooted.elapsed().as_secs_f64()
        );
        self.assert_endpoint_resolves(hosts);
        // The entry was back before the kubelet started.
        for host in hosts {
            let out = self.lab(&[
                "ssh",
                host,
                "--",
                "sh",
                "-c",
                "a=$(systemctl show -p ActiveEnterTimestampMonotonic --value kubeha-hosts); \
                 k=$(systemctl show -p ExecMainStartTimestampMonotonic --value kubelet); \
                 echo \"$a $k\"; [ \"$a\" -gt 0 ] && [ \"$a\" -le \"$k\" ]",
            ]);
            assert!(
                out.status.success(),
                "{host}: kubeha-hosts did not run before the kubelet: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.lab(&["down"]);
    }
}

/// `kubeha plan --detailed-exitcode` exits 0: the cluster matches its spec.
fn assert_no_changes(spec: &str) -> std::process::Output {
    assert_plan_exits(spec, 0)
}

/// `kubeha plan --detailed-exitcode` exits `code` (0 no changes, 3 changes, 1 conflicts).
fn assert_plan_exits(spec: &str, code: i32) -> std::process::Output {
    let out = kubeha(&["plan", "-f", spec, "--detailed-exitcode"], Path::new("."));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `ps -eo args` on a lab host every 30 ms (plus ps's own time), over one SSH session, into
/// a file, until dropped: proof that no secret is ever on a command line there. Fast enough
/// to catch an etcdctl of about 50 ms, which every 100 ms missed in a busy CI rehearsal.
struct PsSampler {
    host: &'static str,
    child: std::process::Child,
    out: PathBuf,
    started: Instant,
}

impl PsSampler {
    fn start(lab: &LabGuard, host: &'static str) -> Self {
        let out = lab.state.join(format!("ps-{host}.txt"));
        let state = lab.state.display().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_kubeha"))
            .args([
                "lab",
                "--name",
                lab.name,
                "--state-dir",
                &state,
                "ssh",
                host,
                "--",
            ])
            .args([
                "sh",
                "-c",
                "while :; do ps -eo args; echo '--- sample'; sleep 0.03; done",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        PsSampler {
            host,
            child,
            out,
            started: Instant::now(),
        }
    }

    /// Stops sampling and checks that the samples are many, caught `expected` running,
    /// and hold no secret.
    fn assert_clean(mut self, expected: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let host = self.host;
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let count = text.matches("--- sample").count();
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!("{count} ps samples on {host} in {seconds:.0}s");
        // A sample every 0.03 s plus ps's own time: at least three a second shows the
        // sampler ran all along, however short the sampled step (a rejoin takes ~7 s).
        assert!(
            count > 10 && count as f64 >= 3.0 * seconds,
            "too few ps samples on {host}: {count} in {seconds:.0}s"
        );
        assert!(
            text.contains(expected),
            "the samples on {host} never caught {expected}"
        );
        assert_no_secrets(&format!("ps -eo args on {host}"), &text, Hex::AfterItsName);
    }
}

impl Drop for PsSampler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Every 64-character lower-case hex word in `text` with the 20 characters before it.
fn hex64_words(text: &str) -> Vec<(String, String)> {
    let b = text.as_bytes();
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if hex(b[i]) && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let n = b[i..].iter().take_while(|&&c| hex(c)).count();
            let ends = b.get(i + n).is_none_or(|c| !c.is_ascii_alphanumeric());
            if n == 64 && ends {
                let from = text[..i]
                    .char_indices()
                    .rev()
                    .nth(19)
                    .map_or(0, |(at, _)| at);
                found.push((text[from..i].to_string(), text[i..i + 64].to_string()));
            }
            i += n.max(1);
        } else {
            i += 1;
        }
    }
    found
}

/// Where 64 hex digits may be a certificate key.
#[derive(Clone, Copy, PartialEq)]
enum Hex {
    /// Anywhere but in a `sha256:` digest or a file hash the facts script printed
    /// (kubeha's own output and files).
    Anywhere,
    /// After `certificate-key`, `certificateKey` or `certificate key` (command lines and
    /// journals, full of container IDs).
    AfterItsName,
}

/// The texts that runs of 32 or more base64 characters in `text` decode to: a file read
/// through `base64` (as kubeha once logged admin.conf) hides its secrets one level down.
fn base64_decoded(text: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    text.split(|c: char| !b64(c))
        .filter(|run| run.len() >= 32)
        .filter_map(|run| {
            let whole = &run[..run.len() - run.len() % 4];
            base64::engine::general_purpose::STANDARD.decode(whole).ok()
        })
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect()
}

/// What in `text` looks like a secret: a bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`),
/// a PEM private key, a kubeconfig's `client-key-data`, or a certificate key; also
/// inside base64 (two levels: a kubeconfig's key data is itself base64).
fn secrets_in(text: &str, hex: Hex) -> Vec<String> {
    let mut found = secret_shapes(text, hex);
    for once in base64_decoded(text) {
        found.extend(
            secret_shapes(&once, hex)
                .into_iter()
                .map(|f| format!("base64: {f}")),
        );
        for twice in base64_decoded(&once) {
            found.extend(
                secret_shapes(&twice, hex)
                    .into_iter()
                    .map(|f| format!("base64 twice: {f}")),
            );
        }
    }
    found
}

fn secret_shapes(text: &str, hex: Hex) -> Vec<String> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    for i in 0..b.len().saturating_sub(22) {
        let token = (i == 0 || !lower_alnum(b[i - 1]))
            && b[i..i + 6].iter().all(|&c| lower_alnum(c))
            && b[i + 6] == b'.'
            && b[i + 7..i + 23].iter().all(|&c| lower_alnum(c))
            && b.get(i + 23).is_none_or(|&c| !lower_alnum(c));
        if token {
            found.push(format!("token {}", &text[i..i + 23]));
        }
    }
    for marker in ["PRIVATE KEY-----", "client-key-data"] {
        if text.contains(marker) {
            found.push(marker.to_string());
        }
    }
    for (before, digits) in hex64_words(text) {
        let named = ["certificate-key", "certificateKey", "certificate key"]
            .iter()
            .any(|name| before.contains(name));
        let digest = before.ends_with("sha256:") || before.ends_with('=');
        if named || (hex == Hex::Anywhere && !digest) {
            found.push(format!("certificate key? {before}{digits}"));
        }
    }
    found
}

/// Fails naming `what` and what was found when `text` holds anything secret-shaped.
fn assert_no_secrets(what: &str, text: &str, hex: Hex) {
    let found = secrets_in(text, hex);
    assert!(found.is_empty(), "{what} holds secrets: {found:?}");
}

#[test]
fn the_secret_scanner_finds_what_it_looks_for() {
    let key = "0a".repeat(32);
    for text in [
        "kubeadm token create q1w2e3.r4t5y6u7i8o9p0a1 --ttl 2h".to_string(),
        format!("kubeadm join --certificate-key {key}"),
        "-----BEGIN EC PRIVATE KEY-----".into(),
        "    client-key-data: <redacted>".into(),
        // How kubeha's host logs carried admin.conf: `base64 -w0` output.
        format!(
            "  | {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "users:\n- user:\n    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCg==\n"
            )
        ),
    ] {
        assert!(!secrets_in(&text, Hex::AfterItsName).is_empty(), "{text}");
    }
    let sha = format!("file./etc/hosts={key} sha256:{key} cp-1.log 10.0.0.1:6443");
    assert!(
        secrets_in(&sha, Hex::Anywhere).is_empty(),
        "{:?}",
        secrets_in(&sha, Hex::Anywhere)
    );
    let shim = format!("containerd-shim-runc-v2 -namespace k8s.io -id {key}");
    assert!(secrets_in(&shim, Hex::AfterItsName).is_empty());
    assert!(!secrets_in(&shim, Hex::Anywhere).is_empty());
}

/// `kubeha apply --yes`, which must succeed; prints how long it took and what it said.
fn timed_apply(what: &str, spec: &str, dir: &Path) -> std::process::Output {
    let started = Instant::now();
    let out = kubeha(&["apply", "-f", spec, "--yes"], dir);
    assert!(out.status.success(), "{what} failed:\n{}", stderr(&out));
    eprintln!(
        "{what} took {:.0}s\n{}",
        started.elapsed().as_secs_f64(),
        stderr(&out)
    );
    out
}

/// Every file under `dir`, recursively, with its path.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn mode_of(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::symlink_metadata(p).unwrap().permissions())
        & 0o777
}

/// The run folders under `.kubeha` are 0700, everything in them 0600, `.kubeha` is
/// ignored by git, and no file holds a secret.
fn assert_state_folder_private(state: &Path) {
    let dot = state.join(".kubeha");
    let ignore = std::fs::read_to_string(dot.join(".gitignore")).expect(".kubeha/.gitignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    let runs = dot.join("e2e/runs");
    let mut run_dirs = 0;
    for run in std::fs::read_dir(&runs).unwrap() {
        let run = run.unwrap().path();
        assert_eq!(mode_of(&run), 0o700, "{}", run.display());
        run_dirs += 1;
    }
    assert!(run_dirs >= 3, "one run folder per command run");
    let mut files = Vec::new();
    files_under(&dot, &mut files);
    let logs = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .count();
    assert!(logs >= 6, "{files:?}");
    for f in &files {
        if f.starts_with(&runs) {
            assert_eq!(mode_of(f), 0o600, "{}", f.display());
        }
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        assert_no_secrets(&f.display().to_string(), &text, Hex::Anywhere);
    }
}

#[test]
fn apply_builds_the_seed_cluster_resumes_after_a_kill_and_then_changes_nothing() {
    if !docker_available() {
        return;
    }
    let guard = LabGuard::up(LAB, "seed");
    let state = guard.state.clone();
    let spec_path = state.join("cluster.yaml");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let spec_arg = spec_path.display().to_string();

    // A typo is refused before any connection is made: no run folder appears.
    let typo = state.join("typo.yaml");
    std::fs::write(&typo, spec.replace("    - name: cp-2", "    - nmae: cp-2")).unwrap();
    let out = kubeha(
        &["apply", "-f", &typo.display().to_string(), "--yes"],
        &state,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown field `nmae`"));
    assert!(
        !state.join(".kubeha").exists(),
        "an invalid spec must not start a run"
    );

    // From here on, command lines are sampled for secrets on the control plane that
    // makes the tokens, a joining control plane and a joining worker.
    let samplers = [
        (PsSampler::start(&guard, "cp-1"), "kubeadm init"),
        (PsSampler::start(&guard, "cp-2"), "kubeadm join"),
        (PsSampler::start(&guard, "worker-1"), "kubeadm join"),
    ];
    // Everything kubeha prints is kept, to be searched for secrets at the end.
    let mut printed: Vec<(String, String)> = Vec::new();

    // First apply, killed while the third control plane joins.
    let started = Instant::now();
    let first_stderr = state.join("first-apply.stderr");
    // Its SSH control sockets in a folder of this test's own, so that killing its
    // masters below finds them by that path and no other process's: not kept for the next
    // run (those live in the user's private folder), so in TMPDIR.
    let ssh_tmp = state.join("first-apply-tmp");
    std::fs::create_dir_all(&ssh_tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeha"))
        .args(["apply", "-f", &spec_arg, "--yes", "-o", "ndjson"])
        .env("TMPDIR", &ssh_tmp)
        .env("KUBEHA_SSH_REUSE", "0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&first_stderr).unwrap())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut killed = false;
    let mut seen = Vec::new();
    let mut first_stdout = String::new();
    for line in reader.lines() {
        let line = line.unwrap();
        first_stdout.push_str(&line);
        first_stdout.push('\n');
        seen.push(line.chars().take(200).collect::<String>());
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["host"] == "cp-3"
            && event["status"] == "started"
            && event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("kubeadm join"))
        {
            // Let kubeadm get going, then kill kubeha as an operator's ^C or a crash would.
            std::thread::sleep(Duration::from_secs(2));
            child.kill().unwrap();
            // Its SSH masters die too, as they would with the operator's machine: the
            // remote kubeadm loses its session mid-join.
            let _ = Command::new("pkill")
                .arg("-KILL")
                .arg("-f")
                .arg(format!("{}/\\.ssh-connection", ssh_tmp.display()))
                .status();
            killed = true;
            break;
        }
    }
    let _ = child.wait();
    assert!(
        killed,
        "the first apply never reached cp-3's join:\n{}\nlast events:\n{}",
        std::fs::read_to_string(&first_stderr).unwrap_or_default(),
        seen[seen.len().saturating_sub(8)..].join("\n")
    );
    eprintln!(
        "killed the first apply after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    printed.push(("first apply -o json".into(), first_stdout));
    printed.push((
        "first apply's stderr".into(),
        std::fs::read_to_string(&first_stderr).unwrap_or_default(),
    ));

    // The second apply finishes the job.
    let out = timed_apply("resumed apply", &spec_arg, &state);
    printed.push(("resumed apply".into(), stdout(&out) + &stderr(&out)));
    // The killed control-plane join often completes on its own; a resumed run that then
    // joins only workers makes a token but uploads no control-plane certificates.
    if !stderr(&out).contains("kubeadm join (control plane)") {
        let mut runs: Vec<u64> = std::fs::read_dir(state.join(".kubeha/e2e/runs"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        runs.sort();
        let resumed_log = state.join(format!(".kubeha/e2e/runs/{}/cp-1.log", runs[1]));
        let log = std::fs::read_to_string(&resumed_log).unwrap();
        assert!(
            !log.lines()
                .any(|l| l.starts_with("$ kubeadm init phase upload-certs")),
            "a worker-only run re-uploaded the certificates: {}",
            resumed_log.display()
        );
        eprintln!("the resumed run joined only workers and uploaded no certificates");
    }
    // The killed run left cp-3's join config (with the token and certificate key)
    // behind; the resumed run removed it, whether or not it joined cp-3 again.
    for host in ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"] {
        let out = guard.lab(&[
            "ssh",
            host,
            "--",
            "sudo",
            "find",
            "/etc/kubeha",
            "-name",
            "kubeadm-*",
        ]);
        assert!(out.status.success(), "{host}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "secret files left on {host}");
    }
    for (sampler, expected) in samplers {
        sampler.assert_clean(expected);
    }
    let kubeconfig = state.join("e2e.kubeconfig");
    assert_eq!(
        mode_of(&kubeconfig),
        0o600,
        "the admin kubeconfig is private"
    );
    // The kubeconfig kubeha wrote holds only what it trusts from the host.
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    for gone in ["exec", "auth-provider", "token", "insecure", "proxy-url"] {
        assert!(
            !written.contains(gone),
            "{gone} in the kubeconfig:\n{written}"
        );
    }
    // The run revoked every join credential, the killed run's included.
    let out = kubectl(&guard, "-n kube-system get secrets -o name");
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|n| n.strip_prefix("secret/"))
        .filter(|n| n.starts_with("bootstrap-token-") || *n == "kubeadm-certs")
        .map(String::from)
        .collect();
    assert!(
        left.is_empty(),
        "join credentials left in the cluster: {left:?}"
    );

    // Every node Ready, exactly three healthy etcd members, every backend up.
    let out = kubeha(&["status", "-f", &spec_arg, "-o", "json"], &state);
    assert!(out.status.success(), "{}", stderr(&out));
    printed.push(("status -o json".into(), stdout(&out) + &stderr(&out)));
    let status = json_lines(&stdout(&out)).pop().expect("a status document");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5, "{status:#}");
    assert!(nodes.iter().all(|n| n["ready"] == true), "{status:#}");
    let etcd = status["etcd"].as_array().unwrap();
    assert_eq!(
        etcd.len(),
        3,
        "exactly three etcd members after the kill: {status:#}"
    );
    assert!(etcd.iter().all(|m| m["healthy"] == true), "{status:#}");
    let backends = status["load_balancers"][0]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 3);
    assert!(backends.iter().all(|b| b[1] == "UP"), "{status:#}");

    add_ons_run_on_every_node(&guard, nodes.len());

    // Converged: plan has nothing to do (exit 0 with --detailed-exitcode), nor has apply.
    let out = assert_no_changes(&spec_arg);
    assert!(stdout(&out).contains("No changes: cluster e2e matches the spec."));
    let noop = Instant::now();
    let out = kubeha(&["apply", "-f", &spec_arg, "--yes", "-v"], &state);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 change(s) made"),
        "{}",
        stdout(&out)
    );
    eprintln!("no-op apply took {:.1}s", noop.elapsed().as_secs_f64());
    printed.push(("no-op apply".into(), stdout(&out) + &stderr(&out)));
    one_command_per_host_in_the_last_run(&state, 6);
    // And the API: Nodes, kubeadm-config, kubelet-config, calico-node and Calico's
    // IPPools, asked once each (at once).
    assert!(
        stderr(&out).contains("round trips this run made ssh_commands=6 api_requests=5"),
        "{}",
        stderr(&out)
    );
    // And no SSH handshake: the plan just before left its masters, verified for exactly
    // this spec, for this run to reuse.
    assert!(
        stderr(&out).contains("ssh_masters_started=0 ssh_masters_reused=6"),
        "{}",
        stderr(&out)
    );
    // Turned off, a run starts (and closes) masters of its own and leaves the kept ones.
    let out = kubeha_with_env(
        &["plan", "-f", &spec_arg, "--detailed-exitcode", "-v"],
        &state,
        &[("KUBEHA_SSH_REUSE", "0")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ssh_masters_started=6 ssh_masters_reused=0"),
        "{}",
        stderr(&out)
    );
    // A known_hosts line for another machine (a node about to be added) keeps every master:
    // only a host's own lines verified it.
    let known_hosts = state.join("known_hosts");
    let original = std::fs::read(&known_hosts).unwrap();
    let mut grown = original.clone();
    grown
        .extend_from_slice(b"192.0.2.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGEtbmV3LW5vZGUta2V5\n");
    std::fs::write(&known_hosts, &grown).unwrap();
    let out = kubeha(
        &["plan", "-f", &spec_arg, "--detailed-exitcode", "-v"],
        &state,
    );
    std::fs::write(&known_hosts, &original).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ssh_masters_started=0 ssh_masters_reused=6"),
        "{}",
        stderr(&out)
    );

    kubeadm_config_deleted_is_a_conflict_and_changes_nothing(&guard, &spec_arg);
    a_changed_label_is_one_step_applied_through_the_api(&guard, &spec, &state);

    // A control plane rebuilt from scratch: the run that joins it makes a token through
    // the API and uploads the certificates, and neither shows on a command line. The
    // host is wiped first and its Node deleted after, as kubeadm's docs order it: a
    // kubelet still running would register the Node again (Ready), and the join refuse it.
    let out = guard.lab(&[
        "ssh",
        "cp-3",
        "--",
        "sudo",
        "sh",
        "-c",
        "kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock && rm -rf /etc/kubernetes/pki /var/lib/etcd",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kubectl(&guard, "delete node cp-3");
    assert!(out.status.success(), "{}", stderr(&out));
    let samplers = [
        // etcdctl health checks run there all through the join.
        (PsSampler::start(&guard, "cp-1"), "etcdctl"),
        (PsSampler::start(&guard, "cp-3"), "kubeadm join"),
    ];
    let out = timed_apply("rejoining a rebuilt control plane", &spec_arg, &state);
    for step in [
        "new bootstrap token",
        "uploading the control-plane certificates",
        "kubeadm join (control plane)",
        "revoked",
    ] {
        assert!(stderr(&out).contains(step), "{step}:\n{}", stderr(&out));
    }
    printed.push(("rebuilding apply".into(), stdout(&out) + &stderr(&out)));
    for (sampler, expected) in samplers {
        sampler.assert_clean(expected);
    }
    let healed = crate::status(&spec_arg);
    assert_eq!(etcd_members(&healed).len(), 3, "{healed:#}");
    assert!(
        healed["etcd"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["healthy"] == true),
        "{healed:#}"
    );
    assert_no_changes(&spec_arg);

    // No secret in anything kubeha printed, wrote or left in the hosts' journals.
    let text_and_json = [
        ("plan", vec!["plan", "-f", &spec_arg]),
        ("plan -o json", vec!["plan", "-f", &spec_arg, "-o", "json"]),
        (
            "apply -o json",
            vec!["apply", "-f", &spec_arg, "--yes", "-o", "json"],
        ),
        ("status", vec!["status", "-f", &spec_arg]),
        ("verify", vec!["verify", "-f", &spec_arg]),
        (
            "verify -o json",
            vec!["verify", "-f", &spec_arg, "-o", "json"],
        ),
    ];
    for (what, args) in text_and_json {
        let out = kubeha(&args, &state);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        printed.push((what.into(), stdout(&out) + &stderr(&out)));
    }
    for (what, text) in &printed {
        assert_no_secrets(what, text, Hex::Anywhere);
    }
    assert_state_folder_private(&state);
    for host in ["cp-1", "cp-2", "worker-1"] {
        let out = guard.lab(&["ssh", host, "--", "sudo", "journalctl", "--no-pager", "-q"]);
        assert!(
            out.status.success(),
            "journalctl on {host}: {}",
            stderr(&out)
        );
        let journal = stdout(&out);
        assert!(
            journal.contains("sudo"),
            "the journal of {host} records sudo"
        );
        assert_no_secrets(
            &format!("the journal of {host}"),
            &journal,
            Hex::AfterItsName,
        );
    }
    drop(guard);
}

/// `kube-system/kubeadm-config` deleted on a converged cluster: `plan` refuses with a
/// conflict that says how to restore it, `apply` changes nothing; then it is restored.
fn kubeadm_config_deleted_is_a_conflict_and_changes_nothing(guard: &LabGuard, spec: &str) {
    let saved = kubectl(guard, "-n kube-system get configmap kubeadm-config -o json");
    assert!(saved.status.success(), "{}", stderr(&saved));
    let mut cm: serde_json::Value = serde_json::from_str(&stdout(&saved)).unwrap();
    let meta = cm["metadata"].as_object_mut().unwrap();
    for server_set in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        meta.remove(server_set);
    }
    let out = kubectl(guard, "-n kube-system delete configmap kubeadm-config");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = assert_plan_exits(spec, 1);
    assert!(
        stderr(&out).contains("kube-system/kubeadm-config is missing, but etcd is healthy"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("kubeadm init phase upload-config kubeadm"));
    let out = kubeha(
        &["apply", "-f", spec, "--yes", "-o", "ndjson"],
        Path::new("."),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let ran = executed_steps(&stdout(&out));
    assert!(ran.is_empty(), "apply ran steps: {ran:#?}");
    for cp in ["cp-1", "cp-2", "cp-3"] {
        let out = guard.lab(&[
            "ssh",
            cp,
            "--",
            "sudo",
            "test",
            "-f",
            "/etc/kubernetes/pki/ca.key",
        ]);
        assert!(out.status.success(), "{cp} lost its CA key");
    }

    let out = guard.lab(&[
        "ssh",
        "cp-1",
        "--",
        "sh",
        "-c",
        &format!(
            "echo {} | base64 -d | sudo kubectl --kubeconfig /etc/kubernetes/admin.conf create -f -",
            base64_of(&cm.to_string())
        ),
    ]);
    assert!(
        out.status.success(),
        "restoring kubeadm-config: {}",
        stderr(&out)
    );
    assert_no_changes(spec);
}

/// (host, step) of every step `apply -o ndjson` finished: the `done` events of hosts (or
/// `cluster`) once the first phase started (before it, connections are reported).
fn executed_steps(apply_stdout: &str) -> Vec<(String, String)> {
    json_lines(apply_stdout)
        .into_iter()
        .skip_while(|e| e["phase"].is_null())
        .filter(|e| e["event"] == "progress" && e["status"] == "done" && e["host"].is_string())
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A worker's label changed in the spec: `plan` shows exactly that step, `apply` runs
/// exactly the plan's steps (its JSON events against `plan -o json`) and sets the label
/// through the API, and the next plan has no changes.
fn a_changed_label_is_one_step_applied_through_the_api(guard: &LabGuard, spec: &str, state: &Path) {
    let labelled = state.join("labelled.yaml");
    let text = spec.replacen(
        "      roles: [worker]\n",
        "      roles: [worker]\n      labels: {kubeha.dev/e2e: web}\n",
        1,
    );
    assert_ne!(text, spec, "no worker in the lab spec");
    std::fs::write(&labelled, text).unwrap();
    let labelled = labelled.display().to_string();
    let label = |guard: &LabGuard| {
        let out = kubectl(
            guard,
            "get node worker-1 -o jsonpath='{.metadata.labels.kubeha\\.dev/e2e}'",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    // Someone else's label on the same Node, which kubeha must never remove.
    let out = kubectl(
        guard,
        "label node worker-1 example.com/owner=ops --overwrite",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    apply_the_one_planned_label_step(&labelled, state, "set label kubeha.dev/e2e=web");
    assert_eq!(label(guard), "web");
    assert_no_changes(&labelled);
    // The label leaves the spec: kubeha set it, so kubeha removes it, and only it.
    let unlabelled = state.join("unlabelled.yaml");
    std::fs::write(&unlabelled, spec).unwrap();
    let unlabelled = unlabelled.display().to_string();
    apply_the_one_planned_label_step(&unlabelled, state, "remove label kubeha.dev/e2e");
    assert_eq!(label(guard), "");
    let out = kubectl(
        guard,
        "get node worker-1 -o jsonpath='{.metadata.labels.example\\.com/owner}'",
    );
    assert_eq!(stdout(&out).trim(), "ops", "another's label was removed");
    let out = kubectl(guard, "label node worker-1 example.com/owner-");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_changes(&unlabelled);
}

/// `plan` shows exactly one step, the Node patch `what` describes, and `apply` runs
/// exactly it.
fn apply_the_one_planned_label_step(spec: &str, state: &Path, what: &str) {
    assert_plan_exits(spec, 3);
    let out = kubeha(&["plan", "-f", spec, "-o", "json"], state);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json_lines(&stdout(&out)).pop().expect("a plan document");
    let planned: Vec<(String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["host"].as_str().unwrap_or("cluster").to_string(),
                s["description"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(planned.len(), 1, "{plan:#}");
    assert_eq!(plan["steps"][0]["action"], "apply-labels-and-taints");
    assert_eq!(plan["steps"][0]["node"], "worker-1");
    assert!(planned[0].1.starts_with(what), "{planned:?}");
    let out = kubeha(&["apply", "-f", spec, "--yes", "-o", "ndjson"], state);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        executed_steps(&stdout(&out)),
        planned,
        "apply ran other steps than the plan's"
    );
}

/// Seconds until `https://load-balancer.local:6443/readyz` answers again, probing every
/// 200 ms for at most `limit`; also how many probes failed.
fn api_back_within(limit: Duration) -> Option<(f64, usize)> {
    let started = Instant::now();
    let mut failures = 0;
    while started.elapsed() < limit {
        let ok = Command::new("curl")
            .args([
                "-skf",
                "--max-time",
                "1",
                "-o",
                "/dev/null",
                "https://load-balancer.local:6443/readyz",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some((started.elapsed().as_secs_f64(), failures));
        }
        failures += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The lab machine's clock, as the API's timestamps are written (RFC 3339, UTC, seconds).
fn utc_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    stdout(&out).trim().to_string()
}

fn status(spec: &str) -> serde_json::Value {
    let out = kubeha(&["status", "-f", spec, "-o", "json"], Path::new("."));
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&stdout(&out)).pop().expect("a status document")
}

fn etcd_members(status: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = status["etcd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m["name"], m["peer_url"]))
        .collect();
    names.sort();
    names
}

/// kubeadm's and Calico's workloads run as in the seed's final output: CoreDNS 2/2 and a
/// calico-node and kube-proxy Pod Running on every node.
fn add_ons_run_on_every_node(guard: &LabGuard, node_count: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = kubectl(
            guard,
            "-n kube-system get deploy coredns -o 'jsonpath={.status.readyReplicas}'",
        );
        if stdout(&out).trim() == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "coredns not 2/2 Ready: {}{}",
            stdout(&out),
            stderr(&out)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    for app in ["calico-node", "kube-proxy"] {
        let out = kubectl(
            guard,
            &format!(
                "-n kube-system get pods -l k8s-app={app} -o 'jsonpath={{range .items[*]}}{{.spec.nodeName}} {{.status.phase}}{{\"\\n\"}}{{end}}'"
            ),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let running: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_suffix(" Running"))
            .collect();
        assert_eq!(running.len(), node_count, "{app} Pods:\n{text}");
    }
}

fn kubectl(lab: &LabGuard, args: &str) -> std::process::Output {
    lab.lab(&[
        "ssh",
        "cp-1",
        "--",
        "sh",
        "-c",
        &format!("sudo kubectl --kubeconfig /etc/kubernetes/admin.conf {args}"),
    ])
}

#[test]
fn seed_ha_survives_losing_a_control_plane_and_the_active_load_balancer() {
    if !docker_available() {
        return;
    }
    let lab = LabGuard::up("e2e-ha", "seed-ha");
    let spec = lab.spec();
    lab.assert_endpoint_unknown(&["cp-1", "worker-1"]);
    let out = kubeha(&["apply", "-f", &spec, "--yes"], Path::new("."));
    assert!(out.status.success(), "apply failed:\n{}", stderr(&out));
    let out = kubectl(
        &lab,
        "create configmap ha-proof --from-literal=written=before-failover",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let before = status(&spec);
    let holder: Vec<&str> = before["load_balancers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["holds_vip"] == true)
        .map(|l| l["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        holder,
        ["lb-1"],
        "lb-1 has the highest priority: {before:#}"
    );

    // The drills: an apiserver and the active HAProxy stopped while requests flow.
    let out = kubeha(
        &["verify", "-f", &spec, "--disruptive", "-o", "json"],
        Path::new("."),
    );
    let verdict = json_lines(&stdout(&out)).pop().expect("a verdict");
    eprintln!("verify: {verdict:#}");
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert_eq!(verdict["drills"].as_array().unwrap().len(), 2);

    // The whole active load balancer dies: the VIP moves to lb-2 and the API answers.
    let out = lab.lab(&["fault", "kill", "lb-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (seconds, failures) =
        api_back_within(Duration::from_secs(30)).expect("the API answered through the VIP again");
    eprintln!("load balancer killed: API back after {seconds:.1}s ({failures} failed probes)");
    assert!(seconds < 15.0, "the VIP took {seconds:.1}s to move");

    // A whole control plane dies too: the API keeps answering through lb-2.
    let out = lab.lab(&["fault", "kill", "cp-3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (seconds, _) = api_back_within(Duration::from_secs(30)).expect("the API answered");
    eprintln!("control plane killed: API answering after {seconds:.1}s");
    let out = kubectl(&lab, "get configmap ha-proof -o jsonpath={.data.written}");
    assert_eq!(stdout(&out), "before-failover", "{}", stderr(&out));

    // Both come back; the cluster heals with the same members and the same data.
    for host in ["lb-1", "cp-3"] {
        let out = lab.lab(&["fault", "start", host]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let healed = Instant::now();
    let after = wait_healthy(&spec);
    eprintln!("healed after {:.0}s", healed.elapsed().as_secs_f64());
    assert_eq!(
        etcd_members(&after),
        etcd_members(&before),
        "the same etcd members"
    );
    let out = kubectl(&lab, "get configmap ha-proof -o jsonpath={.data.written}");
    assert_eq!(stdout(&out), "before-failover");
    // cp-3 booted with a regenerated /etc/hosts; kubeha-hosts.service put the endpoint
    // back before its kubelet started. So do a rebooted worker and control plane, and
    // kubeha then finds nothing to repair.
    lab.assert_endpoint_resolves(&["cp-3"]);
    lab.reboot_and_wait_healthy(&["worker-1", "cp-2"]);
    assert_no_changes(&spec);
}

/// Polls `kubeha status` until every node is Ready, three etcd members are healthy and
/// every load balancer sees three backends UP (at most 180 s); returns that status.
fn wait_healthy(spec: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        // Until the restarted hosts' sshd is up, status cannot reach them.
        let out = kubeha(&["status", "-f", spec, "-o", "json"], Path::new("."));
        let Some(s) = json_lines(&stdout(&out))
            .pop()
            .filter(|_| out.status.success())
        else {
            assert!(
                started.elapsed().as_secs() < 180,
                "hosts did not come back: {}",
                stderr(&out)
            );
            std::thread::sleep(Duration::from_secs(3));
            continue;
        };
        let ready = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["ready"] == true)
            .count();
        let healthy = s["etcd"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["healthy"] == true)
            .count();
        let up = s["load_balancers"].as_array().unwrap().iter().all(|l| {
            l["backends"]
                .as_array()
                .is_some_and(|b| b.len() == 3 && b.iter().all(|b| b[1] == "UP"))
        });
        if (ready, healthy, up) == (5, 3, true) {
            return s;
        }
        assert!(
            started.elapsed().as_secs() < 180,
            "the cluster did not heal: {s:#}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The seed's manual steps as plain shell over SSH (the `runbook.sh` that `kubeha render`
/// writes, run by bash, not kubeha) take the lab's machines to a Ready cluster behind the
/// real HAProxy; a rebooted worker and control plane come back Ready on their own; with
/// one control plane stopped the API still answers through the load balancer with its data.
#[test]
fn the_rendered_runbook_builds_the_seed_cluster_by_hand() {
    if !docker_available() {
        return;
    }
    let lab = LabGuard::up("e2e-runbook", "seed");
    lab.assert_endpoint_unknown(&["cp-1", "worker-1"]);
    let rendered = lab.state.join("rendered");
    let out = kubeha(
        &[
            "render",
            "-f",
            &lab.spec(),
            "--out",
            &rendered.display().to_string(),
        ],
        Path::new("."),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Plain ssh, told about the lab's key and host keys through an ssh_config.
    let ssh_config = lab.state.join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            lab.state.join("id_ed25519").display(),
            lab.state.join("known_hosts").display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("runbook.sh")
        .current_dir(&rendered)
        .env("SSH_OPTIONS", format!("-F {}", ssh_config.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runbook.sh failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("runbook.sh took {:.0}s", started.elapsed().as_secs_f64());
    assert!(stdout(&out).contains("Cluster ready"));
    // The runbook prepared every host as apply would have: apply finds nothing to do.
    assert_no_changes(&lab.spec());

    let on_cp = |host: &str, args: &str| {
        lab.lab(&[
            "ssh",
            host,
            "--",
            "sh",
            "-c",
            &format!("sudo kubectl --kubeconfig /etc/kubernetes/admin.conf {args}"),
        ])
    };
    let out = on_cp("cp-1", "get nodes --no-headers");
    let nodes = stdout(&out);
    assert_eq!(
        nodes
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count(),
        5,
        "{nodes}"
    );
    // The runbook's boot unit keeps the endpoint through reboots too.
    lab.reboot_and_wait_healthy(&["worker-1", "cp-2"]);
    let out = on_cp(
        "cp-1",
        "create configmap by-hand --from-literal=written=before-stop",
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // cp-1 goes away; cp-2's admin.conf points at the load balancer, which routes around it.
    let out = lab.lab(&["fault", "stop", "cp-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = on_cp("cp-2", "get configmap by-hand -o jsonpath={.data.written}");
        if stdout(&out) == "before-stop" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not answer through the load balancer: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What keeps a no-op fast, as counts: the last run sent each host exactly one command
/// (the facts script, which also checks sudo and reads a control plane's admin
/// kubeconfig), so no probe, file read or second round trip. Every command a run sends is
/// in its host's log as a `$ ` line.
fn one_command_per_host_in_the_last_run(state: &std::path::Path, hosts: usize) {
    let runs = state.join(".kubeha/e2e/runs");
    let last: u64 = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .max()
        .expect("a run folder");
    let run = runs.join(last.to_string());
    let mut logs = 0;
    for entry in std::fs::read_dir(&run).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        logs += 1;
        let log = std::fs::read_to_string(&path).unwrap();
        let commands = log.lines().filter(|l| l.starts_with("$ ")).count();
        assert_eq!(
            commands,
            1,
            "{}: {commands} commands in a no-op run",
            path.display()
        );
        if path.ends_with("cp-1.log") {
            assert!(log.contains("secret.admin.conf=<not logged>"), "{log}");
        }
    }
    assert_eq!(logs, hosts, "one log per host in {}", run.display());
}
