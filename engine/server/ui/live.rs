//! Server-Sent Events for the pages. A timeline's events go out with their
//! sequence number as `id:`, so a browser that reconnects sends
//! `Last-Event-ID` and gets what it missed, nothing twice
//! (`Last-Event-ID: 0` replays from the start). A run goes out as a
//! snapshot each time it moves, with a number that only grows as `id:`.
//! Both read the store, so any replica serves them.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::refuse;
use crate::run::Run;
use crate::server::AppState;

/// How often a stream looks for what is new.
const LOOK_EVERY: Duration = Duration::from_millis(400);

/// Events as a stream, from a channel a task fills.
struct Events(mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct After {
    after: Option<u64>,
}

/// Where a stream starts: `Last-Event-ID` (a reconnect), else `?after=`
/// (what the page already shows), else the start.
fn start(headers: &HeaderMap, after: &After) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(after.after)
        .unwrap_or(0)
}

fn stream(rx: mpsc::Receiver<Event>) -> Response {
    Sse::new(Events(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /ui/incidents/{id}/events`: the timeline, live.
pub(super) async fn incident_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(after): Query<After>,
    headers: HeaderMap,
) -> Response {
    let Ok(n) = id.parse::<crate::ids::IncidentId>() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no incident {id}"));
    };
    let mut sent = start(&headers, &after) as usize;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let timeline: Vec<crate::incident::Event> =
                state.read(move |store| store.timeline(n)).await.unwrap_or_default();
            for (i, e) in timeline.iter().enumerate().skip(sent) {
                let data = super::pages::event(i, e);
                let event = Event::default()
                    .id((i + 1).to_string())
                    .event("timeline")
                    .data(data.to_string());
                if tx.send(event).await.is_err() {
                    return;
                }
                sent = i + 1;
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = tx.closed() => return,
            }
        }
    });
    stream(rx)
}

/// How far a run got: grows with every attempt and every step that ends.
fn progress(run: &Run) -> u64 {
    let attempts: u64 = run.steps.iter().map(|s| u64::from(s.attempts)).sum();
    let ended = run.steps.iter().filter(|s| s.finished_at.is_some()).count() as u64;
    attempts + ended + u64::from(run.status.is_finished()) + 1
}

/// `GET /ui/runs/{id}/events`: the run's steps, live.
pub(super) async fn run_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(after): Query<After>,
    headers: HeaderMap,
) -> Response {
    let Ok(n) = id.parse::<crate::ids::RunId>() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no run {id}"));
    };
    let mut seen = start(&headers, &after);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            if let Ok(Some(run)) = state.read(move |store| store.run(n)).await {
                let now = progress(&run);
                if now > seen {
                    let mut data = super::pages::run_row(&run);
                    data["finished"] = serde_json::json!(run.status.is_finished());
                    let event = Event::default().id(now.to_string()).event("run").data(data.to_string());
                    if tx.send(event).await.is_err() {
                        return;
                    }
                    seen = now;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = tx.closed() => return,
            }
        }
    });
    stream(rx)
}
