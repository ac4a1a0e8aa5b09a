//! The cluster spec: parse `cluster.yaml`, apply defaults, validate. Pure apart from
//! reading the file itself and checking that referenced local files exist.

#[cfg(test)]
mod coverage;
mod diagnostic;
pub mod model;
pub(crate) mod raw;
pub mod starter;
pub mod text;
mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::{escape_controls, Diagnostic, Position, Report, Severity};
pub use model::*;
pub use validate::{PathContext, DEFAULT_CALICO_VERSION, DEFAULT_KUBERNETES_VERSION};

/// A spec that passed validation, with any warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cluster: Cluster,
    pub report: Report,
}

/// Reads and validates a spec file. `Err` carries a report with at least one error.
pub fn load_file(path: &Path) -> Result<Loaded, Report> {
    let refuse = |diagnostic: Diagnostic, source: String| Report {
        file: path.to_path_buf(),
        source,
        diagnostics: vec![diagnostic],
    };
    let bytes = std::fs::read(path).map_err(|e| {
        refuse(
            Diagnostic::error(None, format!("cannot read the spec: {e}"))
                .with_help("pass the cluster spec with `-f FILE` (`kubeha init` writes one)"),
            String::new(),
        )
    })?;
    let source = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let valid = std::str::from_utf8(valid).expect("the prefix is valid UTF-8");
        let line = valid.matches('\n').count() as u64 + 1;
        let column = valid
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count() as u64
            + 1;
        let at = Position {
            line,
            column,
            offset: valid.len(),
            len: 1,
        };
        // Show the lines before the bad byte; the rest cannot be printed as text.
        refuse(
            Diagnostic::error(Some(at), "the spec is not valid UTF-8 text")
                .with_help("save the file as UTF-8"),
            valid.to_string(),
        )
    })?;
    let spec_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let paths = PathContext {
        spec_dir,
        home: std::env::var_os("HOME").map(PathBuf::from),
    };
    load_str(path, source, &paths)
}

/// Validates spec text; `file` is only used to name the source in diagnostics.
pub fn load_str(file: &Path, source: String, paths: &PathContext) -> Result<Loaded, Report> {
    let report = |diagnostics| Report {
        file: file.to_path_buf(),
        source: source.clone(),
        diagnostics,
    };
    let doc: raw::Document = match serde_saphyr::from_str(&source) {
        Ok(doc) => doc,
        Err(e) => return Err(report(vec![parse_error(&e)])),
    };
    match validate::validate(&doc, paths) {
        Ok((cluster, warnings)) => Ok(Loaded {
            cluster,
            report: report(warnings),
        }),
        Err(diagnostics) => Err(report(diagnostics)),
    }
}

/// Turns a YAML or type error into one diagnostic; unknown fields and values get a
/// "did you mean" from the list serde reports as expected.
fn parse_error(e: &serde_saphyr::Error) -> Diagnostic {
    let position = e.location().as_ref().and_then(Position::from_location);
    let message = e.without_snippet().to_string();
    let message = strip_position(message.lines().next().unwrap_or_default().trim()).to_string();
    if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(',').next().unwrap_or(key);
        return Diagnostic::error(position, format!("duplicate key `{key}`")).with_help(
            "each key may appear only once in a mapping; remove or merge the repeated one",
        );
    }
    if message.starts_with("invalid i64") || message.starts_with("invalid u") {
        return Diagnostic::error(position, "expected a whole number")
            .with_help("write the number without quotes or units, e.g. `6443`");
    }
    if message.ends_with("is not allowed in a spec value")
        || message.contains("is too long: the limit is")
        || message.contains("secret placeholder")
    {
        return Diagnostic::error(position, message).with_help(
            "spec values are plain, printable text: kubeha writes them into shell scripts and configs",
        );
    }
    let diagnostic = Diagnostic::error(position, message.clone());
    for what in ["unknown field", "unknown variant"] {
        if let Some((word, expected)) = unknown_and_expected(&message, what) {
            let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
            let help = match validate::suggest(&word, &expected) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of: {}", expected.join(", ")),
            };
            return diagnostic.with_help(help);
        }
    }
    diagnostic.with_help("see `kubeha init` for a commented example of every field")
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (serde-saphyr drops the
/// backquotes from the list), returning the unknown word and the expected names.
fn unknown_and_expected(message: &str, what: &str) -> Option<(String, Vec<String>)> {
    let rest = &message[message.find(what)? + what.len()..];
    let word = rest.split('`').nth(1)?.to_string();
    let (_, list) = rest.split_once(", expected ")?;
    let list = list.strip_prefix("one of ").unwrap_or(list);
    let expected = list
        .split(", ")
        .map(|name| name.trim().trim_matches('`').to_string())
        .filter(|name| !name.is_empty())
        .collect();
    Some((word, expected))
}

/// serde-saphyr appends " at line L, column C"; the diagnostic shows the position itself.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => &message[..i],
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_unknown_and_expected_names() {
        let (w, e) = unknown_and_expected(
            "unknown field `adress`, expected one of `name`, `address`",
            "unknown field",
        )
        .unwrap();
        assert_eq!(w, "adress");
        assert_eq!(e, vec!["name", "address"]);
        let (w, e) = unknown_and_expected(
            "unknown variant `wroker`, expected one of loadBalancer, controlPlane, worker",
            "unknown variant",
        )
        .unwrap();
        assert_eq!(w, "wroker");
        assert_eq!(e, vec!["loadBalancer", "controlPlane", "worker"]);
        assert!(unknown_and_expected("invalid type", "unknown field").is_none());
        assert_eq!(strip_position("bad at line 3, column 7"), "bad");
    }
}
