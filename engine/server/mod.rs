//! The HTTP side: the AlertManager webhook, the incident API, `/metrics`,
//! `/healthz` (the process answers) and `/readyz` (it can do its job). `router` builds the routes over shared state so tests can
//! drive it without a socket; `serve` runs it on a listener.

mod api;
mod auth;
mod error;
mod lifecycle;
mod runs;
pub mod signature;
pub mod slack;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use ui::Settings as UiSettings;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::writer::Writer;

/// What every handler can reach.
pub struct AppState {
    pub writer: Writer,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Tokens and their roles; empty: the API needs no token.
    pub credentials: Vec<crate::config::Credential>,
    /// The catalog in force (and its postmortem templates).
    pub live: Arc<crate::live::Live>,
    /// Loads the catalog again (`POST /api/v1/reload`).
    pub reload: Arc<dyn crate::live::Reload>,
    pub executor: crate::executor::Executor,
    /// Webhook bodies over this many bytes get 413.
    pub max_body: usize,
    /// Slack interactivity, when `slack.signing_secret` is set.
    pub slack: Option<slack::SlackApp>,
    /// Grafana's webhook signature, when `intake.grafana_signature` asks for it.
    pub grafana: Option<signature::Grafana>,
    /// What `/readyz` reports on the store.
    pub health: Arc<crate::health::Health>,
    /// The web view's settings: session length, whether cookies are
    /// `Secure` (served over TLS), links.
    pub ui: ui::Settings,
}

impl AppState {
    /// Runs a store read on the blocking pool (sled reads touch the disk),
    /// its failure as a 503.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || read(store.as_ref()))
            .await
            .map_err(|e| ApiError::unavailable(format!("the read stopped: {e}")))?
            .map_err(ApiError::from)
    }
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        // The handler bounds the body itself (see api::read_limited).
        .route("/alerts", post(api::post_alerts).layer(DefaultBodyLimit::disable()))
        .route("/incidents", get(api::list_incidents))
        .route("/incidents/{id}", get(api::get_incident))
        .route("/incidents/{id}/notes", post(lifecycle::post_note))
        .route("/incidents/{id}/ack", post(lifecycle::post_ack))
        .route("/incidents/{id}/assign", post(lifecycle::post_assign))
        .route("/incidents/{id}/severity", post(lifecycle::post_severity))
        .route("/incidents/{id}/resolve", post(lifecycle::post_resolve))
        .route("/incidents/{id}/reopen", post(lifecycle::post_reopen))
        .route("/incidents/{id}/postmortem", get(api::get_postmortem))
        .route("/runbooks", get(api::list_runbooks))
        .route("/runbooks/{name}/runs", post(runs::start_run))
        .route("/runs", get(runs::list_runs))
        .route("/runs/{id}", get(runs::get_run))
        .route("/runs/{id}/approve", post(runs::approve))
        .route("/runs/{id}/deny", post(runs::deny))
        .route("/automation", get(runs::automation))
        .route("/approvals", get(runs::approvals))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/catalog", get(api::catalog))
        .route("/reload", post(api::reload))
        .route("/audit", get(api::get_audit))
        .route("/automation/pause", post(runs::pause))
        .route("/automation/resume", post(runs::resume))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .nest("/api/v1", api)
        .merge(ui::router(state.clone()))
        .route(
            "/slack/interactions",
            post(slack::interactions).layer(DefaultBodyLimit::max(64 * 1024)),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("no such route; see GET /api/v1/incidents, POST /api/v1/alerts") })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // What the executor holds in memory is read as it is now.
    let approvals = state.executor.approvals();
    let oldest = approvals
        .iter()
        .map(|a| (chrono::Utc::now() - a.requested_at).num_seconds().max(0))
        .max()
        .unwrap_or(0);
    state.metrics.approvals_pending.set(approvals.len() as i64);
    state.metrics.approval_oldest_seconds.set(oldest);
    let automation = state.executor.automation();
    let playbooks: Vec<(String, bool)> = state
        .live
        .catalog()
        .playbooks
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                automation.paused_playbooks.iter().any(|x| x.playbook == p.name),
            )
        })
        .collect();
    state.metrics.set_paused(automation.paused, &playbooks);
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render())
}

/// 200 when the store takes a write and a catalog is loaded; 503 with
/// each reason otherwise. A load balancer or Kubernetes stops sending
/// alerts to a replica that is not ready.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut problems = Vec::new();
    if let Some(why) = state.health.restart_reason() {
        problems.push(format!("restarting: {why}"));
    } else if let Some(failure) = state.health.store_failure() {
        problems.push(format!(
            "the store cannot write (since {}): {}",
            failure.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            failure.error
        ));
    } else {
        let probe = state.read(|store| store.check_writable());
        match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The watchdog takes it from here, as for a failed webhook.
                state.health.store_failed(&e.message);
                problems.push(format!("the store cannot write: {}", e.message));
            }
            Err(_) => problems.push("the store did not finish a write in 5 s".into()),
        }
    }
    let catalog = state.live.catalog();
    if catalog.runbooks.is_empty() && catalog.playbooks.is_empty() {
        problems.push(
            "no runbooks or playbooks are loaded: is the root folder (runbooks/, playbooks/) where the config says?"
                .into(),
        );
    }
    if problems.is_empty() {
        let text = format!(
            "ready: the store takes writes; {} runbooks and {} playbooks loaded (revision {})\n",
            catalog.runbooks.len(),
            catalog.playbooks.len(),
            catalog.revision
        );
        (axum::http::StatusCode::OK, text).into_response()
    } else {
        let text: String = problems.iter().map(|p| format!("not ready: {p}\n")).collect();
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, text).into_response()
    }
}

/// Records each request's latency by route and status.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_seconds
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
