//! The pages: what an on-call engineer looks at during an incident.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use super::view::{self, link, when, LayoutExtra};
use super::{refuse, Viewer};
use crate::incident::{Event, Incident, Status};
use crate::run::Run;
use crate::server::AppState;
use crate::severity::Severity;
use crate::store::IncidentFilter;

/// How many incidents the list shows.
const LIST_LIMIT: usize = 500;

pub(super) async fn home() -> Redirect {
    Redirect::to("/ui/incidents")
}

/// What every page's header shows.
fn extra(state: &AppState) -> LayoutExtra {
    LayoutExtra {
        approvals: state.executor.approvals().len(),
        paused: state.executor.is_paused(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    playbook: String,
    #[serde(default)]
    q: String,
}

/// `GET /ui/incidents?status=&severity=&playbook=&q=`: newest first; `q`
/// matches titles and label values.
pub(super) async fn incidents(
    State(state): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<ListQuery>,
) -> Response {
    let status = match query.status.as_str() {
        "" => None,
        s => match Status::parse(s) {
            Some(s) => Some(s),
            None => return refuse(StatusCode::BAD_REQUEST, "status is open, mitigated or resolved"),
        },
    };
    let severity = match query.severity.as_str() {
        "" => None,
        s => match Severity::parse(s) {
            Some(s) => Some(s),
            None => return refuse(StatusCode::BAD_REQUEST, "severity is P0, P1, P2 or P3"),
        },
    };
    let filter = IncidentFilter {
        status,
        severity,
        limit: LIST_LIMIT,
    };
    let list = match state.read(move |store| store.incidents(&filter)).await {
        Ok(list) => list,
        Err(e) => return e.into_response(),
    };
    let needle = query.q.trim().to_lowercase();
    let rows: Vec<Value> = list
        .iter()
        .filter(|i| query.playbook.is_empty() || i.playbook == query.playbook)
        .filter(|i| needle.is_empty() || matches_search(i, &needle))
        .map(|i| {
            json!({
                "id": i.id.to_string(),
                "severity": i.severity.as_str(),
                "status": i.status.as_str(),
                "acknowledged": i.acknowledged_at.is_some(),
                "title": i.title,
                "playbook": i.playbook,
                "opened": when(i.opened_at),
                "alerts": i.alert_count,
            })
        })
        .collect();
    let options = |all: &[&str], chosen: &str| -> Value {
        all.iter()
            .map(|v| json!({"value": v, "selected": *v == chosen}))
            .collect()
    };
    let data = json!({
        "incidents": rows,
        "statuses": options(&["open", "mitigated", "resolved"], &query.status),
        "severities": options(&["P0", "P1", "P2", "P3"], &query.severity),
        "filter": {"playbook": query.playbook, "q": query.q},
    });
    view::page(&viewer, "Incidents", "incidents", data, extra(&state))
}

fn matches_search(i: &Incident, needle: &str) -> bool {
    i.title.to_lowercase().contains(needle)
        || i.alerts
            .iter()
            .any(|a| a.labels.values().any(|v| v.to_lowercase().contains(needle)))
        || i.group.values().any(|v| v.to_lowercase().contains(needle))
}

/// `GET /ui/incidents/{id}`.
pub(super) async fn incident(
    State(state): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    let Ok(n) = id.parse::<crate::ids::IncidentId>() else {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("no incident {id}: ids look like INC-12"),
        );
    };
    let found = state
        .read(move |store| {
            let Some(inc) = store.incident(n)? else {
                return Ok(None);
            };
            let timeline = store.timeline(n)?;
            let mut runs = Vec::new();
            for r in &inc.runs {
                runs.extend(store.run(*r)?);
            }
            Ok(Some((inc, timeline, runs)))
        })
        .await;
    let (inc, timeline, runs) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, &format!("no incident {id}")),
        Err(e) => return e.into_response(),
    };
    let approvals: Vec<Value> = state
        .executor
        .approvals()
        .into_iter()
        .filter(|a| a.incident == Some(n))
        .map(|a| approval(&a))
        .collect();
    let (store, postmortems) = (state.store.clone(), state.live.postmortems());
    let postmortem = tokio::task::spawn_blocking(move || postmortems.render_stored(store.as_ref(), n))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| "(the postmortem could not be rendered)".into());
    let data = json!({
        "id": inc.id.to_string(),
        "title": inc.title,
        "severity": inc.severity.as_str(),
        "status": inc.status.as_str(),
        "resolved": inc.status == Status::Resolved,
        "playbook": inc.playbook,
        "opened": when(inc.opened_at),
        "commander": inc.commander.clone().unwrap_or_else(|| "none".into()),
        "responders": if inc.responders.is_empty() { "none".to_string() } else { inc.responders.join(", ") },
        "acknowledged": inc.acknowledged_at.map(|t| format!("{} by {}", when(t), inc.acknowledged_by.clone().unwrap_or_default())),
        "mitigated": inc.mitigated_at.map(when),
        "resolved_at": inc.resolved_at.map(when),
        "approvals": approvals,
        "timeline": timeline.iter().enumerate().map(|(i, e)| event(i, e)).collect::<Vec<_>>(),
        "last_event": timeline.len(),
        "alerts": inc.alerts.iter().map(|a| {
            let links: Vec<Value> = a.annotations.iter()
                .filter_map(|(k, v)| link(v).map(|href| json!({"name": k, "href": href})))
                .chain(a.generator_url.as_deref().and_then(link).map(|href| json!({"name": "source", "href": href})))
                .collect();
            json!({
                "fingerprint": a.fingerprint,
                "status": a.status.as_str(),
                "starts": when(a.starts_at),
                "labels": a.labels.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "summary": a.annotations.get("summary").cloned().unwrap_or_default(),
                "description": a.annotations.get("description").cloned().unwrap_or_default(),
                "links": links,
            })
        }).collect::<Vec<_>>(),
        "runs": runs.iter().map(run_row).collect::<Vec<_>>(),
        "note_kinds": ["note", "root_cause", "solution", "prevention", "lesson", "impact"],
        "severities": ["P0", "P1", "P2", "P3"],
        "postmortem": postmortem,
    });
    view::page(
        &viewer,
        &format!("{} {}", inc.id, inc.title),
        "incident",
        data,
        extra(&state),
    )
}

/// One timeline line: its sequence number (1-based, the SSE id), time,
/// kind and prose.
pub(super) fn event(index: usize, e: &Event) -> Value {
    json!({"seq": index + 1, "at": when(e.at), "kind": e.what.kind_name(), "text": e.what.describe()})
}

fn approval(a: &crate::run::PendingApproval) -> Value {
    json!({
        "run": a.run.to_string(),
        "step": a.step,
        "runbook": a.runbook,
        "message": a.message,
        "who": if a.who.is_empty() { "any operator".to_string() } else { a.who.join(", ") },
        "requested_by": a.requested_by,
        "requested_at": when(a.requested_at),
        "expires_at": when(a.expires_at),
        "incident": a.incident.map(|i| i.to_string()),
    })
}

pub(super) fn run_row(r: &Run) -> Value {
    json!({
        "id": r.id.to_string(),
        "runbook": r.runbook,
        "status": r.status.as_str(),
        "by": r.by,
        "dry_run": r.dry_run,
        "created": when(r.created_at),
        "reason": r.reason,
        "steps": r.steps.iter().map(|s| json!({
            "id": s.id,
            "action": s.action,
            "status": s.status.as_str(),
            "attempts": s.attempts,
            "duration": s.duration_ms().map(|ms| format!("{:.1} s", ms as f64 / 1000.0)),
            "output": if s.output.is_null() { String::new() } else { serde_json::to_string_pretty(&s.output).unwrap_or_default() },
            "error": s.error,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /ui/incidents/{id}/postmortem.md`: the markdown, as a download.
pub(super) async fn postmortem(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(n) = id.parse::<crate::ids::IncidentId>() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no incident {id}"));
    };
    let (store, postmortems) = (state.store.clone(), state.live.postmortems());
    match tokio::task::spawn_blocking(move || postmortems.render_stored(store.as_ref(), n)).await {
        Ok(Ok(text)) => (
            [
                ("content-type", "text/markdown; charset=utf-8".to_string()),
                (
                    "content-disposition",
                    format!("attachment; filename=\"{n}-postmortem.md\""),
                ),
            ],
            text,
        )
            .into_response(),
        _ => refuse(StatusCode::NOT_FOUND, &format!("no postmortem for {id}")),
    }
}

/// `GET /ui/runs/{id}`.
pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    let Ok(n) = id.parse::<crate::ids::RunId>() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no run {id}: ids look like RUN-7"));
    };
    let run = match state.read(move |store| store.run(n)).await {
        Ok(Some(run)) => run,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, &format!("no run {id}")),
        Err(e) => return e.into_response(),
    };
    let mut data = run_row(&run);
    data["finished"] = json!(run.status.is_finished());
    data["incident"] = json!(run.incident.map(|i| i.to_string()));
    data["steps_ids"] = json!(run.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>());
    data["approval"] = json!(state
        .executor
        .approvals()
        .into_iter()
        .find(|a| a.run == n)
        .map(|a| approval(&a)));
    view::page(
        &viewer,
        &format!("{} {}", run.id, run.runbook),
        "run",
        data,
        extra(&state),
    )
}

/// `GET /ui/approvals`: every approval waiting, the oldest first.
pub(super) async fn approvals(State(state): State<Arc<AppState>>, Extension(viewer): Extension<Viewer>) -> Response {
    let list: Vec<Value> = state.executor.approvals().iter().map(approval).collect();
    view::page(
        &viewer,
        "Approvals",
        "approvals",
        json!({"approvals": list}),
        extra(&state),
    )
}

/// `GET /ui/automation`: the pauses in force, and the playbooks.
pub(super) async fn automation(State(state): State<Arc<AppState>>, Extension(viewer): Extension<Viewer>) -> Response {
    let view_of = state.executor.automation();
    let paused: std::collections::BTreeMap<String, _> = view_of
        .paused_playbooks
        .iter()
        .map(|p| (p.playbook.clone(), p))
        .collect();
    let playbooks: Vec<Value> = state
        .live
        .catalog()
        .playbooks
        .iter()
        .map(|p| {
            let pause = paused.get(&p.name);
            json!({
                "name": p.name,
                "paused": pause.map(|x| format!("paused by {}{} since {}", x.by, x.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default(), when(x.since))),
            })
        })
        .collect();
    let data = json!({
        "everything": view_of.paused.then(|| format!(
            "paused by {}{}",
            view_of.by.clone().unwrap_or_default(),
            view_of.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        )),
        "playbooks": playbooks,
    });
    view::page(&viewer, "Automation", "automation", data, extra(&state))
}
