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
        Err(e) => return Err(report(parse_errors(&source, &e))),
    };
    match validate::validate(&doc, paths) {
        Ok((cluster, warnings)) => Ok(Loaded {
            cluster,
            report: report(warnings),
        }),
        Err(diagnostics) => Err(report(diagnostics)),
    }
}

/// How many mistakes of shape one `check` reports before it stops looking.
const MAX_SHAPE_ERRORS: usize = 20;

/// The first deserialisation error and every further independent one: serde stops at
/// the first, so the entry it points at is blanked out (its line and the lines nested
/// under it, offsets kept) and the text parsed again, as long as each error is a
/// mistake of shape (unknown key or value, wrong type) on a new line. Validation of
/// values only runs once the shape is right, because a blanked entry would be reported
/// again as missing.
fn parse_errors(source: &str, first: &serde_saphyr::Error) -> Vec<Diagnostic> {
    let mut diagnostics = vec![parse_error(first)];
    let mut text = source.to_string();
    let mut error_line = first.location().map(|l| l.line());
    while diagnostics.len() < MAX_SHAPE_ERRORS {
        let Some(line) = error_line.filter(|&l| l > 0) else {
            break;
        };
        let Some(blanked) = blank_entry(&text, line as usize) else {
            break;
        };
        text = blanked;
        match serde_saphyr::from_str::<raw::Document>(&text) {
            Ok(_) => break,
            Err(e) => {
                let next = e.location().map(|l| l.line());
                if !is_shape_error(&e) || next.is_none() || next == error_line {
                    break;
                }
                diagnostics.push(parse_error(&e));
                error_line = next;
            }
        }
    }
    diagnostics
}

/// Errors that say what a value or key is, not that the YAML itself is broken (which
/// blanking lines could have caused).
fn is_shape_error(e: &serde_saphyr::Error) -> bool {
    let message = e.without_snippet().to_string();
    [
        "unknown field",
        "unknown variant",
        "invalid type",
        "invalid value",
        "invalid i64",
        "invalid u",
    ]
    .iter()
    .any(|what| message.contains(what))
}

/// `text` with line `line` (1-based) and the more indented lines under it replaced by
/// spaces, so every other byte keeps its offset; `None` when there is nothing to blank.
fn blank_entry(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let target = lines.get(line - 1)?;
    if target.trim().is_empty() {
        return None;
    }
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(target);
    let mut out = String::with_capacity(text.len());
    let mut in_entry = false;
    for (i, l) in lines.iter().enumerate() {
        let empty = l.trim().is_empty();
        in_entry = if i + 1 == line {
            true
        } else {
            in_entry && (empty || indent(l) > base)
        };
        if in_entry && !empty {
            let body = l.trim_end_matches(['\n', '\r']);
            out.push_str(&" ".repeat(body.len()));
            out.push_str(&l[body.len()..]);
        } else {
            out.push_str(l);
        }
    }
    Some(out)
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
    fn independent_mistakes_of_shape_are_all_reported() {
        let text = starter::STARTER_SPEC
            .replacen("roles: [controlPlane]", "roles: [controlPlan]", 1)
            .replacen("podSubnet:", "podSubnt:", 1);
        let paths = PathContext {
            spec_dir: "/nonexistent".into(),
            home: None,
        };
        let report = load_str(Path::new("c.yaml"), text, &paths).unwrap_err();
        let messages: Vec<&str> = report
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].starts_with("unknown variant `controlPlan`"),
            "{messages:#?}"
        );
        assert!(
            messages[1].starts_with("unknown field `podSubnt`"),
            "{messages:#?}"
        );
    }

    #[test]
    fn blanking_keeps_offsets_and_takes_nested_lines() {
        let text = "a: 1\nb:\n  c: 2\n\n  d: 3\ne: 4\n";
        let blanked = blank_entry(text, 2).unwrap();
        assert_eq!(blanked.len(), text.len());
        assert_eq!(blanked, "a: 1\n  \n      \n\n      \ne: 4\n");
        assert!(blank_entry(text, 4).is_none());
        assert!(blank_entry(text, 99).is_none());
    }

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
