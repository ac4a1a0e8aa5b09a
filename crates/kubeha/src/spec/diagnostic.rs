//! Problems found in a spec, each tied to where it was written.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_saphyr::Location;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A position in the spec file: 1-based line and column, plus the byte range for snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
    #[serde(skip)]
    pub offset: usize,
    #[serde(skip)]
    pub len: usize,
}

impl Position {
    /// `None` for values that were not written in the file (defaults).
    pub fn from_location(loc: &Location) -> Option<Self> {
        if loc.line() == 0 {
            return None;
        }
        let span = loc.span();
        Some(Self {
            line: loc.line(),
            column: loc.column(),
            offset: span.byte_offset().unwrap_or(0) as usize,
            len: span.byte_len().unwrap_or(0) as usize,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

impl Diagnostic {
    pub fn error(position: Option<Position>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            help: None,
            position,
        }
    }

    pub fn warning(position: Option<Position>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(position, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every diagnostic of one spec file, with the text needed to show snippets.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: PathBuf,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// Human output: `file:line:col: severity: message`, then the source line with a caret
    /// under the column and the help text. Stable and grep-friendly, colour only on request.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            render_one(&mut out, &self.file, &self.source, d, color);
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file,
            "errors": self.count(Severity::Error),
            "warnings": self.count(Severity::Warning),
            "diagnostics": self.diagnostics,
        })
    }
}

fn render_one(out: &mut String, file: &Path, source: &str, d: &Diagnostic, color: bool) {
    use std::fmt::Write;
    let (on, off) = match (color, d.severity) {
        (false, _) => ("", ""),
        (true, Severity::Error) => ("\x1b[1;31m", "\x1b[0m"),
        (true, Severity::Warning) => ("\x1b[1;33m", "\x1b[0m"),
    };
    let place = match d.position {
        Some(p) => format!("{}:{}:{}", file.display(), p.line, p.column),
        None => file.display().to_string(),
    };
    let _ = writeln!(
        out,
        "{place}: {on}{}{off}: {}",
        d.severity,
        escape_controls(&d.message)
    );
    if let Some(p) = d.position {
        if let Some(text) = source.lines().nth(p.line as usize - 1) {
            // One character for one, so the caret stays under its column.
            let text: String = text
                .chars()
                .map(|c| {
                    if is_unsafe_on_terminal(c) {
                        '\u{FFFD}'
                    } else {
                        c
                    }
                })
                .collect();
            let gutter = p.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_at = text
                .chars()
                .take(p.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect::<String>();
            let _ = writeln!(
                out,
                "{pad} |\n{gutter} | {text}\n{pad} | {caret_at}{on}^{off}"
            );
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  = help: {}", escape_controls(help));
    }
}

/// Control and invisible characters a terminal would act on (or hide), except tab.
fn is_unsafe_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\t') || super::text::is_invisible(c)
}

/// Text safe to print: every control character written as `\u{..}`, so a spec value
/// quoted in a message can neither drive the terminal nor forge another line.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if is_unsafe_on_terminal(c) => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["name", "address", "internalAddress", "roles"];
        assert_eq!(did_you_mean("adress", fields), Some("address"));
        assert_eq!(did_you_mean("role", fields), Some("roles"));
        assert_eq!(did_you_mean("zzzz", fields), None);
    }

    #[test]
    fn renders_location_snippet_and_help() {
        let report = Report {
            file: "c.yaml".into(),
            source: "a: 1\nbb: 2\n".into(),
            diagnostics: vec![Diagnostic::error(
                Some(Position {
                    line: 2,
                    column: 5,
                    offset: 9,
                    len: 1,
                }),
                "bad value",
            )
            .with_help("use 1")],
        };
        let text = report.render(false);
        assert_eq!(
            text,
            "c.yaml:2:5: error: bad value\n  |\n2 | bb: 2\n  |     ^\n  = help: use 1\n"
        );
        assert!(report.has_errors());
    }

    #[test]
    fn control_characters_are_never_printed() {
        let report = Report {
            file: "c.yaml".into(),
            source: "name: \"a\u{1b}[2Jb\"\u{7}\n".into(),
            diagnostics: vec![Diagnostic::error(
                Some(Position {
                    line: 1,
                    column: 7,
                    offset: 6,
                    len: 1,
                }),
                "bad `a\u{1b}[2J\nforged: error`",
            )
            .with_help("x\u{202e}y")],
        };
        let text = report.render(false);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'));
        assert!(
            text.contains("bad `a\\u{1b}[2J\\u{a}forged: error`"),
            "{text}"
        );
        assert!(
            text.contains("1 | name: \"a\u{FFFD}[2Jb\"\u{FFFD}\n"),
            "{text}"
        );
    }
}
