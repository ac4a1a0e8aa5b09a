//! The kube-controller-manager stand-in's controllers, run as reconcile
//! passes by the instance holding the leader Lease: bootstrap signer, token
//! cleaner, owner-reference garbage collection, CSR approval and signing,
//! node lifecycle and taint eviction, and the workload controllers
//! (ReplicaSet, Deployment, DaemonSet, disruption).

pub mod leader;
pub mod nodes;
pub mod workloads;

use crate::apiserver::objects::{now_rfc3339, parse_rfc3339};
use crate::client::Client;
use crate::kubeadm::objects::{detached_jws, secret_field};
use crate::pki::{self, CertKey};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

pub use nodes::{NODE_LEASES, NODE_MONITOR_GRACE};
const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";

fn items(a: &crate::client::Answer) -> Vec<Value> {
    a.body["items"].as_array().cloned().unwrap_or_default()
}

fn expired(secret: &Value, now: OffsetDateTime) -> bool {
    secret_field(secret, "expiration")
        .and_then(|e| parse_rfc3339(&e))
        .is_some_and(|t| t <= now)
}

/// One pass of every controller.
pub async fn reconcile(c: &Client, ca: &CertKey, now: OffsetDateTime) -> Result<(), String> {
    let secrets = c.get(SECRETS).await;
    if !secrets.ok() {
        return Err(secrets.message());
    }
    let secrets = items(&secrets);
    let tokens: Vec<&Value> = secrets
        .iter()
        .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
        .collect();
    token_cleaner(c, &tokens, now).await;
    garbage_collect(c, &secrets, now).await;
    bootstrap_signer(c, &tokens, now).await;
    csr_signer(c, ca).await;
    let world = world(c).await?;
    let mut actions = nodes::lifecycle(&world, now);
    actions.extend(nodes::evictions(&world, now));
    actions.extend(workloads::garbage(&world));
    actions.extend(workloads::replicasets(&world, now));
    actions.extend(workloads::deployments(&world));
    actions.extend(workloads::daemonsets(&world));
    actions.extend(workloads::disruption(&world, now));
    apply(c, actions).await;
    Ok(())
}

async fn list(c: &Client, path: &str) -> Result<Vec<Value>, String> {
    let a = c.get(path).await;
    if !a.ok() {
        return Err(format!("list {path}: {}", a.message()));
    }
    Ok(items(&a))
}

/// One snapshot, dependents before owners (see `World`).
pub async fn world(c: &Client) -> Result<workloads::World, String> {
    Ok(workloads::World {
        pods: list(c, "/api/v1/pods").await?,
        replicasets: list(c, "/apis/apps/v1/replicasets").await?,
        deployments: list(c, "/apis/apps/v1/deployments").await?,
        daemonsets: list(c, "/apis/apps/v1/daemonsets").await?,
        statefulsets: list(c, "/apis/apps/v1/statefulsets").await?,
        jobs: list(c, "/apis/batch/v1/jobs").await?,
        pdbs: list(c, "/apis/policy/v1/poddisruptionbudgets").await?,
        nodes: list(c, "/api/v1/nodes").await?,
        node_leases: list(c, NODE_LEASES).await?,
    })
}

/// Performs the planned writes; a failed one is retried by the next pass.
pub async fn apply(c: &Client, actions: Vec<workloads::Action>) {
    use workloads::Action;
    for a in actions {
        let (what, r) = match &a {
            Action::Create { path, obj } => (path, c.create(path, obj).await),
            Action::Merge { path, patch } => (path, c.merge(path, patch).await),
            Action::Replace { path, obj } => (path, c.put(path, obj).await),
            Action::Delete { path } => (path, c.delete(path).await),
        };
        // 404 and 409: the object changed under us; the next pass sees it.
        if !r.ok() && r.code != 404 && r.code != 409 {
            eprintln!("E0000 controller: {what}: {}", r.message());
        }
    }
}

/// Records an Event about `obj` (core/v1, as `kubectl get events` shows them).
pub async fn event(
    c: &Client,
    obj: &Value,
    kind: &str,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let t = now_rfc3339();
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{}.", obj["metadata"]["name"].as_str().unwrap_or("")), "namespace": ns},
        "involvedObject": {"kind": kind, "namespace": ns, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "apiVersion": "v1"},
        "reason": reason, "message": message, "type": ty, "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": t, "lastTimestamp": t, "count": 1});
    c.create(&format!("/api/v1/namespaces/{ns}/events"), &ev)
        .await;
}

async fn token_cleaner(c: &Client, tokens: &[&Value], now: OffsetDateTime) {
    for t in tokens.iter().filter(|t| expired(t, now)) {
        let name = t["metadata"]["name"].as_str().unwrap_or("");
        c.delete(&format!("{SECRETS}/{name}")).await;
    }
}

/// Deletes Secrets whose owner Secret is gone or expired (kubeadm-certs).
async fn garbage_collect(c: &Client, secrets: &[Value], now: OffsetDateTime) {
    for s in secrets {
        let Some(owners) = s
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            continue;
        };
        let dangling = owners.iter().any(|o| {
            o["kind"] == "Secret"
                && !secrets.iter().any(|x| {
                    x["metadata"]["uid"] == o["uid"]
                        && x["metadata"]["name"] == o["name"]
                        && !expired(x, now)
                })
        });
        if dangling {
            let name = s["metadata"]["name"].as_str().unwrap_or("");
            c.delete(&format!("{SECRETS}/{name}")).await;
        }
    }
}

/// Signs kube-public/cluster-info for every valid signing token; drops stale signatures.
async fn bootstrap_signer(c: &Client, tokens: &[&Value], now: OffsetDateTime) {
    let path = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    let cm = c.get(path).await;
    if !cm.ok() {
        return;
    }
    let mut cm = cm.body;
    let Some(kubeconfig) = cm["data"]["kubeconfig"].as_str().map(String::from) else {
        return;
    };
    let mut data = serde_json::Map::new();
    data.insert("kubeconfig".into(), json!(kubeconfig));
    for t in tokens.iter().filter(|t| {
        !expired(t, now) && secret_field(t, "usage-bootstrap-signing").as_deref() == Some("true")
    }) {
        if let (Some(id), Some(secret)) =
            (secret_field(t, "token-id"), secret_field(t, "token-secret"))
        {
            data.insert(
                format!("jws-kubeconfig-{id}"),
                json!(detached_jws(&kubeconfig, &id, &secret)),
            );
        }
    }
    if cm["data"] != Value::Object(data.clone()) {
        cm["data"] = Value::Object(data);
        c.put(path, &cm).await;
    }
}

/// Approves and signs kubelet client CSRs from bootstrap tokens and nodes.
async fn csr_signer(c: &Client, ca: &CertKey) {
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    for mut csr in items(&c.get(path).await) {
        if csr.pointer("/status/certificate").is_some()
            || csr["spec"]["signerName"] != "kubernetes.io/kube-apiserver-client-kubelet"
        {
            continue;
        }
        let Some(req) = csr["spec"]["request"]
            .as_str()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            continue;
        };
        let Ok((cn, orgs)) = pki::subject(&req) else {
            continue;
        };
        if !cn.starts_with("system:node:") || orgs != ["system:nodes"] {
            continue;
        }
        let Ok(cert) = pki::sign_csr(ca, &req, Duration::from_secs(365 * 86400)) else {
            continue;
        };
        let name = csr["metadata"]["name"].as_str().unwrap_or("").to_string();
        csr["status"] = json!({
            "conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved", "message": "Auto approving kubelet client certificate after SubjectAccessReview.", "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}],
            "certificate": B64.encode(cert),
        });
        c.put(&format!("{path}/{name}/status"), &csr).await;
    }
}
