//! Test harness: a real etcd (Debian's etcd-server) with kubeadm's PKI on
//! loopback, in-process apiservers, and a small HTTPS client.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_standin::pki::{self, CertKey, PkiParams};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Cluster {
    pub dir: PathBuf,
    pub etcd_url: String,
    etcd: Child,
    pub ca: CertKey,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(exe: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(exe))
        .find(|p| p.is_file())
}

/// None (test skipped) when etcd is missing outside CI; panics in CI.
pub fn etcd_available() -> bool {
    if which("etcd").is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("etcd is not installed: CI must `apt-get install etcd-server etcd-client`");
    }
    eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server etcd-client)");
    false
}

impl Cluster {
    /// Writes a kubeadm PKI for node "cp1" on 127.0.0.1 and starts etcd with it.
    pub fn start(name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("standin-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pki/etcd")).unwrap();
        let params = PkiParams {
            node_name: "cp1".into(),
            advertise_address: "127.0.0.1".parse().unwrap(),
            endpoint_host: None,
            cert_sans: vec![],
            service_ip: "10.96.0.1".parse().unwrap(),
            dns_domain: "cluster.local".into(),
            etcd_server_sans: vec![],
            etcd_peer_sans: vec![],
            validity: Duration::from_secs(86400),
            ca_validity: Duration::from_secs(86400),
        };
        for f in pki::generate(&params, &|_| None).unwrap() {
            std::fs::write(dir.join("pki").join(&f.path), &f.contents).unwrap();
        }
        let p = |f: &str| dir.join("pki").join(f).to_string_lossy().into_owned();
        // Ports come from the OS but may race with other test processes:
        // retry when our etcd dies (it lost the bind) instead of using another's.
        let (etcd, etcd_url) = (0..10)
            .find_map(|_| {
                let (cport, pport) = (free_port(), free_port());
                let etcd_url = format!("https://127.0.0.1:{cport}");
                let peer = format!("https://127.0.0.1:{pport}");
                let mut child = Command::new("etcd")
                    .args([
                        "--name",
                        "cp1",
                        "--data-dir",
                        &dir.join("etcd").to_string_lossy(),
                        "--listen-client-urls",
                        &etcd_url,
                        "--advertise-client-urls",
                        &etcd_url,
                        "--listen-peer-urls",
                        &peer,
                        "--initial-advertise-peer-urls",
                        &peer,
                        "--initial-cluster",
                        &format!("cp1={peer}"),
                        "--initial-cluster-token",
                        &format!("{name}-{}", std::process::id()),
                        "--cert-file",
                        &p("etcd/server.crt"),
                        "--key-file",
                        &p("etcd/server.key"),
                        "--client-cert-auth=true",
                        "--trusted-ca-file",
                        &p("etcd/ca.crt"),
                        "--peer-cert-file",
                        &p("etcd/peer.crt"),
                        "--peer-key-file",
                        &p("etcd/peer.key"),
                        "--peer-client-cert-auth=true",
                        "--peer-trusted-ca-file",
                        &p("etcd/ca.crt"),
                        "--listen-metrics-urls",
                        &format!("http://127.0.0.1:{}", free_port()),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start etcd");
                for _ in 0..100 {
                    if let Ok(Some(_)) = child.try_wait() {
                        let _ = std::fs::remove_dir_all(dir.join("etcd"));
                        return None;
                    }
                    if std::net::TcpStream::connect(("127.0.0.1", cport)).is_ok() {
                        std::thread::sleep(Duration::from_millis(300));
                        if let Ok(None) = child.try_wait() {
                            return Some((child, etcd_url));
                        }
                        let _ = std::fs::remove_dir_all(dir.join("etcd"));
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                None
            })
            .expect("etcd starts");
        let ca = CertKey {
            cert_pem: std::fs::read_to_string(dir.join("pki/ca.crt")).unwrap(),
            key_pem: std::fs::read_to_string(dir.join("pki/ca.key")).unwrap(),
        };
        Cluster {
            dir,
            etcd_url,
            etcd,
            ca,
        }
    }

    pub fn pki(&self, f: &str) -> String {
        self.dir.join("pki").join(f).to_string_lossy().into_owned()
    }

    /// Starts an in-process apiserver on a free loopback port.
    pub async fn apiserver(&self) -> String {
        let addr = k8s_standin::apiserver::start(&self.apiserver_options())
            .await
            .expect("apiserver starts");
        self.ready(addr).await
    }

    /// [`Cluster::apiserver`], serving until `stopping` turns true; the handle ends when
    /// its shutdown is complete.
    pub async fn apiserver_until(
        &self,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let (addr, served) =
            k8s_standin::apiserver::start_until(&self.apiserver_options(), stopping)
                .await
                .expect("apiserver starts");
        (self.ready(addr).await, served)
    }

    fn apiserver_options(&self) -> k8s_standin::apiserver::Options {
        k8s_standin::apiserver::Options {
            bind_address: "127.0.0.1".into(),
            secure_port: 0,
            advertise_address: "127.0.0.1".into(),
            tls_cert_file: self.pki("apiserver.crt"),
            tls_private_key_file: self.pki("apiserver.key"),
            client_ca_file: self.pki("ca.crt"),
            etcd_servers: vec![self.etcd_url.clone()],
            etcd_cafile: self.pki("etcd/ca.crt"),
            etcd_certfile: self.pki("apiserver-etcd-client.crt"),
            etcd_keyfile: self.pki("apiserver-etcd-client.key"),
            service_cluster_ip_range: "10.96.0.0/12".into(),
            service_account_issuer: "https://kubernetes.default.svc.cluster.local".into(),
            service_account_key_file: self.pki("sa.pub"),
            service_account_signing_key_file: self.pki("sa.key"),
            api_audiences: vec![],
        }
    }

    /// Waits until the apiserver at `addr` is ready and returns its URL.
    async fn ready(&self, addr: std::net::SocketAddr) -> String {
        // Ready once etcd answers and the system namespaces exist.
        let url = format!("https://{addr}");
        let c = Client::new(&self.ca.cert_pem, None);
        for _ in 0..200 {
            if c.get(&format!("{url}/readyz")).await.0 == 200 {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("apiserver did not become ready");
    }

    /// A client with a certificate for CN/O signed by the cluster CA.
    pub fn client(&self, cn: &str, orgs: &[&str]) -> Client {
        let leaf = pki::new_leaf(
            &self.ca,
            cn,
            orgs,
            &[],
            pki::Usage::Client,
            Duration::from_secs(3600),
        )
        .unwrap();
        Client::new(&self.ca.cert_pem, Some(leaf))
    }

    /// kubeadm's `admin.conf` for the apiserver at `url`, as `kubeadm init` would write it.
    pub fn admin_kubeconfig(&self, url: &str) -> String {
        k8s_standin::pki::kubeconfig::for_file(
            "admin.conf",
            "cp1",
            url,
            &self.ca,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    pub fn admin(&self) -> Client {
        self.client("kubernetes-admin", &["kubeadm:cluster-admins"])
    }
}

pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    pub bearer: Option<String>,
}

impl Client {
    pub fn new(ca_pem: &str, cert: Option<CertKey>) -> Client {
        let tls = k8s_standin::tls::client_config(
            ca_pem.as_bytes(),
            cert.as_ref()
                .map(|c| (c.cert_pem.as_bytes(), c.key_pem.as_bytes())),
        )
        .unwrap();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Client {
            inner:
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(https),
            bearer: None,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        content_type: &str,
        accept: &str,
    ) -> (u16, Value) {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", content_type)
            .header("accept", accept);
        if let Some(t) = &self.bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .unwrap();
        match self.inner.request(req).await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                (code, v)
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    pub async fn get(&self, url: &str) -> (u16, Value) {
        self.call("GET", url, None, "application/json", "application/json")
            .await
    }
    pub async fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        self.call(
            "POST",
            url,
            Some(&body.to_string()),
            "application/json",
            "application/json",
        )
        .await
    }
    pub async fn apply(&self, url: &str, body: &str) -> (u16, Value) {
        self.call(
            "PATCH",
            &format!("{url}?fieldManager=kubeha&force=true"),
            Some(body),
            "application/apply-patch+yaml",
            "application/json",
        )
        .await
    }
    pub async fn merge(&self, url: &str, body: &Value) -> (u16, Value) {
        self.call(
            "PATCH",
            url,
            Some(&body.to_string()),
            "application/merge-patch+json",
            "application/json",
        )
        .await
    }
}
