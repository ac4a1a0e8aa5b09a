//! A rolling upgrade in the lab: the seed cluster built at v1.31.0 is upgraded to
//! v1.32.0 by `kubeha upgrade` while a probe through the endpoint asks the API every
//! 100 ms. kubeha is killed once during the second control plane's upgrade and once
//! during a worker's drain (held by a PodDisruptionBudget); the next run finishes the
//! job. Needs Docker; skipped with a message only when Docker is absent and CI is not set.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{kubeha, stderr, stdout};
#[path = "common/lab.rs"]
mod lab;
use lab::{assert_no_changes, docker_available, last_json, Probe, SeedLab};

const NAME: &str = "e2e-upgrade";
const NODES: [&str; 5] = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"];
const FROM: &str = "v1.31.0";
const TO: &str = "v1.32.0";

/// The seed lab with both versions in its mirror.
struct Lab {
    seed: SeedLab,
}

impl Lab {
    fn kubeconfig(&self) -> PathBuf {
        self.seed.kubeconfig()
    }

    /// This machine's kubectl through the endpoint, with `input` on its stdin.
    fn kubectl(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn nodes(&self) -> serde_json::Value {
        serde_json::from_str(&self.kubectl(&["get", "nodes", "-o", "json"], "")).unwrap()
    }
}

/// `kubeha upgrade` with its ndjson events on a channel.
struct Upgrade {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
    log: PathBuf,
}

impl Upgrade {
    fn start(spec: &str, log: PathBuf) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubeha"))
            .args(["upgrade", "-f", spec, "--to", TO, "--yes", "-o", "ndjson"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kubeha runs");
        let stdout = child.stdout.take().unwrap();
        let (send, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    if send.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Upgrade { child, events, log }
    }

    /// Kills kubeha (SIGKILL: no cleanup of its own) once `when` has held for an event
    /// and `then` more has passed; returns that event's message.
    fn kill_when(mut self, when: impl Fn(&serde_json::Value) -> bool, then: Duration) -> String {
        let deadline = Instant::now() + Duration::from_secs(420);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(e) = self.events.recv_timeout(left) else {
                panic!(
                    "kubeha ended (or stalled) before the step to kill it in:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            };
            if e["event"] == "progress" && e["status"] == "started" && when(&e) {
                std::thread::sleep(then);
                self.child.kill().unwrap();
                self.child.wait().unwrap();
                return format!("{} {}", e["host"], e["message"]);
            }
        }
    }
}

/// Two replicas that may not lose one: a drain of a node running either waits.
const GUARDED: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/pause:3.10}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#;

#[test]
fn rolling_upgrade_keeps_the_api_up_and_resumes_after_kills() {
    if !docker_available() {
        return;
    }
    let test_started = Instant::now();
    let lab = Lab {
        seed: SeedLab::up(NAME, &["1.31.0", "1.32.0"]),
    };
    let spec = lab.seed.spec();
    let started = Instant::now();
    let out = kubeha(&["apply", "-f", &spec, "--yes"], Path::new("."));
    assert!(out.status.success(), "apply failed:\n{}", stderr(&out));
    let cold_apply = started.elapsed().as_secs_f64();
    let nodes = lab.nodes();
    for n in nodes["items"].as_array().unwrap() {
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], FROM);
    }
    lab.kubectl(&["apply", "-f", "-"], GUARDED);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = lab.kubectl(
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                r#"jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}"#,
            ],
            "",
        );
        if ready.split_whitespace().filter(|s| *s == "True").count() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guarded pods are not Ready: {ready}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    let probe = Probe::start();
    let started = Instant::now();
    // First cut: in the middle of the second control plane's `kubeadm upgrade node`.
    let cut = Upgrade::start(
        &spec,
        lab.seed.state.join(format!("upgrade-{}.log", line!())),
    )
    .kill_when(
        |e| {
            e["host"] == "cp-2"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("kubeadm upgrade node")
        },
        Duration::from_millis(1500),
    );
    eprintln!("killed kubeha during: {cut}");
    // Second cut: the drain of a worker running a guarded pod, which the budget holds.
    let held = lab.kubectl(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ],
        "",
    );
    let held: Vec<String> = held
        .split_whitespace()
        .map(|n| format!("drain {n} "))
        .collect();
    assert!(!held.is_empty(), "the guarded pods run nowhere");
    let cut = Upgrade::start(
        &spec,
        lab.seed.state.join(format!("upgrade-{}.log", line!())),
    )
    .kill_when(
        |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| held.iter().any(|h| m.starts_with(h.as_str())))
        },
        Duration::from_secs(4),
    );
    eprintln!("killed kubeha during: {cut}");
    let cordoned: Vec<String> = lab.nodes()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["spec"]["unschedulable"] == true)
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !cordoned.is_empty(),
        "the killed drain had cordoned its worker"
    );
    // The budget allows one disruption again; the next run finishes the drain.
    lab.kubectl(
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":1}}"#,
        ],
        "",
    );
    let out = kubeha(
        &["upgrade", "-f", &spec, "--to", TO, "--yes", "-o", "json"],
        Path::new("."),
    );
    assert!(
        out.status.success(),
        "the resumed upgrade failed:\n{}",
        stderr(&out)
    );
    let upgrade_seconds = started.elapsed().as_secs_f64();
    let (ok, all, gap) = probe.stop();
    let report = last_json(&out);
    eprintln!(
        "cold apply {cold_apply:.0}s; upgrade (three runs, two killed) {upgrade_seconds:.0}s; \
         last run: {report:#}"
    );
    let ratio = ok as f64 / all as f64;
    eprintln!(
        "test probe through the endpoint: {ok}/{all} answered ({:.2} %), longest gap {:.1}s",
        ratio * 100.0,
        gap.as_secs_f64()
    );
    assert!(ratio >= 0.999, "{ok}/{all} probes answered");
    assert!(gap <= Duration::from_secs(2), "the API was out for {gap:?}");
    assert!(report["apiAvailability"]["requests"].as_u64().unwrap() > 0);
    assert!(report["backup"]
        .as_str()
        .is_some_and(|p| Path::new(p).exists()));

    let nodes = lab.nodes();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), NODES.len());
    for n in items {
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], TO, "{n:#}");
        assert_ne!(
            n["spec"]["unschedulable"], true,
            "{} left cordoned",
            n["metadata"]["name"]
        );
    }
    let config = lab.kubectl(
        &[
            "-n",
            "kube-system",
            "get",
            "configmap",
            "kubeadm-config",
            "-o",
            "jsonpath={.data.ClusterConfiguration}",
        ],
        "",
    );
    assert!(
        config.contains(&format!("kubernetesVersion: {TO}")),
        "{config}"
    );

    // The spec says the new version now: nothing is left to do, and a second upgrade
    // run finds nothing either.
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains(&format!("version: {FROM}")), "{text}");
    std::fs::write(
        &spec,
        text.replace(&format!("version: {FROM}"), &format!("version: {TO}")),
    )
    .unwrap();
    assert_no_changes(&spec);
    eprintln!("test took {:.0}s", test_started.elapsed().as_secs_f64());
}
