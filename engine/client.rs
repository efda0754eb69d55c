//! The typed client of laojun's HTTP API: one method per route, answers as
//! the engine's own types, failures as one `ClientError`. The CLI talks to
//! the server through it, and so can tests. It knows nothing of the CLI.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{IncidentId, RunId};
use crate::incident::{Event, Incident, NoteKind, Status};
use crate::run::Run;
use crate::secret::Secret;
use crate::severity::Severity;
use crate::store::Audit;

/// How long one request may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A laojun server: where it is, the token to show it, one HTTP client.
/// `Debug` prints the token as `**REDACTED**`.
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// The server's URL without a trailing `/`, e.g. `http://127.0.0.1:9095`.
    base: String,
    /// Sent as `Authorization: Bearer`; `None` for an open API.
    token: Option<Secret>,
    /// One connection pool for every request (the CLI's `run` polls).
    http: reqwest::Client,
}

/// Why a request failed. Each status variant carries the server's
/// `{"error": ...}` message (or its plain-text body, or "no reason given").
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer at all: nothing listens there, DNS, TLS or a timeout.
    /// The message repeats the cause so the CLI can print one line.
    #[error(
        "cannot reach the laojun server at {server} ({source}); is `laojun serve` running? Set --server or LAOJUN_URL"
    )]
    Connect {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    /// 401: no token, or one the server does not know.
    #[error("401 Unauthorized: {message}; set $LAOJUN_API_TOKEN to a token the server accepts")]
    Unauthorized { message: String },
    /// 403: the token is known but its role may not use this route.
    #[error("403 Forbidden: {message}")]
    Forbidden { message: String },
    /// 404: no such incident, run, runbook or route.
    #[error("404 Not Found: {message}")]
    NotFound { message: String },
    /// 409: the request is valid but the state refuses it (paused, already resolved, not waiting).
    #[error("409 Conflict: {message}")]
    Conflict { message: String },
    /// 400, 413 or 422: the request itself is wrong; sending it again will not help.
    #[error("{status}: {message}")]
    BadRequest { status: StatusCode, message: String },
    /// 5xx: the server cannot do it now; 503 says when to retry.
    #[error("{status}: {message}")]
    Server {
        status: StatusCode,
        message: String,
        /// `Retry-After` in seconds, when the server sent one.
        retry_after: Option<u64>,
    },
    /// Any other status this API does not use (a proxy in between, say).
    #[error("{status}: {message}")]
    Unexpected { status: StatusCode, message: String },
    /// A success whose body is not what the route answers.
    #[error("{url} answered {status} with a body that is not {expected}: {detail}")]
    BadResponse {
        url: String,
        status: StatusCode,
        expected: &'static str,
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status the server answered with; `None` when it did not answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Connect { .. } => None,
            ClientError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            ClientError::Forbidden { .. } => Some(StatusCode::FORBIDDEN),
            ClientError::NotFound { .. } => Some(StatusCode::NOT_FOUND),
            ClientError::Conflict { .. } => Some(StatusCode::CONFLICT),
            ClientError::BadRequest { status, .. }
            | ClientError::Server { status, .. }
            | ClientError::Unexpected { status, .. }
            | ClientError::BadResponse { status, .. } => Some(*status),
        }
    }

    /// The server's own message, when it answered with an error status.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Unauthorized { message }
            | ClientError::Forbidden { message }
            | ClientError::NotFound { message }
            | ClientError::Conflict { message }
            | ClientError::BadRequest { message, .. }
            | ClientError::Server { message, .. }
            | ClientError::Unexpected { message, .. } => Some(message),
            ClientError::Connect { .. } | ClientError::BadResponse { .. } => None,
        }
    }
}

/// Filters of `GET /api/v1/incidents`; `None` leaves the server's default.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub status: Option<Status>,
    pub severity: Option<Severity>,
    pub limit: Option<usize>,
}

/// Filters of `GET /api/v1/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub playbook: Option<String>,
    pub runbook: Option<String>,
    pub status: Option<crate::run::RunStatus>,
    pub incident: Option<IncidentId>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/incidents/{id}`: the incident and its timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    #[serde(default)]
    pub timeline: Vec<Event>,
}

/// The body of `POST /api/v1/runbooks/{name}/runs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunRequest {
    /// Parameter values; strings are typed by the runbook's declarations.
    pub params: Map<String, Value>,
    pub dry_run: bool,
    /// Starting twice with the same key starts one run.
    pub idempotency_key: Option<String>,
    /// The incident the run acts for.
    pub incident: Option<IncidentId>,
}

/// The answer to a run request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedRun {
    pub id: RunId,
    /// The idempotency key had already started this run.
    #[serde(default)]
    pub duplicate: bool,
}

/// The answer to approve/deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub id: RunId,
    /// `approved` or `denied`.
    pub decision: String,
    pub by: String,
}

/// `GET /api/v1/automation` and the answer to pause/resume: the server's own type.
pub use crate::automation::AutomationView as AutomationState;

/// The answer to a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteStored {
    pub status: String,
    pub incident: IncidentId,
}

/// `POST /api/v1/alerts` answered 200: the alerts are on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAnswer {
    /// `stored`.
    pub status: String,
    pub alerts: usize,
    /// The incidents these alerts opened.
    pub opened: Vec<IncidentId>,
    pub joined: usize,
    pub resolved: usize,
    pub repeats: usize,
    pub stale: usize,
}

/// One runbook of `GET /api/v1/runbooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunbookInfo {
    pub name: String,
    pub description: String,
    pub params: Vec<ParamInfo>,
    pub steps: Vec<StepInfo>,
}

/// A runbook parameter as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    /// `string`, `int`, `bool` or `list`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub default: Option<Value>,
    #[serde(default)]
    pub allowed: Vec<Value>,
    #[serde(default)]
    pub description: String,
}

/// A runbook step as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub id: String,
    pub action: String,
}

impl ApiClient {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:9095`),
    /// showing `token` when there is one.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Self {
        Self::with_http(base, token, reqwest::Client::new())
    }

    /// The same over an HTTP client of your own (a private CA, say).
    pub fn with_http(base: impl Into<String>, token: Option<String>, http: reqwest::Client) -> Self {
        let base = base.into().trim_end_matches('/').to_string();
        ApiClient {
            base,
            token: token.map(Secret::new),
            http,
        }
    }

    /// The server's URL, as requests use it.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1/incidents`, newest first.
    pub async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>, ClientError> {
        let mut pairs = Vec::new();
        pairs.extend(query.limit.map(|l| ("limit", l.to_string())));
        pairs.extend(query.status.map(|s| ("status", s.as_str().to_string())));
        pairs.extend(query.severity.map(|s| ("severity", s.as_str().to_string())));
        let request = self.request(Method::GET, "/api/v1/incidents").query(&pairs);
        self.json(request, "an incident list").await
    }

    /// `GET /api/v1/incidents/{id}`, with its timeline.
    pub async fn incident(&self, id: impl std::fmt::Display) -> Result<IncidentDetail, ClientError> {
        let request = self.request(Method::GET, &format!("/api/v1/incidents/{}", segment(&id.to_string())));
        self.json(request, "an incident").await
    }

    /// `POST /api/v1/incidents/{id}/notes`.
    pub async fn add_note(
        &self,
        id: impl std::fmt::Display,
        kind: NoteKind,
        text: &str,
    ) -> Result<NoteStored, ClientError> {
        self.note(id, &serde_json::json!({"kind": kind, "text": text})).await
    }

    /// `POST /api/v1/incidents/{id}/notes` with the body as given
    /// (`{"kind", "text"}`, and `"owner"`, `"due"` for an action item).
    pub async fn note(&self, id: impl std::fmt::Display, body: &serde_json::Value) -> Result<NoteStored, ClientError> {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/incidents/{}/notes", segment(&id.to_string())),
            )
            .json(body);
        self.json(request, "a stored note").await
    }

    /// `POST /api/v1/incidents/{id}/severity` `{"severity", "reason"}`.
    pub async fn set_severity(
        &self,
        id: impl std::fmt::Display,
        severity: Severity,
        reason: &str,
    ) -> Result<Incident, ClientError> {
        self.lifecycle(
            id,
            "severity",
            serde_json::json!({"severity": severity, "reason": reason}),
        )
        .await
    }

    /// `POST /api/v1/incidents/{id}/reopen` `{"reason"}`: the incident, open again.
    pub async fn reopen(&self, id: impl std::fmt::Display, reason: &str) -> Result<Incident, ClientError> {
        self.lifecycle(id, "reopen", serde_json::json!({"reason": reason}))
            .await
    }

    /// `POST /api/v1/incidents/{id}/resolve` with `{"reason"}` when one is given.
    pub async fn resolve_because(
        &self,
        id: impl std::fmt::Display,
        reason: Option<&str>,
    ) -> Result<Incident, ClientError> {
        let body = match reason {
            Some(r) => serde_json::json!({"reason": r}),
            None => serde_json::json!({}),
        };
        self.lifecycle(id, "resolve", body).await
    }

    async fn lifecycle(
        &self,
        id: impl std::fmt::Display,
        verb: &str,
        body: serde_json::Value,
    ) -> Result<Incident, ClientError> {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/incidents/{}/{verb}", segment(&id.to_string())),
            )
            .json(&body);
        self.json(request, "an incident").await
    }

    /// `POST /api/v1/incidents/{id}/ack`: the incident (the first ack counts).
    pub async fn ack(&self, id: impl std::fmt::Display) -> Result<Incident, ClientError> {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/incidents/{}/ack", segment(&id.to_string())),
            )
            .json(&serde_json::json!({}));
        self.json(request, "an incident").await
    }

    /// `POST /api/v1/incidents/{id}/assign` with `{"commander", "responders",
    /// "add_responders"}` (the keys given): the incident as assigned.
    pub async fn assign(&self, id: impl std::fmt::Display, body: &serde_json::Value) -> Result<Incident, ClientError> {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/incidents/{}/assign", segment(&id.to_string())),
            )
            .json(body);
        self.json(request, "an incident").await
    }

    /// `POST /api/v1/incidents/{id}/resolve`: the resolved incident.
    pub async fn resolve(&self, id: impl std::fmt::Display) -> Result<Incident, ClientError> {
        let request = self.request(
            Method::POST,
            &format!("/api/v1/incidents/{}/resolve", segment(&id.to_string())),
        );
        self.json(request, "an incident").await
    }

    /// `GET /api/v1/incidents/{id}/postmortem`: markdown.
    pub async fn postmortem(&self, id: impl std::fmt::Display) -> Result<String, ClientError> {
        let request = self.request(
            Method::GET,
            &format!("/api/v1/incidents/{}/postmortem", segment(&id.to_string())),
        );
        self.text(request).await
    }

    /// `GET /api/v1/runbooks`.
    pub async fn runbooks(&self) -> Result<Vec<RunbookInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/runbooks"), "a runbook list")
            .await
    }

    /// `POST /api/v1/runbooks/{name}/runs`: the new run's id (or, for a
    /// repeated idempotency key, the first run's).
    pub async fn start_run(&self, runbook: &str, run: &RunRequest) -> Result<StartedRun, ClientError> {
        let request = self
            .request(Method::POST, &format!("/api/v1/runbooks/{}/runs", segment(runbook)))
            .json(run);
        self.json(request, "a started run").await
    }

    /// `GET /api/v1/runs/{id}`.
    pub async fn run(&self, id: impl std::fmt::Display) -> Result<Run, ClientError> {
        let request = self.request(Method::GET, &format!("/api/v1/runs/{}", segment(&id.to_string())));
        self.json(request, "a run").await
    }

    /// `GET /api/v1/runs`: runs of the last 30 days, newest first.
    pub async fn runs(&self, query: &RunQuery) -> Result<Vec<Run>, ClientError> {
        let mut pairs = Vec::new();
        pairs.extend(query.playbook.as_ref().map(|p| ("playbook", p.clone())));
        pairs.extend(query.runbook.as_ref().map(|r| ("runbook", r.clone())));
        pairs.extend(query.status.map(|s| ("status", s.as_str().to_string())));
        pairs.extend(query.incident.map(|i| ("incident", i.to_string())));
        pairs.extend(query.limit.map(|l| ("limit", l.to_string())));
        let request = self.request(Method::GET, "/api/v1/runs").query(&pairs);
        self.json(request, "a run list").await
    }

    /// `POST /api/v1/runs/{id}/approve`.
    pub async fn approve(&self, id: impl std::fmt::Display) -> Result<Decision, ClientError> {
        self.decide(id, "approve").await
    }

    /// `POST /api/v1/runs/{id}/deny`.
    pub async fn deny(&self, id: impl std::fmt::Display) -> Result<Decision, ClientError> {
        self.decide(id, "deny").await
    }

    async fn decide(&self, id: impl std::fmt::Display, verb: &str) -> Result<Decision, ClientError> {
        let request = self.request(
            Method::POST,
            &format!("/api/v1/runs/{}/{verb}", segment(&id.to_string())),
        );
        self.json(request, "a decision").await
    }

    /// `POST /api/v1/runs/{id}/retry`: a new run from a step (the failed one by default).
    pub async fn retry(
        &self,
        id: impl std::fmt::Display,
        from_step: Option<&str>,
        dry_run: Option<bool>,
    ) -> Result<StartedRun, ClientError> {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/runs/{}/retry", segment(&id.to_string())),
            )
            .json(&serde_json::json!({"from_step": from_step, "dry_run": dry_run}));
        self.json(request, "a started run").await
    }

    /// `POST /api/v1/runs/{id}/cancel`: stops a run going on (409 once it ended).
    pub async fn cancel(&self, id: impl std::fmt::Display, reason: Option<&str>) -> Result<Value, ClientError> {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/runs/{}/cancel", segment(&id.to_string())),
            )
            .json(&serde_json::json!({ "reason": reason }));
        self.json(request, "a cancel").await
    }

    /// `GET /api/v1/catalog`: the catalog revision in force.
    pub async fn catalog(&self) -> Result<crate::live::Reloaded, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/catalog"), "a catalog revision")
            .await
    }

    /// `POST /api/v1/reload` (admin): loads the catalog again. A catalog
    /// with problems is `BadRequest` (422) with every problem in the message.
    pub async fn reload(&self) -> Result<crate::live::Reloaded, ClientError> {
        self.json(self.request(Method::POST, "/api/v1/reload"), "a reloaded catalog")
            .await
    }

    /// `GET /api/v1/approvals`: approval steps waiting for a person.
    pub async fn approvals(&self) -> Result<Vec<crate::run::PendingApproval>, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/approvals"), "a list of approvals")
            .await
    }

    /// `GET /api/v1/automation`.
    pub async fn automation(&self) -> Result<AutomationState, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/automation"), "an automation state")
            .await
    }

    /// `POST /api/v1/automation/pause`: everything, or one playbook.
    pub async fn pause(&self, playbook: Option<&str>, reason: Option<&str>) -> Result<AutomationState, ClientError> {
        let request = self
            .request(Method::POST, "/api/v1/automation/pause")
            .json(&serde_json::json!({"playbook": playbook, "reason": reason}));
        self.json(request, "an automation state").await
    }

    /// `POST /api/v1/automation/resume`: everything, or one playbook.
    pub async fn resume(&self, playbook: Option<&str>) -> Result<AutomationState, ClientError> {
        let request = self
            .request(Method::POST, "/api/v1/automation/resume")
            .json(&serde_json::json!({ "playbook": playbook }));
        self.json(request, "an automation state").await
    }

    /// `GET /api/v1/audit`, newest first.
    pub async fn audit(&self, limit: Option<usize>) -> Result<Vec<Audit>, ClientError> {
        let pairs: Vec<(&str, String)> = limit.map(|l| ("limit", l.to_string())).into_iter().collect();
        let request = self.request(Method::GET, "/api/v1/audit").query(&pairs);
        self.json(request, "an audit list").await
    }

    /// `POST /api/v1/alerts` with an AlertManager webhook body, sent as is.
    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> Result<WebhookAnswer, ClientError> {
        let request = self
            .request(Method::POST, "/api/v1/alerts")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.json(request, "a webhook answer").await
    }

    /// `GET /metrics`: the Prometheus text format.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.text(self.request(Method::GET, "/metrics")).await
    }

    /// `GET /healthz`: `ok` while the server serves.
    pub async fn healthz(&self) -> Result<String, ClientError> {
        self.text(self.request(Method::GET, "/healthz")).await
    }

    /// Any route with any body, answered as JSON: for callers that probe
    /// routes on purpose (wrong methods, broken bodies). Prefer the typed
    /// methods.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Value, ClientError> {
        let request = self
            .request(method, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.json(request, "JSON").await
    }

    /// Any route with any body, answered as the HTTP response itself
    /// whatever its status: for callers that check the HTTP of an answer
    /// (a `202 Accepted`, a content type). Only no answer is an error.
    pub async fn send_raw_response(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::Response, ClientError> {
        self.request(method, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                server: self.base.clone(),
                source,
            })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(TIMEOUT);
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends a request; a success comes back as its body, anything else
    /// as the error its status says.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(String, StatusCode, Vec<u8>), ClientError> {
        let connect = |source| ClientError::Connect {
            server: self.base.clone(),
            source,
        };
        let response = request.send().await.map_err(connect)?;
        let status = response.status();
        // Without the query: it may carry what a caller filtered on, nothing more.
        let mut url = response.url().clone();
        url.set_query(None);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response.bytes().await.map_err(connect)?.to_vec();
        if status.is_success() {
            return Ok((url.to_string(), status, body));
        }
        Err(status_error(status, error_message(&body), retry_after))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        expected: &'static str,
    ) -> Result<T, ClientError> {
        let (url, status, body) = self.send(request).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
            url,
            status,
            expected,
            detail: e.to_string(),
        })
    }

    async fn text(&self, request: reqwest::RequestBuilder) -> Result<String, ClientError> {
        let (url, status, body) = self.send(request).await?;
        String::from_utf8(body).map_err(|e| ClientError::BadResponse {
            url,
            status,
            expected: "UTF-8 text",
            detail: e.to_string(),
        })
    }
}

fn status_error(status: StatusCode, message: String, retry_after: Option<u64>) -> ClientError {
    match status.as_u16() {
        401 => ClientError::Unauthorized { message },
        403 => ClientError::Forbidden { message },
        404 => ClientError::NotFound { message },
        409 => ClientError::Conflict { message },
        400 | 413 | 422 => ClientError::BadRequest { status, message },
        500..=599 => ClientError::Server {
            status,
            message,
            retry_after,
        },
        _ => ClientError::Unexpected { status, message },
    }
}

/// The `error` of a `{"error": ...}` body; a body that is not JSON (a
/// proxy's page) as its first line of text.
fn error_message(body: &[u8]) -> String {
    const NO_REASON: &str = "no reason given";
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or(NO_REASON)
            .to_string();
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(NO_REASON);
    line.chars().take(200).collect()
}

/// One path segment, percent-encoded: an id like `../x` stays one segment.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::http::{header, HeaderValue};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;

    const TOKEN: &str = "secret-token-4f9a";

    /// A server on a loopback port whose routes answer as the test says.
    async fn serve(router: Router) -> ApiClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        ApiClient::new(format!("http://{addr}/"), Some(TOKEN.to_string()))
    }

    fn answer(status: u16, body: &'static str) -> Response {
        let status = axum::http::StatusCode::from_u16(status).expect("a valid status");
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    async fn error_for(status: u16, body: &'static str) -> ClientError {
        let client =
            serve(Router::new().route("/api/v1/runs/{id}", get(move || async move { answer(status, body) }))).await;
        client.run("RUN-1").await.expect_err("an error status is an error")
    }

    #[tokio::test]
    async fn a_401_is_unauthorized_with_the_servers_message_and_a_hint_about_the_token_variable() {
        let e = error_for(401, r#"{"error": "the token is not valid"}"#).await;
        assert!(matches!(&e, ClientError::Unauthorized { message } if message == "the token is not valid"));
        assert_eq!(
            e.to_string(),
            "401 Unauthorized: the token is not valid; set $LAOJUN_API_TOKEN to a token the server accepts"
        );
    }

    #[tokio::test]
    async fn forbidden_not_found_and_conflict_carry_the_servers_message() {
        let e = error_for(403, r#"{"error": "token `grafana` (viewer) may not POST"}"#).await;
        assert!(
            matches!(&e, ClientError::Forbidden { message } if message.contains("viewer")),
            "{e:?}"
        );
        let e = error_for(404, r#"{"error": "no run RUN-1"}"#).await;
        assert!(matches!(&e, ClientError::NotFound { .. }), "{e:?}");
        assert_eq!(e.to_string(), "404 Not Found: no run RUN-1");
        let e = error_for(409, r#"{"error": "RUN-1 is not waiting for an approval"}"#).await;
        assert!(matches!(&e, ClientError::Conflict { .. }), "{e:?}");
        assert_eq!(e.to_string(), "409 Conflict: RUN-1 is not waiting for an approval");
        assert_eq!(e.status(), Some(StatusCode::CONFLICT));
        assert_eq!(e.message(), Some("RUN-1 is not waiting for an approval"));
    }

    #[tokio::test]
    async fn bad_requests_keep_their_status_and_message() {
        for status in [400, 413, 422] {
            let e = error_for(status, r#"{"error": "missing field `alerts`"}"#).await;
            assert!(
                matches!(&e, ClientError::BadRequest { status: s, message } if s.as_u16() == status && message == "missing field `alerts`"),
                "{e:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_503_is_a_server_error_with_its_retry_after() {
        let client = serve(Router::new().route(
            "/api/v1/runs/{id}",
            get(|| async {
                let mut r = answer(503, r#"{"error": "laojun is busy (intake queue full); retry shortly"}"#);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }),
        ))
        .await;
        let e = client.run("RUN-1").await.expect_err("503 is an error");
        assert!(
            matches!(&e, ClientError::Server { status, retry_after: Some(1), .. } if status.as_u16() == 503),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "503 Service Unavailable: laojun is busy (intake queue full); retry shortly"
        );
    }

    #[tokio::test]
    async fn an_error_without_a_json_body_says_what_the_body_said_or_that_none_was_given() {
        let e = error_for(502, "<html>\n  Bad gateway from the proxy\n</html>").await;
        assert_eq!(e.message(), Some("<html>"));
        let e = error_for(500, "").await;
        assert_eq!(e.to_string(), "500 Internal Server Error: no reason given");
        let e = error_for(404, r#"{"detail": "elsewhere"}"#).await;
        assert_eq!(e.message(), Some("no reason given"));
        let e = error_for(307, "").await;
        assert!(matches!(e, ClientError::Unexpected { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_success_with_a_body_of_the_wrong_shape_is_a_bad_response_naming_the_url() {
        let e = error_for(200, r#"{"id": 7}"#).await;
        let ClientError::BadResponse { url, expected, .. } = &e else {
            panic!("expected a bad response, got {e:?}")
        };
        assert!(url.ends_with("/api/v1/runs/RUN-1"), "{url}");
        assert_eq!(*expected, "a run");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_server_and_how_to_point_at_another() {
        // A port that was just free: bind, note it, close it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = listener.local_addr().expect("bound address");
        drop(listener);
        let client = ApiClient::new(format!("http://{addr}"), Some(TOKEN.to_string()));
        let e = client
            .incidents(&IncidentQuery::default())
            .await
            .expect_err("nothing listens");
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert_eq!(e.status(), None);
        let text = e.to_string();
        assert!(text.contains(&format!("http://{addr}")), "{text}");
        assert!(text.contains("--server") && text.contains("LAOJUN_URL"), "{text}");
    }

    #[tokio::test]
    async fn the_token_is_sent_as_a_bearer_and_never_shows_in_debug_or_errors() {
        let client = serve(Router::new().route(
            "/api/v1/automation",
            get(|headers: axum::http::HeaderMap| async move {
                if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
                {
                    answer(
                        200,
                        r#"{"paused": true, "by": "alice", "reason": null, "since": "2026-12-01T10:00:00Z"}"#,
                    )
                } else {
                    answer(401, r#"{"error": "the token is not valid"}"#)
                }
            }),
        ))
        .await;
        let state = client.automation().await.expect("the token is accepted");
        assert!(state.paused && state.by.as_deref() == Some("alice"), "{state:?}");
        assert!(!format!("{client:?}").contains(TOKEN));
        let e = client.run("RUN-1").await.expect_err("no such route");
        assert!(!format!("{e} {e:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn ids_are_sent_as_one_path_segment() {
        let client = serve(Router::new().route(
            "/api/v1/incidents/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({"error": format!("no incident {id}")})),
                )
            }),
        ))
        .await;
        let e = client.incident("../etc/passwd").await.expect_err("404");
        assert_eq!(e.message(), Some("no incident ../etc/passwd"));
    }
}
