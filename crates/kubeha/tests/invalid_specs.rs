//! The corpus under `tests/invalid/`: every file is a spec with one mistake. Its first
//! line says where kubeha must point and what it must say:
//! `# expect: LINE:COL: MESSAGE [## help: HELP]`.

mod common;

use std::path::Path;

use common::{kubeha, stderr, stdout};

struct Expectation {
    line_col: String,
    message: String,
    help: Option<String>,
}

fn expectation(text: &str) -> Expectation {
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("# expect: ")
        .expect("each corpus file starts with `# expect: `");
    let (rest, help) = match rest.split_once(" ## help: ") {
        Some((r, h)) => (r, Some(h.to_string())),
        None => (rest, None),
    };
    let mut parts = rest.splitn(3, ':');
    let (line, col, message) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    Expectation {
        line_col: format!("{line}:{col}"),
        message: message.trim().to_string(),
        help,
    }
}

#[test]
fn every_invalid_spec_is_refused_with_its_location_and_exit_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus must hold at least 30 specs");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let expect = expectation(&std::fs::read_to_string(file).unwrap());
        let out = kubeha(&["check", "-f", name], &dir);
        let err = stderr(&out);
        let wanted = format!("{name}:{}: error: {}", expect.line_col, expect.message);
        if out.status.code() != Some(2) {
            failures.push(format!("{name}: exit {:?}, want 2", out.status.code()));
        }
        if !err.lines().any(|l| l == wanted) {
            failures.push(format!("{name}: want line\n  {wanted}\ngot\n{err}"));
        }
        if let Some(help) = &expect.help {
            if !err.contains(&format!("= help: {help}")) {
                failures.push(format!("{name}: missing help `{help}` in\n{err}"));
            }
        }
        if !stdout(&out).is_empty() {
            failures.push(format!(
                "{name}: nothing belongs on stdout for an invalid spec"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_diagnostics_carry_line_and_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let out = kubeha(
        &["check", "-f", "02-unknown-host-field.yaml", "-o", "json"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(doc["errors"], 1);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(15), Some(7))
    );
    assert_eq!(d["help"], "did you mean `address`?");
}
