//! The kube-controller-manager stand-in's controllers, run as idempotent
//! reconcile passes so several instances (one per control plane) can coexist:
//! bootstrap signer, token cleaner, owner-reference garbage collection, CSR
//! approval and signing, node lifecycle, and workload status.

use crate::apiserver::objects::{now_rfc3339, parse_rfc3339};
use crate::client::Client;
use crate::kubeadm::objects::{detached_jws, secret_field};
use crate::pki::{self, CertKey};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

/// The node lifecycle controller's grace period before Ready becomes Unknown.
pub const NODE_MONITOR_GRACE: i64 = 40;
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
    node_lifecycle(c, now).await;
    workload_status(c).await;
    Ok(())
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

/// Marks nodes whose kubelet stopped heartbeating as Ready=Unknown.
async fn node_lifecycle(c: &Client, now: OffsetDateTime) {
    for n in items(&c.get("/api/v1/nodes").await) {
        let name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
        let Some(conds) = n.pointer("/status/conditions").and_then(Value::as_array) else {
            continue;
        };
        let Some(ready) = conds.iter().find(|c| c["type"] == "Ready") else {
            continue;
        };
        if ready["status"] == "Unknown" {
            continue;
        }
        let beat = ready["lastHeartbeatTime"].as_str().and_then(parse_rfc3339);
        if beat.is_some_and(|b| (now - b).whole_seconds() > NODE_MONITOR_GRACE) {
            let new: Vec<Value> = conds
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now_rfc3339());
                    c
                })
                .collect();
            c.merge(
                &format!("/api/v1/nodes/{name}/status"),
                &json!({"status": {"conditions": new}}),
            )
            .await;
        }
    }
}

/// Stand-in for pods that would run: DaemonSets count every node, and
/// Deployments are available once some node is Ready.
async fn workload_status(c: &Client) {
    let nodes = items(&c.get("/api/v1/nodes").await);
    let total = nodes.len() as i64;
    let ready = nodes
        .iter()
        .filter(|n| crate::apiserver::objects::node_status(n).starts_with("Ready"))
        .count() as i64;
    for ds in items(&c.get("/apis/apps/v1/daemonsets").await) {
        let want = json!({"currentNumberScheduled": total, "desiredNumberScheduled": total, "numberAvailable": ready, "numberReady": ready,
            "numberMisscheduled": 0, "updatedNumberScheduled": total, "observedGeneration": ds["metadata"]["generation"]});
        if ds["status"] != want {
            let (ns, name) = (
                ds["metadata"]["namespace"].as_str().unwrap_or(""),
                ds["metadata"]["name"].as_str().unwrap_or(""),
            );
            c.merge(
                &format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}/status"),
                &json!({"status": want}),
            )
            .await;
        }
    }
    for d in items(&c.get("/apis/apps/v1/deployments").await) {
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let avail = if ready > 0 { replicas } else { 0 };
        let cond = if avail == replicas { "True" } else { "False" };
        let want = json!({"replicas": replicas, "updatedReplicas": replicas, "readyReplicas": avail, "availableReplicas": avail,
            "observedGeneration": d["metadata"]["generation"],
            "conditions": [{"type": "Available", "status": cond, "reason": if cond == "True" { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}]});
        let cur = &d["status"];
        if cur["readyReplicas"] != want["readyReplicas"]
            || cur["observedGeneration"] != want["observedGeneration"]
            || cur["replicas"] != want["replicas"]
        {
            let (ns, name) = (
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or(""),
            );
            c.merge(
                &format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}/status"),
                &json!({"status": want}),
            )
            .await;
        }
    }
}
