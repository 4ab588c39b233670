//! The gateway's one error type and its single mapping to HTTP: every error answers
//! JSON `{"code", "message", "field"}` (plus `violations` when several fields are
//! wrong) with the status that fits. Control-plane gRPC statuses are mapped here too,
//! including the `google.rpc.BadRequest` detail that names the violated fields.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;

/// One violated rule of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway's own configuration is wrong (flags, environment, config file).
    #[error("{0}")]
    Config(String),
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    /// No bearer token, or one the gateway does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known token whose role does not allow the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The gateway has no fresh view of the cluster, or is at its limit of streams.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The control plane refused or failed the call.
    #[error("{}", .0.message())]
    Upstream(tonic::Status),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Upstream(status)
    }
}

impl Error {
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Upstream(status) => http_status(status.code()),
            Error::Config(_) | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "permission_denied",
            Error::TooLarge { .. } => "payload_too_large",
            Error::Unavailable(_) => "unavailable",
            Error::Upstream(status) => grpc_code_name(status.code()),
            Error::Config(_) | Error::Io(_) => "internal",
        }
    }

    /// Every violated field: the one of a `BadRequest`, or those of the control
    /// plane's `google.rpc.BadRequest` detail.
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            Error::BadRequest { field, message } => vec![Violation {
                field: field.clone(),
                reason: message.clone(),
            }],
            Error::TooLarge { .. } => vec![Violation {
                field: "body".into(),
                reason: self.to_string(),
            }],
            Error::Upstream(status) => status
                .get_details_bad_request()
                .map(|bad| {
                    bad.field_violations
                        .into_iter()
                        .map(|v| Violation {
                            field: v.field,
                            reason: v.description,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// gRPC to HTTP, following the table of google.rpc.Code. Failures of the control
/// plane itself are the gateway's upstream failing: 502, never 500.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::BAD_GATEWAY,
    }
}

fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The JSON body of an error: `field` is the first violated field (null when the
/// error is not about one), `violations` lists them all when there are several.
pub fn error_body(code: &str, message: &str, violations: &[Violation]) -> serde_json::Value {
    let mut body = serde_json::json!({
        "code": code,
        "message": message,
        "field": violations.first().map(|v| v.field.clone()),
    });
    if violations.len() > 1 {
        body["violations"] = serde_json::json!(violations);
    }
    body
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, %status, "request failed");
        }
        let body = error_body(self.code(), &self.to_string(), &self.violations());
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"constellation\""),
            );
        }
        response
    }
}
