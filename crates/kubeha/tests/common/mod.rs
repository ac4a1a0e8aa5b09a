//! Helpers shared by the CLI tests: run the real `kubeha` binary.

use std::path::Path;
use std::process::{Command, Output};

pub fn kubeha(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeha"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the kubeha binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
