//! The one error shape every route answers with: a status and
//! `{"error": "what was wrong"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::executor::ExecError;
use crate::ids::{IncidentId, RunId};
use crate::ledger::RequestError;
use crate::store::StoreError;
use crate::writer::Failure;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: AlertManager retries these.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({"error": self.message}))).into_response();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"laojun\""),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(RequestError::NotFound(id)) => ApiError::not_found(format!("no incident {id}")),
            Failure::Refused(other) => ApiError::new(StatusCode::CONFLICT, other.to_string()),
            Failure::Unavailable(why) | Failure::Busy(why) => ApiError::unavailable(why),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        let status = match e {
            ExecError::UnknownRunbook(_) | ExecError::NotFound(_) => StatusCode::NOT_FOUND,
            ExecError::BadParams(_) => StatusCode::BAD_REQUEST,
            ExecError::Paused(_) | ExecError::Conflict(_) | ExecError::LeaseLost(_) => StatusCode::CONFLICT,
            ExecError::Forbidden(_) => StatusCode::FORBIDDEN,
            ExecError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The store failing a read: 503, so a client (or AlertManager) retries.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}

/// A JSON body, or none at all (`T::default()`); a body that does not
/// parse is a 400 with serde's message and `send` (what to send instead).
pub fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &[u8], send: &str) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{e}; {send}")))
}

/// A path id that does not parse names nothing that could exist: 404.
pub fn incident_id(text: &str) -> Result<IncidentId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no incident {text:?}; incident ids look like INC-42")))
}

pub fn run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no run {text:?}; run ids look like RUN-7")))
}
