//! meta.k8s.io/v1 Tables: what `kubectl get` prints, with the real columns
//! (priority 1 columns only show with `-o wide`).

use super::objects::{age, node_status};
use serde_json::{json, Value};

fn col(name: &str, ty: &str, format: &str, priority: u8) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn int(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn text(o: &Value, p: &str) -> String {
    o.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// "k=v,k2=v2" of a string map, or "<none>".
fn map_string(m: &Value) -> String {
    let parts: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// A label selector as kubectl prints it.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let vals: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let key = e["key"].as_str().unwrap_or("");
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// CONTAINERS, IMAGES (the wide columns of workload tables).
fn containers_images(template_spec: &Value) -> (String, String) {
    let cs = template_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

/// kubectl's Pod STATUS: the phase, overridden by a container's waiting or
/// terminated reason, and "Terminating" while being deleted.
pub fn pod_status(pod: &Value) -> String {
    let mut reason = pod
        .pointer("/status/reason")
        .or_else(|| pod.pointer("/status/phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    for c in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() && reason != "NodeLost" {
        reason = "Terminating".into();
    }
    reason
}

fn columns(kind: &str) -> Vec<Value> {
    let s = |n: &str| col(n, "string", "", 0);
    let i = |n: &str| col(n, "integer", "", 0);
    let wide = |n: &str| col(n, "string", "", 1);
    let name = col("Name", "string", "name", 0);
    match kind {
        "Node" => vec![name, s("Status"), s("Roles"), s("Age"), s("Version")],
        "Pod" => vec![
            name,
            s("Ready"),
            s("Status"),
            col("Restarts", "string", "", 0),
            s("Age"),
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ],
        "Deployment" => vec![
            name,
            s("Ready"),
            i("Up-to-date"),
            i("Available"),
            s("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "ReplicaSet" => vec![
            name,
            i("Desired"),
            i("Current"),
            i("Ready"),
            s("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "DaemonSet" => vec![
            name,
            i("Desired"),
            i("Current"),
            i("Ready"),
            i("Up-to-date"),
            i("Available"),
            s("Node Selector"),
            s("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "Event" => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            wide("Subobject"),
            wide("Source"),
            s("Message"),
            wide("First Seen"),
            wide("Count"),
            col("Name", "string", "name", 1),
        ],
        "PodDisruptionBudget" => vec![
            name,
            s("Min Available"),
            s("Max Unavailable"),
            i("Allowed Disruptions"),
            s("Age"),
        ],
        _ => vec![name, col("Age", "date", "", 0)],
    }
}

fn cells(kind: &str, o: &Value) -> Value {
    let name = o.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let tspec = o
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(Value::Null);
    match kind {
        "Node" => {
            let mut roles: Vec<String> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/").map(String::from)
                        })
                        .collect()
                })
                .unwrap_or_default();
            roles.sort();
            let roles = if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            };
            json!([
                name,
                node_status(o),
                roles,
                age(o),
                text(o, "/status/nodeInfo/kubeletVersion")
            ])
        }
        "Pod" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum();
            let or_none = |p: &str| {
                Some(text(o, p))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "<none>".into())
            };
            json!([
                name,
                format!("{ready}/{total}"),
                pod_status(o),
                restarts.to_string(),
                age(o),
                or_none("/status/podIP"),
                or_none("/spec/nodeName"),
                or_none("/status/nominatedNodeName"),
                "<none>"
            ])
        }
        "Deployment" => {
            let (c, i) = containers_images(&tspec);
            json!([
                name,
                format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    o.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
                int(o, "/status/updatedReplicas"),
                int(o, "/status/availableReplicas"),
                age(o),
                c,
                i,
                selector_string(&o["spec"]["selector"])
            ])
        }
        "ReplicaSet" => {
            let (c, i) = containers_images(&tspec);
            json!([
                name,
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
                int(o, "/status/replicas"),
                int(o, "/status/readyReplicas"),
                age(o),
                c,
                i,
                selector_string(&o["spec"]["selector"])
            ])
        }
        "DaemonSet" => {
            let (c, i) = containers_images(&tspec);
            json!([
                name,
                int(o, "/status/desiredNumberScheduled"),
                int(o, "/status/currentNumberScheduled"),
                int(o, "/status/numberReady"),
                int(o, "/status/updatedNumberScheduled"),
                int(o, "/status/numberAvailable"),
                map_string(&tspec["nodeSelector"]),
                age(o),
                c,
                i,
                selector_string(&o["spec"]["selector"])
            ])
        }
        "Event" => {
            let since = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .and_then(super::objects::parse_rfc3339)
                    .map(|t| {
                        super::objects::human_duration(
                            (time::OffsetDateTime::now_utc() - t).whole_seconds(),
                        )
                    })
                    .unwrap_or_else(|| "<unknown>".into())
            };
            let obj = format!(
                "{}/{}",
                text(o, "/involvedObject/kind").to_lowercase(),
                text(o, "/involvedObject/name")
            );
            json!([
                since("/lastTimestamp"),
                text(o, "/type"),
                text(o, "/reason"),
                obj,
                text(o, "/involvedObject/fieldPath"),
                text(o, "/source/component"),
                text(o, "/message"),
                since("/firstTimestamp"),
                int(o, "/count"),
                name
            ])
        }
        "PodDisruptionBudget" => {
            let show = |p: &str| match o.pointer(p) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".into(),
            };
            json!([
                name,
                show("/spec/minAvailable"),
                show("/spec/maxUnavailable"),
                int(o, "/status/disruptionsAllowed"),
                age(o)
            ])
        }
        _ => json!([name, age(o)]),
    }
}

/// A meta.k8s.io/v1 Table of `items` (kubectl get's default output).
pub fn table(kind: &str, items: &[Value], resource_version: &str) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut meta = o["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": cells(kind, o), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version}, "columnDefinitions": columns(kind), "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::objects::now_rfc3339;

    #[test]
    fn node_table() {
        let n = json!({"metadata": {"name": "cp1", "creationTimestamp": now_rfc3339(), "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.31.0"}}});
        let t = table("Node", &[n], "5");
        assert_eq!(t["rows"][0]["cells"][0], "cp1");
        assert_eq!(t["rows"][0]["cells"][1], "Ready,SchedulingDisabled");
        assert_eq!(t["rows"][0]["cells"][2], "control-plane");
        assert_eq!(t["rows"][0]["cells"][4], "v1.31.0");
    }

    #[test]
    fn workload_tables() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = table("Deployment", &[d], "1");
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "2/3",
                3,
                2,
                "<unknown>",
                "nginx",
                "nginx:1",
                "app=web"
            ])
        );
        assert_eq!(
            t["columnDefinitions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["priority"] == 0)
                .count(),
            5
        );
        let ds = json!({"metadata": {"name": "kube-proxy"}, "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            table("DaemonSet", &[ds], "1")["rows"][0]["cells"][6],
            "kubernetes.io/os=linux"
        );
        let pod = json!({"metadata": {"name": "p", "deletionTimestamp": now_rfc3339()}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 1}]}});
        let cells = &table("Pod", &[pod], "1")["rows"][0]["cells"];
        assert_eq!(
            (cells[1].as_str(), cells[2].as_str(), cells[3].as_str()),
            (Some("1/1"), Some("Terminating"), Some("1"))
        );
        let waiting = json!({"status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(pod_status(&waiting), "ContainerCreating");
        let pdb = json!({"metadata": {"name": "b"}, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            table("PodDisruptionBudget", &[pdb], "1")["rows"][0]["cells"],
            json!(["b", "2", "N/A", 1, "<unknown>"])
        );
    }
}
