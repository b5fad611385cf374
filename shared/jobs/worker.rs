//! The job worker: a job in, an [`Outcome`] out ([`run_job`]); and the one rule that turns
//! an outcome into what the queue should do with the delivery ([`settle`]).

use crate::app::App;
use crate::domain::*;
use crate::ports::{Delivery, QueueError, Write};
use std::time::Duration;
use tracing::Instrument;

/// What running a job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A transient failure: try again after `delay` (None: the worker's backoff decides).
    /// `side`: the side the failure came from, when known (shown on the job's object if the
    /// job ends parked).
    RetryAfter {
        delay: Option<Duration>,
        reason: String,
        side: Option<Side>,
    },
    /// A failure retrying cannot fix: park it where an operator sees and can redrive it.
    Park {
        reason: String,
        side: Option<Side>,
    },
    /// Something the job needs is on its way (another job is creating, moving or deleting
    /// it): look again after [`WAIT`], doubled per receive (0.5, 1, 2, 4 s before the last
    /// receive), so a slow neighbour under load does not get the job parked; after the last
    /// receive it is rescheduled as a fresh copy until [`wait_patience`] has passed since it
    /// was queued, and only then parked.
    Wait {
        reason: String,
    },
    /// A platform's rate window is spent (WeCom's 45009 or tagsync's budget): run again when
    /// it ends, `delay` from now. Not a failure: the receive does not count towards parking.
    Reschedule {
        delay: Duration,
        reason: String,
    },
}

/// The first look-again delay of [`Outcome::Wait`].
pub const WAIT: Duration = Duration::from_millis(500);

/// How long a waiting job waits before its next receive: [`WAIT`] doubled per receive, at most
/// 16 times (no jitter: what it waits for is one other job, not a crowd).
pub fn wait_delay(receive_count: u32) -> Duration {
    WAIT.saturating_mul(1u32 << receive_count.saturating_sub(1).min(4))
}

/// The least a waiting job waits in all before it is parked.
pub const MIN_WAIT_PATIENCE: Duration = Duration::from_secs(60);

/// How long since it was queued a job keeps waiting ([`Outcome::Wait`]) before it is parked:
/// what it waits for is another job, which may itself be retried up to `max_receives` times
/// with the worker's backoff (2 + 4 + 8 + 16 s by default, each up to 20 % more) and may be
/// waiting for a third (a tag for its group): three of those spans, and at least
/// [`MIN_WAIT_PATIENCE`] (a queue's delays are whole seconds: SQS rounds 20 ms up to 1 s).
/// The five receives of [`wait_delay`] last 7.5 s, shorter than one such span: the cloud-path
/// suite parked a member job waiting for a tag whose own job was still retrying.
pub fn wait_patience(worker: &crate::config::WorkerConfig, max_receives: u32) -> Duration {
    let span: Duration = (1..max_receives)
        .map(|n| {
            let exp = n.saturating_sub(1).min(20);
            worker
                .base_backoff
                .saturating_mul(1u32 << exp)
                .min(worker.max_backoff)
                .saturating_mul(6)
                / 5
        })
        .sum();
    span.saturating_mul(3).max(MIN_WAIT_PATIENCE)
}

impl Outcome {
    /// A transient failure whose side is unknown, retried after the worker's backoff.
    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::RetryAfter {
            delay: None,
            reason: reason.into(),
            side: None,
        }
    }

    /// A permanent failure whose side is unknown.
    pub fn park(reason: impl Into<String>) -> Self {
        Outcome::Park {
            reason: reason.into(),
            side: None,
        }
    }
}

/// What to do with a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    Retry {
        delay: Duration,
        error: String,
    },
    /// `side`: see [`Outcome::Park`].
    Park {
        reason: String,
        side: Option<Side>,
    },
    /// Deliver again after `delay` as if this receive had not happened ([`Queue::reschedule`]).
    ///
    /// [`Queue::reschedule`]: crate::ports::Queue::reschedule
    Reschedule {
        delay: Duration,
        reason: String,
    },
}

/// Exponential backoff with ±20 % jitter: `base · 2^(receives−1)`, capped at `max`.
pub fn backoff(receive_count: u32, base: Duration, max: Duration) -> Duration {
    let exp = receive_count.saturating_sub(1).min(20);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let jitter = rand::random_range(0.8..1.2);
    raw.mul_f64(jitter).min(max)
}

/// Decides what the queue does: a retryable failure on the last allowed receive is parked
/// with its reason rather than retried.
pub fn settle(app: &App, delivery: &Delivery, outcome: Outcome) -> Settlement {
    match outcome {
        Outcome::Done => Settlement::Ack,
        Outcome::Park { reason, side } => Settlement::Park { reason, side },
        // Never parked for waiting: the window ends, the job runs.
        Outcome::Reschedule { delay, reason } => Settlement::Reschedule { delay, reason },
        Outcome::RetryAfter { reason, side, .. }
            if delivery.receive_count >= app.queue.max_receives() =>
        {
            Settlement::Park {
                reason: format!("{reason} (gave up after {} tries)", delivery.receive_count),
                side,
            }
        }
        // Out of receives but not of patience: a fresh copy waits on (its receive count
        // starts again, so the queue's redrive policy does not take it either).
        Outcome::Wait { reason }
            if delivery.receive_count >= app.queue.max_receives()
                && delivery.job.as_ref().is_ok_and(|job| {
                    let waited = app.clock.now().millis() - job.enqueued_at.millis();
                    let patience = wait_patience(&app.config.worker, app.queue.max_receives());
                    waited < patience.as_millis() as i64
                }) =>
        {
            Settlement::Reschedule {
                delay: wait_delay(delivery.receive_count),
                reason,
            }
        }
        Outcome::Wait { reason } if delivery.receive_count >= app.queue.max_receives() => {
            Settlement::Park {
                reason: format!("{reason} (gave up after {} tries)", delivery.receive_count),
                side: None,
            }
        }
        Outcome::Wait { reason } => Settlement::Retry {
            delay: wait_delay(delivery.receive_count),
            error: reason,
        },
        Outcome::RetryAfter { delay, reason, .. } => {
            let w = &app.config.worker;
            Settlement::Retry {
                delay: delay.unwrap_or_else(|| {
                    backoff(delivery.receive_count, w.base_backoff, w.max_backoff)
                }),
                error: reason,
            }
        }
    }
}

/// The span every log line about one delivery carries: message id, receive count, and the
/// tenant, job id and kind when the body is a job.
pub fn job_span(delivery: &Delivery) -> tracing::Span {
    match &delivery.job {
        Ok(job) => {
            tracing::info_span!("job", message_id = %delivery.message_id, receive = delivery.receive_count,
            tenant = %job.tenant, job_id = %job.id, kind = job.kind.name())
        }
        Err(_) => {
            tracing::info_span!("job", message_id = %delivery.message_id, receive = delivery.receive_count)
        }
    }
}

/// Counts a settled delivery by job kind and outcome.
pub fn count(app: &App, delivery: &Delivery, settlement: &Settlement) {
    let kind = delivery
        .job
        .as_ref()
        .map(|j| j.kind.name())
        .unwrap_or("undecodable");
    let outcome = match settlement {
        Settlement::Ack => "done",
        Settlement::Retry { .. } => "retried",
        Settlement::Park { .. } => "parked",
        Settlement::Reschedule { .. } => "rescheduled",
    };
    app.metrics.incr(
        crate::metrics::JOBS,
        &[("kind", kind), ("outcome", outcome)],
    );
}

/// Runs a delivery's job, or parks a body that is not a job this version understands.
pub async fn outcome_of(app: &App, delivery: &Delivery) -> Outcome {
    match &delivery.job {
        Ok(job) => isolated(app, job).await,
        Err(body) => Outcome::park(format!(
            "message is not a job this version understands: {}",
            truncate(body, 200)
        )),
    }
}

/// Runs `job` as a task of its own, so a panic in it ends only this job: the pool's worker (or
/// the Lambda's batch) carries on, and the panic becomes the job's failure, retried like any
/// transient one and parked with the panic's message after the last try.
async fn isolated(app: &App, job: &Job) -> Outcome {
    let task = {
        let (app, job) = (app.clone(), job.clone());
        tokio::spawn(async move { run_job(&app, &job).await }.in_current_span())
    };
    // Dropped unfinished (the worker abandoned at shutdown, or the run cap passed): the job's
    // task stops with it.
    let mut task = AbortOnDrop(task);
    let cap = app.config.worker.run_cap();
    let Ok(joined) = tokio::time::timeout(cap, &mut task.0).await else {
        tracing::error!(
            cap_secs = cap.as_secs_f64(),
            "job ran past its run cap; stopped"
        );
        return Outcome::retry(format!(
            "the job ran longer than its cap of {} s and was stopped",
            cap.as_secs_f64()
        ));
    };
    match joined {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => {
            let message = panic_message(e.into_panic().as_ref());
            tracing::error!(panic = message, "job panicked");
            Outcome::retry(format!("the job panicked: {message}"))
        }
        Err(e) => Outcome::retry(format!("the job's task ended early: {e}")),
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a panic said (`panic!` with a literal gives a `&str`, with arguments a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    truncate(text, 500).to_owned()
}

/// Runs one delivery end to end on a queue that settles itself (`tagsync serve`); `heartbeat`
/// keeps it invisible while it runs and lets go of it before it is settled.
pub async fn process(
    app: &App,
    delivery: &Delivery,
    heartbeat: &super::heartbeat::Heartbeat,
) -> Result<Settlement, QueueError> {
    async {
        let outcome = outcome_of(app, delivery).await;
        heartbeat.release(delivery).await;
        let settlement = settle(app, delivery, outcome);
        count(app, delivery, &settlement);
        match &settlement {
            Settlement::Ack => app.queue.ack(delivery).await?,
            Settlement::Retry { delay, error } => {
                tracing::warn!(?delay, error, "job will be retried");
                app.queue.retry(delivery, *delay, error).await?
            }
            Settlement::Park { reason, side } => park(app, delivery, reason, *side).await?,
            Settlement::Reschedule { delay, reason } => {
                tracing::info!(
                    ?delay,
                    reason,
                    "job rescheduled to the end of a rate window"
                );
                app.queue.reschedule(delivery, *delay, reason).await?
            }
        }
        Ok(settlement)
    }
    .instrument(job_span(delivery))
    .await
}

/// Parks a delivery, then shows the failure where operators look: the job's library object
/// `failed` with the reason (see [`super::parked::show`]), its sync run `failed`.
pub async fn park(
    app: &App,
    delivery: &Delivery,
    reason: &str,
    side: Option<Side>,
) -> Result<(), QueueError> {
    app.queue.park(delivery, reason).await?;
    tracing::error!(reason, "job parked");
    if let Ok(job) = &delivery.job {
        super::parked::show(app, job, reason, side).await;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// How long a job's idempotency record is kept: longer than any redelivery of it.
const JOB_RECORD_TTL_SECS: i64 = 7 * 24 * 3600;

/// Runs one job.
pub async fn run_job(app: &App, job: &Job) -> Outcome {
    let tenant = match app.store.get_tenant(&job.tenant).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Outcome::park(format!("unknown tenant `{}`", job.tenant));
        }
        Err(e) if e.retryable() => {
            return Outcome::retry(format!("reading tenant: {e}"));
        }
        Err(e) => {
            return Outcome::park(format!("reading tenant: {e}"));
        }
    };
    match &job.kind {
        JobKind::Probe {
            note,
            fail,
            work_ms,
            panic,
        } => {
            if *panic {
                // The diagnostic's whole point: a real panic inside a job (see `isolated`).
                panic!("probe asked to panic");
            }
            probe(app, &tenant, job, note, *fail, *work_ms).await
        }
        // Jobs queued before a switch went off wait for the manual sync like new changes.
        kind if !super::allowed(&tenant.settings, kind) => Outcome::Done,
        JobKind::Inbound { event, repeat } => {
            super::intake::run(app, &tenant, job, event, *repeat).await
        }
        JobKind::SyncGroup { group, hint } => {
            super::library::sync_group(app, &tenant, job, group, hint).await
        }
        JobKind::SyncTag { tag, hint } => {
            super::library::sync_tag(app, &tenant, job, tag, hint).await
        }
        JobKind::SyncMember { member, hint } => {
            super::members::sync_member(app, &tenant, job, member, hint).await
        }
        JobKind::SyncMembers { members, hint } => {
            crate::jobs::member_batch::run(app, &tenant, job, members, hint).await
        }
        JobKind::RunChain { run, chain } => {
            super::reconcile::advance(app, &tenant, job, run, chain).await
        }
        JobKind::BulkStart { run } => crate::jobs::bulk_tags::snapshot(app, &tenant, run).await,
        JobKind::BulkChunk {
            run,
            chunk,
            customers,
        } => crate::jobs::bulk_tags::chunk(app, &tenant, job, run, *chunk, customers).await,
        JobKind::Transfer { run } => crate::jobs::transfers::run(app, &tenant, job, run).await,
        JobKind::Rules { event } => crate::jobs::rules::run(app, &tenant, job, event).await,
        JobKind::Undo {
            run,
            rule,
            since,
            page,
        } => crate::jobs::undo::run(app, &tenant, job, run, rule, *since, *page).await,
    }
}

/// A probe records one audit entry, exactly once per job id even when redelivered.
async fn probe(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    note: &str,
    fail: bool,
    work_ms: u64,
) -> Outcome {
    if fail {
        return Outcome::retry("probe asked to fail");
    }
    if work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(work_ms)).await;
    }
    let entry = AuditEntry {
        tenant: tenant.id.clone(),
        at: app.clock.now(),
        side: Actor::System,
        action: "probe.processed".into(),
        entity: format!("job:{}", job.id),
        before: None,
        after: Some(serde_json::json!({"note": note})),
        origin: "operator".into(),
    };
    record_once(app, job, entry).await
}

/// Writes `entry` exactly once per job id, however often the job is delivered: the entry and
/// the job's idempotency record are one atomic write that succeeds only if the record is new,
/// so a crash before it leaves the job to run again, and a redelivery after it (or a copy
/// running at the same time) changes nothing.
pub(crate) async fn record_once(app: &App, job: &Job, entry: AuditEntry) -> Outcome {
    let now = app.clock.now();
    let key = format!("job#{}", job.id);
    let done = Write::CompleteOnce {
        key: key.clone(),
        now,
        expires_at: now.plus_secs(JOB_RECORD_TTL_SECS),
    };
    match app.store.transact(vec![done, Write::Audit(entry)]).await {
        Ok(()) => Outcome::Done,
        // The key is completed already: this delivery is a duplicate and the entry exists.
        Err(e) if e.is_conflict() => Outcome::Done,
        Err(e) => Outcome::retry(format!("recording {}: {e}", job.kind.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_receive_within_jitter_and_is_capped() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(300);
        for n in 1..=6u32 {
            let d = backoff(n, base, max).as_secs_f64();
            let expect = (2f64 * 2f64.powi(n as i32 - 1)).min(300.0);
            assert!(
                d >= expect * 0.8 - 1e-9 && d <= expect * 1.2 + 1e-9,
                "receive {n}: {d} vs {expect}"
            );
        }
        assert!(backoff(40, base, max) <= max);
    }

    #[test]
    fn a_waiting_job_outwaits_three_retry_spans_of_the_job_it_waits_for() {
        let default = crate::config::WorkerConfig::default();
        // 2 + 4 + 8 + 16 s, 20 % jitter, three times.
        assert_eq!(wait_patience(&default, 5), Duration::from_millis(108_000));
        let quick = crate::config::WorkerConfig {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..default
        };
        assert_eq!(wait_patience(&quick, 5), MIN_WAIT_PATIENCE);
        let capped = crate::config::WorkerConfig {
            max_backoff: Duration::from_secs(5),
            ..crate::config::WorkerConfig::default()
        };
        // 2 + 4 + 5 + 5 s, 20 % jitter, three times: 57.6 s, less than the floor.
        assert_eq!(wait_patience(&capped, 5), MIN_WAIT_PATIENCE);
        let slow = crate::config::WorkerConfig {
            base_backoff: Duration::from_secs(10),
            ..crate::config::WorkerConfig::default()
        };
        // 10 + 20 + 40 + 80 s, 20 % jitter, three times.
        assert_eq!(wait_patience(&slow, 5), Duration::from_secs(540));
    }

    #[test]
    fn a_waiting_job_looks_again_after_a_delay_that_doubles_per_receive() {
        let waits: Vec<u128> = (1..=7).map(|n| wait_delay(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
