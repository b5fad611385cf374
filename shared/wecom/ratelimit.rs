//! Client-side rate limiting per (corp, API): WeCom allows 10,000 calls per minute per corp
//! per API (wecom-api.md §3); tagsync stays well under with a sliding one-minute window, and
//! after a 45009 every caller of that API waits out the window ([`RateLimiter::pause_until`]).
//!
//! A sliding window (not a token bucket) because WeCom counts per minute: a bucket refilled
//! at N/min with burst N could let ~2N through one WeCom minute.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::classify::ApiOp;
use crate::domain::CorpId;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Calls allowed per (corp, API) in any 60 s span.
    pub per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // Well under WeCom's 10,000 so other apps of the corp and clock skew have room.
        Self { per_minute: 6_000 }
    }
}

#[derive(Default)]
struct Window {
    /// Start times of the calls in the last minute, oldest first.
    calls: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

/// Shared by every caller in a process (one per `WecomClient`). A std `Mutex` because each
/// critical section is a few deque operations and never held across an await.
pub struct RateLimiter {
    config: RateLimitConfig,
    windows: Mutex<HashMap<(CorpId, ApiOp), Window>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config: RateLimitConfig {
                per_minute: config.per_minute.max(1),
            },
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Waits until a call to `api` for `corp` is allowed, then counts it.
    pub async fn acquire(&self, corp: &CorpId, api: ApiOp) {
        loop {
            let wake_at = {
                let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
                let w = windows.entry((corp.clone(), api)).or_default();
                let now = Instant::now();
                while w.calls.front().is_some_and(|t| *t + WINDOW <= now) {
                    w.calls.pop_front();
                }
                match w.paused_until {
                    Some(until) if until > now => until,
                    _ => {
                        w.paused_until = None;
                        if w.calls.len() < self.config.per_minute as usize {
                            w.calls.push_back(now);
                            return;
                        }
                        // Full: the oldest call leaves the window first (a limit of 0 lets
                        // nothing through; it looks again a window later).
                        w.calls.front().map_or(now, |oldest| *oldest) + WINDOW
                    }
                }
            };
            tokio::time::sleep_until(wake_at).await;
        }
    }

    /// Holds every caller of `api` for `corp` until `until` (after a 45009). A later pause
    /// extends, an earlier one never shortens.
    pub fn pause_until(&self, corp: &CorpId, api: ApiOp, until: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry((corp.clone(), api)).or_default();
        w.paused_until = Some(w.paused_until.map_or(until, |u| u.max(until)));
    }

    /// The end of a pause in force, if any.
    pub fn paused_until(&self, corp: &CorpId, api: ApiOp) -> Option<Instant> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .get(&(corp.clone(), api))
            .and_then(|w| w.paused_until)
            .filter(|u| *u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn corp(s: &str) -> CorpId {
        CorpId::new_unchecked(s)
    }

    #[tokio::test(start_paused = true)]
    async fn calls_under_the_cap_do_not_wait() {
        let rl = RateLimiter::new(RateLimitConfig { per_minute: 3 });
        let start = Instant::now();
        for _ in 0..3 {
            rl.acquire(&corp("c"), ApiOp::MarkTag).await;
        }
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn the_call_over_the_cap_waits_until_the_oldest_leaves_the_window() {
        let rl = RateLimiter::new(RateLimitConfig { per_minute: 2 });
        let start = Instant::now();
        rl.acquire(&corp("c"), ApiOp::MarkTag).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        rl.acquire(&corp("c"), ApiOp::MarkTag).await;
        rl.acquire(&corp("c"), ApiOp::MarkTag).await;
        assert_eq!(Instant::now() - start, WINDOW);
        // The fourth waits for the second (taken at +10 s).
        rl.acquire(&corp("c"), ApiOp::MarkTag).await;
        assert_eq!(Instant::now() - start, WINDOW + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn limits_are_per_corp_and_per_api() {
        let rl = RateLimiter::new(RateLimitConfig { per_minute: 1 });
        let start = Instant::now();
        rl.acquire(&corp("a"), ApiOp::MarkTag).await;
        rl.acquire(&corp("b"), ApiOp::MarkTag).await;
        rl.acquire(&corp("a"), ApiOp::AddCorpTag).await;
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_cap_in_any_minute() {
        let rl = Arc::new(RateLimiter::new(RateLimitConfig { per_minute: 5 }));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let rl = rl.clone();
            tasks.push(tokio::spawn(async move {
                rl.acquire(&corp("c"), ApiOp::MarkTag).await;
                Instant::now() - start
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        assert_eq!(times.iter().filter(|t| **t < WINDOW).count(), 5);
        assert_eq!(times.iter().filter(|t| **t < WINDOW * 2).count(), 10);
        assert_eq!(times[11], WINDOW * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let rl = Arc::new(RateLimiter::new(RateLimitConfig::default()));
        let start = Instant::now();
        let until = start + Duration::from_secs(42);
        rl.pause_until(&corp("c"), ApiOp::MarkTag, until);
        // An earlier pause does not shorten it.
        rl.pause_until(&corp("c"), ApiOp::MarkTag, start + Duration::from_secs(1));
        assert_eq!(rl.paused_until(&corp("c"), ApiOp::MarkTag), Some(until));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let rl = rl.clone();
            tasks.push(tokio::spawn(async move {
                rl.acquire(&corp("c"), ApiOp::MarkTag).await;
                Instant::now()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), until);
        }
        // Other APIs were never paused; the pause is over.
        assert_eq!(rl.paused_until(&corp("c"), ApiOp::AddCorpTag), None);
        assert_eq!(rl.paused_until(&corp("c"), ApiOp::MarkTag), None);
    }
}
