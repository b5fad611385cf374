//! Accepting an inbound event, shared by the WeCom callback and the mall webhook: dedupe by
//! the event's business key, enqueue durably, and only then say yes.

use crate::app::App;
use crate::domain::{InboundEvent, Job, JobKind, TenantId};
use crate::http::ApiError;
use crate::metrics;
use crate::ports::Claim;

/// What became of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Recorded and queued as a new job.
    Queued,
    /// Seen before: already queued, nothing done twice.
    Duplicate,
}

/// How long a claim blocks a concurrent duplicate while the first copy is being queued.
const CLAIM_LOCK_MS: i64 = 30_000;

/// Dedupes on `key` (kept `ttl_secs`), enqueues the event as a job, then completes the key.
/// If queueing fails the key is released and the caller answers 5xx, so the platform's retry
/// is not mistaken for a duplicate.
pub async fn accept(
    app: &App,
    tenant: &TenantId,
    key: &str,
    ttl_secs: i64,
    event: InboundEvent,
) -> Result<Accepted, ApiError> {
    let source = match &event {
        InboundEvent::WecomTag { .. } | InboundEvent::WecomContact { .. } => "wecom",
        InboundEvent::Mall { .. } => "mall",
    };
    let now = app.clock.now();
    let expires = now.plus_secs(ttl_secs);
    match app
        .store
        .claim(key, now, now.plus_millis(CLAIM_LOCK_MS), expires)
        .await?
    {
        Claim::Completed => {
            app.metrics.incr(
                metrics::EVENTS,
                &[("source", source), ("outcome", "duplicate")],
            );
            return Ok(Accepted::Duplicate);
        }
        // Another copy of this event is being queued right now; if it fails, the platform's
        // retry of this one will get through.
        Claim::InProgress => {
            return Err(ApiError::Unavailable(
                "the same event is being recorded; retry".into(),
            ));
        }
        Claim::Acquired => {}
    }
    let job = Job::new(tenant.clone(), JobKind::Inbound { event }, now);
    if let Err(e) = app.queue.send(std::slice::from_ref(&job)).await {
        if let Err(release) = app.store.release(key).await {
            tracing::error!(key, error = %release, "could not release the dedupe claim; the platform's retry is blocked until the claim lapses");
        }
        return Err(e.into());
    }
    // Both are bookkeeping after the job is safe; they go to the store together.
    let (completed, touched) = tokio::join!(
        app.store.complete(key, expires),
        app.store.touch_last_event(tenant, now)
    );
    if let Err(e) = completed {
        // Queued already: a redelivery after the claim lapses queues a second job, which the
        // level-triggered worker absorbs.
        tracing::warn!(key, error = %e, "event queued but its dedupe record was not completed");
    }
    if let Err(e) = touched {
        tracing::warn!(error = %e, "last event time not recorded");
    }
    app.metrics.incr(
        metrics::EVENTS,
        &[("source", source), ("outcome", "queued")],
    );
    tracing::info!(job_id = %job.id, kind = job.kind.name(), "event queued");
    Ok(Accepted::Queued)
}
