//! The agent's restart delay: a pure state machine over an injected `Instant`, so it
//! is tested without sleeping.

use constellation_proto::v1::RestartPolicy;
use std::time::{Duration, Instant};

pub const DEFAULT_INITIAL: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX: Duration = Duration::from_secs(300);
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(600);

/// The delays of a [`Backoff`], from a spec's `RestartPolicy` with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: DEFAULT_INITIAL,
            max: DEFAULT_MAX,
            multiplier: DEFAULT_MULTIPLIER,
            reset_after: DEFAULT_RESET_AFTER,
        }
    }
}

fn std_duration(d: &Option<pbjson_types::Duration>) -> Option<Duration> {
    let d = d.as_ref()?;
    if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
        return None;
    }
    Some(Duration::new(d.seconds as u64, d.nanos as u32))
}

impl BackoffPolicy {
    /// The policy of `spec.restart`; absent or zero fields take the defaults.
    pub fn from_spec(restart: Option<&RestartPolicy>) -> Self {
        let mut p = Self::default();
        if let Some(r) = restart {
            if let Some(d) = std_duration(&r.initial_delay) {
                p.initial = d;
            }
            if let Some(d) = std_duration(&r.max_delay) {
                p.max = d;
            }
            if r.multiplier.is_finite() && r.multiplier >= 1.0 {
                p.multiplier = r.multiplier;
            }
            if let Some(d) = std_duration(&r.reset_after) {
                p.reset_after = d;
            }
        }
        if p.max < p.initial {
            p.max = p.initial;
        }
        p
    }
}

/// Per-allocation restart backoff: each failure returns the next delay (initial,
/// ×multiplier, capped); running for `reset_after` since the last start resets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Failures since the last reset.
    attempts: u32,
    next: Duration,
    /// When the container last started running.
    running_since: Option<Instant>,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            attempts: 0,
            next: policy.initial,
            running_since: None,
        }
    }

    pub fn policy(&self) -> BackoffPolicy {
        self.policy
    }

    /// Replaces the policy (the spec changed), keeping the attempt count.
    pub fn set_policy(&mut self, policy: BackoffPolicy) {
        if policy != self.policy {
            self.policy = policy;
            self.next = self.delay_for(self.attempts);
        }
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The container started (or was seen running) at `now`.
    pub fn started(&mut self, now: Instant) {
        if self.running_since.is_none() {
            self.running_since = Some(now);
        }
    }

    /// Resets the delay when the container has been running for `reset_after` by
    /// `now`.
    pub fn observe_running(&mut self, now: Instant) {
        self.started(now);
        if let Some(since) = self.running_since
            && now.saturating_duration_since(since) >= self.policy.reset_after
        {
            self.attempts = 0;
            self.next = self.policy.initial;
        }
    }

    /// The container failed (exited, or could not be prepared or started) at `now`:
    /// returns how long to wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.running_since.take()
            && now.saturating_duration_since(since) >= self.policy.reset_after
        {
            self.attempts = 0;
            self.next = self.policy.initial;
        }
        let delay = self.next;
        self.attempts = self.attempts.saturating_add(1);
        self.next = self.delay_for(self.attempts);
        delay
    }

    fn delay_for(&self, attempts: u32) -> Duration {
        let factor = self.policy.multiplier.powi(attempts.min(64) as i32);
        let secs = self.policy.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.policy.max.as_secs_f64() {
            self.policy.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_from_ten_seconds_capped_at_five_minutes() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let t = Instant::now();
        let seq: Vec<u64> = (0..8).map(|_| b.failed(t).as_secs()).collect();
        assert_eq!(seq, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn short_runs_do_not_reset() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let t0 = Instant::now();
        assert_eq!(b.failed(t0), secs(10));
        b.started(t0 + secs(10));
        assert_eq!(b.failed(t0 + secs(70)), secs(20));
        b.started(t0 + secs(90));
        assert_eq!(b.failed(t0 + secs(100)), secs(40));
    }

    #[test]
    fn resets_after_running_long_enough() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            b.failed(t0);
        }
        b.started(t0);
        // Nine minutes is not enough...
        b.observe_running(t0 + secs(540));
        assert_eq!(b.attempts(), 4);
        // ...ten minutes is.
        b.observe_running(t0 + secs(600));
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.failed(t0 + secs(601)), secs(10));
        // A failure after a long run (without observing it) also starts over.
        b.failed(t0 + secs(602));
        b.started(t0 + secs(700));
        assert_eq!(b.failed(t0 + secs(1400)), secs(10));
    }

    #[test]
    fn honours_the_spec() {
        let policy = BackoffPolicy::from_spec(Some(&RestartPolicy {
            initial_delay: Some(pbjson_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            max_delay: Some(pbjson_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            multiplier: 3.0,
            reset_after: Some(pbjson_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            ..Default::default()
        }));
        assert_eq!(policy.reset_after, secs(30));
        let mut b = Backoff::new(policy);
        let t = Instant::now();
        let seq: Vec<u64> = (0..4).map(|_| b.failed(t).as_secs()).collect();
        assert_eq!(seq, [1, 3, 5, 5]);
        // Unset and zero fields take the defaults.
        assert_eq!(
            BackoffPolicy::from_spec(Some(&RestartPolicy::default())),
            BackoffPolicy::default()
        );
        assert_eq!(BackoffPolicy::from_spec(None), BackoffPolicy::default());
    }
}
