//! The Kubernetes API, through the admin kubeconfig: node readiness, the Calico
//! DaemonSet, server-side apply of manifests, and the bootstrap tokens joins use.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};

use crate::facts::cluster::{
    enabled_pools, parse_calico_node, parse_cluster_configuration, parse_kubelet_configuration,
    parse_managed, NodeCondition, NodeState, NodeTaint, MANAGED_LABELS, MANAGED_TAINTS,
};
use crate::plan::ClusterState;
use crate::wait::{self, Check};

/// Set on a Node kubeha cordons for an upgrade, removed when it uncordons it: what tells
/// a re-run which cordoned nodes are kubeha's to uncordon.
pub const CORDONED_ANNOTATION: &str = "kubeha.dev/cordoned-for-upgrade";

/// The field manager kubeha's server-side applies use.
pub const FIELD_MANAGER: &str = "kubeha";

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

/// A kubeconfig read from a host, cut down to what kubeha needs: the spec's API server,
/// the CA data and the client certificate and key data. Whatever else a hostile host put
/// there (`exec` or `auth-provider` commands, `insecure-skip-tls-verify`, token files,
/// local paths, `proxy-url`, another server) is dropped, as kube-rs would honour it.
pub fn trusted_kubeconfig(yaml: &str, server: &str) -> Result<String, KubeError> {
    let bad = |why: &str| KubeError::Config(why.to_string());
    let doc: serde_json::Value =
        serde_saphyr::from_str(yaml).map_err(|_| bad("not a YAML kubeconfig"))?;
    let named = |list: &str, name: &str, field: &str| {
        doc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"].as_str() == Some(name))
            .map(|e| e[field].clone())
            .ok_or_else(|| bad(&format!("no {field} named in its current context")))
    };
    let current = doc["current-context"]
        .as_str()
        .ok_or_else(|| bad("no current-context"))?;
    let context = named("contexts", current, "context")?;
    let cluster = named(
        "clusters",
        context["cluster"].as_str().unwrap_or(""),
        "cluster",
    )?;
    let user = named("users", context["user"].as_str().unwrap_or(""), "user")?;
    let data = |v: &serde_json::Value, field: &str| {
        v[field]
            .as_str()
            .filter(|d| !d.is_empty() && base64_text(d))
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("no {field}")))
    };
    let trimmed = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubernetes", "cluster": {
            "server": server,
            "certificate-authority-data": data(&cluster, "certificate-authority-data")?,
        }}],
        "users": [{"name": "kubernetes-admin", "user": {
            "client-certificate-data": data(&user, "client-certificate-data")?,
            "client-key-data": data(&user, "client-key-data")?,
        }}],
        "contexts": [{"name": "kubernetes-admin@kubernetes", "context": {
            "cluster": "kubernetes",
            "user": "kubernetes-admin",
        }}],
        "current-context": "kubernetes-admin@kubernetes",
    });
    serde_saphyr::to_string(&trimmed).map_err(|e| KubeError::Config(e.to_string()))
}

fn base64_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// A client for a kubeconfig that went through [`trusted_kubeconfig`].
pub async fn client(kubeconfig_yaml: &str) -> Result<Client, KubeError> {
    let kubeconfig =
        Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| KubeError::Config(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| KubeError::Config(e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(30));
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| KubeError::Config(e.to_string()))?;
    let count = tower::util::MapRequestLayer::new(|r: http::Request<kube::client::Body>| {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r
    });
    Ok(builder.with_layer(&count).build())
}

/// Every request kubeha's API clients send, counted so that a run can say how many it
/// made (`-v`): a no-op's cost is a number of round trips, which tests can assert.
static REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// API requests this process has sent so far.
pub fn requests_sent() -> usize {
    REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
}

async fn list_nodes(client: &Client) -> Result<Vec<Node>, KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(api_error)?;
    Ok(list.items)
}

/// Per node: Ready, and when not, the Ready condition's reason and message.
pub async fn node_readiness(
    client: &Client,
) -> Result<BTreeMap<String, Result<(), String>>, KubeError> {
    Ok(list_nodes(client)
        .await?
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

/// Each Node's conditions, cordon, kubelet version, labels and taints, and which of
/// those kubeha manages.
async fn node_states(client: &Client) -> Result<BTreeMap<String, NodeState>, KubeError> {
    Ok(list_nodes(client)
        .await?
        .into_iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let spec = n.spec.unwrap_or_default();
            let status = n.status.unwrap_or_default();
            let annotations = n.metadata.annotations.unwrap_or_default();
            let annotation = |key: &str| parse_managed(annotations.get(key).map(String::as_str));
            let conditions: Vec<NodeCondition> = status
                .conditions
                .into_iter()
                .flatten()
                .map(|c| NodeCondition {
                    kind: c.type_,
                    status: c.status,
                    reason: c.reason.unwrap_or_default(),
                    message: c.message.unwrap_or_default(),
                })
                .collect();
            let state = NodeState {
                ready: conditions
                    .iter()
                    .any(|c| c.kind == "Ready" && c.status == "True"),
                cordoned: spec.unschedulable.unwrap_or(false),
                cordoned_by_kubeha: annotations.contains_key(CORDONED_ANNOTATION),
                kubelet_version: status
                    .node_info
                    .map(|i| i.kubelet_version)
                    .unwrap_or_default(),
                labels: n.metadata.labels.unwrap_or_default(),
                taints: spec
                    .taints
                    .into_iter()
                    .flatten()
                    .map(|t| NodeTaint {
                        key: t.key,
                        value: t.value,
                        effect: t.effect,
                    })
                    .collect(),
                conditions,
                managed_labels: annotation(MANAGED_LABELS),
                managed_taints: annotation(MANAGED_TAINTS),
            };
            (name, state)
        })
        .collect())
}

/// The Nodes, kubeadm's live ClusterConfiguration and KubeletConfiguration, and what
/// Calico runs.
pub async fn cluster_state(client: &Client) -> Result<ClusterState, KubeError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    // The requests are independent: one round trip's wait, not five.
    let (nodes, kubeadm_config, kubelet_config, calico, pools) = tokio::try_join!(
        node_states(client),
        configmap_key(&configmaps, "kubeadm-config", "ClusterConfiguration"),
        configmap_key(&configmaps, "kubelet-config", "kubelet"),
        async { daemonsets.get_opt("calico-node").await.map_err(api_error) },
        async { Ok(ip_pools(client).await) },
    )?;
    let kubeadm_config = kubeadm_config
        .map(|text| parse_cluster_configuration(&text).map_err(KubeError::Api))
        .transpose()?;
    let kubelet_config = kubelet_config
        .map(|text| parse_kubelet_configuration(&text).map_err(KubeError::Api))
        .transpose()?;
    let calico_state = match calico {
        None => None,
        Some(ds) => {
            let json = serde_json::to_value(&ds).map_err(|e| KubeError::Api(e.to_string()))?;
            let mut state = parse_calico_node(&json);
            state.ip_pools = enabled_pools(&pools);
            Some(state)
        }
    };
    Ok(ClusterState {
        nodes,
        calico: calico_state.is_some(),
        kubeadm_config,
        kubelet_config,
        calico_state,
    })
}

/// One key of a ConfigMap (empty when the key is missing); `None` without the ConfigMap.
async fn configmap_key(
    configmaps: &Api<ConfigMap>,
    name: &str,
    key: &str,
) -> Result<Option<String>, KubeError> {
    Ok(configmaps
        .get_opt(name)
        .await
        .map_err(api_error)?
        .map(|cm| cm.data.and_then(|mut d| d.remove(key)).unwrap_or_default()))
}

/// Calico's IPPool objects; none when they cannot be listed (Calico's CRDs not served
/// yet, or not readable): the pool is then judged by calico-node's own setting, and the
/// rest of the cluster's state does not depend on them.
async fn ip_pools(client: &Client) -> Vec<serde_json::Value> {
    let gvk = GroupVersionKind::gvk("crd.projectcalico.org", "v1", "IPPool");
    let resource = kube::discovery::ApiResource::from_gvk_with_plural(&gvk, "ippools");
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    match pools.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
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
        let discovered = || async {
            Ok(match kube::discovery::pinned_kind(client, &gvk).await {
                Ok(found) => Check::Done(found),
                Err(e) => Check::NotYet(e.to_string()),
            })
        };
        let (resource, caps) = wait::until(
            Duration::from_secs(60),
            Duration::from_secs(1),
            discovered,
            KubeError::Api,
        )
        .await?;
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

/// Applies a JSON merge patch the plan made ([`crate::plan::node_patch`]) to a Node.
pub async fn patch_node(
    client: &Client,
    node: &str,
    patch: &serde_json::Value,
) -> Result<(), KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| KubeError::Api(format!("cannot label node {node}: {e}")))
}

/// How often the readiness waits ask: a List is cheap, and each interval's half is, on
/// average, added to a cold apply.
const READY_POLL: Duration = Duration::from_millis(500);

/// Waits until every named node is registered and Ready, or explains which are not.
pub async fn wait_ready(
    client: &Client,
    nodes: &[String],
    timeout: Duration,
) -> Result<(), KubeError> {
    let look = || async {
        let stuck: Vec<String> = match node_readiness(client).await {
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
        Ok(Check::none_left(&stuck, "; "))
    };
    wait::until(timeout, READY_POLL, look, |why| {
        KubeError::NotReady(format!("after {}s: {why}", timeout.as_secs()))
    })
    .await
}

/// How often a request whose connection failed is asked again: one dropped connection
/// through a load balancer must not fail (or mislead) a whole run.
const ATTEMPTS: usize = 3;

/// `ask` again, a second apart, while the API did not answer ([`KubeError::Api`]).
pub async fn with_retries<T, F, Fut>(mut ask: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, KubeError>>,
{
    let mut attempt = 1;
    loop {
        match ask().await {
            Err(KubeError::Api(why)) if attempt < ATTEMPTS => {
                tracing::info!(attempt, %why, "the API did not answer; asking again");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            answer => return answer,
        }
    }
}

/// Marks a Node unschedulable (cordon) or schedulable again (uncordon).
pub async fn cordon(client: &Client, node: &str, unschedulable: bool) -> Result<(), KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| KubeError::Api(format!("cannot (un)cordon node {node}: {e}")))
}

/// What a drain did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Drained {
    /// `namespace/name` of every Pod evicted.
    pub evicted: Vec<String>,
    /// Pods deleted without eviction because the node cannot run their shutdown
    /// (`force_delete`, for an unreachable node).
    pub deleted: Vec<String>,
}

/// Pods a drain leaves: mirror pods (the kubelet's static pods), DaemonSet pods (their
/// controller would put them back) and pods that already ended.
fn drain_skips(pod: &Pod) -> bool {
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet");
    let ended = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| matches!(p, "Succeeded" | "Failed"));
    mirror || daemon || ended
}

/// Cordons `node` and evicts its pods as `kubectl drain --ignore-daemonsets
/// --delete-emptydir-data` does, honouring PodDisruptionBudgets (a refused eviction is
/// retried until `timeout`), then waits until they are gone. With `force_delete` (the
/// node is unreachable, so no kubelet will ever end its pods) pods still there after
/// their eviction are deleted with no grace period.
pub async fn drain(
    client: &Client,
    node: &str,
    timeout: Duration,
    force_delete: bool,
) -> Result<Drained, KubeError> {
    cordon(client, node, true).await?;
    let deadline = Instant::now() + timeout;
    let all: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let list = |all: &Api<Pod>| {
        let all = all.clone();
        let on_node = on_node.clone();
        async move {
            let pods = all.list(&on_node).await.map_err(api_error)?.items;
            Ok::<Vec<Pod>, KubeError>(pods.into_iter().filter(|p| !drain_skips(p)).collect())
        }
    };
    let id = |p: &Pod| {
        format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default()
        )
    };
    // Both rounds record into the report; each look borrows it only between awaits.
    let report = std::cell::RefCell::new(Drained::default());
    let evict_round = || async {
        let pending: Vec<Pod> = list(&all)
            .await?
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let mut refused = Vec::new();
        for pod in &pending {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            match pods.evict(name, &kube::api::EvictParams::default()).await {
                Ok(_) => report.borrow_mut().evicted.push(id(pod)),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                // A PodDisruptionBudget allows no disruption now: try again shortly.
                Err(kube::Error::Api(e)) if e.code == 429 => refused.push(id(pod)),
                Err(e) => {
                    return Err(KubeError::Api(format!("cannot evict {}: {e}", id(pod))));
                }
            }
        }
        Ok(Check::none_left(&refused, ", "))
    };
    wait::until(timeout, DRAIN_POLL, evict_round, |refused| {
        KubeError::NotReady(format!(
            "draining {node}: after {}s PodDisruptionBudgets still refuse evicting {refused}",
            timeout.as_secs()
        ))
    })
    .await?;
    let ended = || async {
        let left = list(&all).await?;
        if force_delete {
            for pod in &left {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
                match pods
                    .delete(name, &DeleteParams::default().grace_period(0))
                    .await
                {
                    Ok(_) => report.borrow_mut().deleted.push(id(pod)),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        return Err(KubeError::Api(format!("cannot delete {}: {e}", id(pod))))
                    }
                }
            }
        }
        let names: Vec<String> = left.iter().map(id).collect();
        Ok(Check::none_left(&names, ", "))
    };
    let left = deadline.saturating_duration_since(Instant::now());
    wait::until(left, DRAIN_POLL, ended, |names| {
        KubeError::NotReady(format!(
            "draining {node}: after {}s these pods have not ended: {names}",
            timeout.as_secs()
        ))
    })
    .await?;
    Ok(report.into_inner())
}

/// How often a drain evicts again the pods a PodDisruptionBudget protected, and looks
/// whether the evicted ones have ended.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Deletes a Node object (after its drain); an absent Node is not an error.
pub async fn delete_node(client: &Client, node: &str) -> Result<(), KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.delete(node, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(KubeError::Api(format!("cannot delete node {node}: {e}"))),
    }
}

/// Marks the bootstrap tokens kubeha makes (kubeadm init's, from its config, and those
/// made for later joins), so that a run can revoke them, a killed run's included.
pub const TOKEN_DESCRIPTION: &str = "kubeha: joins this cluster's nodes";
/// The group kubeadm's RBAC rules let join.
const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The Secret `kubeadm init phase upload-certs` stores the control-plane certificates in.
const UPLOADED_CERTS: &str = "kubeadm-certs";

/// Creates a bootstrap token through the API, as `kubeadm token create` does, so that
/// it appears on no host's command line or sudo log.
pub async fn create_bootstrap_token(
    client: &Client,
    token: &str,
    ttl: Duration,
) -> Result<(), KubeError> {
    let (id, secret) = token
        .split_once('.')
        .ok_or_else(|| KubeError::Config("a bootstrap token is `id.secret`".into()))?;
    let expires = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + ttl);
    let field = |v: &str| ByteString(v.as_bytes().to_vec());
    let data = BTreeMap::from([
        ("token-id".to_string(), field(id)),
        ("token-secret".to_string(), field(secret)),
        ("expiration".to_string(), field(&expires.to_string())),
        ("description".to_string(), field(TOKEN_DESCRIPTION)),
        ("usage-bootstrap-authentication".to_string(), field("true")),
        ("usage-bootstrap-signing".to_string(), field("true")),
        ("auth-extra-groups".to_string(), field(TOKEN_GROUP)),
    ]);
    let object = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".into()),
            ..Default::default()
        },
        type_: Some(TOKEN_TYPE.into()),
        data: Some(data),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets
        .create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| KubeError::Api(format!("cannot create a bootstrap token: {e}")))
}

/// The description kubeadm gives the token that owns (and expires) `kubeadm-certs`.
const UPLOADED_CERTS_TOKEN: &str = "Proxy for managing TTL for the kubeadm-certs secret";

/// Deletes every bootstrap token kubeha made and the uploaded control-plane certificates
/// with the tokens kubeadm made to expire them; returns how many Secrets went.
pub async fn revoke_join_credentials(client: &Client) -> Result<usize, KubeError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let list = secrets
        .list(&ListParams::default())
        .await
        .map_err(api_error)?;
    let doomed = join_credentials(&list.items);
    for name in &doomed {
        match secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(KubeError::Api(format!("cannot delete Secret {name}: {e}"))),
        }
    }
    Ok(doomed.len())
}

/// The join credentials among kube-system's Secrets: kubeha's bootstrap tokens,
/// `kubeadm-certs`, and every token kubeadm made to expire an upload of it, the one
/// `kubeadm-certs` names and those an earlier upload (a killed run's) left behind when
/// the next upload named a new one.
fn join_credentials(secrets: &[Secret]) -> Vec<String> {
    let text = |s: &Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    let mut doomed = std::collections::BTreeSet::new();
    for s in secrets {
        let name = s.metadata.name.clone().unwrap_or_default();
        let token = s.type_.as_deref() == Some(TOKEN_TYPE);
        let description = text(s, "description");
        let ours = matches!(
            description.as_deref(),
            Some(TOKEN_DESCRIPTION | UPLOADED_CERTS_TOKEN)
        );
        if token && ours {
            doomed.insert(name);
        } else if name == UPLOADED_CERTS {
            doomed.extend(
                s.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|o| o.kind == "Secret" && o.name.starts_with("bootstrap-token-"))
                    .map(|o| o.name.clone()),
            );
            doomed.insert(name);
        }
    }
    doomed.into_iter().collect()
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
    let look = || async {
        let bad = unhealthy_system_pods(client).await?;
        Ok(Check::none_left(&bad, ", "))
    };
    wait::until(timeout, READY_POLL, look, |why| {
        KubeError::NotReady(format!(
            "after {}s kube-system is not healthy: {why}",
            timeout.as_secs()
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "https://load-balancer.local:6443";

    #[test]
    fn a_drain_leaves_mirror_daemonset_and_ended_pods() {
        let pod = |extra: serde_json::Value| -> Pod {
            let mut p = serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}});
            json_patch_merge(&mut p, extra);
            serde_json::from_value(p).unwrap()
        };
        assert!(!drain_skips(&pod(serde_json::json!({}))));
        assert!(!drain_skips(&pod(
            serde_json::json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u"}]}})
        )));
        assert!(drain_skips(&pod(
            serde_json::json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "u"}]}})
        )));
        assert!(drain_skips(&pod(
            serde_json::json!({"metadata": {"annotations": {
            "kubernetes.io/config.mirror": "x"}}})
        )));
        assert!(drain_skips(&pod(
            serde_json::json!({"status": {"phase": "Succeeded"}})
        )));
        assert!(!drain_skips(&pod(
            serde_json::json!({"status": {"phase": "Running"}})
        )));
    }

    fn json_patch_merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        match (base, extra) {
            (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
                for (k, v) in e {
                    json_patch_merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    #[test]
    fn join_credentials_include_a_killed_runs_orphaned_upload_token() {
        let secret = |name: &str, kind: &str, description: &str, owner: Option<&str>| -> Secret {
            let mut v = serde_json::json!({
                "metadata": {"name": name, "namespace": "kube-system"},
                "type": kind,
                "data": {"description": base64_of(description)},
            });
            if let Some(o) = owner {
                v["metadata"]["ownerReferences"] = serde_json::json!([
                    {"apiVersion": "v1", "kind": "Secret", "name": o, "uid": "u"}]);
            }
            serde_json::from_value(v).unwrap()
        };
        let secrets = [
            secret(
                "bootstrap-token-aaaaaa",
                TOKEN_TYPE,
                TOKEN_DESCRIPTION,
                None,
            ),
            // The first upload's TTL token, no longer named by kubeadm-certs.
            secret(
                "bootstrap-token-bbbbbb",
                TOKEN_TYPE,
                UPLOADED_CERTS_TOKEN,
                None,
            ),
            secret(
                "bootstrap-token-cccccc",
                TOKEN_TYPE,
                UPLOADED_CERTS_TOKEN,
                None,
            ),
            secret(UPLOADED_CERTS, "Opaque", "", Some("bootstrap-token-cccccc")),
            // An operator's own token and an unrelated Secret stay.
            secret("bootstrap-token-dddddd", TOKEN_TYPE, "ci joins", None),
            secret("registry", "Opaque", TOKEN_DESCRIPTION, None),
        ];
        assert_eq!(
            join_credentials(&secrets),
            [
                "bootstrap-token-aaaaaa",
                "bootstrap-token-bbbbbb",
                "bootstrap-token-cccccc",
                UPLOADED_CERTS,
            ]
        );
    }

    fn base64_of(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn a_hostile_kubeconfig_keeps_only_server_ca_and_client_data() {
        let hostile = r#"
apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: https://attacker.example:443
    certificate-authority-data: Q0EtREFUQQ==
    certificate-authority: /etc/passwd
    insecure-skip-tls-verify: true
    proxy-url: http://attacker.example:3128
    tls-server-name: attacker.example
contexts:
- name: admin@kubernetes
  context: {cluster: kubernetes, user: admin, namespace: evil}
current-context: admin@kubernetes
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
    client-certificate: /home/op/.ssh/id_ed25519
    tokenFile: /home/op/.aws/credentials
    token: stolen
    username: u
    password: p
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: sh
      args: ["-c", "touch /tmp/pwned"]
    auth-provider:
      name: oidc
      config: {cmd-path: /bin/sh}
"#;
        let trimmed = trusted_kubeconfig(hostile, SERVER).unwrap();
        for gone in [
            "attacker",
            "/etc/passwd",
            "insecure",
            "proxy",
            "tls-server-name",
            "exec",
            "command",
            "pwned",
            "auth-provider",
            "cmd-path",
            "tokenFile",
            "token",
            "stolen",
            "password",
            "/home/op",
            "evil",
        ] {
            assert!(!trimmed.contains(gone), "{gone} survived:\n{trimmed}");
        }
        let doc: serde_json::Value = serde_saphyr::from_str(&trimmed).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], SERVER);
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0EtREFUQQ=="
        );
        assert_eq!(
            doc["users"][0]["user"]["client-certificate-data"],
            "Q0VSVA=="
        );
        assert_eq!(doc["users"][0]["user"]["client-key-data"], "S0VZ");
        // kube-rs reads the result as a kubeconfig with no auth but the client certificate.
        let parsed = Kubeconfig::from_yaml(&trimmed).unwrap();
        let auth = &parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(auth.exec.is_none() && auth.auth_provider.is_none() && auth.token.is_none());
        assert!(parsed.clusters[0]
            .cluster
            .as_ref()
            .unwrap()
            .insecure_skip_tls_verify
            .is_none());
    }

    #[test]
    fn a_kubeconfig_without_client_data_is_refused() {
        let token_only = "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: {server: https://x, certificate-authority-data: QQ==}\nusers:\n- name: u\n  user: {token: abc}\n";
        assert!(trusted_kubeconfig(token_only, SERVER).is_err());
        let yaml_injection = token_only.replace(
            "user: {token: abc}",
            "user: {client-certificate-data: QQ==, client-key-data: \"QQ==\\nexec: x\"}",
        );
        assert!(trusted_kubeconfig(&yaml_injection, SERVER).is_err());
        assert!(trusted_kubeconfig("{not yaml", SERVER).is_err());
    }
}
