//! The gateway's one error type and its single mapping to HTTP: every error answers
//! JSON `{"code", "message", "field"}` with the status that fits.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway's own configuration is wrong (flags, environment, config file).
    #[error("{0}")]
    Config(String),
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    /// The gateway has no fresh view of the cluster.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(_) | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::Unavailable(_) => "unavailable",
            Error::Config(_) | Error::Io(_) => "internal",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let field = match &self {
            Error::BadRequest { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = serde_json::json!({
            "code": self.code(),
            "message": self.to_string(),
            "field": field,
        });
        (self.status(), axum::Json(body)).into_response()
    }
}
