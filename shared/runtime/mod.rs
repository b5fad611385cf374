//! The two ways to run the same handlers: `serve` (one process: axum, a worker pool on the
//! SQLite queue, a nightly timer) and `lambda` (thin adapters from Lambda events).

pub mod demo;
pub mod lambda;
pub mod logging;
pub mod serve;
