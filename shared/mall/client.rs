//! The mall's REST API (`mall-connector.md` §3) as tagsync calls it, and the one classifier
//! of the mall's answers ([`classify`]).
//!
//! One [`MallClient`] is built per process; every call takes the tenant's [`MallEndpoint`].
//! Every write carries an [`IdempotencyKey`] derived from the job and the step, so a retried
//! job sends the same key and the mall does the write once (it replays its first final
//! answer). The token is sent as a bearer header and never logged.
//!
//! Where the rest lives: `key` (the idempotency key), `verdict` (what an answer means, and
//! [`MallError`]), `transport` (pacing, sending, retrying in place), `library` (tag groups
//! and tags), `members` (members, paging, one member's tags), `batch` (many members' tags in
//! one write).

mod batch;
mod key;
mod library;
mod members;
mod transport;
mod verdict;

pub use batch::MemberTagItem;
pub use key::IdempotencyKey;
pub use library::{GroupPatch, MallGroupWithTags, TagPatch};
pub use members::{
    MallMember, MemberLookup, MemberPage, MemberPager, MemberTagBatch, member_tag_batches,
};
pub use transport::Pace;
pub use verdict::{ErrorBody, ErrorDetail, MallError, Verdict, classify, classify_transport};

use crate::domain::Secret;
use std::sync::Arc;
use std::time::Duration;

/// At most this many tag ids (added and removed together) in one `POST /members/{id}/tags`.
pub const MAX_IDS_PER_MEMBER_CALL: usize = 100;
/// The longest key tagsync sends. The contract sets no limit; 200 keeps well inside what
/// payment-style APIs accept (Stripe: 255).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;
/// Per-request timeout unless [`MallClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait suggested when the mall gives no (readable) `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A `Retry-After` longer than this is capped: a job should not park itself for hours on
/// one answer; the queue's own backoff takes over from there.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// `GET /members` page size bounds (contract §3).
pub const MAX_PAGE_LIMIT: u32 = 500;
/// At most this many members in one `POST /members:batch-tags` (contract §3.1).
pub const MAX_BATCH_MEMBERS: usize = 100;
/// How long a mall that answered `POST /members:batch-tags` with 404/405 is written member by
/// member before the endpoint is tried again (a mall upgraded to 1.1 is noticed within it).
pub const NO_BATCH_REMEMBERED: Duration = Duration::from_secs(3600);

/// Where one tenant's mall is and how to authenticate to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MallEndpoint {
    /// e.g. `https://mall.example.com/api/tagsync/v1` (paths of §3 are appended).
    pub base_url: String,
    pub token: Secret,
}

/// How a DELETE ended: both mean the object is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// 404: it was already gone (deleted by someone else, or by an earlier try of this job).
    AlreadyGone,
}

/// The mall's REST API. Cheap to clone; built once per process around one `reqwest::Client`
/// (its connection pool is shared by every tenant).
#[derive(Clone, Debug)]
pub struct MallClient {
    http: reqwest::Client,
    timeout: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    retries: crate::retry::RetryPolicy,
    /// Malls (by base URL: one per tenant) that answered `POST /members:batch-tags` with
    /// 404/405, and when: not asked again for [`NO_BATCH_REMEMBERED`].
    no_batch: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// This process's own pace per mall (see [`MallClient::with_pace`]).
    pace: Option<Arc<Pace>>,
}

/// The contract's default rate limit per token (§3.1's last paragraph): 50 requests a second.
pub const DEFAULT_MALL_RATE_PER_SEC: u32 = 50;

impl MallClient {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            timeout: DEFAULT_TIMEOUT,
            metrics: None,
            retries: crate::retry::RetryPolicy::NONE,
            no_batch: Arc::default(),
            pace: None,
        }
    }

    /// Paces this process's requests to each mall at `per_sec` (the mall's documented
    /// limit; `None`: not paced, e.g. a mall without a limit).
    pub fn with_pace(mut self, per_sec: Option<u32>) -> Self {
        self.pace = per_sec.map(|n| Arc::new(Pace::new(n)));
        self
    }

    /// Counts every call by operation and verdict.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Retries transient failures in place; every write carries its idempotency key, so the
    /// mall answers a repeat from its record.
    pub fn with_retries(mut self, retries: crate::retry::RetryPolicy) -> Self {
        self.retries = retries;
        self
    }

    /// The per-request timeout (the client's own timeouts, if shorter, still apply).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests;
