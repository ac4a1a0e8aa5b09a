//! Guards that keep the hostile-spec corpus (`tests/hostile/`) complete.
//!
//! The string fields are read off the raw document model itself: `complete.yml` is
//! parsed into [`raw::Document`] and serialised back, so every field of every struct
//! shows up, as `null` (or an empty list) when the file does not set it. A new field
//! therefore fails [`complete_yml_sets_every_field`] until it is set there, then
//! [`every_string_field_has_a_hostile_case`] until the corpus has a case for it, and
//! [`every_string_field_refuses_every_hostile_value`] if validation lets a hostile
//! value through.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{load_str, raw, PathContext};

/// Fields that are maps from a user-chosen key: both key and value are strings.
const MAPS: [&str; 1] = ["spec.hosts[].labels"];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn complete_yml() -> String {
    std::fs::read_to_string(corpus_dir().join("complete.yml")).unwrap()
}

/// The raw document as JSON: structs with every field present.
fn complete_model() -> Value {
    let doc: raw::Document = serde_saphyr::from_str(&complete_yml()).unwrap();
    serde_json::to_value(&doc).unwrap()
}

/// Paths of the raw model: string-valued fields (`spec.hosts[].name`,
/// `spec.hosts[].labels{}` for a map's keys, `spec.hosts[].labels.*` for its values),
/// and fields set and unset (in a list, a field counts as set when one item sets it).
#[derive(Default)]
struct Fields {
    strings: BTreeSet<String>,
    set: BTreeSet<String>,
    unset: BTreeSet<String>,
}

impl Fields {
    fn of(v: &Value) -> Self {
        let mut fields = Self::default();
        walk(v, "", &mut fields);
        fields
    }

    fn unset(&self) -> Vec<&String> {
        self.unset.difference(&self.set).collect()
    }
}

fn walk(v: &Value, path: &str, out: &mut Fields) {
    let join = |field: &str| match path {
        "" => field.to_string(),
        p => format!("{p}.{field}"),
    };
    let empty = match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    };
    if empty {
        out.unset.insert(path.to_string());
        return;
    }
    out.set.insert(path.to_string());
    match v {
        Value::String(_) => {
            out.strings.insert(path.to_string());
        }
        Value::Array(items) => {
            for item in items {
                walk(item, &format!("{path}[]"), out);
            }
        }
        Value::Object(fields) if MAPS.contains(&path) => {
            out.strings.insert(format!("{path}{{}}"));
            for value in fields.values() {
                walk(value, &format!("{path}.*"), out);
            }
        }
        Value::Object(fields) => {
            for (name, value) in fields {
                walk(value, &join(name), out);
            }
        }
        _ => {}
    }
}

fn string_fields() -> BTreeSet<String> {
    Fields::of(&complete_model()).strings
}

#[test]
fn complete_yml_sets_every_field() {
    let fields = Fields::of(&complete_model());
    let unset = fields.unset();
    assert!(
        unset.is_empty(),
        "tests/hostile/complete.yml must set every field of the spec; unset: {unset:?}"
    );
    assert!(string_fields().len() >= 40, "{:?}", string_fields());
}

#[test]
fn every_string_field_has_a_hostile_case() {
    let mut covered = BTreeSet::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let field = text
            .lines()
            .find_map(|l| l.strip_prefix("# field: "))
            .unwrap_or_else(|| panic!("{} has no `# field: PATH` header", path.display()));
        covered.insert(field.trim().to_string());
    }
    let fields = string_fields();
    let missing: Vec<_> = fields.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&fields).collect();
    assert!(
        missing.is_empty(),
        "string fields without a case in tests/hostile/: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "cases for fields the spec no longer has: {stale:?}"
    );
}

/// Turns a valid value into a hostile one.
type Edit = dyn Fn(&str) -> String;

/// Replaces the first value at `path` (as [`walk`] names it) with `f(old)`.
fn mutate(v: &mut Value, path: &[&str], f: &Edit) -> bool {
    let Some((head, rest)) = path.split_first() else {
        return match v {
            Value::String(s) => {
                *s = f(s);
                true
            }
            _ => false,
        };
    };
    let (name, key_of_map) = match head.strip_suffix("{}") {
        Some(name) => (name, true),
        None => (*head, false),
    };
    let (name, each) = match name.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (name, false),
    };
    let Some(child) = v.get_mut(name) else {
        return false;
    };
    if key_of_map {
        let Value::Object(map) = child else {
            return false;
        };
        let Some(key) = map.keys().next().cloned() else {
            return false;
        };
        let value = map.remove(&key).unwrap();
        map.insert(f(&key), value);
        return true;
    }
    match (each, child) {
        (true, Value::Array(items)) => items.iter_mut().any(|item| {
            if rest.is_empty() {
                mutate(item, &[], f)
            } else {
                mutate(item, rest, f)
            }
        }),
        (false, Value::Object(map)) if rest.first() == Some(&"*") => {
            map.values_mut().any(|item| mutate(item, &rest[1..], f))
        }
        (false, child) => mutate(child, rest, f),
        _ => false,
    }
}

#[test]
fn every_string_field_refuses_every_hostile_value() {
    let hostile: [(&str, &Edit); 10] = [
        ("newline", &|v| format!("{v}\nProxyCommand sh -c id")),
        ("NUL", &|v| format!("{v}\0")),
        ("escape", &|v| format!("{v}\u{1b}[2J")),
        ("placeholder", &|v| {
            format!("{v}${{KUBEHA_BOOTSTRAP_TOKEN}}")
        }),
        ("substitution", &|v| format!("{v}$(touch /tmp/pwned)")),
        ("backtick", &|v| format!("{v}`id`")),
        ("double quote", &|v| format!("{v}\"")),
        ("leading dash", &|v| format!("-{v}")),
        ("over-long", &|v| format!("{v}{}", "a".repeat(5000))),
        ("bidi override", &|v| format!("{v}\u{202e}")),
    ];
    let base = complete_model();
    let paths = PathContext {
        spec_dir: corpus_dir(),
        home: None,
    };
    let mut failures = Vec::new();
    for field in string_fields() {
        let segments: Vec<&str> = field.split('.').collect();
        for (what, f) in &hostile {
            let mut doc = base.clone();
            assert!(mutate(&mut doc, &segments, *f), "cannot reach {field}");
            let yaml = serde_saphyr::to_string(&doc).unwrap();
            match load_str(Path::new("mutated.yaml"), yaml, &paths) {
                Ok(_) => failures.push(format!("{field}: accepted a {what}")),
                Err(report) if report.diagnostics.iter().all(|d| d.position.is_none()) => {
                    failures.push(format!("{field}: {what} refused without a location"))
                }
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
