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

/// What an event whose dedupe key was seen before still gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRepeat {
    /// Nothing: the key names one event (the mall's event ids), so this is a re-send.
    Drop,
    /// Queued again, marked as a repeat: the key may also name a second change (WeCom
    /// callbacks carry no event id; their key holds `CreateTime` in seconds), and the event's
    /// level-triggered jobs read the side, so running them again costs a look at most.
    Requeue,
}

/// Dedupes on `key` (kept `ttl_secs`), enqueues the event as a job, then completes the key.
/// If queueing fails the key is released and the caller answers 5xx, so the platform's retry
/// is not mistaken for a duplicate.
pub async fn accept(
    app: &App,
    tenant: &TenantId,
    key: &str,
    ttl_secs: i64,
    event: InboundEvent,
    on_repeat: OnRepeat,
) -> Result<Accepted, ApiError> {
    let source = match &event {
        InboundEvent::WecomTag { .. }
        | InboundEvent::WecomContact { .. }
        | InboundEvent::WecomDirectory { .. } => "wecom",
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
            if on_repeat == OnRepeat::Requeue {
                let kind = JobKind::Inbound {
                    event,
                    repeat: true,
                };
                // Not queued: the platform retries, and the retry is requeued then.
                app.queue
                    .send(&[Job::new(tenant.clone(), kind, now)])
                    .await?;
            }
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
    let job = Job::new(
        tenant.clone(),
        JobKind::Inbound {
            event,
            repeat: false,
        },
        now,
    );
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
