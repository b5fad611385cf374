//! The queue port: at-least-once delivery of jobs with a visibility timeout, retries after a
//! delay, and a dead-letter area an operator can list and redrive.

use crate::domain::{Job, MarkState, QueueMark, TenantId, Timestamp};
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

impl QueueCounts {
    /// One tenant's counts from its jobs' marks at `now`. A mark still `running` past its
    /// visibility is visible again (pending) — or, after the last allowed receive, moved to
    /// the dead letters by the queue itself (dead): the worker never settled it.
    pub fn of_marks(marks: &[QueueMark], now: Timestamp, max_receives: u32) -> Self {
        let mut counts = QueueCounts::default();
        for mark in marks.iter().filter(|m| m.expires_at > now) {
            match mark.state {
                MarkState::Waiting => counts.pending += 1,
                MarkState::Running { until, .. } if until > now => counts.in_flight += 1,
                MarkState::Running { receive, .. } if receive >= max_receives => counts.dead += 1,
                MarkState::Running { .. } => counts.pending += 1,
                MarkState::Dead => counts.dead += 1,
            }
        }
        counts
    }
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
    /// The job is still running: keep it invisible for `visibility` more from now (the
    /// worker's heartbeat, so a job may run longer than one visibility timeout). A receipt
    /// that no longer holds the message (it was settled, or its visibility lapsed and it was
    /// received again) is [`QueueError::StaleReceipt`].
    async fn extend(&self, delivery: &Delivery, visibility: Duration) -> Result<(), QueueError>;
    /// The job is done: delete it.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Try again after `delay`; `error` is kept as the job's last error.
    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError>;
    /// Deliver the job again after `delay` as if this receive had not happened: its receive
    /// count does not grow (waiting for a rate window is no failure). A delay beyond what the
    /// queue can hold (SQS: 15 minutes) is cut to it; the job then finds the window still
    /// spent and is rescheduled again (a hop). `reason` is kept where the queue keeps errors.
    async fn reschedule(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError>;
    /// Move to the dead letters with `reason`.
    async fn park(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
    /// Counts of the whole queue (every tenant's jobs).
    async fn counts(&self) -> Result<QueueCounts, QueueError>;
    /// Counts of one tenant's jobs; `None` when this queue cannot tell tenants apart (SQS on
    /// its own: see `queue::counted`).
    async fn tenant_counts(&self, _tenant: &TenantId) -> Result<Option<QueueCounts>, QueueError> {
        Ok(None)
    }
    /// A delivery handed to the worker by its runtime rather than by [`Queue::receive`] (the
    /// Lambda event source mapping) starts running now, for up to `visibility`.
    async fn started(&self, _delivery: &Delivery, _visibility: Duration) {}
    /// A delivery its runtime deletes itself (Lambda deletes a batch's successful messages)
    /// is done. An error asks the runtime to deliver it again instead (it will be a duplicate
    /// of a done job, which changes nothing).
    async fn finished(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        Ok(())
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// Sends dead letters back to the queue as fresh messages (receive count reset): those
    /// named by `message_ids`, or all when `None`. Returns how many moved.
    async fn redrive(&self, message_ids: Option<&[String]>) -> Result<usize, QueueError>;
    /// After this many receives a failing job is parked instead of retried.
    fn max_receives(&self) -> u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobId;

    fn mark(state: MarkState, expires_at: i64) -> QueueMark {
        QueueMark {
            tenant: TenantId::parse("t").unwrap(),
            job: JobId::new_unchecked("j"),
            state,
            expires_at: Timestamp::from_millis(expires_at),
        }
    }

    #[test]
    fn marks_count_waiting_running_and_dead_and_a_lapsed_last_receive_as_dead() {
        let now = Timestamp::from_millis(1_000);
        let running = |receive, until| MarkState::Running {
            receive,
            until: Timestamp::from_millis(until),
        };
        let marks = [
            mark(MarkState::Waiting, 9_000),
            mark(running(1, 2_000), 9_000),
            // Its visibility lapsed: visible again, so waiting.
            mark(running(2, 500), 9_000),
            // Its last allowed receive lapsed unsettled: the queue parks it itself.
            mark(running(5, 500), 9_000),
            mark(MarkState::Dead, 9_000),
            // Expired with the queue's retention: gone.
            mark(MarkState::Waiting, 999),
        ];
        assert_eq!(
            QueueCounts::of_marks(&marks, now, 5),
            QueueCounts {
                pending: 2,
                in_flight: 1,
                dead: 2,
            }
        );
    }
}
