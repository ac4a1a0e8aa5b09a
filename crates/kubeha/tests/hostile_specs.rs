//! The corpus under `tests/hostile/`: each file is `complete.yml` (every field set) with
//! one hostile value (shell metacharacters, quotes, line breaks, NUL, control characters,
//! a leading `-`, a secret placeholder, an over-long value) in one field. Its header says
//! which field (`# field: PATH`, checked for coverage by `spec::coverage`) and where
//! kubeha must point (`# expect: LINE:COL`).
//!
//! Every one must be refused before anything is written: `check` exits 2 with a located
//! error, `render` exits 2 and writes nothing, and no control character reaches the
//! terminal.

mod common;

use std::path::{Path, PathBuf};

use common::{kubeha, stderr, stdout};

fn corpus() -> (PathBuf, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    (dir, names)
}

fn expected_place(dir: &Path, name: &str) -> String {
    let text = std::fs::read(dir.join(name)).unwrap();
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{name} has no `# expect: LINE:COL` header"));
    line.trim().to_string()
}

#[test]
fn every_hostile_spec_is_refused_at_its_value() {
    let (dir, names) = corpus();
    assert!(names.len() >= 60, "the corpus must hold at least 60 specs");
    let mut failures = Vec::new();
    for name in &names {
        let place = expected_place(&dir, name);
        let out = kubeha(&["check", "-f", name], &dir);
        let err = stderr(&out);
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{name}: check exit {:?}, want 2",
                out.status.code()
            ));
        }
        let wanted = format!("{name}:{place}: error: ");
        if !err.lines().any(|l| l.starts_with(&wanted)) {
            failures.push(format!(
                "{name}: want a line starting `{wanted}`, got\n{err}"
            ));
        }
        if let Some(c) = err.chars().find(|&c| c.is_control() && c != '\n') {
            failures.push(format!(
                "{name}: control character U+{:04X} printed to the terminal",
                c as u32
            ));
        }
        if !stdout(&out).is_empty() {
            failures.push(format!("{name}: nothing belongs on stdout"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn render_writes_nothing_for_a_hostile_spec() {
    let (dir, names) = corpus();
    let out_root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for name in &names {
        let target = out_root.path().join(name);
        let out = kubeha(
            &["render", "-f", name, "--out", target.to_str().unwrap()],
            &dir,
        );
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{name}: render exit {:?}, want 2",
                out.status.code()
            ));
        }
        if target.exists() {
            failures.push(format!("{name}: render created {}", target.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_base_is_valid() {
    // Otherwise a hostile file could be refused for a mistake it inherited.
    let (dir, _) = corpus();
    let out = kubeha(&["check", "-f", "complete.yml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
