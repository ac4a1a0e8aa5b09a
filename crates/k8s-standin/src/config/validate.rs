//! kubeadm's ValidateInitConfiguration / ValidateJoinConfiguration subset,
//! with apimachinery's field.Error formatting.

use super::{ConfigError, InitConfig, JoinConfiguration, NodeRegistration};
use ipnet::IpNet;
use std::net::IpAddr;

pub const TOKEN_PATTERN: &str = r"^([a-z0-9]{6})\.([a-z0-9]{16})$";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
/// kube-controller-manager's default --node-cidr-mask-size for IPv4.
const NODE_CIDR_MASK_V4: u8 = 24;
const NODE_CIDR_MASK_V6: u8 = 64;

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn invalid(&mut self, path: &str, value: &str, detail: &str) {
        self.0
            .push(format!("{path}: Invalid value: \"{value}\": {detail}"));
    }
    fn required(&mut self, path: &str, detail: &str) {
        self.0.push(format!("{path}: Required value: {detail}"));
    }
    /// utilerrors.NewAggregate formatting: one error alone, several in brackets.
    fn finish(self) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(ConfigError(self.0.into_iter().next().unwrap_or_default())),
            _ => Err(ConfigError(format!("[{}]", self.0.join(", ")))),
        }
    }
}

/// `^[a-z0-9]{6}\.[a-z0-9]{16}$`
pub fn is_valid_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(t.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// The decode-time error of kubeadm's BootstrapTokenString.
pub fn token_format_error(t: &str) -> String {
    format!("the bootstrap token \"{t}\" was not of the form \"{TOKEN_PATTERN}\"")
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Checks a certificate key: hex of a 32-byte AES-256 key.
pub fn certificate_key_error(key: &str) -> Option<String> {
    match hex::decode(key) {
        Err(e) => Some(format!(
            "certificate key decoding error: {}",
            go_hex_error(e)
        )),
        Ok(k) if k.len() != 32 => Some(format!(
            "invalid certificate key size {}, the key must be an AES key of size 32",
            k.len()
        )),
        Ok(_) => None,
    }
}

fn go_hex_error(e: hex::FromHexError) -> String {
    match e {
        hex::FromHexError::InvalidHexCharacter { c, .. } => {
            format!("encoding/hex: invalid byte: U+{:04X} '{c}'", c as u32)
        }
        hex::FromHexError::OddLength => "encoding/hex: odd length hex string".into(),
        hex::FromHexError::InvalidStringLength => "encoding/hex: invalid length".into(),
    }
}

/// Parses kubeadm's host[:port] endpoint.
pub fn parse_host_port(ep: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = ep.strip_prefix('[') {
        let (h, r) = rest.split_once(']').ok_or("missing ']' in address")?;
        (h.to_string(), r.strip_prefix(':'))
    } else if ep.matches(':').count() == 1 {
        let (h, p) = ep.split_once(':').unwrap_or((ep, ""));
        (h.to_string(), Some(p))
    } else {
        (ep.to_string(), None)
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            "port must be a valid number between 1 and 65535, inclusive".to_string()
        })?),
        None => None,
    };
    if host.parse::<IpAddr>().is_err() && !is_dns1123_subdomain(&host) {
        return Err("host must be a valid IP address or a valid RFC-1123 DNS subdomain".into());
    }
    Ok((host, port))
}

fn validate_subnets(e: &mut Errors, path: &str, s: &str, pod: bool) {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() > 2 {
        e.invalid(path, s, "expected a single IP subnet or one of each IP family (v4 or v6) for dual-stack networking");
        return;
    }
    for p in parts {
        match p.trim().parse::<IpNet>() {
            Err(_) => {
                e.invalid(path, s, "couldn't parse subnet");
                return;
            }
            Ok(net) if pod => {
                let node = if net.addr().is_ipv4() {
                    NODE_CIDR_MASK_V4
                } else {
                    NODE_CIDR_MASK_V6
                };
                if net.prefix_len() > node {
                    e.invalid(
                        path,
                        s,
                        &format!(
                            "the size of pod subnet with mask {} is smaller than the size of node subnet with mask {node}",
                            net.prefix_len()
                        ),
                    );
                }
            }
            Ok(net) => {
                let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
                if host_bits < 3 {
                    e.invalid(path, s, "subnet is too small");
                }
            }
        }
    }
}

fn validate_registration(e: &mut Errors, nr: &NodeRegistration) {
    match nr.name.as_deref() {
        None | Some("") => e.required(
            "nodeRegistration",
            "--node-name or .nodeRegistration.name in the config file is a required value. It seems like this value couldn't be automatically detected in your environment, please specify the desired value using the CLI or config file.",
        ),
        Some(n) if !is_dns1123_subdomain(n) => e.invalid("nodeRegistration.name", n, DNS1123_SUBDOMAIN_MSG),
        _ => {}
    }
    if let Some(sock) = nr.cri_socket.as_deref() {
        if let Some(path) = sock.strip_prefix("unix://") {
            if !path.starts_with('/') {
                e.invalid("nodeRegistration.criSocket", sock, "path is not absolute");
            }
        } else if let Some((scheme, _)) = sock.split_once("://") {
            e.invalid(
                "nodeRegistration.criSocket",
                sock,
                &format!("URL scheme \"{scheme}\" is not supported"),
            );
        } else if !sock.starts_with('/') {
            e.invalid("nodeRegistration.criSocket", sock, "path is not absolute");
        }
    }
}

fn validate_endpoint(e: &mut Errors, path: &str, ep: &super::ApiEndpoint) {
    if let Some(a) = ep.advertise_address.as_deref() {
        if a.parse::<IpAddr>().is_err() {
            e.invalid(
                &format!("{path}.advertiseAddress"),
                a,
                "ip address is not valid",
            );
        }
    }
    if let Some(p) = ep.bind_port {
        if !(1..=65535).contains(&p) {
            e.invalid(
                &format!("{path}.bindPort"),
                &p.to_string(),
                "port number is not valid",
            );
        }
    }
}

fn validate_sans(e: &mut Errors, path: &str, sans: &[String]) {
    for s in sans {
        let wildcard = s.strip_prefix("*.").is_some_and(is_dns1123_subdomain);
        if !is_dns1123_subdomain(s) && !wildcard && s.parse::<IpAddr>().is_err() {
            e.invalid(path, s, "altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards");
        }
    }
}

/// Parses "v1.31.0" into (major, minor, patch).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

pub fn init(cfg: &InitConfig) -> Result<(), ConfigError> {
    let mut e = Errors::default();
    validate_registration(&mut e, &cfg.init.node_registration);
    for (i, t) in cfg.init.bootstrap_tokens.iter().flatten().enumerate() {
        let p = format!("bootstrapTokens[{i}]");
        if !is_valid_token(&t.token) {
            // BootstrapTokenString fails at decode time, before validation.
            return Err(ConfigError(token_format_error(&t.token)));
        }
        for u in t.usages.iter().flatten() {
            if !matches!(u.as_str(), "signing" | "authentication") {
                e.invalid(&format!("{p}.usages"), u, &format!("invalid bootstrap token usage string: {u}, valid usage options: signing, authentication"));
            }
        }
        for g in t.groups.iter().flatten() {
            let ok = g.strip_prefix("system:bootstrappers:").is_some_and(|r| {
                !r.is_empty()
                    && r.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-'
                    })
                    && !r.ends_with([':', '-'])
            });
            if !ok {
                e.invalid(&format!("{p}.groups"), g, &format!("bootstrap group {g:?} is invalid (must match ^system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]$)"));
            }
        }
        if t.expires.is_some() && t.ttl.is_some() {
            e.invalid(
                &p,
                "",
                "the BootstrapToken .TTL and .Expires fields are mutually exclusive",
            );
        }
        if let Some(ttl) = t.ttl.as_deref() {
            if let Err(m) = super::duration::parse(ttl) {
                e.invalid(&format!("{p}.ttl"), ttl, &m);
            }
        }
    }
    let c = &cfg.cluster;
    if let Some(s) = c.networking.service_subnet.as_deref() {
        validate_subnets(&mut e, "networking.serviceSubnet", s, false);
    }
    if let Some(s) = c.networking.pod_subnet.as_deref() {
        validate_subnets(&mut e, "networking.podSubnet", s, true);
    }
    if let Some(d) = c.networking.dns_domain.as_deref() {
        if !is_dns1123_subdomain(d) {
            e.invalid("networking.dnsDomain", d, DNS1123_SUBDOMAIN_MSG);
        }
    }
    validate_sans(
        &mut e,
        "apiServer.certSANs",
        c.api_server.cert_sans.as_deref().unwrap_or_default(),
    );
    if let Some(l) = &c.etcd.local {
        validate_sans(
            &mut e,
            "etcd.local.serverCertSANs",
            l.server_cert_sans.as_deref().unwrap_or_default(),
        );
        validate_sans(
            &mut e,
            "etcd.local.peerCertSANs",
            l.peer_cert_sans.as_deref().unwrap_or_default(),
        );
    }
    if c.etcd.local.is_some() && c.etcd.external.is_some() {
        e.invalid(
            "etcd",
            "",
            ".Etcd.Local and .Etcd.External are mutually exclusive",
        );
    }
    if let Some(dir) = c.certificates_dir.as_deref() {
        if !dir.starts_with('/') {
            e.invalid("certificatesDir", dir, "path is not absolute");
        }
    }
    if let Some(ep) = c
        .control_plane_endpoint
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        if let Err(m) = parse_host_port(ep) {
            e.invalid("controlPlaneEndpoint", ep, &m);
        }
    }
    if let Some(alg) = c.encryption_algorithm.as_deref() {
        if !matches!(
            alg,
            "ECDSA-P256" | "ECDSA-P384" | "RSA-2048" | "RSA-3072" | "RSA-4096"
        ) {
            e.0.push(format!("encryptionAlgorithm: Unsupported value: \"{alg}\": supported values: \"ECDSA-P256\", \"ECDSA-P384\", \"RSA-2048\", \"RSA-3072\", \"RSA-4096\""));
        }
    }
    for (p, v) in [
        ("certificateValidityPeriod", &c.certificate_validity_period),
        (
            "caCertificateValidityPeriod",
            &c.ca_certificate_validity_period,
        ),
    ] {
        if let Some(v) = v.as_deref() {
            if let Err(m) = super::duration::parse(v) {
                e.invalid(p, v, &m);
            }
        }
    }
    validate_endpoint(&mut e, "localAPIEndpoint", &cfg.init.local_api_endpoint);
    if let Some(k) = cfg
        .init
        .certificate_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        if let Some(m) = certificate_key_error(k) {
            e.invalid("certificateKey", k, &m);
        }
    }
    e.finish()?;
    check_kubernetes_version(c.kubernetes_version.as_deref().unwrap_or_default())
}

/// kubeadm N deploys control planes N-1 and N.
fn check_kubernetes_version(v: &str) -> Result<(), ConfigError> {
    let own = parse_version(crate::VERSION).unwrap_or((1, 31, 0));
    let Some(want) = parse_version(v) else {
        return Err(ConfigError(format!(
            "couldn't parse Kubernetes version \"{v}\": could not parse \"{v}\" as version"
        )));
    };
    let min = (own.0, own.1 - 1, 0);
    if want < min {
        return Err(ConfigError(format!(
            "this version of kubeadm only supports deploying clusters with the control plane version >= {}.{}.0. Current version: {v}",
            min.0, min.1
        )));
    }
    Ok(())
}

pub fn join(j: &JoinConfiguration) -> Result<(), ConfigError> {
    let mut e = Errors::default();
    let d = &j.discovery;
    match (&d.bootstrap_token, &d.file) {
        (None, None) => e.invalid("discovery", "", "bootstrapToken or file must be set"),
        (Some(_), Some(_)) => e.invalid(
            "discovery",
            "",
            "bootstrapToken and file cannot both be set",
        ),
        _ => {}
    }
    if let Some(bt) = &d.bootstrap_token {
        let p = "discovery.bootstrapToken";
        if bt.api_server_endpoint.is_empty() {
            e.required(p, "APIServerEndpoint is not set");
        }
        if bt.ca_cert_hashes.as_deref().unwrap_or_default().is_empty()
            && bt.unsafe_skip_ca_verification != Some(true)
        {
            e.invalid(p, "", "using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue");
        }
        if !is_valid_token(&bt.token) {
            e.invalid(
                &format!("{p}.token"),
                &bt.token,
                "the bootstrap token is invalid",
            );
        }
        if !bt.api_server_endpoint.is_empty() && !has_host_port(&bt.api_server_endpoint) {
            e.invalid(
                &format!("{p}.apiServerEndpoint"),
                &bt.api_server_endpoint,
                &format!(
                    "address {}: missing port in address",
                    bt.api_server_endpoint
                ),
            );
        }
        if let Some(t) = d.tls_bootstrap_token.as_deref().filter(|t| !t.is_empty()) {
            if !is_valid_token(t) {
                e.invalid(
                    "discovery.tlsBootstrapToken",
                    t,
                    "the bootstrap token is invalid",
                );
            }
        }
    }
    validate_registration(&mut e, &j.node_registration);
    if let Some(cp) = &j.control_plane {
        validate_endpoint(
            &mut e,
            "controlPlane.localAPIEndpoint",
            &cp.local_api_endpoint,
        );
        if let Some(k) = cp.certificate_key.as_deref().filter(|k| !k.is_empty()) {
            if let Some(m) = certificate_key_error(k) {
                e.invalid("controlPlane.certificateKey", k, &m);
            }
        }
    }
    let ca = j.ca_cert_path.as_deref().unwrap_or_default();
    if !ca.starts_with('/') || !ca.ends_with(".crt") {
        e.invalid(
            "caCertPath",
            ca,
            "the ca certificate path must be an absolute path",
        );
    }
    e.finish()
}

/// Go's net.SplitHostPort success.
fn has_host_port(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once("]:").is_some();
    }
    s.matches(':').count() == 1
}
