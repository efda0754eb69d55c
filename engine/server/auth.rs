//! API credentials: `Authorization: Bearer <token>`, or HTTP basic auth
//! with the token as password (AlertManager's `basic_auth`). Compared in
//! constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{ApiError, AppState};
use crate::config::{Credential, Role};

/// Who made a request: the token's name (the timeline's "by") and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// What a route needs: posting alerts, reading, operating, or being an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Webhook,
    Read,
    Operate,
    Admin,
}

fn need(method: &axum::http::Method, path: &str) -> Need {
    if path.ends_with("/alerts") {
        Need::Webhook
    } else if path == "/reload" {
        // It puts new runbooks in force: what may run changes.
        Need::Admin
    } else if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        Need::Read
    } else {
        Need::Operate
    }
}

fn allows(role: Role, need: Need) -> bool {
    matches!(
        (role, need),
        (Role::Admin, _)
            | (Role::Operator, Need::Read | Need::Operate)
            | (Role::Viewer, Need::Read)
            | (Role::Webhook, Need::Webhook)
    )
}

pub async fn require_token(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let needed = need(request.method(), request.uri().path());
    // Only webhook refusals count in the webhook metric.
    let refuse = |status: StatusCode, message: String| {
        if needed == Need::Webhook {
            state.metrics.webhooks.with_label_values(&["unauthorized"]).inc();
        }
        ApiError::new(status, message).into_response()
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(credentials);
    if state.credentials.is_empty() {
        let caller = match presented {
            Some(Some((Some(user), _))) => user,
            _ => "api".to_string(),
        };
        // An open API (no token configured) lets everyone do everything.
        request.extensions_mut().insert(Caller {
            name: caller,
            role: Role::Admin,
        });
        return next.run(request).await;
    }
    let Some(Some((_, given))) = presented else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this API needs a token: send `Authorization: Bearer <token>`".into(),
        );
    };
    // Compare against every token, without stopping at a match, so timing
    // does not tell which token (or how much of one) was right.
    let mut found: Option<&Credential> = None;
    for c in &state.credentials {
        if equal_in_constant_time(c.secret.expose().as_bytes(), given.as_bytes()) {
            found = Some(c);
        }
    }
    let Some(caller) = found else {
        return refuse(StatusCode::UNAUTHORIZED, "the token is not valid".into());
    };
    if !allows(caller.role, needed) {
        let wanted = match needed {
            Need::Webhook => "a webhook or admin",
            Need::Read => "a viewer, operator or admin",
            Need::Operate => "an operator or admin",
            Need::Admin => "an admin",
        };
        let message = format!(
            // This layer sits on the router nested at /api/v1, which sees the rest of the path.
            "token `{}` ({}) may not {} /api/v1{}; it needs {wanted} token",
            caller.name,
            caller.role.as_str(),
            request.method(),
            request.uri().path()
        );
        // A decision refused for the token's role is audited like one the
        // approval step refuses: who tried, on which run.
        let path = request.uri().path().to_string();
        if let Some(run) = path
            .strip_prefix("/runs/")
            .and_then(|rest| rest.strip_suffix("/approve").or_else(|| rest.strip_suffix("/deny")))
        {
            let verb = if path.ends_with("/approve") { "approve" } else { "deny" };
            let detail = format!("refused: {message}");
            state.writer.audit(&caller.name, verb, run, Some(detail)).await;
        }
        return refuse(StatusCode::FORBIDDEN, message);
    }
    request.extensions_mut().insert(Caller {
        name: caller.name.clone(),
        role: caller.role,
    });
    next.run(request).await
}

/// `Bearer T` → (None, T); `Basic base64(user:T)` → (Some(user), T).
fn credentials(header: &str) -> Option<(Option<String>, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some((None, value.trim().to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        let user = (!user.is_empty()).then(|| user.to_string());
        return Some((user, password.to_string()));
    }
    None
}

/// The credential `given` is, compared against every token without
/// stopping at a match (timing tells nothing).
pub(super) fn find<'a>(credentials: &'a [Credential], given: &str) -> Option<&'a Credential> {
    let mut found = None;
    for c in credentials {
        if equal_in_constant_time(c.secret.expose().as_bytes(), given.as_bytes()) {
            found = Some(c);
        }
    }
    found
}

/// Compares without returning early, so the time taken does not tell how
/// much of a guess was right.
pub(super) fn equal_in_constant_time(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = expected.len() ^ given.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(e ^ given.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_credentials_are_read() {
        assert_eq!(credentials("Bearer abc"), Some((None, "abc".into())));
        let basic = base64::engine::general_purpose::STANDARD.encode("am:abc");
        assert_eq!(
            credentials(&format!("Basic {basic}")),
            Some((Some("am".into()), "abc".into()))
        );
        assert_eq!(credentials("Digest x"), None);
    }

    #[test]
    fn only_the_exact_token_is_equal() {
        assert!(equal_in_constant_time(b"secret", b"secret"));
        for wrong in [&b"secre"[..], b"secrets", b"Secret", b""] {
            assert!(!equal_in_constant_time(b"secret", wrong));
        }
    }
}
