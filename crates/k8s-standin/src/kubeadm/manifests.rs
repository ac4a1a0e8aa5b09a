//! Static Pod manifests as kubeadm writes them to /etc/kubernetes/manifests.
//! The kubelet stand-in runs their `command` (see kubelet::pods).

use super::objects::to_yaml;
use crate::config::ExtraArgs;
use serde_json::{json, Value};

/// What the manifests depend on.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub node_name: String,
    pub advertise_address: String,
    pub bind_port: u16,
    pub service_subnet: String,
    pub pod_subnet: Option<String>,
    pub etcd_data_dir: String,
    /// name=peerURL pairs of the etcd cluster this member starts in.
    pub etcd_initial_cluster: String,
    pub etcd_existing: bool,
    pub version: String,
    pub image_repository: String,
    pub cluster_name: String,
    pub apiserver_args: ExtraArgs,
    pub controller_manager_args: ExtraArgs,
    pub scheduler_args: ExtraArgs,
    pub etcd_args: ExtraArgs,
}

/// Base flags with extraArgs overriding by name (kubeadm's ArgumentsFromCommand order: sorted).
fn command(binary: &str, base: Vec<(&str, String)>, extra: &ExtraArgs) -> Vec<String> {
    let mut args: std::collections::BTreeMap<String, String> =
        base.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (k, v) in extra.pairs() {
        args.insert(k, v);
    }
    std::iter::once(binary.to_string())
        .chain(args.into_iter().map(|(k, v)| format!("--{k}={v}")))
        .collect()
}

fn pod(
    name: &str,
    image: String,
    cmd: Vec<String>,
    annotations: Value,
    port: u16,
    scheme: &str,
    path: &str,
) -> String {
    let probe = json!({"failureThreshold": 8, "httpGet": {"host": if name == "kube-apiserver" { "" } else { "127.0.0.1" }, "path": path, "port": port, "scheme": scheme},
        "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15});
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"annotations": annotations, "labels": {"component": name, "tier": "control-plane"}, "name": name, "namespace": "kube-system"},
        "spec": {
            "containers": [{"command": cmd, "image": image, "imagePullPolicy": "IfNotPresent", "livenessProbe": probe, "name": name,
                "resources": {"requests": {"cpu": if name == "etcd" { "100m" } else { "250m" }}}}],
            "hostNetwork": true, "priority": 2000001000, "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        },
        "status": {},
    });
    to_yaml(&pod)
}

fn pki(f: &str) -> String {
    format!("/etc/kubernetes/pki/{f}")
}

pub fn etcd(c: &ControlPlane) -> String {
    let a = &c.advertise_address;
    let mut base = vec![
        ("advertise-client-urls", format!("https://{a}:2379")),
        ("cert-file", pki("etcd/server.crt")),
        ("client-cert-auth", "true".into()),
        ("data-dir", c.etcd_data_dir.clone()),
        ("initial-advertise-peer-urls", format!("https://{a}:2380")),
        ("initial-cluster", c.etcd_initial_cluster.clone()),
        ("key-file", pki("etcd/server.key")),
        (
            "listen-client-urls",
            format!("https://127.0.0.1:2379,https://{a}:2379"),
        ),
        ("listen-metrics-urls", "http://127.0.0.1:2381".into()),
        ("listen-peer-urls", format!("https://{a}:2380")),
        ("name", c.node_name.clone()),
        ("peer-cert-file", pki("etcd/peer.crt")),
        ("peer-client-cert-auth", "true".into()),
        ("peer-key-file", pki("etcd/peer.key")),
        ("peer-trusted-ca-file", pki("etcd/ca.crt")),
        ("snapshot-count", "10000".into()),
        ("trusted-ca-file", pki("etcd/ca.crt")),
    ];
    if c.etcd_existing {
        base.push(("initial-cluster-state", "existing".into()));
    }
    pod(
        "etcd",
        format!("{}/etcd:3.5.15-0", c.image_repository),
        command("etcd", base, &c.etcd_args),
        json!({"kubeadm.kubernetes.io/etcd.advertise-client-urls": format!("https://{a}:2379")}),
        2381,
        "HTTP",
        "/livez",
    )
}

pub fn apiserver(c: &ControlPlane) -> String {
    let a = &c.advertise_address;
    let base = vec![
        ("advertise-address", a.clone()),
        ("allow-privileged", "true".into()),
        ("authorization-mode", "Node,RBAC".into()),
        ("client-ca-file", pki("ca.crt")),
        ("enable-admission-plugins", "NodeRestriction".into()),
        ("enable-bootstrap-token-auth", "true".into()),
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("apiserver-etcd-client.crt")),
        ("etcd-keyfile", pki("apiserver-etcd-client.key")),
        ("etcd-servers", "https://127.0.0.1:2379".into()),
        (
            "kubelet-client-certificate",
            pki("apiserver-kubelet-client.crt"),
        ),
        ("kubelet-client-key", pki("apiserver-kubelet-client.key")),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".into(),
        ),
        ("proxy-client-cert-file", pki("front-proxy-client.crt")),
        ("proxy-client-key-file", pki("front-proxy-client.key")),
        ("requestheader-allowed-names", "front-proxy-client".into()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".into(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".into()),
        ("requestheader-username-headers", "X-Remote-User".into()),
        ("secure-port", c.bind_port.to_string()),
        (
            "service-account-issuer",
            "https://kubernetes.default.svc.cluster.local".into(),
        ),
        ("service-account-key-file", pki("sa.pub")),
        ("service-account-signing-key-file", pki("sa.key")),
        ("service-cluster-ip-range", c.service_subnet.clone()),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-private-key-file", pki("apiserver.key")),
    ];
    pod(
        "kube-apiserver",
        format!("{}/kube-apiserver:{}", c.image_repository, c.version),
        command("kube-apiserver", base, &c.apiserver_args),
        json!({"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": format!("{a}:{}", c.bind_port)}),
        c.bind_port,
        "HTTPS",
        "/livez",
    )
}

pub fn controller_manager(c: &ControlPlane) -> String {
    let mut base = vec![
        (
            "authentication-kubeconfig",
            "/etc/kubernetes/controller-manager.conf".to_string(),
        ),
        (
            "authorization-kubeconfig",
            "/etc/kubernetes/controller-manager.conf".into(),
        ),
        ("bind-address", "127.0.0.1".into()),
        ("client-ca-file", pki("ca.crt")),
        ("cluster-name", c.cluster_name.clone()),
        ("cluster-signing-cert-file", pki("ca.crt")),
        ("cluster-signing-key-file", pki("ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".into()),
        (
            "kubeconfig",
            "/etc/kubernetes/controller-manager.conf".into(),
        ),
        ("leader-elect", "true".into()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("root-ca-file", pki("ca.crt")),
        ("service-account-private-key-file", pki("sa.key")),
        ("use-service-account-credentials", "true".into()),
    ];
    if let Some(p) = &c.pod_subnet {
        base.push(("allocate-node-cidrs", "true".into()));
        base.push(("cluster-cidr", p.clone()));
    }
    pod(
        "kube-controller-manager",
        format!(
            "{}/kube-controller-manager:{}",
            c.image_repository, c.version
        ),
        command("kube-controller-manager", base, &c.controller_manager_args),
        json!({}),
        10257,
        "HTTPS",
        "/healthz",
    )
}

pub fn scheduler(c: &ControlPlane) -> String {
    let base = vec![
        (
            "authentication-kubeconfig",
            "/etc/kubernetes/scheduler.conf".to_string(),
        ),
        (
            "authorization-kubeconfig",
            "/etc/kubernetes/scheduler.conf".into(),
        ),
        ("bind-address", "127.0.0.1".into()),
        ("kubeconfig", "/etc/kubernetes/scheduler.conf".into()),
        ("leader-elect", "true".into()),
    ];
    pod(
        "kube-scheduler",
        format!("{}/kube-scheduler:{}", c.image_repository, c.version),
        command("kube-scheduler", base, &c.scheduler_args),
        json!({}),
        10259,
        "HTTPS",
        "/healthz",
    )
}

/// /var/lib/kubelet/kubeadm-flags.env
pub fn kubeadm_flags_env(cri_socket: &str, extra: &ExtraArgs) -> String {
    let mut args = vec![
        format!("--container-runtime-endpoint={cri_socket}"),
        "--pod-infra-container-image=registry.k8s.io/pause:3.10".to_string(),
    ];
    args.extend(extra.pairs().into_iter().map(|(k, v)| format!("--{k}={v}")));
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arg;

    fn cp() -> ControlPlane {
        ControlPlane {
            node_name: "cp1".into(),
            advertise_address: "10.0.0.11".into(),
            bind_port: 6443,
            service_subnet: "10.96.0.0/12".into(),
            pod_subnet: Some("192.168.0.0/16".into()),
            etcd_data_dir: "/var/lib/etcd".into(),
            etcd_initial_cluster: "cp1=https://10.0.0.11:2380".into(),
            etcd_existing: false,
            version: "v1.31.0".into(),
            image_repository: "registry.k8s.io".into(),
            cluster_name: "kubernetes".into(),
            apiserver_args: ExtraArgs::List(vec![Arg {
                name: "secure-port".into(),
                value: "7443".into(),
            }]),
            controller_manager_args: ExtraArgs::None,
            scheduler_args: ExtraArgs::None,
            etcd_args: ExtraArgs::None,
        }
    }

    fn cmd(yaml: &str) -> Vec<String> {
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        v["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn apiserver_flags_and_extra_args() {
        let c = cmd(&apiserver(&cp()));
        assert_eq!(c[0], "kube-apiserver");
        assert!(
            c.contains(&"--secure-port=7443".to_string()),
            "extraArgs override"
        );
        assert!(!c.contains(&"--secure-port=6443".to_string()));
        assert!(c.contains(&"--etcd-servers=https://127.0.0.1:2379".to_string()));
    }

    #[test]
    fn etcd_join_is_existing() {
        let mut c = cp();
        assert!(!cmd(&etcd(&c))
            .iter()
            .any(|a| a.starts_with("--initial-cluster-state")));
        c.etcd_existing = true;
        c.etcd_initial_cluster = "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380".into();
        let e = cmd(&etcd(&c));
        assert!(e.contains(&"--initial-cluster-state=existing".to_string()));
        assert!(e.contains(
            &"--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.11:2379".to_string()
        ));
    }

    #[test]
    fn flags_env() {
        assert_eq!(
            kubeadm_flags_env("unix:///var/run/containerd/containerd.sock", &ExtraArgs::List(vec![Arg { name: "node-ip".into(), value: "10.0.0.11".into() }])),
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10 --node-ip=10.0.0.11\"\n"
        );
    }
}
