//! What the cluster is now, as its contract surfaces report it: etcd members through
//! `etcdctl` on a control plane, and kubeadm's `ClusterConfiguration` and the Nodes
//! through the Kubernetes API. Pure parsers; the API reads are in `api`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One etcd member as a control plane's `etcdctl` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMember {
    /// etcd's member ID, in the hex `etcdctl member remove` takes.
    pub id: String,
    /// Empty for a member that was added but never started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub learner: bool,
    /// `endpoint health --cluster` found it healthy; `false` also when it has no client URL.
    pub healthy: bool,
    pub leader: bool,
}

impl EtcdMember {
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// etcd as one control plane sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EtcdView {
    pub members: Vec<EtcdMember>,
}

impl EtcdView {
    /// Members whose peer URLs include `peer` (`https://IP:2380`).
    pub fn with_peer<'a>(&'a self, peer: &'a str) -> impl Iterator<Item = &'a EtcdMember> {
        self.members
            .iter()
            .filter(move |m| m.peer_urls.iter().any(|u| u == peer))
    }

    /// Some started, voting member answers health checks: the cluster has live data.
    pub fn healthy(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.healthy && m.started() && !m.learner)
    }

    /// Voting members (learners do not vote), and how many of them are started and healthy.
    pub fn votes(&self) -> (usize, usize) {
        let voting = self.members.iter().filter(|m| !m.learner);
        let healthy = voting.clone().filter(|m| m.healthy && m.started()).count();
        (healthy, voting.count())
    }
}

/// Parses `member list -w json`, `endpoint health --cluster -w json` and `endpoint
/// status --cluster -w json`; `None` when the member list is not etcd's JSON (etcd did
/// not answer). IDs are decimal in etcdctl's JSON and hex on its command line.
pub fn parse_etcd(members: &str, health: &str, status: &str) -> Option<EtcdView> {
    let list: serde_json::Value = serde_json::from_str(members).ok()?;
    let healthy: Vec<String> = serde_json::from_str::<serde_json::Value>(health)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .into_iter()
        .flatten()
        .filter(|e| e["health"].as_bool() == Some(true))
        .filter_map(|e| e["endpoint"].as_str().map(String::from))
        .collect();
    let leader = statuses(status)
        .first()
        .and_then(|e| e["Status"]["leader"].as_u64());
    let members = list["members"]
        .as_array()?
        .iter()
        .filter_map(|m| {
            let id = m["ID"].as_u64()?;
            let urls = |k: &str| -> Vec<String> {
                m[k].as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            };
            let client_urls = urls("clientURLs");
            Some(EtcdMember {
                id: format!("{id:x}"),
                name: m["name"].as_str().unwrap_or_default().into(),
                peer_urls: urls("peerURLs"),
                learner: m["isLearner"].as_bool().unwrap_or(false),
                healthy: client_urls.iter().any(|u| healthy.contains(u)),
                leader: leader == Some(id),
            })
        })
        .collect();
    Some(EtcdView { members })
}

/// The entries of `endpoint status --cluster -w json`; none when it is not etcd's JSON.
fn statuses(status: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(status)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Each answering member's raft index from `endpoint status --cluster -w json`, by its
/// ID in [`EtcdMember::id`]'s hex.
pub fn raft_indexes(status: &str) -> BTreeMap<String, u64> {
    statuses(status)
        .iter()
        .filter_map(|e| {
            let id = e["Status"]["header"]["member_id"].as_u64()?;
            Some((format!("{id:x}"), e["Status"]["raftIndex"].as_u64()?))
        })
        .collect()
}

/// The fields of kubeadm's live `ClusterConfiguration` the planner compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveClusterConfig {
    pub cluster_name: String,
    pub kubernetes_version: String,
    pub pod_subnet: String,
    pub service_subnet: String,
    pub dns_domain: String,
    pub control_plane_endpoint: String,
    /// `apiServer.certSANs`: what a control plane joining later gets in its certificate.
    pub cert_sans: Vec<String>,
}

/// A configuration document stored in a ConfigMap, named `what` in errors.
fn yaml_document(yaml: &str, what: &str) -> Result<serde_json::Value, String> {
    serde_saphyr::from_str(yaml).map_err(|e| format!("{what} is not YAML: {e}"))
}

/// A string field; empty when absent.
fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Parses the `ClusterConfiguration` key of `kube-system/kubeadm-config`.
pub fn parse_cluster_configuration(yaml: &str) -> Result<LiveClusterConfig, String> {
    let doc = yaml_document(yaml, "kubeadm-config's ClusterConfiguration")?;
    Ok(LiveClusterConfig {
        cluster_name: text(&doc["clusterName"]),
        kubernetes_version: text(&doc["kubernetesVersion"]),
        pod_subnet: text(&doc["networking"]["podSubnet"]),
        service_subnet: text(&doc["networking"]["serviceSubnet"]),
        dns_domain: text(&doc["networking"]["dnsDomain"]),
        control_plane_endpoint: text(&doc["controlPlaneEndpoint"]),
        cert_sans: doc["apiServer"]["certSANs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect(),
    })
}

/// The fields of the live `KubeletConfiguration` (kube-system/kubelet-config, which
/// every `kubeadm join` gives its kubelet) that kubeha sets or derives from the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveKubeletConfig {
    pub cgroup_driver: String,
    pub cluster_domain: String,
}

/// Parses the `kubelet` key of `kube-system/kubelet-config`.
pub fn parse_kubelet_configuration(yaml: &str) -> Result<LiveKubeletConfig, String> {
    let doc = yaml_document(yaml, "kubelet-config's KubeletConfiguration")?;
    Ok(LiveKubeletConfig {
        cgroup_driver: text(&doc["cgroupDriver"]),
        cluster_domain: text(&doc["clusterDomain"]),
    })
}

/// Calico as it runs: the `calico-node` DaemonSet and Calico's IP pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoState {
    /// The tag of the calico-node container's image, e.g. `v3.28.1`.
    pub version: Option<String>,
    /// `CALICO_IPV4POOL_CIDR` of calico-node: the pool it made when it first started.
    pub pool_env: Option<String>,
    /// The CIDR of every enabled IPPool (`crd.projectcalico.org/v1`), when Calico serves them.
    pub ip_pools: Vec<String>,
}

/// Reads the calico-node container's version and pool CIDR from the DaemonSet (as JSON).
pub fn parse_calico_node(daemonset: &serde_json::Value) -> CalicoState {
    let node = daemonset["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "calico-node");
    let Some(node) = node else {
        return CalicoState::default();
    };
    let pool_env = node["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "CALICO_IPV4POOL_CIDR")
        .and_then(|e| e["value"].as_str())
        .map(String::from);
    CalicoState {
        version: node["image"].as_str().and_then(image_tag),
        pool_env,
        ip_pools: Vec::new(),
    }
}

/// The tag of an image reference (`registry:5000/calico/node:v3.28.1@sha256:…` → `v3.28.1`).
fn image_tag(image: &str) -> Option<String> {
    let name = image.split('@').next()?;
    let last = name.rsplit('/').next()?;
    Some(last.split_once(':')?.1.to_string()).filter(|t| !t.is_empty())
}

/// The CIDRs of the enabled pools among `IPPool` objects (as JSON).
pub fn enabled_pools(pools: &[serde_json::Value]) -> Vec<String> {
    pools
        .iter()
        .filter(|p| p["spec"]["disabled"].as_bool() != Some(true))
        .filter_map(|p| p["spec"]["cidr"].as_str().map(String::from))
        .collect()
}

/// A taint as the Node carries it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct NodeTaint {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
}

impl From<&crate::spec::Taint> for NodeTaint {
    /// The taint as kubeadm puts a spec taint on the Node.
    fn from(t: &crate::spec::Taint) -> Self {
        NodeTaint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: format!("{:?}", t.effect),
        }
    }
}

impl NodeTaint {
    /// What tells taints apart on a Node (one value per key and effect), as kubeha
    /// records the taints it manages.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.key, self.effect)
    }
}

impl std::fmt::Display for NodeTaint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}:{}", self.key, self.effect),
            None => write!(f, "{}:{}", self.key, self.effect),
        }
    }
}

/// The Node annotation listing the label keys kubeha set (comma-separated): the only
/// labels it removes when the spec no longer names them.
pub const MANAGED_LABELS: &str = "kubeha.dev/managed-labels";
/// The Node annotation listing the taints kubeha set, as `key:effect` (comma-separated).
pub const MANAGED_TAINTS: &str = "kubeha.dev/managed-taints";

/// The entries of a [`MANAGED_LABELS`] or [`MANAGED_TAINTS`] annotation.
pub fn parse_managed(annotation: Option<&str>) -> BTreeSet<String> {
    annotation
        .into_iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

/// One of a Node's `status.conditions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl NodeCondition {
    /// Ready that is not `True`, or any other condition (MemoryPressure, DiskPressure,
    /// PIDPressure, NetworkUnavailable, a node-problem-detector's) that is `True`.
    pub fn troubled(&self) -> bool {
        if self.kind == "Ready" {
            self.status != "True"
        } else {
            self.status == "True"
        }
    }
}

impl std::fmt::Display for NodeCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind.as_str(), self.status.as_str()) {
            ("Ready", "False") => f.write_str("NotReady")?,
            ("Ready", _) => write!(f, "Ready {}", self.status)?,
            (kind, _) => f.write_str(kind)?,
        }
        if !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// A registered Node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub cordoned: bool,
    /// kubeha cordoned it for an upgrade (its annotation), so a re-run uncordons it.
    pub cordoned_by_kubeha: bool,
    /// `status.nodeInfo.kubeletVersion`, e.g. `v1.31.0`.
    pub kubelet_version: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<NodeTaint>,
    pub conditions: Vec<NodeCondition>,
    /// Label keys kubeha set ([`MANAGED_LABELS`]).
    pub managed_labels: BTreeSet<String>,
    /// Taints kubeha set, as [`NodeTaint::identity`] ([`MANAGED_TAINTS`]).
    pub managed_taints: BTreeSet<String>,
}

impl NodeState {
    /// What needs an operator's attention, one line per troubled condition.
    pub fn troubles(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .conditions
            .iter()
            .filter(|c| c.troubled())
            .map(ToString::to_string)
            .collect();
        if !self.conditions.iter().any(|c| c.kind == "Ready") {
            out.insert(0, "the kubelet has not reported a Ready condition".into());
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// etcdctl 3.5's output on a control plane of a three-member cluster in which
    /// 10.0.0.13's member was added by an interrupted join and never started.
    pub(crate) const MEMBERS: &str = r#"{"header":{"cluster_id":1,"member_id":10276657743932975437,"raft_term":3},"members":[
        {"ID":10276657743932975437,"name":"cp-1","peerURLs":["https://10.0.0.11:2380"],"clientURLs":["https://10.0.0.11:2379"]},
        {"ID":3041373402232313867,"name":"cp-2","peerURLs":["https://10.0.0.12:2380"],"clientURLs":["https://10.0.0.12:2379"]},
        {"ID":16197183384930137232,"peerURLs":["https://10.0.0.13:2380"],"isLearner":false}]}"#;
    pub(crate) const HEALTH: &str = r#"[{"endpoint":"https://10.0.0.11:2379","health":true,"took":"9ms"},{"endpoint":"https://10.0.0.12:2379","health":false,"took":"5s","error":"context deadline exceeded"}]"#;
    pub(crate) const STATUS: &str = r#"[{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"member_id":10276657743932975437},"leader":10276657743932975437,"dbSize":20480}}]"#;

    #[test]
    fn etcd_members_health_and_leader() {
        let v = parse_etcd(MEMBERS, HEALTH, STATUS).unwrap();
        assert_eq!(v.members.len(), 3);
        let cp1 = &v.members[0];
        assert_eq!(cp1.id, "8e9e05c52164694d");
        assert!(cp1.healthy && cp1.leader && cp1.started());
        assert!(!v.members[1].healthy && !v.members[1].leader);
        let stale: Vec<_> = v.with_peer("https://10.0.0.13:2380").collect();
        assert_eq!(stale.len(), 1);
        assert!(!stale[0].started() && !stale[0].healthy);
        assert_eq!(stale[0].id, "e0c7f478e49eb490");
        assert!(v.healthy());
        assert_eq!(parse_etcd("", "", ""), None, "etcd did not answer");
        let none_healthy = parse_etcd(MEMBERS, "[]", "").unwrap();
        assert!(!none_healthy.healthy());
    }

    #[test]
    fn votes_count_started_healthy_voting_members() {
        // MEMBERS: one healthy, one unhealthy, one never started.
        let v = parse_etcd(MEMBERS, HEALTH, STATUS).unwrap();
        assert_eq!(v.votes(), (1, 3));
    }

    #[test]
    fn troubled_node_conditions() {
        let c = |kind: &str, status: &str| NodeCondition {
            kind: kind.into(),
            status: status.into(),
            ..Default::default()
        };
        assert!(!c("Ready", "True").troubled());
        assert!(c("Ready", "False").troubled() && c("Ready", "Unknown").troubled());
        assert!(!c("DiskPressure", "False").troubled());
        assert!(c("DiskPressure", "True").troubled() && c("NetworkUnavailable", "True").troubled());
        let node = NodeState {
            conditions: vec![c("Ready", "Unknown"), c("PIDPressure", "False")],
            ..Default::default()
        };
        assert_eq!(node.troubles(), ["Ready Unknown"]);
        assert_eq!(
            NodeState::default().troubles(),
            ["the kubelet has not reported a Ready condition"]
        );
    }

    #[test]
    fn managed_annotations_are_comma_separated() {
        assert_eq!(
            parse_managed(Some("tier, zone,,")),
            BTreeSet::from(["tier".to_string(), "zone".to_string()])
        );
        assert!(parse_managed(None).is_empty() && parse_managed(Some("")).is_empty());
    }

    #[test]
    fn kubelet_configuration_fields() {
        let yaml = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                    cgroupDriver: systemd\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\n";
        let k = parse_kubelet_configuration(yaml).unwrap();
        assert_eq!(
            (k.cgroup_driver.as_str(), k.cluster_domain.as_str()),
            ("systemd", "cluster.local")
        );
        assert_eq!(
            parse_kubelet_configuration("{}").unwrap(),
            LiveKubeletConfig::default()
        );
        assert!(parse_kubelet_configuration("{not yaml").is_err());
    }

    #[test]
    fn calico_version_and_pools() {
        let ds = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "calico-node", "image": "docker.io/calico/node:v3.28.1",
             "env": [{"name": "DATASTORE_TYPE", "value": "kubernetes"},
                     {"name": "CALICO_IPV4POOL_CIDR", "value": "192.168.0.0/16"}]}]}}}});
        let c = parse_calico_node(&ds);
        assert_eq!(c.version.as_deref(), Some("v3.28.1"));
        assert_eq!(c.pool_env.as_deref(), Some("192.168.0.0/16"));
        assert_eq!(
            image_tag("registry.local:5000/calico/node:v3.27.0@sha256:ab").as_deref(),
            Some("v3.27.0")
        );
        assert_eq!(image_tag("registry.local:5000/calico/node"), None);
        assert_eq!(
            parse_calico_node(&serde_json::json!({})),
            CalicoState::default()
        );
        let pools = [
            serde_json::json!({"spec": {"cidr": "192.168.0.0/16"}}),
            serde_json::json!({"spec": {"cidr": "10.244.0.0/16", "disabled": true}}),
        ];
        assert_eq!(enabled_pools(&pools), ["192.168.0.0/16"]);
    }

    #[test]
    fn cluster_configuration_fields() {
        let yaml = "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\nclusterName: k8s-ha\n\
                    controlPlaneEndpoint: load-balancer.local:6443\nkind: ClusterConfiguration\n\
                    kubernetesVersion: v1.31.0\nnetworking:\n  dnsDomain: cluster.local\n  \
                    podSubnet: 192.168.0.0/16\n  serviceSubnet: 10.96.0.0/12\n";
        let c = parse_cluster_configuration(yaml).unwrap();
        assert_eq!(c.cluster_name, "k8s-ha");
        assert_eq!(c.kubernetes_version, "v1.31.0");
        assert_eq!(c.pod_subnet, "192.168.0.0/16");
        assert_eq!(c.service_subnet, "10.96.0.0/12");
        assert_eq!(c.dns_domain, "cluster.local");
        assert_eq!(c.control_plane_endpoint, "load-balancer.local:6443");
        assert!(c.cert_sans.is_empty());
        let with_sans = yaml.replace(
            "apiServer: {}",
            "apiServer:\n  certSANs:\n  - load-balancer.local\n  - api.example.com",
        );
        assert_eq!(
            parse_cluster_configuration(&with_sans).unwrap().cert_sans,
            ["load-balancer.local", "api.example.com"]
        );
        assert!(parse_cluster_configuration("{not yaml").is_err());
    }
}
