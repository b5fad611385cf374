//! Ports: the traits handlers depend on. Adapters live in `store/`, `queue/` and the
//! platform modules; tests swap in controlled implementations (e.g. `ManualClock`).

pub mod clock;
pub mod queue;
pub mod store;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use queue::{DeadLetter, Delivery, Queue, QueueCounts, QueueError};
pub use store::{Claim, Page, Store, StoreError, StoreResult, Write};
