//! The mall's REST API (`mall-connector.md` §3) as tagsync calls it, and the one classifier
//! of the mall's answers ([`classify`]).
//!
//! One [`MallClient`] is built per process; every call takes the tenant's [`MallEndpoint`].
//! Every write carries an [`IdempotencyKey`] derived from the job and the step, so a retried
//! job sends the same key and the mall does the write once (it replays its first final
//! answer). The token is sent as a bearer header and never logged.

use crate::domain::{ExternalUserId, JobId, MallGroupId, MallTagId, MemberId, Secret};
use crate::mall::webhook::{MallTag, MallTagGroup};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
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

/// How every key tagsync sends starts.
const OWN_KEY_PREFIX: &str = "tagsync:";

/// The `Idempotency-Key` of one write. Derived, never random: a retried job derives the same
/// key for the same step, so the mall answers the retry from its record instead of acting
/// twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of `step` (e.g. `create-tag:<hub tag id>`) of job `job`.
    pub fn for_step(job: &JobId, step: &str) -> Self {
        Self(normalize_key(format!("{OWN_KEY_PREFIX}{job}:{step}")))
    }

    /// Whether a key (e.g. a webhook's `origin_request_id`) is one tagsync made: the webhook
    /// is then the echo of tagsync's own write.
    pub fn is_own(key: &str) -> bool {
        key.starts_with(OWN_KEY_PREFIX)
    }

    /// A sub-key, for a step that needs several writes (e.g. one per batch).
    pub fn derive(&self, part: &str) -> Self {
        Self(normalize_key(format!("{}:{part}", self.0)))
    }

    /// A key from elsewhere (tests, the simulator's control surface); normalized the same way.
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(normalize_key(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keys travel in an HTTP header, so only a safe ASCII subset survives as is; anything else,
/// or a key that is too long, is replaced by a readable prefix plus a digest of the original
/// (still deterministic, still distinct).
fn normalize_key(raw: String) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:/#@+=~".contains(c);
    if raw.len() <= MAX_IDEMPOTENCY_KEY_CHARS && !raw.is_empty() && raw.chars().all(allowed) {
        return raw;
    }
    let digest = hex::encode(Sha256::digest(raw.as_bytes()));
    let clean: String = raw
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_IDEMPOTENCY_KEY_CHARS - 17)
        .collect();
    format!("{clean}~{}", &digest[..16])
}

/// A tag group with its tags, as `GET /tag-groups` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallGroupWithTags {
    #[serde(flatten)]
    pub group: MallTagGroup,
    #[serde(default)]
    pub tags: Vec<MallTag>,
}

/// A mall member (contract §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallMember {
    pub id: MemberId,
    pub unionid: Option<String>,
    /// The WeCom customer this member is bound to, when the mall knows it.
    pub external_userid: Option<ExternalUserId>,
    pub mobile: Option<String>,
    #[serde(default)]
    pub tag_ids: Vec<MallTagId>,
}

/// One page of `GET /members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPage {
    pub members: Vec<MallMember>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The fields a `PATCH /tag-groups/{id}` changes; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
}

/// The fields a `PATCH /tags/{id}` changes; a new `group_id` moves the tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TagPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<MallGroupId>,
}

/// How a DELETE ended: both mean the object is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// 404: it was already gone (deleted by someone else, or by an earlier try of this job).
    AlreadyGone,
}

/// `GET /members:lookup` takes exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberLookup<'a> {
    Unionid(&'a str),
    ExternalUserid(&'a ExternalUserId),
    Mobile(&'a str),
}

/// The contract's error body, `{"error": {...}}`. Also what the simulator answers with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// With `name_taken`: the sibling that already has the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    /// With `unknown_tag`: the ids that do not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_ids: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// classify: the one place that decides what a mall answer means.
// ---------------------------------------------------------------------------------------

/// What an answer (or a failure to get one) means for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Transient (429, 5xx, timeout, connection): try again after this long, same key.
    RetryAfter(Duration),
    /// A DELETE of something already gone: the goal is reached.
    AlreadyDone,
    /// 409 `name_taken`: a sibling has the name; the engine may adopt `existing_id`.
    NameTaken {
        existing_id: String,
    },
    /// Retrying cannot help: bad token, unknown ids, a malformed request, a missing object.
    Permanent(String),
}

impl Verdict {
    /// A short name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::RetryAfter(_) => "retry",
            Verdict::AlreadyDone => "already_done",
            Verdict::NameTaken { .. } => "name_taken",
            Verdict::Permanent(_) => "permanent",
        }
    }
}

/// Classifies an HTTP answer of the mall. `error` is the decoded error body, if any.
pub fn classify(
    method: &Method,
    status: u16,
    retry_after: Option<&str>,
    error: Option<&ErrorDetail>,
) -> Verdict {
    let code = error.map(|e| e.code.as_str()).unwrap_or("");
    let message = error.map(|e| e.message.as_str()).unwrap_or("");
    match status {
        200..=299 => Verdict::Success,
        404 if *method == Method::DELETE => Verdict::AlreadyDone,
        409 if code == "name_taken" => match error.and_then(|e| e.existing_id.as_deref()) {
            Some(id) if !id.is_empty() => Verdict::NameTaken {
                existing_id: id.to_owned(),
            },
            _ => Verdict::Permanent("409 name_taken without error.existing_id".to_owned()),
        },
        408 | 429 | 500..=599 => Verdict::RetryAfter(parse_retry_after(retry_after)),
        401 => Verdict::Permanent("bad mall token".to_owned()),
        400 if code == "unknown_tag" => Verdict::Permanent(format!(
            "unknown tag ids: {}",
            error.map(|e| e.unknown_ids.join(", ")).unwrap_or_default()
        )),
        _ if code.is_empty() => Verdict::Permanent(format!("HTTP {status}")),
        _ => Verdict::Permanent(format!("{status} {code}: {message}")),
    }
}

/// Classifies a request that got no answer. Timeouts and connection failures are transient;
/// a request that could not even be built is not.
pub fn classify_transport(err: &reqwest::Error) -> Verdict {
    if err.is_builder() {
        Verdict::Permanent(format!("could not build the request: {err}"))
    } else {
        Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
    }
}

/// `Retry-After` in seconds (the contract's form); an HTTP date or garbage gets the default.
fn parse_retry_after(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// A failed mall call, with what the mall said and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mall {op}: {}", self.describe())]
pub struct MallError {
    /// The client method, e.g. `create_tag`.
    pub op: &'static str,
    /// `None` when no answer arrived (timeout, connection error).
    pub status: Option<u16>,
    /// The error body's `code`, e.g. `name_taken`.
    pub code: Option<String>,
    pub message: String,
    pub verdict: Verdict,
    /// With `unknown_tag`: the ids the mall does not know. (Boxed: keeps the error small.)
    pub unknown_ids: Box<[MallTagId]>,
}

impl MallError {
    pub fn retryable(&self) -> bool {
        matches!(self.verdict, Verdict::RetryAfter(_))
    }

    /// With a 429: how long the mall asked us to stay away. A rate limit is not a failure of
    /// the job: coming back sooner only spends the token's budget, and a job that meets it
    /// is rescheduled to that moment rather than counted towards the dead-letter limit.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RetryAfter(d) if self.status == Some(429) => Some(d),
            _ => None,
        }
    }

    /// How long to wait before retrying, when retrying helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RetryAfter(d) => Some(d),
            _ => None,
        }
    }

    /// With 409 `name_taken`: the id of the sibling that has the name.
    pub fn existing_id(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::NameTaken { existing_id } => Some(existing_id),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    fn describe(&self) -> String {
        let what = match &self.verdict {
            Verdict::RetryAfter(d) => format!("retry after {} ms", d.as_millis()),
            Verdict::NameTaken { existing_id } => format!("name taken by {existing_id}"),
            Verdict::Permanent(reason) => reason.clone(),
            Verdict::Success | Verdict::AlreadyDone => "no error".to_owned(),
        };
        match self.status {
            Some(status) if self.message.is_empty() => format!("HTTP {status}, {what}"),
            Some(status) => format!("HTTP {status} ({}), {what}", self.message),
            None => format!("{} ({what})", self.message),
        }
    }

    fn local(op: &'static str, reason: String) -> Self {
        Self {
            op,
            status: None,
            code: None,
            message: reason.clone(),
            verdict: Verdict::Permanent(reason),
            unknown_ids: Box::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------

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

/// A token bucket per mall base URL (one tenant, one token) that this process's requests
/// take from before they are sent, so a burst of jobs meets the mall's limit by waiting for
/// its turn here rather than by a 429 and a retry. Its burst is a fifth of a second's worth
/// (the mall's own bucket holds a second's), which leaves room for requests that reach the
/// mall later than they left.
#[derive(Debug)]
pub struct Pace {
    per_sec: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, tokio::time::Instant)>>,
}

impl Pace {
    pub fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self {
            per_sec,
            burst: (per_sec / 5.0).max(1.0),
            buckets: Default::default(),
        }
    }

    /// Takes one request's place for `mall` and says how long to wait for it (places are
    /// handed out in order, so waiting requests keep their turn).
    fn reserve(&self, mall: &str) -> Duration {
        let now = tokio::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.entry(mall.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.per_sec)
        }
    }
}

/// One member's change in a `POST /members:batch-tags` (at most 100 ids together).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberTagItem {
    pub member_id: MemberId,
    pub add: Vec<MallTagId>,
    pub remove: Vec<MallTagId>,
}

/// A successful answer: its body, or the knowledge that a DELETE found nothing to delete.
enum Reply {
    Body(bytes::Bytes),
    AlreadyDone,
}

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

    /// `GET /tag-groups`: the whole library, each group with its tags.
    pub async fn list_groups(
        &self,
        ep: &MallEndpoint,
    ) -> Result<Vec<MallGroupWithTags>, MallError> {
        #[derive(Deserialize)]
        struct Groups {
            groups: Vec<MallGroupWithTags>,
        }
        let op = "list_groups";
        let reply = self
            .send(ep, op, Method::GET, &["tag-groups"], &[], None, None)
            .await?;
        Ok(decode::<Groups>(op, reply)?.groups)
    }

    /// `POST /tag-groups`. A 409 carries the id of the group that has the name.
    pub async fn create_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTagGroup, MallError> {
        let op = "create_group";
        let mut body = json!({ "name": name });
        if let Some(order) = order {
            body["order"] = json!(order);
        }
        let reply = self
            .send(
                ep,
                op,
                Method::POST,
                &["tag-groups"],
                &[],
                Some(key),
                Some(&body),
            )
            .await?;
        decode(op, reply)
    }

    /// `PATCH /tag-groups/{id}`: rename and/or reorder.
    pub async fn update_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
        patch: &GroupPatch,
    ) -> Result<MallTagGroup, MallError> {
        let op = "update_group";
        let body = to_value(patch);
        let path = ["tag-groups", id.as_str()];
        let reply = self
            .send(ep, op, Method::PATCH, &path, &[], Some(key), Some(&body))
            .await?;
        decode(op, reply)
    }

    /// `DELETE /tag-groups/{id}` (its tags go with it). A 404 is [`Deleted::AlreadyGone`].
    pub async fn delete_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
    ) -> Result<Deleted, MallError> {
        let path = ["tag-groups", id.as_str()];
        let reply = self
            .send(
                ep,
                "delete_group",
                Method::DELETE,
                &path,
                &[],
                Some(key),
                None,
            )
            .await?;
        Ok(deleted(reply))
    }

    /// `POST /tags`. A 409 carries the id of the tag in that group that has the name.
    pub async fn create_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        group_id: &MallGroupId,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTag, MallError> {
        let op = "create_tag";
        let mut body = json!({ "group_id": group_id, "name": name });
        if let Some(order) = order {
            body["order"] = json!(order);
        }
        let reply = self
            .send(ep, op, Method::POST, &["tags"], &[], Some(key), Some(&body))
            .await?;
        decode(op, reply)
    }

    /// `PATCH /tags/{id}`: rename, reorder and/or move to another group.
    pub async fn update_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
        patch: &TagPatch,
    ) -> Result<MallTag, MallError> {
        let op = "update_tag";
        let body = to_value(patch);
        let path = ["tags", id.as_str()];
        let reply = self
            .send(ep, op, Method::PATCH, &path, &[], Some(key), Some(&body))
            .await?;
        decode(op, reply)
    }

    /// `DELETE /tags/{id}` (members lose it). A 404 is [`Deleted::AlreadyGone`].
    pub async fn delete_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
    ) -> Result<Deleted, MallError> {
        let path = ["tags", id.as_str()];
        let reply = self
            .send(
                ep,
                "delete_tag",
                Method::DELETE,
                &path,
                &[],
                Some(key),
                None,
            )
            .await?;
        Ok(deleted(reply))
    }

    /// `GET /members`: one page of at most `limit` (1..=500) members from `cursor` (`None`:
    /// the first page).
    pub async fn list_members(
        &self,
        ep: &MallEndpoint,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemberPage, MallError> {
        let op = "list_members";
        let limit = limit.clamp(1, MAX_PAGE_LIMIT).to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor));
        }
        let reply = self
            .send(ep, op, Method::GET, &["members"], &query, None, None)
            .await?;
        decode(op, reply)
    }

    /// Walks every member page by page, holding one page at a time.
    pub fn members<'a>(&'a self, ep: &'a MallEndpoint, limit: u32) -> MemberPager<'a> {
        MemberPager {
            client: self,
            ep,
            limit,
            cursor: None,
            done: false,
        }
    }

    /// Resumes a walk at a cursor an earlier [`MemberPager::cursor`] returned (e.g. a
    /// reconciliation that fans pages out as jobs).
    pub fn members_from<'a>(
        &'a self,
        ep: &'a MallEndpoint,
        cursor: Option<String>,
        limit: u32,
    ) -> MemberPager<'a> {
        MemberPager {
            client: self,
            ep,
            limit,
            cursor,
            done: false,
        }
    }

    /// `GET /members/{id}`; `None` when the mall has no such member.
    pub async fn get_member(
        &self,
        ep: &MallEndpoint,
        id: &MemberId,
    ) -> Result<Option<MallMember>, MallError> {
        let op = "get_member";
        let path = ["members", id.as_str()];
        match self.send(ep, op, Method::GET, &path, &[], None, None).await {
            Ok(reply) => decode(op, reply).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /members:lookup` by one identity; `None` when no member has it.
    pub async fn lookup_member(
        &self,
        ep: &MallEndpoint,
        by: MemberLookup<'_>,
    ) -> Result<Option<MallMember>, MallError> {
        let op = "lookup_member";
        let query = match by {
            MemberLookup::Unionid(v) => [("unionid", v)],
            MemberLookup::ExternalUserid(v) => [("external_userid", v.as_str())],
            MemberLookup::Mobile(v) => [("mobile", v)],
        };
        match self
            .send(ep, op, Method::GET, &["members:lookup"], &query, None, None)
            .await
        {
            Ok(reply) => decode(op, reply).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /members/{id}/tags`, split into calls of at most 100 ids. Each call's key is
    /// derived from `key` and the call's content, so a retry that has the same work to do
    /// reuses its keys, and one whose work changed (part of it landed) never gets a stale
    /// replay. Returns the member as the last call left it.
    pub async fn change_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        member: &MemberId,
        add: &[MallTagId],
        remove: &[MallTagId],
    ) -> Result<MallMember, MallError> {
        let op = "change_member_tags";
        let batches =
            member_tag_batches(add, remove).map_err(|reason| MallError::local(op, reason))?;
        let path = ["members", member.as_str(), "tags"];
        let mut last = None;
        for batch in &batches {
            let body = json!({ "add": batch.add, "remove": batch.remove });
            let batch_key = key.derive(&batch.fingerprint());
            let reply = self
                .send(
                    ep,
                    op,
                    Method::POST,
                    &path,
                    &[],
                    Some(&batch_key),
                    Some(&body),
                )
                .await?;
            last = Some(decode(op, reply)?);
        }
        // `member_tag_batches` always yields at least one batch.
        last.ok_or_else(|| MallError::local(op, "no batch was sent".to_owned()))
    }

    /// Whether `ep`'s mall is (as far as this process knows) one that offers
    /// `POST /members:batch-tags`: false for [`NO_BATCH_REMEMBERED`] after it answered 404/405.
    pub fn offers_batch(&self, ep: &MallEndpoint) -> bool {
        let mut known = self.no_batch.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&ep.base_url) {
            Some(since) if since.elapsed() < NO_BATCH_REMEMBERED => false,
            Some(_) => {
                known.remove(&ep.base_url);
                true
            }
            None => true,
        }
    }

    /// `POST /members:batch-tags` (§3.1): up to 100 members' changes in one write with one
    /// key. `Ok(None)`: the mall does not offer the endpoint (it answered 404/405, now or
    /// within [`NO_BATCH_REMEMBERED`]); write member by member instead. Otherwise one result
    /// per item, in order, each classified as `POST /members/{id}/tags` would be. An error is
    /// the whole request's (429, 5xx, a malformed batch): no item was applied.
    pub async fn batch_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        items: &[MemberTagItem],
    ) -> Result<Option<Vec<Result<MallMember, MallError>>>, MallError> {
        #[derive(Deserialize)]
        struct Results {
            results: Vec<ItemResult>,
        }
        #[derive(Deserialize)]
        struct ItemResult {
            member_id: MemberId,
            status: u16,
            member: Option<MallMember>,
            error: Option<ErrorDetail>,
        }
        let op = "batch_member_tags";
        if items.is_empty() || items.len() > MAX_BATCH_MEMBERS {
            return Err(MallError::local(
                op,
                format!("a batch holds 1 to {MAX_BATCH_MEMBERS} members"),
            ));
        }
        if !self.offers_batch(ep) {
            return Ok(None);
        }
        let body = json!({ "items": items });
        let reply = match self
            .send(
                ep,
                op,
                Method::POST,
                &["members:batch-tags"],
                &[],
                Some(key),
                Some(&body),
            )
            .await
        {
            Ok(reply) => reply,
            Err(e) if matches!(e.status, Some(404 | 405)) => {
                tracing::info!(mall = %ep.base_url, status = ?e.status, "the mall has no batch endpoint; writing member by member");
                self.no_batch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ep.base_url.clone(), std::time::Instant::now());
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let results = decode::<Results>(op, reply)?.results;
        let in_order = results.len() == items.len()
            && results
                .iter()
                .zip(items)
                .all(|(r, i)| r.member_id == i.member_id);
        if !in_order {
            return Err(MallError::local(
                op,
                "the mall's answer does not give one result per item in request order".to_owned(),
            ));
        }
        Ok(Some(
            results
                .into_iter()
                .map(|r| match (r.status, r.member) {
                    (200..=299, Some(m)) => Ok(m),
                    (status, _) => {
                        let error = r.error.unwrap_or_default();
                        let verdict = classify(&Method::POST, status, None, Some(&error));
                        Err(MallError {
                            op,
                            status: Some(status),
                            code: Some(error.code).filter(|c| !c.is_empty()),
                            message: error.message,
                            verdict: match verdict {
                                Verdict::Success => Verdict::Permanent(
                                    "a successful result without its member".to_owned(),
                                ),
                                v => v,
                            },
                            unknown_ids: error
                                .unknown_ids
                                .into_iter()
                                .map(MallTagId::new_unchecked)
                                .collect(),
                        })
                    }
                })
                .collect(),
        ))
    }

    /// One HTTP exchange, counted by operation and verdict.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        ep: &MallEndpoint,
        op: &'static str,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        key: Option<&IdempotencyKey>,
        body: Option<&Value>,
    ) -> Result<Reply, MallError> {
        let mut attempt = 1;
        loop {
            if let Some(pace) = &self.pace {
                let wait = pace.reserve(&ep.base_url);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let result = self
                .exchange(ep, op, method.clone(), path, query, key, body)
                .await;
            if let Some(m) = &self.metrics {
                let outcome = match &result {
                    Ok(Reply::Body(_)) => "success",
                    Ok(Reply::AlreadyDone) => "already_done",
                    Err(e) => e.verdict.label(),
                };
                m.incr(
                    crate::metrics::MALL_CALLS,
                    &[("op", op), ("outcome", outcome)],
                );
            }
            match result {
                Err(e) if e.retryable() => {
                    attempt += 1;
                    let Some(pause) = self.retries.pause(attempt, e.retry_after()) else {
                        return Err(e);
                    };
                    // A 429's Retry-After is a floor, not a default for "soon".
                    let wait = e.rate_limited().map_or(pause, |d| d.max(pause));
                    tracing::debug!(op, error = %e, ?wait, "transient failure; trying again");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        ep: &MallEndpoint,
        op: &'static str,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        key: Option<&IdempotencyKey>,
        body: Option<&Value>,
    ) -> Result<Reply, MallError> {
        let url = endpoint_url(&ep.base_url, path).ok_or_else(|| {
            MallError::local(op, "the mall base URL is not a valid URL".to_owned())
        })?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(ep.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key.as_str());
        }
        if let Some(body) = body {
            req = req.json(body);
        }

        let transport = |e: reqwest::Error| {
            // Without the URL: it may carry query values, and the message is enough.
            let e = e.without_url();
            let verdict = classify_transport(&e);
            tracing::debug!(op, error = %e, "mall call got no answer");
            MallError {
                op,
                status: None,
                code: None,
                message: if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    e.to_string()
                },
                verdict,
                unknown_ids: Box::default(),
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(transport)?;
        let error = if (200..300).contains(&status) {
            None
        } else {
            // Lenient: a proxy's HTML error page still classifies by status.
            serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .map(|b| b.error)
        };
        let verdict = classify(&method, status, retry_after.as_deref(), error.as_ref());
        tracing::debug!(op, %method, status, key = key.map(|k| k.as_str()), ?verdict, "mall call");
        match verdict {
            Verdict::Success => Ok(Reply::Body(bytes)),
            Verdict::AlreadyDone => Ok(Reply::AlreadyDone),
            verdict => {
                let error = error.unwrap_or_default();
                Err(MallError {
                    op,
                    status: Some(status),
                    code: Some(error.code).filter(|c| !c.is_empty()),
                    message: error.message,
                    verdict,
                    unknown_ids: error
                        .unknown_ids
                        .into_iter()
                        .map(MallTagId::new_unchecked)
                        .collect(),
                })
            }
        }
    }
}

/// `base` + path segments, each percent-encoded (ids are opaque and may hold any character).
fn endpoint_url(base: &str, segments: &[&str]) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(segments);
    Some(url)
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn decode<T: DeserializeOwned>(op: &'static str, reply: Reply) -> Result<T, MallError> {
    let bytes = match reply {
        Reply::Body(bytes) => bytes,
        Reply::AlreadyDone => bytes::Bytes::new(),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        MallError::local(
            op,
            format!("the mall's answer does not follow the contract: {e}"),
        )
    })
}

fn deleted(reply: Reply) -> Deleted {
    match reply {
        Reply::Body(_) => Deleted::Deleted,
        Reply::AlreadyDone => Deleted::AlreadyGone,
    }
}

/// Walks `GET /members` one page at a time (`next_page` until it returns `None`). A failed
/// page leaves the pager where it was, so the caller may retry it.
pub struct MemberPager<'a> {
    client: &'a MallClient,
    ep: &'a MallEndpoint,
    limit: u32,
    cursor: Option<String>,
    done: bool,
}

impl MemberPager<'_> {
    pub async fn next_page(&mut self) -> Result<Option<Vec<MallMember>>, MallError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .client
            .list_members(self.ep, self.cursor.as_deref(), self.limit)
            .await?;
        match page.next_cursor {
            Some(next) if Some(&next) == self.cursor.as_ref() => {
                // A mall bug would otherwise loop forever.
                return Err(MallError::local(
                    "list_members",
                    "the mall returned the same cursor again".to_owned(),
                ));
            }
            Some(next) if !next.is_empty() => self.cursor = Some(next),
            _ => self.done = true,
        }
        Ok(Some(page.members))
    }

    /// Where the next page starts (`None`: at the beginning, or after the last page).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// One `POST /members/{id}/tags` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberTagBatch {
    pub add: Vec<MallTagId>,
    pub remove: Vec<MallTagId>,
}

impl MemberTagBatch {
    /// A digest of the batch's content: the part of its idempotency key that changes when
    /// the work changes.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for id in &self.add {
            h.update(b"+");
            h.update(id.as_str().as_bytes());
            h.update(b"\n");
        }
        for id in &self.remove {
            h.update(b"-");
            h.update(id.as_str().as_bytes());
            h.update(b"\n");
        }
        format!("tags-{}", &hex::encode(h.finalize())[..16])
    }
}

/// Splits a member's tag changes into bodies of at most [`MAX_IDS_PER_MEMBER_CALL`] ids, in a
/// deterministic order (sorted, duplicates dropped). Nothing to change still gives one
/// (empty) batch, whose answer is the member. An id both added and removed is refused:
/// split across batches it would half-apply.
pub fn member_tag_batches(
    add: &[MallTagId],
    remove: &[MallTagId],
) -> Result<Vec<MemberTagBatch>, String> {
    let add: BTreeSet<&MallTagId> = add.iter().collect();
    let remove: BTreeSet<&MallTagId> = remove.iter().collect();
    let both: Vec<&str> = add.intersection(&remove).map(|id| id.as_str()).collect();
    if !both.is_empty() {
        return Err(format!(
            "tag ids both added and removed: {}",
            both.join(", ")
        ));
    }
    let ops: Vec<(bool, &MallTagId)> = add
        .into_iter()
        .map(|id| (true, id))
        .chain(remove.into_iter().map(|id| (false, id)))
        .collect();
    if ops.is_empty() {
        return Ok(vec![MemberTagBatch {
            add: Vec::new(),
            remove: Vec::new(),
        }]);
    }
    Ok(ops
        .chunks(MAX_IDS_PER_MEMBER_CALL)
        .map(|chunk| MemberTagBatch {
            add: chunk
                .iter()
                .filter(|(is_add, _)| *is_add)
                .map(|(_, id)| (*id).clone())
                .collect(),
            remove: chunk
                .iter()
                .filter(|(is_add, _)| !*is_add)
                .map(|(_, id)| (*id).clone())
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pace_lets_a_fifth_of_a_second_through_then_one_request_per_share_of_a_second() {
        let pace = Pace::new(50);
        let waits: Vec<Duration> = (0..12).map(|_| pace.reserve("mall-a")).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
        assert_eq!(waits[10], Duration::from_millis(20));
        assert_eq!(waits[11], Duration::from_millis(40));
        assert!(
            pace.reserve("mall-b").is_zero(),
            "each mall has its own bucket"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(pace.reserve("mall-a").is_zero(), "refilled after a second");
    }

    fn err(code: &str) -> ErrorDetail {
        ErrorDetail {
            code: code.to_owned(),
            message: "m".to_owned(),
            ..ErrorDetail::default()
        }
    }

    fn tag_ids(prefix: &str, n: usize) -> Vec<MallTagId> {
        (0..n)
            .map(|i| MallTagId::new_unchecked(format!("{prefix}{i:03}")))
            .collect()
    }

    #[test]
    fn two_hundreds_are_success() {
        for status in [200, 201, 204] {
            assert_eq!(
                classify(&Method::POST, status, None, None),
                Verdict::Success
            );
        }
    }

    #[test]
    fn a_missing_object_is_done_only_for_delete() {
        let nf = err("not_found");
        assert_eq!(
            classify(&Method::DELETE, 404, None, Some(&nf)),
            Verdict::AlreadyDone
        );
        assert!(matches!(
            classify(&Method::PATCH, 404, None, Some(&nf)),
            Verdict::Permanent(_)
        ));
        assert!(matches!(
            classify(&Method::GET, 404, None, None),
            Verdict::Permanent(_)
        ));
    }

    #[test]
    fn name_taken_surfaces_the_existing_id() {
        let mut e = err("name_taken");
        e.existing_id = Some("t_9".to_owned());
        assert_eq!(
            classify(&Method::POST, 409, None, Some(&e)),
            Verdict::NameTaken {
                existing_id: "t_9".to_owned()
            }
        );
        // Without the id there is nothing to adopt.
        assert!(matches!(
            classify(&Method::POST, 409, None, Some(&err("name_taken"))),
            Verdict::Permanent(_)
        ));
    }

    #[test]
    fn rate_limits_honour_retry_after_seconds() {
        let rl = err("rate_limited");
        assert_eq!(
            classify(&Method::GET, 429, Some("7"), Some(&rl)),
            Verdict::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            classify(&Method::GET, 429, None, Some(&rl)),
            Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            classify(
                &Method::GET,
                429,
                Some("Wed, 21 Oct 2026 07:28:00 GMT"),
                None
            ),
            Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            classify(&Method::GET, 429, Some("999999"), None),
            Verdict::RetryAfter(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn server_errors_are_transient() {
        for status in [500, 502, 503, 504] {
            assert_eq!(
                classify(&Method::POST, status, None, None),
                Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
            );
        }
        assert_eq!(
            classify(&Method::POST, 503, Some("3"), None),
            Verdict::RetryAfter(Duration::from_secs(3))
        );
    }

    #[test]
    fn client_errors_are_permanent_with_their_reason() {
        assert_eq!(
            classify(&Method::GET, 401, None, Some(&err("unauthorized"))),
            Verdict::Permanent("bad mall token".to_owned())
        );
        let mut unknown = err("unknown_tag");
        unknown.unknown_ids = vec!["t_1".to_owned(), "t_2".to_owned()];
        assert_eq!(
            classify(&Method::POST, 400, None, Some(&unknown)),
            Verdict::Permanent("unknown tag ids: t_1, t_2".to_owned())
        );
        let mut invalid = err("invalid_request");
        invalid.message = "name must be 1 to 30 characters".to_owned();
        assert_eq!(
            classify(&Method::POST, 400, None, Some(&invalid)),
            Verdict::Permanent("400 invalid_request: name must be 1 to 30 characters".to_owned())
        );
        assert_eq!(
            classify(&Method::POST, 403, None, None),
            Verdict::Permanent("HTTP 403".to_owned())
        );
    }

    #[test]
    fn errors_know_whether_they_are_retryable() {
        let e = MallError {
            op: "create_tag",
            status: Some(429),
            code: Some("rate_limited".to_owned()),
            message: "slow down".to_owned(),
            verdict: Verdict::RetryAfter(Duration::from_secs(2)),
            unknown_ids: Box::default(),
        };
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(e.rate_limited(), Some(Duration::from_secs(2)));
        assert_eq!(
            e.to_string(),
            "mall create_tag: HTTP 429 (slow down), retry after 2000 ms"
        );
        // A 503 is retried too, but it is not the mall's rate limit.
        let unavailable = MallError {
            status: Some(503),
            ..e.clone()
        };
        assert!(unavailable.retryable());
        assert_eq!(unavailable.rate_limited(), None);
        let e = MallError {
            verdict: Verdict::NameTaken {
                existing_id: "g_1".to_owned(),
            },
            status: Some(409),
            ..e
        };
        assert!(!e.retryable());
        assert_eq!(e.existing_id(), Some("g_1"));
    }

    #[test]
    fn keys_are_deterministic_and_distinct_per_step() {
        let job = JobId::new_unchecked("0193a1b2c3");
        let a = IdempotencyKey::for_step(&job, "create-tag:h1");
        assert_eq!(a, IdempotencyKey::for_step(&job, "create-tag:h1"));
        assert_eq!(a.as_str(), "tagsync:0193a1b2c3:create-tag:h1");
        assert_ne!(a, IdempotencyKey::for_step(&job, "create-tag:h2"));
        assert_ne!(
            a,
            IdempotencyKey::for_step(&JobId::new_unchecked("other"), "create-tag:h1")
        );
        assert_eq!(a.derive("1"), a.derive("1"));
        assert_ne!(a.derive("1"), a.derive("2"));
    }

    #[test]
    fn long_or_unusual_keys_are_bounded_header_safe_and_still_distinct() {
        let job = JobId::new_unchecked("j");
        let long_a = IdempotencyKey::for_step(&job, &"a".repeat(500));
        let long_b = IdempotencyKey::for_step(&job, &format!("{}b", "a".repeat(499)));
        assert!(long_a.as_str().len() <= MAX_IDEMPOTENCY_KEY_CHARS);
        assert_ne!(long_a, long_b);
        let odd = IdempotencyKey::for_step(&job, "rename:高价值 客户\n");
        assert!(odd.as_str().chars().all(|c| c.is_ascii_graphic()), "{odd}");
        assert_ne!(odd, IdempotencyKey::for_step(&job, "rename:高价值 客户"));
        assert!(reqwest::header::HeaderValue::from_str(odd.as_str()).is_ok());
    }

    #[test]
    fn member_tag_changes_split_into_batches_of_at_most_100_ids() {
        let add = tag_ids("a", 130);
        let remove = tag_ids("r", 90);
        let batches = member_tag_batches(&add, &remove).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(
            batches
                .iter()
                .all(|b| b.add.len() + b.remove.len() <= MAX_IDS_PER_MEMBER_CALL)
        );
        let all_add: Vec<_> = batches.iter().flat_map(|b| b.add.clone()).collect();
        let all_remove: Vec<_> = batches.iter().flat_map(|b| b.remove.clone()).collect();
        assert_eq!(all_add, add);
        assert_eq!(all_remove, remove);
        // Distinct content, distinct keys.
        let prints: BTreeSet<_> = batches.iter().map(MemberTagBatch::fingerprint).collect();
        assert_eq!(prints.len(), 3);
    }

    #[test]
    fn batches_do_not_depend_on_input_order_or_duplicates() {
        let mut add = tag_ids("a", 5);
        let once = member_tag_batches(&add, &[]).unwrap();
        add.reverse();
        add.push(add[0].clone());
        assert_eq!(member_tag_batches(&add, &[]).unwrap(), once);
    }

    #[test]
    fn an_id_both_added_and_removed_is_refused() {
        let ids = tag_ids("x", 2);
        let err = member_tag_batches(&ids, &ids[1..]).unwrap_err();
        assert!(err.contains("x001"), "{err}");
    }

    #[test]
    fn nothing_to_change_is_one_empty_batch() {
        let batches = member_tag_batches(&[], &[]).unwrap();
        assert_eq!(
            batches,
            vec![MemberTagBatch {
                add: vec![],
                remove: vec![]
            }]
        );
    }

    #[test]
    fn urls_append_encoded_segments_to_the_base_path() {
        let url = endpoint_url("https://mall.example/api/v1/", &["tags", "t 1/2"]).unwrap();
        assert_eq!(url.as_str(), "https://mall.example/api/v1/tags/t%201%2F2");
        let url = endpoint_url("http://127.0.0.1:8080", &["members:lookup"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/members:lookup");
        assert!(endpoint_url("not a url", &["tags"]).is_none());
    }

    #[test]
    fn decoding_is_lenient_about_extra_fields() {
        let m: MallMember = serde_json::from_value(json!({
            "id": "m_1", "unionid": null, "external_userid": "wm1", "mobile": null,
            "tag_ids": ["t_1"], "nickname": "extra"
        }))
        .unwrap();
        assert_eq!(m.external_userid.unwrap().as_str(), "wm1");
        let g: MallGroupWithTags = serde_json::from_value(json!({
            "id": "g_1", "name": "Level", "order": 2, "color": "red",
            "tags": [{"id": "t_1", "group_id": "g_1", "name": "VIP", "order": 0, "x": 1}]
        }))
        .unwrap();
        assert_eq!(g.tags.len(), 1);
        assert_eq!(g.group.name, "Level");
    }

    #[test]
    fn the_endpoint_never_shows_its_token() {
        let ep = MallEndpoint {
            base_url: "http://mall".to_owned(),
            token: Secret::new("super-secret-token"),
        };
        assert!(!format!("{ep:?}").contains("super-secret-token"));
    }
}
