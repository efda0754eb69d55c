//! Pods: the ones the deployment controller keeps for each ReplicaSet
//! (as many as its status counts, ready when it is), the ones a test seeds
//! on its own (a finished Job's pod), the states a test puts them in
//! (CrashLoopBackOff, Succeeded) and their logs, served as the real
//! `pods/{name}/log` subresource serves them.

use serde_json::{json, Value};

use super::store::{now, ApiError, Kind, State};

/// A pod's phase and, when it is not simply running, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState<'a> {
    /// Running with every container ready.
    Running,
    /// Running, a container not ready and waiting for `reason`
    /// (`CrashLoopBackOff`), having restarted `restarts` times.
    Waiting { reason: &'a str, restarts: i64 },
    /// Not started yet, waiting for `reason` (`ContainerCreating`,
    /// `ImagePullBackOff`).
    Pending { reason: &'a str },
    /// Finished with exit code 0 (a completed Job's pod).
    Succeeded,
    /// Finished with a failure, for `reason` (`Error`, `OOMKilled`, `Evicted`).
    Failed { reason: &'a str },
}

/// One line a container wrote.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: chrono::DateTime<chrono::Utc>,
    pub container: String,
    pub text: String,
}

/// Keeps the pods of a ReplicaSet in step with its status: `replicas`
/// pods, the first `readyReplicas` of them running and ready, the rest
/// still starting. Pods a test put in another state keep it.
pub fn reconcile(state: &mut State, rs: &Value) {
    let meta = &rs["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or_default().to_string();
    let rs_name = meta["name"].as_str().unwrap_or_default().to_string();
    let want = rs["status"]["replicas"].as_i64().unwrap_or(0).max(0) as usize;
    let ready = rs["status"]["readyReplicas"].as_i64().unwrap_or(0).max(0) as usize;
    let mut owned = owned_pods(state, &namespace, &meta["uid"]);
    while owned.len() > want {
        if let Some(pod) = owned.pop() {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            remove(state, &namespace, &name);
        }
    }
    for pod in owned.iter().take(ready) {
        if !is_ready(pod) && pod["metadata"]["annotations"][TEST_STATE] != "true" {
            state.store(Kind::Pods, with_state(pod.clone(), PodState::Running));
        }
    }
    for i in owned.len()..want {
        let pod_state = if i < ready {
            PodState::Running
        } else {
            PodState::Pending {
                reason: "ContainerCreating",
            }
        };
        let pod = new_pod(state, rs, &rs_name, pod_state);
        state.store(Kind::Pods, pod);
    }
}

/// Marks a pod whose state a test chose, so the controller leaves it be.
const TEST_STATE: &str = "fake-kube/state-set-by-test";

/// The pods a ReplicaSet owns, oldest first.
fn owned_pods(state: &State, namespace: &str, rs_uid: &Value) -> Vec<Value> {
    let mut pods: Vec<Value> = state
        .list(Kind::Pods, Some(namespace))
        .into_iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| &r["uid"] == rs_uid))
        })
        .collect();
    pods.sort_by_key(|p| {
        p["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    });
    pods
}

/// Deletes the pods a ReplicaSet owns (it is being deleted).
pub fn remove_owned(state: &mut State, rs: &Value) {
    let namespace = rs["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    for pod in owned_pods(state, &namespace, &rs["metadata"]["uid"]) {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        remove(state, &namespace, &name);
    }
}

/// Deletes a pod and its logs.
pub fn remove(state: &mut State, namespace: &str, name: &str) -> Option<Value> {
    state.logs.remove(&(namespace.to_string(), name.to_string()));
    state.remove(Kind::Pods, namespace, name)
}

fn new_pod(state: &mut State, rs: &Value, rs_name: &str, pod_state: PodState<'_>) -> Value {
    let uid = state.new_uid();
    let suffix = super::controller::safe_encode(super::controller::fnv1a(uid.as_bytes()));
    let suffix: String = suffix.chars().take(5).collect();
    let template = &rs["spec"]["template"];
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{rs_name}-{suffix}"),
            "namespace": rs["metadata"]["namespace"],
            "uid": uid,
            "creationTimestamp": now(),
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs_name,
                "uid": rs["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": template["spec"],
    });
    let mut pod = with_state(pod, pod_state);
    super::store::prune_nulls(&mut pod);
    pod
}

/// A pod seeded on its own (no owner), with one container named like it.
pub fn standalone(namespace: &str, name: &str, labels: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": name, "image": "busybox:1.36"}], "restartPolicy": "Never"},
    })
}

/// The pod with `status` as the kubelet would report it in that state.
pub fn with_state(mut pod: Value, pod_state: PodState<'_>) -> Value {
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let image = |name: &str| {
        pod["spec"]["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .map(|c| c["image"].clone())
            .unwrap_or(Value::Null)
    };
    let started = now();
    let (phase, ready, reason) = match pod_state {
        PodState::Running => ("Running", true, None),
        PodState::Waiting { reason, .. } => ("Running", false, Some(reason)),
        PodState::Pending { reason } => ("Pending", false, Some(reason)),
        PodState::Succeeded => ("Succeeded", false, Some("Completed")),
        PodState::Failed { reason } => ("Failed", false, Some(reason)),
    };
    let restarts = match pod_state {
        PodState::Waiting { restarts, .. } => restarts,
        _ => 0,
    };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|name| {
            let container_state = match pod_state {
                PodState::Running => json!({"running": {"startedAt": started}}),
                PodState::Waiting { reason, .. } | PodState::Pending { reason } => {
                    json!({"waiting": {"reason": reason}})
                }
                PodState::Succeeded => json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
                PodState::Failed { reason } => json!({"terminated": {"exitCode": 1, "reason": reason}}),
            };
            json!({
                "name": name,
                "image": image(name),
                "imageID": "",
                "ready": ready,
                "started": matches!(pod_state, PodState::Running),
                "restartCount": restarts,
                "state": container_state,
            })
        })
        .collect();
    let ready_text = if ready { "True" } else { "False" };
    let mut status = json!({
        "phase": phase,
        "conditions": [
            {"type": "Ready", "status": ready_text},
            {"type": "ContainersReady", "status": ready_text},
        ],
        "podIP": "10.244.0.10",
        "startTime": started,
        "containerStatuses": statuses,
    });
    // An evicted pod has no container statuses worth the name; its reason is the pod's.
    if let (PodState::Failed { reason }, true) = (pod_state, reason == Some("Evicted")) {
        status["reason"] = json!(reason);
    }
    pod["status"] = status;
    pod
}

/// Whether the Ready condition is true.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Puts a pod in `pod_state`, which the controller then leaves alone.
pub fn set_state(state: &mut State, namespace: &str, name: &str, pod_state: PodState<'_>) -> Result<(), ApiError> {
    let pod = state
        .get(Kind::Pods, namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(Kind::Pods, name))?;
    let mut pod = with_state(pod, pod_state);
    pod["metadata"]["annotations"][TEST_STATE] = json!("true");
    state.store(Kind::Pods, pod);
    Ok(())
}

/// What `GET .../pods/{name}/log` was asked for.
#[derive(Debug, Default)]
pub struct LogQuery<'a> {
    pub container: Option<&'a str>,
    pub tail_lines: Option<usize>,
    pub since_seconds: Option<i64>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// A container's log as the real subresource answers it: plain text,
/// one line per entry, the last `tailLines` of those newer than
/// `sinceSeconds`, cut at `limitBytes`.
pub fn log(state: &State, namespace: &str, name: &str, query: &LogQuery<'_>) -> Result<String, ApiError> {
    let pod = state
        .get(Kind::Pods, namespace, name)
        .ok_or_else(|| ApiError::not_found(Kind::Pods, name))?;
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let container = match (query.container, containers.as_slice()) {
        (Some(c), _) if containers.contains(&c) => c,
        (Some(c), _) => return Err(ApiError::new(400, format!("container {c} is not valid for pod {name}"))),
        (None, [only]) => only,
        (None, _) => {
            return Err(ApiError::new(
                400,
                format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                ),
            ))
        }
    };
    if pod["status"]["phase"] == "Pending" {
        let reason = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or("ContainerCreating");
        return Err(ApiError::new(
            400,
            format!("container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"),
        ));
    }
    let cutoff = query
        .since_seconds
        .map(|s| chrono::Utc::now() - chrono::Duration::seconds(s));
    let lines: Vec<&LogLine> = state
        .logs
        .get(&(namespace.to_string(), name.to_string()))
        .map(|ls| {
            ls.iter()
                .filter(|l| l.container == container && cutoff.is_none_or(|c| l.at >= c))
                .collect()
        })
        .unwrap_or_default();
    let skip = query.tail_lines.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = String::new();
    for line in &lines[skip..] {
        if query.timestamps {
            out.push_str(&line.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            out.push(' ');
        }
        out.push_str(&line.text);
        out.push('\n');
    }
    if let Some(limit) = query.limit_bytes {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Ok(out)
}

/// Appends lines to a pod's log (its only container, or `container`).
pub fn append(
    state: &mut State,
    namespace: &str,
    name: &str,
    container: Option<&str>,
    lines: &[&str],
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let pod = state
        .get(Kind::Pods, namespace, name)
        .ok_or_else(|| ApiError::not_found(Kind::Pods, name))?;
    let container = match container {
        Some(c) => c.to_string(),
        None => pod["spec"]["containers"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let log = state.logs.entry((namespace.to_string(), name.to_string())).or_default();
    log.extend(lines.iter().map(|text| LogLine {
        at,
        container: container.clone(),
        text: (*text).to_string(),
    }));
    Ok(())
}
