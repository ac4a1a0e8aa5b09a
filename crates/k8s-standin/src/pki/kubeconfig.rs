//! kubeconfig files as kubeadm writes them.

use super::{new_leaf, CertKey, PkiError, Usage};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::Deserialize;
use std::time::Duration;

/// The identities kubeadm writes kubeconfigs for: (file, CN, O).
pub fn identity(file: &str, node_name: &str) -> Option<(String, Vec<&'static str>)> {
    Some(match file {
        "admin.conf" => ("kubernetes-admin".into(), vec!["kubeadm:cluster-admins"]),
        "super-admin.conf" => ("kubernetes-super-admin".into(), vec!["system:masters"]),
        "kubelet.conf" => (format!("system:node:{node_name}"), vec!["system:nodes"]),
        "controller-manager.conf" => ("system:kube-controller-manager".into(), vec![]),
        "scheduler.conf" => ("system:kube-scheduler".into(), vec![]),
        _ => return None,
    })
}

/// A kubeconfig with embedded client certificate for `user` (CN) in `orgs`.
pub fn render(server: &str, ca_pem: &str, user: &str, client: &CertKey) -> String {
    let cluster = "kubernetes";
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\ncontexts:\n- context:\n    cluster: {cluster}\n    user: {user}\n  name: {user}@{cluster}\ncurrent-context: {user}@{cluster}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = B64.encode(ca_pem),
        cert = B64.encode(&client.cert_pem),
        key = B64.encode(&client.key_pem),
    )
}

/// A client kubeconfig for one of kubeadm's files, signed by the cluster CA.
pub fn for_file(
    file: &str,
    node_name: &str,
    server: &str,
    ca: &CertKey,
    validity: Duration,
) -> Result<String, PkiError> {
    let (cn, orgs) = identity(file, node_name)
        .ok_or_else(|| PkiError::Msg(format!("unknown kubeconfig file {file}")))?;
    let leaf = new_leaf(ca, &cn, &orgs, &[], Usage::Client, validity)?;
    Ok(render(server, &ca.cert_pem, &cn, &leaf))
}

/// The parts of a kubeconfig the stand-ins use.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub server: String,
    pub ca_pem: String,
    pub client: Option<CertKey>,
    pub token: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    clusters: Vec<ClusterEntry>,
    users: Option<Vec<UserEntry>>,
}
#[derive(Deserialize)]
struct ClusterEntry {
    cluster: RawCluster,
}
#[derive(Deserialize)]
struct UserEntry {
    user: RawUser,
}
#[derive(Deserialize)]
struct RawCluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca: Option<String>,
}
#[derive(Deserialize)]
struct RawUser {
    #[serde(rename = "client-certificate-data")]
    cert: Option<String>,
    #[serde(rename = "client-key-data")]
    key: Option<String>,
    #[serde(rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<String>,
    token: Option<String>,
}

fn b64_text(s: &str) -> Result<String, PkiError> {
    let b = B64
        .decode(s.trim())
        .map_err(|e| PkiError::Msg(format!("invalid base64 in kubeconfig: {e}")))?;
    String::from_utf8(b).map_err(|e| PkiError::Msg(e.to_string()))
}

/// Reads the first cluster and user of a kubeconfig (embedded data only).
pub fn parse(text: &str) -> Result<Parsed, PkiError> {
    let raw: Raw = serde_saphyr::from_str(text)
        .map_err(|e| PkiError::Msg(format!("invalid kubeconfig: {e}")))?;
    let cluster = raw.clusters.into_iter().next().map(|c| c.cluster);
    let cluster = cluster.ok_or_else(|| PkiError::Msg("kubeconfig has no cluster".into()))?;
    let user = raw
        .users
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|u| u.user);
    let read =
        |p: &str| std::fs::read_to_string(p).map_err(|e| PkiError::Msg(format!("open {p}: {e}")));
    let (client, token) = match user {
        Some(RawUser {
            cert: Some(c),
            key: Some(k),
            token,
            ..
        }) => (
            Some(CertKey {
                cert_pem: b64_text(&c)?,
                key_pem: b64_text(&k)?,
            }),
            token,
        ),
        // The kubelet's rotated credentials live in files (kubelet-client-current.pem).
        Some(RawUser {
            cert_file: Some(c),
            key_file: Some(k),
            token,
            ..
        }) => (
            Some(CertKey {
                cert_pem: read(&c)?,
                key_pem: read(&k)?,
            }),
            token,
        ),
        Some(u) => (None, u.token),
        None => (None, None),
    };
    Ok(Parsed {
        server: cluster.server,
        ca_pem: cluster
            .ca
            .as_deref()
            .map(b64_text)
            .transpose()?
            .unwrap_or_default(),
        client,
        token,
    })
}
