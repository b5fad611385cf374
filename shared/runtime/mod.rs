//! The two ways to run the same handlers: `serve` (one process: axum, a worker pool on the
//! SQLite queue, a nightly timer) and `lambda` (thin adapters from Lambda events).

#[cfg(feature = "sim")]
pub mod demo;
/// A build without the simulators (the Lambda one) answers `--demo` with an error.
#[cfg(not(feature = "sim"))]
#[path = "no_demo.rs"]
pub mod demo;
pub mod lambda;
pub mod logging;
pub mod serve;
