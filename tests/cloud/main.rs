//! The cloud path end to end: the same scenarios the SQLite end-to-end binaries run — groups
//! and tags created, renamed, moved and deleted from each side, member tags both ways, a
//! library and a members reconciliation run, 30 % injected faults, a parked job redriven —
//! with tagsync running as it runs on AWS: the DynamoDB store on DynamoDB Local, the SQS queue
//! on moto, every HTTP route (the WeCom callback and the mall webhook included) called through
//! the Lambda HTTP adapter as API Gateway v2 events, and the worker fed the way the SQS event
//! source mapping feeds it (batches of up to 10, partial batch failures, visibility timeout,
//! the DLQ after 5 receives). See `tests/support/cloud.rs`.
//!
//! The scenario files are the other binaries' own (`#[path]`): this binary's worlds default to
//! the cloud backend (`support::world::Backend::of_this_binary`). Cases that are about the
//! cloud stand-ins themselves live in `mapping.rs`.

#[path = "../sync/steps.rs"]
#[allow(dead_code)] // shared with tests/sync; not every helper is used here
mod steps;
#[path = "../support/mod.rs"]
mod support;

// Library: create, rename, move, delete from each side; member tags both ways.
#[path = "../sync/create.rs"]
mod create;
#[path = "../sync/delete.rs"]
mod delete;
#[path = "../sync/members.rs"]
mod members;
#[path = "../sync/move_tag.rs"]
mod move_tag;
#[path = "../sync/rename.rs"]
mod rename;

// A library and a members reconciliation run (page chains as jobs).
#[path = "../reconcile/helpers.rs"]
mod reconcile_helpers;
pub use reconcile_helpers::*;
mod members_run;
#[path = "../reconcile/library.rs"]
mod reconcile_library;

// 30 % injected faults; a parked job redriven.
#[path = "../convergence/drive.rs"]
#[allow(dead_code)]
mod drive;
#[path = "../convergence/faults.rs"]
mod faults;
#[path = "../convergence/model.rs"]
#[allow(dead_code)]
mod model;
#[path = "../convergence/parked.rs"]
mod parked;

mod mapping;
