//! Jobs: the sync engine's I/O half and what runs it. A job in, an outcome out ([`worker`]);
//! what a sync job reads from the hub and the two sides, hands to the pure core
//! (`crate::sync`), and applies. `intake` turns a verified inbound event into "bring entity K
//! up to date" jobs; `library` runs group and tag jobs; `members` runs member jobs;
//! `member_batch` runs jobs of many members, whose mall writes `mall_writes` gathers into
//! batch requests; `reconcile` runs a sync run's pages; `nightly` starts the nightly runs; `parked` shows a
//! parked job's failure on its object; `customer_index` files customers in the hub's index;
//! `rules` evaluates automatic-tagging rules on an event and applies them; `undo` runs a
//! rule's undo page by page; `bulk_tags` runs bulk tagging by filter; `transfers` moves a
//! customer transfer on (send, follow WeCom's results, carry the tags). Every job holds a lock on what it brings up to date,
//! so two copies never both create.

pub mod bulk_tags;
pub mod customer_index;
pub mod directory;
pub mod heartbeat;
pub mod intake;
pub mod lease;
pub mod library;
pub mod mall_writes;
pub mod member_batch;
pub mod members;
pub mod nightly;
pub mod parked;
pub mod reconcile;
pub mod rules;
pub mod transfers;
pub mod undo;
pub mod worker;

use crate::app::App;
use crate::domain::*;
use crate::mall::client::MallError;
use crate::ports::StoreError;
use crate::wecom::client::WecomError;
use std::time::Duration;
use worker::Outcome;

/// Whether a tag on a follow relation is one tagsync syncs: a corp tag (type 1) or a rule-group
/// tag (3, a scoped group's: docs/scoped-groups.md). Personal tags (2) cannot be written by API.
pub(crate) fn is_synced_wecom_tag(kind: i64) -> bool {
    matches!(kind, 1 | 3)
}

/// Queues sync jobs for `tenant`, dropping those its switches hold back: nothing while the
/// feature is off, library jobs while `auto_sync` is off, member jobs while `member_sync` is
/// off (the manual sync brings those sides together later). Returns how many were queued.
pub async fn enqueue(
    app: &App,
    tenant: &Tenant,
    kinds: Vec<JobKind>,
) -> Result<usize, crate::ports::QueueError> {
    let now = app.clock.now();
    let jobs: Vec<Job> = kinds
        .into_iter()
        .filter(|k| allowed(&tenant.settings, k))
        .map(|k| Job::new(tenant.id.clone(), k, now))
        .collect();
    // SQS takes at most 10 messages per batch; both queues accept any slice and split it.
    if !jobs.is_empty() {
        app.queue.send(&jobs).await?;
    }
    Ok(jobs.len())
}

/// Whether the tenant's switches let this kind of sync run now.
/// A job a reconciliation run queued (its `hint.run`) is the manual sync itself: only the
/// feature switch holds it back.
pub fn allowed(settings: &Settings, kind: &JobKind) -> bool {
    match kind {
        JobKind::SyncGroup { hint, .. } | JobKind::SyncTag { hint, .. } => {
            settings.tags_enabled && (settings.auto_sync || hint.run.is_some())
        }
        JobKind::SyncMember { hint, .. } | JobKind::SyncMembers { hint, .. } => {
            settings.tags_enabled && (settings.member_sync || hint.run.is_some())
        }
        JobKind::Inbound { .. } | JobKind::Rules { .. } | JobKind::Undo { .. } => {
            settings.tags_enabled
        }
        // A run's page ends the run itself when the feature went off (its report says so).
        // A transfer is WeCom's, going whatever the switches say: it is followed to its end.
        JobKind::RunChain { .. } | JobKind::Probe { .. } | JobKind::Transfer { .. } => true,
        JobKind::BulkStart { .. } | JobKind::BulkChunk { .. } => settings.tags_enabled,
    }
}

/// What a failed step of a sync job asks of the worker, already decided. One of these and
/// nothing in between: a park cannot also be a retry, a superseded run is no failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Try again: after this long, or (`None`) after the worker's growing backoff. `shown`:
    /// the object shows the side `failed`, with the reason, even while it is retried.
    Retry {
        after: Option<Duration>,
        shown: bool,
    },
    /// Something the job needs is still on its way ([`Outcome::Wait`]).
    Wait,
    /// The platform's rate window is spent until `after` from now: run again then
    /// ([`Outcome::Reschedule`]), not as a failure.
    RateLimited { after: Duration },
    /// Failed for good: parked with the reason.
    Park,
    /// No failure at all: a name collision was settled (the object merged into its
    /// duplicate, or its clashing change refused) and brought up to date by a nested run, so
    /// what remains of this run's work is moot.
    Superseded,
}

/// A failed step of a sync job: what to do ([`StepKind`]), why, and the side it came from
/// when known (shown `failed` on the job's object if the job ends parked).
#[derive(Debug)]
pub struct StepError {
    pub kind: StepKind,
    pub reason: String,
    pub side: Option<Side>,
}

impl StepError {
    fn of(kind: StepKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            side: None,
        }
    }
    pub fn park(reason: impl Into<String>) -> Self {
        Self::of(StepKind::Park, reason)
    }
    pub fn retry(reason: impl Into<String>, after: Option<Duration>) -> Self {
        Self::of(
            StepKind::Retry {
                after,
                shown: false,
            },
            reason,
        )
    }
    /// A retry that the operator sees on the object meanwhile (it may end parked).
    pub fn retry_shown(reason: impl Into<String>, after: Option<Duration>) -> Self {
        Self::of(StepKind::Retry { after, shown: true }, reason)
    }
    /// Something this job needs is on its way (a tag another job is creating, moving or
    /// deleting): look again soon, with a growing delay ([`Outcome::Wait`]).
    pub fn wait(reason: impl Into<String>) -> Self {
        Self::of(StepKind::Wait, reason)
    }
    /// The platform's rate window is spent until `after` from now: run again then
    /// ([`Outcome::Reschedule`]).
    pub fn rate_limited(reason: impl Into<String>, after: Duration) -> Self {
        Self::of(StepKind::RateLimited { after }, reason)
    }
    pub fn superseded(reason: impl Into<String>) -> Self {
        Self::of(StepKind::Superseded, reason)
    }
    /// This failure came from `side`.
    pub fn on(mut self, side: Side) -> Self {
        self.side = Some(side);
        self
    }
    /// The same decision for another reason (the failure said with more context).
    pub fn because(self, reason: String) -> Self {
        Self { reason, ..self }
    }
    /// Whether the job will run again (a retry, a wait or a rescheduling).
    pub fn comes_back(&self) -> bool {
        matches!(
            self.kind,
            StepKind::Retry { .. } | StepKind::Wait | StepKind::RateLimited { .. }
        )
    }
    pub fn is_park(&self) -> bool {
        self.kind == StepKind::Park
    }
    pub fn is_superseded(&self) -> bool {
        self.kind == StepKind::Superseded
    }
    /// Whether the object shows this failure (a park, or a retry meant to be seen).
    pub fn is_shown(&self) -> bool {
        matches!(
            self.kind,
            StepKind::Park | StepKind::Retry { shown: true, .. }
        )
    }
    pub fn into_outcome(self) -> Outcome {
        let reason = self.reason;
        match self.kind {
            StepKind::Superseded => {
                tracing::info!(reason, "superseded by a nested run");
                Outcome::Done
            }
            StepKind::Wait => Outcome::Wait { reason },
            StepKind::RateLimited { after } => Outcome::Reschedule {
                delay: after,
                reason,
            },
            StepKind::Retry { after, .. } => Outcome::RetryAfter {
                delay: after,
                reason,
                side: self.side,
            },
            StepKind::Park => Outcome::Park {
                reason,
                side: self.side,
            },
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        if e.retryable() {
            Self::retry(format!("store: {e}"), None)
        } else {
            Self::park(format!("store: {e}"))
        }
    }
}

impl From<WecomError> for StepError {
    fn from(e: WecomError) -> Self {
        let step = if let Some(wait) = e.rate_limited() {
            Self::rate_limited(e.to_string(), wait)
        } else if e.retryable() {
            Self::retry(e.to_string(), e.retry_after())
        } else {
            Self::park(e.to_string())
        };
        step.on(Side::Wecom)
    }
}

impl From<MallError> for StepError {
    fn from(e: MallError) -> Self {
        let step = if let Some(wait) = e.rate_limited() {
            Self::rate_limited(e.to_string(), wait)
        } else if e.retryable() {
            Self::retry(e.to_string(), e.retry_after())
        } else {
            Self::park(e.to_string())
        };
        step.on(Side::Mall)
    }
}

pub type Step<T> = Result<T, StepError>;

/// A held lock on one thing a job brings up to date; released on [`Lock::release`] (a crash
/// leaves the store lease to lapse within its term: `lease`).
pub struct Lock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    name: String,
    holder: String,
    renewal: lease::Renewal,
}

/// How long a job waits for a lock held in another process before it retries later.
const LEASE_WAIT: Duration = Duration::from_secs(20);

/// Takes the lock `name`: first in this process, then the store lease.
pub async fn lock(app: &App, name: String) -> Step<Lock> {
    let local = app.locks.get(&name).lock_owned().await;
    let holder = new_ordered_id();
    let deadline = tokio::time::Instant::now() + LEASE_WAIT;
    let mut pause = Duration::from_millis(10);
    let term = lease::term(app.config.worker.visibility);
    let term_ms = i64::try_from(term.as_millis()).unwrap_or(i64::MAX);
    loop {
        let now = app.clock.now();
        if app
            .store
            .acquire_lease(&name, &holder, now, now.plus_millis(term_ms))
            .await?
        {
            let renewal = lease::Renewal::start(
                app.store.clone(),
                app.clock.clone(),
                name.clone(),
                holder.clone(),
                term,
            );
            return Ok(Lock {
                _local: local,
                name,
                holder,
                renewal,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError::retry(
                format!("{name} is held by another worker"),
                Some(Duration::from_secs(1)),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

impl Lock {
    pub async fn release(self, app: &App) {
        self.renewal.stop().await;
        if let Err(e) = app.store.release_lease(&self.name, &self.holder).await {
            tracing::warn!(lock = %self.name, error = %e, "lock not released; it lapses by itself");
        }
    }
}

/// The lock of a tenant's tag library: group and tag jobs of one tenant run one at a time
/// (they touch each other: a tag's first WeCom create creates its group; a group deletion
/// ends its tags). Library changes are few; members are where the volume is.
pub fn library_lock(tenant: &TenantId) -> String {
    format!("sync#{tenant}#library")
}

/// The lock of one member (and its customer's relations: `mark_tag` is serialised per
/// relation, §1.6).
pub fn member_lock(tenant: &TenantId, member: &MemberId) -> String {
    format!("sync#{tenant}#member#{member}")
}

/// An audit entry of a change applied to `side`.
#[allow(clippy::too_many_arguments)] // one per field of the entry, all positional in call sites
pub fn audit(
    tenant: &TenantId,
    at: Timestamp,
    side: Actor,
    action: &str,
    entity: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    origin: Actor,
) -> AuditEntry {
    AuditEntry {
        tenant: tenant.clone(),
        at,
        side,
        action: action.to_owned(),
        entity,
        before,
        after,
        origin: origin.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mall::client::Verdict;

    fn mall_error(status: u16) -> MallError {
        MallError {
            op: "get_member",
            status: Some(status),
            code: None,
            message: String::new(),
            verdict: Verdict::RetryAfter(Duration::from_secs(1)),
            unknown_ids: Box::default(),
        }
    }

    /// A job that meets the mall's rate limit waits for it without the receive counting
    /// towards the dead-letter limit (a bulk run of hundreds of customers must not park
    /// because the mall asked it to slow down); other transient mall failures are retries.
    #[test]
    fn a_mall_429_reschedules_the_job_and_a_503_retries_it() {
        match StepError::from(mall_error(429)).into_outcome() {
            Outcome::Reschedule { delay, .. } => assert_eq!(delay, Duration::from_secs(1)),
            other => panic!("429: {other:?}"),
        }
        match StepError::from(mall_error(503)).into_outcome() {
            Outcome::RetryAfter { side, .. } => assert_eq!(side, Some(Side::Mall)),
            other => panic!("503: {other:?}"),
        }
    }
}
