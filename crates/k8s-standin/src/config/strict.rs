//! Strict decoding: which keys of the input a typed decode did not consume.
//!
//! kubeadm decodes with the apimachinery strict serializer, which names every
//! unknown field by its JSON path (`nodeRegistration.foo`, `bootstrapTokens[0].bar`).

use serde_json::Value;

/// Paths of keys present in `input` but absent from `roundtrip` (the typed
/// value re-serialized with every known field present).
pub fn unknown_fields(input: &Value, roundtrip: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, roundtrip, "", &mut out);
    out
}

fn walk(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => walk(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                walk(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Removes a dotted path (objects only) from `v`: used to hide fields that
/// exist in the union of versions but not in the version being decoded.
pub fn prune(v: &mut Value, path: &str) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = cur else { return };
        if i + 1 == parts.len() {
            map.remove(*part);
            return;
        }
        match map.get_mut(*part) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

/// The message kubeadm logs for unknown fields (a warning for init/join,
/// an error for `kubeadm config validate`).
pub fn strict_message(api_version: &str, kind: &str, unknown: &[String]) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    format!(
        "error unmarshaling configuration schema.GroupVersionKind{{Group:\"{group}\", Version:\"{version}\", Kind:\"{kind}\"}}: strict decoding error: {}",
        fields.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_nested_and_array_paths() {
        let input = json!({"a": 1, "b": {"c": 1, "x": 2}, "l": [{"n": 1, "y": 3}], "z": 0});
        let known = json!({"a": 1, "b": {"c": 1}, "l": [{"n": 1}]});
        assert_eq!(unknown_fields(&input, &known), vec!["b.x", "l[0].y", "z"]);
    }

    #[test]
    fn prune_removes_nested_key() {
        let mut v = json!({"a": {"b": 1, "c": 2}});
        prune(&mut v, "a.b");
        assert_eq!(v, json!({"a": {"c": 2}}));
        prune(&mut v, "x.y");
        assert_eq!(v, json!({"a": {"c": 2}}));
    }

    #[test]
    fn message_matches_kubeadm() {
        let m = strict_message(
            "kubeadm.k8s.io/v1beta4",
            "InitConfiguration",
            &["foo".into()],
        );
        assert_eq!(
            m,
            "error unmarshaling configuration schema.GroupVersionKind{Group:\"kubeadm.k8s.io\", Version:\"v1beta4\", Kind:\"InitConfiguration\"}: strict decoding error: unknown field \"foo\""
        );
    }
}
