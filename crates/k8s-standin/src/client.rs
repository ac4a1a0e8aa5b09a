//! A minimal Kubernetes API client for the stand-ins (kubeadm, kubelet,
//! controller-manager): JSON over HTTPS with kubeconfig credentials.

use crate::pki::kubeconfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Hyper};
use serde_json::Value;
use std::time::Duration;

#[derive(Clone)]
pub struct Client {
    pub server: String,
    inner: Hyper<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    bearer: Option<String>,
}

/// An API answer: HTTP status and decoded body (a string if not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// The Status message, for errors.
    pub fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| self.body.to_string())
    }
}

impl Client {
    fn build(server: &str, tls: rustls::ClientConfig, bearer: Option<String>) -> Client {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Client {
            server: server.trim_end_matches('/').to_string(),
            inner: Hyper::builder(hyper_util::rt::TokioExecutor::new()).build(https),
            bearer,
        }
    }

    /// From a kubeconfig's text (embedded certificate data).
    pub fn from_kubeconfig(text: &str) -> Result<Client, String> {
        let p = kubeconfig::parse(text).map_err(|e| e.to_string())?;
        let tls = crate::tls::client_config(
            p.ca_pem.as_bytes(),
            p.client
                .as_ref()
                .map(|c| (c.cert_pem.as_bytes(), c.key_pem.as_bytes())),
        )?;
        Ok(Client::build(&p.server, tls, p.token))
    }

    pub fn from_kubeconfig_file(path: &str) -> Result<Client, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("failed to load admin kubeconfig: open {path}: {e}"))?;
        Client::from_kubeconfig(&text)
    }

    /// Trusting `ca_pem`, authenticating with a bootstrap token.
    pub fn with_token(server: &str, ca_pem: &str, token: &str) -> Result<Client, String> {
        Ok(Client::build(
            server,
            crate::tls::client_config(ca_pem.as_bytes(), None)?,
            Some(token.to_string()),
        ))
    }

    /// Without verifying the server (kubeadm's discovery then pins the CA by hash).
    pub fn insecure(server: &str) -> Client {
        Client::build(server, crate::tls::insecure_client_config(), None)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Answer {
        let builder = || {
            let b = hyper::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.server))
                .header("accept", "application/json")
                .header("content-type", content_type)
                .header(
                    "user-agent",
                    format!(
                        "kubeadm/{} (linux/amd64) kubernetes/standin",
                        crate::VERSION
                    ),
                );
            match &self.bearer {
                Some(t) => b.header("authorization", format!("Bearer {t}")),
                None => b,
            }
        };
        let body = Bytes::from(body.map(|v| v.to_string()).unwrap_or_default());
        // kubeadm's API calls are retried while the connection cannot be made (an
        // apiserver not yet in the load balancer's rotation), every 500 ms for up to 40 s
        // (its APICallRetryInterval and write timeout); such a request never reached a
        // server, so a write is safe to send again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        let answer = loop {
            let req = match builder().body(Full::new(body.clone())) {
                Ok(r) => r,
                Err(e) => {
                    return Answer {
                        code: 0,
                        body: Value::String(e.to_string()),
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), self.inner.request(req)).await {
                Ok(Err(e)) if e.is_connect() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                answer => break answer,
            }
        };
        match answer {
            Ok(Ok(resp)) => {
                let code = resp.status().as_u16();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                Answer { code, body }
            }
            Ok(Err(e)) => Answer {
                code: 0,
                body: Value::String(format!("Get \"{}{path}\": {e}", self.server)),
            },
            Err(_) => Answer {
                code: 0,
                body: Value::String(format!(
                    "Get \"{}{path}\": context deadline exceeded",
                    self.server
                )),
            },
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, "application/json").await
    }
    pub async fn create(&self, path: &str, obj: &Value) -> Answer {
        self.call("POST", path, Some(obj), "application/json").await
    }
    pub async fn put(&self, path: &str, obj: &Value) -> Answer {
        self.call("PUT", path, Some(obj), "application/json").await
    }
    pub async fn merge(&self, path: &str, patch: &Value) -> Answer {
        self.call("PATCH", path, Some(patch), "application/merge-patch+json")
            .await
    }
    pub async fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None, "application/json").await
    }
    /// Server-side apply as `manager`.
    pub async fn apply(&self, path: &str, obj: &Value, manager: &str) -> Answer {
        self.call(
            "PATCH",
            &format!("{path}?fieldManager={manager}&force=true"),
            Some(obj),
            "application/apply-patch+yaml",
        )
        .await
    }

    /// Creates, or replaces an existing object (kubeadm's CreateOrUpdate).
    pub async fn create_or_update(&self, collection: &str, name: &str, obj: &Value) -> Answer {
        let a = self.create(collection, obj).await;
        if a.code != 409 {
            return a;
        }
        let item = format!("{collection}/{name}");
        for _ in 0..5 {
            let cur = self.get(&item).await;
            if !cur.ok() {
                return cur;
            }
            let mut o = obj.clone();
            o["metadata"]["resourceVersion"] = cur.body["metadata"]["resourceVersion"].clone();
            let r = self.put(&item, &o).await;
            if r.code != 409 {
                return r;
            }
        }
        a
    }
}
