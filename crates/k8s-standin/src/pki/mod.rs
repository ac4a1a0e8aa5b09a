//! Cluster PKI with kubeadm's file set, names and SANs; CA hash; certificate-key
//! encryption of the shared control-plane certificates.
//!
//! Stand-in deviation: keys are ECDSA P-256 whatever `encryptionAlgorithm` says
//! (RSA key generation is not available with ring); kubeha never depends on the
//! key type.

pub mod kubeconfig;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::rand::{SecureRandom, SystemRandom};
use std::net::IpAddr;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Msg(String),
}

/// A file under the certificates dir (relative path), with its mode.
#[derive(Debug, Clone)]
pub struct PkiFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A CA or leaf as PEM texts.
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

pub const CERT_MODE: u32 = 0o644;
pub const KEY_MODE: u32 = 0o600;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b
}

/// A bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn random_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes: [u8; 22] = random_bytes();
    let s: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{}.{}", &s[..6], &s[6..])
}

/// `kubeadm certs certificate-key`: 32 random bytes, lowercase hex.
pub fn random_certificate_key() -> String {
    hex::encode(random_bytes::<32>())
}

/// Parses the first PEM certificate's DER.
pub fn pem_to_der(pem_text: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| PkiError::Msg(format!("failed to parse certificate PEM: {e}")))?;
    Ok(pem.contents)
}

/// kubeadm's discovery hash: "sha256:" + hex(sha256(DER SubjectPublicKeyInfo)).
pub fn ca_cert_hash(cert_pem: &str) -> Result<String, PkiError> {
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Msg(format!("failed to parse certificate: {e}")))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, spki))
    ))
}

/// The certificate's NotAfter.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime, PkiError> {
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Msg(format!("failed to parse certificate: {e}")))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// AES-256-GCM with a random 12-byte nonce, output `nonce || ciphertext || tag`
/// (kubeadm's cryptoutil.EncryptBytes: gcm.Seal(nonce, nonce, data, nil)).
pub fn encrypt(key: &[u8], data: &[u8]) -> Result<Vec<u8>, PkiError> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let k = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| PkiError::Msg("crypto/aes: invalid key size".into()))?,
    );
    let nonce: [u8; 12] = random_bytes();
    let mut buf = data.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| PkiError::Msg("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(out)
}

/// Inverse of `encrypt`; fails with Go's message on a wrong key.
pub fn decrypt(key: &[u8], data: &[u8]) -> Result<Vec<u8>, PkiError> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let k = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| PkiError::Msg("crypto/aes: invalid key size".into()))?,
    );
    if data.len() < 12 {
        return Err(PkiError::Msg(
            "size of data is less than the nonce size".into(),
        ));
    }
    let nonce: [u8; 12] = data[..12].try_into().expect("12 bytes");
    let mut buf = data[12..].to_vec();
    let plain = k
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| PkiError::Msg("cipher: message authentication failed".into()))?;
    Ok(plain.to_vec())
}

/// Files shared between control planes through the `kubeadm-certs` Secret:
/// (secret data key, path under the certificates dir).
pub const SHARED_CERTS: &[(&str, &str)] = &[
    ("ca.crt", "ca.crt"),
    ("ca.key", "ca.key"),
    ("front-proxy-ca.crt", "front-proxy-ca.crt"),
    ("front-proxy-ca.key", "front-proxy-ca.key"),
    ("sa.key", "sa.key"),
    ("sa.pub", "sa.pub"),
    ("etcd-ca.crt", "etcd/ca.crt"),
    ("etcd-ca.key", "etcd/ca.key"),
];

/// What decides the certificates' contents.
#[derive(Debug, Clone)]
pub struct PkiParams {
    pub node_name: String,
    pub advertise_address: IpAddr,
    /// Host part of controlPlaneEndpoint, if set.
    pub endpoint_host: Option<String>,
    pub cert_sans: Vec<String>,
    /// First address of the service subnet: the `kubernetes` Service IP.
    pub service_ip: IpAddr,
    pub dns_domain: String,
    pub etcd_server_sans: Vec<String>,
    pub etcd_peer_sans: Vec<String>,
    pub validity: Duration,
    pub ca_validity: Duration,
}

fn base_params(cn: &str, orgs: &[&str], validity: Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for o in orgs {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = OffsetDateTime::now_utc();
    // kubeadm back-dates NotBefore a little to tolerate clock skew.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::seconds(validity.as_secs() as i64);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&random_bytes::<16>()));
    p
}

/// A self-signed CA.
pub fn new_ca(cn: &str, validity: Duration) -> Result<CertKey, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = base_params(cn, &[], validity);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let cert = p.self_signed(&key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Usage {
    Client,
    Server,
    ServerAndClient,
}

/// A leaf signed by `ca`.
pub fn new_leaf(
    ca: &CertKey,
    cn: &str,
    orgs: &[&str],
    sans: &[String],
    usage: Usage,
    validity: Duration,
) -> Result<CertKey, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = base_params(cn, orgs, validity);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match usage {
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let mut seen = std::collections::BTreeSet::new();
    for s in sans.iter().filter(|s| seen.insert(s.as_str())) {
        p.subject_alt_names.push(match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.as_str().try_into()?),
        });
    }
    let cert = p.signed_by(&key, &issuer)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The apiserver serving certificate's SANs, as kubeadm computes them.
pub fn apiserver_sans(p: &PkiParams) -> Vec<String> {
    let d = &p.dns_domain;
    let mut s = vec![
        p.node_name.clone(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{d}"),
        p.service_ip.to_string(),
        p.advertise_address.to_string(),
    ];
    s.extend(p.endpoint_host.iter().cloned());
    s.extend(p.cert_sans.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    s.retain(|x| seen.insert(x.clone()));
    s
}

fn etcd_sans(p: &PkiParams, extra: &[String]) -> Vec<String> {
    let mut s = vec![
        p.node_name.clone(),
        "localhost".into(),
        p.advertise_address.to_string(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    s.extend(extra.iter().cloned());
    s
}

/// Reads an existing file under the certificates dir (kubeadm reuses CAs it finds).
pub type Existing<'a> = &'a dyn Fn(&str) -> Option<String>;

fn load_or_new_ca(
    existing: Existing,
    base: &str,
    cn: &str,
    validity: Duration,
    out: &mut Vec<PkiFile>,
) -> Result<CertKey, PkiError> {
    if let (Some(c), Some(k)) = (
        existing(&format!("{base}.crt")),
        existing(&format!("{base}.key")),
    ) {
        return Ok(CertKey {
            cert_pem: c,
            key_pem: k,
        });
    }
    let ca = new_ca(cn, validity)?;
    push_pair(out, base, &ca);
    Ok(ca)
}

fn push_pair(out: &mut Vec<PkiFile>, base: &str, ck: &CertKey) {
    out.push(PkiFile {
        path: format!("{base}.crt"),
        contents: ck.cert_pem.clone().into_bytes(),
        mode: CERT_MODE,
    });
    out.push(PkiFile {
        path: format!("{base}.key"),
        contents: ck.key_pem.clone().into_bytes(),
        mode: KEY_MODE,
    });
}

/// (file base, issuer, CN, O, SANs, usage) of one leaf certificate.
type Leaf<'a> = (
    &'a str,
    &'a CertKey,
    &'a str,
    &'a [&'a str],
    Vec<String>,
    Usage,
);

/// Generates every missing file of kubeadm's control-plane PKI. CAs and the
/// service-account key pair found via `existing` are reused, as kubeadm does.
pub fn generate(p: &PkiParams, existing: Existing) -> Result<Vec<PkiFile>, PkiError> {
    let mut out = Vec::new();
    let v = p.validity;
    let ca = load_or_new_ca(existing, "ca", "kubernetes", p.ca_validity, &mut out)?;
    let fp_ca = load_or_new_ca(
        existing,
        "front-proxy-ca",
        "front-proxy-ca",
        p.ca_validity,
        &mut out,
    )?;
    let etcd_ca = load_or_new_ca(existing, "etcd/ca", "etcd-ca", p.ca_validity, &mut out)?;
    let leaves: [Leaf; 7] = [
        (
            "apiserver",
            &ca,
            "kube-apiserver",
            &[],
            apiserver_sans(p),
            Usage::Server,
        ),
        (
            "apiserver-kubelet-client",
            &ca,
            "kube-apiserver-kubelet-client",
            &["kubeadm:cluster-admins"],
            vec![],
            Usage::Client,
        ),
        (
            "front-proxy-client",
            &fp_ca,
            "front-proxy-client",
            &[],
            vec![],
            Usage::Client,
        ),
        (
            "etcd/server",
            &etcd_ca,
            &p.node_name,
            &[],
            etcd_sans(p, &p.etcd_server_sans),
            Usage::ServerAndClient,
        ),
        (
            "etcd/peer",
            &etcd_ca,
            &p.node_name,
            &[],
            etcd_sans(p, &p.etcd_peer_sans),
            Usage::ServerAndClient,
        ),
        (
            "etcd/healthcheck-client",
            &etcd_ca,
            "kube-etcd-healthcheck-client",
            &[],
            vec![],
            Usage::Client,
        ),
        (
            "apiserver-etcd-client",
            &etcd_ca,
            "kube-apiserver-etcd-client",
            &[],
            vec![],
            Usage::Client,
        ),
    ];
    for (base, issuer, cn, orgs, sans, usage) in &leaves {
        if existing(&format!("{base}.crt")).is_some() && existing(&format!("{base}.key")).is_some()
        {
            continue;
        }
        let leaf = new_leaf(issuer, cn, orgs, sans, *usage, v)?;
        push_pair(&mut out, base, &leaf);
    }
    if existing("sa.key").is_none() {
        let key = KeyPair::generate()?;
        out.push(PkiFile {
            path: "sa.key".into(),
            contents: key.serialize_pem().into_bytes(),
            mode: KEY_MODE,
        });
        out.push(PkiFile {
            path: "sa.pub".into(),
            contents: key.public_key_pem().into_bytes(),
            mode: CERT_MODE,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// A CSR for a client certificate (the kubelet's TLS bootstrap): (csr PEM, key PEM).
pub fn new_csr(cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = base_params(cn, orgs, Duration::ZERO).distinguished_name;
    let csr = p.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Signs a CSR as a client certificate with the CA (the csrsigning controller).
pub fn sign_csr(ca: &CertKey, csr_pem: &str, validity: Duration) -> Result<String, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let now = OffsetDateTime::now_utc();
    csr.params.not_before = now - time::Duration::minutes(5);
    csr.params.not_after = now + time::Duration::seconds(validity.as_secs() as i64);
    csr.params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_bytes::<16>()));
    csr.params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    csr.params.is_ca = IsCa::NoCa;
    Ok(csr.signed_by(&issuer)?.pem())
}

fn cn_orgs(name: &x509_parser::x509::X509Name) -> (String, Vec<String>) {
    let cn = name
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_string();
    let orgs = name
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    (cn, orgs)
}

/// A certificate's DNS names and IP addresses (as text).
fn alt_names(c: &x509_parser::certificate::X509Certificate) -> Vec<String> {
    let mut sans = vec![];
    if let Ok(Some(ext)) = c.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => sans.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4")).to_string()),
                    16 => {
                        sans.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16")).to_string())
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    sans
}

/// Whether `cert_pem` was issued by `ca_pem` (issuer and CA subject agree) and is
/// signed for every name and address in `sans`: kubeadm's check of an existing
/// certificate before it uses it.
pub fn issued_for(cert_pem: &str, ca_pem: &str, sans: &[String]) -> Result<(), PkiError> {
    let (der, ca_der) = (pem_to_der(cert_pem)?, pem_to_der(ca_pem)?);
    fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, PkiError> {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c)
            .map_err(|e| PkiError::Msg(format!("failed to parse certificate: {e}")))
    }
    let (c, ca) = (parse(&der)?, parse(&ca_der)?);
    if c.issuer().as_raw() != ca.subject().as_raw() {
        return Err(PkiError::Msg(
            "x509: certificate signed by unknown authority".into(),
        ));
    }
    let have = alt_names(&c);
    let normal = |s: &str| {
        s.parse::<IpAddr>()
            .map_or(s.to_ascii_lowercase(), |ip| ip.to_string())
    };
    let have: std::collections::BTreeSet<String> = have.iter().map(|s| normal(s)).collect();
    match sans.iter().find(|s| !have.contains(&normal(s))) {
        None => Ok(()),
        Some(s) => Err(PkiError::Msg(format!(
            "x509: certificate is valid for {}, not {s}",
            have.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The apiserver serving certificate for `p`, signed by `ca` (kubeadm's
/// `init phase certs apiserver`).
pub fn apiserver_leaf(ca: &CertKey, p: &PkiParams) -> Result<CertKey, PkiError> {
    new_leaf(
        ca,
        "kube-apiserver",
        &[],
        &apiserver_sans(p),
        Usage::Server,
        p.validity,
    )
}

/// A fresh key and certificate with the subject, SANs and usages of
/// `cert_pem`, signed by `ca` for `validity` (kubeadm's RenewUsingLocalCA).
pub fn renew(ca: &CertKey, cert_pem: &str, validity: Duration) -> Result<CertKey, PkiError> {
    let der = pem_to_der(cert_pem)?;
    let (_, c) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Msg(format!("invalid certificate: {e}")))?;
    let (cn, orgs) = cn_orgs(c.subject());
    let sans = alt_names(&c);
    let (server, client) = match c.extended_key_usage() {
        Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
        _ => (false, true),
    };
    let usage = match (server, client) {
        (true, true) => Usage::ServerAndClient,
        (true, false) => Usage::Server,
        _ => Usage::Client,
    };
    let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    new_leaf(ca, &cn, &orgs, &sans, usage, validity)
}

/// CN and O of a PEM certificate or CSR subject.
pub fn subject(pem_text: &str) -> Result<(String, Vec<String>), PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| PkiError::Msg(format!("invalid PEM: {e}")))?;
    if pem.label.contains("REQUEST") {
        use x509_parser::prelude::FromDer;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
                .map_err(|e| PkiError::Msg(format!("invalid CSR: {e}")))?;
        Ok(cn_orgs(&csr.certification_request_info.subject))
    } else {
        let (_, c) = x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| PkiError::Msg(format!("invalid certificate: {e}")))?;
        Ok(cn_orgs(c.subject()))
    }
}
