//! Helpers shared by the CLI tests: run the real `kubeha` binary.

use std::path::Path;
use std::process::{Command, Output};

pub fn kubeha(args: &[&str], dir: &Path) -> Output {
    kubeha_with_env(args, dir, &[])
}

/// [`kubeha`] with these environment variables set too.
pub fn kubeha_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeha"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("the kubeha binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `kubeha init`'s starter spec into `dir/cluster.yaml` with every address moved
/// from its documentation range (192.0.2.0/24) to loopback and SSH to port 1, where
/// nothing listens: a test that gets as far as connecting reaches no other machine.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub fn write_unreachable_starter(dir: &Path) {
    let spec = stdout(&kubeha(&["init", "--out", "-"], dir))
        .replace("192.0.2.", "127.0.0.")
        .replace("    port: 22\n", "    port: 1\n");
    assert!(
        !spec.contains("192.0.2."),
        "the starter spec still names a documentation address"
    );
    std::fs::write(dir.join("cluster.yaml"), spec).unwrap();
}
