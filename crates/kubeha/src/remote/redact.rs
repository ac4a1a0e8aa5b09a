//! Keeps secrets out of logs, plans and errors: every known secret is replaced by
//! `<redacted>` before text leaves the process.

use std::sync::RwLock;

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
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
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
}
