//! The functional core stays pure: spec, facts parsing, plan and render never reach
//! hosts, the network or the clock through tokio, openssh or kube. A new import of
//! either in those modules fails here; move the effect to apply/, remote/ or api.rs.

use std::path::{Path, PathBuf};

const PURE: [&str; 4] = ["spec", "facts", "plan", "render"];
const FORBIDDEN: [&str; 7] = [
    "tokio",
    "openssh",
    "kube::",
    "kube_client",
    "kube_runtime",
    "k8s_openapi",
    "crate::api",
];

/// A forbidden name as a path's first segment (`use tokio::…`, `kube::Client`), outside
/// comments.
fn names_forbidden(line: &str) -> Option<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    FORBIDDEN.into_iter().find(|word| {
        code.match_indices(word).any(|(i, _)| {
            let before = i.checked_sub(1).map(|j| code.as_bytes()[j]);
            !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        })
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn pure_modules_import_no_runtime_ssh_or_kubernetes_client() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for module in PURE {
        rust_files(&src.join(module), &mut files);
    }
    assert!(
        files.len() > 10,
        "the pure modules were not found: {files:?}"
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(word) = names_forbidden(line) {
                found.push(format!(
                    "{}:{}: `{word}` in {}",
                    file.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "pure modules import effects:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scanner_sees_an_import() {
    assert_eq!(names_forbidden("use tokio::time::sleep;"), Some("tokio"));
    assert_eq!(
        names_forbidden("    let c: kube::Client = x;"),
        Some("kube::")
    );
    assert_eq!(
        names_forbidden("use crate::api::client;"),
        Some("crate::api")
    );
    assert_eq!(names_forbidden("for h in cluster.kube_nodes() {"), None);
    assert_eq!(
        names_forbidden("let n = 1; // tokio would block here"),
        None
    );
}
