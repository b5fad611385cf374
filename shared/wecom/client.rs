//! The WeCom HTTP client: external-contact tag and contact APIs (wecom-api.md §1; the
//! directory and staff sign-in of §13 in `client/contacts.rs`) over one
//! `reqwest::Client`, built once per process.
//!
//! Every call goes rate budget ([`super::budget`]) → access token → request (with a timeout)
//! → classifier ([`super::classify`]). A refused token (40014/42001) is invalidated and the
//! call retried once; a spent budget or a 45009 pauses the API for the corp and fails the call
//! at once with [`Verdict::RateLimited`] (the job is rescheduled to the window's end);
//! everything else is returned as a [`WecomError`] carrying its [`Verdict`], so the job
//! decides whether to retry or park. Responses are decoded leniently (§9 P5): unknown fields
//! are ignored and numbers may arrive as strings. Neither the secret nor the token is ever
//! logged; reqwest errors are stripped of their URL, which holds them.

mod contacts;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::budget::{BudgetConfig, BudgetError, RateBudget, wait_until};
use super::classify::{ApiOp, TransportFailure, Verdict, classify_errcode_at, classify_transport};
use super::token::{FetchedToken, TokenCache, TokenConfig};
use crate::domain::{CorpId, ExternalUserId, Secret, WecomGroupId, WecomTagId, WecomUserId};
use crate::ports::{Clock, Store};

/// Which app of which corp a call acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WecomCredentials {
    pub corp_id: CorpId,
    /// `Debug` prints `***`.
    pub secret: Secret,
}

/// A failed WeCom call: what was called, what came back, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("WeCom {op} failed: {message}")]
pub struct WecomError {
    pub op: ApiOp,
    /// WeCom's errcode, when the call got that far.
    pub errcode: Option<i64>,
    /// The HTTP status, when it was not 200.
    pub http_status: Option<u16>,
    pub message: String,
    pub verdict: Verdict,
}

impl WecomError {
    /// Worth retrying later (the job goes back to the queue rather than being parked).
    pub fn retryable(&self) -> bool {
        self.verdict.is_retryable()
    }

    /// How long to wait before retrying, if retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RetryAfter(d) | Verdict::RateLimited(d) => Some(d),
            Verdict::RefreshToken => Some(Duration::ZERO),
            _ => None,
        }
    }

    /// What the refusal says about the object (not this app's, name taken, unknown id, no
    /// relation), when the call was refused for one of those reasons.
    pub fn refusal(&self) -> Option<super::classify::Refusal> {
        self.errcode.and_then(super::classify::refusal)
    }

    /// How long the API is paused for the corp, when this call met its rate limit (45009 or
    /// the budget): the caller reschedules rather than retrying or failing.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RateLimited(d) => Some(d),
            _ => None,
        }
    }

    pub(super) fn invalid_request(op: ApiOp, why: &str) -> Self {
        Self {
            op,
            errcode: None,
            http_status: None,
            message: format!("invalid request: {why}"),
            verdict: Verdict::Permanent(format!("invalid request: {why}")),
        }
    }

    fn transport(op: ApiOp, failure: TransportFailure) -> Self {
        let verdict = classify_transport(&failure);
        let (http_status, message) = match &failure {
            TransportFailure::Status(s) => (Some(*s), format!("HTTP status {s}")),
            TransportFailure::Timeout => (None, "timed out".into()),
            TransportFailure::Connect => (None, "could not connect".into()),
            TransportFailure::Io(e) => (None, format!("connection failed: {e}")),
            TransportFailure::Decode(e) => (None, format!("response not understood: {e}")),
        };
        Self {
            op,
            errcode: None,
            http_status,
            message,
            verdict,
        }
    }
}

/// Where `add_corp_tag` / `add_strategy_tag` put the tags.
#[derive(Clone, Copy, Debug)]
pub enum AddTarget<'a> {
    /// An existing group (its name and order are then ignored by WeCom).
    Group(&'a WecomGroupId),
    /// The group of this name, created if missing; WeCom merges into an existing one (§1.2).
    Named { name: &'a str, order: Option<u32> },
}

/// What `edit_corp_tag` / `edit_strategy_tag` edits: the API takes either id in one field.
#[derive(Clone, Copy, Debug)]
pub enum EditTarget<'a> {
    Tag(&'a WecomTagId),
    Group(&'a WecomGroupId),
}

impl EditTarget<'_> {
    fn as_str(&self) -> &str {
        match self {
            EditTarget::Tag(t) => t.as_str(),
            EditTarget::Group(g) => g.as_str(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewTag {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
}

impl NewTag {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            order: None,
        }
    }
}

/// The result of a delete: an unknown id on delete means it is already gone (§12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyGone,
}

/// A tag group as `get_corp_tag_list` / `get_strategy_tag_list` / `add_*_tag` return it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TagGroupInfo {
    pub group_id: WecomGroupId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub create_time: i64,
    #[serde(default, deserialize_with = "lenient::u32")]
    pub order: u32,
    /// Only present when queried by tag id (§1.1).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub deleted: bool,
    /// Strategy (rule-group) tags only.
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub strategy_id: Option<u32>,
    #[serde(default)]
    pub tag: Vec<TagInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TagInfo {
    pub id: WecomTagId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub create_time: i64,
    #[serde(default, deserialize_with = "lenient::u32")]
    pub order: u32,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub deleted: bool,
}

/// The customer part of `externalcontact/get` and `batch/get_by_user` (§1.5).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExternalContact {
    pub external_userid: ExternalUserId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub avatar: String,
    /// 1 = WeChat user, 2 = WeCom user.
    #[serde(rename = "type", default, deserialize_with = "lenient::i64")]
    pub kind: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub gender: i64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub unionid: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub position: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub corp_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub corp_full_name: String,
}

/// One follow relation (member → customer) as `externalcontact/get` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FollowUser {
    pub userid: WecomUserId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub remark: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub createtime: i64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub add_way: i64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub oper_userid: String,
    #[serde(default)]
    pub tags: Vec<FollowUserTag>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FollowUserTag {
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub tag_name: String,
    /// 1 corp, 2 personal, 3 rule-group (§0).
    #[serde(rename = "type", default, deserialize_with = "lenient::i64")]
    pub kind: i64,
    /// Absent for personal (type 2) tags.
    #[serde(default)]
    pub tag_id: Option<WecomTagId>,
}

/// A customer with all the follow relations visible to the app (every page joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactDetail {
    pub external_contact: ExternalContact,
    pub follow_user: Vec<FollowUser>,
}

/// One relation as `batch/get_by_user` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FollowInfo {
    pub userid: WecomUserId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub remark: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub createtime: i64,
    /// Corp and rule-group tag ids; personal tags are not returned (§1.5).
    #[serde(default)]
    pub tag_id: Vec<WecomTagId>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub add_way: i64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub oper_userid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BatchContact {
    pub external_contact: ExternalContact,
    pub follow_info: FollowInfo,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BatchPage {
    #[serde(default)]
    pub external_contact_list: Vec<BatchContact>,
    /// `None` on the last page (WeCom sends an empty string).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub next_cursor: Option<String>,
}

/// A contact way tagsync created (§7): its id, and the QR code's URL (scene 2).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ContactWay {
    pub config_id: String,
    #[serde(default)]
    pub qr_code: String,
}

#[derive(Serialize)]
struct AddContactWayReq<'a> {
    /// 1: one member, 2: several.
    r#type: u8,
    /// 2: a QR code.
    scene: u8,
    state: &'a str,
    user: &'a [WecomUserId],
    remark: &'a str,
    skip_verify: bool,
}

#[derive(Serialize)]
struct DelContactWayReq<'a> {
    config_id: &'a str,
}

#[derive(Deserialize)]
struct TagListResp {
    #[serde(default)]
    tag_group: Vec<TagGroupInfo>,
}

#[derive(Deserialize)]
struct AddTagResp {
    tag_group: TagGroupInfo,
}

#[derive(Deserialize)]
struct GetContactResp {
    external_contact: ExternalContact,
    #[serde(default)]
    follow_user: Vec<FollowUser>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    next_cursor: Option<String>,
}

/// Most customers one `transfer_customer` call takes (§6).
pub const MAX_TRANSFER_CUSTOMERS: usize = 100;

/// One customer's answer to `transfer_customer`: errcode 0 means the transfer was
/// *initiated* (§6); any other is that customer's refusal (40128 transferred too often…).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TransferAnswer {
    pub external_userid: ExternalUserId,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub errcode: i64,
}

#[derive(Deserialize)]
struct TransferResp {
    #[serde(default)]
    customer: Vec<TransferAnswer>,
}

/// One customer in `transfer_result` (§6): `status` 1 takeover complete, 2 waiting, 3
/// refused, 4 takeover member at their customer limit, 5 no transfer record;
/// `takeover_time` (seconds) is 0 while waiting.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TransferStatus {
    pub external_userid: ExternalUserId,
    #[serde(deserialize_with = "lenient::i64")]
    pub status: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub takeover_time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TransferResultPage {
    #[serde(default)]
    pub customer: Vec<TransferStatus>,
    /// `None` on the last page.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize)]
struct TransferReq<'a> {
    handover_userid: &'a WecomUserId,
    takeover_userid: &'a WecomUserId,
    external_userid: &'a [ExternalUserId],
}

#[derive(Serialize)]
struct TransferResultReq<'a> {
    handover_userid: &'a WecomUserId,
    takeover_userid: &'a WecomUserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(Deserialize)]
struct FollowUserListResp {
    #[serde(default)]
    follow_user: Vec<WecomUserId>,
}

#[derive(Deserialize)]
struct ListResp {
    #[serde(default)]
    external_userid: Vec<ExternalUserId>,
}

#[derive(Deserialize)]
struct TokenResp {
    #[serde(default, deserialize_with = "lenient::string")]
    access_token: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    expires_in: i64,
}

#[derive(Deserialize)]
pub(super) struct Empty {}

#[derive(Serialize)]
struct TagListReq<'a, G> {
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_id: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tag_id: &'a [WecomTagId],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    group_id: &'a [G],
}

/// `group_id` is omitted, never sent empty: WeCom rejects `""` (§9 P4).
#[derive(Serialize)]
struct AddTagReq<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<u32>,
    tag: &'a [NewTag],
}

#[derive(Serialize)]
struct EditTagReq<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<u32>,
}

#[derive(Serialize)]
struct MarkTagReq<'a> {
    userid: &'a WecomUserId,
    external_userid: &'a ExternalUserId,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    add_tag: &'a [WecomTagId],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    remove_tag: &'a [WecomTagId],
}

#[derive(Serialize)]
struct BatchReq<'a> {
    userid_list: &'a [WecomUserId],
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    limit: u32,
}

pub(super) enum Payload {
    Query(Vec<(&'static str, String)>),
    Json(Value),
}

/// `batch/get_by_user` limits (§1.5).
pub const MAX_BATCH_USERS: usize = 100;
pub const MAX_BATCH_LIMIT: u32 = 100;
/// A guard against a server that keeps answering with a cursor.
const MAX_CONTACT_PAGES: usize = 1_000;

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

    /// Spends one call of `op` from the budget, or fails as rate-limited until its window ends.
    async fn take_budget(&self, creds: &WecomCredentials, op: ApiOp) -> Result<(), WecomError> {
        match self.budget.take(&creds.corp_id, op).await {
            Ok(()) => Ok(()),
            Err(e @ BudgetError::Spent { until, .. }) => {
                let wait = wait_until(self.clock.now(), until);
                Err(WecomError {
                    op,
                    errcode: None,
                    http_status: None,
                    message: e.to_string(),
                    verdict: Verdict::RateLimited(wait),
                })
            }
            // The store could not count: retry the job soon, like any transient failure.
            Err(e @ BudgetError::Store(_)) => Err(WecomError {
                op,
                errcode: None,
                http_status: None,
                message: e.to_string(),
                verdict: Verdict::RetryAfter(super::classify::TRANSPORT_RETRY),
            }),
        }
    }

    /// WeCom said 45009: pause `op` for the corp in the shared budget until the minute ends,
    /// and answer the error with the wait to that moment.
    async fn pause(&self, creds: &WecomCredentials, mut e: WecomError) -> WecomError {
        match self.budget.exhausted(&creds.corp_id, e.op).await {
            Ok(until) => e.verdict = Verdict::RateLimited(wait_until(self.clock.now(), until)),
            Err(store) => {
                tracing::warn!(op = %e.op, corp = %creds.corp_id, error = %store,
                    "the 45009 pause was not shared through the store; this process keeps it")
            }
        }
        e
    }

    /// The corp tag library, or the groups/tags asked for (`group_ids` wins over `tag_ids`).
    pub async fn get_corp_tag_list(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>, WecomError> {
        let req = TagListReq {
            strategy_id: None,
            tag_id: tag_ids,
            group_id: group_ids,
        };
        let resp: TagListResp = self.call(creds, ApiOp::GetCorpTagList, json(&req)).await?;
        Ok(resp.tag_group)
    }

    /// Creates tags (and their group when `target` names a new one); answers with the group
    /// and the tags of this request, new or merged (§1.2).
    pub async fn add_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        self.add_tags(creds, ApiOp::AddCorpTag, None, target, tags)
            .await
    }

    pub async fn edit_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<(), WecomError> {
        self.edit_tag(creds, ApiOp::EditCorpTag, target, name, order)
            .await
    }

    pub async fn del_corp_tag(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome, WecomError> {
        self.del_tags(creds, ApiOp::DelCorpTag, tag_ids, group_ids)
            .await
    }

    /// Creates a QR-code contact way (scene 2) for `users` whose add events carry `state`
    /// (§7); answers its `config_id` and QR code URL.
    pub async fn add_contact_way(
        &self,
        creds: &WecomCredentials,
        state: &str,
        users: &[WecomUserId],
        remark: &str,
    ) -> Result<ContactWay, WecomError> {
        if users.is_empty() {
            return Err(WecomError::invalid_request(
                ApiOp::AddContactWay,
                "a contact way needs at least one member",
            ));
        }
        let req = AddContactWayReq {
            r#type: if users.len() == 1 { 1 } else { 2 },
            scene: 2,
            state,
            user: users,
            remark,
            skip_verify: true,
        };
        self.call(creds, ApiOp::AddContactWay, json(&req)).await
    }

    /// Deletes a contact way; one already gone counts as deleted.
    pub async fn del_contact_way(
        &self,
        creds: &WecomCredentials,
        config_id: &str,
    ) -> Result<(), WecomError> {
        let req = DelContactWayReq { config_id };
        match self
            .call::<Empty>(creds, ApiOp::DelContactWay, json(&req))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.verdict == Verdict::AlreadyDone => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds and removes tags on one (member, customer) relation in one call (§1.6).
    pub async fn mark_tag(
        &self,
        creds: &WecomCredentials,
        userid: &WecomUserId,
        external_userid: &ExternalUserId,
        add: &[WecomTagId],
        remove: &[WecomTagId],
    ) -> Result<(), WecomError> {
        let op = ApiOp::MarkTag;
        if add.is_empty() && remove.is_empty() {
            return Err(WecomError::invalid_request(op, "nothing to add or remove"));
        }
        let req = MarkTagReq {
            userid,
            external_userid,
            add_tag: add,
            remove_tag: remove,
        };
        let _: Empty = self.call(creds, op, json(&req)).await?;
        Ok(())
    }

    /// A customer and every follow relation, following `next_cursor` (> 500 follow users).
    pub async fn get_external_contact(
        &self,
        creds: &WecomCredentials,
        external_userid: &ExternalUserId,
    ) -> Result<ContactDetail, WecomError> {
        let op = ApiOp::GetExternalContact;
        let page = |cursor: Option<String>| {
            let mut query = vec![("external_userid", external_userid.to_string())];
            query.extend(cursor.map(|c| ("cursor", c)));
            self.call::<GetContactResp>(creds, op, Payload::Query(query))
        };
        let first = page(None).await?;
        let mut cursor = first.next_cursor;
        let mut detail = ContactDetail {
            external_contact: first.external_contact,
            follow_user: first.follow_user,
        };
        for _ in 1..MAX_CONTACT_PAGES {
            let Some(current) = cursor.take() else { break };
            let next = page(Some(current.clone())).await?;
            detail.follow_user.extend(next.follow_user);
            match next.next_cursor {
                Some(c) if c != current => cursor = Some(c),
                _ => break,
            }
        }
        Ok(detail)
    }

    /// One page of the relations of up to 100 members (`limit` ≤ 100), for reconciliation.
    pub async fn batch_get_by_user(
        &self,
        creds: &WecomCredentials,
        userids: &[WecomUserId],
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BatchPage, WecomError> {
        let op = ApiOp::BatchGetByUser;
        if userids.is_empty() || userids.len() > MAX_BATCH_USERS {
            return Err(WecomError::invalid_request(
                op,
                "userid_list must hold 1 to 100 members",
            ));
        }
        if limit == 0 || limit > MAX_BATCH_LIMIT {
            return Err(WecomError::invalid_request(op, "limit must be 1 to 100"));
        }
        let req = BatchReq {
            userid_list: userids,
            cursor: cursor.filter(|c| !c.is_empty()),
            limit,
        };
        self.call(creds, op, json(&req)).await
    }

    /// Members with customer contact enabled.
    pub async fn get_follow_user_list(
        &self,
        creds: &WecomCredentials,
    ) -> Result<Vec<WecomUserId>, WecomError> {
        let resp: FollowUserListResp = self
            .call(creds, ApiOp::GetFollowUserList, Payload::Query(vec![]))
            .await?;
        Ok(resp.follow_user)
    }

    /// Every customer of one member (no paging, §1.5).
    pub async fn list_external_contacts(
        &self,
        creds: &WecomCredentials,
        userid: &WecomUserId,
    ) -> Result<Vec<ExternalUserId>, WecomError> {
        let query = vec![("userid", userid.to_string())];
        let resp: ListResp = self
            .call(creds, ApiOp::ListExternalContacts, Payload::Query(query))
            .await?;
        Ok(resp.external_userid)
    }

    /// Rule-group tags of one strategy, or of all when `strategy_id` is `None` (§1.4).
    pub async fn get_strategy_tag_list(
        &self,
        creds: &WecomCredentials,
        strategy_id: Option<u32>,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>, WecomError> {
        let req = TagListReq {
            strategy_id,
            tag_id: tag_ids,
            group_id: group_ids,
        };
        let resp: TagListResp = self
            .call(creds, ApiOp::GetStrategyTagList, json(&req))
            .await?;
        Ok(resp.tag_group)
    }

    pub async fn add_strategy_tag(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        self.add_tags(
            creds,
            ApiOp::AddStrategyTag,
            Some(strategy_id),
            target,
            tags,
        )
        .await
    }

    pub async fn edit_strategy_tag(
        &self,
        creds: &WecomCredentials,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<(), WecomError> {
        self.edit_tag(creds, ApiOp::EditStrategyTag, target, name, order)
            .await
    }

    pub async fn del_strategy_tag(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome, WecomError> {
        self.del_tags(creds, ApiOp::DelStrategyTag, tag_ids, group_ids)
            .await
    }

    /// Hands up to 100 of `handover`'s customers to `takeover` (§6): the in-service API, or
    /// the resigned one (`handover` has left). Answers each customer's errcode.
    pub async fn transfer_customer(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        customers: &[ExternalUserId],
    ) -> Result<Vec<TransferAnswer>, WecomError> {
        let op = if resigned {
            ApiOp::ResignedTransferCustomer
        } else {
            ApiOp::TransferCustomer
        };
        if customers.is_empty() || customers.len() > MAX_TRANSFER_CUSTOMERS {
            return Err(WecomError::invalid_request(
                op,
                "a transfer takes 1 to 100 customers",
            ));
        }
        let req = TransferReq {
            handover_userid: handover,
            takeover_userid: takeover,
            external_userid: customers,
        };
        let resp: TransferResp = self.call(creds, op, json(&req)).await?;
        Ok(resp.customer)
    }

    /// One page of where `handover` → `takeover` transfers stand (§6).
    pub async fn transfer_result(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        cursor: Option<&str>,
    ) -> Result<TransferResultPage, WecomError> {
        let op = if resigned {
            ApiOp::ResignedTransferResult
        } else {
            ApiOp::TransferResult
        };
        let req = TransferResultReq {
            handover_userid: handover,
            takeover_userid: takeover,
            cursor: cursor.filter(|c| !c.is_empty()),
        };
        self.call(creds, op, json(&req)).await
    }

    async fn add_tags(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        strategy_id: Option<u32>,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        if tags.is_empty() {
            return Err(WecomError::invalid_request(
                op,
                "a group cannot be empty: no tags",
            ));
        }
        let (group_id, group_name, order) = match target {
            AddTarget::Group(g) if g.as_str().is_empty() => {
                return Err(WecomError::invalid_request(op, "empty group id"));
            }
            AddTarget::Group(g) => (Some(g.as_str()), None, None),
            AddTarget::Named { name, order } => (None, Some(name), order),
        };
        let req = AddTagReq {
            strategy_id,
            group_id,
            group_name,
            order,
            tag: tags,
        };
        let resp: AddTagResp = self.call(creds, op, json(&req)).await?;
        Ok(resp.tag_group)
    }

    async fn edit_tag(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<(), WecomError> {
        let req = EditTagReq {
            id: target.as_str(),
            name,
            order,
        };
        let _: Empty = self.call(creds, op, json(&req)).await?;
        Ok(())
    }

    async fn del_tags(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome, WecomError> {
        if tag_ids.is_empty() && group_ids.is_empty() {
            return Err(WecomError::invalid_request(op, "no tag or group ids"));
        }
        let req = TagListReq {
            strategy_id: None,
            tag_id: tag_ids,
            group_id: group_ids,
        };
        match self.call::<Empty>(creds, op, json(&req)).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) if e.verdict == Verdict::AlreadyDone => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// in-flight permit → budget → token → request → classify, with one retry after a token
    /// refresh.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        payload: Payload,
    ) -> Result<T, WecomError> {
        let gate = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Never closed; a closed gate would only mean no limit.
        let _permit = gate.acquire_owned().await.ok();
        let mut refreshed = false;
        let mut attempt = 1;
        loop {
            self.take_budget(creds, op).await?;
            let token = self.tokens.get(creds, || self.fetch_token(creds)).await?;
            match self.send(creds, op, Some(&token), &payload).await {
                Ok(body) => {
                    return serde_json::from_value(body).map_err(|e| {
                        WecomError::transport(op, TransportFailure::Decode(e.to_string()))
                    });
                }
                Err(e) if e.verdict == Verdict::RefreshToken && !refreshed => {
                    tracing::info!(op = %op, corp = %creds.corp_id, errcode = ?e.errcode,
                        "access token refused; refreshing once");
                    self.tokens.invalidate(creds, &token).await?;
                    refreshed = true;
                }
                // Not retried in place: the window ends later than any in-place retry.
                Err(e) if e.errcode == Some(45009) => return Err(self.pause(creds, e).await),
                Err(e) if e.retryable() => {
                    attempt += 1;
                    let Some(wait) = self.retries.pause(attempt, e.retry_after()) else {
                        return Err(e);
                    };
                    tracing::debug!(op = %op, error = %e, ?wait, "transient failure; trying again");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_token(&self, creds: &WecomCredentials) -> Result<FetchedToken, WecomError> {
        let op = ApiOp::GetToken;
        self.take_budget(creds, op).await?;
        let query = vec![
            ("corpid", creds.corp_id.to_string()),
            ("corpsecret", creds.secret.expose().to_owned()),
        ];
        let body = self.send(creds, op, None, &Payload::Query(query)).await?;
        let resp: TokenResp = serde_json::from_value(body)
            .map_err(|e| WecomError::transport(op, TransportFailure::Decode(e.to_string())))?;
        if resp.access_token.is_empty() {
            return Err(WecomError::transport(
                op,
                TransportFailure::Decode("no access_token in the answer".into()),
            ));
        }
        tracing::debug!(corp = %creds.corp_id, expires_in = resp.expires_in, "fetched an access token");
        Ok(FetchedToken {
            access_token: Secret::new(resp.access_token),
            expires_in_secs: resp.expires_in,
        })
    }

    /// One HTTP exchange, counted; `Ok` only for errcode 0.
    async fn send(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        token: Option<&Secret>,
        payload: &Payload,
    ) -> Result<Value, WecomError> {
        let result = self.exchange(creds, op, token, payload).await;
        if let Some(m) = &self.metrics {
            let outcome = result
                .as_ref()
                .map_or_else(|e| e.verdict.label(), |_| "success");
            m.incr(
                crate::metrics::WECOM_CALLS,
                &[("api", op.path()), ("outcome", outcome)],
            );
        }
        result
    }

    async fn exchange(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        token: Option<&Secret>,
        payload: &Payload,
    ) -> Result<Value, WecomError> {
        let url = format!("{}/{}", self.base_url, op.path());
        let mut req = match payload {
            Payload::Query(q) => self.http.get(&url).query(q),
            Payload::Json(body) => self.http.post(&url).json(body),
        };
        if let Some(t) = token {
            req = req.query(&[("access_token", t.expose())]);
        }
        let resp = req
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| WecomError::transport(op, transport_failure(e)))?;
        let status = resp.status().as_u16();
        if status != 200 {
            tracing::warn!(op = %op, corp = %creds.corp_id, status, "WeCom answered a non-200 status");
            return Err(WecomError::transport(op, TransportFailure::Status(status)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| WecomError::transport(op, transport_failure(e)))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| WecomError::transport(op, TransportFailure::Decode(e.to_string())))?;
        let errcode = lenient::i64_of(&body["errcode"]);
        let errmsg = body["errmsg"].as_str().unwrap_or_default();
        let verdict = classify_errcode_at(op, errcode, errmsg, self.clock.now());
        if verdict == Verdict::Success {
            return Ok(body);
        }
        tracing::warn!(op = %op, corp = %creds.corp_id, errcode, errmsg, ?verdict, "WeCom call failed");
        let message = match &verdict {
            Verdict::Permanent(reason) => reason.clone(),
            _ => format!("errcode {errcode}: {errmsg}"),
        };
        Err(WecomError {
            op,
            errcode: Some(errcode),
            http_status: None,
            message,
            verdict,
        })
    }
}

pub(super) fn json<T: Serialize>(req: &T) -> Payload {
    // Kept: the request structs are plain strings, numbers and lists of them, which
    // serde_json always serialises (it fails only on maps with non-string keys).
    Payload::Json(serde_json::to_value(req).expect("request structs always serialise"))
}

/// Maps a reqwest error without its URL, which holds the token or the secret.
fn transport_failure(e: reqwest::Error) -> TransportFailure {
    if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_connect() {
        TransportFailure::Connect
    } else {
        TransportFailure::Io(e.without_url().to_string())
    }
}

/// Deserialisers that accept what WeCom actually sends (§9 P5): numbers as strings, strings
/// as numbers, `null` for absent.
pub(super) mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn i64_of(v: &Value) -> i64 {
        match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or_default(),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(|f| f as i64)
                .unwrap_or_default(),
            Value::Bool(b) => i64::from(*b),
            _ => 0,
        }
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(i64_of(&Value::deserialize(d)?))
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let v = i64_of(&Value::deserialize(d)?);
        Ok(v.clamp(0, i64::from(u32::MAX)) as u32)
    }

    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            v => Some(i64_of(v).clamp(0, i64::from(u32::MAX)) as u32),
        })
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => matches!(s.trim(), "true" | "1" | "TRUE" | "True"),
            _ => false,
        })
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        })
    }

    /// An empty string counts as absent.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s = string(d)?;
        Ok((!s.is_empty()).then_some(s))
    }
}

#[cfg(test)]
mod tests;
