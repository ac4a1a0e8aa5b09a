//! What every lab test needs: Docker (required under CI), the workspace, and the
//! Kubernetes packages the lab's mirror serves. Included with `#[path]` by the lab test
//! binaries only, so the others do not carry it unused.
// Each lab test binary uses its own part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Docker is required when CI=true"
        );
        eprintln!("SKIPPED: Docker is not available; the lab tests need it");
    }
    ok
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Kubernetes packages the lab's mirror serves (the stand-in, as no real ones can be
/// fetched here), built into the target folder.
pub fn kubernetes_debs() -> Vec<PathBuf> {
    kubernetes_debs_of(&["1.31.0"])
}

/// The packages of each of `versions` (`1.31.0`), as [`kubernetes_debs`] builds them.
pub fn kubernetes_debs_of(versions: &[&str]) -> Vec<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standin-debs");
    let status = Command::new("bash")
        .arg(workspace().join("crates/k8s-standin/package-debs.sh"))
        .arg(&out)
        .args(versions)
        .status()
        .expect("the packaging script runs");
    assert!(status.success(), "building the Kubernetes packages failed");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            versions.iter().any(|v| name.contains(&format!("_{v}-")))
        })
        .collect();
    debs.sort();
    assert!(!debs.is_empty(), "no .deb in {}", out.display());
    debs
}

/// The seed lab named `name`, its mirror serving the stand-in packages of `versions`,
/// taken down however the test ends.
pub struct SeedLab {
    pub name: &'static str,
    pub state: PathBuf,
}

impl SeedLab {
    pub fn up(name: &'static str, versions: &[&str]) -> Self {
        let debs = kubernetes_debs_of(versions);
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-lab"));
        let _ = std::fs::remove_dir_all(&state);
        let lab = SeedLab { name, state };
        let calico = workspace().join("../shared/fixtures/calico-v3.28.1.yaml");
        let mut args: Vec<String> = ["lab", "up", "--name", name, "--topology", "seed"]
            .map(String::from)
            .into();
        args.extend(["--state-dir".into(), lab.state.display().to_string()]);
        args.extend(["--calico-manifest".into(), calico.display().to_string()]);
        for deb in &debs {
            args.extend(["--debs".into(), deb.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = super::common::kubeha(&args, Path::new("."));
        assert!(
            out.status.success(),
            "lab up: {}",
            super::common::stderr(&out)
        );
        lab
    }

    pub fn spec(&self) -> String {
        self.state.join("cluster.yaml").display().to_string()
    }

    /// The admin kubeconfig `apply` wrote beside the spec.
    pub fn kubeconfig(&self) -> PathBuf {
        std::fs::read_dir(&self.state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "kubeconfig"))
            .expect("apply wrote the admin kubeconfig")
    }
}

impl Drop for SeedLab {
    fn drop(&mut self) {
        let state = self.state.display().to_string();
        let _ = super::common::kubeha(
            &["lab", "--name", self.name, "--state-dir", &state, "down"],
            Path::new("."),
        );
    }
}

/// The last JSON document a command printed on stdout.
pub fn last_json(out: &std::process::Output) -> serde_json::Value {
    let text = super::common::stdout(out);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON in {text}{}", super::common::stderr(out)))
}

/// Asks /readyz through the lab's endpoint every 100 ms on a thread, a new connection
/// each time as a client of the cluster would.
pub struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(std::time::Duration, bool)>>,
}

impl Probe {
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let began = std::time::Instant::now();
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let at = began.elapsed();
                let ok = Command::new("curl")
                    .args(["-skf", "--max-time", "2", "-o", "/dev/null"])
                    .arg("https://load-balancer.local:6443/readyz")
                    .status()
                    .is_ok_and(|s| s.success());
                samples.push((at, ok));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            samples
        });
        Self { stop, thread }
    }

    /// (answered, sent, the longest time from an answer to the next after failures).
    pub fn stop(self) -> (usize, usize, std::time::Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self.thread.join().unwrap();
        let ok = samples.iter().filter(|s| s.1).count();
        let mut longest = std::time::Duration::ZERO;
        let mut last_ok = None;
        let mut failing = false;
        for (at, answered) in &samples {
            if *answered {
                if let (true, Some(from)) = (failing, last_ok) {
                    longest = longest.max(*at - from);
                }
                failing = false;
                last_ok = Some(*at);
            } else {
                failing = true;
            }
        }
        (ok, samples.len(), longest)
    }
}

/// `plan --detailed-exitcode` finds nothing to do: the cluster matches `spec`.
pub fn assert_no_changes(spec: &str) {
    let out = super::common::kubeha(&["plan", "-f", spec, "--detailed-exitcode"], Path::new("."));
    let text = super::common::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        super::common::stderr(&out)
    );
    assert!(text.contains("No changes"), "{text}");
}
