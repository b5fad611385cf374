//! The queue port: at-least-once delivery of jobs with a visibility timeout, retries after a
//! delay, and a dead-letter area an operator can list and redrive.

use crate::domain::{Job, Timestamp};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable during {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    /// The receipt no longer names an in-flight delivery (its visibility timed out and it
    /// was received again, or it was already acked).
    #[error("stale receipt: {0}")]
    StaleReceipt(String),
    #[error("invalid queue request: {0}")]
    Invalid(String),
}

impl QueueError {
    pub fn retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// A received job.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `Err` holds the raw body when it does not decode as a job (parked, never dropped).
    pub job: Result<Job, String>,
    /// The queue's message id (stable across receives).
    pub message_id: String,
    /// Proves this receive; needed to ack, retry or park.
    pub receipt: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

/// A parked job.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    pub job: Option<Job>,
    pub reason: String,
    pub receive_count: u32,
    pub parked_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    /// Waiting for a first try or for a retry (backoff included). On SQS a retry only moves
    /// the message's visibility, so SQS counts a job waiting out its backoff as in flight;
    /// `pending + in_flight` is the same on both.
    pub pending: u64,
    /// Received and not yet acked, retried or timed out.
    pub in_flight: u64,
    /// Parked.
    pub dead: u64,
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends jobs durably: when this returns Ok, every job is stored.
    async fn send(&self, jobs: &[Job]) -> Result<(), QueueError>;
    /// Receives up to `max` jobs, each invisible to other receivers for `visibility`;
    /// waits up to `wait` for the first one.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;
    /// The job is done: delete it.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Try again after `delay`; `error` is kept as the job's last error.
    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError>;
    /// Move to the dead letters with `reason`.
    async fn park(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
    async fn counts(&self) -> Result<QueueCounts, QueueError>;
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// Sends dead letters back to the queue as fresh messages (receive count reset): those
    /// named by `message_ids`, or all when `None`. Returns how many moved.
    async fn redrive(&self, message_ids: Option<&[String]>) -> Result<usize, QueueError>;
    /// After this many receives a failing job is parked instead of retried.
    fn max_receives(&self) -> u32;
}
