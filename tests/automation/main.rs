//! Automatic tagging end to end (automation.md): rules, firings, the chat-message feed,
//! channel codes and undo, with the WeCom and mall simulators and a real `tagsync serve` in
//! one world per test. Each test is one behaviour, named for it.

#[path = "../support/mod.rs"]
mod harness;

mod channels;
mod demo;
mod feed;
mod rules;
#[path = "../sync/steps.rs"]
#[allow(dead_code)]
mod steps;
mod support;
