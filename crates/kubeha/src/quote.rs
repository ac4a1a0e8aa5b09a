//! The one place values are quoted for the languages kubeha writes: POSIX shell words
//! (runbook.sh and every remote command), ssh_config values, haproxy.cfg and
//! keepalived.conf arguments.
//!
//! Validation already narrows what spec values may hold; quoting is the second wall, so
//! a value that slipped through is still data, never code.

use std::fmt;

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

/// How ssh treats a directive's argument after removing the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshExpands {
    /// Taken literally (`User` in the OpenSSH of Debian 12; newer versions expand `%`
    /// tokens there, so `%` is refused rather than escaped one way or the other).
    Nothing,
    /// `%` tokens (`HostName`): `%` is written `%%`.
    Tokens,
    /// `%` tokens, `${VAR}` and a leading `~` (`IdentityFile`, `UserKnownHostsFile`):
    /// `%` is written `%%`, `${` is refused (it has no escape), the path must be absolute.
    Path,
}

/// One ssh_config argument that ssh reads back as exactly `value`: inside double
/// quotes, with `"` and `\` backslash-escaped (OpenSSH's `argv_split`).
///
/// Not for ProxyJump, ProxyCommand, LocalCommand or RemoteCommand: OpenSSH takes the
/// rest of their line unparsed, quotes included. Give a bastion its own `Host` block
/// and point ProxyJump at that block's fixed alias.
pub fn ssh_config(value: &str, expands: SshExpands) -> Result<String, String> {
    if value.is_empty() {
        return Err("an empty value cannot be written to ssh_config".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{:?} contains the control character {:?}, which ssh_config cannot hold",
            value.escape_debug().to_string(),
            c
        ));
    }
    match expands {
        SshExpands::Nothing if value.contains('%') => {
            return Err(format!("{value:?}: `%` is not allowed here"));
        }
        SshExpands::Path if value.contains("${") => {
            return Err(format!(
                "{value:?}: ssh would expand `${{…}}` in this path, and it has no escape"
            ));
        }
        SshExpands::Path if !value.starts_with('/') => {
            return Err(format!("{value:?}: the path must be absolute"));
        }
        _ => {}
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' if expands != SshExpands::Nothing => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
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

/// A proxy or server name in a command to HAProxy's runtime API. The API splits its
/// line on spaces and `;` and gives `\\` a meaning of its own; names kubeha writes are DNS
/// names, so rather than escape, anything but letters, digits, `.`, `_` and `-` is refused.
pub fn haproxy_runtime(name: &str) -> Result<&str, Unquotable> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(Unquotable {
            reason: "HAProxy's runtime API takes only letters, digits, `.`, `_` and `-` in a name",
        });
    }
    Ok(name)
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
        assert_eq!(
            haproxy_runtime("k8s-master-1.lan").unwrap(),
            "k8s-master-1.lan"
        );
        for bad in [
            "",
            "cp-1 state ready",
            "cp-1;shutdown",
            "a\\b",
            "a/b",
            "a\nb",
        ] {
            assert!(haproxy_runtime(bad).is_err(), "{bad:?}");
        }
        assert_eq!(keepalived("eth0").unwrap(), "\"eth0\"");
        for bad in ["a\"b", "a#b", "a!b", "a}b", "a\nnotify_master x"] {
            assert!(keepalived(bad).is_err(), "{bad:?}");
        }
    }
}
