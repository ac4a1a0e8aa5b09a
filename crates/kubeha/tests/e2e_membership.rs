//! Day-two membership in the lab, one lab for every step: a worker added (only it
//! changes) and removed; the init control plane removed while the API is probed through
//! the endpoint; the quorum guard refusing with another control plane stopped; a killed
//! control plane removed with `--force`; the init host and a fresh host joined back to
//! three healthy members and a plan with no changes.
//!
//! Needs Docker; skipped with a message only when Docker is absent and CI is not set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{kubeha, stderr, stdout};
#[path = "common/lab.rs"]
mod lab;
use kubeha::probe::Probe;
use kubeha::verify::ApiAvailability;
use lab::{docker_available, kubernetes_debs, workspace};

const NAME: &str = "e2e-membership";

/// The lab, taken down however the test ends.
struct Lab {
    state: PathBuf,
    debs: Vec<PathBuf>,
    /// Hosts the lab has that the cluster no longer lists.
    removed: Vec<String>,
}

impl Lab {
    fn up() -> Self {
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-membership-lab");
        let _ = std::fs::remove_dir_all(&state);
        let lab = Lab {
            state,
            debs: kubernetes_debs(),
            removed: Vec::new(),
        };
        lab.lab_up(&[]);
        lab
    }

    /// `lab up` (which grows an existing lab as `extra` says).
    fn lab_up(&self, extra: &[&str]) {
        let calico = workspace().join("../shared/fixtures/calico-v3.28.1.yaml");
        let mut args: Vec<String> = ["up", "--topology", "seed", "--calico-manifest"]
            .map(String::from)
            .to_vec();
        args.push(calico.display().to_string());
        for deb in &self.debs {
            args.extend(["--debs".into(), deb.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab_ok(&args);
    }

    fn lab(&self, args: &[&str]) -> Output {
        let state = self.state.display().to_string();
        let mut all = vec!["lab", "--name", NAME, "--state-dir", &state];
        all.extend_from_slice(args);
        kubeha(&all, Path::new("."))
    }

    fn lab_ok(&self, args: &[&str]) -> String {
        let out = self.lab(args);
        assert!(out.status.success(), "lab {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// The spec the operator keeps: the lab's hosts without those removed. Written beside
    /// the lab's own, so the admin kubeconfig `apply` writes is the same file.
    fn spec(&self) -> String {
        let lab_spec = std::fs::read_to_string(self.state.join("cluster.yaml")).unwrap();
        let mut text = String::new();
        let mut skipping = false;
        for line in lab_spec.lines() {
            if let Some(name) = line.strip_prefix("    - name: ") {
                skipping = self.removed.iter().any(|r| r == name);
            } else if !line.starts_with("      ") {
                skipping = false;
            }
            if !skipping {
                text.push_str(line);
                text.push('\n');
            }
        }
        let path = self.state.join("operator.yaml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn sh(&self, host: &str, script: &str) -> Output {
        self.lab(&["ssh", host, "--", "sudo", "sh", "-c", script])
    }

    fn kubeconfig(&self) -> PathBuf {
        self.state.join(format!("{NAME}.kubeconfig"))
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--request-timeout", "20s"])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// The ConfigMap written after the first apply still reads back.
    fn assert_proof_reads_back(&self) {
        let written = self.kubectl_ok(&[
            "get",
            "configmap",
            "membership-proof",
            "-o",
            "jsonpath={.data.written}",
        ]);
        assert_eq!(written, "before");
    }

    fn nodes(&self) -> Vec<String> {
        let text = self.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
        let mut nodes: Vec<String> = text.split_whitespace().map(String::from).collect();
        nodes.sort();
        nodes
    }

    /// `kubeha CMD -f SPEC ARGS…`, timed.
    fn kubeha(&self, cmd: &[&str], args: &[&str]) -> (Output, f64) {
        let spec = self.spec();
        let mut all: Vec<&str> = cmd.to_vec();
        all.extend(["-f", &spec]);
        all.extend_from_slice(args);
        let started = Instant::now();
        let out = kubeha(&all, Path::new("."));
        (out, started.elapsed().as_secs_f64())
    }

    fn kubeha_ok(&self, cmd: &[&str], args: &[&str], what: &str) -> (String, f64) {
        let (out, seconds) = self.kubeha(cmd, args);
        assert!(
            out.status.success(),
            "{what}: {}\n{}\n/etc/hosts then:\n{}",
            stdout(&out),
            stderr(&out),
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        );
        eprintln!("{what}: {seconds:.1}s");
        (stdout(&out), seconds)
    }

    fn status(&self) -> serde_json::Value {
        let (text, _) = self.kubeha_ok(&["status"], &["-o", "json"], "status");
        serde_json::from_str(&text).unwrap()
    }

    /// The etcd members and the HAProxy backends UP, by name, sorted.
    fn members_and_backends(&self) -> (Vec<String>, Vec<String>) {
        let status = self.status();
        let mut members: Vec<String> = status["etcd"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["healthy"] == true)
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        members.sort();
        let all = status["etcd"].as_array().unwrap().len();
        assert_eq!(
            members.len(),
            all,
            "an etcd member is not healthy: {status:#}"
        );
        let mut up: Vec<String> = status["load_balancers"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b[1] == "UP")
            .map(|b| b[0].as_str().unwrap().to_string())
            .collect();
        up.sort();
        (members, up)
    }

    fn remove(&mut self, name: &str, args: &[&str]) -> (serde_json::Value, f64) {
        let mut all = vec![name, "--yes", "-o", "json"];
        all.extend_from_slice(args);
        let (text, seconds) =
            self.kubeha_ok(&["node", "remove"], &all, &format!("node remove {name}"));
        self.removed.push(name.into());
        (serde_json::from_str(&text).unwrap(), seconds)
    }

    fn assert_no_changes(&self) {
        let (out, _) = self.kubeha(&["plan"], &["--detailed-exitcode"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "plan: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));
    }

    /// Hosts the plan changes (cluster-wide steps and the join credentials made through
    /// the bootstrap control plane left out).
    fn planned_hosts(&self) -> Vec<String> {
        let (text, _) = self.kubeha_ok(&["plan"], &["-o", "json"], "plan");
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut hosts: Vec<String> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] != "mint-join-credentials")
            .filter_map(|s| s["host"].as_str().map(String::from))
            .collect();
        hosts.dedup();
        hosts
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.lab(&["down"]);
    }
}

/// The API probed from the test every 100 ms through the endpoint, on a runtime of its
/// own, while kubeha runs.
struct TestProbe {
    runtime: tokio::runtime::Runtime,
    probe: Probe,
}

impl TestProbe {
    fn start(kubeconfig: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let text = std::fs::read_to_string(kubeconfig).unwrap();
        let probe = runtime.block_on(async {
            let client = kubeha::api::client(&text).await.unwrap();
            Probe::start(&client)
        });
        TestProbe { runtime, probe }
    }

    fn finish(self) -> ApiAvailability {
        let samples = self.runtime.block_on(self.probe.finish());
        ApiAvailability::from_samples(&samples)
    }
}

fn availability_of(result: &serde_json::Value) -> (f64, u64, u64) {
    let a = &result["result"]["availability"];
    (
        a["success_ratio"].as_f64().unwrap(),
        a["longest_outage_ms"].as_u64().unwrap(),
        a["requests"].as_u64().unwrap(),
    )
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn nodes_are_added_removed_and_replaced_without_breaking_etcd() {
    if !docker_available() {
        return;
    }
    let began = Instant::now();
    let mut lab = Lab::up();
    lab.kubeha_ok(&["apply"], &["--yes"], "apply (seed)");
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "membership-proof",
        "--from-literal=written=before",
    ]);

    // 1. A third worker: only it changes.
    lab.lab_up(&["--workers", "3"]);
    assert_eq!(lab.planned_hosts(), ["worker-3"]);
    lab.kubeha_ok(&["apply"], &["--yes"], "apply (worker-3 added)");
    assert_eq!(
        lab.nodes(),
        ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]
    );
    let ready = lab.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(
        ready.split_whitespace().filter(|s| *s == "True").count(),
        6,
        "{ready}"
    );

    // 2. The worker removed: drained, its Node gone, its kubelet stopped.
    let (removed, _) = lab.remove("worker-3", &[]);
    assert!(
        removed["result"]["availability"].is_null(),
        "probed only for control planes"
    );
    assert!(!lab.nodes().contains(&"worker-3".to_string()));
    let kubelet = stdout(&lab.sh("worker-3", "systemctl is-active kubelet || true"));
    assert_eq!(kubelet.trim(), "inactive");

    // 3. The init control plane removed while the API is probed through the endpoint.
    let probe = TestProbe::start(&lab.kubeconfig());
    let (removed, seconds) = lab.remove("cp-1", &[]);
    let seen = probe.finish();
    let (ratio, gap, requests) = availability_of(&removed);
    eprintln!(
        "node remove cp-1: {seconds:.1}s; kubeha's probe: {requests} requests, {:.2}% ok, longest gap {gap} ms; the test's: {seen}",
        ratio * 100.0
    );
    assert!(seen.success_ratio >= 0.999, "the test's probe: {seen}");
    assert!(ratio >= 0.999, "kubeha's probe: {removed:#}");
    let steps: Vec<&str> = removed["result"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let at = |prefix: &str| steps.iter().position(|s| s.starts_with(prefix)).unwrap();
    assert!(
        at("remove etcd member") < at("cp-1: kubeadm reset"),
        "the member goes before the reset: {steps:?}"
    );
    assert!(std::path::Path::new(removed["result"]["backup"].as_str().unwrap()).exists());
    assert_eq!(
        lab.members_and_backends(),
        (
            vec!["cp-2".into(), "cp-3".into()],
            vec!["cp-2".into(), "cp-3".into()]
        )
    );
    lab.assert_proof_reads_back();
    lab.assert_no_changes();

    // 4. With cp-2 stopped, removing cp-3 is refused and changes nothing.
    lab.lab_ok(&["fault", "stop", "cp-2"]);
    let (out, _) = lab.kubeha(&["node", "remove"], &["cp-3", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("quorum guard"), "{}", stderr(&out));
    lab.lab_ok(&["fault", "start", "cp-2"]);
    wait_until(
        "etcd healthy with cp-2 back",
        Duration::from_secs(120),
        || {
            let (out, _) = lab.kubeha(&["status"], &["-o", "json"]);
            let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
            status["etcd"]
                .as_array()
                .is_some_and(|m| m.len() == 2 && m.iter().all(|m| m["healthy"] == true))
        },
    );
    let cp3 = lab.kubectl_ok(&[
        "get",
        "node",
        "cp-3",
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(cp3, "", "the refused removal cordoned nothing");
    assert_eq!(lab.members_and_backends().0, ["cp-2", "cp-3"]);

    // 5. cp-1 back (it was reset): it joins through cp-2. Then cp-3 dies for good, is
    // removed with --force, and a fresh cp-4 takes its place.
    lab.removed.retain(|h| h != "cp-1");
    let hosts = lab.planned_hosts();
    assert!(
        hosts.contains(&"cp-1".to_string()) && hosts.iter().all(|h| h == "cp-1" || h == "lb-1"),
        "only cp-1 joins, and HAProxy learns of it: {hosts:?}"
    );
    lab.kubeha_ok(&["apply"], &["--yes"], "apply (cp-1 back)");
    lab.lab_ok(&["fault", "kill", "cp-3"]);
    let (removed, seconds) = lab.remove("cp-3", &["--force"]);
    let (ratio, gap, requests) = availability_of(&removed);
    eprintln!(
        "node remove cp-3 --force: {seconds:.1}s; {requests} requests, {:.2}% ok, longest gap {gap} ms",
        ratio * 100.0
    );
    lab.lab_ok(&["add-host", "--role", "controlPlane"]);
    lab.kubeha_ok(&["apply"], &["--yes"], "apply (cp-4 added)");
    assert_eq!(
        lab.members_and_backends(),
        (
            vec!["cp-1".into(), "cp-2".into(), "cp-4".into()],
            vec!["cp-1".into(), "cp-2".into(), "cp-4".into()]
        )
    );
    lab.assert_no_changes();
    lab.assert_proof_reads_back();

    // A rolling replacement: worker-3 (reset when it was removed) listed again takes
    // worker-2's place in one command.
    lab.removed.retain(|h| h != "worker-3");
    let (text, seconds) = lab.kubeha_ok(
        &["node", "replace"],
        &["worker-2", "worker-3", "--yes", "-o", "json"],
        "node replace worker-2 worker-3",
    );
    let replaced: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(replaced["joined"], "worker-3", "{replaced:#}");
    eprintln!("node replace worker-2 worker-3: {seconds:.1}s");
    lab.removed.push("worker-2".into());
    assert_eq!(
        lab.nodes(),
        ["cp-1", "cp-2", "cp-4", "worker-1", "worker-3"]
    );
    lab.assert_no_changes();

    // A worker rebuilt in place (`apply --replace`): reset, its Node (Ready, which
    // kubeadm join refuses to register again) deleted, joined anew.
    let uid = || lab.kubectl_ok(&["get", "node", "worker-1", "-o", "jsonpath={.metadata.uid}"]);
    let before = uid();
    let (text, _) = lab.kubeha_ok(
        &["apply"],
        &["--replace", "worker-1", "--yes"],
        "apply --replace worker-1",
    );
    assert!(text.contains("delete Node worker-1 from the API"), "{text}");
    assert_ne!(uid(), before, "worker-1 registered a new Node");
    assert_eq!(
        lab.nodes(),
        ["cp-1", "cp-2", "cp-4", "worker-1", "worker-3"]
    );
    lab.assert_no_changes();
    eprintln!("membership test: {:.0}s", began.elapsed().as_secs_f64());
}
