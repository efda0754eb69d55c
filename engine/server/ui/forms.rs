//! What the pages' forms post: each one the same change the API route
//! makes (the writer's `Change`, the executor's compare-and-set decision,
//! pause and resume), audited the same way, then back to the page. A form
//! that does not check gets its page again with why.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};

use super::{refuse, Viewer};
use crate::actions::approval::Decider;
use crate::incident::NoteKind;
use crate::ledger::{Assignment, Change, Note};
use crate::server::AppState;
use crate::severity::Severity;

type Fields = HashMap<String, String>;

fn field(form: &Fields, name: &str) -> String {
    form.get(name).map(|v| v.trim().to_string()).unwrap_or_default()
}

fn optional(form: &Fields, name: &str) -> Option<String> {
    Some(field(form, name)).filter(|v| !v.is_empty())
}

/// `POST /ui/incidents/{id}/{note|ack|assign|severity|resolve|reopen}`.
pub(super) async fn incident(
    State(state): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Response {
    let Ok(n) = id.parse::<crate::ids::IncidentId>() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no incident {id}"));
    };
    let change = match action.as_str() {
        "ack" => Change::Ack,
        "note" => {
            let Some(kind) = NoteKind::parse(&field(&form, "kind")) else {
                return refuse(StatusCode::BAD_REQUEST, "pick the note's kind");
            };
            let Some(text) = optional(&form, "text") else {
                return refuse(StatusCode::BAD_REQUEST, "write the note's text");
            };
            let due = match optional(&form, "due") {
                Some(d) => match chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => return refuse(StatusCode::BAD_REQUEST, "`due` is a date: YYYY-MM-DD"),
                },
                None => None,
            };
            let owner = optional(&form, "owner");
            if kind == NoteKind::ActionItem && (owner.is_none() || due.is_none()) {
                return refuse(StatusCode::BAD_REQUEST, "an action item needs an owner and a due date");
            }
            Change::Note(Note { kind, text, owner, due })
        }
        "assign" => Change::Assign(Assignment {
            commander: optional(&form, "commander"),
            responders: None,
            add: optional(&form, "responder").into_iter().collect(),
        }),
        "severity" => {
            let Some(severity) = Severity::parse(&field(&form, "severity")) else {
                return refuse(StatusCode::BAD_REQUEST, "severity is P0, P1, P2 or P3");
            };
            let Some(reason) = optional(&form, "reason") else {
                return refuse(StatusCode::BAD_REQUEST, "say why the severity changes");
            };
            Change::Severity { severity, reason }
        }
        "resolve" => Change::Resolve {
            reason: optional(&form, "reason"),
        },
        "reopen" => {
            let Some(reason) = optional(&form, "reason") else {
                return refuse(StatusCode::BAD_REQUEST, "say why it opens again");
            };
            Change::Reopen { reason }
        }
        other => return refuse(StatusCode::NOT_FOUND, &format!("no incident action `{other}`")),
    };
    let verb = change.action();
    match state.writer.change(n, change, &viewer.caller.name).await {
        Ok(changed) => {
            if changed.took_effect {
                state.writer.audit(&viewer.caller.name, verb, &id, None).await;
            }
            Redirect::to(&format!("/ui/incidents/{n}")).into_response()
        }
        Err(e) => refuse(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// `POST /ui/runs/{id}/{approve|deny|cancel|retry}`.
pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Response {
    let Ok(n) = id.parse::<crate::ids::RunId>() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no run {id}"));
    };
    let name = viewer.caller.name.clone();
    let back = optional(&form, "back")
        .filter(|b| b.starts_with("/ui/") && !b.contains("//"))
        .unwrap_or_else(|| format!("/ui/runs/{n}"));
    let outcome = match action.as_str() {
        "approve" | "deny" => {
            let decider = Decider {
                name: name.clone(),
                role: viewer.caller.role,
                anonymous: viewer.open,
                via: Some("the web view".into()),
            };
            let approved = action == "approve";
            let decided = state.executor.decide(n, approved, &decider);
            let detail = decided.as_ref().err().map(|e| format!("refused: {e}"));
            state.writer.audit(&name, &action, &id, detail).await;
            decided.map(|()| back)
        }
        "cancel" => state
            .executor
            .cancel(n, &name, optional(&form, "reason").as_deref())
            .map(|()| back),
        "retry" => {
            let request = crate::executor::Retry {
                of: n,
                from_step: optional(&form, "from_step"),
                dry_run: None,
                by: name.clone(),
            };
            state
                .executor
                .retry(request)
                .await
                .map(|started| format!("/ui/runs/{}", started.id))
        }
        other => return refuse(StatusCode::NOT_FOUND, &format!("no run action `{other}`")),
    };
    match outcome {
        Ok(to) => {
            if matches!(action.as_str(), "cancel" | "retry") {
                state.writer.audit(&name, &action, &id, optional(&form, "reason")).await;
            }
            Redirect::to(&to).into_response()
        }
        Err(e) => {
            let status = match &e {
                crate::executor::ExecError::Forbidden(_) => StatusCode::FORBIDDEN,
                crate::executor::ExecError::NotFound(_) | crate::executor::ExecError::UnknownRunbook(_) => {
                    StatusCode::NOT_FOUND
                }
                _ => StatusCode::CONFLICT,
            };
            refuse(status, &e.to_string())
        }
    }
}

/// `POST /ui/automation/{pause|resume}` with `playbook` (empty: everything)
/// and `reason`.
pub(super) async fn automation(
    State(state): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(action): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let name = viewer.caller.name.clone();
    let playbook = optional(&form, "playbook");
    let done = match action.as_str() {
        "pause" => {
            state
                .executor
                .pause(&name, playbook.as_deref(), optional(&form, "reason"))
                .await
        }
        "resume" => state.executor.resume(&name, playbook.as_deref()).await,
        other => return refuse(StatusCode::NOT_FOUND, &format!("no automation action `{other}`")),
    };
    match done {
        Ok(_) => {
            let target = playbook.unwrap_or_else(|| "automation".into());
            state
                .writer
                .audit(&name, &action, &target, optional(&form, "reason"))
                .await;
            Redirect::to("/ui/automation").into_response()
        }
        Err(e) => refuse(StatusCode::CONFLICT, &e.to_string()),
    }
}
