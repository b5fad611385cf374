//! Jobs: what the queue carries. A job names an entity to bring up to date ("level
//! triggered"), never a delta, so duplicates, retries and reordering do no harm.

use super::ids::{JobId, TenantId, new_ordered_id};
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
    /// every try, so it exercises retries, the dead-letter queue, its alarm and redrive.
    Probe {
        #[serde(default)]
        note: String,
        #[serde(default)]
        fail: bool,
        /// Simulated work time in milliseconds (to exercise shutdown and crash recovery).
        #[serde(default)]
        work_ms: u64,
    },
}

impl JobKind {
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Probe { .. } => "probe",
        }
    }
}
