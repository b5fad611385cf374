//! Per-tenant counts for a queue that cannot count one tenant's messages (SQS: its counts
//! are per queue, and a deployment's tenants share one). [`TenantCounted`] wraps such a queue
//! and keeps one [`QueueMark`] per queued job in the store — written when the job is sent,
//! received, retried and parked, deleted when it is done — so `GET …/status` counts the asked
//! tenant's jobs exactly.
//!
//! Why marks and not counters: delivery is at least once. A counter decremented on "done"
//! drifts when a job is done twice (a redelivery after a lost ack) or a send is retried; a
//! mark is keyed by the job id, so every copy rewrites the same mark. Deletes come before the
//! queue's own ack (a failure in between leaves a mark of a job the queue still has, never the
//! other way round); a receive only updates an existing mark, so a late copy of a job already
//! done does not bring its mark back. What stays approximate, briefly: a job being received
//! again after its mark was deleted counts nowhere until it settles (it is done already).
//! A job the queue itself moves to its DLQ (the worker died on the last receive) is counted
//! dead once its last visibility lapses ([`QueueCounts::of_marks`]). Marks expire with the
//! queue's retention, so nothing outlives the message it counts.

use crate::domain::{Job, MarkState, QueueMark, TenantId, Timestamp};
use crate::ports::{Clock, DeadLetter, Delivery, Queue, QueueCounts, QueueError, Store};
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long the main queue keeps a message (`MessageRetentionPeriod` in `template.yaml`).
const QUEUE_RETENTION_SECS: i64 = 4 * 24 * 3600;
/// How long the dead-letter queue keeps one.
const DLQ_RETENTION_SECS: i64 = 14 * 24 * 3600;
/// Dead letters a redrive looks at to learn which jobs it sends back (the admin route's scan).
const REDRIVE_SCAN: usize = 1000;

pub struct TenantCounted<Q> {
    inner: Q,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl<Q: Queue> TenantCounted<Q> {
    pub fn new(inner: Q, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            store,
            clock,
        }
    }

    pub fn inner(&self) -> &Q {
        &self.inner
    }

    fn mark(&self, job: &Job, state: MarkState, now: Timestamp) -> QueueMark {
        let keep = match state {
            MarkState::Dead => DLQ_RETENTION_SECS,
            _ => QUEUE_RETENTION_SECS,
        };
        QueueMark {
            tenant: job.tenant.clone(),
            job: job.id.clone(),
            state,
            expires_at: now.plus_secs(keep),
        }
    }

    /// Moves an existing mark on; a failure only costs the count's precision until the job's
    /// next step, so it is logged, not raised.
    async fn update(&self, delivery: &Delivery, state: MarkState) {
        let Ok(job) = &delivery.job else { return };
        let mark = self.mark(job, state, self.clock.now());
        if let Err(e) = self.store.update_queue_mark(&mark).await {
            tracing::warn!(job_id = %job.id, error = %e, "queue mark not updated");
        }
    }

    async fn running(&self, delivery: &Delivery, visibility: Duration) {
        let now = self.clock.now();
        let state = MarkState::Running {
            receive: delivery.receive_count,
            until: now.plus_millis(visibility.as_millis() as i64),
        };
        self.update(delivery, state).await;
    }
}

fn counting_failed(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable {
        op: "queue marks",
        message: e.to_string(),
    }
}

#[async_trait]
impl<Q: Queue> Queue for TenantCounted<Q> {
    async fn send(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let now = self.clock.now();
        let marks: Vec<QueueMark> = jobs
            .iter()
            .map(|j| self.mark(j, MarkState::Waiting, now))
            .collect();
        // Marked first: a job on the queue is always counted.
        self.store
            .put_queue_marks(&marks)
            .await
            .map_err(counting_failed)?;
        if let Err(e) = self.inner.send(jobs).await {
            for m in &marks {
                if let Err(e) = self.store.delete_queue_mark(&m.tenant, &m.job).await {
                    tracing::warn!(job_id = %m.job, error = %e, "mark of an unsent job not removed; it expires");
                }
            }
            return Err(e);
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deliveries = self.inner.receive(max, visibility, wait).await?;
        for d in &deliveries {
            self.running(d, visibility).await;
        }
        Ok(deliveries)
    }

    async fn extend(&self, delivery: &Delivery, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(delivery, visibility).await?;
        self.running(delivery, visibility).await;
        Ok(())
    }

    async fn started(&self, delivery: &Delivery, visibility: Duration) {
        self.running(delivery, visibility).await;
    }

    async fn finished(&self, delivery: &Delivery) -> Result<(), QueueError> {
        if let Ok(job) = &delivery.job {
            self.store
                .delete_queue_mark(&job.tenant, &job.id)
                .await
                .map_err(counting_failed)?;
        }
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        if let Ok(job) = &delivery.job {
            self.store
                .delete_queue_mark(&job.tenant, &job.id)
                .await
                .map_err(counting_failed)?;
        }
        self.inner.ack(delivery).await
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError> {
        self.inner.retry(delivery, delay, error).await?;
        self.update(delivery, MarkState::Waiting).await;
        Ok(())
    }

    async fn reschedule(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.inner.reschedule(delivery, delay, reason).await?;
        self.update(delivery, MarkState::Waiting).await;
        Ok(())
    }

    async fn park(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.inner.park(delivery, reason).await?;
        if let Ok(job) = &delivery.job {
            // Written whatever was there: the job is in the dead letters now.
            let mark = self.mark(job, MarkState::Dead, self.clock.now());
            if let Err(e) = self.store.put_queue_marks(&[mark]).await {
                tracing::warn!(job_id = %job.id, error = %e, "queue mark of a parked job not written");
            }
        }
        Ok(())
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.inner.counts().await
    }

    async fn tenant_counts(&self, tenant: &TenantId) -> Result<Option<QueueCounts>, QueueError> {
        let marks = self
            .store
            .list_queue_marks(tenant)
            .await
            .map_err(counting_failed)?;
        Ok(Some(QueueCounts::of_marks(
            &marks,
            self.clock.now(),
            self.inner.max_receives(),
        )))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters(limit).await
    }

    async fn redrive(&self, message_ids: Option<&[String]>) -> Result<usize, QueueError> {
        // Which jobs go back: the dead letters named (all when none are), as listed now.
        let wanted: Option<HashSet<&str>> =
            message_ids.map(|ids| ids.iter().map(String::as_str).collect());
        let jobs: Vec<Job> = self
            .inner
            .dead_letters(REDRIVE_SCAN)
            .await?
            .into_iter()
            .filter(|d| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(d.message_id.as_str()))
            })
            .filter_map(|d| d.job)
            .collect();
        // Marked waiting before they move: one received and done at once must not have its
        // mark written back after its deletion.
        let now = self.clock.now();
        let marks =
            |state| -> Vec<QueueMark> { jobs.iter().map(|j| self.mark(j, state, now)).collect() };
        self.store
            .put_queue_marks(&marks(MarkState::Waiting))
            .await
            .map_err(counting_failed)?;
        match self.inner.redrive(message_ids).await {
            Ok(moved) => Ok(moved),
            Err(e) => {
                // Still dead as far as we know; any that did move are marked running when
                // received (their mark exists).
                if let Err(e) = self.store.put_queue_marks(&marks(MarkState::Dead)).await {
                    tracing::warn!(error = %e, "queue marks of a failed redrive not restored");
                }
                Err(e)
            }
        }
    }

    fn max_receives(&self) -> u32 {
        self.inner.max_receives()
    }
}
