//! The kubelet's Pod side for API Pods bound to its node (no containers are
//! run): Pending → Running with Ready conditions and containerStatuses once
//! the Pod's network can be set up (host network, or a CNI config), and the
//! final delete of Pods being deleted gracefully.

use crate::apiserver::objects::now_rfc3339;
use crate::client::Client;
use crate::workload::{name, namespace, terminating};
use serde_json::{json, Value};

fn short_hash(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().try_into().expect("32 bytes")
}

/// The Pod's QoS class from its containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let cs: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let res = |c: &Value, k: &str| c["resources"][k].as_object().cloned().unwrap_or_default();
    if cs
        .iter()
        .all(|c| res(c, "requests").is_empty() && res(c, "limits").is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = cs.iter().all(|c| {
        let l = res(c, "limits");
        let r = res(c, "requests");
        l.contains_key("cpu")
            && l.contains_key("memory")
            && r.iter().all(|(k, v)| l.get(k) == Some(v))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A Pod IP: the node's for host-network Pods, else one derived from the
/// Pod's uid inside the node's podCIDR (or Calico's default 192.168.0.0/16).
pub fn pod_ip(pod: &Value, node_ip: &str, pod_cidr: Option<&str>) -> String {
    if pod["spec"]["hostNetwork"] == true {
        return node_ip.to_string();
    }
    let h = short_hash(crate::workload::uid(pod));
    let net = pod_cidr
        .and_then(|c| c.parse::<ipnet::Ipv4Net>().ok())
        .unwrap_or_else(|| "192.168.0.0/16".parse().expect("cidr"));
    let host_bits = 32 - u32::from(net.prefix_len());
    let span = if host_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 2
    };
    let offset = 1 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % span.max(1);
    std::net::Ipv4Addr::from(u32::from(net.network()) + offset).to_string()
}

/// The status the kubelet reports for a Pod it has started (or cannot start).
pub fn pod_status(pod: &Value, node_ip: &str, pod_cidr: Option<&str>, network: bool) -> Value {
    let t = now_rfc3339();
    let started = pod["status"]["startTime"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| t.clone());
    let cond = |ty: &str, ok: bool| {
        let prev = pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == ty));
        let st = if ok { "True" } else { "False" };
        let since = prev
            .filter(|p| p["status"] == st)
            .map(|p| p["lastTransitionTime"].clone())
            .unwrap_or(json!(t));
        let mut c =
            json!({"type": ty, "status": st, "lastProbeTime": null, "lastTransitionTime": since});
        if !ok && (ty == "Ready" || ty == "ContainersReady") {
            c["reason"] = json!("ContainersNotReady");
        }
        c
    };
    let uid = crate::workload::uid(pod);
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let cname = c["name"].as_str().unwrap_or("");
            let image = c["image"].as_str().unwrap_or("");
            let state = if network {
                json!({"running": {"startedAt": started}})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            let mut s = json!({"name": cname, "image": image, "imageID": "", "ready": network, "started": network, "restartCount": 0, "state": state});
            if network {
                s["containerID"] = json!(format!("containerd://{}", hex::encode(short_hash(&format!("{uid}/{cname}")))));
                s["imageID"] = json!(format!("{image}@sha256:{}", hex::encode(short_hash(image))));
            }
            s
        })
        .collect();
    let mut st = json!({
        "phase": if network { "Running" } else { "Pending" },
        "conditions": [cond("PodReadyToStartContainers", network), cond("Initialized", true), cond("Ready", network),
            cond("ContainersReady", network), cond("PodScheduled", true)],
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}], "startTime": started,
        "containerStatuses": containers, "qosClass": qos_class(&pod["spec"]),
    });
    if network {
        let ip = pod_ip(pod, node_ip, pod_cidr);
        st["podIP"] = json!(ip);
        st["podIPs"] = json!([{"ip": ip}]);
    }
    st
}

fn mirror(p: &Value) -> bool {
    p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

/// Whether the status the kubelet would post differs in what matters.
fn stale(cur: &Value, want: &Value) -> bool {
    let ready = |s: &Value| {
        s["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone())
    };
    cur["phase"] != want["phase"]
        || ready(cur) != ready(want)
        || cur["podIP"] != want["podIP"]
        || cur["containerStatuses"].as_array().map(Vec::len)
            != want["containerStatuses"].as_array().map(Vec::len)
}

/// One pass over the API Pods bound to `node`; `network`: a CNI config is
/// present and sandboxes can start; `pod_cidr`: the Node's, when the last heartbeat
/// found it set (else it is read here). Returns the Pods seen (mirror Pods excluded).
pub async fn sync(
    c: &Client,
    node: &str,
    node_ip: &str,
    network: bool,
    runnable: bool,
    pod_cidr: Option<&str>,
) -> Vec<Value> {
    let a = c
        .get(&format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{node}"
        ))
        .await;
    let pods: Vec<Value> = a.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !mirror(p))
        .collect();
    let cidr = match pod_cidr {
        Some(cidr) => Some(cidr.to_string()),
        None => c.get(&format!("/api/v1/nodes/{node}")).await.body["spec"]["podCIDR"]
            .as_str()
            .map(String::from),
    };
    for p in &pods {
        let path = format!("/api/v1/namespaces/{}/pods/{}", namespace(p), name(p));
        if terminating(p) {
            // Containers stopped: the kubelet confirms the deletion.
            c.delete(&format!("{path}?gracePeriodSeconds=0")).await;
            continue;
        }
        if matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let can_start = runnable && (network || p["spec"]["hostNetwork"] == true);
        let want = pod_status(p, node_ip, cidr.as_deref(), can_start);
        if stale(&p["status"], &want) {
            c.merge(&format!("{path}/status"), &json!({"status": want}))
                .await;
        }
    }
    pods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_waiting_status() {
        let pod = json!({"metadata": {"uid": "u1"}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let s = pod_status(&pod, "10.0.0.5", Some("10.244.1.0/24"), true);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert!(s["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"));
        let ip: std::net::Ipv4Addr = s["podIP"].as_str().unwrap().parse().unwrap();
        assert!(
            "10.244.1.0/24"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&ip),
            "{ip}"
        );
        assert_eq!(s["qosClass"], "BestEffort");
        let w = pod_status(&pod, "10.0.0.5", None, false);
        assert_eq!(w["phase"], "Pending");
        assert_eq!(
            w["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert!(w.get("podIP").is_none());
        let mut host = pod.clone();
        host["spec"]["hostNetwork"] = json!(true);
        assert_eq!(
            pod_status(&host, "10.0.0.5", None, true)["podIP"],
            "10.0.0.5"
        );
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})),
            "Burstable"
        );
    }
}
