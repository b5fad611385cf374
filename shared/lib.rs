//! tagsync keeps customer tags the same across a merchant's WeCom corp, its mall's
//! member-tag plugin, and tagsync's own hub. Every entry point in `functions/` builds one
//! [`app::App`] per process and calls a transport-neutral handler from here.
//!
//! Map of the library:
//!
//! | module | what lives there |
//! |---|---|
//! | [`domain`] | pure model: id newtypes, tenants, the tag library, members, jobs, runs, audit |
//! | [`sync`] | the sync engine, pure: merge what each side shows with the hub and plan changes; the rules for a name two objects want and for a group's tags |
//! | [`ports`] | the traits handlers depend on: [`ports::Store`], [`ports::Queue`], [`ports::Clock`], [`ports::WecomPort`], [`ports::MallPort`] |
//! | [`store`] | the typed store over one pk/sk table, with SQLite and DynamoDB backends; tenant secrets sealed at rest |
//! | [`queue`] | the durable SQLite queue and the SQS queue |
//! | [`wecom`] | WeCom: callback crypto and events, API client, shared token, rate limiter, errcode classifier (verdicts and refusals: the one place errcodes are read) |
//! | [`mall`] | the mall: webhook signatures and events, API client with its classifier |
//! | [`retry`] | retrying one transient failure of an outbound call in place |
//! | [`http`] | transport-neutral request/response and the one error → status mapping |
//! | [`api`] | inbound endpoints: WeCom callback, mall webhook, and the chat-message feed, and the operator's API (`api::admin`, one file per resource) |
//! | [`jobs`] | the sync engine's I/O half: the job worker and its outcome, intake, library jobs (`jobs::library`: group, tag, each side's leg, collisions, saving), member and run jobs, customer index, automatic-tagging rules and undo, the nightly trigger |
//! | [`concurrency`] | a bounded fan-out and the in-process named locks, shared by routes and jobs |
//! | [`console`] | the operator's web console at `/admin/`: static assets compiled in |
//! | [`runtime`] | the two ways to run: `serve` (axum + worker pool + timer) and `lambda` adapters |
//! | `sim` | WeCom and mall simulators: real HTTP servers for tests and the demo (cargo feature `sim`, off in the Lambda build) |
//! | [`metrics`] | counters of events, jobs and API calls: Prometheus text and CloudWatch embedded metrics |
//! | [`app`] | `App`: config + store + queue + clock, built once per process |
//! | [`config`] | typed configuration from the environment and flags |

pub mod api;
pub mod app;
pub mod aws_error;
pub mod concurrency;
pub mod config;
pub mod console;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod mall;
pub mod metrics;
pub mod ports;
pub mod queue;
pub mod retry;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod sync;
pub mod wecom;
