//! The web view under `/ui/`: server-rendered pages of incidents, runs,
//! approvals and automation, signed in with an API token (a session kept
//! in the store, its id in an `HttpOnly` cookie), every form carrying the
//! session's CSRF token, and the timeline kept live by Server-Sent Events.
//!
//! - `mod.rs` — routes, security headers, who is signed in, CSRF
//! - `session.rs` — sign in and out, the cookie
//! - `pages.rs` — the pages (GET)
//! - `forms.rs` — what the pages' forms post
//! - `live.rs` — Server-Sent Events of a timeline and a run
//! - `view.rs` — templates (handlebars, escaping by default) and assets

mod forms;
mod live;
mod pages;
mod session;
mod view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::auth::Caller;
use super::AppState;
use crate::config::Role;

/// The web view's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a sign-in lasts (`ui.session_ttl_secs`).
    pub session_ttl: std::time::Duration,
    /// Served over TLS: the cookie is `Secure`.
    pub secure_cookies: bool,
}

/// Who is signed in, and the token every form of their pages carries.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
    /// No token is configured: everyone may do everything, and the pages
    /// say so.
    pub open: bool,
}

impl Viewer {
    /// May act (post forms), not only look.
    pub fn operates(&self) -> bool {
        matches!(self.caller.role, Role::Operator | Role::Admin)
    }
}

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let signed_in = Router::new()
        .route("/ui/", get(pages::home))
        .route("/ui/incidents", get(pages::incidents))
        .route("/ui/incidents/{id}", get(pages::incident))
        .route("/ui/incidents/{id}/postmortem.md", get(pages::postmortem))
        .route("/ui/incidents/{id}/events", get(live::incident_events))
        .route("/ui/incidents/{id}/{action}", post(forms::incident))
        .route("/ui/runs/{id}", get(pages::run))
        .route("/ui/runs/{id}/events", get(live::run_events))
        .route("/ui/runs/{id}/{action}", post(forms::run))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/automation", get(pages::automation))
        .route("/ui/automation/{action}", post(forms::automation))
        .route("/ui/logout", post(session::logout))
        .route_layer(middleware::from_fn_with_state(state.clone(), signed_in_only));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/assets/{file}", get(view::asset))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
}

/// What every page and answer under /ui carries: no script or style but
/// the server's own files, never in a frame, types as sent.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Lets through a signed-in viewer (or anyone, when no token is
/// configured); a page asked for signed out goes to the sign-in form. A
/// POST must carry the session's CSRF token and come from this origin:
/// otherwise 403 and nothing changes.
async fn signed_in_only(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let viewer = match session::viewer(&state, request.headers()).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) if request.method() == Method::GET => {
            return Redirect::to("/ui/login").into_response();
        }
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "sign in first: /ui/login"),
        Err(e) => return e.into_response(),
    };
    if request.method() == Method::POST {
        if let Err(why) = same_origin(request.headers()) {
            return refuse(StatusCode::FORBIDDEN, &why);
        }
        // The token is a form field: read the body, check it, hand the
        // body on.
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024).await else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large");
        };
        let sent = form_field(&bytes, "csrf").unwrap_or_default();
        if !super::auth::equal_in_constant_time(sent.as_bytes(), viewer.csrf.as_bytes()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's: reload the page and try again",
            );
        }
        if !viewer.operates() && parts.uri.path() != "/ui/logout" {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "`{}` ({}) may look but not act; an operator or admin may",
                    viewer.caller.name,
                    viewer.caller.role.as_str()
                ),
            );
        }
        request = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    request.extensions_mut().insert(viewer.caller.clone());
    request.extensions_mut().insert(viewer);
    next.run(request).await
}

/// A POST from a page of this server: `Sec-Fetch-Site: same-origin`, or,
/// from a browser that does not send it, an `Origin` naming this host.
fn same_origin(headers: &axum::http::HeaderMap) -> Result<(), String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return match site {
            "same-origin" => Ok(()),
            other => Err(format!(
                "a form posted from another site (Sec-Fetch-Site: {other}) is refused"
            )),
        };
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
            if origin_host == host {
                Ok(())
            } else {
                Err(format!("a form posted from {origin} is refused"))
            }
        }
        // Neither header: an old client; the CSRF token decides.
        _ => Ok(()),
    }
}

/// One field of a urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded_pairs(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}

/// A short page saying why, with the status.
fn refuse(status: StatusCode, why: &str) -> Response {
    (status, view::message_page(status, why)).into_response()
}
