//! The three sides kept in step, end to end: the WeCom simulator, the mall simulator and a real
//! `tagsync serve` in one [`crate::support::world::World`] per test. A test acts as a person on
//! one side (the WeCom console or client, the mall's operator, the hub's admin API), waits for
//! the system to go quiet, and checks all three sides.

mod concurrency;
mod create;
mod delete;
mod echo;
mod mall_batch;
mod meanwhile;
mod members;
mod move_tag;
mod order;
mod rate;
mod rename;
mod steps;
#[path = "../support/mod.rs"]
mod support;
mod switches;
