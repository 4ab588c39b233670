//! The control plane's clock: the time a member stamps on the commands it proposes
//! (`Command.proposed_at`), which is "now" for every deadline the state and the
//! leader compare against (healthy deadlines, update monitors, drain deadlines,
//! restart delays). Leases do not depend on it: the leader times them on its own
//! monotonic clock.
//!
//! It is driven by the monotonic clock, not read from the wall clock each time. A
//! step of the host's wall clock (an NTP step on a freshly booted machine, an
//! operator's `date -s`) would otherwise jump every deadline at once: a five-minute
//! step forward failed a rolling update's fresh replica as "not healthy within the
//! healthy deadline", and a step backward froze its monitor period for as long
//! (`tests/tests/clock_step.rs` does both under libfaketime).
//!
//! Instead the clock follows the wall clock by slewing towards it, at most
//! 1/[`SLEW_DIVISOR`] of the time elapsed (as NTP slews, only faster): a step is
//! absorbed over twenty times its size, and a duration measured meanwhile is off by at
//! most 5%. It never goes backwards within a process.
//!
//! Across members the clocks agree as well as the hosts' wall clocks do; a new leader
//! whose wall clock differs moves "now" by the difference, as in Nomad.

use std::sync::{LazyLock, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The clock moves towards the wall clock by at most 1/`SLEW_DIVISOR` of the
/// monotonic time elapsed.
pub const SLEW_DIVISOR: i128 = 20;

/// The next reading, in nanoseconds since the Unix epoch: `previous` moved on by
/// `elapsed` monotonic nanoseconds, then towards `wall` by at most
/// `elapsed / SLEW_DIVISOR`.
pub fn advance(previous: i128, elapsed: i128, wall: i128) -> i128 {
    let free = previous + elapsed.max(0);
    let most = elapsed.max(0) / SLEW_DIVISOR;
    free + (wall - free).clamp(-most, most)
}

/// A clock that follows the wall clock without ever stepping.
pub struct SteadyClock {
    /// The last reading and the monotonic instant it was taken at.
    last: Mutex<(Instant, i128)>,
}

impl SteadyClock {
    /// Starts at the wall clock's time.
    pub fn new() -> Self {
        Self {
            last: Mutex::new((Instant::now(), wall_nanos())),
        }
    }

    /// Now, in nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> i128 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let at = Instant::now();
        let elapsed = at.saturating_duration_since(last.0).as_nanos() as i128;
        let reading = advance(last.1, elapsed, wall_nanos());
        *last = (at, reading);
        reading
    }
}

impl Default for SteadyClock {
    fn default() -> Self {
        Self::new()
    }
}

fn wall_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// This process's clock.
static CLOCK: LazyLock<SteadyClock> = LazyLock::new(SteadyClock::new);

/// Now, by this process's [`SteadyClock`], as a protobuf timestamp.
pub fn now() -> pbjson_types::Timestamp {
    let nanos = CLOCK.now_nanos();
    pbjson_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: i128 = 1_000_000_000;

    #[test]
    fn an_unstepped_wall_clock_is_followed_exactly() {
        let mut reading = 1_700_000_000 * SECOND;
        for step in 1..100 {
            let wall = reading + step * 1_000_000;
            reading = advance(reading, step * 1_000_000, wall);
            assert_eq!(reading, wall);
        }
    }

    #[test]
    fn a_five_minute_step_forward_is_absorbed_over_a_hundred_minutes() {
        let start = 1_700_000_000 * SECOND;
        let step = 300 * SECOND;
        let mut reading = start;
        let mut elapsed = 0;
        // One reading a second, as the leader's loop takes them.
        while reading != start + elapsed + step {
            elapsed += SECOND;
            reading = advance(reading, SECOND, start + elapsed + step);
            assert!(elapsed <= 100 * 60 * SECOND, "not absorbed yet");
        }
        assert_eq!(elapsed, step * SLEW_DIVISOR);
    }

    proptest! {
        /// Whatever the wall clock does, the clock never goes backwards, and runs at
        /// the monotonic clock's rate within 1/SLEW_DIVISOR.
        #[test]
        fn never_steps_and_never_runs_far_off_the_monotonic_rate(
            ticks in prop::collection::vec((0i128..10 * SECOND, -600i128..600), 1..200),
        ) {
            let mut reading = 1_700_000_000 * SECOND;
            let mut wall = reading;
            for (elapsed, step_seconds) in ticks {
                wall += elapsed + step_seconds * SECOND;
                let next = advance(reading, elapsed, wall);
                prop_assert!(next >= reading + elapsed - elapsed / SLEW_DIVISOR);
                prop_assert!(next <= reading + elapsed + elapsed / SLEW_DIVISOR);
                reading = next;
            }
        }

        /// Once the wall clock stops stepping, the clock reaches it and then stays on
        /// it.
        #[test]
        fn catches_up_with_the_wall_clock_then_follows_it(
            offset in -600i128 * SECOND..600 * SECOND,
        ) {
            let mut wall = 1_700_000_000 * SECOND;
            let mut reading = wall + offset;
            let mut ticks = 0;
            while reading != wall {
                wall += SECOND;
                reading = advance(reading, SECOND, wall);
                ticks += 1;
                prop_assert!(ticks <= 600 * SLEW_DIVISOR + 1);
            }
            wall += SECOND;
            prop_assert_eq!(advance(reading, SECOND, wall), wall);
        }
    }

    #[test]
    fn the_process_clock_moves_forward() {
        let a = CLOCK.now_nanos();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = CLOCK.now_nanos();
        assert!(b - a >= 4_000_000, "{a} -> {b}");
    }
}
