//! Workload controllers as pure planners over one snapshot of the cluster
//! (`World`): ReplicaSet, Deployment (rolling update, Recreate), DaemonSet,
//! disruption (PodDisruptionBudget status), owner-reference garbage
//! collection of Pods and ReplicaSets. Each returns the API writes to make;
//! `apply` performs them. One pass does one step; the next pass sees its effect.

use crate::apiserver::objects::{now_rfc3339, parse_rfc3339};
use crate::workload::{
    self as w, controller_uid, int_or_percent, name, namespace, owner_ref, pod_active, pod_ready,
    selector_matches, uid,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// Everything the controllers look at, listed once per pass. Dependents are
/// listed before their owners so a fresh dependent's owner is always seen.
#[derive(Debug, Default, Clone)]
pub struct World {
    pub pods: Vec<Value>,
    pub replicasets: Vec<Value>,
    pub deployments: Vec<Value>,
    pub daemonsets: Vec<Value>,
    pub statefulsets: Vec<Value>,
    pub jobs: Vec<Value>,
    pub pdbs: Vec<Value>,
    pub nodes: Vec<Value>,
    /// The kubelets' Leases in kube-node-lease, one per Node of the same name.
    pub node_leases: Vec<Value>,
}

/// One API write.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create {
        path: String,
        obj: Value,
    },
    /// JSON merge patch (spec changes and `/status`).
    Merge {
        path: String,
        patch: Value,
    },
    /// PUT guarded by the object's resourceVersion (PDB status, which evictions also write).
    Replace {
        path: String,
        obj: Value,
    },
    Delete {
        path: String,
    },
}

fn coll(api: &str, ns: &str, plural: &str) -> String {
    let base = if api == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{api}")
    };
    format!("{base}/namespaces/{ns}/{plural}")
}

fn item(api: &str, obj: &Value, plural: &str) -> String {
    format!("{}/{}", coll(api, namespace(obj), plural), name(obj))
}

fn int(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn owned<'a>(pods: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    pods.iter()
        .filter(|p| controller_uid(p) == Some(uid(owner)) && namespace(p) == namespace(owner))
        .collect()
}

/// Ready for at least minReadySeconds.
fn available(pod: &Value, min_ready: i64, now: OffsetDateTime) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(parse_rfc3339)
        .is_some_and(|t| (now - t).whole_seconds() >= min_ready)
}

/// Merges a status only when it differs from the current one on the given fields.
fn status_if_changed(path: String, cur: &Value, want: Value) -> Option<Action> {
    let differs = want
        .as_object()
        .expect("status object")
        .iter()
        .any(|(k, v)| cur.get(k).unwrap_or(&Value::Null) != v);
    differs.then(|| Action::Merge {
        path: format!("{path}/status"),
        patch: json!({ "status": want }),
    })
}

/// Conditions as controllers write them: lastTransitionTime kept while the
/// status stays the same.
fn conditions(cur: &Value, want: &[(&str, &str, &str, String)]) -> Value {
    let now = now_rfc3339();
    Value::Array(
        want.iter()
            .map(|(ty, st, reason, msg)| {
                let old = cur
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == *ty));
                let same = old.is_some_and(|o| o["status"] == *st && o["reason"] == *reason && o["message"] == msg.as_str());
                if let (true, Some(o)) = (same, old) {
                    return o.clone();
                }
                let since = old
                    .filter(|o| o["status"] == *st)
                    .map(|o| o["lastTransitionTime"].clone())
                    .unwrap_or(json!(now));
                json!({"type": ty, "status": st, "reason": reason, "message": msg, "lastUpdateTime": now, "lastTransitionTime": since})
            })
            .collect(),
    )
}

/// A Pod of a controller's template.
fn pod_from_template(template: &Value, owner: &Value, kind: &str, extra_labels: &Value) -> Value {
    let mut meta = json!({"generateName": format!("{}-", name(owner)), "namespace": namespace(owner),
        "labels": template["metadata"]["labels"].clone(), "ownerReferences": [owner_ref(owner, "apps/v1", kind)]});
    if !template["metadata"]["annotations"].is_null() {
        meta["annotations"] = template["metadata"]["annotations"].clone();
    }
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in extra_labels.as_object().into_iter().flatten() {
        meta["labels"][k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()})
}

/// Which surplus Pods a ReplicaSet deletes first: unscheduled, then pending,
/// then not ready, then the newest (controller.ActivePods ordering).
fn deletion_rank(p: &Value) -> (bool, bool, bool, std::cmp::Reverse<String>) {
    let scheduled = !p["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
    let running = p["status"]["phase"] == "Running";
    let created = p["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (scheduled, running, pod_ready(p), std::cmp::Reverse(created))
}

pub fn replicasets(world: &World, now: OffsetDateTime) -> Vec<Action> {
    let mut out = vec![];
    for rs in &world.replicasets {
        if w::terminating(rs) {
            continue;
        }
        let pods: Vec<&Value> = owned(&world.pods, rs)
            .into_iter()
            .filter(|p| pod_active(p))
            .collect();
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1);
        let have = pods.len() as i64;
        if have < want {
            for _ in have..want.min(have + 500) {
                out.push(Action::Create {
                    path: coll("v1", namespace(rs), "pods"),
                    obj: pod_from_template(&rs["spec"]["template"], rs, "ReplicaSet", &json!({})),
                });
            }
        } else if have > want {
            let mut surplus = pods.clone();
            surplus.sort_by_key(|p| deletion_rank(p));
            for p in surplus.into_iter().take((have - want) as usize) {
                out.push(Action::Delete {
                    path: item("v1", p, "pods"),
                });
            }
        }
        let min_ready = int(rs, "/spec/minReadySeconds");
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let avail = pods.iter().filter(|p| available(p, min_ready, now)).count();
        let st = json!({"replicas": have, "fullyLabeledReplicas": have, "readyReplicas": ready, "availableReplicas": avail,
            "observedGeneration": rs["metadata"]["generation"]});
        out.extend(status_if_changed(
            item("apps/v1", rs, "replicasets"),
            &rs["status"],
            st,
        ));
    }
    out
}

const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A new ReplicaSet for the Deployment's current template.
fn new_replicaset(d: &Value, hash: &str, replicas: i64, rev: i64) -> Value {
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{}-{hash}", name(d)), "namespace": namespace(d), "labels": template["metadata"]["labels"].clone(),
            "annotations": {REVISION: rev.to_string(), "deployment.kubernetes.io/desired-replicas": d["spec"]["replicas"].as_i64().unwrap_or(1).to_string()},
            "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")]},
        "spec": {"replicas": replicas, "minReadySeconds": int(d, "/spec/minReadySeconds"), "selector": selector, "template": template}})
}

fn set_replicas(rs: &Value, n: i64) -> Action {
    Action::Merge {
        path: item("apps/v1", rs, "replicasets"),
        patch: json!({"spec": {"replicas": n}}),
    }
}

pub fn deployments(world: &World) -> Vec<Action> {
    let mut out = vec![];
    for d in &world.deployments {
        if w::terminating(d) {
            continue;
        }
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let hash = w::template_hash(&d["spec"]["template"]);
        let mut all: Vec<&Value> = owned(&world.replicasets, d);
        all.sort_by_key(|rs| {
            (
                revision(rs),
                rs["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        });
        let new = all
            .iter()
            .copied()
            .find(|rs| rs["metadata"]["labels"][HASH_LABEL] == hash.as_str());
        let old: Vec<&Value> = all.iter().copied().filter(|rs| Some(*rs) != new).collect();
        let spec_of = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
        let total: i64 = all.iter().map(|rs| spec_of(rs)).sum();
        let max_rev = all.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let ru = &d["spec"]["strategy"]["rollingUpdate"];
        let surge = int_or_percent(&ru["maxSurge"], replicas, true);
        let mut unavail = int_or_percent(&ru["maxUnavailable"], replicas, false);
        if surge == 0 && unavail == 0 {
            unavail = 1;
        }
        let path = item("apps/v1", d, "deployments");
        let paused = d["spec"]["paused"] == true;
        let old_active = old
            .iter()
            .any(|rs| spec_of(rs) > 0 || int(rs, "/status/replicas") > 0);
        match new {
            _ if paused => {}
            None => {
                let start = if recreate {
                    if old_active {
                        None
                    } else {
                        Some(replicas)
                    }
                } else if old.is_empty() {
                    Some(replicas)
                } else {
                    Some((replicas + surge - total).clamp(0, replicas))
                };
                if let Some(n) = start {
                    out.push(Action::Create {
                        path: coll("apps/v1", namespace(d), "replicasets"),
                        obj: new_replicaset(d, &hash, n, max_rev + 1),
                    });
                } else {
                    out.extend(
                        old.iter()
                            .filter(|rs| spec_of(rs) > 0)
                            .map(|rs| set_replicas(rs, 0)),
                    );
                }
            }
            Some(new) => {
                if revision(new) < max_rev {
                    // Rolled back to an older template: it becomes the newest revision.
                    out.push(Action::Merge {
                        path: item("apps/v1", new, "replicasets"),
                        patch: json!({"metadata": {"annotations": {REVISION: (max_rev + 1).to_string()}}}),
                    });
                }
                out.extend(rollout_step(new, &old, replicas, surge, unavail, recreate));
                out.extend(history_cleanup(
                    &old,
                    d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10),
                ));
            }
        }
        // Status, summed over every ReplicaSet the Deployment owns.
        let sum = |p: &str| all.iter().map(|rs| int(rs, p)).sum::<i64>();
        let (status_replicas, ready, avail) = (
            sum("/status/replicas"),
            sum("/status/readyReplicas"),
            sum("/status/availableReplicas"),
        );
        let updated = new.map_or(0, |n| int(n, "/status/replicas"));
        let new_name = new.map(|n| name(n).to_string()).unwrap_or_default();
        let complete = new.is_some()
            && updated == replicas
            && status_replicas == replicas
            && avail >= replicas;
        let available_ok = avail >= replicas - unavail;
        let conds = conditions(
            &d["status"]["conditions"],
            &[
                if available_ok {
                    (
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.".to_string(),
                    )
                } else {
                    (
                        "Available",
                        "False",
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.".to_string(),
                    )
                },
                if complete {
                    (
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    )
                } else {
                    (
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{new_name}\" is progressing."),
                    )
                },
            ],
        );
        let st = json!({"replicas": status_replicas, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": avail,
            "unavailableReplicas": (replicas - avail).max(0), "observedGeneration": d["metadata"]["generation"], "conditions": conds});
        out.extend(status_if_changed(path, &d["status"], st));
    }
    out
}

/// One step of a rollout (deployment/rolling.go, recreate.go): scale the new
/// ReplicaSet up within maxSurge, or old ones down within maxUnavailable.
fn rollout_step(
    new: &Value,
    old: &[&Value],
    replicas: i64,
    surge: i64,
    unavail: i64,
    recreate: bool,
) -> Vec<Action> {
    let spec_of = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
    let avail_of = |rs: &Value| int(rs, "/status/availableReplicas");
    let new_spec = spec_of(new);
    if recreate {
        let old_up: Vec<Action> = old
            .iter()
            .filter(|rs| spec_of(rs) > 0)
            .map(|rs| set_replicas(rs, 0))
            .collect();
        if !old_up.is_empty() {
            return old_up;
        }
        if old.iter().any(|rs| int(rs, "/status/replicas") > 0) {
            return vec![];
        }
        return if new_spec != replicas {
            vec![set_replicas(new, replicas)]
        } else {
            vec![]
        };
    }
    let total: i64 = spec_of(new) + old.iter().map(|rs| spec_of(rs)).sum::<i64>();
    if new_spec > replicas {
        return vec![set_replicas(new, replicas)];
    }
    if new_spec < replicas {
        let room = replicas + surge - total;
        if room > 0 {
            return vec![set_replicas(new, (new_spec + room).min(replicas))];
        }
    }
    let min_available = replicas - unavail;
    let new_unavailable = new_spec - avail_of(new);
    let mut budget = total - min_available - new_unavailable;
    let mut cuts: BTreeMap<usize, i64> = BTreeMap::new();
    // First the old Pods that are not available anyway, then available ones.
    for (i, rs) in old.iter().enumerate() {
        let unhealthy = (spec_of(rs) - avail_of(rs)).max(0).min(budget.max(0));
        if unhealthy > 0 {
            cuts.insert(i, unhealthy);
            budget -= unhealthy;
        }
    }
    let all_avail: i64 = avail_of(new) + old.iter().map(|rs| avail_of(rs)).sum::<i64>();
    let mut scale_down = (all_avail - min_available).min(budget.max(0));
    for (i, rs) in old.iter().enumerate() {
        let left = spec_of(rs) - cuts.get(&i).copied().unwrap_or(0);
        let cut = left.min(scale_down).max(0);
        if cut > 0 {
            *cuts.entry(i).or_default() += cut;
            scale_down -= cut;
        }
    }
    cuts.into_iter()
        .map(|(i, c)| set_replicas(old[i], spec_of(old[i]) - c))
        .collect()
}

/// Deletes scaled-down old ReplicaSets beyond revisionHistoryLimit, oldest first.
fn history_cleanup(old: &[&Value], limit: i64) -> Vec<Action> {
    let idle: Vec<&&Value> = old
        .iter()
        .filter(|rs| rs["spec"]["replicas"].as_i64() == Some(0) && int(rs, "/status/replicas") == 0)
        .collect();
    let extra = idle.len().saturating_sub(limit.max(0) as usize);
    idle.into_iter()
        .take(extra)
        .map(|rs| Action::Delete {
            path: item("apps/v1", rs, "replicasets"),
        })
        .collect()
}

/// Tolerations the DaemonSet controller adds to its Pods (util.AddOrUpdateDaemonPodTolerations).
fn daemon_tolerations(spec: &Value) -> Value {
    let mut t = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut add = |key: &str, effect: &str| {
        if !t.iter().any(|x| x["key"] == key && x["effect"] == effect) {
            t.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    };
    add(w::NOT_READY, "NoExecute");
    add(w::UNREACHABLE, "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add(w::UNSCHEDULABLE, "NoSchedule");
    if spec["hostNetwork"] == true {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
    Value::Array(t)
}

/// The node a DaemonSet Pod is for: bound, or pinned by its node affinity.
pub fn daemon_pod_node(p: &Value) -> Option<&str> {
    p["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
                .and_then(Value::as_str)
        })
}

pub fn daemonsets(world: &World) -> Vec<Action> {
    let mut out = vec![];
    for ds in &world.daemonsets {
        if w::terminating(ds) {
            continue;
        }
        let mut spec = ds["spec"]["template"]["spec"].clone();
        spec["tolerations"] = daemon_tolerations(&spec);
        let should_run = |n: &Value| {
            w::node_matches(&spec, n)
                && w::untolerated(&spec, n, &["NoSchedule", "NoExecute"]).is_empty()
        };
        let may_continue = |n: &Value| {
            w::node_matches(&spec, n) && w::untolerated(&spec, n, &["NoExecute"]).is_empty()
        };
        let hash = w::template_hash(&ds["spec"]["template"]);
        let pods: Vec<&Value> = owned(&world.pods, ds)
            .into_iter()
            .filter(|p| pod_active(p))
            .collect();
        let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for p in &pods {
            by_node
                .entry(daemon_pod_node(p).unwrap_or(""))
                .or_default()
                .push(p);
        }
        let current =
            |p: &Value| p["metadata"]["labels"]["controller-revision-hash"] == hash.as_str();
        let (mut desired, mut scheduled, mut ready, mut updated, mut misscheduled) =
            (0, 0, 0, 0, 0);
        let mut old_pods: Vec<&Value> = vec![];
        for node in &world.nodes {
            let n = name(node);
            let here = by_node.remove(n).unwrap_or_default();
            if should_run(node) {
                desired += 1;
                match here.split_first() {
                    None => {
                        let mut pod_spec = spec.clone();
                        pod_spec["affinity"]["nodeAffinity"]
                            ["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]});
                        let mut template = ds["spec"]["template"].clone();
                        template["spec"] = pod_spec;
                        let labels = json!({"controller-revision-hash": hash, "pod-template-generation": ds["metadata"]["generation"].as_i64().unwrap_or(1).to_string()});
                        out.push(Action::Create {
                            path: coll("v1", namespace(ds), "pods"),
                            obj: pod_from_template(&template, ds, "DaemonSet", &labels),
                        });
                    }
                    Some((first, extra)) => {
                        scheduled += 1;
                        ready += pod_ready(first) as i64;
                        if current(first) {
                            updated += 1;
                        } else {
                            old_pods.push(first);
                        }
                        out.extend(extra.iter().map(|p| Action::Delete {
                            path: item("v1", p, "pods"),
                        }));
                    }
                }
            } else if !here.is_empty() {
                misscheduled += 1;
                if !may_continue(node) {
                    out.extend(here.iter().map(|p| Action::Delete {
                        path: item("v1", p, "pods"),
                    }));
                }
            }
        }
        // Pods for nodes that no longer exist.
        for p in by_node.values().flatten() {
            out.push(Action::Delete {
                path: item("v1", p, "pods"),
            });
        }
        if ds["spec"]["updateStrategy"]["type"] != "OnDelete" {
            let max_unavailable = int_or_percent(
                &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
                desired,
                true,
            )
            .max(1);
            let mut budget = max_unavailable - (desired - ready);
            old_pods.sort_by_key(|p| pod_ready(p));
            for p in old_pods {
                // Unready old Pods go at once; ready ones within maxUnavailable.
                if !pod_ready(p) || budget > 0 {
                    budget -= pod_ready(p) as i64;
                    out.push(Action::Delete {
                        path: item("v1", p, "pods"),
                    });
                }
            }
        }
        let st = json!({"desiredNumberScheduled": desired, "currentNumberScheduled": scheduled, "numberReady": ready,
            "numberAvailable": ready, "numberUnavailable": desired - ready, "numberMisscheduled": misscheduled,
            "updatedNumberScheduled": updated, "observedGeneration": ds["metadata"]["generation"]});
        out.extend(status_if_changed(
            item("apps/v1", ds, "daemonsets"),
            &ds["status"],
            st,
        ));
    }
    out
}

/// How many Pods a budget expects: the scale of their controllers (or, for
/// an integer minAvailable, the Pods themselves), as the disruption controller.
fn expected_pods(world: &World, pdb: &Value, pods: &[&Value]) -> i64 {
    if pdb["spec"]["minAvailable"].is_number() {
        return pods.len() as i64;
    }
    let controllers: BTreeSet<&str> = pods.iter().filter_map(|p| controller_uid(p)).collect();
    let mut n = 0;
    for c in &controllers {
        let find = |list: &[Value]| list.iter().find(|o| uid(o) == *c).cloned();
        n += if let Some(rs) = find(&world.replicasets) {
            rs["spec"]["replicas"].as_i64().unwrap_or(1)
        } else if let Some(ss) = find(&world.statefulsets) {
            ss["spec"]["replicas"].as_i64().unwrap_or(1)
        } else if let Some(ds) = find(&world.daemonsets) {
            int(&ds, "/status/desiredNumberScheduled")
        } else {
            pods.iter().filter(|p| controller_uid(p) == Some(c)).count() as i64
        };
    }
    n + pods.iter().filter(|p| controller_uid(p).is_none()).count() as i64
}

/// PodDisruptionBudget status (disruption controller), written with the
/// resourceVersion it was computed from so a concurrent eviction wins.
pub fn disruption(world: &World, now: OffsetDateTime) -> Vec<Action> {
    let mut out = vec![];
    for pdb in &world.pdbs {
        let sel = &pdb["spec"]["selector"];
        let pods: Vec<&Value> = world
            .pods
            .iter()
            .filter(|p| {
                namespace(p) == namespace(pdb)
                    && !sel.is_null()
                    && selector_matches(sel, &p["metadata"]["labels"])
            })
            .collect();
        // Evictions in flight: the Pod is not gone yet but already counted down.
        let mut disrupted = serde_json::Map::new();
        for (pod, at) in pdb["status"]["disruptedPods"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let live = pods.iter().any(|p| name(p) == pod && !w::terminating(p));
            let fresh = at
                .as_str()
                .and_then(parse_rfc3339)
                .is_some_and(|t| (now - t).whole_seconds() < 120);
            if live && fresh {
                disrupted.insert(pod.clone(), at.clone());
            }
        }
        let expected = expected_pods(world, pdb, &pods);
        let healthy = pods
            .iter()
            .filter(|p| !w::terminating(p) && pod_ready(p) && !disrupted.contains_key(name(p)))
            .count() as i64;
        let desired = match (&pdb["spec"]["minAvailable"], &pdb["spec"]["maxUnavailable"]) {
            (m, _) if !m.is_null() => int_or_percent(m, expected, true),
            (_, m) if !m.is_null() => (expected - int_or_percent(m, expected, true)).max(0),
            _ => 0,
        };
        let allowed = if expected <= 0 {
            0
        } else {
            (healthy - desired).max(0)
        };
        let cond = if allowed > 0 {
            ("DisruptionAllowed", "True", "SufficientPods", String::new())
        } else {
            (
                "DisruptionAllowed",
                "False",
                "InsufficientPods",
                String::new(),
            )
        };
        let mut st = json!({"currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed, "expectedPods": expected,
            "observedGeneration": pdb["metadata"]["generation"], "conditions": conditions(&pdb["status"]["conditions"], &[cond])});
        if !disrupted.is_empty() {
            st["disruptedPods"] = Value::Object(disrupted);
        }
        if st != pdb["status"] {
            let mut obj = pdb.clone();
            obj["status"] = st;
            out.push(Action::Replace {
                path: format!("{}/status", item("policy/v1", pdb, "poddisruptionbudgets")),
                obj,
            });
        }
    }
    out
}

/// Background cascading deletion: Pods and ReplicaSets whose controller owner is gone.
pub fn garbage(world: &World) -> Vec<Action> {
    let owners: BTreeSet<&str> = [
        &world.replicasets,
        &world.deployments,
        &world.daemonsets,
        &world.statefulsets,
        &world.jobs,
    ]
    .iter()
    .flat_map(|l| l.iter().map(uid))
    .collect();
    let known = [
        "ReplicaSet",
        "Deployment",
        "DaemonSet",
        "StatefulSet",
        "Job",
    ];
    let orphaned = |o: &Value| {
        let refs: Vec<&Value> = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        !refs.is_empty()
            && refs.iter().all(|r| {
                known.contains(&r["kind"].as_str().unwrap_or(""))
                    && !owners.contains(r["uid"].as_str().unwrap_or(""))
            })
    };
    let pods = world
        .pods
        .iter()
        .filter(|p| orphaned(p) && !w::terminating(p))
        .map(|p| Action::Delete {
            path: item("v1", p, "pods"),
        });
    let rss = world
        .replicasets
        .iter()
        .filter(|r| orphaned(r))
        .map(|r| Action::Delete {
            path: item("apps/v1", r, "replicasets"),
        });
    pods.chain(rss).collect()
}

#[cfg(test)]
mod tests;
