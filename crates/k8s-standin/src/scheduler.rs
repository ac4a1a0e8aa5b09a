//! The kube-scheduler stand-in: binds Pending Pods to nodes that pass the
//! default profile's filters in their order (NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodeResourcesFit), spreading replicas of one
//! controller and preferring the least loaded node. A Pod no node takes keeps
//! Pending with PodScheduled=False/Unschedulable and a FailedScheduling event
//! carrying the real message.

use crate::client::Client;
use crate::workload::{
    self as w, controller_uid, name, namespace, pod_active, pod_request, quantity,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Bind { pod: Value, node: String },
    Unschedulable { pod: Value, message: String },
}

/// Why a node rejects the Pod (the first failing filter), as the scheduler words it.
fn filter(pod: &Value, node: &Value, used: &Usage) -> Result<(), String> {
    let spec = &pod["spec"];
    if node["spec"]["unschedulable"] == true {
        let taint = json!({"key": w::UNSCHEDULABLE, "effect": "NoSchedule"});
        let tolerated = spec["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| w::tolerates(t, &taint));
        if !tolerated {
            return Err("node(s) were unschedulable".into());
        }
    }
    if let Some(t) = w::untolerated(spec, node, &["NoSchedule", "NoExecute"]).first() {
        return Err(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t["key"].as_str().unwrap_or(""),
            t["value"].as_str().unwrap_or("")
        ));
    }
    if !w::node_matches(spec, node) {
        return Err("node(s) didn't match Pod's node affinity/selector".into());
    }
    let alloc = |r: &str| {
        node.pointer(&format!("/status/allocatable/{r}"))
            .and_then(quantity)
    };
    if alloc("pods").is_some_and(|max| used.pods + 1.0 > max) {
        return Err("Too many pods".into());
    }
    for r in ["cpu", "memory"] {
        let want = pod_request(spec, r);
        if want > 0.0 && alloc(r).is_some_and(|a| used.get(r) + want > a + 1e-9) {
            return Err(format!("Insufficient {r}"));
        }
    }
    Ok(())
}

#[derive(Debug, Default, Clone)]
struct Usage {
    cpu: f64,
    memory: f64,
    pods: f64,
    /// Pods per controller uid, for spreading replicas.
    owners: BTreeMap<String, usize>,
}

impl Usage {
    fn get(&self, r: &str) -> f64 {
        if r == "cpu" {
            self.cpu
        } else {
            self.memory
        }
    }
    fn add(&mut self, pod: &Value) {
        self.cpu += pod_request(&pod["spec"], "cpu");
        self.memory += pod_request(&pod["spec"], "memory");
        self.pods += 1.0;
        if let Some(u) = controller_uid(pod) {
            *self.owners.entry(u.to_string()).or_default() += 1;
        }
    }
}

/// Pods waiting for the default scheduler, highest priority first, then oldest.
fn pending(pods: &[Value]) -> Vec<&Value> {
    let mut p: Vec<&Value> = pods
        .iter()
        .filter(|p| {
            pod_active(p)
                && p["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
                && p["spec"]["schedulerName"]
                    .as_str()
                    .unwrap_or("default-scheduler")
                    == "default-scheduler"
        })
        .collect();
    p.sort_by_key(|p| {
        (
            std::cmp::Reverse(p["spec"]["priority"].as_i64().unwrap_or(0)),
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    });
    p
}

/// Decides every pending Pod against the nodes, counting earlier decisions.
pub fn plan(pods: &[Value], nodes: &[Value]) -> Vec<Decision> {
    let mut usage: BTreeMap<String, Usage> = nodes
        .iter()
        .map(|n| (name(n).to_string(), Usage::default()))
        .collect();
    for p in pods.iter().filter(|p| pod_active(p)) {
        if let Some(u) = p["spec"]["nodeName"]
            .as_str()
            .and_then(|n| usage.get_mut(n))
        {
            u.add(p);
        }
    }
    let mut out = vec![];
    for pod in pending(pods) {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(usize, f64, &str)> = None;
        for node in nodes {
            let n = name(node);
            let u = &usage[n];
            match filter(pod, node, u) {
                Err(why) => *reasons.entry(why).or_default() += 1,
                Ok(()) => {
                    let same = controller_uid(pod)
                        .and_then(|o| u.owners.get(o))
                        .copied()
                        .unwrap_or(0);
                    let cap = node
                        .pointer("/status/allocatable/cpu")
                        .and_then(quantity)
                        .unwrap_or(1.0)
                        .max(1e-3);
                    let key = (same, u.cpu / cap + u.pods / 1000.0, n);
                    if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                        best = Some(key);
                    }
                }
            }
        }
        match best {
            Some((_, _, n)) => {
                usage.get_mut(n).expect("node").add(pod);
                out.push(Decision::Bind {
                    pod: pod.clone(),
                    node: n.to_string(),
                });
            }
            None => {
                let total = nodes.len();
                // FitError sorts "count reason" strings, counts included.
                let mut detail: Vec<String> =
                    reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
                detail.sort();
                let message = if total == 0 {
                    "no nodes available to schedule pods".to_string()
                } else {
                    format!(
                        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
                        detail.join(", ")
                    )
                };
                out.push(Decision::Unschedulable {
                    pod: pod.clone(),
                    message,
                });
            }
        }
    }
    out
}

/// One scheduling pass against the API.
pub async fn schedule(c: &Client) -> Result<(), String> {
    let pods = c.get("/api/v1/pods").await;
    let nodes = c.get("/api/v1/nodes").await;
    if !pods.ok() || !nodes.ok() {
        return Err(if pods.ok() {
            nodes.message()
        } else {
            pods.message()
        });
    }
    let list = |a: &crate::client::Answer| a.body["items"].as_array().cloned().unwrap_or_default();
    for d in plan(&list(&pods), &list(&nodes)) {
        match d {
            Decision::Bind { pod, node } => {
                let (ns, n) = (namespace(&pod), name(&pod));
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": n, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                if c.create(
                    &format!("/api/v1/namespaces/{ns}/pods/{n}/binding"),
                    &binding,
                )
                .await
                .ok()
                {
                    crate::controllers::event(
                        c,
                        &pod,
                        "Pod",
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{n} to {node}"),
                        "default-scheduler",
                    )
                    .await;
                }
            }
            Decision::Unschedulable { pod, message } => {
                let cur = pod
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
                    .cloned();
                if cur.is_some_and(|c| c["message"] == message.as_str()) {
                    continue;
                }
                let (ns, n) = (namespace(&pod), name(&pod));
                let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                    "lastProbeTime": null, "lastTransitionTime": crate::apiserver::objects::now_rfc3339()});
                c.merge(
                    &format!("/api/v1/namespaces/{ns}/pods/{n}/status"),
                    &json!({"status": {"conditions": [cond]}}),
                )
                .await;
                crate::controllers::event(
                    c,
                    &pod,
                    "Pod",
                    "Warning",
                    "FailedScheduling",
                    &message,
                    "default-scheduler",
                )
                .await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, taints: Value, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}})
    }
    fn pod(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": name}, "spec": spec, "status": {"phase": "Pending"}})
    }

    #[test]
    fn binds_spreads_and_explains() {
        let cp = node(
            "cp1",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            json!({}),
        );
        let w1 = node("w1", json!([]), json!({"disk": "ssd"}));
        let w2 = node("w2", json!([]), json!({}));
        let owner = json!([{"uid": "rs1", "controller": true}]);
        let mut a = pod("a", json!({"containers": [{}]}));
        a["metadata"]["ownerReferences"] = owner.clone();
        let mut b = a.clone();
        b["metadata"]["name"] = json!("b");
        let ssd = pod("c", json!({"nodeSelector": {"disk": "ssd"}}));
        let none = pod("d", json!({"nodeSelector": {"disk": "nvme"}}));
        let nodes = [cp, w1, w2];
        let d = plan(&[a, b, ssd, none], &nodes);
        let bound: Vec<(&str, &str)> = d
            .iter()
            .filter_map(|d| match d {
                Decision::Bind { pod, node } => Some((name(pod), node.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(bound.len(), 3);
        assert!(
            bound.iter().all(|(_, n)| *n != "cp1"),
            "control-plane taint: {bound:?}"
        );
        assert_ne!(bound[0].1, bound[1].1, "replicas spread: {bound:?}");
        assert_eq!(bound[2], ("c", "w1"));
        let Decision::Unschedulable { message, .. } = &d[3] else {
            panic!("{d:?}")
        };
        assert_eq!(message, "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.");
    }

    #[test]
    fn resources_and_cordon() {
        let mut w1 = node("w1", json!([]), json!({}));
        w1["spec"]["unschedulable"] = json!(true);
        let w2 = node("w2", json!([]), json!({}));
        let running = json!({"metadata": {"name": "r"}, "spec": {"nodeName": "w2", "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]}, "status": {"phase": "Running"}});
        let big = pod(
            "big",
            json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}),
        );
        let d = plan(&[running, big], &[w1, w2]);
        let Decision::Unschedulable { message, .. } = &d[0] else {
            panic!("{d:?}")
        };
        assert!(
            message.starts_with(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable."
            ),
            "{message}"
        );
    }
}
