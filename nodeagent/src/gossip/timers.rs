//! foca's timer events held until their deadline and handed back in deadline order.
//! Order matters: foca expects an indirect probe before the next probe of the same
//! cycle, so events due together come out in foca's own order for its timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::time::Instant;

/// A min-heap of `(deadline, event)`.
#[derive(Debug)]
pub struct TimerQueue<T: Ord>(BinaryHeap<Reverse<(Instant, T)>>);

impl<T: Ord> Default for TimerQueue<T> {
    fn default() -> Self {
        Self(BinaryHeap::new())
    }
}

impl<T: Ord> TimerQueue<T> {
    pub fn push(&mut self, deadline: Instant, event: T) {
        self.0.push(Reverse((deadline, event)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest event due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_deadline()? <= now {
            self.0.pop().map(|Reverse((_, event))| event)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #[test]
        fn events_come_out_in_deadline_order(delays in prop::collection::vec((0..50u64, 0..5u8), 0..60)) {
            let base = Instant::now();
            let mut q = TimerQueue::default();
            for (ms, tie) in &delays {
                q.push(base + Duration::from_millis(*ms), (*ms, *tie));
            }
            prop_assert!(q.pop_due(base - Duration::from_millis(1)).is_none() || delays.is_empty());
            let mut out = Vec::new();
            while let Some(e) = q.pop_due(base + Duration::from_millis(100)) {
                out.push(e);
            }
            let mut sorted = delays.clone();
            sorted.sort();
            prop_assert_eq!(out, sorted);
        }
    }

    #[test]
    fn nothing_is_due_before_its_deadline() {
        let now = Instant::now();
        let mut q = TimerQueue::default();
        q.push(now + Duration::from_millis(10), 1);
        assert_eq!(q.pop_due(now), None);
        assert_eq!(q.pop_due(now + Duration::from_millis(10)), Some(1));
        assert!(q.is_empty());
    }
}
