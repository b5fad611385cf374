//! Queue adapters: a durable SQLite queue for `tagsync serve`, SQS (+ DLQ) for the Lambdas,
//! and the per-tenant counting SQS needs (`counted`).

pub mod counted;
pub mod sqlite;
pub mod sqs;
