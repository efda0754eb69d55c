//! The routes people run an incident with: ack, assign, severity, notes,
//! resolve and reopen. Each checks its body (a 400 names the field and
//! what to send), applies one `Change` through the writer, audits it once
//! it took effect, and answers the incident as it is now.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{incident_id, optional_body};
use super::{ApiError, AppState};
use crate::incident::NoteKind;
use crate::ledger::{Assignment, Change, Note};
use crate::severity::Severity;

type ApiResult = Result<Json<Value>, ApiError>;

/// Longest note text, and longest reason.
const MAX_NOTE_BYTES: usize = 64 * 1024;
const MAX_REASON_BYTES: usize = 4 * 1024;

/// Applies `change`, audits it if it took effect, answers the incident.
async fn apply(state: &AppState, caller: &Caller, id: &str, change: Change, detail: Option<String>) -> ApiResult {
    let n = incident_id(id)?;
    let action = change.action();
    // The writer decides whether it took effect (which ack was first), so
    // two requests at once audit one.
    let changed = state.writer.change(n, change, &caller.name).await?;
    if changed.took_effect {
        state.writer.audit(&caller.name, action, id, detail).await;
    }
    // The writer answers with the record; the answer shows the alerts too.
    let incident = state
        .read(move |store| store.incident(n))
        .await?
        .unwrap_or(*changed.incident);
    Ok(Json(json!(incident)))
}

fn json_body<T>(body: Result<Json<T>, axum::extract::rejection::JsonRejection>, shape: &str) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(format!("{}; {shape}", e.body_text())))
}

/// A reason as given: trimmed, not empty, not too long.
fn reason(field: &str, text: Option<String>) -> Result<String, ApiError> {
    let text = text.unwrap_or_default().trim().to_string();
    if text.is_empty() || text.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "`{field}` must say why (1 to {MAX_REASON_BYTES} bytes of text)"
        )));
    }
    Ok(text)
}

/// A person's name as given: trimmed, not empty, one line, not too long.
fn person(field: &str, name: String) -> Result<String, ApiError> {
    let name = name.trim().to_string();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must name a person (1 to 200 characters, one line)"
        )));
    }
    Ok(name)
}

/// `POST /api/v1/incidents/{id}/ack` (body `{}` or none): the first ack
/// counts; a later one answers the incident, naming the first.
pub async fn post_ack(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    incident_id(&id)?;
    let empty: serde_json::Map<String, Value> = optional_body(&body, "send `{}` or no body to acknowledge")?;
    if !empty.is_empty() {
        return Err(ApiError::bad_request("send `{}` or no body to acknowledge"));
    }
    apply(&state, &caller, &id, Change::Ack, None).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    commander: Option<String>,
    responders: Option<Vec<String>>,
    add_responders: Option<Vec<String>>,
}

const ASSIGN_SHAPE: &str =
    r#"send {"commander": "NAME", "responders": ["NAME", ...]} (either key; "add_responders" adds to the list)"#;

/// `POST /api/v1/incidents/{id}/assign`: names the commander and/or the
/// responders.
pub async fn post_assign(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<AssignBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    incident_id(&id)?;
    let body = json_body(body, ASSIGN_SHAPE)?;
    if body.commander.is_none() && body.responders.is_none() && body.add_responders.is_none() {
        return Err(ApiError::bad_request(format!("nothing to assign; {ASSIGN_SHAPE}")));
    }
    let names = |field: &str, list: Option<Vec<String>>| -> Result<Option<Vec<String>>, ApiError> {
        list.map(|l| l.into_iter().map(|name| person(field, name)).collect())
            .transpose()
    };
    let change = Assignment {
        commander: body.commander.map(|c| person("commander", c)).transpose()?,
        responders: names("responders", body.responders)?,
        add: names("add_responders", body.add_responders)?.unwrap_or_default(),
    };
    apply(&state, &caller, &id, Change::Assign(change), None).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityBody {
    severity: Option<String>,
    reason: Option<String>,
}

const SEVERITY_SHAPE: &str = r#"send {"severity": "P0".."P3", "reason": "why"}"#;

/// `POST /api/v1/incidents/{id}/severity`: a person raises or lowers it.
pub async fn post_severity(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<SeverityBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    incident_id(&id)?;
    let body = json_body(body, SEVERITY_SHAPE)?;
    let given = body.severity.unwrap_or_default();
    let severity = Severity::parse(given.trim().to_ascii_uppercase().as_str()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`severity` must be one of {} (got {given:?}); {SEVERITY_SHAPE}",
            Severity::NAMES.join(", ")
        ))
    })?;
    let reason = reason("reason", body.reason)?;
    let detail = Some(format!("{severity}: {reason}"));
    apply(&state, &caller, &id, Change::Severity { severity, reason }, detail).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<String>,
}

/// `POST /api/v1/incidents/{id}/resolve` (body `{"reason": ...}`, `{}` or
/// none): resolves by hand.
pub async fn post_resolve(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    incident_id(&id)?;
    let body: ReasonBody = optional_body(&body, r#"send {"reason": "why"} or no body"#)?;
    let reason = body.reason.map(|r| reason("reason", Some(r))).transpose()?;
    let detail = reason.clone();
    apply(&state, &caller, &id, Change::Resolve { reason }, detail).await
}

/// `POST /api/v1/incidents/{id}/reopen` `{"reason": ...}`: a resolved
/// incident opens again; its group's later alerts join it.
pub async fn post_reopen(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    incident_id(&id)?;
    let body: ReasonBody = optional_body(&body, r#"send {"reason": "why"}"#)?;
    let reason = reason("reason", body.reason)?;
    let detail = Some(reason.clone());
    apply(&state, &caller, &id, Change::Reopen { reason }, detail).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    kind: Option<String>,
    text: Option<String>,
    owner: Option<String>,
    due: Option<String>,
}

fn note_shape() -> String {
    format!(
        r#"send {{"kind": one of {}, "text": "..."}} (an action_item also takes "owner": "NAME", "due": "YYYY-MM-DD")"#,
        NoteKind::NAMES.join(", ")
    )
}

/// `POST /api/v1/incidents/{id}/notes` with `{"kind", "text"}` (and
/// `owner`, `due` for an action item).
pub async fn post_note(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<NoteBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let n = incident_id(&id)?;
    let body = json_body(body, &note_shape())?;
    let kind = match body.kind.as_deref() {
        None => NoteKind::Note,
        Some(k) => NoteKind::parse(k)
            .ok_or_else(|| ApiError::bad_request(format!("`kind` {k:?} is not a note kind; {}", note_shape())))?,
    };
    let text = body.text.unwrap_or_default();
    if text.trim().is_empty() || text.len() > MAX_NOTE_BYTES {
        return Err(ApiError::bad_request(format!(
            "`text` must hold between 1 and {MAX_NOTE_BYTES} bytes"
        )));
    }
    let (owner, due) = if kind == NoteKind::ActionItem {
        let owner = person("owner", body.owner.unwrap_or_default())?;
        let due = body.due.unwrap_or_default();
        let due = chrono::NaiveDate::parse_from_str(due.trim(), "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(format!(
                "`due` must be a date written YYYY-MM-DD, e.g. 2026-12-31 (got {due:?})"
            ))
        })?;
        (Some(owner), Some(due))
    } else {
        if body.owner.is_some() || body.due.is_some() {
            return Err(ApiError::bad_request(
                "`owner` and `due` belong to action items; send \"kind\": \"action_item\" or leave them out",
            ));
        }
        (None, None)
    };
    let note = Note { kind, text, owner, due };
    let _incident = apply(
        &state,
        &caller,
        &id,
        Change::Note(note),
        Some(kind.as_str().to_string()),
    )
    .await?;
    Ok(Json(json!({"status": "stored", "incident": n, "kind": kind})))
}
