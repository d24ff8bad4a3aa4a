//! RFC 9457 problem details: every error the API returns names what was
//! wrong and, where there is one, the offending field. Store or engine
//! internals never reach the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollover_service::ServiceError;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>, field: Option<String>) -> Problem {
        Problem { kind: "about:blank", title: status.canonical_reason().unwrap_or("Error"), status: status.as_u16(), detail: detail.into(), field }
    }

    pub fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        let field = field.into();
        let detail = detail.into();
        let detail = if field.is_empty() || detail.starts_with(&field) { detail } else { format!("{field}: {detail}") };
        Problem::new(StatusCode::BAD_REQUEST, detail, (!field.is_empty()).then_some(field))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Problem {
        match error {
            ServiceError::NotFound { field, message } => Problem::new(StatusCode::NOT_FOUND, message, Some(field.to_string())),
            ServiceError::Conflict { field, message } => Problem::new(StatusCode::CONFLICT, format!("{field}: {message}"), Some(field.to_string())),
            ServiceError::Invalid { field, message } => Problem::bad_request(field, message),
            ServiceError::LimitReached { field, message } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{field}: {message}"), Some(field.to_string())),
            ServiceError::Busy => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the service is busy; retry shortly", None),
            ServiceError::Unavailable(message) => {
                tracing::error!(%message, "service unavailable");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the service is not available", None)
            }
        }
    }
}
