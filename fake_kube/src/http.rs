//! The HTTP face of the fake: one fallback handler that records the
//! request, injects queued faults, and routes Kubernetes REST paths
//! (`/api/v1/...`, `/apis/apps/v1/...`) to list, watch, get, create,
//! update, patch and delete, plus the deployments' `scale` and `status`
//! subresources.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::discovery;
use super::patch::{self, PatchType};
use super::pods;
use super::selector::Selector;
use super::store::{ApiError, Kind, State};
use super::Shared;

/// How long an idle watch waits for a change. The response head goes out
/// only with the events (see [`watch`]), and kubectl, done with a watch,
/// still waits for that head before it exits; so a client that allows
/// bookmarks (client-go informers, as in `kubectl rollout status`; kube-rs)
/// gets a BOOKMARK soon and re-watches from it. client-go counts a watch
/// that ends empty within a second as an error, so one that does not allow
/// bookmarks (`kubectl get -w`) waits longer and ends empty.
const BOOKMARK_WINDOW: Duration = Duration::from_millis(250);
const EMPTY_WATCH_WINDOW: Duration = Duration::from_secs(30);

/// Where a REST path points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Collection {
        kind: Kind,
        namespace: Option<String>,
    },
    Object {
        kind: Kind,
        namespace: String,
        name: String,
        sub: Option<String>,
    },
}

/// What a handler needs from the request besides the route.
struct Request {
    method: Method,
    params: Params,
    content_type: String,
    accept: String,
    body: Bytes,
}

type Answer = Result<Value, ApiError>;

pub async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let full_path = uri.path_and_query().map_or(path.clone(), |p| p.as_str().to_string());
    if let Some(want) = &shared.token {
        // The real server checks the token before anything else.
        if header_text(header::AUTHORIZATION).as_deref() != Some(format!("Bearer {want}").as_str()) {
            return error_response(&ApiError::new(401, "Unauthorized"));
        }
    }
    if let Some(code) = shared.record(&method, full_path, content_type.clone(), &path) {
        return error_response(&ApiError::new(code, format!("injected fault: HTTP {code}")));
    }
    if let Some(doc) = discovery::document(&path, &shared.address) {
        return json_response(StatusCode::OK, &doc);
    }
    let params = match Params::parse(uri.query().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    if method == Method::POST && path == SELF_SUBJECT_ACCESS_REVIEWS {
        let protobuf = content_type.as_deref() == Some("application/vnd.kubernetes.protobuf");
        return match access_review(&shared, &body, protobuf) {
            Ok(review) => json_response(StatusCode::CREATED, &review),
            Err(e) => error_response(&e),
        };
    }
    let Some(route) = parse_route(&path) else {
        return error_response(&ApiError::new(404, "the server could not find the requested resource"));
    };
    if let Err(e) = authorize(&shared, &method, &route, &params) {
        return error_response(&e);
    }
    let request = Request {
        method,
        params,
        content_type: content_type.unwrap_or_default(),
        accept: header_text(header::ACCEPT).unwrap_or_default(),
        body,
    };
    dispatch(&shared, route, request).await
}

pub(crate) const SELF_SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// `kubectl auth can-i`: the review with `status.allowed` from the Roles
/// enforced (everything is allowed when none are).
fn access_review(shared: &Shared, body: &[u8], protobuf: bool) -> Answer {
    let decoded = if protobuf {
        super::proto::access_review(body)
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    let mut review =
        decoded.map_err(|e| ApiError::new(400, format!("the SelfSubjectAccessReview does not decode: {e}")))?;
    let attributes = &review["spec"]["resourceAttributes"];
    if !attributes.is_object() {
        return Err(ApiError::new(
            422,
            "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Required value",
        ));
    }
    let text = |key: &str| attributes[key].as_str().filter(|s| !s.is_empty());
    let resource = match (text("resource"), text("subresource")) {
        (Some(r), Some(sub)) => format!("{r}/{sub}"),
        (Some(r), None) => r.to_string(),
        (None, _) => "*".to_string(),
    };
    let state = shared.lock();
    let status = match &state.rbac {
        None => json!({"allowed": true, "reason": "the fake enforces no RBAC"}),
        Some(grants) => {
            let verdict = super::rbac::check(
                grants,
                text("verb").unwrap_or("*"),
                text("group").unwrap_or_default(),
                &resource,
                text("namespace"),
                text("name"),
            );
            match verdict {
                Ok(()) => json!({"allowed": true, "reason": "allowed by the Roles the fake enforces"}),
                Err(_) => json!({"allowed": false}),
            }
        }
    };
    review["status"] = status;
    Ok(review)
}

/// The RBAC check, when the fake enforces RBAC: the verb kubectl's
/// authorizer would see for this request.
fn authorize(shared: &Shared, method: &Method, route: &Route, params: &Params) -> Result<(), ApiError> {
    let state = shared.lock();
    let Some(grants) = &state.rbac else {
        return Ok(());
    };
    let (kind, namespace, name, resource) = match route {
        Route::Collection { kind, namespace } => (*kind, namespace.as_deref(), None, kind.plural().to_string()),
        Route::Object {
            kind,
            namespace,
            name,
            sub,
        } => {
            let resource = match sub {
                Some(s) => format!("{}/{s}", kind.plural()),
                None => kind.plural().to_string(),
            };
            (*kind, Some(namespace.as_str()), Some(name.as_str()), resource)
        }
    };
    let verb = match (method.as_str(), name) {
        ("GET", None) if params.flag("watch") => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    };
    super::rbac::check(grants, verb, kind.group(), &resource, namespace, name)
}

async fn dispatch(shared: &Arc<Shared>, route: Route, req: Request) -> Response {
    let answer = match (&req.method, route) {
        (&Method::GET, Route::Collection { kind, namespace }) if req.params.flag("watch") => {
            return watch(shared, kind, namespace, &req.params).await;
        }
        (&Method::GET, Route::Collection { kind, namespace }) => list(shared, kind, namespace.as_deref(), &req),
        (
            &Method::POST,
            Route::Collection {
                kind,
                namespace: Some(ns),
            },
        ) => writable(kind, &req.method).and_then(|_| create(shared, kind, &ns, &req)),
        (
            method,
            Route::Object {
                kind,
                namespace,
                name,
                sub,
            },
        ) if kind == Kind::Pods && sub.as_deref() == Some("log") => {
            return match pod_log(shared, method, &namespace, &name, &req.params) {
                Ok(text) => ([(header::CONTENT_TYPE, "text/plain")], text).into_response(),
                Err(e) => error_response(&e),
            };
        }
        (
            method,
            Route::Object {
                kind,
                namespace,
                name,
                sub,
            },
        ) => object(shared, method, kind, &namespace, &name, sub.as_deref(), &req),
        _ => Err(ApiError::new(
            405,
            "the server does not allow this method on the requested resource",
        )),
    };
    match answer {
        Ok(value) => json_response(success_code(&req.method), &value),
        Err(e) => error_response(&e),
    }
}

fn success_code(method: &Method) -> StatusCode {
    if method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// The subresources served: deployments' scale, pods' log, and status
/// (read-only here) for all.
fn has_subresource(kind: Kind, sub: &str) -> bool {
    sub == "status" || (kind == Kind::Deployments && sub == "scale") || (kind == Kind::Pods && sub == "log")
}

/// ReplicaSets belong to the (simulated) controller; clients only read
/// them, and delete them (the guide's cleanup of old ones).
fn writable(kind: Kind, method: &Method) -> Result<(), ApiError> {
    if kind == Kind::ReplicaSets && method != Method::DELETE {
        return Err(ApiError::new(
            405,
            "replicasets are managed by the fake deployment controller",
        ));
    }
    Ok(())
}

fn object(
    shared: &Arc<Shared>,
    method: &Method,
    kind: Kind,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    req: &Request,
) -> Answer {
    let dry_run = req.params.dry_run()?;
    if let Some(sub) = sub.filter(|s| !has_subresource(kind, s)) {
        let message = format!("{} has no subresource {sub:?}", kind.qualified());
        return Err(ApiError::new(404, message));
    }
    match (method.as_str(), sub) {
        ("GET", None | Some("status")) => {
            let object = shared.lock().get(kind, ns, name).cloned();
            let object = object.ok_or_else(|| ApiError::not_found(kind, name))?;
            Ok(maybe_table(shared, kind, object, &req.accept))
        }
        (_, Some("scale")) => scale(shared, method, ns, name, req, dry_run),
        ("PUT", None) => {
            writable(kind, method)?;
            let body = object_body(req)?;
            shared.update(kind, ns, name, dry_run, |_| Ok(body))
        }
        ("PATCH", None) => {
            writable(kind, method)?;
            let (patch_type, doc) = patch_body(req)?;
            shared.update(kind, ns, name, dry_run, |current| {
                apply_patch(patch_type, current, &doc)
            })
        }
        ("DELETE", None) => {
            writable(kind, method)?;
            shared.delete(kind, ns, name, dry_run || delete_options_dry_run(&req.body)?)
        }
        _ => Err(ApiError::new(
            405,
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// `GET .../pods/{name}/log`, with the parameters kubectl and kube-rs send.
fn pod_log(shared: &Arc<Shared>, method: &Method, ns: &str, name: &str, params: &Params) -> Result<String, ApiError> {
    if method != Method::GET {
        return Err(ApiError::new(405, "the log subresource supports get"));
    }
    let number = |key: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(key)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ApiError::new(400, format!("{key}: must be a non-negative integer, got {v:?}")))
            })
            .transpose()
    };
    let query = pods::LogQuery {
        container: params.get("container").filter(|c| !c.is_empty()),
        tail_lines: number("tailLines")?.map(|n| n as usize),
        since_seconds: number("sinceSeconds")?,
        timestamps: params.flag("timestamps"),
        limit_bytes: number("limitBytes")?.map(|n| n as usize),
    };
    pods::log(&shared.lock(), ns, name, &query)
}

/// Whether a DELETE's `DeleteOptions` body (how kube-rs sends them) asks
/// for a dry run; an empty body asks for nothing.
fn delete_options_dry_run(body: &[u8]) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let options = json_body(body)?;
    match &options["dryRun"] {
        Value::Null => Ok(false),
        Value::Array(values) if values.iter().all(|v| v == "All") => Ok(!values.is_empty()),
        other => Err(ApiError::new(
            400,
            format!("unsupported dryRun value {other}; only [\"All\"] is supported"),
        )),
    }
}

fn apply_patch(patch_type: PatchType, current: &Value, doc: &Value) -> Answer {
    patch::apply(patch_type, current, doc)
        .map_err(|e| ApiError::new(422, format!("the patch could not be applied: {e}")))
}

fn patch_body(req: &Request) -> Result<(PatchType, Value), ApiError> {
    let patch_type = PatchType::from_content_type(&req.content_type).ok_or_else(|| {
        ApiError::new(
            415,
            format!(
                "the body of the request was in an unknown format: {:?}",
                req.content_type
            ),
        )
    })?;
    Ok((patch_type, json_body(&req.body)?))
}

/// The JSON body of a create or update. Other encodings (kubectl's typed
/// clients send protobuf) are refused as the real server refuses unknown ones.
fn object_body(req: &Request) -> Result<Value, ApiError> {
    let media = req.content_type.split(';').next().unwrap_or_default().trim();
    if !media.is_empty() && media != "application/json" {
        return Err(ApiError::new(
            415,
            format!("the body of the request was in an unknown format ({media}) - accepted media types include: application/json"),
        ));
    }
    json_body(&req.body)
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(400, format!("the request body is not valid JSON: {e}")))
}

fn create(shared: &Arc<Shared>, kind: Kind, ns: &str, req: &Request) -> Answer {
    let body = object_body(req)?;
    shared.create(kind, ns, body, req.params.dry_run()?)
}

/// The `autoscaling/v1` Scale view of a deployment.
pub fn scale_of(deployment: &Value) -> Value {
    let meta = &deployment["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {
            "replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": discovery::selector_text(deployment),
        },
    })
}

fn scale(shared: &Arc<Shared>, method: &Method, ns: &str, name: &str, req: &Request, dry_run: bool) -> Answer {
    let kind = Kind::Deployments;
    let new_scale = |current: &Value| -> Answer {
        match method.as_str() {
            "PUT" => object_body(req),
            "PATCH" => {
                let (patch_type, doc) = patch_body(req)?;
                apply_patch(patch_type, &scale_of(current), &doc)
            }
            _ => Err(ApiError::new(
                405,
                "the scale subresource supports get, update and patch",
            )),
        }
    };
    if method == Method::GET {
        let deployment = shared.lock().get(kind, ns, name).cloned();
        return deployment
            .map(|d| scale_of(&d))
            .ok_or_else(|| ApiError::not_found(kind, name));
    }
    let updated = shared.update(kind, ns, name, dry_run, |current| {
        let wanted = new_scale(current)?;
        let replicas = wanted["spec"]["replicas"]
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid(kind, name, "spec.replicas: must be a non-negative integer"))?;
        let mut deployment = current.clone();
        deployment["spec"]["replicas"] = json!(replicas);
        // The Scale's resourceVersion is the deployment's: a stale one conflicts.
        deployment["metadata"]["resourceVersion"] = wanted["metadata"]["resourceVersion"].clone();
        Ok(deployment)
    })?;
    Ok(scale_of(&updated))
}

fn list(shared: &Arc<Shared>, kind: Kind, namespace: Option<&str>, req: &Request) -> Answer {
    let (labels, fields) = selectors(&req.params)?;
    let state = shared.lock();
    let items: Vec<Value> = state
        .list(kind, namespace)
        .into_iter()
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .collect();
    let rv = state.rv.to_string();
    drop(state);
    if discovery::wants_table(&req.accept) {
        return Ok(discovery::table(kind, &items, &rv));
    }
    Ok(json!({
        "kind": format!("{}List", kind.kind()),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv},
        "items": items,
    }))
}

/// One object, or a one-row Table when the client asked for server-side printing.
fn maybe_table(shared: &Arc<Shared>, kind: Kind, object: Value, accept: &str) -> Value {
    if discovery::wants_table(accept) {
        let rv = shared.lock().rv.to_string();
        return discovery::table(kind, &[object], &rv);
    }
    object
}

fn selectors(params: &Params) -> Result<(Selector, Selector), ApiError> {
    let parse = |name| {
        Selector::parse(params.get(name).unwrap_or_default())
            .map_err(|e| ApiError::new(400, format!("unable to parse {name}: {e}")))
    };
    Ok((parse("labelSelector")?, parse("fieldSelector")?))
}

/// A watch as a long poll: it answers as soon as there are events after
/// the requested resourceVersion (or the current objects, when none is
/// given) and then ends; clients re-watch from the last version they saw,
/// which the watch protocol allows at any time. A streamed body would need
/// a `Stream` or `http_body::Frame` type, which only a new dependency
/// (futures-core or http-body) could name.
async fn watch(shared: &Arc<Shared>, kind: Kind, namespace: Option<String>, params: &Params) -> Response {
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let filter = WatchFilter {
        kind,
        namespace,
        labels,
        fields,
    };
    let since: u64 = params.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks = params.flag("allowWatchBookmarks");
    let deadline = Instant::now() + watch_window(params, bookmarks);
    loop {
        let (events, mut changed) = {
            let state = shared.lock();
            if since != 0 && since < state.compacted_rv {
                let gone = ApiError::new(
                    410,
                    format!("too old resource version: {since} ({})", state.compacted_rv),
                );
                return watch_response(vec![json!({"type": "ERROR", "object": gone.status_body()})]);
            }
            (filter.events(&state, since), state.changed.subscribe())
        };
        if !events.is_empty() || shared.is_closed() {
            return watch_response(events);
        }
        let woke = tokio::time::timeout_at(deadline.into(), changed.changed()).await;
        if !matches!(woke, Ok(Ok(()))) {
            let idle = if bookmarks {
                vec![bookmark(kind, shared.lock().rv)]
            } else {
                Vec::new()
            };
            return watch_response(idle);
        }
    }
}

/// How long this watch may stay idle: the window for its kind of client,
/// or less when the client asked for a shorter `timeoutSeconds`.
fn watch_window(params: &Params, bookmarks: bool) -> Duration {
    let window = if bookmarks { BOOKMARK_WINDOW } else { EMPTY_WATCH_WINDOW };
    let requested = params.get("timeoutSeconds").and_then(|t| t.parse().ok());
    requested.map_or(window, |t| Duration::from_secs(t).min(window))
}

/// What one watch asks to see.
struct WatchFilter {
    kind: Kind,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl WatchFilter {
    fn wants(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| object["metadata"]["namespace"] == ns)
            && self.labels.matches_labels(object)
            && self.fields.matches_fields(object)
    }

    /// Events after `since`; from 0 ("any version"), the current objects as ADDED.
    fn events(&self, state: &State, since: u64) -> Vec<Value> {
        if since == 0 {
            let current = state.list(self.kind, self.namespace.as_deref());
            return current
                .into_iter()
                .filter(|o| self.wants(o))
                .map(|o| json!({"type": "ADDED", "object": o}))
                .collect();
        }
        state
            .events_since(self.kind, since)
            .into_iter()
            .filter(|e| self.wants(&e.object))
            .map(|e| json!({"type": e.event_type, "object": e.object}))
            .collect()
    }
}

/// A BOOKMARK: "nothing for you up to `rv`"; the client re-watches from there.
fn bookmark(kind: Kind, rv: u64) -> Value {
    json!({
        "type": "BOOKMARK",
        "object": {"kind": kind.kind(), "apiVersion": kind.api_version(), "metadata": {"resourceVersion": rv.to_string()}},
    })
}

fn watch_response(events: Vec<Value>) -> Response {
    let mut body = String::new();
    for event in events {
        body.push_str(&event.to_string());
        body.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn parse_route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "apps", "v1", rest @ ..] => ("apps", rest),
        _ => return None,
    };
    let kind = |plural: &str| Kind::parse(plural).filter(|k| k.plural() == plural && k.group() == group);
    match rest {
        [plural] => Some(Route::Collection {
            kind: kind(plural)?,
            namespace: None,
        }),
        ["namespaces", ns, plural] => Some(Route::Collection {
            kind: kind(plural)?,
            namespace: Some(ns.to_string()),
        }),
        ["namespaces", ns, plural, name, sub @ ..] if sub.len() <= 1 => Some(Route::Object {
            kind: kind(plural)?,
            namespace: ns.to_string(),
            name: name.to_string(),
            sub: sub.first().map(|s| s.to_string()),
        }),
        _ => None,
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

pub fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, &error.status_body());
    // Clients back off by Retry-After on throttling and unavailability.
    if matches!(error.code, 429 | 503) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Decoded query parameters.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Params, ApiError> {
        let bad = |part: &str| ApiError::new(400, format!("malformed query parameter {part:?}"));
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = percent_decode(k).ok_or_else(|| bad(part))?;
            let v = percent_decode(v).ok_or_else(|| bad(part))?;
            pairs.push((k, v));
        }
        Ok(Params(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// Whether `dryRun=All` was given; any other value is refused as the real server does.
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::new(
                400,
                format!("unsupported dryRun value {other:?}; only All is supported"),
            )),
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_collections_objects_and_subresources() {
        assert_eq!(
            parse_route("/apis/apps/v1/namespaces/prod/deployments/web/scale"),
            Some(Route::Object {
                kind: Kind::Deployments,
                namespace: "prod".into(),
                name: "web".into(),
                sub: Some("scale".into()),
            })
        );
        assert_eq!(
            parse_route("/api/v1/services"),
            Some(Route::Collection {
                kind: Kind::Services,
                namespace: None
            })
        );
        assert_eq!(parse_route("/api/v1/namespaces/prod/deployments"), None);
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        let params = Params::parse("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1").unwrap();
        assert_eq!(params.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(params.flag("watch"));
        assert!(Params::parse("a=%zz").is_err());
    }
}
