//! The kubelet's API side: TLS bootstrap, Node registration and status,
//! its Lease, mirror Pods, and the Calico CNI stand-in.

use super::pods::StaticPod;
use super::{Paths, Settings};
use crate::apiserver::objects::now_rfc3339;
use crate::client::Client;
use crate::pki::kubeconfig;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{json, Value};
use std::time::Duration;

pub const CLIENT_CERT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
/// The file Calico's install-cni container writes; the stand-in writes it once
/// a calico-node Pod runs on this node.
pub const CALICO_CONFLIST: &str = "/etc/cni/net.d/10-calico.conflist";

/// The client for the kubelet's kubeconfig, doing the TLS bootstrap first if
/// only the bootstrap kubeconfig exists (as kubeadm join arranges).
pub async fn client(s: &Settings, paths: &Paths) -> Result<Option<Client>, String> {
    let kc = paths.at(&s.kubeconfig);
    if !s.kubeconfig.is_empty() && kc.exists() {
        let text = std::fs::read_to_string(&kc).map_err(|e| e.to_string())?;
        return Client::from_kubeconfig(&text).map(Some);
    }
    let bkc = paths.at(&s.bootstrap_kubeconfig);
    if s.bootstrap_kubeconfig.is_empty() || !bkc.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&bkc).map_err(|e| e.to_string())?;
    let boot = Client::from_kubeconfig(&text)?;
    let parsed = kubeconfig::parse(&text).map_err(|e| e.to_string())?;
    let (csr, key) =
        crate::pki::new_csr(&format!("system:node:{}", s.node_name), &["system:nodes"])
            .map_err(|e| e.to_string())?;
    let obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"generateName": "csr-"},
        "spec": {"request": B64.encode(&csr), "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "client auth"]}});
    let created = boot
        .create(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            &obj,
        )
        .await;
    if !created.ok() {
        return Err(format!(
            "failed to run Kubelet: unable to load bootstrap kubeconfig: {}",
            created.message()
        ));
    }
    let name = created.body["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    for _ in 0..300 {
        let cur = boot
            .get(&format!(
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
            ))
            .await;
        if let Some(cert) = cur
            .body
            .pointer("/status/certificate")
            .and_then(Value::as_str)
            .and_then(|c| B64.decode(c).ok())
        {
            let pem = format!("{}{}", String::from_utf8_lossy(&cert), key);
            let pem_path = paths.at(CLIENT_CERT);
            std::fs::create_dir_all(pem_path.parent().expect("parent"))
                .map_err(|e| e.to_string())?;
            write_private(&pem_path, pem.as_bytes())?;
            let conf = format!(
                "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: default-cluster\ncontexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n  name: default-context\ncurrent-context: default-context\nkind: Config\npreferences: {{}}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {CLIENT_CERT}\n    client-key: {CLIENT_CERT}\n",
                B64.encode(&parsed.ca_pem),
                parsed.server
            );
            write_private(&kc, conf.as_bytes())?;
            let text = std::fs::read_to_string(&kc).map_err(|e| e.to_string())?;
            // The kubeconfig names node paths; resolve them under the root.
            let text = text.replace(CLIENT_CERT, &pem_path.to_string_lossy());
            return Client::from_kubeconfig(&text).map(Some);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err("timed out waiting for the CSR to be signed".into())
}

/// Writes a file readable only by root (it holds a private key).
pub fn write_private(path: &std::path::Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    f.write_all(data).map_err(|e| e.to_string())
}

/// The node's address: --node-ip, else the source address towards the API server.
pub fn node_ip(s: &Settings, server: &str) -> String {
    if let Some(ip) = &s.node_ip {
        return ip.clone();
    }
    let hostport = server
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    // A UDP "connect" sends nothing; it only picks the route's source address.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect(&hostport).map(|_| u))
        .and_then(|u| u.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// The Node's conditions: Ready only with a CNI config and working Pods.
pub fn conditions(ready: bool, why_not: &str) -> Value {
    let t = now_rfc3339();
    let c = |ty: &str, st: &str, reason: &str, msg: &str| json!({"type": ty, "status": st, "reason": reason, "message": msg, "lastHeartbeatTime": t, "lastTransitionTime": t});
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        if ready {
            c(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            )
        } else {
            c("Ready", "False", "KubeletNotReady", why_not)
        },
    ])
}

pub const CNI_NOT_READY: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

fn kernel(paths: &Paths) -> String {
    std::fs::read_to_string(paths.at("/proc/sys/kernel/osrelease"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn os_image(paths: &Paths) -> String {
    std::fs::read_to_string(paths.at("/etc/os-release"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// How often a kubelet posts an unchanged status anyway (the real kubelet's
/// `nodeStatusReportFrequency`): between reports its Lease alone says it is alive.
pub const STATUS_REPORT_EVERY: Duration = Duration::from_secs(300);

/// What one heartbeat did and learned.
#[derive(Debug)]
pub struct Beat {
    /// The Node's `spec.podCIDR` (immutable once the controller-manager sets it).
    pub pod_cidr: Option<String>,
    /// Status was posted (it changed, the Node was registered, or a report was due).
    pub posted: bool,
}

/// Registers the Node if it is missing, renews its Lease, and posts its status when it
/// differs from the stored one or `report_due`: what the real kubelet does every
/// `nodeStatusUpdateFrequency` (10 s) since node leases.
pub async fn heartbeat(
    c: &Client,
    s: &Settings,
    paths: &Paths,
    ready: bool,
    why_not: &str,
    ip: &str,
    report_due: bool,
) -> Result<Beat, String> {
    let name = &s.node_name;
    let mut status = json!({
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": conditions(ready, why_not),
        "nodeInfo": {"kubeletVersion": crate::VERSION, "kubeProxyVersion": crate::VERSION, "operatingSystem": "linux", "architecture": "amd64",
            "containerRuntimeVersion": "containerd://standin", "kernelVersion": kernel(paths), "osImage": os_image(paths),
            "machineID": "", "systemUUID": "", "bootID": ""},
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
    });
    let path = format!("/api/v1/nodes/{name}");
    let cur = c.get(&path).await;
    let registered = cur.code == 404;
    if !registered && !cur.ok() {
        return Err(format!(
            "\"Error updating node status, will retry\" err={:?}",
            cur.message()
        ));
    }
    let mut node = cur.body;
    if registered {
        let mut new = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}},
            "spec": {}, "status": status.clone()});
        if !s.register_taints.is_empty() {
            new["spec"]["taints"] = json!(s.register_taints);
        }
        let r = c.create("/api/v1/nodes", &new).await;
        if !r.ok() && r.code != 409 {
            return Err(format!(
                "\"Unable to register node with API server\" err={:?} node=\"{name}\"",
                r.message()
            ));
        }
        eprintln!("I0000 kubelet: \"Successfully registered node\" node=\"{name}\"");
        node = r.body;
    }
    keep_transition_times(&mut status["conditions"], &node["status"]["conditions"]);
    let posted = registered || report_due || !same_status(&node["status"], &status);
    if posted {
        let r = c
            .merge(&format!("{path}/status"), &json!({"status": status}))
            .await;
        if !r.ok() {
            return Err(format!(
                "\"Error updating node status, will retry\" err={:?}",
                r.message()
            ));
        }
        node = r.body;
    }
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": crate::apiserver::objects::now_rfc3339()}});
    c.apply(
        &format!("{}/{name}", crate::controllers::NODE_LEASES),
        &lease,
        "kubelet",
    )
    .await;
    Ok(Beat {
        pod_cidr: node["spec"]["podCIDR"].as_str().map(String::from),
        posted,
    })
}

/// A condition keeps its `lastTransitionTime` while its status stays the same.
fn keep_transition_times(want: &mut Value, stored: &Value) {
    for c in want.as_array_mut().into_iter().flatten() {
        let before = stored
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["type"] == c["type"] && s["status"] == c["status"]);
        if let Some(t) = before.and_then(|s| s.get("lastTransitionTime")) {
            c["lastTransitionTime"] = t.clone();
        }
    }
}

/// `want`'s every field is stored as it is, the conditions' times aside.
fn same_status(stored: &Value, want: &Value) -> bool {
    let timeless = |v: &Value| {
        let mut v = v.clone();
        for c in v.as_array_mut().into_iter().flatten() {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastHeartbeatTime");
                c.remove("lastTransitionTime");
            }
        }
        v
    };
    want.as_object().into_iter().flatten().all(|(k, w)| {
        if k == "conditions" {
            timeless(&stored[k]) == timeless(w)
        } else {
            &stored[k] == w
        }
    })
}

/// Mirror Pods for running static Pods, so the API shows the control plane
/// (kubeadm join reads etcd's advertise URL from its annotation).
pub async fn mirror_pods(c: &Client, node: &str, ip: &str, pods: &[StaticPod]) {
    for p in pods {
        let name = format!("{}-{node}", p.name);
        let mut ann = if p.annotations.is_object() {
            p.annotations.clone()
        } else {
            json!({})
        };
        ann["kubernetes.io/config.mirror"] = json!(p.hash);
        ann["kubernetes.io/config.source"] = json!("file");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system", "annotations": ann, "labels": {"component": p.name, "tier": "control-plane"}},
            // The kubelet lets static Pods tolerate every NoExecute taint.
            "spec": {"nodeName": node, "hostNetwork": true, "priorityClassName": "system-node-critical",
                "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                "containers": [{"name": p.name, "command": p.command, "image": format!("registry.k8s.io/{}", p.name)}]}});
        let path = format!("/api/v1/namespaces/kube-system/pods/{name}");
        c.apply(&path, &pod, "kubelet").await;
        let status = json!({"status": {"phase": "Running", "hostIP": ip, "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [{"name": p.name, "ready": true, "restartCount": 0, "started": true, "image": format!("registry.k8s.io/{}", p.name), "imageID": "", "state": {"running": {}}}]}});
        c.merge(&format!("{path}/status"), &status).await;
    }
}

/// Calico's conflist (from the calico-config ConfigMap's cni_network_config).
pub fn calico_conflist(cni_network_config: Option<&str>, node: &str, mtu: &str) -> String {
    let template = cni_network_config.unwrap_or(
        "{\"name\": \"k8s-pod-network\", \"cniVersion\": \"0.3.1\", \"plugins\": [{\"type\": \"calico\", \"log_level\": \"info\", \"datastore_type\": \"kubernetes\", \"nodename\": \"__KUBERNETES_NODE_NAME__\", \"mtu\": __CNI_MTU__, \"ipam\": {\"type\": \"calico-ipam\"}, \"policy\": {\"type\": \"k8s\"}, \"kubernetes\": {\"kubeconfig\": \"__KUBECONFIG_FILEPATH__\"}}, {\"type\": \"portmap\", \"snat\": true, \"capabilities\": {\"portMappings\": true}}, {\"type\": \"bandwidth\", \"capabilities\": {\"bandwidth\": true}}]}",
    );
    template
        .replace("__KUBERNETES_NODE_NAME__", node)
        .replace("__CNI_MTU__", mtu)
        .replace(
            "__KUBECONFIG_FILEPATH__",
            "/etc/cni/net.d/calico-kubeconfig",
        )
}

/// Writes Calico's CNI config once a calico-node Pod runs on this node (what
/// its install-cni init container does).
pub async fn calico_cni(c: &Client, paths: &Paths, pods: &[Value]) {
    let target = paths.at(CALICO_CONFLIST);
    let calico_running = pods.iter().any(|p| {
        p.pointer("/metadata/labels/k8s-app")
            .and_then(Value::as_str)
            == Some("calico-node")
            && p["status"]["phase"] == "Running"
    });
    if target.exists() || !calico_running {
        return;
    }
    let node = pods
        .first()
        .and_then(|p| p["spec"]["nodeName"].as_str())
        .unwrap_or("")
        .to_string();
    let cm = c
        .get("/api/v1/namespaces/kube-system/configmaps/calico-config")
        .await;
    let cfg = cm
        .body
        .pointer("/data/cni_network_config")
        .and_then(Value::as_str)
        .map(String::from);
    let mtu = cm
        .body
        .pointer("/data/veth_mtu")
        .and_then(Value::as_str)
        .filter(|m| *m != "0")
        .unwrap_or("1500")
        .to_string();
    let text = calico_conflist(cfg.as_deref(), &node, &mtu);
    if std::fs::create_dir_all(target.parent().expect("parent")).is_ok()
        && std::fs::write(&target, text).is_ok()
    {
        eprintln!("I0000 kubelet: calico-node install-cni stand-in wrote {CALICO_CONFLIST}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_substitution() {
        let t = calico_conflist(None, "w1", "1450");
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["plugins"][0]["nodename"], "w1");
        assert_eq!(v["plugins"][0]["mtu"], 1450);
    }

    #[test]
    fn status_is_posted_only_when_more_than_its_times_changed() {
        let stored =
            json!({"conditions": conditions(true, ""), "capacity": {"cpu": "2"}, "images": []});
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut want = json!({"conditions": conditions(true, ""), "capacity": {"cpu": "2"}});
        assert_ne!(stored["conditions"], want["conditions"], "the times moved");
        assert!(same_status(&stored, &want));
        keep_transition_times(&mut want["conditions"], &stored["conditions"]);
        assert_eq!(
            want["conditions"][3]["lastTransitionTime"],
            stored["conditions"][3]["lastTransitionTime"]
        );
        let mut not_ready =
            json!({"conditions": conditions(false, CNI_NOT_READY), "capacity": {"cpu": "2"}});
        assert!(!same_status(&stored, &not_ready));
        // Ready's transition is a new one; the pressure conditions did not change.
        keep_transition_times(&mut not_ready["conditions"], &stored["conditions"]);
        assert_ne!(
            not_ready["conditions"][3]["lastTransitionTime"],
            stored["conditions"][3]["lastTransitionTime"]
        );
        assert_eq!(
            not_ready["conditions"][0]["lastTransitionTime"],
            stored["conditions"][0]["lastTransitionTime"]
        );
        assert!(!same_status(&stored, &json!({"capacity": {"cpu": "4"}})));
    }

    #[test]
    fn ready_condition() {
        let c = conditions(false, CNI_NOT_READY);
        assert_eq!(c[3]["status"], "False");
        assert_eq!(c[3]["message"], CNI_NOT_READY);
        assert_eq!(conditions(true, "")[3]["reason"], "KubeletReady");
    }
}
