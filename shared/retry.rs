//! Retrying a transient failure of one outbound call in place, before the job gives up its
//! turn: a sync job makes several calls, and one blip (a 500, a timeout, WeCom's −1) should
//! not send the whole job through the queue's backoff. Waits longer than `max_wait` (a rate
//! limit's `Retry-After`) are left to the queue, which does not hold a worker meanwhile.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1: no retry in place).
    pub attempts: u32,
    /// The pause before the second try; each further pause is four times longer.
    pub first_pause: Duration,
    /// A retry that would wait longer than this is not made here.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// No retry in place: every failure goes straight to the caller.
    pub const NONE: Self = Self {
        attempts: 1,
        first_pause: Duration::ZERO,
        max_wait: Duration::ZERO,
    };

    /// What the worker's clients use: three tries, 50 ms then 200 ms apart.
    pub const IN_JOB: Self = Self {
        attempts: 3,
        first_pause: Duration::from_millis(50),
        max_wait: Duration::from_secs(2),
    };

    /// How long to wait before try `next` (2, 3, …) after a transient failure that asked
    /// for `hinted` (if anything); `None`: do not retry here. A hint longer than `max_wait`
    /// (a rate limit's window) is the queue's to honour; shorter hints are the classifiers'
    /// defaults for "soon", for which the policy's own short pauses serve.
    pub fn pause(&self, next: u32, hinted: Option<Duration>) -> Option<Duration> {
        if next > self.attempts || hinted.is_some_and(|h| h > self.max_wait) {
            return None;
        }
        Some(
            self.first_pause
                .saturating_mul(4u32.saturating_pow(next.saturating_sub(2))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stop_after_the_last_attempt_or_a_long_hint() {
        let p = RetryPolicy::IN_JOB;
        assert_eq!(p.pause(2, None), Some(Duration::from_millis(50)));
        assert_eq!(p.pause(3, None), Some(Duration::from_millis(200)));
        assert_eq!(p.pause(4, None), None);
        assert_eq!(
            p.pause(2, Some(Duration::from_secs(1))),
            Some(Duration::from_millis(50))
        );
        assert_eq!(p.pause(2, Some(Duration::from_secs(60))), None);
        assert_eq!(RetryPolicy::NONE.pause(2, None), None);
    }
}
