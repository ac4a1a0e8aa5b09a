//! Node lifecycle as pure planners: Ready → Unknown when the kubelet stops
//! renewing its Lease and posting status, the condition taints (not-ready,
//! unreachable, unschedulable), Pods on lost nodes marked not Ready, NoExecute
//! taint eviction after tolerationSeconds, and Pod GC for Pods bound to deleted
//! nodes.

use super::workloads::{Action, World};
use crate::apiserver::objects::{parse_rfc3339, rfc3339};
use crate::workload::{self as w, name, namespace};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The node lifecycle controller's grace period before Ready becomes Unknown.
pub const NODE_MONITOR_GRACE: i64 = 40;

/// Where each kubelet keeps its Lease (named after its Node).
pub const NODE_LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

fn pod_path(p: &Value) -> String {
    format!("/api/v1/namespaces/{}/pods/{}", namespace(p), name(p))
}

/// The Ready condition's status as the controller sees it now ("" if unset). The
/// kubelet is alive while its Lease in kube-node-lease is renewed or its Ready condition
/// heartbeats, whichever is later: at rest it posts status only every few minutes.
fn ready_status(node: &Value, lease: Option<&Value>, now: OffsetDateTime) -> &'static str {
    let Some(ready) = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
    else {
        return "";
    };
    let renewed = lease.and_then(|l| l["spec"]["renewTime"].as_str().and_then(parse_rfc3339));
    let beat = ready["lastHeartbeatTime"]
        .as_str()
        .and_then(parse_rfc3339)
        .max(renewed);
    if ready["status"] == "Unknown"
        || beat.is_some_and(|b| (now - b).whole_seconds() > NODE_MONITOR_GRACE)
    {
        return "Unknown";
    }
    if ready["status"] == "True" {
        "True"
    } else {
        "False"
    }
}

/// Taints the controller owns for a node in this state.
fn condition_taints(ready: &str, unschedulable: bool) -> Vec<(&'static str, &'static str)> {
    let mut t = match ready {
        "True" => vec![],
        "Unknown" => vec![
            (w::UNREACHABLE, "NoSchedule"),
            (w::UNREACHABLE, "NoExecute"),
        ],
        _ => vec![(w::NOT_READY, "NoSchedule"), (w::NOT_READY, "NoExecute")],
    };
    if unschedulable {
        t.push((w::UNSCHEDULABLE, "NoSchedule"));
    }
    t
}

pub fn lifecycle(world: &World, now: OffsetDateTime) -> Vec<Action> {
    let mut out = vec![];
    let stamp = rfc3339(now);
    for node in &world.nodes {
        let n = name(node);
        let lease = world.node_leases.iter().find(|l| name(l) == n);
        let ready = ready_status(node, lease, now);
        let conds = node.pointer("/status/conditions").and_then(Value::as_array);
        if ready == "Unknown"
            && conds.is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] != "Unknown")
            })
        {
            let new: Vec<Value> = conds
                .into_iter()
                .flatten()
                .map(|c| {
                    let mut c = c.clone();
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(stamp);
                    c
                })
                .collect();
            out.push(Action::Merge {
                path: format!("/api/v1/nodes/{n}/status"),
                patch: json!({"status": {"conditions": new}}),
            });
        }
        // Condition taints: ours replaced, everyone else's kept, timeAdded kept.
        let current: Vec<Value> = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ours = |t: &Value| {
            [w::NOT_READY, w::UNREACHABLE, w::UNSCHEDULABLE]
                .contains(&t["key"].as_str().unwrap_or(""))
        };
        let mut want: Vec<Value> = current.iter().filter(|t| !ours(t)).cloned().collect();
        for (key, effect) in condition_taints(ready, node["spec"]["unschedulable"] == true) {
            let kept = current
                .iter()
                .find(|t| t["key"] == key && t["effect"] == effect)
                .cloned();
            want.push(
                kept.unwrap_or_else(|| json!({"key": key, "effect": effect, "timeAdded": stamp})),
            );
        }
        if want != current {
            out.push(Action::Merge {
                path: format!("/api/v1/nodes/{n}"),
                patch: json!({"spec": {"taints": want}}),
            });
        }
        if ready == "Unknown" {
            // MarkPodsNotReady: nobody is there to report them.
            for p in world
                .pods
                .iter()
                .filter(|p| p["spec"]["nodeName"] == n && w::pod_ready(p))
            {
                let conds: Vec<Value> = p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let mut c = c.clone();
                        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                            c["status"] = json!("False");
                            c["lastTransitionTime"] = json!(stamp);
                        }
                        c
                    })
                    .collect();
                out.push(Action::Merge {
                    path: format!("{}/status", pod_path(p)),
                    patch: json!({"status": {"conditions": conds}}),
                });
            }
        }
    }
    out
}

/// When a Pod must leave a node with NoExecute taints: now if one is not
/// tolerated, after the shortest tolerationSeconds, or never.
fn eviction_time(pod: &Value, node: &Value) -> Option<OffsetDateTime> {
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut at: Option<OffsetDateTime> = None;
    for taint in node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if taint["effect"] != "NoExecute" {
            continue;
        }
        let added = taint["timeAdded"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let matching: Vec<&Value> = tolerations
            .iter()
            .filter(|t| w::tolerates(t, taint))
            .collect();
        let deadline = if matching.is_empty() {
            Some(added)
        } else if matching.iter().any(|t| t["tolerationSeconds"].is_null()) {
            None
        } else {
            let secs = matching
                .iter()
                .filter_map(|t| t["tolerationSeconds"].as_i64())
                .min()
                .unwrap_or(0);
            Some(added + time::Duration::seconds(secs.max(0)))
        };
        if let Some(d) = deadline {
            at = Some(at.map_or(d, |a| a.min(d)));
        }
    }
    at
}

/// Taint-based eviction and Pod GC of Pods whose node is gone.
pub fn evictions(world: &World, now: OffsetDateTime) -> Vec<Action> {
    let mut out = vec![];
    for p in &world.pods {
        let Some(node_name) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
            continue;
        };
        match world.nodes.iter().find(|n| name(n) == node_name) {
            None => out.push(Action::Delete {
                path: format!("{}?gracePeriodSeconds=0", pod_path(p)),
            }),
            Some(_) if w::terminating(p) => {}
            Some(node) => {
                if eviction_time(p, node).is_some_and(|t| t <= now) {
                    out.push(Action::Delete { path: pod_path(p) });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, status: &str, beat: OffsetDateTime, taints: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": status, "lastHeartbeatTime": rfc3339(beat)}]}})
    }

    #[test]
    fn a_renewed_lease_keeps_a_node_with_an_old_status_ready() {
        let now = OffsetDateTime::now_utc();
        let lease = |ago: i64| {
            json!({"metadata": {"name": "w1", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "w1", "renewTime": rfc3339(now - time::Duration::seconds(ago))}})
        };
        let world = |lease_ago: i64| World {
            nodes: vec![node(
                "w1",
                "True",
                now - time::Duration::seconds(240),
                json!([]),
            )],
            node_leases: vec![lease(lease_ago)],
            ..Default::default()
        };
        // The kubelet posted status 4 minutes ago and renewed its Lease 5 s ago.
        assert_eq!(lifecycle(&world(5), now), vec![]);
        // Neither within the grace period: the node is lost.
        let acts = lifecycle(&world(NODE_MONITOR_GRACE + 5), now);
        let Some(Action::Merge { patch, .. }) = acts.first() else {
            panic!("{acts:?}")
        };
        assert_eq!(patch["status"]["conditions"][0]["status"], "Unknown");
    }

    #[test]
    fn silent_node_goes_unknown_and_is_tainted() {
        let now = OffsetDateTime::now_utc();
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "w1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let world = World {
            nodes: vec![node(
                "w1",
                "True",
                now - time::Duration::seconds(60),
                json!([{"key": "custom", "effect": "NoSchedule"}]),
            )],
            pods: vec![pod],
            ..Default::default()
        };
        let acts = lifecycle(&world, now);
        let Action::Merge { patch, .. } = &acts[0] else {
            panic!("{acts:?}")
        };
        assert_eq!(patch["status"]["conditions"][0]["status"], "Unknown");
        let Action::Merge { patch, .. } = &acts[1] else {
            panic!("{acts:?}")
        };
        let keys: Vec<&str> = patch["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["custom", w::UNREACHABLE, w::UNREACHABLE]);
        let Action::Merge { path, patch } = &acts[2] else {
            panic!("{acts:?}")
        };
        assert_eq!(path, "/api/v1/namespaces/default/pods/p/status");
        assert_eq!(patch["status"]["conditions"][0]["status"], "False");
        // A healthy, cordoned node: only the unschedulable taint.
        let mut healthy = node("w2", "True", now, json!(null));
        healthy["spec"]["unschedulable"] = json!(true);
        let acts = lifecycle(
            &World {
                nodes: vec![healthy],
                ..Default::default()
            },
            now,
        );
        assert_eq!(acts.len(), 1);
        let Action::Merge { patch, .. } = &acts[0] else {
            panic!()
        };
        assert_eq!(patch["spec"]["taints"][0]["key"], w::UNSCHEDULABLE);
    }

    #[test]
    fn pods_leave_after_toleration_seconds() {
        let now = OffsetDateTime::now_utc();
        let taint = |ago: i64| json!([{"key": w::UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(now - time::Duration::seconds(ago))}]);
        let pod = |tol: Value| json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "w1", "tolerations": tol}});
        let default_tol = json!([{"key": w::UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
        let run = |p: Value, ago: i64| {
            evictions(
                &World {
                    pods: vec![p],
                    nodes: vec![node("w1", "Unknown", now, taint(ago))],
                    ..Default::default()
                },
                now,
            )
            .len()
        };
        assert_eq!(run(pod(default_tol.clone()), 100), 0, "still within 300 s");
        assert_eq!(run(pod(default_tol), 301), 1, "evicted after 300 s");
        assert_eq!(run(pod(json!([])), 1), 1, "untolerated: at once");
        assert_eq!(
            run(pod(json!([{"operator": "Exists"}])), 10_000),
            0,
            "tolerated forever"
        );
        // Pod GC: the node is gone.
        let gone = evictions(
            &World {
                pods: vec![pod(json!([]))],
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            gone,
            vec![Action::Delete {
                path: "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0".into()
            }]
        );
    }
}
