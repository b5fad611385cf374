//! The three sides converge: random interleavings of library and member-tag edits on the WeCom
//! console, the mall's operator and the hub's admin API, under duplicated, reordered and
//! delayed deliveries and transient faults, end with the same library and the same member tags
//! everywhere, with a bounded number of jobs and a system that then stays quiet; heavy
//! transient failure parks nothing; a permanent failure is parked with its reason and goes
//! through once its cause is fixed and the job redriven.
//!
//! Each test (each property case) runs its own [`crate::support::world::World`] on loopback.
//!
//! - `property`: the property test (proptest, driven by hand: one runtime and world per case),
//!   10 cases by default; `TAGSYNC_PROPTEST_CASES=40` (or more) looks harder;
//! - `faults`: 100 changes under 30 % transient failure on both sides;
//! - `parked`: permanent failures, dead letters and redrive;
//! - `found`: sequences the property test found, reduced and made deterministic (the
//!   simulators hold the call each race is about: `tagsync::sim::hold`);
//! - `model` (abstract edits and their generators) and `drive` (carrying them out, checks).
//!
//! Environment:
//! - `TAGSYNC_PROPTEST_CASES` (default 10): cases of the property test;
//! - `TAGSYNC_PROPTEST_SEED`: the property test's seed (printed by every run; random if unset;
//!   the cases in `property.proptest-regressions` run first whatever the seed);
//! - `TAGSYNC_PROPTEST_SHRINK_ITERS` (default 32): how hard a failure is shrunk;
//! - `TAGSYNC_PROPTEST_SIDES` (default `wecom,mall,hub`): the sides the edits come from;
//! - `TAGSYNC_PROPTEST_AVOID` (default: nothing): patterns to step around, to narrow down a
//!   failure (`drive::Avoid`);
//! - `TAGSYNC_FAULTS_SEED`: the fault test's seed (fixed by default);
//! - `TAGSYNC_CONVERGENCE_VERBOSE=1`: print steps as they run, and tagsync's audit trail
//!   with a failure;
//! - `RUST_LOG` (e.g. `tagsync=debug`): the property test prints tagsync's log.

mod drive;
mod faults;
mod found;
mod model;
mod parked;
mod property;
#[path = "../support/mod.rs"]
mod support;
