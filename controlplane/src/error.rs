//! The control plane's one error type, and its single mapping to gRPC status codes.
//! Invalid input carries every violated field so clients can show them all at once.

use std::fmt;

/// One violated rule of a request: the field path (`spec.ports[1].container_port`) and
/// why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub reason: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Every violation found in one request, in the order the fields appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldViolations(pub Vec<FieldViolation>);

impl FieldViolations {
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldViolation::new(field, reason));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was violated, otherwise the violations as an error.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self))
        }
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.reason)?;
        }
        Ok(())
    }
}

/// Response header naming the leader's API address when a follower refuses a call
/// only the leader serves.
pub const LEADER_METADATA: &str = "constellation-leader";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(FieldViolations),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// No leader is known, or a majority cannot be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Only the leader serves this call (agent sessions); `leader` is its API address
    /// when known, sent to the caller in the [`LEADER_METADATA`] header.
    #[error("unavailable: this member is not the leader{}", leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader { leader: Option<String> },
    /// The process's own configuration is wrong (flags, environment, config file).
    #[error("{0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound(format!("{kind} {:?} not found", name.into()))
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument(FieldViolations(vec![FieldViolation::new(field, reason)]))
    }

    pub fn code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::Unavailable(_) | Error::NotLeader { .. } => tonic::Code::Unavailable,
            Error::Config(_) | Error::Io(_) | Error::Internal(_) => tonic::Code::Internal,
        }
    }
}

/// The one place errors become gRPC statuses. Field violations travel as a
/// `google.rpc.BadRequest` detail, which generated SDKs and the gateway decode.
impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let code = err.code();
        match &err {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in &violations.0 {
                    details.add_bad_request_violation(v.field.clone(), v.reason.clone());
                }
                tonic::Status::with_error_details(code, err.to_string(), details)
            }
            Error::NotLeader {
                leader: Some(leader),
            } => {
                let mut status = tonic::Status::new(code, err.to_string());
                if let Ok(value) = leader.parse() {
                    status.metadata_mut().insert(LEADER_METADATA, value);
                }
                status
            }
            _ => tonic::Status::new(code, err.to_string()),
        }
    }
}
