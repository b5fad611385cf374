//! The WeCom client against the WeCom simulator: every API round-trips over real HTTP, the
//! token cache refreshes once however many callers or processes race, the classifier's
//! verdicts drive retries and pauses, and the simulator's callbacks are signed and encrypted
//! as WeCom's are (wecom-api.md §1–§5, §9).

mod api;
mod callbacks;
mod faults;
mod helpers;
mod strategy;
mod tokens;
