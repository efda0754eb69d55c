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

/// Who made a request, for the timeline ("by").
#[derive(Debug, Clone)]
pub struct Caller(pub String);

pub async fn require_token(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    // Only webhook refusals count in the webhook metric.
    let is_webhook = request.uri().path().ends_with("/alerts");
    let refuse = |message: &'static str| {
        if is_webhook {
            state.metrics.webhooks.with_label_values(&["unauthorized"]).inc();
        }
        ApiError::new(StatusCode::UNAUTHORIZED, message).into_response()
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(credentials);
    let caller = match (&state.token, presented) {
        (None, Some(Some((user, _)))) => user.unwrap_or_else(|| "api".into()),
        (None, _) => "api".to_string(),
        (Some(token), Some(Some((user, given))))
            if equal_in_constant_time(token.expose().as_bytes(), given.as_bytes()) =>
        {
            user.unwrap_or_else(|| "api-token".into())
        }
        (Some(_), None) => return refuse("this API needs a token: send `Authorization: Bearer <token>`"),
        (Some(_), Some(_)) => return refuse("the token is not valid"),
    };
    request.extensions_mut().insert(Caller(caller));
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

/// Compares without returning early, so the time taken does not tell how
/// much of a guess was right.
fn equal_in_constant_time(expected: &[u8], given: &[u8]) -> bool {
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
