//! The JSON Schema of every command's `--json` output (docs/json-schema.json)
//! and the small validator of it: the keywords that file uses, nothing more.

use super::{stderr, stdout};
use serde_json::Value;
use std::path::Path;

pub fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("docs/json-schema.json is JSON")
}

/// The schema keywords docs/json-schema.json may use; anything else is
/// refused, so the validator never silently ignores a rule.
const KEYWORDS: [&str; 10] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "$ref",
    "description",
    "title",
];

/// Check `v` against `node`; push one line per problem. `def` is the
/// definition the node belongs to (for the "document it here" message).
pub fn check(root: &Value, node: &Value, def: &str, v: &Value, at: &str, errors: &mut Vec<String>) {
    let obj = node.as_object().expect("a schema node is an object");
    for k in obj.keys() {
        assert!(
            KEYWORDS.contains(&k.as_str()),
            "docs/json-schema.json: keyword {k} is not one the test knows"
        );
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("refs are #/$defs/NAME");
        let target = &root["$defs"][name];
        assert!(target.is_object(), "docs/json-schema.json: {r} names no definition");
        return check(root, target, name, v, at, errors);
    }
    if let Some(t) = obj.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("type is a string or a list"),
        };
        let is = |t: &str| match t {
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => panic!("unknown type {t}"),
        };
        if !types.iter().any(|t| is(t)) {
            errors.push(format!("{at}: {v} is not of type {types:?} (see $defs.{def})"));
            return;
        }
    }
    if let Some(e) = obj.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errors.push(format!("{at}: {v} is not one of {e:?} (see $defs.{def})"));
        }
    }
    if let (Some(min), Some(n)) = (obj.get("minimum").and_then(Value::as_i64), v.as_i64()) {
        if n < min {
            errors.push(format!("{at}: {n} is below {min}"));
        }
    }
    if let (Some(items), Some(a)) = (obj.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(root, items, def, x, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(map) = v.as_object() {
        let props = obj.get("properties").and_then(Value::as_object);
        if let Some(props) = props {
            assert_eq!(
                obj.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "$defs.{def} lists all its keys"
            );
            for (k, x) in map {
                match props.get(k) {
                    Some(p) => check(root, p, def, x, &format!("{at}.{k}"), errors),
                    None => errors.push(format!(
                        "{at}.{k}: key {k:?} is not documented: add it to docs/json-schema.json \
                         ($defs.{def}.properties) and to the `{def}` table in docs/json.md"
                    )),
                }
            }
        }
        for r in obj.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !map.contains_key(r) {
                errors.push(format!("{at}: required key {r:?} is missing (see $defs.{def})"));
            }
        }
    }
}

/// Parse a command's stdout as one JSON document and check it against
/// `$defs.<def>`; returns it.
pub fn conforms(o: &std::process::Output, def: &str) -> Value {
    let text = stdout(o);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "`{def}` output is not one JSON document ({e}):\n{text}\nstderr:\n{}",
            stderr(o)
        )
    });
    let root = schema();
    let node = &root["$defs"][def];
    assert!(node.is_object(), "docs/json-schema.json has no $defs.{def}");
    let mut errors = Vec::new();
    check(&root, node, def, &v, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "`{def}` output does not match the schema:\n{}\n{v:#}",
        errors.join("\n")
    );
    // Nothing but the document, and only printable characters in it.
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    v
}
