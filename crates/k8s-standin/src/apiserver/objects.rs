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

fn age(obj: &Value) -> String {
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

/// A meta.k8s.io/v1 Table of `items` (kubectl get's default output).
pub fn table(kind: &str, items: &[Value], resource_version: &str) -> Value {
    let col = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0});
    let columns = match kind {
        "Node" => vec![
            col("Name", "string", "name"),
            col("Status", "string", ""),
            col("Roles", "string", ""),
            col("Age", "string", ""),
            col("Version", "string", ""),
        ],
        "Pod" => vec![
            col("Name", "string", "name"),
            col("Ready", "string", ""),
            col("Status", "string", ""),
            col("Restarts", "string", ""),
            col("Age", "string", ""),
        ],
        _ => vec![col("Name", "string", "name"), col("Age", "date", "")],
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let name = o.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            let cells = match kind {
                "Node" => {
                    let mut roles: Vec<String> = o
                        .pointer("/metadata/labels")
                        .and_then(Value::as_object)
                        .map(|l| l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(String::from)).collect())
                        .unwrap_or_default();
                    roles.sort();
                    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
                    let version = o.pointer("/status/nodeInfo/kubeletVersion").cloned().unwrap_or(json!(""));
                    json!([name, node_status(o), roles, age(o), version])
                }
                "Pod" => {
                    let phase = o.pointer("/status/phase").cloned().unwrap_or(json!("Pending"));
                    let statuses = o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
                    let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
                    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
                    json!([name, format!("{ready}/{total}"), phase, 0, age(o)])
                }
                _ => json!([name, age(o)]),
            };
            let mut meta = o["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version}, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests;
