//! When the calls a run still owes one WeCom API will have gone, given the rate budget's
//! windows (`wecom::budget`: a per-minute and a per-hour count per corp and API, in fixed clock
//! windows). Pure: the caller reads how much of the current windows is spent.
//!
//! The plan assumes the run's calls take every slot the budget leaves from now on; the corp's
//! other traffic through tagsync (events, other runs) only makes it later, so it is the
//! earliest finish, and it is recomputed as pages are done.

pub use crate::domain::LimitedBy;
use crate::domain::Timestamp;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// The budget of one API for one corp, and how much of the current windows is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub per_minute: u64,
    pub per_hour: u64,
    /// Calls counted in the current clock minute and hour.
    pub spent_minute: u64,
    pub spent_hour: u64,
}

/// When the last call can go, and which window spreads the calls out: `hour` when they need
/// more than what is left of this hour, `minute` when they fit this hour but not this minute;
/// neither when they all fit now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finish {
    /// When the last call can go (now, when all fit in the current minute).
    pub at: Timestamp,
    pub limited_by: Option<LimitedBy>,
}

/// When `calls` calls will have gone from `now` on.
pub fn finish(calls: u64, now: Timestamp, w: Windows) -> Finish {
    let (per_minute, per_hour) = (w.per_minute.max(1), w.per_hour.max(1));
    let mut left = calls;
    let mut t = now.millis();
    // What this minute and this hour still allow.
    let mut minute_left = per_minute.saturating_sub(w.spent_minute);
    let mut hour_left = per_hour.saturating_sub(w.spent_hour);
    let mut limited_by = None;
    loop {
        let minute_start = t - t.rem_euclid(MINUTE_MS);
        let hour_end = t - t.rem_euclid(HOUR_MS) + HOUR_MS;
        // Whole minutes after this one before the hour ends.
        let later_minutes = ((hour_end - minute_start) / MINUTE_MS - 1) as u64;
        let this_minute = minute_left.min(hour_left);
        if left <= this_minute {
            return Finish {
                at: Timestamp::from_millis(t),
                limited_by,
            };
        }
        let in_hour = this_minute
            .saturating_add(later_minutes.saturating_mul(per_minute))
            .min(hour_left);
        if left <= in_hour {
            // The last call goes at the start of the minute that has room for it.
            let after_this = left - this_minute;
            let minutes = after_this.div_ceil(per_minute) as i64;
            return Finish {
                at: Timestamp::from_millis(minute_start + minutes * MINUTE_MS),
                limited_by: limited_by.or(Some(LimitedBy::Minute)),
            };
        }
        left -= in_hour;
        // The rest waits for the next hour, whichever window ran out first in this one.
        limited_by = Some(if hour_left <= in_hour {
            LimitedBy::Hour
        } else {
            LimitedBy::Minute
        });
        t = hour_end;
        minute_left = per_minute;
        hour_left = per_hour;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `h:m:s` on some day.
    fn at(h: i64, m: i64, s: i64) -> Timestamp {
        Timestamp::from_millis(400_000 * HOUR_MS + h * HOUR_MS + m * MINUTE_MS + s * 1000)
    }

    fn windows(per_minute: u64, per_hour: u64, spent_minute: u64, spent_hour: u64) -> Windows {
        Windows {
            per_minute,
            per_hour,
            spent_minute,
            spent_hour,
        }
    }

    #[test]
    fn calls_that_fit_the_current_minute_finish_now() {
        let f = finish(5, at(10, 10, 30), windows(10, 100, 3, 50));
        assert_eq!(
            f,
            Finish {
                at: at(10, 10, 30),
                limited_by: None
            }
        );
        assert_eq!(
            finish(0, at(10, 0, 0), windows(1, 1, 1, 1)).at,
            at(10, 0, 0)
        );
    }

    #[test]
    fn calls_beyond_the_minute_go_a_minute_at_a_time() {
        // 7 left this minute, then 10 a minute: 25 calls end in the second minute after.
        let f = finish(25, at(10, 10, 30), windows(10, 1000, 3, 3));
        assert_eq!(
            f,
            Finish {
                at: at(10, 12, 0),
                limited_by: Some(LimitedBy::Minute)
            }
        );
    }

    #[test]
    fn fifty_calls_at_twenty_an_hour_end_two_hours_on() {
        // 20 this hour (none spent yet), 20 the next, the last 10 at the start of the third.
        let f = finish(50, at(10, 5, 0), windows(10, 20, 0, 0));
        assert_eq!(
            f,
            Finish {
                at: at(12, 0, 0),
                limited_by: Some(LimitedBy::Hour)
            }
        );
        // With 15 of this hour spent: 5, 20, 20, then 5 more.
        let f = finish(50, at(10, 5, 0), windows(10, 20, 0, 15));
        assert_eq!(f.at, at(13, 0, 0));
        // The third hour's 10 go at 10 a minute: a minute after its start for 15.
        let f = finish(55, at(10, 5, 0), windows(10, 20, 0, 0));
        assert_eq!(f.at, at(12, 1, 0));
    }

    #[test]
    fn minutes_near_the_hours_end_can_limit_before_the_hour_does() {
        // 10:58:30, 10 a minute, 1000 an hour: this minute's 10 and the next's 10, then 11:00.
        let f = finish(25, at(10, 58, 30), windows(10, 1000, 0, 0));
        assert_eq!(
            f,
            Finish {
                at: at(11, 0, 0),
                limited_by: Some(LimitedBy::Minute)
            }
        );
    }

    #[test]
    fn wecoms_default_share_spreads_a_large_onboarding_over_hours() {
        // 60 % of 10,000 a minute and 150,000 an hour; 400,000 relations to mark from 10:00.
        let f = finish(400_000, at(10, 0, 0), windows(6_000, 90_000, 0, 0));
        // 4 full hours take 360,000; the last 40,000 at 6,000 a minute from 14:00.
        assert_eq!(
            f,
            Finish {
                at: at(14, 6, 0),
                limited_by: Some(LimitedBy::Hour)
            }
        );
    }
}
