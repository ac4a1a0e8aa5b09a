//! Pure object logic: patches, server-side apply, selectors, tables, defaults.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// A random RFC 4122 v4 UID.
pub fn new_uid() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of the lists a strategic merge patch merges element-wise
/// (patchMergeKey in the core types); other lists are replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        "conditions" => Some("type"),
        _ => None,
    }
}

/// Strategic merge patch as kubectl sends it (cordon, set image, rollout
/// restart): merge-keyed lists merge by key, `$patch: delete|replace` are
/// honoured, ordering directives (`$setElementOrder/...`, `$retainKeys`) dropped.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = p.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v, t.get_mut(k)) {
            (Some(mk), Value::Array(items), Some(Value::Array(cur)))
                if items.iter().all(|i| i.get(mk).is_some()) =>
            {
                for item in items {
                    let pos = cur.iter().position(|c| c.get(mk) == item.get(mk));
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            cur.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic_merge(&mut cur[i], item),
                        (None, false) => {
                            let mut n = Value::Object(Map::new());
                            strategic_merge(&mut n, item);
                            cur.push(n);
                        }
                    }
                }
            }
            _ if v.is_object() => strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn default(v: &mut Value, key: &str, d: Value) {
    if v.get(key).is_none_or(Value::is_null) {
        v[key] = d;
    }
}

/// The core/v1 PodSpec defaults (SetDefaults_PodSpec and friends).
fn pod_spec_defaults(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        let latest = c["image"].as_str().is_some_and(|i| {
            !i.rsplit('/').next().unwrap_or("").contains(':') || i.ends_with(":latest")
        });
        default(
            c,
            "imagePullPolicy",
            json!(if latest { "Always" } else { "IfNotPresent" }),
        );
        default(c, "terminationMessagePath", json!("/dev/termination-log"));
        default(c, "terminationMessagePolicy", json!("File"));
        default(c, "resources", json!({}));
    }
}

/// A strategy defaulting to RollingUpdate, with its rollingUpdate defaults.
fn rolling_defaults(strategy: &mut Value, fields: &[(&str, Value)]) {
    if !strategy.is_object() {
        *strategy = json!({});
    }
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = &mut strategy["rollingUpdate"];
        if !ru.is_object() {
            *ru = json!({});
        }
        for (k, v) in fields {
            default(ru, k, v.clone());
        }
    }
}

/// Scheme defaults applied on every write, as the real apiserver decodes
/// objects: workloads' strategies and replicas, Pod spec defaults.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => pod_spec_defaults(&mut obj["spec"]),
        ("apps", "Deployment") => {
            default(&mut obj["spec"], "replicas", json!(1));
            default(&mut obj["spec"], "revisionHistoryLimit", json!(10));
            default(&mut obj["spec"], "progressDeadlineSeconds", json!(600));
            rolling_defaults(
                &mut obj["spec"]["strategy"],
                &[("maxSurge", json!("25%")), ("maxUnavailable", json!("25%"))],
            );
            pod_spec_defaults(&mut obj["spec"]["template"]["spec"]);
        }
        ("apps", "DaemonSet") => {
            default(&mut obj["spec"], "revisionHistoryLimit", json!(10));
            rolling_defaults(
                &mut obj["spec"]["updateStrategy"],
                &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
            );
            pod_spec_defaults(&mut obj["spec"]["template"]["spec"]);
        }
        ("apps", "ReplicaSet" | "StatefulSet") => {
            default(&mut obj["spec"], "replicas", json!(1));
            pod_spec_defaults(&mut obj["spec"]["template"]["spec"]);
        }
        _ => {}
    }
}

/// Admission on Pod create: DefaultTolerationSeconds (tolerate not-ready and
/// unreachable for 300 s) and Priority (from the system priority classes).
pub fn admit_pod(pod: &mut Value) {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return;
    }
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut added = tolerations.clone();
    for key in [crate::workload::NOT_READY, crate::workload::UNREACHABLE] {
        let covered = tolerations.iter().any(|t| {
            (t["key"] == key
                || (t["key"].as_str().unwrap_or("").is_empty() && t["operator"] == "Exists"))
                && (t["effect"] == "NoExecute" || t["effect"].as_str().unwrap_or("").is_empty())
        });
        if !covered {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = Value::Array(added);
    let priority = match spec["priorityClassName"].as_str() {
        Some("system-node-critical") => 2000001000,
        Some("system-cluster-critical") => 2000000000,
        _ => 0,
    };
    default(spec, "priority", json!(priority));
}

fn pointer_parts(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// RFC 6902 JSON patch (add, remove, replace, test, copy, move).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("json patch must be an array")? {
        let kind = op["op"].as_str().unwrap_or("");
        let path = op["path"].as_str().ok_or("missing path")?;
        match kind {
            "add" | "replace" => set_pointer(target, path, op["value"].clone(), kind == "add")?,
            "remove" => {
                remove_pointer(target, path)?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "copy" | "move" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("missing value at {from}"))?;
                if kind == "move" {
                    remove_pointer(target, from)?;
                }
                set_pointer(target, path, v, true)?;
            }
            other => return Err(format!("unexpected kind: {other}")),
        }
    }
    Ok(())
}

fn set_pointer(target: &mut Value, path: &str, value: Value, add: bool) -> Result<(), String> {
    let parts = pointer_parts(path);
    let Some((last, parents)) = parts.split_last() else {
        *target = value;
        return Ok(());
    };
    let mut cur = target;
    for p in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: \"{path}\": missing value"))?;
    }
    match cur {
        Value::Object(m) => {
            if !add && !m.contains_key(last) {
                return Err(format!("doc is missing key: {path}: missing value"));
            }
            m.insert(last.clone(), value);
        }
        Value::Array(a) if last == "-" => a.push(value),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("invalid index {last}"))?;
            if add && i <= a.len() {
                a.insert(i, value);
            } else if !add && i < a.len() {
                a[i] = value;
            } else {
                return Err(format!("index out of bounds: {path}"));
            }
        }
        _ => return Err(format!("doc is missing path: \"{path}\"")),
    }
    Ok(())
}

fn remove_pointer(target: &mut Value, path: &str) -> Result<Value, String> {
    let parts = pointer_parts(path);
    let (last, parents) = parts.split_last().ok_or("cannot remove root")?;
    let parent = format!("/{}", parents.join("/"));
    let cur = if parents.is_empty() {
        Some(target)
    } else {
        target.pointer_mut(&parent)
    };
    match cur {
        Some(Value::Object(m)) => m.remove(last),
        Some(Value::Array(a)) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    }
    .ok_or_else(|| format!("doc is missing path: \"{path}\": missing value"))
}

/// Metadata fields the server owns: never part of a manager's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];

/// A manager's field set in FieldsV1 shape: objects recurse, other values
/// (scalars and lists, which the stand-in treats as atomic) are leaves.
pub fn fields_of(v: &Value, top: bool) -> Value {
    let Value::Object(m) = v else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, val) in m {
        if top && (k == "apiVersion" || k == "kind") {
            continue;
        }
        let child = if top && k == "metadata" {
            let mut meta = val.clone();
            if let Some(mm) = meta.as_object_mut() {
                for f in SERVER_METADATA {
                    mm.remove(*f);
                }
            }
            fields_of(&meta, false)
        } else if val.is_object() {
            fields_of(val, false)
        } else {
            json!({})
        };
        out.insert(format!("f:{k}"), child);
    }
    Value::Object(out)
}

/// Removes from `live` the leaves of `old` that are not in `new` (fields a
/// manager stopped applying).
fn prune_dropped(live: &mut Value, old: &Value, new: &Value) {
    let (Some(l), Some(o)) = (live.as_object_mut(), old.as_object()) else {
        return;
    };
    for (fk, ov) in o {
        let Some(k) = fk.strip_prefix("f:") else {
            continue;
        };
        match new.get(fk) {
            None => {
                l.remove(k);
            }
            Some(nv) => {
                if let Some(child) = l.get_mut(k) {
                    prune_dropped(child, ov, nv);
                }
            }
        }
    }
}

/// Deep merge: objects recurse, everything else is replaced.
fn deep_merge(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                match l.get_mut(k) {
                    Some(lv) if lv.is_object() && v.is_object() => deep_merge(lv, v),
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Server-side apply by `manager`: fields it applies are set, fields it applied
/// before and no longer does are removed, others' fields stay.
pub fn server_side_apply(existing: Option<&Value>, applied: &Value, manager: &str) -> Value {
    let mut live = existing.cloned().unwrap_or_else(|| json!({}));
    let mut managed: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_fields = fields_of(applied, true);
    let pos = managed
        .iter()
        .position(|m| m["manager"] == manager && m["operation"] == "Apply");
    if let Some(i) = pos {
        prune_dropped(&mut live, &managed[i]["fieldsV1"], &new_fields);
        managed.remove(i);
    }
    deep_merge(&mut live, applied);
    managed.push(json!({
        "manager": manager, "operation": "Apply", "apiVersion": applied["apiVersion"],
        "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": new_fields,
    }));
    live["metadata"]["managedFields"] = Value::Array(managed);
    live
}

/// A parsed label selector requirement.
#[derive(Debug, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (vec![], String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_selector(s: &str) -> Result<Vec<Req>, String> {
    let set = |v: &str| -> Vec<String> {
        v.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|x| x.trim().to_string())
            .collect()
    };
    split_top(s)
        .into_iter()
        .map(|r| {
            if let Some((k, v)) = r.split_once(" notin ") {
                Ok(Req::NotIn(k.trim().into(), set(v)))
            } else if let Some((k, v)) = r.split_once(" in ") {
                Ok(Req::In(k.trim().into(), set(v)))
            } else if let Some((k, v)) = r.split_once("!=") {
                Ok(Req::Ne(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
                Ok(Req::Eq(k.trim().into(), v.trim().into()))
            } else if let Some(k) = r.strip_prefix('!') {
                Ok(Req::NotExists(k.trim().into()))
            } else if r.contains(' ') {
                Err(format!("unable to parse requirement: {r}"))
            } else {
                Ok(Req::Exists(r))
            }
        })
        .collect()
}

/// Matches a labelSelector (or fieldSelector, with `get` resolving fields).
pub fn selector_matches(
    selector: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, String> {
    for r in parse_selector(selector)? {
        let ok = match &r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => !get(k).is_some_and(|x| vs.contains(&x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn label_getter(obj: &Value) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| {
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(String::from)
    }
}

pub fn field_getter(obj: &Value) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| {
        let p = format!("/{}", k.replace('.', "/"));
        match obj.pointer(&p) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// apimachinery's duration.HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

pub fn age(obj: &Value) -> String {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .map(|t| human_duration((OffsetDateTime::now_utc() - t).whole_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

/// "Ready", "NotReady", "Unknown", plus ",SchedulingDisabled" when cordoned.
pub fn node_status(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        // kubectl's printer: only True is Ready; False and Unknown are NotReady.
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    }
}

#[cfg(test)]
mod tests;
