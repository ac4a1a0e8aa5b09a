use super::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn params() -> PkiParams {
    PkiParams {
        node_name: "cp1".into(),
        advertise_address: "10.0.0.11".parse().unwrap(),
        endpoint_host: Some("lb.example.com".into()),
        cert_sans: vec!["10.0.0.10".into()],
        service_ip: "10.96.0.1".parse().unwrap(),
        dns_domain: "cluster.local".into(),
        etcd_server_sans: vec![],
        etcd_peer_sans: vec![],
        validity: Duration::from_secs(8760 * 3600),
        ca_validity: Duration::from_secs(87600 * 3600),
    }
}

fn parse(pem: &[u8]) -> (String, Vec<String>, Vec<String>) {
    let der = pem_to_der(std::str::from_utf8(pem).unwrap()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let orgs = c
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let mut sans = vec![];
    if let Ok(Some(ext)) = c.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                    sans.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 16 => {
                    let a: [u8; 16] = (*b).try_into().unwrap();
                    sans.push(std::net::Ipv6Addr::from(a).to_string())
                }
                _ => {}
            }
        }
    }
    (cn, orgs, sans)
}

#[test]
fn generates_kubeadm_file_set() {
    let files = generate(&params(), &|_| None).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
            "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key",
            "apiserver.crt",
            "apiserver.key",
            "ca.crt",
            "ca.key",
            "etcd/ca.crt",
            "etcd/ca.key",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            "etcd/peer.crt",
            "etcd/peer.key",
            "etcd/server.crt",
            "etcd/server.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "front-proxy-client.crt",
            "front-proxy-client.key",
            "sa.key",
            "sa.pub",
        ]
    );
    for f in &files {
        let want = if f.path.ends_with(".key") {
            0o600
        } else {
            0o644
        };
        assert_eq!(f.mode, want, "{}", f.path);
    }
    let by: BTreeMap<&str, &PkiFile> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    let (cn, _, sans) = parse(&by["apiserver.crt"].contents);
    assert_eq!(cn, "kube-apiserver");
    for want in [
        "cp1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
        "10.0.0.11",
        "lb.example.com",
        "10.0.0.10",
    ] {
        assert!(
            sans.contains(&want.to_string()),
            "apiserver SANs {sans:?} lack {want}"
        );
    }
    let (cn, orgs, _) = parse(&by["apiserver-kubelet-client.crt"].contents);
    assert_eq!(
        (cn.as_str(), orgs),
        (
            "kube-apiserver-kubelet-client",
            vec!["kubeadm:cluster-admins".to_string()]
        )
    );
    let (cn, _, sans) = parse(&by["etcd/server.crt"].contents);
    assert_eq!(cn, "cp1");
    for want in ["cp1", "localhost", "10.0.0.11", "127.0.0.1", "::1"] {
        assert!(
            sans.contains(&want.to_string()),
            "etcd SANs {sans:?} lack {want}"
        );
    }
    assert_eq!(parse(&by["ca.crt"].contents).0, "kubernetes");
    assert_eq!(parse(&by["etcd/ca.crt"].contents).0, "etcd-ca");
    assert_eq!(
        parse(&by["front-proxy-ca.crt"].contents).0,
        "front-proxy-ca"
    );
    assert_eq!(
        parse(&by["apiserver-etcd-client.crt"].contents).0,
        "kube-apiserver-etcd-client"
    );
    assert_eq!(
        parse(&by["etcd/healthcheck-client.crt"].contents).0,
        "kube-etcd-healthcheck-client"
    );
}

#[test]
fn reuses_existing_ca() {
    let ca = new_ca("kubernetes", Duration::from_secs(3600)).unwrap();
    let existing = |p: &str| match p {
        "ca.crt" => Some(ca.cert_pem.clone()),
        "ca.key" => Some(ca.key_pem.clone()),
        _ => None,
    };
    let files = generate(&params(), &existing).unwrap();
    assert!(!files
        .iter()
        .any(|f| f.path == "ca.crt" || f.path == "ca.key"));
    // The apiserver cert chains to the given CA: its issuer is "kubernetes".
    let api = files.iter().find(|f| f.path == "apiserver.crt").unwrap();
    let der = pem_to_der(std::str::from_utf8(&api.contents).unwrap()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        c.issuer()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "kubernetes"
    );
}

#[test]
fn ca_hash_is_sha256_of_spki() {
    let ca = new_ca("kubernetes", Duration::from_secs(3600)).unwrap();
    let h = ca_cert_hash(&ca.cert_pem).unwrap();
    assert!(h.starts_with("sha256:") && h.len() == 7 + 64);
    // Independent computation: SPKI DER of the key equals the certificate's SPKI.
    let key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
    let spki = pem_to_spki(&key.public_key_pem());
    assert_eq!(
        h,
        format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &spki))
        )
    );
}

fn pem_to_spki(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn encryption_round_trip_and_wrong_key() {
    let key = hex::decode(random_certificate_key()).unwrap();
    let ct = encrypt(&key, b"secret ca key").unwrap();
    assert_eq!(ct.len(), 12 + 13 + 16);
    assert_eq!(decrypt(&key, &ct).unwrap(), b"secret ca key");
    let other = hex::decode(random_certificate_key()).unwrap();
    assert_eq!(
        decrypt(&other, &ct).unwrap_err().to_string(),
        "cipher: message authentication failed"
    );
    assert!(encrypt(&key[..16], b"x").is_err());
}

#[test]
fn random_secrets_have_kubeadm_shapes() {
    let t = random_token();
    assert!(crate::config::validate::is_valid_token(&t), "{t}");
    let k = random_certificate_key();
    assert_eq!(k.len(), 64);
    assert!(crate::config::validate::certificate_key_error(&k).is_none());
}

#[test]
fn kubeconfig_identities_and_round_trip() {
    let ca = new_ca("kubernetes", Duration::from_secs(3600)).unwrap();
    let text = kubeconfig::for_file(
        "admin.conf",
        "cp1",
        "https://10.0.0.10:6443",
        &ca,
        Duration::from_secs(3600),
    )
    .unwrap();
    let p = kubeconfig::parse(&text).unwrap();
    assert_eq!(p.server, "https://10.0.0.10:6443");
    assert_eq!(p.ca_pem, ca.cert_pem);
    let (cn, orgs, _) = parse(p.client.unwrap().cert_pem.as_bytes());
    assert_eq!(
        (cn.as_str(), orgs),
        (
            "kubernetes-admin",
            vec!["kubeadm:cluster-admins".to_string()]
        )
    );
    let sa = kubeconfig::for_file(
        "super-admin.conf",
        "cp1",
        "https://x:6443",
        &ca,
        Duration::from_secs(3600),
    )
    .unwrap();
    let (_, orgs, _) = parse(
        kubeconfig::parse(&sa)
            .unwrap()
            .client
            .unwrap()
            .cert_pem
            .as_bytes(),
    );
    assert_eq!(orgs, vec!["system:masters".to_string()]);
    assert_eq!(
        kubeconfig::identity("kubelet.conf", "w1").unwrap().0,
        "system:node:w1"
    );
}

#[test]
fn csr_signing_keeps_subject() {
    let ca = new_ca("kubernetes", Duration::from_secs(3600)).unwrap();
    let (csr, _key) = new_csr("system:node:w1", &["system:nodes"]).unwrap();
    assert_eq!(
        subject(&csr).unwrap(),
        (
            "system:node:w1".to_string(),
            vec!["system:nodes".to_string()]
        )
    );
    let cert = sign_csr(&ca, &csr, Duration::from_secs(3600)).unwrap();
    assert_eq!(
        subject(&cert).unwrap(),
        (
            "system:node:w1".to_string(),
            vec!["system:nodes".to_string()]
        )
    );
}
