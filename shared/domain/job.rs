//! Jobs: what the queue carries. A job names an entity to bring up to date ("level
//! triggered"), never a delta, so duplicates, retries and reordering do no harm.

use super::ids::{
    ExternalUserId, HubGroupId, HubTagId, JobId, MemberId, RunId, TenantId, WecomUserId,
    new_ordered_id,
};
use super::ops::Actor;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantId,
    pub enqueued_at: Timestamp,
    #[serde(flatten)]
    pub kind: JobKind,
}

impl Job {
    pub fn new(tenant: TenantId, kind: JobKind, now: Timestamp) -> Self {
        Self {
            id: JobId::new_unchecked(new_ordered_id()),
            tenant,
            enqueued_at: now,
            kind,
        }
    }
}

/// The kinds of work. Later capabilities add kinds; an unknown kind (from a newer version
/// during a deploy) fails to decode and is parked, never dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// A diagnostic job an operator enqueues (`tagsync queue probe`) to prove the pipeline
    /// end to end: the worker records an audit entry. With `fail` set it fails retryably on
    /// every try, so it exercises retries, the dead-letter queue, its alarm and redrive; with
    /// `panic` set it panics instead.
    Probe {
        #[serde(default)]
        note: String,
        #[serde(default)]
        fail: bool,
        /// Simulated work time in milliseconds (to exercise shutdown and crash recovery).
        #[serde(default)]
        work_ms: u64,
        /// Panics on every try, which proves that a panicking job ends only itself: the
        /// worker (or the Lambda batch) goes on, and the job is retried, then parked with the
        /// panic's message.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        panic: bool,
    },
    /// An event a side reported, recorded as it arrived (after its signature was checked and
    /// it was deduplicated). The worker turns it into "bring entity K up to date" work.
    Inbound {
        event: InboundEvent,
        /// A WeCom callback whose dedupe key was seen before: a re-send, or a second change
        /// of the same kind to the same object within the same second (callbacks carry no
        /// event id). Its jobs run again (they read the side, so a re-send costs only a
        /// look); the operator's trace already holds the event.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        repeat: bool,
    },
    /// Bring one hub tag group up to date on every side.
    SyncGroup {
        group: HubGroupId,
        #[serde(default)]
        hint: Hint,
    },
    /// Bring one hub tag up to date on every side.
    SyncTag {
        tag: HubTagId,
        #[serde(default)]
        hint: Hint,
    },
    /// Bring one mall member's tags, and every follow relation of the WeCom customer bound to
    /// it, up to date.
    SyncMember {
        member: MemberId,
        #[serde(default)]
        hint: Hint,
    },
    /// Bring up to 100 members up to date in one job, their mall writes in one batch request
    /// (`crate::jobs::member_batch`); the operator's member-tag batches queue these.
    SyncMembers {
        members: Vec<MemberId>,
        #[serde(default)]
        hint: Hint,
    },
    /// Advance one chain of a reconciliation run by one page (see [`super::SyncRun`]).
    RunChain { run: RunId, chain: String },
    /// Take a bulk run's snapshot: the customers its filter matches now, queued in chunks
    /// (`crate::jobs::bulk_tags`).
    BulkStart { run: RunId },
    /// Apply a bulk run's changes to one chunk of its snapshot.
    BulkChunk {
        run: RunId,
        chunk: u64,
        customers: Vec<ExternalUserId>,
    },
    /// Move a customer transfer on: send its next chunk, look at WeCom's results once the
    /// takeover is due, carry the tags of customers taken over (`crate::jobs::transfers`).
    /// One job per transfer, which re-queues itself until the transfer is over.
    Transfer { run: RunId },
    /// Evaluate the automatic-tagging rules an event concerns (`crate::jobs::rules`).
    Rules { event: super::rules::RuleEvent },
    /// Reverse a rule's applied firings: the undo run `run` (`crate::jobs::undo`).
    Undo {
        run: RunId,
        rule: super::ids::RuleId,
        #[serde(default)]
        since: Option<Timestamp>,
        /// The page of the run's chain this job does (a stale copy finds it done).
        #[serde(default)]
        page: u64,
    },
}

/// What the event that caused a sync job knew, beyond the entity's hub id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    /// The side's id of an object new to the hub (the job reads it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wecom_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mall_id: Option<String>,
    /// When the mall said the change happened (`occurred_at`); without it a mall change counts
    /// from when the job saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mall_at: Option<super::time::Timestamp>,
    /// WeCom reported this group deleted explicitly (a `tag_group` delete event), not the
    /// drop of a group whose last tag went.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wecom_deleted: bool,
    /// Who caused the change, for the audit log.
    pub origin: Actor,
    /// The reconciliation run that found this drift: the job runs even while the automatic
    /// switches are off (a manual sync is how the sides come together then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// The audit origin of what the job applies, when more precise than `origin` (e.g.
    /// `bulk:{run id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The job carries the operator's change to members: it takes the mall member to be as
    /// the hub last knew it instead of reading it (see `View::mall_from_base`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mall_from_base: bool,
}

impl Default for Hint {
    fn default() -> Self {
        Self::from(Actor::System)
    }
}

impl From<Actor> for Hint {
    fn from(origin: Actor) -> Self {
        Self {
            wecom_id: None,
            mall_id: None,
            mall_at: None,
            wecom_deleted: false,
            origin,
            run: None,
            cause: None,
            mall_from_base: false,
        }
    }
}

impl JobKind {
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Probe { .. } => "probe",
            JobKind::Inbound {
                event: InboundEvent::WecomTag { .. },
                ..
            } => "inbound_wecom_tag",
            JobKind::Inbound {
                event: InboundEvent::WecomContact { .. },
                ..
            } => "inbound_wecom_contact",
            JobKind::Inbound {
                event: InboundEvent::Mall { .. },
                ..
            } => "inbound_mall",
            JobKind::Inbound {
                event: InboundEvent::WecomDirectory { .. },
                ..
            } => "inbound_wecom_directory",
            JobKind::SyncGroup { .. } => "sync_group",
            JobKind::SyncTag { .. } => "sync_tag",
            JobKind::SyncMember { .. } => "sync_member",
            JobKind::SyncMembers { .. } => "sync_members",
            JobKind::RunChain { .. } => "run_chain",
            JobKind::BulkStart { .. } => "bulk_start",
            JobKind::BulkChunk { .. } => "bulk_chunk",
            JobKind::Transfer { .. } => "transfer",
            JobKind::Rules {
                event: super::rules::RuleEvent::Messages { .. },
            } => "rules_messages",
            JobKind::Rules {
                event: super::rules::RuleEvent::TagsAdded { .. },
            } => "rules_tags_added",
            JobKind::Undo { .. } => "undo",
        }
    }
}

/// What a side reported. WeCom callbacks carry only ids (the worker reads the details);
/// a mall webhook carries the changed object, kept as the validated JSON it arrived as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "side", rename_all = "snake_case")]
pub enum InboundEvent {
    /// `change_external_tag`: `change` is the ChangeType (`create`, `update`, `delete`,
    /// `shuffle`); `id` empty on a group-order shuffle.
    WecomTag {
        change: String,
        id: Option<String>,
        tag_type: Option<String>,
        strategy_id: Option<String>,
        create_time: i64,
    },
    /// `change_external_contact` on one (member, customer) relation.
    WecomContact {
        change: String,
        user_id: WecomUserId,
        external_user_id: ExternalUserId,
        state: Option<String>,
        source: Option<String>,
        create_time: i64,
    },
    /// `change_contact`: a department or staff member changed (`id`: the department's id or
    /// the member's userid); the directory is read again (`crate::jobs::directory`).
    WecomDirectory {
        change: String,
        id: Option<String>,
        create_time: i64,
    },
    /// A mall webhook (`type` and the whole validated body).
    Mall {
        event_id: String,
        event_type: String,
        occurred_at: Timestamp,
        origin_request_id: Option<String>,
        body: serde_json::Value,
    },
}

/// Where one queued job stands, kept in the store for a queue that cannot count one tenant's
/// jobs (SQS; see `queue::counted`): written when the job is sent, received, retried and
/// parked, removed when it is done. Keyed by job id, so a redelivery or a duplicate copy
/// rewrites the same mark instead of counting twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMark {
    pub tenant: TenantId,
    pub job: JobId,
    #[serde(flatten)]
    pub state: MarkState,
    /// Dropped then whatever it says: the queue keeps no message longer (its retention).
    pub expires_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MarkState {
    /// Waiting for a first try or for a retry.
    Waiting,
    /// Received for the `receive`-th time, invisible to other workers until `until`.
    Running { receive: u32, until: Timestamp },
    /// Parked in the dead letters.
    Dead,
}
