//! Route handlers of `/api/v1`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::incident_id;
use super::{ApiError, AppState};
use crate::alert;
use crate::incident::Status;
use crate::ledger::AlertOutcome;
use crate::severity::Severity;
use crate::store::IncidentFilter;

type ApiResult = Result<Json<Value>, ApiError>;

/// `POST /api/v1/alerts`: answers 200 only after the alerts are on disk.
pub async fn post_alerts(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult {
    let outcome = |o: &str| state.metrics.webhooks.with_label_values(&[o]).inc();
    let body = match read_limited(body, state.max_body).await {
        Ok(bytes) => bytes,
        Err(BodyProblem::TooLarge) => {
            outcome("too_large");
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than the limit of {} bytes (intake.max_body_bytes); lower AlertManager's max_alerts or raise the limit", state.max_body),
            ));
        }
        Err(BodyProblem::Broken(why)) => {
            outcome("bad_request");
            return Err(ApiError::bad_request(format!("the body cannot be read: {why}")));
        }
    };
    let (hook, alerts) = alert::parse(&body).map_err(|e| {
        outcome("bad_request");
        ApiError::bad_request(e.0)
    })?;
    if let (alert::Sender::Grafana, Some(grafana)) = (hook.sender(), &state.grafana) {
        grafana
            .verify(&headers, &body, chrono::Utc::now().timestamp())
            .map_err(|why| {
                outcome("unauthorized");
                ApiError::new(StatusCode::UNAUTHORIZED, why)
            })?;
    }
    let statuses: Vec<&'static str> = alerts.iter().map(|a| a.status.as_str()).collect();
    let applied = state.writer.alerts(alerts).await.map_err(|e| {
        outcome("unavailable");
        ApiError::unavailable(e.to_string())
    })?;
    outcome("accepted");
    let mut counts = [0usize; 5];
    for (status, o) in statuses.iter().zip(&applied.outcomes) {
        let (i, name) = match o {
            AlertOutcome::Opened => (0, "opened"),
            AlertOutcome::Joined => (1, "joined"),
            AlertOutcome::Resolved => (2, "resolved"),
            AlertOutcome::Repeat => (3, "repeat"),
            AlertOutcome::Stale => (4, "stale"),
        };
        counts[i] += 1;
        state.metrics.alerts.with_label_values(&[status, name]).inc();
    }
    let opened: Vec<String> = applied.opened.iter().map(|o| o.incident.id.to_string()).collect();
    Ok(Json(json!({
        "status": "stored",
        "alerts": applied.outcomes.len(),
        "opened": opened,
        "joined": counts[1],
        "resolved": counts[2],
        "repeats": counts[3],
        "stale": counts[4],
    })))
}

enum BodyProblem {
    TooLarge,
    Broken(String),
}

/// Past the limit, a body is read on (and dropped) up to this size before
/// the 413 goes out: a sender still writing when the connection closes sees
/// a network error and retries, where a 413 tells it to stop.
const DRAIN_CAP: usize = 64 * 1024 * 1024;

/// Reads a body up to `limit` bytes.
async fn read_limited(body: axum::body::Body, limit: usize) -> Result<Bytes, BodyProblem> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyProblem::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total <= limit {
            buf.extend_from_slice(&data);
        } else if total > DRAIN_CAP {
            break;
        }
    }
    if total > limit {
        return Err(BodyProblem::TooLarge);
    }
    Ok(Bytes::from(buf))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/incidents[?status=&severity=&limit=]`, newest first.
pub async fn list_incidents(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query
        .map_err(|e| ApiError::bad_request(format!("{}; the filters are status, severity and limit", e.body_text())))?;
    let status = q
        .status
        .map(|s| {
            Status::parse(&s).ok_or_else(|| {
                ApiError::bad_request(format!("status {s:?} is not one of {}", Status::NAMES.join(", ")))
            })
        })
        .transpose()?;
    let severity = q
        .severity
        .map(|s| {
            Severity::parse(&s).ok_or_else(|| {
                ApiError::bad_request(format!("severity {s:?} is not one of {}", Severity::NAMES.join(", ")))
            })
        })
        .transpose()?;
    let filter = IncidentFilter {
        status,
        severity,
        limit: q.limit.unwrap_or(100).clamp(1, 10_000),
    };
    let incidents = state.read(move |store| store.incidents(&filter)).await?;
    Ok(Json(json!(incidents)))
}

/// `GET /api/v1/incidents/{id}`: the incident with its `timeline`.
pub async fn get_incident(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let n = incident_id(&id)?;
    let (incident, timeline) = state
        .read(move |store| Ok((store.incident(n)?, store.timeline(n)?)))
        .await?;
    let incident = incident.ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let mut value = json!(incident);
    value["timeline"] = json!(timeline);
    Ok(Json(value))
}

/// `GET /api/v1/runbooks`: runbooks with their parameters.
pub async fn list_runbooks(State(state): State<Arc<AppState>>) -> ApiResult {
    let catalog = state.live.catalog();
    let list: Vec<Value> = catalog
        .runbooks
        .values()
        .map(|rb| {
            let params: Vec<Value> = rb
                .params
                .iter()
                .map(|p| json!({"name": p.name, "type": p.kind.name(), "required": p.required, "default": p.default, "allowed": p.allowed, "description": p.description}))
                .collect();
            let steps: Vec<Value> = rb.steps.iter().map(|s| json!({"id": s.id, "action": s.action.name()})).collect();
            json!({"name": rb.name, "description": rb.description, "params": params, "steps": steps})
        })
        .collect();
    Ok(Json(json!(list)))
}

/// `GET /api/v1/incidents/{id}/postmortem`: the postmortem, as markdown.
pub async fn get_postmortem(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let n = incident_id(&id)?;
    if state.read(move |store| store.incident_record(n)).await?.is_none() {
        return Err(ApiError::not_found(format!("no incident {id}")));
    }
    let (store, postmortems) = (state.store.clone(), state.live.postmortems());
    let text = tokio::task::spawn_blocking(move || postmortems.render_stored(store.as_ref(), n))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok(([("content-type", "text/markdown; charset=utf-8")], text).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/audit[?limit=]`: who did what, newest first.
pub async fn get_audit(
    State(state): State<Arc<AppState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("{}; the only filter is limit", e.body_text())))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let records = state.read(move |store| store.audit(limit)).await?;
    Ok(Json(json!(records)))
}

/// `GET /api/v1/catalog`: the revision in force and when it was loaded.
pub async fn catalog(State(state): State<Arc<AppState>>) -> Json<crate::live::Reloaded> {
    Json(crate::live::Reloaded::of(&state.live.catalog()))
}

/// `POST /api/v1/reload` (admin): loads runbooks/, playbooks/ and
/// templates/ again; a catalog with problems changes nothing and gets 422
/// with every problem.
pub async fn reload(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<crate::live::Reloaded>, axum::response::Response> {
    use axum::response::IntoResponse;
    match state.reload.reload().await {
        Ok(reloaded) => {
            let detail = format!("revision {}", reloaded.revision);
            state
                .writer
                .audit(&caller.name, "reload", "catalog", Some(detail))
                .await;
            Ok(Json(reloaded))
        }
        Err(crate::live::ReloadError::Problems(problems)) => {
            let body = json!({"error": format!("the catalog has {} problem(s); nothing changed", problems.len()), "problems": problems});
            Err((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
        }
        Err(crate::live::ReloadError::Failed(why)) => Err(ApiError::unavailable(why).into_response()),
    }
}
