//! Keeps secrets out of logs, plans and errors: every known secret, and anything shaped
//! like one (a bootstrap token, a PEM private key, a kubeconfig's client key, a
//! certificate key), is replaced by `<redacted>` before text leaves the process.

use std::sync::RwLock;

const REDACTED: &str = "<redacted>";

#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// Registers a secret; empty strings are ignored.
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        if let Ok(mut s) = self.secrets.write() {
            if !s.iter().any(|known| known == secret) {
                s.push(secret.to_string());
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(secrets) = self.secrets.read() {
            for secret in secrets.iter() {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        redact_shapes(&out)
    }
}

/// Secrets recognised by their shape, whoever made them (a host may print a token
/// kubeha never saw).
pub fn redact_shapes(text: &str) -> String {
    let text = private_keys(text);
    let text = after_keys(&text, &["client-key-data", "token-secret"], line_value);
    let text = after_keys(
        &text,
        &["certificate-key", "certificateKey", "certificate key"],
        hex64_value,
    );
    bootstrap_tokens(&text)
}

/// PEM blocks whose label ends in `PRIVATE KEY` (RSA, EC, PKCS#8, encrypted), whole;
/// a block cut off before its END line is redacted to the end of the text.
fn private_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let header_end = rest[begin..].find('\n').map_or(rest.len(), |n| begin + n);
        let header = &rest[begin..header_end];
        if !header.contains("PRIVATE KEY-----") {
            out.push_str(&rest[..begin + 11]);
            rest = &rest[begin + 11..];
            continue;
        }
        out.push_str(&rest[..begin]);
        out.push_str(REDACTED);
        rest = match rest[begin..].find("-----END ") {
            Some(end) => {
                let after = &rest[begin + end + 9..];
                match after.find("-----") {
                    Some(close) => &after[close + 5..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Replaces the value that follows each occurrence of a key (after `:`, `=`, quotes
/// and blanks), as far as `value_len` says the value reaches.
fn after_keys(text: &str, keys: &[&str], value_len: fn(&str) -> usize) -> String {
    let mut out = text.to_string();
    for key in keys {
        let mut from = 0;
        while let Some(at) = out[from..].find(key) {
            let start = from + at + key.len();
            let skip = out[start..]
                .find(|c: char| !matches!(c, ':' | '=' | '"' | '\'' | ' ' | '\t' | '\n' | '\r'))
                .unwrap_or(out.len() - start);
            let value_at = start + skip;
            let len = value_len(&out[value_at..]);
            if len > 0 && !out[value_at..].starts_with(REDACTED) {
                out.replace_range(value_at..value_at + len, REDACTED);
            }
            from = value_at.min(out.len());
            if from >= out.len() {
                break;
            }
            from += out[from..].chars().next().map_or(0, char::len_utf8);
        }
    }
    out
}

/// A kubeconfig or Secret value: up to the end of the line, a quote or a comma.
fn line_value(text: &str) -> usize {
    text.find(['\n', '\r', '"', '\'', ',', '}', ' '])
        .unwrap_or(text.len())
}

/// A certificate key: exactly 64 hex digits.
fn hex64_value(text: &str) -> usize {
    let n = text.bytes().take_while(u8::is_ascii_hexdigit).count();
    if n == 64 {
        64
    } else {
        0
    }
}

fn token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]{6}\.[a-z0-9]{16}` standing alone (not inside a longer word).
fn bootstrap_tokens(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 23 <= bytes.len() {
        let starts_word = i == 0 || !token_char(bytes[i - 1]);
        let is_token = starts_word
            && bytes[i..i + 6].iter().all(|&b| token_char(b))
            && bytes[i + 6] == b'.'
            && bytes[i + 7..i + 23].iter().all(|&b| token_char(b))
            && bytes.get(i + 23).is_none_or(|&b| !token_char(b));
        if is_token {
            out.push_str(&text[copied..i]);
            out.push_str(REDACTED);
            i += 23;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_known_secret() {
        let r = Redactor::default();
        r.add("abcdef.0123456789abcdef");
        r.add("");
        let key = "ab".repeat(32);
        r.add(&key);
        let text = format!("kubeadm join --token abcdef.0123456789abcdef --certificate-key {key}");
        assert_eq!(
            r.redact(&text),
            "kubeadm join --token <redacted> --certificate-key <redacted>"
        );
    }

    #[test]
    fn secrets_nobody_registered_are_recognised_by_shape() {
        let r = Redactor::default();
        let key = "0f".repeat(32);
        let text = format!(
            "[bootstrap-token] Using token: q1w2e3.r4t5y6u7i8o9p0a1\n\
             [upload-certs] Using certificate key:\n{key}\n\
             certificateKey: {key}\n\
             users:\n- user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ+/=\n\
             {{\"client-key-data\":\"S0VZ\",\"x\":1}}\n\
             -----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----\n\
             -----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n\
             -----BEGIN PRIVATE KEY-----\ncut off"
        );
        let out = r.redact(&text);
        for secret in ["q1w2e3.r4t5y6u7i8o9p0a1", &key, "S0VZ", "MIIEow", "cut off"] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        // What is not secret stays readable.
        for kept in [
            "Using token: <redacted>",
            "client-certificate-data: Q0VSVA==",
            "-----BEGIN CERTIFICATE-----\nMIIC",
            "\"x\":1",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
    }

    #[test]
    fn hashes_and_longer_words_are_not_tokens() {
        let hash = "sha256:".to_string() + &"a1".repeat(32);
        let text = format!("{hash} /etc/kubernetes/admin.conf abcdefg.0123456789abcdef");
        assert_eq!(redact_shapes(&text), text);
    }
}
