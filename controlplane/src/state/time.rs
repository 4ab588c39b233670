//! Timestamp arithmetic on protobuf `Timestamp`/`Duration`, exact and saturating, so
//! that odd inputs (unnormalised nanos, huge durations) never panic and give the same
//! answer everywhere.

use pbjson_types::{Duration, Timestamp};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// The duration in nanoseconds (handles unnormalised seconds/nanos pairs).
pub(crate) fn duration_nanos(d: &Duration) -> i128 {
    i128::from(d.seconds) * NANOS_PER_SECOND + i128::from(d.nanos)
}

/// The timestamp in nanoseconds since the epoch.
pub(crate) fn timestamp_nanos(at: &Timestamp) -> i128 {
    i128::from(at.seconds) * NANOS_PER_SECOND + i128::from(at.nanos)
}

/// Nanoseconds since the epoch as a normalised timestamp (0 ≤ nanos < 1e9),
/// saturating at the representable range.
pub(crate) fn from_nanos(total: i128) -> Timestamp {
    let seconds = total.div_euclid(NANOS_PER_SECOND);
    let nanos = total.rem_euclid(NANOS_PER_SECOND);
    match i64::try_from(seconds) {
        Ok(seconds) => Timestamp {
            seconds,
            nanos: i32::try_from(nanos).unwrap_or(0),
        },
        Err(_) if seconds < 0 => Timestamp {
            seconds: i64::MIN,
            nanos: 0,
        },
        Err(_) => Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999,
        },
    }
}

/// Whether the duration is longer than zero.
pub(super) fn is_positive(d: &Duration) -> bool {
    duration_nanos(d) > 0
}

/// `at + d`, normalised (0 ≤ nanos < 1e9), saturating at the representable range.
pub(super) fn add(at: Timestamp, d: &Duration) -> Timestamp {
    from_nanos(timestamp_nanos(&at) + duration_nanos(d))
}

/// Orders timestamps (`None` first), for "latest" queries.
pub(super) fn key(at: Option<&Timestamp>) -> (bool, i64, i32) {
    at.map_or((false, 0, 0), |t| (true, t.seconds, t.nanos))
}
