//! The WeCom HTTP client: external-contact tag and contact APIs (wecom-api.md §1; the
//! directory and staff sign-in of §13 in `client/contacts.rs`) over one
//! `reqwest::Client`, built once per process.
//!
//! Every call goes rate budget ([`super::budget`]) → access token → request (with a timeout)
//! → classifier ([`super::classify`]). A refused token (40014/42001) is invalidated and the
//! call retried once; a spent budget or a 45009 pauses the API for the corp and fails the call
//! at once with [`Verdict::RateLimited`](super::classify::Verdict::RateLimited) (the job is rescheduled to the window's end);
//! everything else is returned as a [`WecomError`] carrying its
//! [`Verdict`](super::classify::Verdict), so the job
//! decides whether to retry or park. Responses are decoded leniently (§9 P5): unknown fields
//! are ignored and numbers may arrive as strings. Neither the secret nor the token is ever
//! logged; reqwest errors are stripped of their URL, which holds them.
//!
//! Where the rest lives: `transport` (the path of every call), `error` ([`WecomError`]),
//! `lenient` (decoding what WeCom really sends), `tags` (the corp and rule-group tag
//! libraries), `customers` (customers, follow relations, marking tags), `transfer` (customer
//! transfer), `contact_way` (QR contact ways), `contacts` (the directory and staff sign-in).

mod contact_way;
mod contacts;
mod customers;
mod error;
pub(super) mod lenient;
mod tags;
mod transfer;
mod transport;

pub use contact_way::ContactWay;
pub use customers::{
    BatchContact, BatchPage, ContactDetail, ExternalContact, FollowInfo, FollowUser, FollowUserTag,
    MAX_BATCH_LIMIT, MAX_BATCH_USERS,
};
pub use error::WecomError;
pub use tags::{AddTarget, DeleteOutcome, EditTarget, NewTag, TagGroupInfo, TagInfo};
pub use transfer::{MAX_TRANSFER_CUSTOMERS, TransferAnswer, TransferResultPage, TransferStatus};
pub(super) use transport::{Empty, Payload, json};

use std::sync::Arc;
use std::time::Duration;

use super::budget::{BudgetConfig, RateBudget};
use super::token::{TokenCache, TokenConfig};
use crate::domain::{CorpId, Secret};
use crate::ports::{Clock, Store};

/// Which app of which corp a call acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WecomCredentials {
    pub corp_id: CorpId,
    /// `Debug` prints `***`.
    pub secret: Secret,
}

pub struct WecomClient {
    http: reqwest::Client,
    base_url: String,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    tokens: TokenCache,
    budget: RateBudget,
    request_timeout: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    retries: crate::retry::RetryPolicy,
    /// A permit per call in flight, held from its budget slot until its answer is handled
    /// (a 45009 included): see [`WecomClient::limit_in_flight`].
    in_flight: std::sync::Mutex<Arc<tokio::sync::Semaphore>>,
}

/// Default of [`WecomClient::limit_in_flight`]: the jobs a Lambda worker runs side by side
/// (the SQS event source's `BatchSize` in template.yaml).
pub const DEFAULT_IN_FLIGHT: usize = 5;

impl WecomClient {
    /// `base_url` is WeCom's `https://qyapi.weixin.qq.com/cgi-bin` or a simulator's.
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        budget: BudgetConfig,
    ) -> Self {
        let tokens = TokenCache::new(store.clone(), clock.clone(), TokenConfig::default());
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            budget: RateBudget::new(budget, store.clone(), clock.clone()),
            clock,
            store,
            tokens,
            request_timeout: Duration::from_secs(10),
            metrics: None,
            retries: crate::retry::RetryPolicy::NONE,
            in_flight: std::sync::Mutex::new(Arc::new(tokio::sync::Semaphore::new(
                DEFAULT_IN_FLIGHT,
            ))),
        }
    }

    /// At most `calls` WeCom calls of this process in flight at once: its number of workers
    /// (`tagsync serve --workers`), so however many calls one job makes at once (a
    /// `SyncMembers` job's members), a window WeCom says is spent meets at most one 45009 per
    /// worker. Every call holds its permit from taking its budget slot until its answer is
    /// handled, and a 45009 pauses the API before the permit is given back: a call that
    /// starts after that is refused by the budget without reaching WeCom, so the 45009s of
    /// one window are answers to calls that were in flight together. Set before any call.
    pub fn limit_in_flight(&self, calls: usize) {
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(tokio::sync::Semaphore::new(calls.max(1)));
    }

    /// Counts every call by API and verdict.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Retries transient failures in place (every call: reads, and writes, which WeCom makes
    /// safe to repeat — a create merges into the same-name tag, a delete of a gone id is done).
    pub fn with_retries(mut self, retries: crate::retry::RetryPolicy) -> Self {
        self.retries = retries;
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_token_config(mut self, config: TokenConfig) -> Self {
        self.tokens = TokenCache::new(self.store.clone(), self.clock.clone(), config);
        self
    }

    /// The rate budget every call spends (e.g. to see a 45009 pause).
    pub fn budget(&self) -> &RateBudget {
        &self.budget
    }
}

#[cfg(test)]
mod tests;
