//! Route handlers for runs and automation control: manual runs,
//! approvals, pause and resume.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::Caller;
use super::error::{optional_body, run_id};
use super::{ApiError, AppState};
use crate::actions::approval::Decider;
use crate::automation::AutomationView;
use crate::executor::{ExecError, ManualRun, PendingApproval, Started, Trigger};
use crate::run::RunStatus;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// An incident the run acts for (its timeline gets the run).
    #[serde(default)]
    incident: Option<String>,
}

/// `POST /api/v1/runbooks/{name}/runs` → 202 `{"id": "RUN-7"}`.
pub async fn start_run(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: RunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "{e}; send {{\"params\": {{...}}, \"dry_run\": false, \"idempotency_key\": \"...\"}}"
            ))
        })?
    };
    let header_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = body.idempotency_key.or(header_key).filter(|k| !k.is_empty());
    if key.as_ref().is_some_and(|k| k.len() > 200) {
        return Err(ApiError::bad_request("the idempotency key is longer than 200 bytes"));
    }
    let incident = body
        .incident
        .as_deref()
        .map(|text| {
            text.parse().map_err(|e| {
                ApiError::bad_request(format!("`incident`: {e}; send the id of the incident the run acts for"))
            })
        })
        .transpose()?;
    let (who, runbook, dry) = (caller.name.clone(), name.clone(), body.dry_run);
    let request = ManualRun {
        runbook: name,
        params: body.params,
        dry_run: body.dry_run,
        by: caller.name,
        idempotency_key: key,
        incident,
    };
    let started = state.executor.start(Trigger::Manual(request)).await?;
    let Some(Started { id, duplicate }) = started.into_iter().next() else {
        return Err(ApiError::unavailable("the run could not be started"));
    };
    if !duplicate {
        let detail = format!("runbook {runbook}{}", if dry { " (dry run)" } else { "" });
        state.writer.audit(&who, "run", &id.to_string(), Some(detail)).await;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "duplicate": duplicate}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    playbook: Option<String>,
    runbook: Option<String>,
    status: Option<RunStatus>,
    incident: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/runs[?playbook=&runbook=&limit=]`: runs of the last 30 days, newest first.
pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    query: Result<axum::extract::Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; the filters are playbook, runbook, status (pending, running, awaiting_approval, succeeded, failed, interrupted, paused, refused, skipped), incident and limit",
            e.body_text()
        ))
    })?;
    let incident = q.incident.as_deref().map(super::error::incident_id).transpose()?;
    let since = chrono::Utc::now() - chrono::Duration::days(30);
    let runs = state.read(move |store| store.runs_since(since)).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let list: Vec<Value> = runs
        .into_iter()
        .filter(|r| q.playbook.as_ref().is_none_or(|p| r.playbook.as_ref() == Some(p)))
        .filter(|r| q.runbook.as_ref().is_none_or(|b| &r.runbook == b))
        .filter(|r| q.status.is_none_or(|s| r.status == s))
        .filter(|r| incident.is_none_or(|i| r.incident == Some(i)))
        .take(limit)
        .map(|r| json!(r))
        .collect();
    Ok(Json(json!(list)))
}

/// `GET /api/v1/runs/{id}`: the run with every step's state.
pub async fn get_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let n = run_id(&id)?;
    let run = state
        .read(move |store| store.run(n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok(Json(json!(run)))
}

pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &id, true, &caller).await
}

pub async fn deny(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &id, false, &caller).await
}

/// Takes a decision once, from someone the step lists; a refusal is
/// audited too (who tried), and changes nothing.
async fn decide(state: &AppState, id: &str, approved: bool, caller: &Caller) -> Result<Json<Value>, ApiError> {
    let n = run_id(id)?;
    let verb = if approved { "approve" } else { "deny" };
    let decider = Decider {
        name: caller.name.clone(),
        role: caller.role,
        anonymous: state.credentials.is_empty(),
        via: None,
    };
    match state.executor.decide(n, approved, &decider) {
        Err(ExecError::Forbidden(why)) => {
            state
                .writer
                .audit(&caller.name, verb, id, Some(format!("refused: {why}")))
                .await;
            Err(ApiError::new(StatusCode::FORBIDDEN, why))
        }
        Err(other) => Err(other.into()),
        Ok(()) => {
            state.writer.audit(&caller.name, verb, id, None).await;
            Ok(Json(
                json!({"id": id, "decision": if approved { "approved" } else { "denied" }, "by": caller.name}),
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    reason: Option<String>,
}

/// `POST /api/v1/runs/{id}/cancel` with optional `{"reason": TEXT}`.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let n = run_id(&id)?;
    let body: CancelBody = optional_body(&body, r#"send {"reason": "TEXT"} (optional), or no body"#)?;
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    state.executor.cancel(n, &caller.name, reason.as_deref())?;
    state.writer.audit(&caller.name, "cancel", &id, reason.clone()).await;
    Ok(Json(json!({"id": id, "cancelled_by": caller.name, "reason": reason})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    from_step: Option<String>,
    dry_run: Option<bool>,
}

/// `POST /api/v1/runs/{id}/retry` with optional `{"from_step", "dry_run"}` → 202 `{"id"}`.
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let n = run_id(&id)?;
    let body: RetryBody = optional_body(
        &body,
        r#"send {"from_step": "ID", "dry_run": false} (both optional), or no body"#,
    )?;
    let request = crate::executor::Retry {
        of: n,
        from_step: body.from_step,
        dry_run: body.dry_run,
        by: caller.name.clone(),
    };
    let started = state.executor.retry(request).await?;
    let detail = format!("retry of {id}");
    state
        .writer
        .audit(&caller.name, "run", &started.id.to_string(), Some(detail))
        .await;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": started.id, "retry_of": id}))))
}

/// `GET /api/v1/approvals`: the approval steps waiting for a person, oldest first.
pub async fn approvals(State(state): State<Arc<AppState>>) -> Json<Vec<PendingApproval>> {
    Json(state.executor.approvals())
}

/// `GET /api/v1/automation`: what is paused, by whom, why and since when.
pub async fn automation(State(state): State<Arc<AppState>>) -> Json<AutomationView> {
    Json(state.executor.automation())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    playbook: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    playbook: Option<String>,
}

/// `POST /api/v1/automation/pause` with optional `{"playbook", "reason"}`.
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<AutomationView>, ApiError> {
    let body: PauseBody = optional_body(
        &body,
        r#"send {"playbook": "NAME", "reason": "TEXT"} (both optional), or no body"#,
    )?;
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(ApiError::bad_request("`reason` is longer than 1000 bytes"));
    }
    let view = state
        .executor
        .pause(&caller.name, body.playbook.as_deref(), reason.clone())
        .await?;
    let target = body
        .playbook
        .map_or_else(|| "automation".to_string(), |p| format!("playbook {p}"));
    state.writer.audit(&caller.name, "pause", &target, reason).await;
    Ok(Json(view))
}

/// `POST /api/v1/automation/resume` with optional `{"playbook"}`.
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<AutomationView>, ApiError> {
    let body: ResumeBody = optional_body(&body, r#"send {"playbook": "NAME"} (optional), or no body"#)?;
    let view = state.executor.resume(&caller.name, body.playbook.as_deref()).await?;
    let target = body
        .playbook
        .map_or_else(|| "automation".to_string(), |p| format!("playbook {p}"));
    state.writer.audit(&caller.name, "resume", &target, None).await;
    Ok(Json(view))
}
