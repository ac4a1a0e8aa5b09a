//! Pure Pod/Node logic shared by the apiserver (eviction), the scheduler, the
//! controllers and the kubelet: label selectors, taints and tolerations,
//! readiness, resource quantities, owner references.

use serde_json::{json, Value};

/// The taints the node lifecycle controller and the kubelet use.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

pub fn name(v: &Value) -> &str {
    s(v, "/metadata/name")
}
pub fn namespace(v: &Value) -> &str {
    s(v, "/metadata/namespace")
}
pub fn uid(v: &Value) -> &str {
    s(v, "/metadata/uid")
}

/// A metav1.LabelSelector (matchLabels + matchExpressions) against labels.
/// An empty selector matches everything, as for PodDisruptionBudgets.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_exprs = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| requirement(e, label(e["key"].as_str().unwrap_or(""))));
    by_labels && by_exprs
}

/// One matchExpressions/nodeSelectorTerm requirement against a value.
fn requirement(e: &Value, val: Option<&str>) -> bool {
    let values: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match e["operator"].as_str().unwrap_or("") {
        "In" => val.is_some_and(|v| values.contains(&v)),
        "NotIn" => !val.is_some_and(|v| values.contains(&v)),
        "Exists" => val.is_some(),
        "DoesNotExist" => val.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), Some(w)) = (
                val.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|w| w.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" {
                v > w
            } else {
                v < w
            }
        }
        _ => false,
    }
}

/// Whether a Pod spec may run on a node by nodeSelector and required node
/// affinity (matchExpressions on labels, matchFields on metadata.name).
pub fn node_matches(pod_spec: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let by_selector = pod_spec["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).and_then(Value::as_str) == v.as_str());
    let Some(terms) = pod_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return by_selector;
    };
    // Terms are ORed, requirements within a term ANDed.
    by_selector
        && terms.iter().any(|t| {
            let exprs = t["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| {
                    requirement(
                        e,
                        labels
                            .get(e["key"].as_str().unwrap_or(""))
                            .and_then(Value::as_str),
                    )
                });
            let fields = t["matchFields"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| e["key"] == "metadata.name" && requirement(e, Some(name(node))));
            exprs && fields
        })
}

/// Whether one toleration tolerates one taint (core/v1 Toleration.ToleratesTaint).
pub fn tolerates(t: &Value, taint: &Value) -> bool {
    let effect = t["effect"].as_str().unwrap_or("");
    if !effect.is_empty() && effect != taint["effect"].as_str().unwrap_or("") {
        return false;
    }
    let key = t["key"].as_str().unwrap_or("");
    if !key.is_empty() && key != taint["key"].as_str().unwrap_or("") {
        return false;
    }
    match t["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        _ => t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or(""),
    }
}

/// The node's taints with one of `effects` that no toleration in `pod_spec` tolerates.
pub fn untolerated<'a>(pod_spec: &Value, node: &'a Value, effects: &[&str]) -> Vec<&'a Value> {
    let tolerations = pod_spec["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|taint| effects.contains(&taint["effect"].as_str().unwrap_or("")))
        .filter(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
        .collect()
}

/// A Pod condition's status ("True", "False", "Unknown", or "" when absent).
pub fn condition<'a>(obj: &'a Value, ty: &str) -> &'a str {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == ty))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
}

pub fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready") == "True"
}

pub fn terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

/// Neither finished nor being deleted: what controllers count.
pub fn pod_active(pod: &Value) -> bool {
    !terminating(pod) && !matches!(s(pod, "/status/phase"), "Succeeded" | "Failed")
}

pub fn node_ready(node: &Value) -> bool {
    condition(node, "Ready") == "True"
}

/// The controller owner reference's uid, if any.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o["controller"] == true)
        .and_then(|o| o["uid"].as_str())
}

/// An ownerReference naming `owner` as the controller, as controllers set it.
pub fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name(owner), "uid": uid(owner),
        "controller": true, "blockOwnerDeletion": true})
}

/// A resource quantity in base units (cores, bytes, counts); None if malformed.
pub fn quantity(q: &Value) -> Option<f64> {
    let text = match q {
        Value::Number(n) => return n.as_f64(),
        Value::String(t) => t.trim(),
        _ => return None,
    };
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(suf, m)| text.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((text, 1.0));
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// The sum of the Pod's containers' requests for `resource` (init containers
/// are ignored: they do not run alongside).
pub fn pod_request(pod_spec: &Value, resource: &str) -> f64 {
    pod_spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer(&format!("/resources/requests/{resource}")))
        .filter_map(quantity)
        .sum()
}

/// A stable short hash of a value (pod-template-hash, controller-revision-hash),
/// spelled with the apimachinery safe alphabet.
pub fn template_hash(v: &Value) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let d = ring::digest::digest(&ring::digest::SHA256, v.to_string().as_bytes());
    let mut n = u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes"));
    (0..10)
        .map(|_| {
            let c = A[(n % A.len() as u64) as usize] as char;
            n /= A.len() as u64;
            c
        })
        .collect()
}

/// intstr (int or "N%") scaled against `total`, rounding up or down.
pub fn int_or_percent(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(p) => match p.strip_suffix('%').and_then(|x| x.parse::<i64>().ok()) {
            Some(pct) if round_up => (pct * total + 99) / 100,
            Some(pct) => pct * total / 100,
            None => p.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_affinity() {
        let labels = json!({"app": "web", "tier": "fe"});
        assert!(selector_matches(
            &json!({"matchLabels": {"app": "web"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"app": "db"}}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}, {"key": "x", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(selector_matches(&json!({}), &labels));
        let node = json!({"metadata": {"name": "w1", "labels": {"kubernetes.io/os": "linux"}}});
        assert!(node_matches(
            &json!({"nodeSelector": {"kubernetes.io/os": "linux"}}),
            &node
        ));
        assert!(!node_matches(
            &json!({"nodeSelector": {"disk": "ssd"}}),
            &node
        ));
        let pinned = |n: &str| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]}}}});
        assert!(node_matches(&pinned("w1"), &node));
        assert!(!node_matches(&pinned("w2"), &node));
    }

    #[test]
    fn taints_and_tolerations() {
        let node = json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}, {"key": "a", "value": "b", "effect": "NoExecute"}]}});
        assert_eq!(
            untolerated(&json!({}), &node, &["NoSchedule", "NoExecute"]).len(),
            2
        );
        let tol = json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]});
        assert_eq!(
            untolerated(&tol, &node, &["NoSchedule", "NoExecute"]).len(),
            1
        );
        assert!(untolerated(
            &json!({"tolerations": [{"operator": "Exists"}]}),
            &node,
            &["NoSchedule", "NoExecute"]
        )
        .is_empty());
        assert!(!tolerates(
            &json!({"key": "a", "value": "c"}),
            &node["spec"]["taints"][1]
        ));
        assert!(tolerates(
            &json!({"key": "a", "operator": "Equal", "value": "b"}),
            &node["spec"]["taints"][1]
        ));
    }

    #[test]
    fn quantities_and_intstr() {
        assert_eq!(quantity(&json!("100m")), Some(0.1));
        assert_eq!(quantity(&json!("70Mi")), Some(70.0 * 1048576.0));
        assert_eq!(quantity(&json!("2")), Some(2.0));
        assert_eq!(quantity(&json!("x")), None);
        let spec = json!({"containers": [{"resources": {"requests": {"cpu": "250m"}}}, {"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(pod_request(&spec, "cpu"), 1.25);
        assert_eq!(int_or_percent(&json!("25%"), 3, true), 1);
        assert_eq!(int_or_percent(&json!("25%"), 3, false), 0);
        assert_eq!(int_or_percent(&json!(2), 3, false), 2);
        assert_eq!(template_hash(&json!({"a": 1})).len(), 10);
        assert_ne!(
            template_hash(&json!({"a": 1})),
            template_hash(&json!({"a": 2}))
        );
    }
}
