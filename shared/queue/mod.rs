//! Queue adapters: a durable SQLite queue for `tagsync serve`, SQS (+ DLQ) for the Lambdas.

pub mod sqlite;
pub mod sqs;
