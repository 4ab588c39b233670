//! Fallback containers: which container of an allocation should run, the primary or
//! one of the spec's fallbacks. A pure state machine over an injected `Instant`; the
//! reconciler does the Docker work its answers call for.
//!
//! The primary runs until it has failed `max_attempts` times without a reset (the
//! restart [`Backoff`](super::Backoff) counts them). Then the first fallback runs in
//! its place, and every `recovery_interval` the primary is probed: the fallback is
//! stopped (the two may bind the same host ports) and the primary started. A probe
//! succeeds when the primary turns healthy (or, without a health check, keeps running
//! for [`PROBE_SETTLE`]); the fallback is then removed. A probe fails when the primary
//! exits or turns unhealthy; the fallback starts again until the next probe. A
//! fallback that itself exhausts the budget hands over to the next one in the list.

use constellation_proto::v1::{HealthState, ServiceSpec};
use std::time::{Duration, Instant};

/// Failures of the primary before the fallback takes over, when the spec lists
/// fallbacks and sets no `max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// How often the primary is probed while a fallback runs, by default.
pub const DEFAULT_RECOVERY_INTERVAL: Duration = Duration::from_secs(60);
/// How long a primary without a health check must run during a probe to count as
/// recovered (capped by the recovery interval).
pub const PROBE_SETTLE: Duration = Duration::from_secs(5);

/// The fallback part of a spec, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackPolicy {
    /// Failures of the primary before the first fallback; `None` means unlimited
    /// (the fallbacks never start).
    pub max_attempts: Option<u32>,
    /// One per fallback, in the spec's order.
    pub recovery_intervals: Vec<Duration>,
}

impl FallbackPolicy {
    pub fn from_spec(spec: &ServiceSpec) -> Self {
        let max_attempts = match spec.restart.as_ref().and_then(|r| r.max_attempts) {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(DEFAULT_MAX_ATTEMPTS),
        };
        let recovery_intervals = spec
            .fallbacks
            .iter()
            .map(|f| {
                f.recovery_interval
                    .as_ref()
                    .filter(|d| d.seconds >= 0 && d.nanos >= 0 && (d.seconds, d.nanos) != (0, 0))
                    .map_or(DEFAULT_RECOVERY_INTERVAL, |d| {
                        Duration::new(d.seconds as u64, d.nanos as u32)
                    })
            })
            .collect();
        Self {
            max_attempts,
            recovery_intervals,
        }
    }

    /// True when fallbacks can ever start.
    pub fn enabled(&self) -> bool {
        self.max_attempts.is_some() && !self.recovery_intervals.is_empty()
    }

    fn interval(&self, index: usize) -> Duration {
        self.recovery_intervals
            .get(index)
            .copied()
            .unwrap_or(DEFAULT_RECOVERY_INTERVAL)
    }

    fn settle(&self, index: usize) -> Duration {
        PROBE_SETTLE.min(self.interval(index))
    }
}

/// Which container should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Primary,
    /// Fallback `index` runs; the primary is probed at `probe_at`.
    Fallback {
        index: usize,
        probe_at: Instant,
    },
    /// The primary was started again at `since` in place of fallback `index`.
    Probing {
        index: usize,
        since: Instant,
    },
}

/// What to do after the primary exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPrimaryExit {
    /// Restart the primary after its backoff delay.
    Restart,
    /// Leave the primary stopped and run fallback `index`.
    RunFallback(usize),
}

/// How a probe of the primary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Not probing.
    None,
    /// Not decided yet.
    Pending,
    /// The primary is back: remove the fallback.
    Recovered,
    /// The primary failed again: stop it and run fallback `index`.
    Failed(usize),
}

/// One allocation's fallback state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    policy: FallbackPolicy,
    mode: Mode,
}

impl Fallback {
    pub fn new(policy: FallbackPolicy) -> Self {
        Self {
            policy,
            mode: Mode::Primary,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fallback that should run now, if any.
    pub fn active(&self) -> Option<usize> {
        match self.mode {
            Mode::Fallback { index, .. } => Some(index),
            _ => None,
        }
    }

    /// Replaces the policy (the spec changed). A spec change also replaces the
    /// containers, so the primary gets its chance again.
    pub fn set_policy(&mut self, policy: FallbackPolicy) {
        if policy != self.policy {
            self.policy = policy;
            self.mode = Mode::Primary;
        }
    }

    /// Back to the primary (a new spec).
    pub fn reset(&mut self) {
        self.mode = Mode::Primary;
    }

    /// A restarted agent found fallback `index` running: carry on from there.
    pub fn adopt(&mut self, index: usize, now: Instant) {
        if self.mode == Mode::Primary
            && self.policy.enabled()
            && index < self.policy.recovery_intervals.len()
        {
            self.mode = Mode::Fallback {
                index,
                probe_at: now + self.policy.interval(index),
            };
        }
    }

    /// The primary exited after `failures` failures since its backoff last reset
    /// (this exit not counted).
    pub fn primary_exited(&mut self, failures: u32, now: Instant) -> OnPrimaryExit {
        match self.mode {
            Mode::Primary => match self.policy.max_attempts {
                Some(max) if self.policy.enabled() && failures >= max => {
                    self.mode = Mode::Fallback {
                        index: 0,
                        probe_at: now + self.policy.interval(0),
                    };
                    OnPrimaryExit::RunFallback(0)
                }
                _ => OnPrimaryExit::Restart,
            },
            Mode::Fallback { index, .. } => OnPrimaryExit::RunFallback(index),
            Mode::Probing { index, .. } => {
                self.fall_back(index, now);
                OnPrimaryExit::RunFallback(index)
            }
        }
    }

    /// Fallback `index` exited after `failures` failures since its backoff last reset:
    /// the next fallback to run (the same one when it has budget left or is the last).
    pub fn fallback_exited(&mut self, failures: u32, now: Instant) -> usize {
        let Mode::Fallback { index, probe_at } = self.mode else {
            return 0;
        };
        let exhausted = self.policy.max_attempts.is_some_and(|max| failures >= max);
        if exhausted && index + 1 < self.policy.recovery_intervals.len() {
            self.mode = Mode::Fallback {
                index: index + 1,
                probe_at: probe_at.min(now + self.policy.interval(index + 1)),
            };
            return index + 1;
        }
        index
    }

    /// True when the primary should be probed now.
    pub fn probe_due(&self, now: Instant) -> bool {
        matches!(self.mode, Mode::Fallback { probe_at, .. } if probe_at <= now)
    }

    /// The probe starts now (the reconciler stops the fallback and starts the primary).
    pub fn start_probe(&mut self, now: Instant) {
        if let Mode::Fallback { index, .. } = self.mode {
            self.mode = Mode::Probing { index, since: now };
        }
    }

    /// The primary was observed during a probe.
    pub fn primary_observed(&mut self, running: bool, health: HealthState, now: Instant) -> Probe {
        let Mode::Probing { index, since } = self.mode else {
            return Probe::None;
        };
        let recovered = running
            && match health {
                HealthState::Healthy => true,
                HealthState::None => {
                    now.saturating_duration_since(since) >= self.policy.settle(index)
                }
                _ => false,
            };
        if recovered {
            self.mode = Mode::Primary;
            return Probe::Recovered;
        }
        if !running || health == HealthState::Unhealthy {
            self.fall_back(index, now);
            return Probe::Failed(index);
        }
        Probe::Pending
    }

    /// When the machine next needs a look without any event: the next probe, or the
    /// end of a probe's settle time.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.mode {
            Mode::Primary => None,
            Mode::Fallback { probe_at, .. } => Some(probe_at),
            Mode::Probing { index, since } => Some(since + self.policy.settle(index)),
        }
    }

    fn fall_back(&mut self, index: usize, now: Instant) {
        self.mode = Mode::Fallback {
            index,
            probe_at: now + self.policy.interval(index),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::{FallbackSpec, RestartPolicy};
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn policy(max: Option<u32>, intervals: &[u64]) -> FallbackPolicy {
        FallbackPolicy {
            max_attempts: max,
            recovery_intervals: intervals.iter().map(|s| secs(*s)).collect(),
        }
    }

    #[test]
    fn defaults_from_the_spec() {
        let mut spec = ServiceSpec::default();
        assert!(!FallbackPolicy::from_spec(&spec).enabled());
        spec.fallbacks = vec![
            FallbackSpec::default(),
            FallbackSpec {
                recovery_interval: Some(pbjson_types::Duration {
                    seconds: 2,
                    nanos: 500_000_000,
                }),
                ..Default::default()
            },
        ];
        let p = FallbackPolicy::from_spec(&spec);
        assert_eq!(p.max_attempts, Some(DEFAULT_MAX_ATTEMPTS));
        assert_eq!(
            p.recovery_intervals,
            [DEFAULT_RECOVERY_INTERVAL, Duration::from_millis(2500)]
        );
        spec.restart = Some(RestartPolicy {
            max_attempts: Some(0),
            ..Default::default()
        });
        assert!(!FallbackPolicy::from_spec(&spec).enabled());
        spec.restart = Some(RestartPolicy {
            max_attempts: Some(1),
            ..Default::default()
        });
        assert_eq!(FallbackPolicy::from_spec(&spec).max_attempts, Some(1));
    }

    #[test]
    fn primary_restarts_until_the_budget_is_spent_then_the_fallback_runs() {
        let mut f = Fallback::new(policy(Some(3), &[60]));
        let t = Instant::now();
        for failures in 0..3 {
            assert_eq!(f.primary_exited(failures, t), OnPrimaryExit::Restart);
        }
        assert_eq!(f.primary_exited(3, t), OnPrimaryExit::RunFallback(0));
        assert_eq!(f.active(), Some(0));
        assert_eq!(f.wake_at(), Some(t + secs(60)));
        // The stopped primary's exit events change nothing.
        assert_eq!(f.primary_exited(4, t), OnPrimaryExit::RunFallback(0));
        assert!(!f.probe_due(t + secs(59)));
        assert!(f.probe_due(t + secs(60)));
    }

    #[test]
    fn no_fallbacks_or_unlimited_attempts_always_restart() {
        let t = Instant::now();
        let mut none = Fallback::new(policy(Some(3), &[]));
        let mut unlimited = Fallback::new(policy(None, &[60]));
        for failures in 0..100 {
            assert_eq!(none.primary_exited(failures, t), OnPrimaryExit::Restart);
            assert_eq!(
                unlimited.primary_exited(failures, t),
                OnPrimaryExit::Restart
            );
        }
    }

    #[test]
    fn a_probe_recovers_on_health_or_falls_back_again() {
        let t = Instant::now();
        let mut f = Fallback::new(policy(Some(1), &[10]));
        f.primary_exited(1, t);
        f.start_probe(t + secs(10));
        assert_eq!(f.active(), None);
        assert_eq!(
            f.primary_observed(true, HealthState::Starting, t + secs(11)),
            Probe::Pending
        );
        // Exits during the probe: the fallback again, next probe an interval later.
        assert_eq!(
            f.primary_observed(false, HealthState::Unspecified, t + secs(12)),
            Probe::Failed(0)
        );
        assert_eq!(
            f.mode(),
            Mode::Fallback {
                index: 0,
                probe_at: t + secs(22)
            }
        );
        f.start_probe(t + secs(22));
        assert_eq!(
            f.primary_observed(true, HealthState::Unhealthy, t + secs(25)),
            Probe::Failed(0)
        );
        f.start_probe(t + secs(35));
        assert_eq!(
            f.primary_observed(true, HealthState::Healthy, t + secs(36)),
            Probe::Recovered
        );
        assert_eq!(f.mode(), Mode::Primary);
        assert_eq!(f.wake_at(), None);
    }

    #[test]
    fn a_primary_without_health_check_must_keep_running() {
        let t = Instant::now();
        let mut f = Fallback::new(policy(Some(1), &[60]));
        f.primary_exited(1, t);
        f.start_probe(t);
        assert_eq!(f.wake_at(), Some(t + PROBE_SETTLE));
        assert_eq!(
            f.primary_observed(true, HealthState::None, t + secs(1)),
            Probe::Pending
        );
        assert_eq!(
            f.primary_observed(true, HealthState::None, t + PROBE_SETTLE),
            Probe::Recovered
        );
    }

    #[test]
    fn an_exhausted_fallback_hands_over_to_the_next() {
        let t = Instant::now();
        let mut f = Fallback::new(policy(Some(2), &[60, 30]));
        f.primary_exited(2, t);
        assert_eq!(f.fallback_exited(1, t), 0);
        assert_eq!(f.fallback_exited(2, t + secs(1)), 1);
        assert_eq!(
            f.mode(),
            Mode::Fallback {
                index: 1,
                probe_at: t + secs(31)
            }
        );
        // The last one keeps running (restarted with backoff) whatever happens.
        assert_eq!(f.fallback_exited(9, t + secs(2)), 1);
    }

    #[test]
    fn adoption_and_spec_changes() {
        let t = Instant::now();
        let mut f = Fallback::new(policy(Some(3), &[60]));
        f.adopt(0, t);
        assert_eq!(f.active(), Some(0));
        // An index the spec no longer has is not adopted.
        let mut g = Fallback::new(policy(Some(3), &[60]));
        g.adopt(1, t);
        assert_eq!(g.active(), None);
        f.set_policy(policy(Some(3), &[60]));
        assert_eq!(f.active(), Some(0));
        f.set_policy(policy(Some(5), &[60]));
        assert_eq!(f.mode(), Mode::Primary);
    }

    proptest! {
        /// Whatever happens, the machine names only fallbacks the spec has, and a
        /// fallback runs only after the primary failed `max_attempts` times.
        #[test]
        fn fallbacks_stay_in_range(
            max in 1u32..5,
            n in 1usize..4,
            steps in proptest::collection::vec((0u8..5, 0u32..8, 0u64..100), 1..60),
        ) {
            let intervals: Vec<u64> = (0..n as u64).map(|i| 10 + i).collect();
            let mut f = Fallback::new(policy(Some(max), &intervals));
            let t0 = Instant::now();
            for (op, failures, at) in steps {
                let now = t0 + secs(at);
                let before = f.mode();
                match op {
                    0 => {
                        let r = f.primary_exited(failures, now);
                        if before == Mode::Primary && failures < max {
                            prop_assert_eq!(r, OnPrimaryExit::Restart);
                        }
                        if let OnPrimaryExit::RunFallback(i) = r {
                            prop_assert!(i < n);
                            prop_assert_eq!(f.active(), Some(i));
                        }
                    }
                    1 => {
                        if f.active().is_some() {
                            prop_assert!(f.fallback_exited(failures, now) < n);
                        }
                    }
                    2 => if f.probe_due(now) { f.start_probe(now) },
                    3 => {
                        let health = [HealthState::Healthy, HealthState::Unhealthy, HealthState::Starting, HealthState::None][(failures % 4) as usize];
                        if let Probe::Failed(i) = f.primary_observed(failures % 2 == 0, health, now) {
                            prop_assert!(i < n);
                        }
                    }
                    _ => f.adopt(failures as usize, now),
                }
                if let Some(i) = f.active() {
                    prop_assert!(i < n);
                }
                if before == Mode::Primary && f.active().is_some() {
                    prop_assert!(op == 0 && failures >= max || op == 4);
                }
            }
        }
    }
}
