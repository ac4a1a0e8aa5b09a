//! What each kind of spec string may hold: the rules of the program that finally reads
//! the value (the kernel, apt, HAProxy, Kubernetes, OpenSSH), narrowed to what a cluster
//! needs. Every value is also quoted where it is written; these rules are the first wall.

/// The longest string any field accepts (PATH_MAX); most fields are far shorter.
pub const MAX_VALUE_LEN: usize = 4096;
/// URLs beyond this are refused: apt and curl handle them, operators cannot review them.
pub const MAX_URL_LEN: usize = 2048;

/// Checks every string of the spec: no NUL or other control characters (a newline
/// would start a new directive in any config kubeha writes), no invisible formatting
/// characters (they hide text from a reviewer), no secret placeholder, no huge values.
pub fn universal(s: &str) -> Result<(), String> {
    if s.len() > MAX_VALUE_LEN {
        return Err(format!(
            "a value of {} bytes is too long: the limit is {MAX_VALUE_LEN}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|&c| c.is_control() || is_invisible(c)) {
        let what = match c {
            '\0' => "a NUL byte",
            '\n' | '\r' => "a line break",
            c if c.is_control() => "a control character",
            _ => "an invisible formatting character",
        };
        return Err(format!(
            "{what} (U+{:04X}) is not allowed in a spec value",
            c as u32
        ));
    }
    if s.contains("${KUBEHA_") || s.contains("$KUBEHA_") {
        return Err(
            "`${KUBEHA_...}` is a secret placeholder kubeha fills itself; it cannot appear in the spec"
                .into(),
        );
    }
    Ok(())
}

/// Bidirectional overrides, zero-width characters and the BOM: they make a value read
/// differently from what it is.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A DNS label (RFC 1123): what Kubernetes calls a DNS-1123 label.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A lowercase DNS name of labels (Kubernetes' DNS-1123 subdomain: node names, SANs).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A host name to connect to: a DNS name in any letter case.
pub fn is_hostname(s: &str) -> bool {
    is_dns_subdomain(&s.to_ascii_lowercase())
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes label (or taint) key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

/// A Kubernetes label (or taint) value: empty, or a label name.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

/// A login name as useradd accepts it by default (`NAME_REGEX`), at most 32 characters:
/// `[a-z_][a-z0-9_.-]*`, optionally ending in `$`. Never starts with `-`, so ssh cannot
/// read it as an option.
pub fn is_ssh_user(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut bytes = body.bytes();
    s.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// A network interface name as the kernel accepts it (`dev_valid_name`: 1-15 bytes, not
/// `.` or `..`, no `/`, `:` or whitespace), narrowed to letters, digits, `_`, `.` and `-`
/// and no leading `-`, so that it is one inert word in keepalived.conf and on `ip`'s
/// command line.
pub fn is_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Characters a URL path (or query) may hold here: RFC 3986's unreserved characters,
/// percent escapes and the delimiters `/ : @ = & , +`. The other sub-delimiters
/// (`! $ ' ( ) * ;`) are legal in URLs but have no use in the URLs a cluster needs, and
/// each is special to a shell or a config format.
fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'%' | b'/' | b':' | b'@' | b'=' | b'&' | b',' | b'+'
        )
}

fn percent_escapes_are_valid(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).all(|i| {
        b[i] != b'%'
            || (i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    })
}

/// An HTTP health-check target: an absolute URL path (RFC 3986 path characters, as
/// narrowed by [`is_url_char`]) with an optional query, e.g. `/readyz?exclude=etcd`.
pub fn is_http_path(s: &str) -> bool {
    let (path, query) = s.split_once('?').unwrap_or((s, ""));
    s.len() <= 1024
        && path.starts_with('/')
        && path.bytes().chain(query.bytes()).all(is_url_char)
        && percent_escapes_are_valid(s)
}

/// Why a local file path is refused, if it is. Spaces and most punctuation are fine
/// (every path is quoted where it is written); a leading `-` would read as an option,
/// and `"`, `\`, `$`, `` ` `` and `%` have meanings in ssh_config or a shell that no
/// file name needs.
pub fn path_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("the path is empty")
    } else if s.starts_with('-') {
        Some("a path may not start with '-'")
    } else if s.contains(['"', '\\', '$', '`', '%']) {
        Some("a path may not contain `\"`, `\\`, `$`, `` ` `` or `%`")
    } else {
        None
    }
}

/// An apt suite or component, as written in a one-line source: no whitespace, no `[`
/// `]` (option brackets), no `#` (comment), nothing a shell would expand, no leading `-`.
pub fn is_apt_word(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('-')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~' | b':' | b'/')
        })
}

/// How a URL may be used: apt repositories take no query, downloads may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlUse {
    Repository,
    Download,
}

/// Why an http(s) URL is refused, if it is: it must parse, name a host, carry no
/// credentials (they would land in argv and logs) and no fragment, and hold only
/// [`is_url_char`] characters (plus `?` for a download's query).
pub fn url_problem(s: &str, what: UrlUse) -> Option<String> {
    if s.len() > MAX_URL_LEN {
        return Some(format!("the URL is longer than {MAX_URL_LEN} bytes"));
    }
    let url = match url::Url::parse(s) {
        Ok(url) => url,
        Err(e) => return Some(format!("it does not parse as a URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") || !s.starts_with(url.scheme()) {
        return Some("only http:// and https:// URLs are supported".into());
    }
    let rest = &s[url.scheme().len()..];
    let rest = rest.strip_prefix("://").unwrap_or_default();
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.is_empty() || url.host_str().is_none_or(str::is_empty) {
        return Some("the URL names no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("credentials in a URL would appear in logs and process lists".into());
    }
    if s.contains('#') {
        return Some("a URL fragment has no meaning for a download".into());
    }
    if what == UrlUse::Repository && s.contains('?') {
        return Some("apt appends paths to a repository URL, so it cannot carry a query".into());
    }
    // IPv6 literals are bracketed; brackets belong nowhere else.
    let authority_ok = authority
        .bytes()
        .all(|b| is_url_char(b) || matches!(b, b'[' | b']'));
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    if !authority_ok
        || !path.bytes().chain(query.bytes()).all(is_url_char)
        || !percent_escapes_are_valid(s)
    {
        return Some(
            "URLs may hold letters, digits, percent escapes and - . _ ~ / : @ = & , + ?".into(),
        );
    }
    None
}

/// `s` fit to print: a URL's `user:password@` replaced by `***@`, so a refused URL
/// does not put its credentials in the terminal or a CI log.
pub fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_string(),
    }
}

/// Whether an http(s) URL travels in clear text.
pub fn is_plain_http(s: &str) -> bool {
    s.starts_with("http://")
}

/// A SHA-256 digest as `sha256sum` prints it: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universal_refuses_controls_placeholders_and_huge_values() {
        assert!(universal("an ordinary value, with: punctuation & spaces").is_ok());
        for bad in [
            "a\0b",
            "a\nb",
            "a\rb",
            "tab\there",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
            "rtl\u{202e}txt",
            "zw\u{200b}sp",
            "${KUBEHA_BOOTSTRAP_TOKEN}",
            "x$KUBEHA_CERTIFICATE_KEY",
        ] {
            assert!(universal(bad).is_err(), "{bad:?}");
        }
        assert!(universal(&"a".repeat(MAX_VALUE_LEN)).is_ok());
        assert!(universal(&"a".repeat(MAX_VALUE_LEN + 1)).is_err());
        assert!(universal("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn name_rules() {
        assert!(is_dns_label("cp-1"));
        assert!(!is_dns_label("CP1"));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("load-balancer.local"));
        assert!(!is_dns_subdomain("lb..local"));
        assert!(is_hostname("Jump.Example.com"));
        assert!(!is_hostname("jump.example.com;id"));
        assert!(!is_hostname("-oProxyCommand=x"));
        assert!(is_label_key("example.com/gpu"));
        assert!(!is_label_key("/gpu"));
        assert!(!is_label_key("a/b/c"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn ssh_users_follow_useradd() {
        for good in ["ubuntu", "_svc", "deploy.bot", "ci-runner", "machine$", "a"] {
            assert!(is_ssh_user(good), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "Root",
            "o'brien",
            "a b",
            "a$b",
            "1abc",
            "$",
            &"a".repeat(33),
        ] {
            assert!(!is_ssh_user(bad), "{bad}");
        }
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        for good in [
            "eth0",
            "ens3",
            "bond0.100",
            "br_lan",
            "wg-0",
            &"e".repeat(15),
        ] {
            assert!(is_interface_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "eth/0",
            "eth 0",
            "eth0:1",
            "-x",
            &"e".repeat(16),
            "eth0}",
        ] {
            assert!(!is_interface_name(bad), "{bad}");
        }
    }

    #[test]
    fn health_check_paths_are_url_paths() {
        for good in [
            "/readyz",
            "/livez",
            "/readyz?exclude=etcd&verbose",
            "/a%20b",
        ] {
            assert!(is_http_path(good), "{good}");
        }
        for bad in [
            "readyz",
            "/readyz$(touch /tmp/x)",
            "/a b",
            "/a;b",
            "/a'b",
            "/a\"b",
            "/%zz",
            "/a`id`",
            "/x?a?b",
        ] {
            assert!(!is_http_path(bad), "{bad}");
        }
    }

    #[test]
    fn paths_and_apt_words() {
        assert_eq!(path_problem("keys/my key.pem"), None);
        assert_eq!(path_problem("~/.ssh/id_ed25519"), None);
        for bad in ["", "-i", "a$(id)", "a`id`", "a\"b", "a\\b", "%d/key"] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
        for good in ["stable", "bookworm-updates", "main", "./", "dists/x/"] {
            assert!(is_apt_word(good), "{good}");
        }
        for bad in [
            "",
            "main contrib",
            "[trusted=yes]",
            "a#b",
            "-x",
            "$(id)",
            "a;b",
        ] {
            assert!(!is_apt_word(bad), "{bad}");
        }
    }

    #[test]
    fn urls_are_structured_and_inert() {
        use UrlUse::*;
        for good in [
            "https://pkgs.k8s.io/core:/stable:/v1.31/deb/",
            "http://mirror.internal/debian",
            "https://[fd00::1]:8443/repo",
        ] {
            assert_eq!(url_problem(good, Repository), None, "{good}");
        }
        assert_eq!(
            url_problem("https://example.com/calico.yaml?a=1&b=2", Download),
            None
        );
        for bad in [
            "ftp://example.com/x",
            "https://",
            "https:///path",
            "https://user:pw@example.com/",
            "https://example.com/x#frag",
            "https://example.com/$(id)",
            "https://example.com/a\"b",
            "https://example.com/a'b",
            "https://example.com/a b",
            "https://example.com/a;b",
            "https://example.com/`id`",
            "https://example.com/?q=1",
            "HTTPS://example.com/",
            "https://example.com/%zz",
        ] {
            assert!(url_problem(bad, Repository).is_some(), "{bad}");
        }
        assert!(is_plain_http("http://x/"));
        assert_eq!(
            redact_url("https://u:pw@h.example/p@q"),
            "https://***@h.example/p@q"
        );
        assert_eq!(redact_url("https://h.example/p@q"), "https://h.example/p@q");
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("abc"));
    }
}
