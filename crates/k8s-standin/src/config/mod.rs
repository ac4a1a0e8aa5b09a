//! kubeadm configuration files: decoding (v1beta3, v1beta4), defaulting and
//! validation, with kubeadm's messages.

pub mod duration;
pub mod strict;
pub mod types;
pub mod validate;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
pub use types::*;

pub const GROUP: &str = "kubeadm.k8s.io";
pub const DEFAULT_CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_BIND_PORT: i64 = 6443;
pub const DEFAULT_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A configuration error, printed by kubeadm as the command's error.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// One YAML document with its group/version/kind.
#[derive(Debug, Clone)]
pub struct Document {
    pub api_version: String,
    pub kind: String,
    pub value: Value,
}

/// Splits a multi-document YAML file and reads each document's GVK.
pub fn split_documents(text: &str) -> Result<Vec<Document>, ConfigError> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut push = |chunk: &str| -> Result<(), ConfigError> {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            return Ok(());
        }
        let value: Value = serde_saphyr::from_str(chunk)
            .map_err(|e| ConfigError(format!("error converting YAML to JSON: {e}")))?;
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version.is_empty() || kind.is_empty() {
            return err("invalid configuration: kind and apiVersion is mandatory information that needs to be specified");
        }
        docs.push(Document {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            value,
        });
        Ok(())
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            push(&cur)?;
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    push(&cur)?;
    Ok(docs)
}

/// Checks the API version as kubeadm 1.31 does; returns a warning for v1beta3.
fn check_version(doc: &Document) -> Result<Option<String>, ConfigError> {
    match doc.api_version.as_str() {
        "kubeadm.k8s.io/v1beta4" => Ok(None),
        "kubeadm.k8s.io/v1beta3" => Ok(Some(format!(
            "your configuration file uses a deprecated API spec: \"{}\" (kind: \"{}\"). Please use 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version.",
            doc.api_version, doc.kind
        ))),
        "kubeadm.k8s.io/v1beta1" | "kubeadm.k8s.io/v1beta2" | "kubeadm.k8s.io/v1alpha3" => err(format!(
            "your configuration file uses an old API spec: \"{}\" (kind: \"{}\"). Please use kubeadm v1.22 instead and run 'kubeadm config migrate --old-config old.yaml --new-config new.yaml', which will write the new, similar spec using a newer API version.",
            doc.api_version, doc.kind
        )),
        other => err(format!(
            "no kind \"{}\" is registered for version \"{}\" in scheme \"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31\"",
            doc.kind, other
        )),
    }
}

/// Fields that exist only in v1beta4 (unknown when decoding v1beta3), and vice versa.
const V1BETA4_ONLY: &[&str] = &[
    "timeouts",
    "dryRun",
    "encryptionAlgorithm",
    "certificateValidityPeriod",
    "caCertificateValidityPeriod",
    "apiServer.extraEnvs",
    "controllerManager.extraEnvs",
    "scheduler.extraEnvs",
    "etcd.local.extraEnvs",
    "dns.disabled",
    "proxy",
    "nodeRegistration.imagePullSerial",
];
const V1BETA3_ONLY: &[&str] = &[
    "apiServer.timeoutForControlPlane",
    "controllerManager.timeoutForControlPlane",
    "scheduler.timeoutForControlPlane",
    "controllerManager.certSANs",
    "scheduler.certSANs",
    "discovery.timeout",
];

/// Decodes one document into `T`, collecting unknown fields as a warning
/// (kubeadm init/join only warn; `strict` turns them into errors like `kubeadm config validate`).
fn decode<T: DeserializeOwned + Serialize>(
    doc: &Document,
    warnings: &mut Vec<String>,
    strict_errors: bool,
) -> Result<T, ConfigError> {
    let typed: T = serde_json::from_value(doc.value.clone()).map_err(|e| {
        ConfigError(format!(
            "error unmarshaling configuration schema.GroupVersionKind{{Group:\"{GROUP}\", Version:\"{}\", Kind:\"{}\"}}: {e}",
            doc.api_version.trim_start_matches("kubeadm.k8s.io/"),
            doc.kind
        ))
    })?;
    let mut known = serde_json::to_value(&typed).expect("config types serialize");
    let v1beta3 = doc.api_version.ends_with("/v1beta3");
    for p in if v1beta3 { V1BETA4_ONLY } else { V1BETA3_ONLY } {
        strict::prune(&mut known, p);
    }
    check_extra_args_shape(&doc.value, v1beta3, &doc.kind)?;
    let unknown = strict::unknown_fields(&doc.value, &known);
    if !unknown.is_empty() {
        let msg = strict::strict_message(&doc.api_version, &doc.kind, &unknown);
        if strict_errors {
            return err(msg);
        }
        warnings.push(msg);
    }
    Ok(typed)
}

/// v1beta4 made every extraArgs a list of {name,value}; v1beta3 has maps.
/// The wrong shape fails decoding, as Go's json does.
fn check_extra_args_shape(v: &Value, v1beta3: bool, kind: &str) -> Result<(), ConfigError> {
    let paths: [(&str, &str, &str); 5] = [
        ("apiServer", "extraArgs", "APIServer"),
        ("controllerManager", "extraArgs", "ControlPlaneComponent"),
        ("scheduler", "extraArgs", "ControlPlaneComponent"),
        (
            "nodeRegistration",
            "kubeletExtraArgs",
            "NodeRegistrationOptions",
        ),
        ("etcd", "extraArgs", "LocalEtcd"),
    ];
    for (parent, field, go_type) in paths {
        let node = if parent == "etcd" {
            v.pointer("/etcd/local/extraArgs")
        } else {
            v.get(parent).and_then(|p| p.get(field))
        };
        let Some(node) = node else { continue };
        let full = if parent == "etcd" {
            "etcd.local.extraArgs".to_string()
        } else {
            format!("{parent}.{field}")
        };
        let (bad, got, want) = match (v1beta3, node) {
            (false, Value::Object(_)) => (true, "object", "[]v1beta4.Arg"),
            (true, Value::Array(_)) => (true, "array", "map[string]string"),
            _ => (false, "", ""),
        };
        if bad {
            return err(format!(
                "error unmarshaling configuration schema.GroupVersionKind{{Group:\"{GROUP}\", Version:\"{}\", Kind:\"{kind}\"}}: json: cannot unmarshal {got} into Go struct field {go_type}.{full} of type {want}",
                if v1beta3 { "v1beta3" } else { "v1beta4" }
            ));
        }
    }
    Ok(())
}

/// What `kubeadm init --config` reads: both kubeadm kinds plus component configs.
#[derive(Debug, Clone, Default)]
pub struct InitConfig {
    pub init: InitConfiguration,
    pub cluster: ClusterConfiguration,
    /// kubelet.config.k8s.io KubeletConfiguration, passed through to /var/lib/kubelet/config.yaml.
    pub kubelet: Option<Value>,
    pub warnings: Vec<String>,
}

/// Host facts that kubeadm's dynamic defaulting reads.
#[derive(Debug, Clone)]
pub struct HostDefaults {
    pub hostname: String,
    pub advertise_address: String,
    pub kubeadm_version: String,
}

pub fn load_init(
    text: &str,
    host: &HostDefaults,
    strict_errors: bool,
) -> Result<InitConfig, ConfigError> {
    let mut cfg = InitConfig::default();
    let mut have_init = false;
    let mut have_cluster = false;
    for doc in split_documents(text)? {
        if doc.api_version.starts_with("kubeadm.k8s.io/") {
            if let Some(w) = check_version(&doc)? {
                cfg.warnings.push(w);
            }
        }
        match (doc.api_version.split('/').next().unwrap_or(""), doc.kind.as_str()) {
            (GROUP, "InitConfiguration") => {
                cfg.init = decode(&doc, &mut cfg.warnings, strict_errors)?;
                have_init = true;
            }
            (GROUP, "ClusterConfiguration") => {
                cfg.cluster = decode(&doc, &mut cfg.warnings, strict_errors)?;
                have_cluster = true;
            }
            ("kubelet.config.k8s.io", "KubeletConfiguration") => cfg.kubelet = Some(doc.value),
            ("kubeproxy.config.k8s.io", "KubeProxyConfiguration") => {}
            (GROUP, _) => {}
            _ => cfg.warnings.push(format!(
                "[config] WARNING: Ignored configuration document with GroupVersionKind {}, Kind={}",
                doc.api_version, doc.kind
            )),
        }
    }
    if !have_init && !have_cluster {
        return err(
            "no InitConfiguration or ClusterConfiguration kind was found in the configuration file",
        );
    }
    default_init(&mut cfg, host);
    validate::init(&cfg)?;
    Ok(cfg)
}

pub fn load_join(
    text: &str,
    host: &HostDefaults,
    strict_errors: bool,
) -> Result<(JoinConfiguration, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let mut join = None;
    for doc in split_documents(text)? {
        if doc.api_version.starts_with("kubeadm.k8s.io/") {
            if let Some(w) = check_version(&doc)? {
                warnings.push(w);
            }
            if doc.kind == "JoinConfiguration" {
                join = Some(decode::<JoinConfiguration>(
                    &doc,
                    &mut warnings,
                    strict_errors,
                )?);
            }
        }
    }
    let Some(mut join) = join else {
        return err("no JoinConfiguration kind was found in the configuration file");
    };
    default_registration(&mut join.node_registration, host);
    join.ca_cert_path
        .get_or_insert_with(|| "/etc/kubernetes/pki/ca.crt".into());
    if let Some(cp) = join.control_plane.as_mut() {
        cp.local_api_endpoint
            .advertise_address
            .get_or_insert_with(|| host.advertise_address.clone());
        cp.local_api_endpoint
            .bind_port
            .get_or_insert(DEFAULT_BIND_PORT);
    }
    validate::join(&join)?;
    Ok((join, warnings))
}

fn default_registration(nr: &mut NodeRegistration, host: &HostDefaults) {
    nr.name.get_or_insert_with(|| host.hostname.to_lowercase());
    nr.cri_socket
        .get_or_insert_with(|| DEFAULT_CRI_SOCKET.into());
}

fn default_init(cfg: &mut InitConfig, host: &HostDefaults) {
    let i = &mut cfg.init;
    default_registration(&mut i.node_registration, host);
    i.local_api_endpoint
        .advertise_address
        .get_or_insert_with(|| host.advertise_address.clone());
    i.local_api_endpoint
        .bind_port
        .get_or_insert(DEFAULT_BIND_PORT);
    let c = &mut cfg.cluster;
    c.networking
        .service_subnet
        .get_or_insert_with(|| DEFAULT_SERVICE_SUBNET.into());
    c.networking
        .dns_domain
        .get_or_insert_with(|| "cluster.local".into());
    c.kubernetes_version
        .get_or_insert_with(|| host.kubeadm_version.clone());
    c.certificates_dir
        .get_or_insert_with(|| "/etc/kubernetes/pki".into());
    c.cluster_name.get_or_insert_with(|| "kubernetes".into());
    c.image_repository
        .get_or_insert_with(|| "registry.k8s.io".into());
    c.encryption_algorithm
        .get_or_insert_with(|| "RSA-2048".into());
    c.certificate_validity_period
        .get_or_insert_with(|| "8760h0m0s".into());
    c.ca_certificate_validity_period
        .get_or_insert_with(|| "87600h0m0s".into());
    if c.etcd.local.is_none() && c.etcd.external.is_none() {
        c.etcd.local = Some(LocalEtcd::default());
    }
    if let Some(l) = c.etcd.local.as_mut() {
        l.data_dir.get_or_insert_with(|| "/var/lib/etcd".into());
    }
    if cfg.init.bootstrap_tokens.is_none() {
        cfg.init.bootstrap_tokens = Some(vec![BootstrapToken {
            token: crate::pki::random_token(),
            ..Default::default()
        }]);
    }
    for t in cfg.init.bootstrap_tokens.iter_mut().flatten() {
        if t.expires.is_none() {
            t.ttl.get_or_insert_with(|| "24h0m0s".into());
        }
        t.usages
            .get_or_insert_with(|| vec!["signing".into(), "authentication".into()]);
        t.groups
            .get_or_insert_with(|| vec![DEFAULT_TOKEN_GROUP.into()]);
    }
}

impl ExtraArgs {
    /// The arguments in order, whatever the version's shape.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            ExtraArgs::None => vec![],
            ExtraArgs::List(l) => l
                .iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect(),
            ExtraArgs::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
