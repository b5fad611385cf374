//! Simulators of the platforms tagsync talks to: real HTTP servers on loopback that behave as
//! `../shared` documents them, for tests and the demo.
//! Compiled only with the cargo feature `sim` (on by default; off in the Lambda build). The
//! test harness built on them (`World`, `ServeProcess`) lives in `tests/support/`.

pub mod feed;
pub mod hold;
pub mod mall;
pub mod settle;
pub mod wecom;
