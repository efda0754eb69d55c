//! The three patch flavours the Kubernetes API accepts, applied to plain
//! JSON: JSON merge patch (RFC 7386), strategic merge patch for the fields
//! that laojun and kubectl touch, and JSON patch (RFC 6902).
//!
//! The real server knows every field's merge strategy from the Go types; this
//! fake knows only the list merge keys in [`merge_key`], which covers pod
//! templates and services. Any other list is replaced, as a merge patch would.

use serde_json::{Map, Value};

/// Which patch a request's Content-Type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    /// The patch type named by a Content-Type header, parameters ignored.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            _ => None,
        }
    }
}

/// Applies `patch` to `target`; the error says why the patch is unusable.
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, String> {
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".into());
            }
            Ok(merge_patch(target, patch))
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err("a strategic merge patch must be a JSON object".into());
            }
            strategic_merge(target, patch, "")
        }
        PatchType::Json => json_patch(target, patch),
    }
}

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch_map {
        if value.is_null() {
            out.remove(key);
        } else {
            let merged = merge_patch(out.get(key).unwrap_or(&Value::Null), value);
            out.insert(key.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The key that identifies entries of a list under `path` (a dotted path of
/// field names), for the lists whose strategy in Kubernetes is "merge".
fn merge_key(path: &str) -> Option<&'static str> {
    let field = path.rsplit('.').next().unwrap_or(path);
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => {
            Some("name")
        }
        "ownerReferences" => Some("uid"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        // Container ports merge on containerPort, Service ports on port.
        "ports" if path.contains("containers") => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// A strategic merge patch: a merge patch whose lists with a merge key merge
/// entry by entry, honouring the `$patch` directives kubectl can emit.
fn strategic_merge(target: &Value, patch: &Value, path: &str) -> Result<Value, String> {
    let Value::Object(patch_map) = patch else {
        return Ok(patch.clone());
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        return Ok(Value::Object(replaced));
    }
    let mut out = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch_map {
        // Ordering and retain-keys hints only matter to the real server's
        // bookkeeping; the resulting content is the same without them.
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let current = out.get(key).cloned().unwrap_or(Value::Null);
        let merged = match value {
            Value::Null => {
                out.remove(key);
                continue;
            }
            Value::Object(_) => strategic_merge(&current, value, &child_path)?,
            Value::Array(items) => match merge_key(&child_path) {
                Some(merge_on) => merge_list(&current, items, merge_on, &child_path)?,
                None => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    Ok(Value::Object(out))
}

/// Merges patch entries into a list by `merge_on`: a matching entry is
/// patched (or deleted with `$patch: delete`), a new one is appended.
fn merge_list(current: &Value, patch: &[Value], merge_on: &str, path: &str) -> Result<Value, String> {
    let mut out: Vec<Value> = current.as_array().cloned().unwrap_or_default();
    for entry in patch {
        let Some(key) = entry.get(merge_on) else {
            return Err(format!("{path}: list entry has no merge key {merge_on:?}"));
        };
        let position = out.iter().position(|e| e.get(merge_on) == Some(key));
        let delete = entry.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic_merge(&out[i], entry, path)?,
            (None, false) => out.push(strategic_merge(&Value::Null, entry, path)?),
        }
    }
    Ok(Value::Array(out))
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy and test.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let Some(ops) = patch.as_array() else {
        return Err("a JSON patch must be an array of operations".into());
    };
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut doc, op).map_err(|e| format!("operation {i}: {e}"))?;
    }
    Ok(doc)
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let name = op.get("op").and_then(Value::as_str).ok_or("missing \"op\"")?;
    let path = op.get("path").and_then(Value::as_str).ok_or("missing \"path\"")?;
    let value = || op.get("value").cloned().ok_or("missing \"value\"");
    let from = || op.get("from").and_then(Value::as_str).ok_or("missing \"from\"");
    match name {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(|_| ()),
        "replace" => {
            let slot = pointer_mut(doc, path)?;
            *slot = value()?;
            Ok(())
        }
        "move" => {
            let moved = remove(doc, from()?)?;
            add(doc, path, moved)
        }
        "copy" => {
            let copied = pointer_mut(doc, from()?)?.clone();
            add(doc, path, copied)
        }
        "test" => {
            if *pointer_mut(doc, path)? == value()? {
                Ok(())
            } else {
                Err(format!("test failed at {path}"))
            }
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

/// Splits a JSON pointer into unescaped tokens (`~1` is `/`, `~0` is `~`).
fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} does not start with /"));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn pointer_mut<'a>(doc: &'a mut Value, path: &str) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for token in tokens(path)? {
        cur = child_mut(cur, &token).ok_or_else(|| format!("path {path:?} does not exist"))?;
    }
    Ok(cur)
}

fn child_mut<'a>(value: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    }
}

/// The parent container of `path` and the last token.
fn parent_mut<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut toks = tokens(path)?;
    let Some(last) = toks.pop() else {
        return Err("the whole document cannot be the target".into());
    };
    let mut cur = doc;
    for token in &toks {
        cur = child_mut(cur, token).ok_or_else(|| format!("path {path:?} does not exist"))?;
    }
    Ok((cur, last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>().map_err(|_| format!("bad index {last:?}"))?
            };
            if index > items.len() {
                return Err(format!("index {index} is out of range"));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("path {path:?} does not name a container")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = parent_mut(doc, path)?;
    let removed = match parent {
        Value::Object(map) => map.remove(&last),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => Some(items.remove(i)),
            _ => None,
        },
        _ => None,
    };
    removed.ok_or_else(|| format!("path {path:?} does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_null_deletes_a_key() {
        let out = merge_patch(&json!({"a": 1, "b": 2}), &json!({"a": null, "c": 3}));
        assert_eq!(out, json!({"b": 2, "c": 3}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let target = json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]});
        let patch = json!({"containers": [{"name": "b", "image": "z"}]});
        let out = strategic_merge(&target, &patch, "spec.template.spec").unwrap();
        assert_eq!(out["containers"][0]["image"], "x");
        assert_eq!(out["containers"][1]["image"], "z");
    }

    #[test]
    fn json_patch_unescapes_tilde_one_in_paths() {
        let target = json!({"metadata": {"annotations": {"a/b": "1"}}});
        let patch = json!([{"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"}]);
        let out = json_patch(&target, &patch).unwrap();
        assert_eq!(out["metadata"]["annotations"]["a/b"], "2");
    }

    #[test]
    fn json_patch_test_failure_is_an_error() {
        let patch = json!([{"op": "test", "path": "/a", "value": 2}]);
        assert!(json_patch(&json!({"a": 1}), &patch).is_err());
    }
}
