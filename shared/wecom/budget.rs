//! The WeCom rate budget: how many calls of one API tagsync may make for one corp, counted
//! in the store so every process and Lambda instance of a deployment spends one budget.
//!
//! WeCom limits each corp per API to 10,000 calls a minute and 150,000 an hour
//! (wecom-api.md §3) and answers 45009 beyond, until the window ends. tagsync takes a share
//! of both ([`BudgetConfig::share`], default 60 %: the corp's other apps call the same APIs)
//! and counts each call in two fixed windows, the clock's minute and hour, like WeCom does:
//! one conditional counter per window in the store ([`Store::count_up`]), so the count is
//! atomic across processes (a conditional `UpdateItem` on DynamoDB, one statement on SQLite).
//!
//! When a window is spent, or WeCom answers 45009 anyway (other apps spent it, clocks
//! differ), the API is paused for that corp until the window ends: the call fails at once
//! with [`Verdict::RateLimited`] carrying the wait, nothing waits in place, and the job that
//! needed it is rescheduled to that moment (`jobs::worker`, `Outcome::Reschedule`). A 45009
//! fills the minute's counter, so every process sees the pause on its next call. Each
//! process also remembers a spent window until it ends, so a paused API costs no store
//! writes.
//!
//! Windows follow tagsync's clock; WeCom's follow its own. Servers keep NTP time, and a
//! 45009 after a boundary skew lets through costs one answer per caller in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::classify::ApiOp;
use crate::domain::{CorpId, Timestamp};
use crate::ports::{Clock, Store, StoreError};
use crate::sync::pace::Windows;

/// WeCom's published limits per corp and API (wecom-api.md §3).
pub const WECOM_PER_MINUTE: u32 = 10_000;
pub const WECOM_PER_HOUR: u32 = 150_000;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Counters are kept a while past their window (TTL), never read again after it.
const KEEP_MS: i64 = HOUR_MS;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Calls allowed per (corp, API) in one clock minute.
    pub per_minute: u32,
    /// Calls allowed per (corp, API) in one clock hour.
    pub per_hour: u32,
}

impl BudgetConfig {
    /// The default share of WeCom's limits: room for the corp's other apps.
    pub const DEFAULT_SHARE: f64 = 0.6;

    /// `share` (0 < share ≤ 1) of WeCom's published limits, at least one call per window.
    pub fn share(share: f64) -> Self {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            Self::DEFAULT_SHARE
        };
        let of = |limit: u32| ((f64::from(limit) * share).floor() as u32).max(1);
        Self {
            per_minute: of(WECOM_PER_MINUTE),
            per_hour: of(WECOM_PER_HOUR),
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self::share(Self::DEFAULT_SHARE)
    }
}

/// Why a call may not go now.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The window is spent (by tagsync, or WeCom said 45009): the API is paused until `until`.
    #[error("the {window} budget of {op} for corp {corp} is spent until {until}")]
    Spent {
        corp: CorpId,
        op: ApiOp,
        window: &'static str,
        until: Timestamp,
    },
    #[error("counting the call in the rate budget: {0}")]
    Store(#[from] StoreError),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Window {
    Minute,
    Hour,
}

impl Window {
    fn len_ms(self) -> i64 {
        match self {
            Window::Minute => MINUTE_MS,
            Window::Hour => HOUR_MS,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
        }
    }
    /// The window's number and its end.
    fn at(self, now: Timestamp) -> (i64, Timestamp) {
        let n = now.millis().div_euclid(self.len_ms());
        (n, Timestamp::from_millis((n + 1) * self.len_ms()))
    }
}

/// One deployment's budget, as one process sees it (one per `WecomClient`).
pub struct RateBudget {
    config: BudgetConfig,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Windows this process saw spent, until their end: no store write while paused.
    spent: Mutex<HashMap<(CorpId, ApiOp), (Timestamp, Window)>>,
}

impl RateBudget {
    pub fn new(config: BudgetConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            config: BudgetConfig {
                per_minute: config.per_minute.max(1),
                per_hour: config.per_hour.max(1),
            },
            store,
            clock,
            spent: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> BudgetConfig {
        self.config
    }

    fn counter(corp: &CorpId, op: ApiOp, window: Window, n: i64) -> String {
        format!("wecom-budget#{corp}#{}#{}#{n}", op.path(), window.name())
    }

    fn limit(&self, window: Window) -> u64 {
        u64::from(match window {
            Window::Minute => self.config.per_minute,
            Window::Hour => self.config.per_hour,
        })
    }

    fn spent_error(corp: &CorpId, op: ApiOp, window: Window, until: Timestamp) -> BudgetError {
        BudgetError::Spent {
            corp: corp.clone(),
            op,
            window: window.name(),
            until,
        }
    }

    /// Counts one call of `op` for `corp` in the minute and the hour, or says until when the
    /// API is paused. A call refused by the hour still spent its minute slot: harmless, the
    /// hour lets nothing through anyway.
    pub async fn take(&self, corp: &CorpId, op: ApiOp) -> Result<(), BudgetError> {
        let now = self.clock.now();
        if let Some((until, window)) = self.paused(corp, op, now) {
            return Err(Self::spent_error(corp, op, window, until));
        }
        for window in [Window::Minute, Window::Hour] {
            let (n, end) = window.at(now);
            let name = Self::counter(corp, op, window, n);
            let expires = Timestamp::from_millis(end.millis() + KEEP_MS);
            if self
                .store
                .count_up(&name, 1, self.limit(window), expires)
                .await?
                .is_none()
            {
                self.remember(corp, op, end, window);
                return Err(Self::spent_error(corp, op, window, end));
            }
        }
        Ok(())
    }

    /// WeCom answered 45009: the minute is spent for every process (its counter filled), and
    /// the API paused until the minute ends. Answers that moment.
    pub async fn exhausted(&self, corp: &CorpId, op: ApiOp) -> Result<Timestamp, StoreError> {
        let now = self.clock.now();
        let (n, end) = Window::Minute.at(now);
        let name = Self::counter(corp, op, Window::Minute, n);
        let expires = Timestamp::from_millis(end.millis() + KEEP_MS);
        self.remember(corp, op, end, Window::Minute);
        // Adding the whole limit fills it whatever the count was.
        self.store
            .count_up(&name, self.limit(Window::Minute), u64::MAX, expires)
            .await?;
        Ok(end)
    }

    /// The end of a pause this process knows of, and the window it is in.
    fn paused(&self, corp: &CorpId, op: ApiOp, now: Timestamp) -> Option<(Timestamp, Window)> {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let key = (corp.clone(), op);
        match spent.get(&key) {
            Some((until, window)) if *until > now => Some((*until, *window)),
            Some(_) => {
                spent.remove(&key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, corp: &CorpId, op: ApiOp, until: Timestamp, window: Window) {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let entry = spent.entry((corp.clone(), op)).or_insert((until, window));
        // A later pause extends, an earlier one never shortens.
        if until > entry.0 {
            *entry = (until, window);
        }
    }

    /// The budget of `op` for `corp` and how much of the current minute and hour is spent
    /// (for planning: `sync::pace`). Reads the counters by adding nothing to them; a pause this
    /// process knows of spends its window whatever the counter says.
    pub async fn windows(&self, corp: &CorpId, op: ApiOp) -> Result<Windows, StoreError> {
        let now = self.clock.now();
        let mut spent = [0u64; 2];
        for (i, window) in [Window::Minute, Window::Hour].into_iter().enumerate() {
            let (n, end) = window.at(now);
            let name = Self::counter(corp, op, window, n);
            let expires = Timestamp::from_millis(end.millis() + KEEP_MS);
            spent[i] = self
                .store
                .count_up(&name, 0, u64::MAX, expires)
                .await?
                .unwrap_or(0);
        }
        match self.paused(corp, op, now) {
            Some((_, Window::Minute)) => spent[0] = self.limit(Window::Minute),
            Some((_, Window::Hour)) => spent[1] = self.limit(Window::Hour),
            None => {}
        }
        Ok(Windows {
            per_minute: self.limit(Window::Minute),
            per_hour: self.limit(Window::Hour),
            spent_minute: spent[0],
            spent_hour: spent[1],
        })
    }

    /// The end of the pause of `op` for `corp` this process knows of, if one is in force.
    pub fn paused_until(&self, corp: &CorpId, op: ApiOp) -> Option<Timestamp> {
        self.paused(corp, op, self.clock.now()).map(|(u, _)| u)
    }
}

/// How long from `now` until `until` (at least a millisecond: a job rescheduled "now" would
/// find the same window).
pub fn wait_until(now: Timestamp, until: Timestamp) -> Duration {
    Duration::from_millis((until.millis() - now.millis()).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use crate::store::sqlite::{SqliteDb, open_store};

    fn corp(s: &str) -> CorpId {
        CorpId::new_unchecked(s)
    }

    struct Fixture {
        clock: ManualClock,
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    fn fixture(at_ms: i64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(open_store(&SqliteDb::open_in_dir(dir.path()).unwrap()));
        Fixture {
            clock: ManualClock::starting_at(Timestamp::from_millis(at_ms)),
            store,
            _dir: dir,
        }
    }

    fn budget(f: &Fixture, per_minute: u32, per_hour: u32) -> RateBudget {
        RateBudget::new(
            BudgetConfig {
                per_minute,
                per_hour,
            },
            f.store.clone(),
            Arc::new(f.clock.clone()),
        )
    }

    fn until_of(e: BudgetError) -> (Timestamp, &'static str) {
        match e {
            BudgetError::Spent { until, window, .. } => (until, window),
            other => panic!("expected a spent window, got {other}"),
        }
    }

    #[test]
    fn the_default_share_leaves_room_for_the_corps_other_apps() {
        let c = BudgetConfig::default();
        assert_eq!((c.per_minute, c.per_hour), (6_000, 90_000));
        assert_eq!(BudgetConfig::share(0.01).per_minute, 100);
        assert_eq!(BudgetConfig::share(0.0).per_minute, 1);
        assert_eq!(BudgetConfig::share(7.0).per_hour, WECOM_PER_HOUR);
    }

    #[tokio::test]
    async fn calls_beyond_the_minute_are_refused_until_the_minute_ends() {
        let f = fixture(3 * MINUTE_MS + 20_000);
        let b = budget(&f, 2, 100);
        let c = corp("c");
        b.take(&c, ApiOp::MarkTag).await.unwrap();
        b.take(&c, ApiOp::MarkTag).await.unwrap();
        let (until, window) = until_of(b.take(&c, ApiOp::MarkTag).await.unwrap_err());
        assert_eq!((until.millis(), window), (4 * MINUTE_MS, "minute"));
        // Another API and another corp have budgets of their own.
        b.take(&c, ApiOp::AddCorpTag).await.unwrap();
        b.take(&corp("d"), ApiOp::MarkTag).await.unwrap();
        f.clock.set(Timestamp::from_millis(4 * MINUTE_MS));
        b.take(&c, ApiOp::MarkTag).await.unwrap();
    }

    #[tokio::test]
    async fn the_hour_caps_what_the_minutes_would_allow() {
        let f = fixture(5 * HOUR_MS);
        let b = budget(&f, 2, 3);
        let c = corp("c");
        b.take(&c, ApiOp::MarkTag).await.unwrap();
        b.take(&c, ApiOp::MarkTag).await.unwrap();
        f.clock.advance_millis(MINUTE_MS);
        b.take(&c, ApiOp::MarkTag).await.unwrap();
        let (until, window) = until_of(b.take(&c, ApiOp::MarkTag).await.unwrap_err());
        assert_eq!((until.millis(), window), (6 * HOUR_MS, "hour"));
        f.clock.set(Timestamp::from_millis(6 * HOUR_MS));
        b.take(&c, ApiOp::MarkTag).await.unwrap();
    }

    #[tokio::test]
    async fn two_processes_on_one_store_spend_one_budget() {
        let f = fixture(7 * MINUTE_MS);
        let (a, b) = (budget(&f, 3, 100), budget(&f, 3, 100));
        let c = corp("c");
        let mut allowed = 0;
        for i in 0..10 {
            let one = if i % 2 == 0 { &a } else { &b };
            if one.take(&c, ApiOp::MarkTag).await.is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
    }

    #[tokio::test]
    async fn a_45009_pauses_the_api_for_every_process_until_the_minute_ends() {
        let f = fixture(9 * MINUTE_MS + 59_000);
        let (a, b) = (budget(&f, 100, 1000), budget(&f, 100, 1000));
        let c = corp("c");
        a.take(&c, ApiOp::MarkTag).await.unwrap();
        let end = a.exhausted(&c, ApiOp::MarkTag).await.unwrap();
        assert_eq!(end.millis(), 10 * MINUTE_MS);
        assert_eq!(a.paused_until(&c, ApiOp::MarkTag), Some(end));
        // The other process learns it from the store on its next call.
        let (until, _) = until_of(b.take(&c, ApiOp::MarkTag).await.unwrap_err());
        assert_eq!(until, end);
        f.clock.set(end);
        a.take(&c, ApiOp::MarkTag).await.unwrap();
        b.take(&c, ApiOp::MarkTag).await.unwrap();
    }

    #[tokio::test]
    async fn windows_show_what_the_minute_and_the_hour_have_spent_without_spending() {
        let f = fixture(11 * HOUR_MS + 30 * MINUTE_MS);
        let b = budget(&f, 5, 20);
        let c = corp("c");
        for _ in 0..3 {
            b.take(&c, ApiOp::MarkTag).await.unwrap();
        }
        f.clock.advance_millis(MINUTE_MS);
        b.take(&c, ApiOp::MarkTag).await.unwrap();
        let w = b.windows(&c, ApiOp::MarkTag).await.unwrap();
        assert_eq!(
            (w.per_minute, w.per_hour, w.spent_minute, w.spent_hour),
            (5, 20, 1, 4)
        );
        assert_eq!(
            b.windows(&c, ApiOp::MarkTag).await.unwrap(),
            w,
            "reading spent nothing"
        );
        b.exhausted(&c, ApiOp::MarkTag).await.unwrap();
        assert_eq!(b.windows(&c, ApiOp::MarkTag).await.unwrap().spent_minute, 5);
    }

    #[test]
    fn a_wait_is_never_zero() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(wait_until(t, t), Duration::from_millis(1));
        assert_eq!(
            wait_until(t, Timestamp::from_millis(3_500)),
            Duration::from_millis(2_500)
        );
    }
}
