//! End-to-end tests of tagsync's single-machine runtime and Lambda adapters. One binary
//! (cargo builds and links it once); each module is one area, each test starts its own
//! system on its own port and data directory.

mod admin;
mod durability;
mod hardening;
mod heartbeat;
mod helpers;
mod lambda;
mod library;
mod mall_sim;
mod mall_webhook;
mod members;
mod metrics;
mod process;
mod scoped_groups;
#[path = "../support/mod.rs"]
mod support;
mod wecom_callback;
mod wecom_sim;
mod worker;
