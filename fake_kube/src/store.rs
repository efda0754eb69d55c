//! The fake's object store: every object as JSON, a global resourceVersion
//! counter, a log of change events for watches, and the admission rules the
//! real API server applies before storing (server-owned fields, generation,
//! defaults, optimistic concurrency).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::pods::LogLine;

/// How many change events watches can replay; older resourceVersions get 410.
const EVENT_LOG_LIMIT: usize = 10_000;

/// The resource types the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Deployments,
    ReplicaSets,
    Services,
    Pods,
}

impl Kind {
    /// The kind for a plural resource name, a singular, a short name or `Kind`.
    pub fn parse(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "deployments" | "deployment" | "deploy" => Some(Kind::Deployments),
            "replicasets" | "replicaset" | "rs" => Some(Kind::ReplicaSets),
            "services" | "service" | "svc" => Some(Kind::Services),
            "pods" | "pod" | "po" => Some(Kind::Pods),
            _ => None,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deployments => "deployments",
            Kind::ReplicaSets => "replicasets",
            Kind::Services => "services",
            Kind::Pods => "pods",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Deployments => "Deployment",
            Kind::ReplicaSets => "ReplicaSet",
            Kind::Services => "Service",
            Kind::Pods => "Pod",
        }
    }

    /// The API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Deployments | Kind::ReplicaSets => "apps",
            Kind::Services | Kind::Pods => "",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployments | Kind::ReplicaSets => "apps/v1",
            Kind::Services | Kind::Pods => "v1",
        }
    }

    /// Whether it is in the core group, whose objects (here) carry no generation.
    pub fn is_core(self) -> bool {
        self.group().is_empty()
    }

    /// `deployments.apps` or `services`, as the real server names resources in messages.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            group => format!("{}.{group}", self.plural()),
        }
    }
}

/// An error answered as a Kubernetes `Status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason: reason_for(code),
            message: message.into(),
        }
    }

    pub fn not_found(kind: Kind, name: &str) -> ApiError {
        ApiError::new(404, format!("{} {name:?} not found", kind.qualified()))
    }

    pub fn conflict(kind: Kind, name: &str) -> ApiError {
        ApiError::new(
            409,
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                kind.qualified()
            ),
        )
    }

    pub fn invalid(kind: Kind, name: &str, why: &str) -> ApiError {
        ApiError::new(422, format!("{} {name:?} is invalid: {why}", kind.kind()))
    }

    /// The `Status` body the real server sends with an error.
    pub fn status_body(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// The `reason` the real server puts in a `Status` for an HTTP code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub event_type: &'static str,
    pub object: Value,
}

type Key = (Kind, String, String);

/// Everything the fake knows; guarded by one mutex in `Shared`.
pub struct State {
    pub rv: u64,
    next_uid: u64,
    next_cluster_ip: u32,
    objects: BTreeMap<Key, Value>,
    events: VecDeque<Event>,
    /// Events at or below this resourceVersion have been dropped from the log.
    pub compacted_rv: u64,
    pub ready_delay: Duration,
    pub faults: VecDeque<u16>,
    pub requests: Vec<(String, String, Option<String>)>,
    /// When set, only what these grants allow is served (403 otherwise).
    pub rbac: Option<Vec<super::rbac::Grant>>,
    /// Pods' logs by (namespace, pod), oldest line first.
    pub logs: BTreeMap<(String, String), Vec<LogLine>>,
    /// Carries the latest resourceVersion so waiting watches wake on change.
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            rv: 1,
            next_uid: 1,
            next_cluster_ip: 10,
            objects: BTreeMap::new(),
            events: VecDeque::new(),
            compacted_rv: 0,
            ready_delay: Duration::from_millis(200),
            faults: VecDeque::new(),
            requests: Vec::new(),
            logs: BTreeMap::new(),
            rbac: None,
            changed: tokio::sync::watch::channel(1).0,
        }
    }
}

impl State {
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, namespace.to_string(), name.to_string()))
    }

    /// Objects of a kind, in one namespace or (None) all, ordered by namespace and name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, ns, _), _)| *k == kind && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores an admitted object, bumping resourceVersion and logging an
    /// event; storing an unchanged object changes nothing, so the
    /// controller can re-sync freely.
    pub fn store(&mut self, kind: Kind, mut object: Value) -> Value {
        let key = key_of(kind, &object);
        let previous = self.objects.get(&key);
        if previous.is_some_and(|p| same_ignoring_version(p, &object)) {
            return previous.cloned().unwrap_or(object);
        }
        let event_type = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, object.clone());
        self.log(kind, event_type, object.clone());
        object
    }

    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.remove(&(kind, namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.log(kind, "DELETED", object.clone());
        Some(object)
    }

    fn log(&mut self, kind: Kind, event_type: &'static str, object: Value) {
        self.events.push_back(Event {
            rv: self.rv,
            kind,
            event_type,
            object,
        });
        while self.events.len() > EVENT_LOG_LIMIT {
            if let Some(dropped) = self.events.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        self.changed.send_replace(self.rv);
    }

    /// Logged events of `kind` newer than `since`.
    pub fn events_since(&self, kind: Kind, since: u64) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.rv > since)
            .cloned()
            .collect()
    }

    /// A UID in the usual 8-4-4-4-12 shape; unique within this fake.
    pub fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("6b1a0f2e-0000-4000-8000-{:012x}", self.next_uid)
    }

    fn new_cluster_ip(&mut self) -> String {
        self.next_cluster_ip += 1;
        let n = self.next_cluster_ip;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    /// Applies what the real server does between decoding a create/update
    /// and storing it. `old` is the stored object for updates; the result
    /// is what would be stored (before resourceVersion is assigned).
    pub fn admit(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut new: Value,
        old: Option<&Value>,
    ) -> Result<Value, ApiError> {
        if !new.is_object() {
            return Err(ApiError::new(400, "the body must be a JSON object"));
        }
        check_identity(kind, namespace, name, &new)?;
        prune_nulls(&mut new);
        new["apiVersion"] = json!(kind.api_version());
        new["kind"] = json!(kind.kind());
        let meta = metadata_mut(&mut new);
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(namespace));
        match old {
            Some(old) => carry_server_fields(kind, &mut new, old),
            None => {
                // Status is the controllers' to write, never the creator's.
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
                metadata_mut(&mut new).remove("resourceVersion");
                let uid = self.new_uid();
                let meta = metadata_mut(&mut new);
                meta.insert("uid".into(), json!(uid));
                meta.insert("creationTimestamp".into(), json!(now()));
                if !kind.is_core() {
                    meta.insert("generation".into(), json!(1));
                }
            }
        }
        match kind {
            Kind::Deployments => default_deployment(&mut new, name)?,
            Kind::Services => self.default_service(&mut new, old),
            Kind::ReplicaSets | Kind::Pods => {}
        }
        Ok(new)
    }

    fn default_service(&mut self, service: &mut Value, old: Option<&Value>) {
        let spec = object_at(service, "spec");
        spec.entry("type").or_insert_with(|| json!("ClusterIP"));
        spec.entry("sessionAffinity").or_insert_with(|| json!("None"));
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
                if let Some(p) = port.get("port").cloned() {
                    port.entry("targetPort").or_insert(p);
                }
            }
        }
        // The cluster IP is allocated once and immutable afterwards.
        let kept = old.and_then(|o| o["spec"]["clusterIP"].as_str().map(str::to_string));
        let ip = match kept {
            Some(ip) => ip,
            None => self.new_cluster_ip(),
        };
        let spec = object_at(service, "spec");
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
}

fn key_of(kind: Kind, object: &Value) -> Key {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (kind, text(&meta["namespace"]), text(&meta["name"]))
}

fn same_ignoring_version(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// The body's name and namespace, when given, must agree with the URL.
fn check_identity(kind: Kind, namespace: &str, name: &str, body: &Value) -> Result<(), ApiError> {
    let meta = &body["metadata"];
    if let Some(given) = meta["name"].as_str() {
        if given != name {
            return Err(ApiError::new(
                400,
                format!("the name of the object ({given}) does not match the name on the URL ({name})"),
            ));
        }
    }
    if let Some(given) = meta["namespace"].as_str() {
        if !given.is_empty() && given != namespace {
            return Err(ApiError::new(
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if name.is_empty() {
        return Err(ApiError::invalid(
            kind,
            name,
            "metadata.name: Required value: name is required",
        ));
    }
    Ok(())
}

/// Keeps what clients cannot change through the main resource: identity,
/// creation time, status, and generation (bumped only by a spec change).
fn carry_server_fields(kind: Kind, new: &mut Value, old: &Value) {
    let old_meta = &old["metadata"];
    let spec_changed = new.get("spec") != old.get("spec");
    let meta = metadata_mut(new);
    for field in ["uid", "creationTimestamp"] {
        if let Some(v) = old_meta.get(field) {
            meta.insert(field.into(), v.clone());
        }
    }
    if !kind.is_core() {
        let generation = old_meta["generation"].as_i64().unwrap_or(1);
        let generation = if spec_changed { generation + 1 } else { generation };
        meta.insert("generation".into(), json!(generation));
    }
    match old.get("status") {
        Some(status) => new["status"] = status.clone(),
        None => {
            if let Some(map) = new.as_object_mut() {
                map.remove("status");
            }
        }
    }
}

/// The defaults and validation the real server applies to a Deployment.
fn default_deployment(deployment: &mut Value, name: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::invalid(Kind::Deployments, name, why);
    let spec = object_at(deployment, "spec");
    spec.entry("replicas").or_insert_with(|| json!(1));
    spec.entry("revisionHistoryLimit").or_insert_with(|| json!(10));
    spec.entry("progressDeadlineSeconds").or_insert_with(|| json!(600));
    spec.entry("strategy").or_insert_with(
        || json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    match spec.get("replicas").and_then(Value::as_i64) {
        Some(n) if n >= 0 => {}
        _ => return Err(invalid("spec.replicas: Invalid value: must be a non-negative integer")),
    }
    let selector = spec
        .get("selector")
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .cloned()
        .ok_or_else(|| invalid("spec.selector: Required value"))?;
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return Err(invalid(
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        ));
    }
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        return Err(invalid("spec.template.spec.containers: Required value"));
    }
    Ok(())
}

/// `value[field]` as a map, created (replacing a non-map) when needed.
pub fn object_at<'a>(value: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    if !value[field].is_object() {
        value[field] = json!({});
    }
    match value[field].as_object_mut() {
        Some(map) => map,
        None => unreachable!("just made an object"),
    }
}

pub fn metadata_mut(value: &mut Value) -> &mut Map<String, Value> {
    object_at(value, "metadata")
}

/// Drops `null` members, as decoding into the real server's types does.
pub fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// Now in the RFC 3339 form Kubernetes uses for timestamps.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
