//! Signing in to the web view with an API token, and out. The server keeps
//! the session (in the store, by the hash of its id, so every replica
//! knows it and a copy of the store signs no one in); the cookie holds the
//! id, never the token. Signing out ends the session: its cookie is refused
//! from then on, as it is once the session expires.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use sha2::Digest;

use super::{refuse, view, Viewer};
use crate::config::Role;
use crate::server::auth::Caller;
use crate::server::{ApiError, AppState};

const COOKIE: &str = "laojun_session";

/// The signed-in viewer of a request: its cookie's session, if it is
/// live; anyone, as admin, when no token is configured.
pub(super) async fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Option<Viewer>, ApiError> {
    if state.credentials.is_empty() {
        return Ok(Some(Viewer {
            caller: Caller {
                name: "ui".into(),
                role: Role::Admin,
            },
            csrf: csrf_for("open"),
            open: true,
        }));
    }
    let Some(id) = cookie(headers) else {
        return Ok(None);
    };
    let hash = hash(&id);
    let Some(session) = state.read(move |store| store.session(&hash)).await? else {
        return Ok(None);
    };
    if session.expires_at <= Utc::now() {
        return Ok(None);
    }
    let role = match session.role.as_str() {
        "viewer" => Role::Viewer,
        "operator" => Role::Operator,
        "admin" => Role::Admin,
        // Only these sign in; anything else stored is not a session.
        _ => return Ok(None),
    };
    Ok(Some(Viewer {
        caller: Caller {
            name: session.name,
            role,
        },
        csrf: csrf_for(&id),
        open: false,
    }))
}

/// The session id the request's cookie holds.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(_, value)| value.to_string())
}

fn hash(id: &str) -> String {
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// The CSRF token of a session: derived from its id, which only the
/// browser holding the cookie knows.
fn csrf_for(id: &str) -> String {
    hex::encode(&sha2::Sha256::digest(format!("laojun-ui-csrf:{id}").as_bytes())[..16])
}

/// `GET /ui/login`: the sign-in form (or, signed in already, the incidents).
pub(super) async fn login_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match viewer(&state, &headers).await {
        Ok(Some(_)) => Redirect::to("/ui/incidents").into_response(),
        _ => view::login_page(None).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login` (`token=`): a viewer, operator or admin token starts a
/// session; a webhook token is refused.
pub(super) async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, form: Form<LoginForm>) -> Response {
    if let Err(why) = super::same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, &why);
    }
    if state.credentials.is_empty() {
        return Redirect::to("/ui/incidents").into_response();
    }
    let given = form.token.trim();
    let Some(credential) = crate::server::auth::find(&state.credentials, given).filter(|_| !given.is_empty()) else {
        return (
            StatusCode::UNAUTHORIZED,
            view::login_page(Some("That token is not valid.")),
        )
            .into_response();
    };
    if credential.role == Role::Webhook {
        return (
            StatusCode::FORBIDDEN,
            view::login_page(Some(
                "A webhook token only posts alerts; sign in with a viewer, operator or admin token.",
            )),
        )
            .into_response();
    }
    let mut id = [0u8; 32];
    if getrandom::fill(&mut id).is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session id; try again",
        );
    }
    let id = hex::encode(id);
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(state.ui.session_ttl).unwrap_or(chrono::Duration::hours(12));
    let session = crate::store::Session {
        id_hash: hash(&id),
        name: credential.name.clone(),
        role: credential.role.as_str().to_string(),
        created_at: now,
        expires_at: now + ttl,
    };
    if let Err(e) = state.writer.session(session).await {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("could not keep the session: {e}"),
        );
    }
    state.writer.audit(&credential.name, "sign_in", "ui", None).await;
    let secure = if state.ui.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        state.ui.session_ttl.as_secs()
    );
    let mut response = Redirect::to("/ui/incidents").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /ui/logout`: ends the session; its cookie is refused afterwards.
pub(super) async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        if let Err(e) = state.writer.end_session(hash(&id)).await {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("could not end the session: {e}"),
            );
        }
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("laojun_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}
