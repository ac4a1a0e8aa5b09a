//! What every lab test needs: Docker (required under CI), the workspace, and the
//! Kubernetes packages the lab's mirror serves. Included with `#[path]` by the lab test
//! binaries only, so the others do not carry it unused.

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
#[allow(dead_code)] // e2e_upgrade needs two versions and calls `kubernetes_debs_of`.
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
