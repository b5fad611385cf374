//! The test harness shared by the test binaries and the benches (not part of the product):
//! the whole system on loopback ([`world::World`]) and `tagsync serve` as its own process
//! ([`process::ServeProcess`]). Each binary includes it with
//! `#[path = "../support/mod.rs"] mod support;` and uses what it needs.

#![allow(dead_code)]

pub mod cloud;
pub mod process;
pub mod world;
