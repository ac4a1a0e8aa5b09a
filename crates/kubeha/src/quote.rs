//! The one place values are quoted for the languages kubeha writes: POSIX shell words
//! (runbook.sh and every remote command) and ssh_config values.
//!
//! Validation already narrows what spec values may hold; quoting is the second wall, so
//! a value that slipped through is still data, never code.

use std::fmt;
use std::path::Path;

/// A value that cannot be represented in the target language at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unquotable {
    pub reason: &'static str,
}

impl fmt::Display for Unquotable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for Unquotable {}

/// Characters that never need quoting in a shell word (and cannot start an expansion).
fn shell_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'@' | b'%' | b'+' | b':' | b',' | b'.' | b'/' | b'-'
        )
}

/// One shell word holding exactly `s`: bare when every character is inert, otherwise in
/// single quotes (inside which nothing is special) with each `'` written as `'\''`.
/// Errors only for NUL, which no shell word (and no argv entry) can carry.
pub fn try_shell(s: &str) -> Result<String, Unquotable> {
    if s.contains('\0') {
        return Err(Unquotable {
            reason: "a NUL byte cannot be passed in a shell word",
        });
    }
    if !s.is_empty() && s.bytes().all(shell_safe) {
        return Ok(s.to_string());
    }
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}

/// [`try_shell`] for values validation has already cleared of NUL bytes (every spec
/// value and every rendered constant).
pub fn shell(s: &str) -> String {
    try_shell(s).expect("validation refuses NUL bytes in every value that reaches a shell")
}

/// Several words, each quoted, joined by spaces.
pub fn shell_words<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words.into_iter().map(shell).collect::<Vec<_>>().join(" ")
}

/// An ssh_config argument holding exactly `value`, for keywords that do not expand
/// `%` tokens (HostName, User, Port, ProxyJump…; use [`ssh_config_path`] for files).
///
/// Always double-quoted, so spaces, `#` and `=` stay inside the argument. OpenSSH
/// before 8.7 has no escapes inside quotes, so `"` and `\` cannot be written portably
/// and are refused, as are control characters (a newline would start a new directive)
/// and `%` (a token-expanding keyword would read it as a token).
///
/// Not for ProxyJump, ProxyCommand, LocalCommand or RemoteCommand: OpenSSH takes the
/// rest of their line unparsed, quotes included. Give a bastion its own `Host` block
/// (HostName, User, Port, IdentityFile quoted here) and point ProxyJump at that block's
/// fixed alias.
pub fn ssh_config(value: &str) -> Result<String, Unquotable> {
    if value.contains('%') {
        return Err(Unquotable {
            reason: "`%` starts an ssh_config token; use ssh_config_path for files",
        });
    }
    ssh_config_quoted(value)
}

/// An ssh_config file argument (IdentityFile, UserKnownHostsFile, ControlPath…):
/// like [`ssh_config`], with `%` written as `%%` because these keywords expand tokens.
pub fn ssh_config_path(path: &Path) -> Result<String, Unquotable> {
    let text = path.to_str().ok_or(Unquotable {
        reason: "ssh_config paths must be UTF-8",
    })?;
    ssh_config_quoted(&text.replace('%', "%%"))
}

fn ssh_config_quoted(value: &str) -> Result<String, Unquotable> {
    let refuse = |reason| Err(Unquotable { reason });
    if value.is_empty() {
        return refuse("ssh_config cannot hold an empty argument");
    }
    if value.chars().any(char::is_control) {
        return refuse("control characters cannot appear in ssh_config");
    }
    if value.contains(['"', '\\']) {
        return refuse("ssh_config cannot portably quote `\"` or `\\`");
    }
    Ok(format!("\"{value}\""))
}

/// A single-quoted HAProxy configuration argument: inside `'…'` HAProxy expands no
/// environment variables and honours no escapes, so only `'` itself (and control
/// characters, which end the line) cannot be written.
pub fn haproxy(value: &str) -> Result<String, Unquotable> {
    if value.contains('\'') || value.chars().any(char::is_control) {
        return Err(Unquotable {
            reason: "HAProxy cannot hold `'` or control characters in a single-quoted argument",
        });
    }
    Ok(format!("'{value}'"))
}

/// A double-quoted keepalived.conf argument. keepalived has no escapes: `"` cannot be
/// written, and `#`, `!`, `{` and `}` (comments and blocks) are refused as well.
pub fn keepalived(value: &str) -> Result<String, Unquotable> {
    if value.contains(['"', '#', '!', '{', '}']) || value.chars().any(char::is_control) {
        return Err(Unquotable {
            reason: "keepalived.conf cannot hold `\"`, `#`, `!`, braces or control characters",
        });
    }
    Ok(format!("\"{value}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of `word`: the argv it would pass on.
    fn sh_argv(word: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {word}"))
            .output()
            .expect("sh runs");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(String::from)
            .collect()
    }

    #[test]
    fn shell_words_reach_sh_unchanged() {
        for value in [
            "plain",
            "",
            "two words",
            "o'brien",
            "$(touch /tmp/x)",
            "`id`",
            "a\"b",
            "semi;colon && more",
            "${KUBEHA_BOOTSTRAP_TOKEN}",
            "new\nline",
            "*glob?",
            "~root",
            "-leading-dash",
            "back\\slash",
            "deploy$",
            "https://example.com/x?a=1&b=2",
        ] {
            assert_eq!(sh_argv(&shell(value)), [value], "{value:?}");
        }
    }

    #[test]
    fn inert_words_stay_bare() {
        assert_eq!(
            shell("/etc/kubeha/kubeadm-init.yaml"),
            "/etc/kubeha/kubeadm-init.yaml"
        );
        assert_eq!(shell("kubelet=1.31.0-1.1"), "'kubelet=1.31.0-1.1'");
        assert_eq!(shell("a b"), "'a b'");
        assert_eq!(shell("it's"), r"'it'\''s'");
        assert_eq!(shell_words(["a", "b c"]), "a 'b c'");
    }

    #[test]
    fn nul_is_unquotable() {
        assert!(try_shell("a\0b").is_err());
    }

    #[test]
    fn config_formats_quote_or_refuse() {
        assert_eq!(haproxy("/readyz?x=1&y").unwrap(), "'/readyz?x=1&y'");
        assert!(haproxy("a'b").is_err() && haproxy("a\nb").is_err());
        assert_eq!(keepalived("eth0").unwrap(), "\"eth0\"");
        for bad in ["a\"b", "a#b", "a!b", "a}b", "a\nnotify_master x"] {
            assert!(keepalived(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ssh_config_values_are_quoted_or_refused() {
        assert_eq!(ssh_config("ubuntu").unwrap(), "\"ubuntu\"");
        assert_eq!(ssh_config("has space#x").unwrap(), "\"has space#x\"");
        for bad in ["", "a\nProxyCommand x", "a\"b", "a\\b", "%h", "tab\there"] {
            assert!(ssh_config(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ssh_config_path(Path::new("/keys/my key%1")).unwrap(),
            "\"/keys/my key%%1\""
        );
        assert!(ssh_config_path(Path::new("/keys/a\u{1}b")).is_err());
        assert!(ssh_config_path(Path::new("/keys/a\nb")).is_err());
    }
}
