//! The Kubernetes API, through the admin kubeconfig: node readiness, the Calico
//! DaemonSet, and server-side apply of manifests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};

use crate::plan::ClusterState;

/// The field manager kubeha's server-side applies use.
const FIELD_MANAGER: &str = "kubeha";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("the admin kubeconfig is unusable: {0}")]
    Config(String),
    #[error("the Kubernetes API did not answer: {0}")]
    Api(String),
    #[error("the manifest is not valid YAML: {0}")]
    Manifest(String),
    #[error("{0}")]
    NotReady(String),
}

fn api_error(e: kube::Error) -> KubeError {
    KubeError::Api(e.to_string())
}

pub async fn client(kubeconfig_yaml: &str) -> Result<Client, KubeError> {
    let kubeconfig =
        Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| KubeError::Config(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| KubeError::Config(e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))
}

/// Per node: Ready, and when not, the Ready condition's reason and message.
pub async fn node_readiness(
    client: &Client,
) -> Result<BTreeMap<String, Result<(), String>>, KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(api_error)?;
    Ok(list
        .items
        .into_iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"));
            let state = match ready {
                Some(c) if c.status == "True" => Ok(()),
                Some(c) => Err(format!(
                    "{}: {}",
                    c.reason.unwrap_or_else(|| "NotReady".into()),
                    c.message.unwrap_or_default()
                )),
                None => Err("the kubelet has not reported a Ready condition".into()),
            };
            (name, state)
        })
        .collect())
}

pub async fn cluster_state(client: &Client) -> Result<ClusterState, KubeError> {
    let nodes = node_readiness(client)
        .await?
        .into_iter()
        .map(|(name, ready)| (name, ready.is_ok()))
        .collect();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let calico = daemonsets
        .get_opt("calico-node")
        .await
        .map_err(api_error)?
        .is_some();
    Ok(ClusterState { nodes, calico })
}

/// Server-side applies every object of a multi-document manifest, in order. A kind that
/// is not served yet (a CRD from the same manifest still being established) is retried.
pub async fn apply_manifest(client: &Client, manifest: &str) -> Result<usize, KubeError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(manifest).map_err(|e| KubeError::Manifest(e.to_string()))?;
    let mut applied = 0;
    for doc in docs.into_iter().filter(|d| d.is_object()) {
        let obj: DynamicObject =
            serde_json::from_value(doc).map_err(|e| KubeError::Manifest(e.to_string()))?;
        let types = obj
            .types
            .clone()
            .ok_or_else(|| KubeError::Manifest("an object without apiVersion/kind".into()))?;
        let gvk =
            GroupVersionKind::try_from(&types).map_err(|e| KubeError::Manifest(e.to_string()))?;
        let name = obj
            .metadata
            .name
            .clone()
            .ok_or_else(|| KubeError::Manifest(format!("a {} without a name", types.kind)))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let (resource, caps) = loop {
            match kube::discovery::pinned_kind(client, &gvk).await {
                Ok(found) => break found,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Err(e) => return Err(api_error(e)),
            }
        };
        let api: Api<DynamicObject> = match (caps.scope, &obj.metadata.namespace) {
            (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            (kube::discovery::Scope::Namespaced, None) => {
                Api::default_namespaced_with(client.clone(), &resource)
            }
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| KubeError::Api(format!("{} {name}: {e}", types.kind)))?;
        applied += 1;
    }
    Ok(applied)
}

/// Waits until every named node is registered and Ready, or explains which are not.
pub async fn wait_ready(
    client: &Client,
    nodes: &[String],
    timeout: Duration,
) -> Result<(), KubeError> {
    let deadline = Instant::now() + timeout;
    loop {
        let readiness = node_readiness(client).await;
        let stuck: Vec<String> = match &readiness {
            Ok(r) => nodes
                .iter()
                .filter_map(|n| match r.get(n) {
                    Some(Ok(())) => None,
                    Some(Err(why)) => Some(format!("{n} is not Ready ({why})")),
                    None => Some(format!("{n} has not registered with the API")),
                })
                .collect(),
            Err(e) => vec![e.to_string()],
        };
        if stuck.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KubeError::NotReady(format!(
                "after {}s: {}",
                timeout.as_secs(),
                stuck.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Pods in kube-system that are not running: name and why.
pub async fn unhealthy_system_pods(client: &Client) -> Result<Vec<String>, KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let list = pods.list(&ListParams::default()).await.map_err(api_error)?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let name = p.metadata.name.unwrap_or_default();
            let status = p.status.unwrap_or_default();
            let phase = status.phase.unwrap_or_else(|| "Pending".into());
            let waiting = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.state?.waiting?.reason)
                .next();
            match (phase.as_str(), waiting) {
                ("Succeeded", _) | ("Running", None) => None,
                (_, Some(reason)) => Some(format!("{name} ({reason})")),
                (phase, None) => Some(format!("{name} ({phase})")),
            }
        })
        .collect())
}

/// Waits until every kube-system pod runs, or names those that do not.
pub async fn wait_kube_system(client: &Client, timeout: Duration) -> Result<(), KubeError> {
    let deadline = Instant::now() + timeout;
    loop {
        let bad = unhealthy_system_pods(client).await?;
        if bad.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KubeError::NotReady(format!(
                "after {}s kube-system is not healthy: {}",
                timeout.as_secs(),
                bad.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
