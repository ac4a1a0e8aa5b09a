//! Certificate facts kubeha computes itself rather than parsing kubeadm's output.

use sha2::{Digest, Sha256};
use x509_parser::pem::parse_x509_pem;

/// kubeadm's discovery hash: `sha256:` + hex(sha256(DER SubjectPublicKeyInfo)).
pub fn ca_cert_hash(pem: &str) -> Result<String, String> {
    let (_, pem) =
        parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(spki))))
}

/// A certificate's subject and expiry (RFC 3339), for `kubeha status`.
pub fn expiry(pem: &str) -> Result<(String, String), String> {
    let (_, pem) =
        parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let not_after = cert
        .validity()
        .not_after
        .to_rfc2822()
        .unwrap_or_else(|_| cert.validity().not_after.to_string());
    Ok((cert.subject().to_string(), not_after))
}

/// A certificate's notAfter (Unix seconds), from its DER or its PEM.
pub fn not_after(bytes: &[u8]) -> Result<i64, String> {
    with_certificate(bytes, |cert| cert.validity().not_after.timestamp())
}

/// A certificate's subject alternative names, from its DER or its PEM: DNS names as
/// written, IP addresses in their canonical text (`10.0.0.1`, `fd00::1`).
pub fn subject_alt_names(bytes: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    with_certificate(bytes, |cert| {
        let Ok(Some(ext)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        ext.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => <[u8; 4]>::try_from(*b)
                        .ok()
                        .map(|a| std::net::IpAddr::from(a).to_string()),
                    16 => <[u8; 16]>::try_from(*b)
                        .ok()
                        .map(|a| std::net::IpAddr::from(a).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    })
}

/// Parses a certificate from its DER or its PEM and reads `what` from it.
fn with_certificate<T>(
    bytes: &[u8],
    what: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T,
) -> Result<T, String> {
    let pem;
    let der = if bytes.starts_with(b"-----BEGIN") {
        pem = parse_x509_pem(bytes)
            .map_err(|e| format!("not a PEM certificate: {e}"))?
            .1;
        &pem.contents[..]
    } else {
        bytes
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(what(&cert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::recorded::{CA_HASH, CA_PEM};

    #[test]
    fn discovery_hash_matches_openssl() {
        assert_eq!(ca_cert_hash(CA_PEM).unwrap(), CA_HASH);
        assert!(ca_cert_hash("not a cert").is_err());
    }

    #[test]
    fn not_after_reads_pem_and_der_alike() {
        use base64::Engine;
        let pem = not_after(CA_PEM.as_bytes()).unwrap();
        let body: String = CA_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(not_after(&der).unwrap(), pem);
        // `openssl x509 -enddate`: notAfter=Nov 22 11:51:34 2036 GMT.
        assert_eq!(pem, 2_110_967_494);
        assert!(not_after(b"junk").is_err());
    }

    #[test]
    fn expiry_reads_subject_and_date() {
        let (subject, not_after) = expiry(CA_PEM).unwrap();
        assert_eq!(subject, "CN=kubernetes");
        assert!(not_after.contains("20"), "{not_after}");
    }
}
