//! How a failed command reads: `error: <message>`, then one line per bad field when the
//! control plane sent a `google.rpc.BadRequest`.

use tonic_types::{FieldViolation, StatusExt};

/// The text printed on stderr for `err`, ending with a newline.
pub fn render(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    let mut violations = Vec::new();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            let details = status.get_error_details();
            let bad = details
                .bad_request()
                .map(|b| b.field_violations.as_slice())
                .unwrap_or_default();
            violations.extend(
                bad.iter()
                    .map(|v| format!("  {}: {}", v.field, v.description)),
            );
            parts.push(status_message(status, bad));
            // What follows a status is its transport cause, already in its message.
            break;
        }
        let text = cause.to_string();
        // Some transport errors repeat their cause's text as their own.
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    let mut out = format!("error: {}\n", parts.join(": "));
    for line in violations {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A status's message, or what its code means when the server sent none. When the
/// message spells out every field violation (for clients that do not decode details),
/// only its lead is kept, since the violations follow on lines of their own.
fn status_message(status: &tonic::Status, violations: &[FieldViolation]) -> String {
    let message = status.message();
    if status.code() == tonic::Code::Cancelled && message == tonic::TimeoutExpired(()).to_string() {
        return "no answer in time (raise --timeout to wait longer)".to_owned();
    }
    let inlined = violations
        .iter()
        .map(|v| message.find(&format!("{}: {}", v.field, v.description)))
        .collect::<Option<Vec<_>>>()
        .and_then(|at| at.into_iter().min());
    let message = match inlined {
        Some(at) => message[..at].trim_end_matches([' ', ':', ';', ',', '\n']),
        None => message,
    };
    if message.is_empty() {
        format!("{:?}: {}", status.code(), status.code().description())
    } else {
        message.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use tonic_types::ErrorDetails;

    #[test]
    fn bad_request_violations_get_a_line_each() {
        let mut details = ErrorDetails::new();
        details
            .add_bad_request_violation("spec.name", "must be a DNS label")
            .add_bad_request_violation("spec.ports[0].container_port", "must be 1 to 65535");
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid service spec",
            details,
        );
        let err = Err::<(), _>(status)
            .context("apply service Web")
            .unwrap_err();
        assert_eq!(
            render(&err),
            "error: apply service Web: invalid service spec\n  spec.name: must be a DNS label\n  spec.ports[0].container_port: must be 1 to 65535\n"
        );
    }

    #[test]
    fn violations_spelled_out_in_the_message_are_not_repeated() {
        let mut details = ErrorDetails::new();
        details
            .add_bad_request_violation("spec.name", "must be a DNS label")
            .add_bad_request_violation("spec.image", "required");
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid argument: spec.name: must be a DNS label; spec.image: required",
            details.clone(),
        );
        assert_eq!(
            render(&status.into()),
            "error: invalid argument\n  spec.name: must be a DNS label\n  spec.image: required\n"
        );
        // Only some of them in the message: it is kept whole.
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "bad spec: spec.name: must be a DNS label",
            details,
        );
        assert!(
            render(&status.into())
                .starts_with("error: bad spec: spec.name: must be a DNS label\n  spec.name")
        );
    }

    #[test]
    fn plain_statuses_and_errors() {
        let err = anyhow::Error::new(tonic::Status::not_found("service \"web\" not found"));
        assert_eq!(render(&err), "error: service \"web\" not found\n");
        let err = anyhow::Error::new(tonic::Status::new(tonic::Code::Unavailable, ""));
        assert_eq!(
            render(&err),
            "error: Unavailable: The service is currently unavailable\n"
        );
        let err = anyhow::Error::new(tonic::Status::from_error(Box::new(tonic::TimeoutExpired(
            (),
        ))));
        assert_eq!(
            render(&err),
            "error: no answer in time (raise --timeout to wait longer)\n"
        );
        let err = anyhow::anyhow!("disk full").context("write backup.snap");
        assert_eq!(render(&err), "error: write backup.snap: disk full\n");
        let err = anyhow::anyhow!("refused")
            .context("tcp connect error")
            .context("tcp connect error")
            .context("connect");
        assert_eq!(render(&err), "error: connect: tcp connect error: refused\n");
    }
}
