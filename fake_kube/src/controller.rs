//! A stand-in for the deployment controller: it keeps each Deployment's
//! ReplicaSets, revision annotations and status the way the real one does,
//! so `kubectl rollout undo|status|history` work against the fake.
//!
//! A ReplicaSet's status counts follow `spec.replicas` only when the
//! rollout "settles", which the caller schedules after the ready delay;
//! its pods (see `pods.rs`) follow its status, so a rollout's new pods
//! appear, and its old ones go, when it settles.

use serde_json::{json, Value};

use super::store::{metadata_mut, now, object_at, Kind, State};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const HASH_LABEL: &str = "pod-template-hash";

/// A rollout that becomes ready once its delay has passed, unless the
/// deployment has moved on to a newer generation by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
}

/// Reconciles a deployment with its ReplicaSets after any change to it.
/// Returns the rollout to settle later, or None when nothing is pending
/// (already settled, or settled at once because the delay is zero).
pub fn sync(state: &mut State, namespace: &str, name: &str) -> Option<Pending> {
    let deployment = state.get(Kind::Deployments, namespace, name)?.clone();
    if deployment["spec"]["paused"] == true {
        state.store(Kind::Deployments, paused(deployment));
        return None;
    }
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let template = &deployment["spec"]["template"];
    let owned = owned_replica_sets(state, &deployment);
    let current = owned
        .iter()
        .position(|rs| same_template(&rs["spec"]["template"], template));
    let max_old = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != current)
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);
    let mut new_rs = match current {
        Some(i) => promote(owned[i].clone(), max_old),
        None => new_replica_set(state, &deployment, max_old + 1),
    };
    new_rs["spec"]["replicas"] = json!(replicas);
    let new_rs = state.store(Kind::ReplicaSets, bump_rs_generation(state, new_rs));
    for (i, rs) in owned.into_iter().enumerate() {
        if Some(i) != current {
            let mut old = rs;
            old["spec"]["replicas"] = json!(0);
            let old = bump_rs_generation(state, old);
            state.store(Kind::ReplicaSets, old);
        }
    }
    let deployment = annotate_revision(deployment, revision(&new_rs));
    let deployment = with_status(state, deployment, &new_rs);
    state.store(Kind::Deployments, deployment.clone());
    let pending = Pending {
        namespace: namespace.to_string(),
        name: name.to_string(),
        generation: deployment["metadata"]["generation"].as_i64().unwrap_or(1),
    };
    if is_complete(&deployment) {
        None
    } else if state.ready_delay.is_zero() {
        settle(state, &pending);
        None
    } else {
        Some(pending)
    }
}

/// Marks every pod of the deployment's ReplicaSets ready, if the
/// deployment is still at the generation the rollout was started for.
pub fn settle(state: &mut State, pending: &Pending) {
    let Some(deployment) = state.get(Kind::Deployments, &pending.namespace, &pending.name) else {
        return;
    };
    if deployment["metadata"]["generation"].as_i64() != Some(pending.generation) {
        return;
    }
    let deployment = deployment.clone();
    let mut new_rs = None;
    for mut rs in owned_replica_sets(state, &deployment) {
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(0);
        let generation = rs["metadata"]["generation"].clone();
        rs["status"] = json!({
            "replicas": want,
            "fullyLabeledReplicas": want,
            "readyReplicas": want,
            "availableReplicas": want,
            "observedGeneration": generation,
        });
        let stored = state.store(Kind::ReplicaSets, rs);
        super::pods::reconcile(state, &stored);
        if same_template(&stored["spec"]["template"], &deployment["spec"]["template"]) {
            new_rs = Some(stored);
        }
    }
    if let Some(new_rs) = new_rs {
        let deployment = with_status(state, deployment, &new_rs);
        state.store(Kind::Deployments, deployment);
    }
}

/// The deployment's ReplicaSets (matched by controller ownerReference),
/// oldest first.
pub fn owned_replica_sets(state: &State, deployment: &Value) -> Vec<Value> {
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or_default();
    let uid = &deployment["metadata"]["uid"];
    let mut owned: Vec<Value> = state
        .list(Kind::ReplicaSets, Some(namespace))
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| &r["uid"] == uid && r["controller"] == true))
        })
        .collect();
    owned.sort_by_key(|rs| {
        (
            rs["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            rs["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0),
        )
    });
    owned
}

pub fn revision(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether two pod templates are the same, ignoring the pod-template-hash
/// label and empty or null fields (the real controller compares decoded Go
/// structs, where those are indistinguishable from absent ones).
pub fn same_template(a: &Value, b: &Value) -> bool {
    normalized_template(a) == normalized_template(b)
}

fn normalized_template(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    drop_empty(&mut t);
    t
}

fn drop_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(drop_empty);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Reusing an old ReplicaSet (a rollback) makes it the newest revision and
/// records the revisions it had before, as the real controller does.
fn promote(mut rs: Value, max_old: i64) -> Value {
    let own = revision(&rs);
    if own > max_old {
        return rs;
    }
    let annotations = object_at(object_at_value(&mut rs, "metadata"), "annotations");
    let history = match annotations.get(REVISION_HISTORY).and_then(Value::as_str) {
        Some(h) if !h.is_empty() && own > 0 => format!("{h},{own}"),
        _ if own > 0 => own.to_string(),
        _ => String::new(),
    };
    if !history.is_empty() {
        annotations.insert(REVISION_HISTORY.into(), json!(history));
    }
    annotations.insert(REVISION.into(), json!((max_old + 1).to_string()));
    rs
}

fn object_at_value<'a>(value: &'a mut Value, field: &str) -> &'a mut Value {
    object_at(value, field);
    &mut value[field]
}

/// A ReplicaSet `<deployment>-<hash>` for the deployment's current template.
fn new_replica_set(state: &mut State, deployment: &Value, revision: i64) -> Value {
    let meta = &deployment["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let namespace = meta["namespace"].as_str().unwrap_or_default();
    let mut template = deployment["spec"]["template"].clone();
    let hash = unused_hash(state, namespace, name, &template);
    object_at(object_at_value(&mut template, "metadata"), "labels").insert(HASH_LABEL.into(), json!(hash));
    let mut selector = deployment["spec"]["selector"].clone();
    object_at(&mut selector, "matchLabels").insert(HASH_LABEL.into(), json!(hash));
    let labels = template["metadata"]["labels"].clone();
    let uid = state.new_uid();
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": namespace,
            "uid": uid,
            "generation": 1,
            "creationTimestamp": now(),
            "labels": labels,
            "annotations": {
                REVISION: revision.to_string(),
                "deployment.kubernetes.io/desired-replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(1).to_string(),
                "deployment.kubernetes.io/max-replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(1).to_string(),
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
                "uid": meta["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "replicas": 0,
            "selector": selector,
            "template": template,
        },
        "status": {"replicas": 0, "observedGeneration": 1},
    })
}

/// The pod-template-hash for a template, skipping hashes already taken by
/// another template (the real controller's collisionCount).
fn unused_hash(state: &State, namespace: &str, name: &str, template: &Value) -> String {
    let canonical = canonical_json(&normalized_template(template));
    (0u32..)
        .map(|collisions| {
            let text = if collisions == 0 {
                canonical.clone()
            } else {
                format!("{canonical}{collisions}")
            };
            safe_encode(fnv1a(text.as_bytes()))
        })
        .find(|hash| {
            state
                .get(Kind::ReplicaSets, namespace, &format!("{name}-{hash}"))
                .is_none()
        })
        .unwrap_or_default()
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Kubernetes' `rand.SafeEncodeString` of the decimal hash: an alphabet
/// without vowels or look-alike characters, so names never spell words.
pub(crate) fn safe_encode(hash: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// JSON with object keys sorted, so equal templates hash equally.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// A ReplicaSet whose spec changed gets a new generation, like any object.
fn bump_rs_generation(state: &State, mut rs: Value) -> Value {
    let meta = &rs["metadata"];
    let stored = state.get(
        Kind::ReplicaSets,
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str().unwrap_or_default(),
    );
    if let Some(stored) = stored {
        if stored["spec"] != rs["spec"] {
            let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            metadata_mut(&mut rs).insert("generation".into(), json!(generation));
        }
    }
    rs
}

fn annotate_revision(mut deployment: Value, revision: i64) -> Value {
    let annotations = object_at(object_at_value(&mut deployment, "metadata"), "annotations");
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    deployment
}

/// The deployment status the real controller derives from its ReplicaSets.
fn with_status(state: &State, mut deployment: Value, new_rs: &Value) -> Value {
    let want = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let all = owned_replica_sets(state, &deployment);
    let sum = |field: &str| -> i64 { all.iter().map(|rs| rs["status"][field].as_i64().unwrap_or(0)).sum() };
    let (replicas, ready, available) = (sum("replicas"), sum("readyReplicas"), sum("availableReplicas"));
    let updated = new_rs["status"]["replicas"].as_i64().unwrap_or(0);
    let rs_name = new_rs["metadata"]["name"].as_str().unwrap_or_default();
    let complete = updated == want && replicas == want && available == want;
    let old = &deployment["status"]["conditions"];
    let conditions = json!([availability(old, want, available), progress(old, rs_name, complete),]);
    deployment["status"] = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (want - available).max(0),
        "conditions": conditions,
    });
    deployment
}

/// The Available condition. With the default RollingUpdate strategy up to
/// 25% of the desired pods may be unavailable.
fn availability(old: &Value, want: i64, available: i64) -> Value {
    if available >= want - want / 4 {
        let message = "Deployment has minimum availability.";
        condition(old, "Available", "True", "MinimumReplicasAvailable", message)
    } else {
        let message = "Deployment does not have minimum availability.";
        condition(old, "Available", "False", "MinimumReplicasUnavailable", message)
    }
}

fn progress(old: &Value, rs_name: &str, complete: bool) -> Value {
    if complete {
        let message = format!("ReplicaSet {rs_name:?} has successfully progressed.");
        condition(old, "Progressing", "True", "NewReplicaSetAvailable", &message)
    } else {
        let message = format!("ReplicaSet {rs_name:?} is progressing.");
        condition(old, "Progressing", "True", "ReplicaSetUpdated", &message)
    }
}

/// A paused deployment: the controller only acknowledges the generation,
/// so template changes wait (as with `kubectl rollout pause`) until resumed.
fn paused(mut deployment: Value) -> Value {
    let old = deployment["status"]["conditions"].clone();
    let paused = condition(
        &old,
        "Progressing",
        "Unknown",
        "DeploymentPaused",
        "Deployment is paused",
    );
    let mut conditions: Vec<Value> = old
        .as_array()
        .map(|cs| cs.iter().filter(|c| c["type"] != "Progressing").cloned().collect())
        .unwrap_or_default();
    conditions.push(paused);
    let generation = deployment["metadata"]["generation"].clone();
    let status = object_at(&mut deployment, "status");
    status.insert("observedGeneration".into(), generation);
    status.insert("conditions".into(), json!(conditions));
    deployment
}

/// A condition, keeping its timestamps when nothing about it changed.
fn condition(old: &Value, kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let previous = old.as_array().and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let stamp = now();
    let (updated, transitioned) = match previous {
        Some(p) if p["status"] == status && p["reason"] == reason && p["message"] == message => {
            (p["lastUpdateTime"].clone(), p["lastTransitionTime"].clone())
        }
        Some(p) if p["status"] == status => (json!(stamp), p["lastTransitionTime"].clone()),
        _ => (json!(stamp), json!(stamp)),
    };
    json!({
        "type": kind,
        "status": status,
        "lastUpdateTime": updated,
        "lastTransitionTime": transitioned,
        "reason": reason,
        "message": message,
    })
}

/// The real `DeploymentComplete` check that `kubectl rollout status` mirrors.
pub fn is_complete(deployment: &Value) -> bool {
    let want = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &deployment["status"];
    let n = |f: &str| status[f].as_i64().unwrap_or(0);
    status["observedGeneration"] == deployment["metadata"]["generation"]
        && n("updatedReplicas") == want
        && n("replicas") == want
        && n("availableReplicas") == want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_differing_only_in_hash_label_and_empty_fields_are_the_same() {
        let a = json!({"metadata": {"labels": {"app": "x", HASH_LABEL: "abc"}}, "spec": {"containers": [{"name": "x", "resources": {}}]}});
        let b = json!({"metadata": {"labels": {"app": "x"}, "creationTimestamp": null}, "spec": {"containers": [{"name": "x"}]}});
        assert!(same_template(&a, &b));
    }

    #[test]
    fn hashes_use_only_the_safe_alphabet() {
        let hash = safe_encode(fnv1a(b"template"));
        assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert!(!hash.is_empty());
    }
}
