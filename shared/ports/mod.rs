//! Ports: the traits handlers depend on, one per outside system. `App` holds each as a trait
//! object, so jobs and routes never name a concrete adapter:
//!
//! - [`Store`] (`store.rs`): adapters in `store/` (SQLite, DynamoDB);
//! - [`Queue`] (`queue.rs`): adapters in `queue/` (SQLite, SQS);
//! - [`Clock`] (`clock.rs`): the system clock, and controlled ones for tests (`ManualClock`);
//! - [`WecomPort`] (`wecom.rs`): the WeCom API, implemented by `WecomClient` in `wecom/port.rs`;
//! - [`MallPort`] (`mall.rs`): the mall's API, implemented by `MallClient` in `mall/port.rs`.
//!
//! A platform port's errors carry their meaning (retry, rate-limited, not ours, name taken,
//! unknown id, no relation): callers ask for it and never read errcodes or HTTP statuses.

pub mod clock;
pub mod mall;
pub mod queue;
pub mod store;
pub mod wecom;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use mall::MallPort;
pub use queue::{DeadLetter, Delivery, Queue, QueueCounts, QueueError};
pub use store::{Claim, Page, Store, StoreError, StoreResult, Write};
pub use wecom::WecomPort;
