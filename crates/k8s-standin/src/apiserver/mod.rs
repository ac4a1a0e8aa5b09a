//! The kube-apiserver stand-in: the part of the Kubernetes API kubeha, kubeadm,
//! the kubelet stand-in and kubectl use, with all state in etcd so every
//! instance answers the same.

pub mod auth;
pub mod etcd;
pub mod objects;
pub mod registry;
pub mod server;
pub mod subresources;
pub mod tables;
pub mod tokens;

use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// kube-apiserver flags the stand-in honours (others are accepted and ignored).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub bind_address: String,
    pub secure_port: u16,
    pub advertise_address: String,
    pub tls_cert_file: String,
    pub tls_private_key_file: String,
    pub client_ca_file: String,
    pub etcd_servers: Vec<String>,
    pub etcd_cafile: String,
    pub etcd_certfile: String,
    pub etcd_keyfile: String,
    pub service_cluster_ip_range: String,
    pub service_account_issuer: String,
    pub service_account_key_file: String,
    pub service_account_signing_key_file: String,
    pub api_audiences: Vec<String>,
}

impl Options {
    /// Parses `--flag=value` / `--flag value` arguments.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            bind_address: "0.0.0.0".into(),
            secure_port: 6443,
            service_cluster_ip_range: "10.96.0.0/12".into(),
            ..Default::default()
        };
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(flag) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            let (k, v) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (
                    flag.to_string(),
                    it.next_if(|n| !n.starts_with("--"))
                        .cloned()
                        .unwrap_or_else(|| "true".into()),
                ),
            };
            match k.as_str() {
                "bind-address" => o.bind_address = v,
                "secure-port" => {
                    o.secure_port = v
                        .parse()
                        .map_err(|_| format!("invalid argument {v:?} for \"--secure-port\" flag"))?
                }
                "advertise-address" => o.advertise_address = v,
                "tls-cert-file" => o.tls_cert_file = v,
                "tls-private-key-file" => o.tls_private_key_file = v,
                "client-ca-file" => o.client_ca_file = v,
                "etcd-servers" => o.etcd_servers = v.split(',').map(String::from).collect(),
                "etcd-cafile" => o.etcd_cafile = v,
                "etcd-certfile" => o.etcd_certfile = v,
                "etcd-keyfile" => o.etcd_keyfile = v,
                "service-cluster-ip-range" => o.service_cluster_ip_range = v,
                "service-account-issuer" => o.service_account_issuer = v,
                "service-account-key-file" => o.service_account_key_file = v,
                "service-account-signing-key-file" => o.service_account_signing_key_file = v,
                "api-audiences" => o.api_audiences = v.split(',').map(String::from).collect(),
                _ => {}
            }
        }
        Ok(o)
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {path}: {e}"))
}

/// Binds, creates the namespaces every cluster has, and serves in the background
/// until the process ends.
pub async fn start(o: &Options) -> Result<SocketAddr, String> {
    // The sender dropped at once: never stopping (see [`server::stopped`]).
    let (_, never) = tokio::sync::watch::channel(false);
    start_until(o, never).await.map(|(addr, _)| addr)
}

/// [`start`], serving until `stopping` turns true; then it shuts down as
/// kube-apiserver does on SIGTERM, and the handle ends once it has (see
/// [`server::serve`]).
pub async fn start_until(
    o: &Options,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let etcd = etcd::Etcd::new(
        o.etcd_servers.clone(),
        &read(&o.etcd_cafile)?,
        &read(&o.etcd_certfile)?,
        &read(&o.etcd_keyfile)?,
    )?;
    let tls = server::tls_config(
        &read(&o.tls_cert_file)?,
        &read(&o.tls_private_key_file)?,
        &read(&o.client_ca_file)?,
    )?;
    // ServiceAccount tokens need the public key; issuing them the private one.
    let sa = if o.service_account_key_file.is_empty() {
        None
    } else {
        let public = String::from_utf8_lossy(&read(&o.service_account_key_file)?).into_owned();
        let signing = if o.service_account_signing_key_file.is_empty() {
            None
        } else {
            Some(String::from_utf8_lossy(&read(&o.service_account_signing_key_file)?).into_owned())
        };
        Some(tokens::SaKeys::load(
            &o.service_account_issuer,
            &o.api_audiences,
            signing.as_deref(),
            &public,
        )?)
    };
    let listener = tokio::net::TcpListener::bind((o.bind_address.as_str(), o.secure_port))
        .await
        .map_err(|e| {
            format!(
                "failed to listen on {}:{}: {e}",
                o.bind_address, o.secure_port
            )
        })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let api = Arc::new(server::Api {
        etcd,
        builtin: registry::builtin(),
        advertise: format!("{}:{}", o.advertise_address, addr.port()),
        version: std::env::var(crate::kubelet::pods::VERSION_ENV)
            .ok()
            .filter(|v| v.starts_with('v'))
            .unwrap_or_else(|| crate::VERSION.to_string()),
        bootstrapped: std::sync::atomic::AtomicBool::new(false),
        sa,
        stopping,
    });
    let b = api.clone();
    let cidr = o.service_cluster_ip_range.clone();
    // etcd may still be starting (the kubelet starts both): retry until done.
    tokio::spawn(async move {
        while !bootstrap(&b, &cidr).await {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        b.bootstrapped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let served = tokio::spawn(server::serve(listener, Arc::new(tls), api));
    Ok((addr, served))
}

/// What the real apiserver's bootstrap controllers create: system namespaces
/// and the `kubernetes` Service. True once they all exist.
async fn bootstrap(api: &server::Api, service_cidr: &str) -> bool {
    let res = |p: &str| {
        api.builtin
            .iter()
            .find(|r| r.plural == p && r.group.is_empty())
            .cloned()
            .expect("core resource")
    };
    let ns = res("namespaces");
    let mut done = true;
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let _ = api
            .create_object(
                &ns,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}),
            )
            .await;
        // Read back: only an object that is there counts.
        done &= matches!(api.get_object(&ns, "", n).await, Ok(Some(_)));
    }
    let ip = service_cidr
        .split(',')
        .next()
        .and_then(|c| c.parse::<ipnet::IpNet>().ok())
        .and_then(|n| n.hosts().next())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}});
    let roles = api
        .builtin
        .iter()
        .find(|r| r.plural == "clusterroles")
        .cloned()
        .expect("clusterroles");
    for role in auth::bootstrap_cluster_roles() {
        let name = role["metadata"]["name"].as_str().unwrap_or("").to_string();
        let _ = api.create_object(&roles, "", role).await;
        done &= matches!(api.get_object(&roles, "", &name).await, Ok(Some(_)));
    }
    let svcs = res("services");
    let _ = api.create_object(&svcs, "default", svc).await;
    done && matches!(
        api.get_object(&svcs, "default", "kubernetes").await,
        Ok(Some(_))
    )
}
