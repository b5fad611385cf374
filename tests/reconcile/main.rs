//! Full reconciliation, end to end: changes made on a side without a callback or webhook
//! (the simulators' silent hands: another app's API writes, a lost callback) are found and
//! repaired by a manual run and by the nightly trigger; the run's report counts them; a
//! second run right after finds nothing; onboarding links libraries by name.

#[path = "../sync/steps.rs"]
#[allow(dead_code)] // shared with tests/sync; not every helper is used here
mod steps;
#[path = "../support/mod.rs"]
mod support;

mod library;
mod members;
mod onboarding;
mod planned;
mod restart;
mod runs;

mod helpers;
pub use helpers::*;
