//! The mall simulator: a real HTTP server on loopback that speaks `mall-connector.md`
//! exactly — the REST API of §3 (bearer auth, idempotency keys with replay, the limits, paging,
//! a per-token rate limit) and a signed webhook (§2) for every change, API-made or not.
//!
//! On top of the contract it has what tests and demos need:
//! - an operator's control surface, as Rust methods ([`MallSim::operator`], and
//!   [`MallSim::silent`] for changes that send no webhook, to make drift for reconciliation)
//!   and as JSON endpoints under `/control/` (no bearer; see [`MallSim`] for the list);
//! - fault injection ([`Faults`]): 500s, slow answers, dropped, duplicated and reordered
//!   webhooks;
//! - holds ([`MallSim::hold`]): one API request held before (or after) it takes effect until
//!   the test releases it, so an operator can act exactly between tagsync's read and write;
//! - a log of every API request and every webhook delivery, for assertions.
//!
//! State lives behind one `std::sync::Mutex`: every request is handled start to finish under
//! it without awaiting, so each is atomic and webhooks are queued in the order changes
//! happened. Deliveries go out from one spawned task, one at a time, with bounded retries.

use crate::domain::{ExternalUserId, MallGroupId, MallTagId, MemberId, Timestamp};
use crate::mall::client::{
    ErrorBody, ErrorDetail, GroupPatch, MAX_IDS_PER_MEMBER_CALL, MAX_PAGE_LIMIT, MallEndpoint,
    MallGroupWithTags, MallMember, TagPatch,
};
use crate::mall::webhook::{self, MAX_NAME_CHARS, MallEvent, MallTag, MallTagGroup};
use crate::ports::{Clock, SystemClock};
use crate::sim::hold::{self, ControlHold, ControlWait, Hold, Phase, Registry, Trap};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// The contract's cap on tags in one mall.
pub const MAX_TAGS: usize = 10_000;
/// The contract's default rate limit per token.
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 50;
/// `GET /members` page size when `limit` is absent.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The contract sets no length for `Idempotency-Key`; like Stripe, the simulator takes up to
/// 255 visible ASCII characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// How long a reordered webhook waits for a successor before it goes out anyway.
const REORDER_HOLD: Duration = Duration::from_millis(300);

/// How the simulator is set up. [`Default`] is the contract's defaults with one token.
#[derive(Clone)]
pub struct MallSimConfig {
    /// Accepted bearer tokens; all see the same shop. Rate limits and idempotency records
    /// are per token.
    pub tokens: Vec<String>,
    /// Where webhooks go (`{tagsync}/mall/webhook/{tenant}`); `None`: recorded, not sent.
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    /// Requests per second per token; `None` turns the limit off.
    pub rate_limit_per_sec: Option<u32>,
    pub max_tags: usize,
    /// Whether `POST /members:batch-tags` (§3.1, contract 1.1) is offered, or answered as a
    /// 1.0 mall answers it.
    pub batch_endpoint: BatchEndpoint,
    /// How long a key's first final answer is replayed (simulator clock).
    pub idempotency_ttl: Duration,
    pub webhook_retry: WebhookRetry,
    /// Drives `occurred_at`, `X-Mall-Timestamp` and idempotency expiry.
    pub clock: Arc<dyn Clock>,
}

impl Default for MallSimConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["mall-sim-token".to_owned()],
            webhook_url: None,
            webhook_secret: "mall-sim-webhook-secret".to_owned(),
            rate_limit_per_sec: Some(DEFAULT_RATE_LIMIT_PER_SEC),
            max_tags: MAX_TAGS,
            batch_endpoint: BatchEndpoint::Offered,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            webhook_retry: WebhookRetry::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for MallSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MallSimConfig")
            .field("tokens", &self.tokens.len())
            .field("webhook_url", &self.webhook_url)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("max_tags", &self.max_tags)
            .finish_non_exhaustive()
    }
}

/// Whether the simulator offers the optional batch endpoint of contract version 1.1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchEndpoint {
    /// `POST /members:batch-tags` works (§3.1).
    #[default]
    Offered,
    /// A 1.0 mall that has no such path: 404 `not_found`.
    NotFound,
    /// A 1.0 mall whose router matches the path but not the method: 405.
    MethodNotAllowed,
}

/// Most items in one `POST /members:batch-tags` (§3.1).
pub const MAX_BATCH_ITEMS: usize = 100;

/// Webhook retries. The contract's mall retries for 24 h; the simulator gives up sooner so
/// tests end.
#[derive(Clone, Debug)]
pub struct WebhookRetry {
    /// Tries per delivery, the first included.
    pub max_attempts: u32,
    /// Wait after the first failure; doubles per failure up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Per try; the contract's is 10 s.
    pub timeout: Duration,
}

impl Default for WebhookRetry {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Injected faults. Counters (`*_next`) count down as they fire; rates are probabilities
/// from 0 to 1 per request or per event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N API requests (after auth) answer 429 `rate_limited` with `Retry-After: 1`,
    /// as when the merchant's other integrations spent the token's rate (it is per token).
    pub rate_limited_next: u32,
    /// The next N API requests (after auth and rate limit) answer 500 without effect.
    pub fail_next: u32,
    pub fail_rate: f64,
    /// Every API answer is held back this long after the request took effect (a client
    /// that times out has still changed the mall: the retry should be replayed).
    pub delay_ms: u64,
    /// The next N webhooks are not sent at all.
    pub drop_webhooks_next: u32,
    pub drop_webhook_rate: f64,
    /// The next N webhooks are delivered twice (same event id and body).
    pub duplicate_webhooks_next: u32,
    pub duplicate_webhook_rate: f64,
    /// Each of the next N webhooks is held back and delivered after the one that follows it.
    pub reorder_webhooks_next: u32,
}

/// A member to create or the identities to bind to an existing one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewMember {
    pub unionid: Option<String>,
    pub external_userid: Option<String>,
    pub mobile: Option<String>,
}

impl NewMember {
    /// A member bound to the WeCom customer `external_userid`.
    pub fn external(external_userid: &str) -> Self {
        Self {
            external_userid: Some(external_userid.to_owned()),
            ..Self::default()
        }
    }
    pub fn unionid(unionid: &str) -> Self {
        Self {
            unionid: Some(unionid.to_owned()),
            ..Self::default()
        }
    }
}

/// One API request as the simulator saw and answered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiRequestLog {
    pub at: Timestamp,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub idempotency_key: Option<String>,
    /// The body as JSON; a body that is not JSON is kept as a string.
    pub request: Option<Value>,
    pub status: u16,
    pub response: Option<Value>,
    /// The `Retry-After` seconds sent with a 429.
    pub retry_after: Option<u64>,
    /// Answered from the idempotency record rather than carried out.
    pub replayed: bool,
}

/// One webhook delivery attempt (or a drop).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub at: Timestamp,
    pub event_id: String,
    pub event_type: String,
    pub body: Value,
    /// 1 for the first try of a copy; retries count up.
    pub attempt: u32,
    pub url: Option<String>,
    /// The status tagsync answered; `None` when nothing was sent or no answer came.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Not sent at all (the drop fault).
    pub dropped: bool,
}

/// An error the simulator answers with (API or control surface): the contract's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub error: ErrorDetail,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status, self.error.code, self.error.message
        )
    }
}

impl std::error::Error for SimError {}

impl SimError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                ..ErrorDetail::default()
            },
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }
    fn name_taken(existing_id: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(409, "name_taken", message);
        e.error.existing_id = Some(existing_id.to_owned());
        e
    }
    fn body(&self) -> Value {
        serde_json::to_value(ErrorBody {
            error: self.error.clone(),
        })
        .unwrap_or(Value::Null)
    }
}

/// A running simulator. Stops when dropped (or with [`MallSim::stop`]).
///
/// HTTP control surface (JSON, no bearer; every write takes `?silent=true` to send no
/// webhook):
///
/// | method and path | body | does |
/// |---|---|---|
/// | `GET /control/state` | — | `{"groups": [... with tags], "members": [...]}` |
/// | `GET /control/log`, `DELETE /control/log` | — | `{"requests", "webhooks", "events"}`; clear |
/// | `GET /control/faults`, `PATCH /control/faults` | fields of [`Faults`] | read; merge |
/// | `PUT /control/rate-limit` | `{"per_sec": n or null}` | set or turn off |
/// | `PUT /control/webhook` | `{"url": "…" or null, "secret"?: "…"}` | retarget webhooks |
/// | `POST /control/tag-groups` | `{"name", "order"?}` | create a group |
/// | `PATCH`/`DELETE /control/tag-groups/{id}` | `{"name"?, "order"?}` | rename/reorder; delete |
/// | `POST /control/tags` | `{"group_id", "name", "order"?}` | create a tag |
/// | `PATCH`/`DELETE /control/tags/{id}` | `{"name"?, "order"?, "group_id"?}` | rename/reorder/move; delete |
/// | `POST /control/members` | `{"unionid"?, "external_userid"?, "mobile"?}` | create a member |
/// | `POST /control/members/{id}/bind` | same | bind identities (`member.bound`) |
/// | `POST /control/members/{id}/tags` | `{"add"?: […], "remove"?: […]}` | tag/untag |
/// | `POST /control/holds` | `{"method", "path", "phase"?, "match"?}` | arm a hold → `{"id"}` |
/// | `POST /control/holds/{id}/wait` | `{"timeout_ms"?}` | wait until held → `{"held", "request"?}` |
/// | `POST /control/holds/{id}/release` | — | let the held request go on (or disarm) |
pub struct MallSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    dispatcher: JoinHandle<()>,
}

impl MallSim {
    /// Binds 127.0.0.1:0 and starts serving and delivering webhooks.
    pub async fn start(config: MallSimConfig) -> std::io::Result<MallSim> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (outbox, inbox) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                groups: BTreeMap::new(),
                tags: BTreeMap::new(),
                members: BTreeMap::new(),
                next_seq: 1,
                idempotency: HashMap::new(),
                buckets: HashMap::new(),
                rate_limit: config.rate_limit_per_sec,
                batch_endpoint: config.batch_endpoint,
                faults: Faults::default(),
                webhook_url: config.webhook_url.clone(),
                webhook_secret: config.webhook_secret.clone(),
                requests: Vec::new(),
                deliveries: Vec::new(),
                events: Vec::new(),
                holds: Vec::new(),
            }),
            outbox,
            pending: AtomicUsize::new(0),
            settled: Notify::new(),
            http,
            config,
            control_holds: Registry::default(),
        });
        let dispatcher = tokio::spawn(dispatch(shared.clone(), inbox));
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "mall simulator stopped with an error");
            }
        });
        Ok(MallSim {
            shared,
            addr,
            stop: Some(stop),
            server: Some(server),
            dispatcher,
        })
    }

    /// `http://127.0.0.1:{port}`: the base URL of the REST API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint a client uses, with the first configured token.
    pub fn endpoint(&self) -> MallEndpoint {
        MallEndpoint {
            base_url: self.base_url(),
            token: crate::domain::Secret::new(
                self.shared
                    .config
                    .tokens
                    .first()
                    .cloned()
                    .unwrap_or_default(),
            ),
        }
    }

    /// Changes as an operator would make them in the mall's admin: each sends its webhook
    /// (with `origin_request_id` null).
    pub fn operator(&self) -> Operator<'_> {
        Operator {
            shared: &self.shared,
            silent: false,
        }
    }

    /// The same changes without any webhook (drift that only a reconciliation finds).
    pub fn silent(&self) -> Operator<'_> {
        Operator {
            shared: &self.shared,
            silent: true,
        }
    }

    /// The library as `GET /tag-groups` would list it.
    pub fn library(&self) -> Vec<MallGroupWithTags> {
        self.shared.lock().library()
    }

    /// Every member, oldest first.
    pub fn members(&self) -> Vec<MallMember> {
        self.shared.lock().members.values().cloned().collect()
    }

    pub fn member(&self, id: &MemberId) -> Option<MallMember> {
        let st = self.shared.lock();
        st.member_seq(id.as_str())
            .and_then(|seq| st.members.get(&seq).cloned())
    }

    /// Every API request so far, in order.
    pub fn requests(&self) -> Vec<ApiRequestLog> {
        self.shared.lock().requests.clone()
    }

    /// Every webhook delivery attempt (and drop) so far, in order.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Every webhook body emitted (sent or not), in the order the changes happened.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    pub fn clear_logs(&self) {
        let mut st = self.shared.lock();
        st.requests.clear();
        st.deliveries.clear();
        st.events.clear();
    }

    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Changes some faults, e.g. `sim.update_faults(|f| f.fail_next = 2)`.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.lock().faults);
    }

    /// Holds the next API request `method path` (`path` exact, or ending in `*` for a
    /// prefix: `/tags/*`) whose logged form `{"method", "path", "body"}` has the fields of
    /// `matching` (`Value::Null`: any) at `phase`: before it takes effect (before auth, the
    /// rate limit and injected faults), or after, before its answer goes back. The returned
    /// [`Hold`] says when a request is held; it goes on when the [`hold::Held`] is released
    /// or dropped.
    pub fn hold(&self, method: &str, path: &str, phase: Phase, matching: Value) -> Hold {
        let (trap, hold) = hold::arm(phase, matching);
        self.shared
            .lock()
            .holds
            .push(((method.to_ascii_uppercase(), path.to_owned()), trap));
        hold
    }

    /// Requests per second per token; `None` turns the limit off.
    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        let mut st = self.shared.lock();
        st.rate_limit = per_sec;
        st.buckets.clear();
    }

    /// Offers `POST /members:batch-tags`, or answers it as a 1.0 mall would.
    pub fn set_batch_endpoint(&self, offered: BatchEndpoint) {
        self.shared.lock().batch_endpoint = offered;
    }

    /// Retargets webhooks (deliveries already retrying pick the change up on their next try).
    pub fn set_webhook(&self, url: Option<String>, secret: impl Into<String>) {
        let mut st = self.shared.lock();
        st.webhook_url = url;
        st.webhook_secret = secret.into();
    }

    /// Waits until every emitted webhook has been delivered, given up on or dropped. False
    /// if that did not happen within `within`.
    pub async fn webhooks_settled(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.settled.notified();
            if self.shared.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// Stops serving (in-flight requests finish) and stops delivering webhooks.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
        {
            tracing::warn!("mall simulator did not stop within 5 s");
        }
        self.dispatcher.abort();
    }
}

impl Drop for MallSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.dispatcher.abort();
    }
}

/// An operator's hand on the mall: see [`MallSim::operator`] and [`MallSim::silent`].
pub struct Operator<'a> {
    shared: &'a Shared,
    silent: bool,
}

impl Operator<'_> {
    fn run<T>(
        &self,
        change: impl FnOnce(&mut State) -> Result<(T, Vec<MallEvent>), SimError>,
    ) -> Result<T, SimError> {
        let mut st = self.shared.lock();
        let (out, events) = change(&mut st)?;
        if !self.silent {
            self.shared.emit(&mut st, events, None);
        }
        Ok(out)
    }

    pub fn create_group(&self, name: &str, order: u32) -> Result<MallTagGroup, SimError> {
        self.run(|st| st.create_group(name, order))
    }

    /// Renames and/or reorders a group.
    pub fn update_group(
        &self,
        id: &MallGroupId,
        patch: &GroupPatch,
    ) -> Result<MallTagGroup, SimError> {
        self.run(|st| st.update_group(id.as_str(), patch.name.as_deref(), patch.order))
    }

    pub fn rename_group(&self, id: &MallGroupId, name: &str) -> Result<MallTagGroup, SimError> {
        self.run(|st| st.update_group(id.as_str(), Some(name), None))
    }

    pub fn reorder_group(&self, id: &MallGroupId, order: u32) -> Result<MallTagGroup, SimError> {
        self.run(|st| st.update_group(id.as_str(), None, Some(order)))
    }

    /// Deletes a group with its tags (one `tag_group.deleted` event).
    pub fn delete_group(&self, id: &MallGroupId) -> Result<(), SimError> {
        self.run(|st| st.delete_group(id.as_str()))
    }

    pub fn create_tag(
        &self,
        group_id: &MallGroupId,
        name: &str,
        order: u32,
    ) -> Result<MallTag, SimError> {
        let max_tags = self.shared.config.max_tags;
        self.run(|st| st.create_tag(group_id.as_str(), name, order, max_tags))
    }

    /// Renames, reorders and/or moves a tag.
    pub fn update_tag(&self, id: &MallTagId, patch: &TagPatch) -> Result<MallTag, SimError> {
        self.run(|st| {
            st.update_tag(
                id.as_str(),
                patch.name.as_deref(),
                patch.order,
                patch.group_id.as_ref().map(MallGroupId::as_str),
            )
        })
    }

    pub fn rename_tag(&self, id: &MallTagId, name: &str) -> Result<MallTag, SimError> {
        self.run(|st| st.update_tag(id.as_str(), Some(name), None, None))
    }

    pub fn reorder_tag(&self, id: &MallTagId, order: u32) -> Result<MallTag, SimError> {
        self.run(|st| st.update_tag(id.as_str(), None, Some(order), None))
    }

    /// Moves a tag to another group (a `tag.updated` with the new `group_id`).
    pub fn move_tag(&self, id: &MallTagId, group_id: &MallGroupId) -> Result<MallTag, SimError> {
        self.run(|st| st.update_tag(id.as_str(), None, None, Some(group_id.as_str())))
    }

    /// Deletes a tag; members lose it without events of their own.
    pub fn delete_tag(&self, id: &MallTagId) -> Result<(), SimError> {
        self.run(|st| st.delete_tag(id.as_str()))
    }

    /// Creates a member; one with a `unionid` or `external_userid` is bound to a WeCom
    /// customer and sends `member.bound`.
    pub fn create_member(&self, new: NewMember) -> Result<MallMember, SimError> {
        self.run(|st| st.create_member(new))
    }

    /// Closes a member's account: it is gone from the mall (the contract has no event for
    /// it, so no webhook).
    pub fn remove_member(&self, id: &MemberId) -> Result<MallMember, SimError> {
        self.run(|st| {
            let seq = st
                .member_seq(id.as_str())
                .ok_or_else(|| SimError::not_found(format!("no member {id}")))?;
            let m = st.members.remove(&seq).expect("looked up above");
            Ok((m, vec![]))
        })
    }

    /// Sets a member's identities (those given; the others stay) and sends `member.bound`.
    pub fn bind_member(&self, id: &MemberId, new: NewMember) -> Result<MallMember, SimError> {
        self.run(|st| st.bind_member(id.as_str(), new))
    }

    pub fn change_member_tags(
        &self,
        id: &MemberId,
        add: &[MallTagId],
        remove: &[MallTagId],
    ) -> Result<MallMember, SimError> {
        let add = add.iter().map(|t| t.as_str().to_owned()).collect();
        let remove = remove.iter().map(|t| t.as_str().to_owned()).collect();
        self.run(|st| st.change_member_tags(id.as_str(), add, remove))
    }

    pub fn tag_member(&self, id: &MemberId, tag: &MallTagId) -> Result<MallMember, SimError> {
        self.change_member_tags(id, std::slice::from_ref(tag), &[])
    }

    pub fn untag_member(&self, id: &MemberId, tag: &MallTagId) -> Result<MallMember, SimError> {
        self.change_member_tags(id, &[], std::slice::from_ref(tag))
    }
}

// ---------------------------------------------------------------------------------------
// State and the contract's rules.
// ---------------------------------------------------------------------------------------

struct Shared {
    state: Mutex<State>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// Events emitted and not yet delivered, given up on or dropped.
    pending: AtomicUsize,
    settled: Notify,
    http: reqwest::Client,
    config: MallSimConfig,
    /// Holds armed through `/control/holds`.
    control_holds: Registry,
}

/// Objects are kept by a sequence number from one counter; their ids are `g_{n}`, `t_{n}`
/// and `m_{n}`, so ids are never reused and members page in creation order.
struct State {
    groups: BTreeMap<u64, MallTagGroup>,
    tags: BTreeMap<u64, MallTag>,
    members: BTreeMap<u64, MallMember>,
    next_seq: u64,
    /// (token, key) → the first final answer.
    idempotency: HashMap<(String, String), StoredAnswer>,
    buckets: HashMap<String, Bucket>,
    rate_limit: Option<u32>,
    batch_endpoint: BatchEndpoint,
    faults: Faults,
    webhook_url: Option<String>,
    webhook_secret: String,
    requests: Vec<ApiRequestLog>,
    deliveries: Vec<WebhookDelivery>,
    events: Vec<Value>,
    /// Armed holds by (method, path pattern), first armed first (see [`MallSim::hold`]).
    holds: Vec<((String, String), Trap)>,
}

#[derive(Clone)]
struct StoredAnswer {
    status: u16,
    body: Option<Value>,
    at: Timestamp,
}

/// A token bucket holding up to one second's worth of requests.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

type Change<T> = Result<(T, Vec<MallEvent>), SimError>;

fn seq_of(prefix: &str, id: &str) -> Option<u64> {
    let n: u64 = id.strip_prefix(prefix)?.parse().ok()?;
    // `g_007` is not `g_7`: ids compare exactly.
    (format!("{prefix}{n}") == id).then_some(n)
}

fn check_name(field: &str, name: &str) -> Result<(), SimError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(SimError::invalid(format!(
            "{field} must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

impl State {
    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn group_seq(&self, id: &str) -> Option<u64> {
        seq_of("g_", id).filter(|s| self.groups.contains_key(s))
    }

    fn tag_seq(&self, id: &str) -> Option<u64> {
        seq_of("t_", id).filter(|s| self.tags.contains_key(s))
    }

    fn member_seq(&self, id: &str) -> Option<u64> {
        seq_of("m_", id).filter(|s| self.members.contains_key(s))
    }

    /// Larger `order` first, then oldest first (the contract: larger shows first).
    fn library(&self) -> Vec<MallGroupWithTags> {
        let mut groups: Vec<(&u64, &MallTagGroup)> = self.groups.iter().collect();
        groups.sort_by_key(|(seq, g)| (std::cmp::Reverse(g.order), **seq));
        groups
            .into_iter()
            .map(|(_, g)| {
                let mut tags: Vec<(&u64, &MallTag)> = self
                    .tags
                    .iter()
                    .filter(|(_, t)| t.group_id == g.id)
                    .collect();
                tags.sort_by_key(|(seq, t)| (std::cmp::Reverse(t.order), **seq));
                MallGroupWithTags {
                    group: g.clone(),
                    tags: tags.into_iter().map(|(_, t)| t.clone()).collect(),
                }
            })
            .collect()
    }

    fn group_named(&self, name: &str) -> Option<&MallTagGroup> {
        self.groups.values().find(|g| g.name == name)
    }

    fn tag_named(&self, group_id: &MallGroupId, name: &str) -> Option<&MallTag> {
        self.tags
            .values()
            .find(|t| &t.group_id == group_id && t.name == name)
    }

    fn create_group(&mut self, name: &str, order: u32) -> Change<MallTagGroup> {
        check_name("name", name)?;
        if let Some(g) = self.group_named(name) {
            return Err(SimError::name_taken(
                g.id.as_str(),
                format!("a tag group named {name:?} exists"),
            ));
        }
        let seq = self.next_seq();
        let group = MallTagGroup {
            id: MallGroupId::new_unchecked(format!("g_{seq}")),
            name: name.to_owned(),
            order,
        };
        self.groups.insert(seq, group.clone());
        let event = MallEvent::TagGroupCreated {
            group: group.clone(),
        };
        Ok((group, vec![event]))
    }

    fn update_group(
        &mut self,
        id: &str,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Change<MallTagGroup> {
        if let Some(name) = name {
            check_name("name", name)?;
        }
        let seq = self
            .group_seq(id)
            .ok_or_else(|| SimError::not_found(format!("no tag group {id}")))?;
        if let Some(name) = name
            && let Some(other) = self.group_named(name).filter(|g| g.id.as_str() != id)
        {
            return Err(SimError::name_taken(
                other.id.as_str(),
                format!("a tag group named {name:?} exists"),
            ));
        }
        let group = self.groups.get_mut(&seq).expect("looked up above");
        let before = group.clone();
        if let Some(name) = name {
            group.name = name.to_owned();
        }
        if let Some(order) = order {
            group.order = order;
        }
        let group = group.clone();
        let events = if group == before {
            vec![]
        } else {
            vec![MallEvent::TagGroupUpdated {
                group: group.clone(),
            }]
        };
        Ok((group, events))
    }

    fn delete_group(&mut self, id: &str) -> Change<()> {
        let seq = self
            .group_seq(id)
            .ok_or_else(|| SimError::not_found(format!("no tag group {id}")))?;
        let group = self.groups.remove(&seq).expect("looked up above");
        let gone: Vec<MallTagId> = self
            .tags
            .values()
            .filter(|t| t.group_id == group.id)
            .map(|t| t.id.clone())
            .collect();
        self.tags.retain(|_, t| t.group_id != group.id);
        for member in self.members.values_mut() {
            member.tag_ids.retain(|t| !gone.contains(t));
        }
        Ok(((), vec![MallEvent::TagGroupDeleted { group_id: group.id }]))
    }

    fn create_tag(
        &mut self,
        group_id: &str,
        name: &str,
        order: u32,
        max_tags: usize,
    ) -> Change<MallTag> {
        check_name("name", name)?;
        let gseq = self
            .group_seq(group_id)
            .ok_or_else(|| SimError::not_found(format!("no tag group {group_id}")))?;
        let group_id = self.groups[&gseq].id.clone();
        if let Some(t) = self.tag_named(&group_id, name) {
            return Err(SimError::name_taken(
                t.id.as_str(),
                format!("tag group {group_id} has a tag named {name:?}"),
            ));
        }
        if self.tags.len() >= max_tags {
            return Err(SimError::new(
                400,
                "limit_exceeded",
                format!("the mall holds at most {max_tags} tags"),
            ));
        }
        let seq = self.next_seq();
        let tag = MallTag {
            id: MallTagId::new_unchecked(format!("t_{seq}")),
            group_id,
            name: name.to_owned(),
            order,
        };
        self.tags.insert(seq, tag.clone());
        Ok((tag.clone(), vec![MallEvent::TagCreated { tag }]))
    }

    fn update_tag(
        &mut self,
        id: &str,
        name: Option<&str>,
        order: Option<u32>,
        group_id: Option<&str>,
    ) -> Change<MallTag> {
        if let Some(name) = name {
            check_name("name", name)?;
        }
        let seq = self
            .tag_seq(id)
            .ok_or_else(|| SimError::not_found(format!("no tag {id}")))?;
        let current = self.tags[&seq].clone();
        let target_group = match group_id {
            Some(g) => {
                let gseq = self
                    .group_seq(g)
                    .ok_or_else(|| SimError::not_found(format!("no tag group {g}")))?;
                self.groups[&gseq].id.clone()
            }
            None => current.group_id.clone(),
        };
        let target_name = name.unwrap_or(&current.name);
        if let Some(other) = self
            .tag_named(&target_group, target_name)
            .filter(|t| t.id != current.id)
        {
            return Err(SimError::name_taken(
                other.id.as_str(),
                format!("tag group {target_group} has a tag named {target_name:?}"),
            ));
        }
        let tag = MallTag {
            id: current.id.clone(),
            group_id: target_group,
            name: target_name.to_owned(),
            order: order.unwrap_or(current.order),
        };
        self.tags.insert(seq, tag.clone());
        let events = if tag == current {
            vec![]
        } else {
            vec![MallEvent::TagUpdated { tag: tag.clone() }]
        };
        Ok((tag, events))
    }

    fn delete_tag(&mut self, id: &str) -> Change<()> {
        let seq = self
            .tag_seq(id)
            .ok_or_else(|| SimError::not_found(format!("no tag {id}")))?;
        let tag = self.tags.remove(&seq).expect("looked up above");
        for member in self.members.values_mut() {
            member.tag_ids.retain(|t| t != &tag.id);
        }
        Ok((
            (),
            vec![MallEvent::TagDeleted {
                tag_id: tag.id,
                group_id: tag.group_id,
            }],
        ))
    }

    fn create_member(&mut self, new: NewMember) -> Change<MallMember> {
        if let Some(e) = &new.external_userid {
            ExternalUserId::parse(e.as_str()).map_err(|e| SimError::invalid(e.to_string()))?;
        }
        let seq = self.next_seq();
        let member = MallMember {
            id: MemberId::new_unchecked(format!("m_{seq}")),
            unionid: None,
            external_userid: None,
            mobile: None,
            tag_ids: Vec::new(),
        };
        self.members.insert(seq, member);
        let bound = new.unionid.is_some() || new.external_userid.is_some();
        let (member, events) = self.bind(seq, new)?;
        Ok((member, if bound { events } else { vec![] }))
    }

    fn bind_member(&mut self, id: &str, new: NewMember) -> Change<MallMember> {
        let seq = self
            .member_seq(id)
            .ok_or_else(|| SimError::not_found(format!("no member {id}")))?;
        self.bind(seq, new)
    }

    fn bind(&mut self, seq: u64, new: NewMember) -> Change<MallMember> {
        let external = new
            .external_userid
            .map(ExternalUserId::parse)
            .transpose()
            .map_err(|e| SimError::invalid(e.to_string()))?;
        let member = self.members.get_mut(&seq).expect("caller checked");
        if new.unionid.is_some() {
            member.unionid = new.unionid;
        }
        if external.is_some() {
            member.external_userid = external;
        }
        if new.mobile.is_some() {
            member.mobile = new.mobile;
        }
        let member = member.clone();
        let event = MallEvent::MemberBound {
            member_id: member.id.clone(),
            unionid: member.unionid.clone(),
            external_userid: member.external_userid.clone(),
            mobile: member.mobile.clone(),
        };
        Ok((member, vec![event]))
    }

    fn change_member_tags(
        &mut self,
        id: &str,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Change<MallMember> {
        if add.len() + remove.len() > MAX_IDS_PER_MEMBER_CALL {
            return Err(SimError::invalid(format!(
                "at most {MAX_IDS_PER_MEMBER_CALL} tag ids in add and remove together"
            )));
        }
        if let Some(both) = add.iter().find(|a| remove.contains(a)) {
            return Err(SimError::invalid(format!(
                "tag {both} is both added and removed"
            )));
        }
        let seq = self
            .member_seq(id)
            .ok_or_else(|| SimError::not_found(format!("no member {id}")))?;
        let mut unknown: Vec<String> = Vec::new();
        for t in add.iter().chain(&remove) {
            if self.tag_seq(t).is_none() && !unknown.contains(t) {
                unknown.push(t.clone());
            }
        }
        if !unknown.is_empty() {
            let mut e = SimError::new(
                400,
                "unknown_tag",
                format!("no such tags: {}", unknown.join(", ")),
            );
            e.error.unknown_ids = unknown;
            return Err(e);
        }
        let member = self.members.get_mut(&seq).expect("looked up above");
        let mut added = Vec::new();
        for t in add {
            let t = MallTagId::new_unchecked(t);
            if !member.tag_ids.contains(&t) && !added.contains(&t) {
                member.tag_ids.push(t.clone());
                added.push(t);
            }
        }
        let mut removed = Vec::new();
        for t in remove {
            let t = MallTagId::new_unchecked(t);
            if member.tag_ids.contains(&t) {
                member.tag_ids.retain(|x| x != &t);
                removed.push(t);
            }
        }
        let member = member.clone();
        let events = if added.is_empty() && removed.is_empty() {
            vec![]
        } else {
            vec![MallEvent::MemberTagsChanged {
                member_id: member.id.clone(),
                added,
                removed,
            }]
        };
        Ok((member, events))
    }

    fn members_page(&self, after: u64, limit: u32) -> (Vec<MallMember>, Option<String>) {
        let page: Vec<(u64, MallMember)> = self
            .members
            .range(after + 1..)
            .take(limit as usize)
            .map(|(s, m)| (*s, m.clone()))
            .collect();
        let next = page
            .last()
            .map(|(last, _)| *last)
            .filter(|last| self.members.range(last + 1..).next().is_some())
            .map(encode_cursor);
        (page.into_iter().map(|(_, m)| m).collect(), next)
    }

    /// Takes one request from `token`'s bucket, or says how many seconds to wait.
    fn rate_check(&mut self, token: &str) -> Option<u64> {
        let rate = f64::from(self.rate_limit?.max(1));
        let now = Instant::now();
        let bucket = self.buckets.entry(token.to_owned()).or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Some((wait.ceil() as u64).max(1))
        }
    }
}

/// Cursors are opaque to clients; here, the last member's sequence number in hex.
fn encode_cursor(seq: u64) -> String {
    format!("cur_{}", hex::encode(seq.to_be_bytes()))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let bytes = hex::decode(cursor.strip_prefix("cur_")?).ok()?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------
// Webhooks.
// ---------------------------------------------------------------------------------------

struct Outgoing {
    event_id: String,
    event_type: String,
    body: Bytes,
    value: Value,
}

fn event_json(event: &MallEvent) -> (&str, Value) {
    let data = match event {
        MallEvent::TagGroupCreated { group } | MallEvent::TagGroupUpdated { group } => {
            json!({ "group": group })
        }
        MallEvent::TagGroupDeleted { group_id } => json!({ "group_id": group_id }),
        MallEvent::TagCreated { tag } | MallEvent::TagUpdated { tag } => json!({ "tag": tag }),
        MallEvent::TagDeleted { tag_id, group_id } => {
            json!({ "tag_id": tag_id, "group_id": group_id })
        }
        MallEvent::MemberTagsChanged {
            member_id,
            added,
            removed,
        } => json!({ "member_id": member_id, "added": added, "removed": removed }),
        MallEvent::MemberBound {
            member_id,
            unionid,
            external_userid,
            mobile,
        } => json!({
            "member_id": member_id, "unionid": unionid,
            "external_userid": external_userid, "mobile": mobile,
        }),
        MallEvent::Unknown { .. } => json!({}),
    };
    (event.type_name(), data)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for a simulator.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The armed hold (if any) for this request at `phase`, taken off the list.
    fn take_hold(&self, phase: Phase, request: &Value) -> Option<Trap> {
        hold::take_trap(
            &mut self.lock().holds,
            |k| route_matches(k, request),
            phase,
            request,
        )
    }

    /// Queues one signed webhook per event, in order, under the state lock.
    fn emit(&self, st: &mut State, events: Vec<MallEvent>, origin: Option<&str>) {
        let occurred_at = self.config.clock.now().to_rfc3339();
        for event in events {
            let (event_type, data) = event_json(&event);
            let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
            let value = json!({
                "event_id": event_id,
                "type": event_type,
                "occurred_at": occurred_at,
                "origin_request_id": origin,
                "data": data,
            });
            let body = Bytes::from(value.to_string());
            st.events.push(value.clone());
            self.pending.fetch_add(1, Ordering::SeqCst);
            let out = Outgoing {
                event_id,
                event_type: event_type.to_owned(),
                body,
                value,
            };
            if self.outbox.send(out).is_err() {
                // The dispatcher is gone (the simulator is stopping).
                self.settle_one();
            }
        }
    }

    fn settle_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.settled.notify_waiters();
        }
    }

    fn log_delivery(
        &self,
        out: &Outgoing,
        attempt: u32,
        url: Option<String>,
        outcome: Result<u16, String>,
        dropped: bool,
    ) {
        let at = self.config.clock.now();
        let (status, error) = match outcome {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        self.lock().deliveries.push(WebhookDelivery {
            at,
            event_id: out.event_id.clone(),
            event_type: out.event_type.clone(),
            body: out.value.clone(),
            attempt,
            url,
            status,
            error,
            dropped,
        });
    }

    /// Sends one copy of an event, retrying on non-2xx and timeouts with doubling backoff.
    async fn deliver(&self, out: &Outgoing) {
        let retry = &self.config.webhook_retry;
        for attempt in 1..=retry.max_attempts.max(1) {
            let (url, secret) = {
                let st = self.lock();
                (st.webhook_url.clone(), st.webhook_secret.clone())
            };
            let Some(url) = url else {
                self.log_delivery(
                    out,
                    attempt,
                    None,
                    Err("no webhook URL configured".into()),
                    false,
                );
                return;
            };
            // Signed per try: the timestamp must be fresh for tagsync's replay window.
            let ts = self.config.clock.now().secs();
            let signature = webhook::sign(secret.as_bytes(), ts, &out.body);
            let sent = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Mall-Event-Id", &out.event_id)
                .header("X-Mall-Timestamp", ts.to_string())
                .header("X-Mall-Signature", signature)
                .body(out.body.clone())
                .timeout(retry.timeout)
                .send()
                .await;
            let outcome = sent
                .map(|r| r.status().as_u16())
                .map_err(|e| e.without_url().to_string());
            let ok = matches!(outcome, Ok(200..=299));
            self.log_delivery(out, attempt, Some(url), outcome, false);
            if ok {
                return;
            }
            if attempt < retry.max_attempts {
                let backoff = retry
                    .first_backoff
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(retry.max_backoff);
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// Decides, under the fault settings, whether an event is dropped, how many copies go
    /// out, and whether it may be held back behind its successor.
    fn fate(&self, can_hold: bool) -> Fate {
        let mut st = self.lock();
        let f = &mut st.faults;
        let drop = take(&mut f.drop_webhooks_next) || chance(f.drop_webhook_rate);
        let duplicate = take(&mut f.duplicate_webhooks_next) || chance(f.duplicate_webhook_rate);
        let hold = !drop && can_hold && take(&mut f.reorder_webhooks_next);
        Fate {
            drop,
            copies: if duplicate { 2 } else { 1 },
            hold,
        }
    }

    async fn send_copies(&self, out: &Outgoing, copies: u32) {
        for _ in 0..copies {
            self.deliver(out).await;
        }
        self.settle_one();
    }
}

struct Fate {
    drop: bool,
    copies: u32,
    hold: bool,
}

fn take(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

fn chance(p: f64) -> bool {
    p > 0.0 && rand::random::<f64>() < p
}

/// The one delivery task: events go out in the order they happened, unless a fault says
/// otherwise.
async fn dispatch(shared: Arc<Shared>, mut inbox: mpsc::UnboundedReceiver<Outgoing>) {
    let mut held: Option<(Outgoing, u32)> = None;
    loop {
        let next = if held.is_some() {
            match tokio::time::timeout(REORDER_HOLD, inbox.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    // Nothing followed: the held event goes out alone.
                    if let Some((out, copies)) = held.take() {
                        shared.send_copies(&out, copies).await;
                    }
                    continue;
                }
            }
        } else {
            inbox.recv().await
        };
        let Some(out) = next else { break };
        let fate = shared.fate(held.is_none());
        if fate.drop {
            shared.log_delivery(&out, 0, None, Err("dropped (fault)".into()), true);
            shared.settle_one();
            continue;
        }
        if fate.hold {
            held = Some((out, fate.copies));
            continue;
        }
        shared.send_copies(&out, fate.copies).await;
        if let Some((earlier, copies)) = held.take() {
            shared.send_copies(&earlier, copies).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP: the REST API of §3.
// ---------------------------------------------------------------------------------------

/// What the API answers.
struct Answer {
    status: u16,
    body: Option<Value>,
    retry_after: Option<u64>,
    replayed: bool,
}

impl Answer {
    fn ok(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            retry_after: None,
            replayed: false,
        }
    }
    fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            retry_after: None,
            replayed: false,
        }
    }
    fn error(e: SimError) -> Self {
        Self {
            status: e.status,
            body: Some(e.body()),
            retry_after: None,
            replayed: false,
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = match self.body {
            Some(body) => (status, axum::Json(body)).into_response(),
            None => status.into_response(),
        };
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        if self.replayed {
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        resp
    }
}

impl From<SimError> for Answer {
    fn from(e: SimError) -> Self {
        Self::error(e)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/control/state", get(control_state))
        .route("/control/log", get(control_log).delete(control_clear_log))
        .route(
            "/control/faults",
            get(control_faults).patch(control_set_faults),
        )
        .route("/control/rate-limit", put(control_rate_limit))
        .route("/control/webhook", put(control_webhook))
        .route("/control/tag-groups", post(control_create_group))
        .route(
            "/control/tag-groups/{id}",
            patch(control_update_group).delete(control_delete_group),
        )
        .route("/control/tags", post(control_create_tag))
        .route(
            "/control/tags/{id}",
            patch(control_update_tag).delete(control_delete_tag),
        )
        .route("/control/members", post(control_create_member))
        .route("/control/members/{id}/bind", post(control_bind_member))
        .route("/control/members/{id}/tags", post(control_member_tags))
        .route("/control/holds", post(control_hold))
        .route("/control/holds/{id}/wait", post(control_hold_wait))
        .route("/control/holds/{id}/release", post(control_hold_release))
        .fallback(api)
        .with_state(shared)
}

async fn api(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let held = json!({"method": method.as_str(), "path": uri.path(), "body": logged_body(&body)});
    if let Some(trap) = shared.take_hold(Phase::Before, &held) {
        trap.spring(held.clone()).await;
    }
    let (answer, delay_ms, after) = {
        let mut st = shared.lock();
        let answer = shared.handle(&mut st, &method, &uri, token, key.as_deref(), &body);
        st.requests.push(ApiRequestLog {
            at: shared.config.clock.now(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            idempotency_key: key,
            request: logged_body(&body),
            status: answer.status,
            response: answer.body.clone(),
            retry_after: answer.retry_after,
            replayed: answer.replayed,
        });
        let after = hold::take_trap(
            &mut st.holds,
            |k| route_matches(k, &held),
            Phase::After,
            &held,
        );
        (answer, st.faults.delay_ms, after)
    };
    if let Some(trap) = after {
        trap.spring(held).await;
    }
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    answer.into_response()
}

/// Whether a hold's (method, path pattern) names this request (`{"method", "path", …}`).
fn route_matches((method, pattern): &(String, String), request: &Value) -> bool {
    let path = request["path"].as_str().unwrap_or_default();
    let path_ok = match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    };
    path_ok && request["method"].as_str() == Some(method.as_str())
}

fn logged_body(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    )
}

/// The routes of §3.
enum Route<'a> {
    ListGroups,
    CreateGroup,
    UpdateGroup(&'a str),
    DeleteGroup(&'a str),
    CreateTag,
    UpdateTag(&'a str),
    DeleteTag(&'a str),
    ListMembers,
    LookupMember,
    GetMember(&'a str),
    ChangeMemberTags(&'a str),
    BatchMemberTags,
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, SimError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.as_str();
    let route = match (m, segments.as_slice()) {
        ("GET", ["tag-groups"]) => Route::ListGroups,
        ("POST", ["tag-groups"]) => Route::CreateGroup,
        ("PATCH", ["tag-groups", id]) => Route::UpdateGroup(id),
        ("DELETE", ["tag-groups", id]) => Route::DeleteGroup(id),
        ("POST", ["tags"]) => Route::CreateTag,
        ("PATCH", ["tags", id]) => Route::UpdateTag(id),
        ("DELETE", ["tags", id]) => Route::DeleteTag(id),
        ("GET", ["members"]) => Route::ListMembers,
        ("GET", ["members:lookup"]) => Route::LookupMember,
        ("GET", ["members", id]) => Route::GetMember(id),
        ("POST", ["members", id, "tags"]) => Route::ChangeMemberTags(id),
        ("POST", ["members:batch-tags"]) => Route::BatchMemberTags,
        (_, ["members:batch-tags"])
        | (_, ["tag-groups"] | ["tag-groups", _] | ["tags"] | ["tags", _] | ["members"])
        | (_, ["members:lookup"] | ["members", _] | ["members", _, "tags"]) => {
            return Err(SimError::new(
                405,
                "invalid_request",
                format!("{m} is not allowed on {path}"),
            ));
        }
        _ => return Err(SimError::not_found(format!("no endpoint {path}"))),
    };
    Ok(route)
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    )
}

/// The answers the contract stores against an idempotency key.
fn is_final(status: u16) -> bool {
    matches!(status, 200..=299 | 400 | 404 | 409)
}

impl Shared {
    /// Handles one API request under the state lock: auth, rate limit, injected faults,
    /// idempotency, then the operation itself.
    fn handle(
        &self,
        st: &mut State,
        method: &Method,
        uri: &Uri,
        token: Option<&str>,
        key: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let Some(token) = token.filter(|t| self.config.tokens.iter().any(|ok| ok == t)) else {
            return SimError::new(401, "unauthorized", "missing or unknown bearer token").into();
        };
        let spent = if take(&mut st.faults.rate_limited_next) {
            Some(1)
        } else {
            st.rate_check(token)
        };
        if let Some(secs) = spent {
            let mut answer = Answer::error(SimError::new(
                429,
                "rate_limited",
                "too many requests for this token",
            ));
            answer.retry_after = Some(secs);
            return answer;
        }
        if take(&mut st.faults.fail_next) || chance(st.faults.fail_rate) {
            return SimError::new(500, "internal", "injected fault").into();
        }
        let route = match route(method, uri.path()) {
            Ok(Route::BatchMemberTags) if st.batch_endpoint == BatchEndpoint::NotFound => {
                return SimError::not_found(format!("no endpoint {}", uri.path())).into();
            }
            Ok(Route::BatchMemberTags) if st.batch_endpoint == BatchEndpoint::MethodNotAllowed => {
                return SimError::new(
                    405,
                    "invalid_request",
                    format!("{method} is not allowed on {}", uri.path()),
                )
                .into();
            }
            Ok(route) => route,
            Err(e) => return e.into(),
        };
        if !is_write(method) {
            return match self.read(st, route, uri.query().unwrap_or("")) {
                Ok(answer) => answer,
                Err(e) => e.into(),
            };
        }

        let key = match key {
            None => {
                return SimError::invalid("the Idempotency-Key header is required on writes")
                    .into();
            }
            Some(k)
                if k.is_empty()
                    || k.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS
                    || !k.chars().all(|c| c.is_ascii_graphic()) =>
            {
                return SimError::invalid(format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
                ))
                .into();
            }
            Some(k) => k,
        };
        let now = self.config.clock.now();
        let ttl_ms = i64::try_from(self.config.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
        let record = (token.to_owned(), key.to_owned());
        match st.idempotency.get(&record) {
            Some(stored) if now.millis() - stored.at.millis() < ttl_ms => {
                return Answer {
                    status: stored.status,
                    body: stored.body.clone(),
                    retry_after: None,
                    replayed: true,
                };
            }
            Some(_) => {
                st.idempotency.remove(&record);
            }
            None => {}
        }
        let (answer, events) = match self.write(st, route, body) {
            Ok((answer, events)) => (answer, events),
            Err(e) => (Answer::error(e), vec![]),
        };
        if is_final(answer.status) {
            st.idempotency.insert(
                record,
                StoredAnswer {
                    status: answer.status,
                    body: answer.body.clone(),
                    at: now,
                },
            );
        }
        self.emit(st, events, Some(key));
        answer
    }

    fn read(&self, st: &State, route: Route<'_>, query: &str) -> Result<Answer, SimError> {
        let params = parse_query(query)?;
        match route {
            Route::ListGroups => Ok(Answer::ok(200, json!({ "groups": st.library() }))),
            Route::ListMembers => {
                let limit = match params.get("limit").filter(|v| !v.is_empty()) {
                    None => DEFAULT_PAGE_LIMIT,
                    Some(v) => v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
                        .ok_or_else(|| {
                            SimError::invalid(format!("limit must be 1 to {MAX_PAGE_LIMIT}"))
                        })?,
                };
                let after = match params.get("cursor").filter(|v| !v.is_empty()) {
                    None => 0,
                    Some(c) => {
                        decode_cursor(c).ok_or_else(|| SimError::invalid("cursor is not valid"))?
                    }
                };
                let (members, next_cursor) = st.members_page(after, limit);
                Ok(Answer::ok(
                    200,
                    json!({ "members": members, "next_cursor": next_cursor }),
                ))
            }
            Route::LookupMember => {
                let given: Vec<(&str, &String)> = ["unionid", "external_userid", "mobile"]
                    .into_iter()
                    .filter_map(|k| params.get(k).filter(|v| !v.is_empty()).map(|v| (k, v)))
                    .collect();
                let [(field, value)] = given.as_slice() else {
                    return Err(SimError::invalid(
                        "give exactly one of unionid, external_userid, mobile",
                    ));
                };
                let found = st.members.values().find(|m| match *field {
                    "unionid" => m.unionid.as_ref() == Some(*value),
                    "external_userid" => {
                        m.external_userid.as_ref().map(|e| e.as_str()) == Some(value.as_str())
                    }
                    _ => m.mobile.as_ref() == Some(*value),
                });
                match found {
                    Some(m) => Ok(Answer::ok(200, json!(m))),
                    None => Err(SimError::not_found(format!("no member with that {field}"))),
                }
            }
            Route::GetMember(id) => st
                .member_seq(id)
                .map(|seq| Answer::ok(200, json!(st.members[&seq])))
                .ok_or_else(|| SimError::not_found(format!("no member {id}"))),
            _ => Err(SimError::invalid("not a read")),
        }
    }

    fn write(
        &self,
        st: &mut State,
        route: Route<'_>,
        body: &[u8],
    ) -> Result<(Answer, Vec<MallEvent>), SimError> {
        let max_tags = self.config.max_tags;
        let (answer, events) = match route {
            Route::CreateGroup => {
                let b = Fields::parse(body, &["name", "order"])?;
                let (g, ev) = st.create_group(&b.name("name")?, b.order()?.unwrap_or(0))?;
                (Answer::ok(201, json!(g)), ev)
            }
            Route::UpdateGroup(id) => {
                let b = Fields::parse(body, &["name", "order"])?;
                let (g, ev) = st.update_group(id, b.opt_name("name")?.as_deref(), b.order()?)?;
                (Answer::ok(200, json!(g)), ev)
            }
            Route::DeleteGroup(id) => {
                let ((), ev) = st.delete_group(id)?;
                (Answer::no_content(), ev)
            }
            Route::CreateTag => {
                let b = Fields::parse(body, &["group_id", "name", "order"])?;
                let group_id = b.id("group_id")?;
                let (t, ev) = st.create_tag(
                    &group_id,
                    &b.name("name")?,
                    b.order()?.unwrap_or(0),
                    max_tags,
                )?;
                (Answer::ok(201, json!(t)), ev)
            }
            Route::UpdateTag(id) => {
                let b = Fields::parse(body, &["name", "order", "group_id"])?;
                let group_id = b.opt_id("group_id")?;
                let (t, ev) = st.update_tag(
                    id,
                    b.opt_name("name")?.as_deref(),
                    b.order()?,
                    group_id.as_deref(),
                )?;
                (Answer::ok(200, json!(t)), ev)
            }
            Route::DeleteTag(id) => {
                let ((), ev) = st.delete_tag(id)?;
                (Answer::no_content(), ev)
            }
            Route::ChangeMemberTags(id) => {
                let b = Fields::parse(body, &["add", "remove"])?;
                let (m, ev) = st.change_member_tags(id, b.ids("add")?, b.ids("remove")?)?;
                (Answer::ok(200, json!(m)), ev)
            }
            Route::BatchMemberTags => {
                let items = batch_items(body)?;
                // Each item exactly as `POST /members/{id}/tags` would apply it, on its own.
                let mut results = Vec::with_capacity(items.len());
                let mut events = Vec::new();
                for (member_id, add, remove) in items {
                    match st.change_member_tags(&member_id, add, remove) {
                        Ok((m, ev)) => {
                            events.extend(ev);
                            results
                                .push(json!({"member_id": member_id, "status": 200, "member": m}));
                        }
                        Err(e) => results.push(json!({
                            "member_id": member_id,
                            "status": e.status,
                            "error": e.body()["error"],
                        })),
                    }
                }
                (Answer::ok(200, json!({ "results": results })), events)
            }
            _ => return Err(SimError::invalid("not a write")),
        };
        Ok((answer, events))
    }
}

/// The items of a `POST /members:batch-tags` body: 1..=100, each member at most once, each
/// naming its member and at most 100 tag ids (checked per item when applied).
fn batch_items(body: &[u8]) -> Result<Vec<(String, Vec<String>, Vec<String>)>, SimError> {
    let b = Fields::parse(body, &["items"])?;
    let Some(Value::Array(items)) = b.0.get("items") else {
        return Err(SimError::invalid("items must be an array"));
    };
    if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
        return Err(SimError::invalid(format!(
            "items must hold 1 to {MAX_BATCH_ITEMS} members ({} given)",
            items.len()
        )));
    }
    let mut out: Vec<(String, Vec<String>, Vec<String>)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let bytes = serde_json::to_vec(item).unwrap_or_default();
        let f = Fields::parse(&bytes, &["member_id", "add", "remove"])
            .map_err(|e| SimError::invalid(format!("items[{i}]: {}", e.error.message)))?;
        let member = f
            .id("member_id")
            .map_err(|e| SimError::invalid(format!("items[{i}]: {}", e.error.message)))?;
        if out.iter().any(|(m, _, _)| *m == member) {
            return Err(SimError::invalid(format!(
                "items[{i}]: member {member} is listed twice"
            )));
        }
        let add = f.ids("add")?;
        let remove = f.ids("remove")?;
        out.push((member, add, remove));
    }
    Ok(out)
}

fn parse_query(query: &str) -> Result<HashMap<String, String>, SimError> {
    let uri: Uri = format!("/?{query}")
        .parse()
        .map_err(|_| SimError::invalid("malformed query string"))?;
    Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|_| SimError::invalid("malformed query string"))
}

/// A JSON object request body, checked field by field. Unknown fields are refused: a
/// misspelt field would otherwise be silently ignored and the write would do the wrong thing.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8], allowed: &[&str]) -> Result<Self, SimError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| SimError::invalid(format!("body is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(SimError::invalid("body must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(SimError::invalid(format!("unknown field {unknown:?}")));
        }
        Ok(Self(map))
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, SimError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(SimError::invalid(format!("{key} must be a string"))),
        }
    }

    fn opt_name(&self, key: &str) -> Result<Option<String>, SimError> {
        let name = self.opt_string(key)?;
        if let Some(name) = &name {
            check_name(key, name)?;
        }
        Ok(name)
    }

    fn name(&self, key: &str) -> Result<String, SimError> {
        self.opt_name(key)?
            .ok_or_else(|| SimError::invalid(format!("{key} is required")))
    }

    fn opt_id(&self, key: &str) -> Result<Option<String>, SimError> {
        match self.opt_string(key)? {
            Some(id) if id.is_empty() => Err(SimError::invalid(format!("{key} must not be empty"))),
            other => Ok(other),
        }
    }

    fn id(&self, key: &str) -> Result<String, SimError> {
        self.opt_id(key)?
            .ok_or_else(|| SimError::invalid(format!("{key} is required")))
    }

    fn order(&self) -> Result<Option<u32>, SimError> {
        match self.0.get("order") {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| SimError::invalid("order must be an integer from 0 to 4294967295")),
        }
    }

    fn ids(&self, key: &str) -> Result<Vec<String>, SimError> {
        let Some(value) = self.0.get(key) else {
            return Ok(Vec::new());
        };
        let bad = || SimError::invalid(format!("{key} must be an array of tag ids"));
        let items = value.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(bad)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// HTTP: the control surface.
// ---------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct ControlQuery {
    silent: bool,
}

fn control_answer<T: Serialize>(status: u16, result: Result<T, SimError>) -> Response {
    match result {
        Ok(v) => Answer::ok(status, json!(v)).into_response(),
        Err(e) => Answer::error(e).into_response(),
    }
}

fn operator(shared: &Shared, q: ControlQuery) -> Operator<'_> {
    Operator {
        shared,
        silent: q.silent,
    }
}

#[derive(Deserialize)]
struct ControlHoldBody {
    method: String,
    path: String,
    #[serde(flatten)]
    hold: ControlHold,
}

async fn control_hold(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let b: ControlHoldBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return Answer::error(SimError::invalid(e.to_string())).into_response(),
    };
    let (trap, hold) = hold::arm(b.hold.phase, b.hold.matching);
    shared
        .lock()
        .holds
        .push(((b.method.to_ascii_uppercase(), b.path), trap));
    let id = shared.control_holds.add(hold);
    Answer::ok(201, json!({ "id": id })).into_response()
}

async fn control_hold_wait(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    let wait: ControlWait = if body.is_empty() {
        ControlWait::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => return Answer::error(SimError::invalid(e.to_string())).into_response(),
        }
    };
    let result = shared
        .control_holds
        .wait(id, wait.within())
        .await
        .map_err(SimError::not_found);
    control_answer(200, result)
}

async fn control_hold_release(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<u64>,
) -> Response {
    let result = shared
        .control_holds
        .release(id)
        .map(|()| json!({ "released": id }))
        .map_err(SimError::not_found);
    control_answer(200, result)
}

async fn control_state(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let st = shared.lock();
    let members: Vec<&MallMember> = st.members.values().collect();
    Answer::ok(200, json!({ "groups": st.library(), "members": members })).into_response()
}

async fn control_log(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let st = shared.lock();
    Answer::ok(
        200,
        json!({ "requests": st.requests, "webhooks": st.deliveries, "events": st.events }),
    )
    .into_response()
}

async fn control_clear_log(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let mut st = shared.lock();
    st.requests.clear();
    st.deliveries.clear();
    st.events.clear();
    Answer::no_content().into_response()
}

async fn control_faults(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    control_answer(200, Ok(shared.lock().faults.clone()))
}

/// Merges the given fields into the current faults.
async fn control_set_faults(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let result = (|| {
        let mut st = shared.lock();
        let mut current = serde_json::to_value(&st.faults).unwrap_or_default();
        let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(&body) else {
            return Err(SimError::invalid(
                "body must be a JSON object of fault settings",
            ));
        };
        for (k, v) in changes {
            if current.get(&k).is_none() {
                return Err(SimError::invalid(format!("unknown fault {k:?}")));
            }
            current[k] = v;
        }
        let faults: Faults =
            serde_json::from_value(current).map_err(|e| SimError::invalid(e.to_string()))?;
        st.faults = faults.clone();
        Ok(faults)
    })();
    control_answer(200, result)
}

async fn control_rate_limit(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        per_sec: Option<u32>,
    }
    let result = serde_json::from_slice::<Body>(&body)
        .map_err(|e| SimError::invalid(e.to_string()))
        .map(|b| {
            let mut st = shared.lock();
            st.rate_limit = b.per_sec;
            st.buckets.clear();
            json!({ "per_sec": b.per_sec })
        });
    control_answer(200, result)
}

async fn control_webhook(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        url: Option<String>,
        secret: Option<String>,
    }
    let result = serde_json::from_slice::<Body>(&body)
        .map_err(|e| SimError::invalid(e.to_string()))
        .map(|b| {
            let mut st = shared.lock();
            st.webhook_url = b.url;
            if let Some(secret) = b.secret {
                st.webhook_secret = secret;
            }
            // The secret is write-only here too.
            json!({ "url": st.webhook_url })
        });
    control_answer(200, result)
}

async fn control_create_group(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = Fields::parse(&body, &["name", "order"])
        .and_then(|b| operator(&shared, q).create_group(&b.name("name")?, b.order()?.unwrap_or(0)));
    control_answer(201, result)
}

async fn control_update_group(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = Fields::parse(&body, &["name", "order"]).and_then(|b| {
        let patch = GroupPatch {
            name: b.opt_name("name")?,
            order: b.order()?,
        };
        operator(&shared, q).update_group(&MallGroupId::new_unchecked(id), &patch)
    });
    control_answer(200, result)
}

async fn control_delete_group(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<ControlQuery>,
) -> Response {
    match operator(&shared, q).delete_group(&MallGroupId::new_unchecked(id)) {
        Ok(()) => Answer::no_content().into_response(),
        Err(e) => Answer::error(e).into_response(),
    }
}

async fn control_create_tag(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = Fields::parse(&body, &["group_id", "name", "order"]).and_then(|b| {
        operator(&shared, q).create_tag(
            &MallGroupId::new_unchecked(b.id("group_id")?),
            &b.name("name")?,
            b.order()?.unwrap_or(0),
        )
    });
    control_answer(201, result)
}

async fn control_update_tag(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = Fields::parse(&body, &["name", "order", "group_id"]).and_then(|b| {
        let patch = TagPatch {
            name: b.opt_name("name")?,
            order: b.order()?,
            group_id: b.opt_id("group_id")?.map(MallGroupId::new_unchecked),
        };
        operator(&shared, q).update_tag(&MallTagId::new_unchecked(id), &patch)
    });
    control_answer(200, result)
}

async fn control_delete_tag(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<ControlQuery>,
) -> Response {
    match operator(&shared, q).delete_tag(&MallTagId::new_unchecked(id)) {
        Ok(()) => Answer::no_content().into_response(),
        Err(e) => Answer::error(e).into_response(),
    }
}

fn new_member(body: &[u8]) -> Result<NewMember, SimError> {
    if body.is_empty() {
        return Ok(NewMember::default());
    }
    serde_json::from_slice(body).map_err(|e| SimError::invalid(e.to_string()))
}

async fn control_create_member(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = new_member(&body).and_then(|m| operator(&shared, q).create_member(m));
    control_answer(201, result)
}

async fn control_bind_member(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = new_member(&body)
        .and_then(|m| operator(&shared, q).bind_member(&MemberId::new_unchecked(id), m));
    control_answer(200, result)
}

async fn control_member_tags(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<ControlQuery>,
    body: Bytes,
) -> Response {
    let result = Fields::parse(&body, &["add", "remove"]).and_then(|b| {
        let add = b.ids("add")?;
        let remove = b.ids("remove")?;
        operator(&shared, q).run(|st| st.change_member_tags(&id, add, remove))
    });
    control_answer(200, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            groups: BTreeMap::new(),
            tags: BTreeMap::new(),
            members: BTreeMap::new(),
            next_seq: 1,
            idempotency: HashMap::new(),
            buckets: HashMap::new(),
            rate_limit: Some(2),
            batch_endpoint: BatchEndpoint::Offered,
            faults: Faults::default(),
            webhook_url: None,
            webhook_secret: String::new(),
            requests: Vec::new(),
            deliveries: Vec::new(),
            events: Vec::new(),
            holds: Vec::new(),
        }
    }

    #[test]
    fn ids_are_never_reused_and_compare_exactly() {
        let mut st = state();
        let (g, _) = st.create_group("A", 0).unwrap();
        st.delete_group(g.id.as_str()).unwrap();
        let (g2, _) = st.create_group("A", 0).unwrap();
        assert_ne!(g.id, g2.id);
        assert_eq!(seq_of("g_", "g_2"), Some(2));
        assert_eq!(seq_of("g_", "g_02"), None);
        assert_eq!(seq_of("g_", "t_2"), None);
    }

    #[test]
    fn names_are_compared_exactly_and_limited_to_30_characters() {
        let mut st = state();
        let (g, _) = st.create_group("VIP", 0).unwrap();
        assert!(st.create_group("vip", 0).is_ok());
        assert!(st.create_group("VIP ", 0).is_ok());
        let e = st.create_group("VIP", 1).unwrap_err();
        assert_eq!(
            (e.status, e.error.existing_id.as_deref()),
            (409, Some(g.id.as_str()))
        );
        assert!(st.create_group(&"一".repeat(30), 0).is_ok());
        assert_eq!(
            st.create_group(&"一".repeat(31), 0).unwrap_err().status,
            400
        );
        assert_eq!(st.create_group("", 0).unwrap_err().status, 400);
    }

    #[test]
    fn tag_names_are_unique_within_their_group_only() {
        let mut st = state();
        let (a, _) = st.create_group("A", 0).unwrap();
        let (b, _) = st.create_group("B", 0).unwrap();
        let (t, _) = st.create_tag(a.id.as_str(), "VIP", 0, MAX_TAGS).unwrap();
        let (u, _) = st.create_tag(b.id.as_str(), "VIP", 0, MAX_TAGS).unwrap();
        let e = st
            .create_tag(a.id.as_str(), "VIP", 0, MAX_TAGS)
            .unwrap_err();
        assert_eq!(e.error.existing_id.as_deref(), Some(t.id.as_str()));
        // Moving a tag into a group with a same-named tag is refused too.
        let e = st
            .update_tag(u.id.as_str(), None, None, Some(a.id.as_str()))
            .unwrap_err();
        assert_eq!(e.error.existing_id.as_deref(), Some(t.id.as_str()));
        // Renaming a tag to its own name is no change and no event.
        let (_, events) = st
            .update_tag(t.id.as_str(), Some("VIP"), None, None)
            .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn the_tag_limit_is_enforced() {
        let mut st = state();
        let (g, _) = st.create_group("G", 0).unwrap();
        st.create_tag(g.id.as_str(), "a", 0, 2).unwrap();
        st.create_tag(g.id.as_str(), "b", 0, 2).unwrap();
        let e = st.create_tag(g.id.as_str(), "c", 0, 2).unwrap_err();
        assert_eq!((e.status, e.error.code.as_str()), (400, "limit_exceeded"));
    }

    #[test]
    fn deleting_a_group_takes_its_tags_off_members_with_one_event() {
        let mut st = state();
        let (g, _) = st.create_group("G", 0).unwrap();
        let (keep, _) = st.create_group("K", 0).unwrap();
        let (t, _) = st.create_tag(g.id.as_str(), "a", 0, MAX_TAGS).unwrap();
        let (k, _) = st.create_tag(keep.id.as_str(), "k", 0, MAX_TAGS).unwrap();
        let (m, _) = st.create_member(NewMember::default()).unwrap();
        st.change_member_tags(
            m.id.as_str(),
            vec![t.id.to_string(), k.id.to_string()],
            vec![],
        )
        .unwrap();
        let ((), events) = st.delete_group(g.id.as_str()).unwrap();
        assert_eq!(
            events,
            vec![MallEvent::TagGroupDeleted {
                group_id: g.id.clone()
            }]
        );
        assert_eq!(st.tags.len(), 1);
        assert_eq!(st.members.values().next().unwrap().tag_ids, vec![k.id]);
    }

    #[test]
    fn member_tag_changes_report_only_what_changed() {
        let mut st = state();
        let (g, _) = st.create_group("G", 0).unwrap();
        let (t, _) = st.create_tag(g.id.as_str(), "a", 0, MAX_TAGS).unwrap();
        let (m, _) = st.create_member(NewMember::external("wm1")).unwrap();
        let id = m.id.as_str();
        let (_, ev) = st
            .change_member_tags(id, vec![t.id.to_string()], vec![])
            .unwrap();
        assert_eq!(ev.len(), 1);
        let (_, ev) = st
            .change_member_tags(id, vec![t.id.to_string()], vec![])
            .unwrap();
        assert!(ev.is_empty(), "adding a present tag is a no-op");
        let (_, ev) = st
            .change_member_tags(id, vec![], vec![t.id.to_string()])
            .unwrap();
        assert_eq!(ev.len(), 1);
        let (_, ev) = st
            .change_member_tags(id, vec![], vec![t.id.to_string()])
            .unwrap();
        assert!(ev.is_empty(), "removing an absent tag is a no-op");
        let e = st
            .change_member_tags(id, vec!["t_999".into(), "x".into(), "x".into()], vec![])
            .unwrap_err();
        assert_eq!(e.error.unknown_ids, vec!["t_999", "x"]);
        let too_many: Vec<String> = (0..101).map(|_| t.id.to_string()).collect();
        assert_eq!(
            st.change_member_tags(id, too_many, vec![])
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("cur_zz"), None);
        assert_eq!(decode_cursor("42"), None);
        assert_eq!(decode_cursor("cur_00"), None);
    }

    #[test]
    fn the_rate_limit_answers_with_whole_seconds() {
        let mut st = state();
        assert_eq!(st.rate_check("a"), None);
        assert_eq!(st.rate_check("a"), None);
        assert_eq!(st.rate_check("a"), Some(1));
        // Per token.
        assert_eq!(st.rate_check("b"), None);
        st.rate_limit = None;
        assert_eq!(st.rate_check("a"), None);
    }

    #[test]
    fn routes_follow_the_contract() {
        assert!(matches!(
            route(&Method::GET, "/members:lookup"),
            Ok(Route::LookupMember)
        ));
        assert!(matches!(
            route(&Method::POST, "/members/m_1/tags"),
            Ok(Route::ChangeMemberTags("m_1"))
        ));
        assert!(matches!(
            route(&Method::POST, "/members:batch-tags"),
            Ok(Route::BatchMemberTags)
        ));
        assert_eq!(
            route(&Method::GET, "/members:batch-tags")
                .err()
                .unwrap()
                .status,
            405
        );
        assert_eq!(route(&Method::PUT, "/tags/t_1").err().unwrap().status, 405);
        assert_eq!(route(&Method::GET, "/nope").err().unwrap().status, 404);
    }

    #[test]
    fn only_final_answers_are_stored() {
        for s in [200, 201, 204, 400, 404, 409] {
            assert!(is_final(s), "{s}");
        }
        for s in [401, 405, 429, 500, 503] {
            assert!(!is_final(s), "{s}");
        }
    }
}
