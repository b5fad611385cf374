//! The WeCom simulator: a real HTTP server on loopback answering the external-contact tag and
//! contact APIs as WeCom does (wecom-api.md §1, §2, §3), and a control surface acting as a
//! person in the admin console or the WeCom client, which sends the encrypted, signed
//! callbacks WeCom sends (§4, §5).
//!
//! Behaviour where the docs are silent follows §12: 40068 for an unknown or deleted id, 40071
//! for a rename onto a sibling's name, one `tag_group` create event for a console-created
//! group. Other choices are marked "choice" below.
//!
//! State sits behind a std `Mutex`: every critical section is a short in-memory update, never
//! held across an await. Callbacks are queued while the lock is held (so they keep their
//! order) and delivered by one background task, so control calls never wait for tagsync.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::{CorpId, Secret, Timestamp};
use crate::ports::{Clock, SystemClock};
use crate::sim::hold::{self, ControlHold, ControlWait, Hold, Phase, Registry, Trap};
use crate::wecom::classify::ApiOp;
use crate::wecom::client::WecomCredentials;
use crate::wecom::crypto::{CallbackCrypto, build_envelope, cdata};

mod contacts;
mod strategy;
mod transfer;
pub use contacts::CODE_LIFETIME_MS;
pub use strategy::{RangeNode, SimStrategy};
pub use transfer::{SimTransfer, TAKEOVER_AFTER_MS, TransferStatus};

/// Names of groups and tags: at most 30 characters (§1.2).
const MAX_NAME_CHARS: usize = 30;
/// `batch/get_by_user` limits (§1.5).
const MAX_BATCH_USERS: usize = 100;
const MAX_BATCH_LIMIT: usize = 100;
const DEFAULT_BATCH_LIMIT: usize = 50;

#[derive(Clone)]
pub struct SimConfig {
    pub corp_id: CorpId,
    /// The secret of the one self-built app the API serves.
    pub secret: Secret,
    pub agent_id: String,
    /// The app's callback Token and EncodingAESKey (43 characters).
    pub callback_token: String,
    pub encoding_aes_key: String,
    /// tagsync's callback URL; also settable later ([`WecomSim::set_callback_url`]).
    pub callback_url: Option<String>,
    /// Token expiry, `create_time`s, rate-limit windows and event times use this clock.
    pub clock: Arc<dyn Clock>,
    pub token_lifetime: Duration,
    /// Per-API calls per minute answered with 45009 beyond; none by default.
    pub rate_limits: HashMap<ApiOp, u32>,
    /// `externalcontact/get` pages its follow users by this many (§1.5: 500).
    pub follow_user_page_size: usize,
    /// The corp's tag capacity, corp and strategy tags together (§1.2; 40126 beyond).
    pub max_tags: usize,
    /// WeCom waits 5 s for an answer and then re-sends, 3 times (§4.3).
    pub callback_timeout: Duration,
    pub callback_retries: u32,
    /// Choice: the docs give no interval between re-sends.
    pub callback_retry_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            corp_id: CorpId::new_unchecked("wwsimcorp000000001"),
            secret: Secret::new("sim-app-secret"),
            agent_id: "1000002".into(),
            callback_token: "simCallbackToken".into(),
            // WeCom's own sample key (§4.5 set A): 43 characters, non-zero trailing bits.
            encoding_aes_key: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".into(),
            callback_url: None,
            clock: Arc::new(SystemClock),
            token_lifetime: Duration::from_secs(7200),
            rate_limits: HashMap::new(),
            follow_user_page_size: 500,
            max_tags: 10_000,
            callback_timeout: Duration::from_secs(5),
            callback_retries: 3,
            callback_retry_delay: Duration::from_millis(200),
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

/// Who created a tag or group. Apps may edit or delete only what they created (§1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// The app the API serves (tagsync).
    App,
    /// A person in the admin console.
    Console,
    /// Another app, through the API.
    OtherApp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimTag {
    pub id: String,
    pub name: String,
    pub order: u32,
    pub create_time: i64,
    pub owner: Owner,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    pub id: String,
    pub name: String,
    pub order: u32,
    pub create_time: i64,
    pub owner: Owner,
    /// Rule-group (strategy) tags; `None` for the corp library.
    pub strategy_id: Option<u32>,
    pub tags: Vec<SimTag>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimRelation {
    pub userid: String,
    pub external_userid: String,
    pub state: Option<String>,
    pub createtime: i64,
    pub remark: String,
    pub add_way: i64,
    /// Corp and strategy tag ids, in the order they were put on.
    pub tags: Vec<String>,
    /// The staff member's personal tags (`type` 2: group and tag names, no id; §1.5): only
    /// the client sets them, `externalcontact/get` shows them, no API writes them.
    pub personal_tags: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct Customer {
    name: String,
}

/// A deleted tag, remembered so a query by tag id can answer `deleted: true` (§1.1).
#[derive(Clone, Debug)]
struct Tombstone {
    group: SimGroup,
    tag: SimTag,
}

#[derive(Clone, Debug)]
struct IssuedToken {
    token: String,
    expires_at: Timestamp,
    invalidated: bool,
}

/// Answer shapes that strict decoders trip on (§9 P5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quirks {
    /// `create_time`, `order`, `type`… as strings.
    #[serde(default)]
    pub numbers_as_strings: bool,
    /// An unknown field in every object.
    #[serde(default)]
    pub extra_fields: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// Answer this errcode (e.g. −1, system busy) without doing anything.
    Errcode(i64),
    /// Answer this HTTP status with an empty body.
    HttpStatus(u16),
    /// Answer normally after this delay.
    Delay(Duration),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// The next N calls.
    Next(u32),
    /// Each call with this probability (0..=1).
    Probability(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub trigger: Trigger,
}

impl Fault {
    pub fn next(n: u32, kind: FaultKind) -> Self {
        Self {
            kind,
            trigger: Trigger::Next(n),
        }
    }
    pub fn sometimes(probability: f64, kind: FaultKind) -> Self {
        Self {
            kind,
            trigger: Trigger::Probability(probability),
        }
    }
}

/// One API call as the simulator saw it. Secrets (`corpsecret`, `access_token`) are left out.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiCall {
    pub op: ApiOp,
    pub request: Value,
    /// `None` when the answer was an injected HTTP error.
    pub errcode: Option<i64>,
    pub http_status: u16,
}

/// One callback sent to tagsync, with what tagsync answered to each attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallbackRecord {
    pub seq: usize,
    pub event: String,
    pub change_type: String,
    /// The decrypted XML.
    pub xml: String,
    /// HTTP status of each attempt; `None` for a timeout or connection failure.
    pub answers: Vec<Option<u16>>,
    /// All attempts made (delivered, out of retries, or no callback URL).
    pub done: bool,
    pub delivered: bool,
}

/// What a control action could not do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

/// A console group as created: its id and its tags' ids, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreatedGroup {
    pub group_id: String,
    pub tag_ids: Vec<String>,
}

#[derive(Default)]
struct SimState {
    groups: Vec<SimGroup>,
    tombstones: HashMap<String, Tombstone>,
    customers: BTreeMap<String, Customer>,
    relations: Vec<SimRelation>,
    /// (userid, external userid) → index in `relations`: a large seeded corp (100,000
    /// customers) must not make every lookup scan them all.
    relation_at: BTreeMap<(String, String), usize>,
    members: BTreeSet<String>,
    tokens: Vec<IssuedToken>,
    calls: Vec<ApiCall>,
    callbacks: Vec<CallbackRecord>,
    faults: HashMap<ApiOp, Vec<Fault>>,
    /// Armed holds (see [`WecomSim::hold`]), first armed first.
    holds: Vec<(ApiOp, Trap)>,
    rate_limits: HashMap<ApiOp, u32>,
    /// (minute index, calls answered in it).
    rate_counts: HashMap<ApiOp, (i64, u32)>,
    quirks: Quirks,
    callback_url: Option<String>,
    /// Contact ways (渠道活码, §7) by `config_id`.
    contact_ways: BTreeMap<String, SimContactWay>,
    /// Where this simulator listens (its QR code images are served here).
    base_url: String,
    /// Members who have left (their customers wait for a resigned transfer, §6).
    resigned: BTreeSet<String>,
    /// Customer transfers, oldest first (`transfer`).
    transfers: Vec<SimTransfer>,
    /// Customers a member may have at most (none: no limit).
    customer_limits: HashMap<String, usize>,
    /// Customer strategies (rule groups), oldest first (`strategy`).
    strategies: Vec<SimStrategy>,
    /// The department tree, the staff and their web-login codes (`contacts.rs`, §13).
    contacts: contacts::Contacts,
}

/// A contact way created through `add_contact_way`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimContactWay {
    pub config_id: String,
    pub state: String,
    pub users: Vec<String>,
    pub qr_code: String,
    pub skip_verify: bool,
    /// Scans so far (the next scan is answered by `users[scans % len]`).
    pub scans: usize,
}

/// `add_contact_way` (§7): scene 2 (QR code) or 1; `state` at most 30 characters; at least
/// one member, at most 100.
fn add_contact_way(s: &mut SimState, body: &Value) -> ApiResult {
    let scene = opt_u32(body, "scene")?.ok_or_else(|| invalid_param("scene is required"))?;
    let kind = opt_u32(body, "type")?.ok_or_else(|| invalid_param("type is required"))?;
    if !matches!(scene, 1 | 2) || !matches!(kind, 1 | 2) {
        return Err(invalid_param("type and scene must be 1 or 2"));
    }
    let state = opt_str(body, "state")?.unwrap_or("").to_owned();
    if state.chars().count() > MAX_NAME_CHARS {
        return Err(invalid_param("state is at most 30 characters"));
    }
    let users = str_list(body, "user")?;
    if users.is_empty() || users.len() > 100 || (kind == 1 && users.len() != 1) {
        return Err(invalid_param(
            "user: 1 member for type 1, 1 to 100 for type 2",
        ));
    }
    let skip_verify = body
        .get("skip_verify")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let config_id = random_alnum(32).to_lowercase();
    let qr_code = if scene == 2 {
        format!("{}/qr/{config_id}.svg", s.base_url)
    } else {
        String::new()
    };
    s.contact_ways.insert(
        config_id.clone(),
        SimContactWay {
            config_id: config_id.clone(),
            state,
            users,
            qr_code: qr_code.clone(),
            skip_verify,
            scans: 0,
        },
    );
    let mut answer = json!({ "config_id": config_id });
    if scene == 2 {
        answer["qr_code"] = json!(qr_code);
    }
    Ok(answer)
}

/// `del_contact_way`: an unknown `config_id` is refused (40058, invalid parameter).
fn del_contact_way(s: &mut SimState, body: &Value) -> ApiResult {
    let id = opt_str(body, "config_id")?.ok_or_else(|| invalid_param("config_id is required"))?;
    match s.contact_ways.remove(id) {
        Some(_) => Ok(json!({})),
        None => Err(invalid_param(format!("config_id {id} does not exist"))),
    }
}

struct Delivery {
    seq: usize,
    url: String,
    body: String,
    timestamp: String,
    nonce: String,
    signature: String,
}

struct Core {
    config: SimConfig,
    crypto: CallbackCrypto,
    http: reqwest::Client,
    state: Mutex<SimState>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    /// Holds armed through `/control/holds`.
    control_holds: Registry,
}

/// An API error answer: errcode and errmsg.
struct ApiErr(i64, String);

type ApiResult = Result<Value, ApiErr>;

fn err(code: i64, msg: impl Into<String>) -> ApiErr {
    ApiErr(code, msg.into())
}

fn invalid_param(msg: impl Into<String>) -> ApiErr {
    // 40058: WeCom's generic "invalid parameter" (§9 P4).
    err(40058, msg)
}

fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Tag and group ids look like WeCom's: `et` + random (§0).
fn new_tag_id() -> String {
    format!("et{}", random_alnum(30))
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} name must not be empty"));
    }
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(format!(
            "{what} name exceeds {MAX_NAME_CHARS} characters ({n})"
        ));
    }
    Ok(())
}

/// Larger `order` first; ties keep creation order (§8).
fn sorted_groups<'a>(groups: impl Iterator<Item = &'a SimGroup>) -> Vec<&'a SimGroup> {
    let mut v: Vec<&SimGroup> = groups.collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.order));
    v
}

fn sorted_tags<'a>(tags: impl Iterator<Item = &'a SimTag>) -> Vec<&'a SimTag> {
    let mut v: Vec<&SimTag> = tags.collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.order));
    v
}

/// The tag library a call addresses: the corp's, or one (or every) strategy's.
#[derive(Clone, Copy, Debug)]
enum Scope {
    Corp,
    Strategy(Option<u32>),
    /// Console actions reach every library.
    Any,
}

impl Scope {
    fn contains(self, g: &SimGroup) -> bool {
        match self {
            Scope::Corp => g.strategy_id.is_none(),
            Scope::Strategy(None) => g.strategy_id.is_some(),
            Scope::Strategy(Some(s)) => g.strategy_id == Some(s),
            Scope::Any => true,
        }
    }
}

fn group_json(
    g: &SimGroup,
    tags: &[&SimTag],
    with_deleted: Option<bool>,
    tag_deleted: bool,
) -> Value {
    let tags: Vec<Value> = tags
        .iter()
        .map(|t| {
            let mut v = json!({
                "id": t.id, "name": t.name, "create_time": t.create_time, "order": t.order,
            });
            if with_deleted.is_some() || tag_deleted {
                v["deleted"] = json!(tag_deleted);
            }
            v
        })
        .collect();
    let mut v = json!({
        "group_id": g.id, "group_name": g.name, "create_time": g.create_time,
        "order": g.order, "tag": tags,
    });
    if let Some(d) = with_deleted {
        v["deleted"] = json!(d);
    }
    if let Some(s) = g.strategy_id {
        v["strategy_id"] = json!(s);
    }
    v
}

fn str_list(body: &Value, field: &str) -> Result<Vec<String>, ApiErr> {
    match &body[field] {
        Value::Null => Ok(vec![]),
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid_param(format!("{field} must be a list of strings")))
            })
            .collect(),
        _ => Err(invalid_param(format!("{field} must be a list of strings"))),
    }
}

fn opt_str<'a>(body: &'a Value, field: &str) -> Result<Option<&'a str>, ApiErr> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(invalid_param(format!("{field} must be a string"))),
    }
}

fn opt_u32(body: &Value, field: &str) -> Result<Option<u32>, ApiErr> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid_param(format!("{field} must be a uint32"))),
        _ => Err(invalid_param(format!("{field} must be a uint32"))),
    }
}

impl SimState {
    fn all_tag_count(&self) -> usize {
        self.groups.iter().map(|g| g.tags.len()).sum()
    }

    fn group_index(&self, scope: Scope, id: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.id == id && scope.contains(g))
    }

    /// (group index, tag index) of a tag id in `scope`.
    fn tag_index(&self, scope: Scope, id: &str) -> Option<(usize, usize)> {
        self.groups.iter().enumerate().find_map(|(gi, g)| {
            if !scope.contains(g) {
                return None;
            }
            g.tags.iter().position(|t| t.id == id).map(|ti| (gi, ti))
        })
    }

    fn any_tag(&self, id: &str) -> Option<(&SimGroup, &SimTag)> {
        self.groups
            .iter()
            .find_map(|g| g.tags.iter().find(|t| t.id == id).map(|t| (g, t)))
    }

    fn relation_index(&self, userid: &str, external_userid: &str) -> Option<usize> {
        self.relation_at
            .get(&(userid.to_owned(), external_userid.to_owned()))
            .copied()
    }

    fn push_relation(&mut self, r: SimRelation) {
        self.relation_at.insert(
            (r.userid.clone(), r.external_userid.clone()),
            self.relations.len(),
        );
        self.relations.push(r);
    }

    fn remove_relation(&mut self, at: usize) {
        self.relations.remove(at);
        self.relation_at = self
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.userid.clone(), r.external_userid.clone()), i))
            .collect();
    }

    /// The relations of these members, member by member (`batch/get_by_user` order).
    fn relations_of<'a>(&'a self, users: &BTreeSet<&str>) -> Vec<&'a SimRelation> {
        let mut out = Vec::new();
        for u in users {
            let from = ((*u).to_owned(), String::new());
            for ((user, _), i) in self.relation_at.range(from..) {
                if user != u {
                    break;
                }
                out.push(&self.relations[*i]);
            }
        }
        out
    }

    /// Deletes a tag: remembered for queries, gone from every relation (no callbacks, §1.3).
    /// Returns whether its group became empty and was dropped.
    fn remove_tag(&mut self, gi: usize, ti: usize) -> bool {
        let tag = self.groups[gi].tags.remove(ti);
        self.relations
            .iter_mut()
            .for_each(|r| r.tags.retain(|t| *t != tag.id));
        let mut group = self.groups[gi].clone();
        group.tags.clear();
        self.tombstones
            .insert(tag.id.clone(), Tombstone { group, tag });
        if self.groups[gi].tags.is_empty() {
            // A group cannot be empty: WeCom drops it with its last tag (§1.3).
            self.groups.remove(gi);
            true
        } else {
            false
        }
    }

    fn remove_group(&mut self, gi: usize) {
        while !self.groups[gi].tags.is_empty() {
            if self.remove_tag(gi, 0) {
                return;
            }
        }
        self.groups.remove(gi);
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Timestamp {
        self.config.clock.now()
    }

    // ---- the API -------------------------------------------------------------------------

    /// Picks the fault (if any) for this call, consuming one of a "next N".
    fn take_fault(&self, op: ApiOp) -> Option<FaultKind> {
        let mut s = self.lock();
        let faults = s.faults.get_mut(&op)?;
        let mut hit = None;
        for f in faults.iter_mut() {
            match &mut f.trigger {
                Trigger::Next(n) if *n > 0 => {
                    *n -= 1;
                    hit = Some(f.kind.clone());
                    break;
                }
                Trigger::Probability(p)
                    if p.is_finite() && rand::rng().random_bool(p.clamp(0.0, 1.0)) =>
                {
                    hit = Some(f.kind.clone());
                    break;
                }
                _ => {}
            }
        }
        faults.retain(|f| !matches!(f.trigger, Trigger::Next(0)));
        hit
    }

    /// The armed hold (if any) for this call at `phase`, taken off the list.
    fn take_hold(&self, op: ApiOp, phase: Phase, request: &Value) -> Option<Trap> {
        hold::take_trap(&mut self.lock().holds, |k| *k == op, phase, request)
    }

    fn log_call(&self, op: ApiOp, request: Value, errcode: Option<i64>, http_status: u16) {
        self.lock().calls.push(ApiCall {
            op,
            request,
            errcode,
            http_status,
        });
    }

    /// Answers one API call (everything but the transport and injected faults).
    fn answer(&self, op: ApiOp, query: &HashMap<String, String>, body: &Value) -> ApiResult {
        let now = self.now();
        let mut s = self.lock();
        // Takeovers due by now happen before anything is answered (the simulator has no timer).
        for event in transfer::take_over(&mut s, now) {
            self.send_event(&mut s, &event);
        }
        if op != ApiOp::GetToken {
            check_token(&s, query.get("access_token").map(String::as_str), now)?;
        }
        if let Some(limit) = s.rate_limits.get(&op).copied() {
            let minute = now.millis().div_euclid(60_000);
            let count = s.rate_counts.entry(op).or_insert((minute, 0));
            if count.0 != minute {
                *count = (minute, 0);
            }
            if count.1 >= limit {
                return Err(err(45009, "api freq out of limit"));
            }
            count.1 += 1;
        }
        match op {
            ApiOp::GetToken => self.gettoken(&mut s, query, now),
            ApiOp::GetCorpTagList => tag_list(&s, Scope::Corp, body),
            ApiOp::GetStrategyTagList => {
                tag_list(&s, Scope::Strategy(opt_u32(body, "strategy_id")?), body)
            }
            ApiOp::AddCorpTag => add_tags(&mut s, &self.config, Scope::Corp, body, now),
            ApiOp::AddStrategyTag => {
                let sid = opt_u32(body, "strategy_id")?
                    .ok_or_else(|| invalid_param("strategy_id is required"))?;
                strategy::check_tag_target(&s, sid)?;
                add_tags(&mut s, &self.config, Scope::Strategy(Some(sid)), body, now)
            }
            ApiOp::EditCorpTag => edit_tag(&mut s, Scope::Corp, body),
            ApiOp::EditStrategyTag => edit_tag(&mut s, Scope::Strategy(None), body),
            ApiOp::DelCorpTag => del_tags(&mut s, Scope::Corp, body),
            ApiOp::DelStrategyTag => del_tags(&mut s, Scope::Strategy(None), body),
            ApiOp::StrategyList => strategy::list(&s, body),
            ApiOp::StrategyGet => strategy::get(&s, body),
            ApiOp::StrategyGetRange => strategy::get_range(&s, body),
            ApiOp::StrategyCreate => strategy::create(&mut s, body, now),
            ApiOp::StrategyEdit => strategy::edit(&mut s, body),
            ApiOp::StrategyDel => strategy::del(&mut s, body),
            ApiOp::AddContactWay => add_contact_way(&mut s, body),
            ApiOp::DelContactWay => del_contact_way(&mut s, body),
            ApiOp::MarkTag => mark_tag(&mut s, body),
            ApiOp::TransferCustomer => transfer::transfer_customer(&mut s, body, false, now),
            ApiOp::ResignedTransferCustomer => transfer::transfer_customer(&mut s, body, true, now),
            ApiOp::TransferResult => transfer::transfer_result(&s, body, false),
            ApiOp::ResignedTransferResult => transfer::transfer_result(&s, body, true),
            ApiOp::GetExternalContact => get_contact(&s, query, self.config.follow_user_page_size),
            ApiOp::BatchGetByUser => batch_get_by_user(&s, body),
            ApiOp::GetFollowUserList => {
                let mut users: BTreeSet<&str> = s.members.iter().map(String::as_str).collect();
                users.extend(s.relations.iter().map(|r| r.userid.as_str()));
                users.retain(|u| !s.resigned.contains(*u));
                Ok(json!({ "follow_user": users }))
            }
            ApiOp::DepartmentList => contacts::department_list(&s, query),
            ApiOp::UserGet => contacts::user_get(&s, query),
            ApiOp::UserSimpleList | ApiOp::UserList => contacts::user_list(&s, query),
            ApiOp::AuthGetUserInfo => contacts::getuserinfo(&mut s, query, now),
            ApiOp::ListExternalContacts => {
                let userid = query
                    .get("userid")
                    .ok_or_else(|| invalid_param("userid is required"))?;
                let ids: Vec<&str> = s
                    .relations
                    .iter()
                    .filter(|r| r.userid == *userid)
                    .map(|r| r.external_userid.as_str())
                    .collect();
                Ok(json!({ "external_userid": ids }))
            }
        }
    }

    /// Same token while it is valid, its remaining lifetime as `expires_in` (§2).
    fn gettoken(
        &self,
        s: &mut SimState,
        query: &HashMap<String, String>,
        now: Timestamp,
    ) -> ApiResult {
        if query.get("corpid").map(String::as_str) != Some(self.config.corp_id.as_str()) {
            return Err(err(40013, "invalid corpid"));
        }
        if query.get("corpsecret").map(String::as_str) != Some(self.config.secret.expose()) {
            return Err(err(40001, "invalid credential"));
        }
        let current = s
            .tokens
            .iter()
            .rev()
            .find(|t| !t.invalidated && now < t.expires_at);
        let (token, expires_at) = match current {
            Some(t) => (t.token.clone(), t.expires_at),
            None => {
                let lifetime =
                    i64::try_from(self.config.token_lifetime.as_millis()).unwrap_or(i64::MAX);
                let t = IssuedToken {
                    token: random_alnum(64),
                    expires_at: now.plus_millis(lifetime),
                    invalidated: false,
                };
                s.tokens.push(t.clone());
                (t.token, t.expires_at)
            }
        };
        let expires_in = (expires_at.millis() - now.millis()).div_euclid(1000);
        Ok(json!({ "access_token": token, "expires_in": expires_in }))
    }

    // ---- callbacks -----------------------------------------------------------------------

    /// Records and queues one event (called with the state locked, so events keep order).
    fn send_event(&self, s: &mut SimState, change: &EventChange) {
        let now = self.now();
        let (event, change_type, fields) = change.fields();
        let mut xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
             <CreateTime>{}</CreateTime><MsgType>{}</MsgType><Event>{}</Event>",
            cdata(self.config.corp_id.as_str()),
            cdata("sys"),
            now.secs(),
            cdata("event"),
            cdata(event),
        );
        for (name, value, bare) in fields {
            if bare {
                xml.push_str(&format!("<{name}>{value}</{name}>"));
            } else {
                xml.push_str(&format!("<{name}>{}</{name}>", cdata(&value)));
            }
        }
        xml.push_str("</xml>");
        let seq = s.callbacks.len();
        let url = s.callback_url.clone();
        s.callbacks.push(CallbackRecord {
            seq,
            event: event.to_owned(),
            change_type: change_type.to_owned(),
            xml: xml.clone(),
            answers: vec![],
            done: url.is_none(),
            delivered: false,
        });
        let Some(url) = url else {
            return;
        };
        let encrypted = self.crypto.encrypt(&xml);
        let timestamp = now.secs().to_string();
        let nonce = rand::rng()
            .random_range(100_000_000u64..1_000_000_000)
            .to_string();
        let signature = self.crypto.signature(&timestamp, &nonce, &encrypted);
        let body = build_envelope(
            self.config.corp_id.as_str(),
            &self.config.agent_id,
            &encrypted,
        );
        let _ = self.deliveries.send(Delivery {
            seq,
            url,
            body,
            timestamp,
            nonce,
            signature,
        });
    }

    /// POSTs one callback: the first attempt plus `callback_retries` re-sends on a non-200
    /// or a timeout (§4.3).
    async fn deliver(&self, d: Delivery) {
        let attempts = self.config.callback_retries + 1;
        for attempt in 0..attempts {
            let result = self
                .http
                .post(&d.url)
                .query(&[
                    ("msg_signature", d.signature.as_str()),
                    ("timestamp", d.timestamp.as_str()),
                    ("nonce", d.nonce.as_str()),
                ])
                .header("content-type", "text/xml")
                .body(d.body.clone())
                .timeout(self.config.callback_timeout)
                .send()
                .await;
            let status = result.ok().map(|r| r.status().as_u16());
            let delivered = status == Some(200);
            {
                let mut s = self.lock();
                if let Some(rec) = s.callbacks.get_mut(d.seq) {
                    rec.answers.push(status);
                    rec.delivered = delivered;
                    rec.done = delivered || attempt + 1 == attempts;
                }
            }
            if delivered {
                return;
            }
            if attempt + 1 < attempts {
                tokio::time::sleep(self.config.callback_retry_delay).await;
            }
        }
    }
}

fn check_token(s: &SimState, token: Option<&str>, now: Timestamp) -> Result<(), ApiErr> {
    let token = token.filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(err(41001, "access_token missing"));
    };
    match s.tokens.iter().find(|t| t.token == token) {
        None => Err(err(40014, "invalid access_token")),
        Some(t) if t.invalidated => Err(err(40014, "invalid access_token")),
        Some(t) if now >= t.expires_at => Err(err(42001, "access_token expired")),
        Some(_) => Ok(()),
    }
}

/// `get_corp_tag_list` / `get_strategy_tag_list` (§1.1, §1.4): `group_id` wins over `tag_id`.
fn tag_list(s: &SimState, scope: Scope, body: &Value) -> ApiResult {
    let tag_ids = str_list(body, "tag_id")?;
    let group_ids = str_list(body, "group_id")?;
    let in_scope = || s.groups.iter().filter(|g| scope.contains(g));
    let groups: Vec<Value> = if !group_ids.is_empty() {
        sorted_groups(in_scope().filter(|g| group_ids.contains(&g.id)))
            .into_iter()
            .map(|g| group_json(g, &sorted_tags(g.tags.iter()), None, false))
            .map(|mut v| {
                // Tags carry `deleted` when queried by id (§1.1).
                for t in v["tag"].as_array_mut().into_iter().flatten() {
                    t["deleted"] = json!(false);
                }
                v
            })
            .collect()
    } else if !tag_ids.is_empty() {
        let mut out: Vec<Value> = sorted_groups(in_scope())
            .into_iter()
            .filter_map(|g| {
                let tags = sorted_tags(g.tags.iter().filter(|t| tag_ids.contains(&t.id)));
                (!tags.is_empty()).then(|| group_json(g, &tags, Some(false), false))
            })
            .collect();
        // Recently deleted ids answer `deleted: true` (§1.1).
        for id in &tag_ids {
            if let Some(tomb) = s.tombstones.get(id).filter(|t| scope.contains(&t.group)) {
                let group_gone = !s.groups.iter().any(|g| g.id == tomb.group.id);
                out.push(group_json(
                    &tomb.group,
                    &[&tomb.tag],
                    Some(group_gone),
                    true,
                ));
            }
        }
        out
    } else {
        sorted_groups(in_scope())
            .into_iter()
            .map(|g| group_json(g, &sorted_tags(g.tags.iter()), None, false))
            .collect()
    };
    Ok(json!({ "tag_group": groups }))
}

/// `add_corp_tag` / `add_strategy_tag` (§1.2): same-name groups merge, same-name tags are
/// created once; choice: a name already in the group answers the existing tag.
fn add_tags(
    s: &mut SimState,
    config: &SimConfig,
    scope: Scope,
    body: &Value,
    now: Timestamp,
) -> ApiResult {
    if body["group_id"].as_str() == Some("") {
        return Err(invalid_param("field group_id unexpected empty string"));
    }
    let group_id = opt_str(body, "group_id")?;
    let group_name = opt_str(body, "group_name")?;
    let group_order = opt_u32(body, "order")?;
    let Some(tags) = body["tag"].as_array().filter(|t| !t.is_empty()) else {
        return Err(invalid_param(
            "tag must not be empty: a group cannot be empty",
        ));
    };
    let mut wanted: Vec<(String, u32)> = Vec::new();
    for t in tags {
        let name = opt_str(t, "name")?.ok_or_else(|| invalid_param("tag name is required"))?;
        check_name("tag", name).map_err(invalid_param)?;
        let order = opt_u32(t, "order")?.unwrap_or(0);
        if !wanted.iter().any(|(n, _)| n == name) {
            wanted.push((name.to_owned(), order));
        }
    }
    let gi = match (group_id, group_name) {
        (Some(id), _) => s
            .group_index(scope, id)
            .ok_or_else(|| err(40068, "invalid tag id or group id"))?,
        (None, Some(name)) => {
            check_name("group", name).map_err(invalid_param)?;
            match s
                .groups
                .iter()
                .position(|g| scope.contains(g) && g.name == name)
            {
                Some(gi) => gi,
                None => {
                    s.groups.push(SimGroup {
                        id: new_tag_id(),
                        name: name.to_owned(),
                        order: group_order.unwrap_or(0),
                        create_time: now.secs(),
                        owner: Owner::App,
                        strategy_id: match scope {
                            Scope::Strategy(sid) => sid,
                            Scope::Corp | Scope::Any => None,
                        },
                        tags: vec![],
                    });
                    s.groups.len() - 1
                }
            }
        }
        (None, None) => return Err(invalid_param("group_id or group_name is required")),
    };
    let new_count = wanted
        .iter()
        .filter(|(n, _)| !s.groups[gi].tags.iter().any(|t| t.name == *n))
        .count();
    if s.all_tag_count() + new_count > config.max_tags {
        if s.groups[gi].tags.is_empty() {
            s.groups.remove(gi);
        }
        return Err(err(40126, "corp tag count exceeds the limit"));
    }
    let mut answered = Vec::new();
    for (name, order) in wanted {
        let group = &mut s.groups[gi];
        let tag = match group.tags.iter().find(|t| t.name == name) {
            Some(t) => t.clone(),
            None => {
                let t = SimTag {
                    id: new_tag_id(),
                    name,
                    order,
                    create_time: now.secs(),
                    owner: Owner::App,
                };
                group.tags.push(t.clone());
                t
            }
        };
        answered.push(tag);
    }
    let g = &s.groups[gi];
    let refs: Vec<&SimTag> = answered.iter().collect();
    Ok(json!({ "tag_group": group_json(g, &refs, None, false) }))
}

/// `edit_corp_tag` / `edit_strategy_tag` (§1.3).
fn edit_tag(s: &mut SimState, scope: Scope, body: &Value) -> ApiResult {
    let id = opt_str(body, "id")?.ok_or_else(|| invalid_param("id is required"))?;
    let name = opt_str(body, "name")?;
    let order = opt_u32(body, "order")?;
    if let Some(n) = name {
        check_name("tag", n).map_err(invalid_param)?;
    }
    if let Some(gi) = s.group_index(scope, id) {
        let g = &s.groups[gi];
        if g.owner != Owner::App {
            return Err(read_only());
        }
        if let Some(n) = name
            && s.groups
                .iter()
                .any(|o| o.id != g.id && o.strategy_id == g.strategy_id && o.name == n)
        {
            return Err(err(40071, "group name already exists"));
        }
        let g = &mut s.groups[gi];
        if let Some(n) = name {
            g.name = n.to_owned();
        }
        if let Some(o) = order {
            g.order = o;
        }
        return Ok(json!({}));
    }
    let Some((gi, ti)) = s.tag_index(scope, id) else {
        return Err(err(40068, "invalid tag id or group id"));
    };
    let g = &mut s.groups[gi];
    if g.tags[ti].owner != Owner::App {
        return Err(read_only());
    }
    if let Some(n) = name
        && g.tags
            .iter()
            .enumerate()
            .any(|(i, t)| i != ti && t.name == n)
    {
        return Err(err(40071, "tag name already exists in the group"));
    }
    let t = &mut g.tags[ti];
    if let Some(n) = name {
        t.name = n.to_owned();
    }
    if let Some(o) = order {
        t.order = o;
    }
    Ok(json!({}))
}

/// Apps may edit or delete only what they created (§1.3). 301002 is the one errcode the
/// docs name for this [secondary source].
fn read_only() -> ApiErr {
    err(
        301002,
        "no privilege to modify a tag or group created by the admin console or another app",
    )
}

/// `del_corp_tag` / `del_strategy_tag` (§1.3). Choice: permissions are checked for every id
/// first (nothing changes on 301002); known ids are deleted even when others are unknown,
/// and any unknown id answers 40068 (§12), so a retried delete is "already done".
fn del_tags(s: &mut SimState, scope: Scope, body: &Value) -> ApiResult {
    let tag_ids = str_list(body, "tag_id")?;
    let group_ids = str_list(body, "group_id")?;
    if tag_ids.is_empty() && group_ids.is_empty() {
        return Err(invalid_param("tag_id and group_id must not both be empty"));
    }
    let mut unknown = false;
    for id in &group_ids {
        match s.group_index(scope, id) {
            Some(gi) => {
                let g = &s.groups[gi];
                if g.owner != Owner::App || g.tags.iter().any(|t| t.owner != Owner::App) {
                    return Err(read_only());
                }
            }
            None => unknown = true,
        }
    }
    for id in &tag_ids {
        match s.tag_index(scope, id) {
            Some((gi, ti)) if s.groups[gi].tags[ti].owner != Owner::App => {
                return Err(read_only());
            }
            Some(_) => {}
            None => unknown = true,
        }
    }
    for id in &group_ids {
        if let Some(gi) = s.group_index(scope, id) {
            s.remove_group(gi);
        }
    }
    for id in &tag_ids {
        if let Some((gi, ti)) = s.tag_index(scope, id) {
            s.remove_tag(gi, ti);
        }
    }
    if unknown {
        return Err(err(40068, "invalid tag id or group id"));
    }
    Ok(json!({}))
}

/// `mark_tag` (§1.6). Choice: adding a present tag or removing an absent one is a no-op;
/// an unknown id in `add_tag` is 40068, in `remove_tag` it is ignored (it is not there).
fn mark_tag(s: &mut SimState, body: &Value) -> ApiResult {
    let userid = opt_str(body, "userid")?.ok_or_else(|| invalid_param("userid is required"))?;
    let ext = opt_str(body, "external_userid")?
        .ok_or_else(|| invalid_param("external_userid is required"))?;
    let add = str_list(body, "add_tag")?;
    let remove = str_list(body, "remove_tag")?;
    if add.is_empty() && remove.is_empty() {
        return Err(invalid_param(
            "add_tag and remove_tag must not both be empty",
        ));
    }
    let Some(ri) = s.relation_index(userid, ext) else {
        return Err(err(84061, "not external contact"));
    };
    if add.iter().any(|id| s.any_tag(id).is_none()) {
        return Err(err(40068, "invalid tagid"));
    }
    let r = &mut s.relations[ri];
    for id in add {
        if !r.tags.contains(&id) {
            r.tags.push(id);
        }
    }
    r.tags.retain(|t| !remove.contains(t));
    Ok(json!({}))
}

fn contact_json(s: &SimState, external_userid: &str) -> Value {
    let name = s
        .customers
        .get(external_userid)
        .map_or(external_userid, |c| c.name.as_str());
    json!({
        "external_userid": external_userid, "name": name, "type": 1, "gender": 0,
        "avatar": "", "position": "", "corp_name": "", "corp_full_name": "",
    })
}

/// `externalcontact/get` (§1.5), paged by `next_cursor`.
fn get_contact(s: &SimState, query: &HashMap<String, String>, page_size: usize) -> ApiResult {
    let ext = query
        .get("external_userid")
        .filter(|e| s.customers.contains_key(*e))
        .ok_or_else(|| err(40096, "invalid external userid"))?;
    let start: usize = match query.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => c.parse().map_err(|_| invalid_param("invalid cursor"))?,
        None => 0,
    };
    let rels: Vec<&SimRelation> = s
        .relations
        .iter()
        .filter(|r| r.external_userid == *ext)
        .collect();
    let page_size = page_size.max(1);
    let page: Vec<Value> = rels
        .iter()
        .skip(start)
        .take(page_size)
        .map(|r| {
            let personal = r
                .personal_tags
                .iter()
                .map(|(g, t)| json!({"group_name": g, "tag_name": t, "type": 2}));
            let tags: Vec<Value> = r
                .tags
                .iter()
                .filter_map(|id| s.any_tag(id))
                .map(|(g, t)| {
                    json!({
                        "group_name": g.name, "tag_name": t.name, "tag_id": t.id,
                        "type": if g.strategy_id.is_some() { 3 } else { 1 },
                    })
                })
                .chain(personal)
                .collect();
            let mut v = json!({
                "userid": r.userid, "remark": r.remark, "description": "",
                "createtime": r.createtime, "tags": tags, "remark_corp_name": "",
                "remark_mobiles": [], "add_way": r.add_way, "oper_userid": r.userid,
            });
            if let Some(st) = &r.state {
                v["state"] = json!(st);
            }
            v
        })
        .collect();
    let mut out = json!({ "external_contact": contact_json(s, ext), "follow_user": page });
    if start + page_size < rels.len() {
        out["next_cursor"] = json!((start + page_size).to_string());
    }
    Ok(out)
}

/// `batch/get_by_user` (§1.5): one element per relation; `next_cursor` empty on the last page.
fn batch_get_by_user(s: &SimState, body: &Value) -> ApiResult {
    let users = str_list(body, "userid_list")?;
    if users.is_empty() || users.len() > MAX_BATCH_USERS {
        return Err(invalid_param("userid_list must hold 1 to 100 userids"));
    }
    let limit = match opt_u32(body, "limit")? {
        None | Some(0) => DEFAULT_BATCH_LIMIT,
        Some(l) if l as usize > MAX_BATCH_LIMIT => {
            return Err(invalid_param("limit must be at most 100"));
        }
        Some(l) => l as usize,
    };
    let start: usize = match opt_str(body, "cursor")?.filter(|c| !c.is_empty()) {
        Some(c) => c.parse().map_err(|_| invalid_param("invalid cursor"))?,
        None => 0,
    };
    let users: BTreeSet<&str> = users.iter().map(String::as_str).collect();
    let rels: Vec<&SimRelation> = s.relations_of(&users);
    let list: Vec<Value> = rels
        .iter()
        .skip(start)
        .take(limit)
        .map(|r| {
            let mut info = json!({
                "userid": r.userid, "remark": r.remark, "description": "",
                "createtime": r.createtime, "tag_id": r.tags, "remark_corp_name": "",
                "remark_mobiles": [], "oper_userid": r.userid, "add_way": r.add_way,
            });
            if let Some(st) = &r.state {
                info["state"] = json!(st);
            }
            json!({ "external_contact": contact_json(s, &r.external_userid), "follow_info": info })
        })
        .collect();
    let next = if start + limit < rels.len() {
        (start + limit).to_string()
    } else {
        String::new()
    };
    Ok(json!({ "external_contact_list": list, "next_cursor": next }))
}

/// Rewrites a success answer the way real WeCom sometimes does (§9 P5).
fn apply_quirks(v: &mut Value, quirks: Quirks) {
    const NUMERIC: [&str; 8] = [
        "create_time",
        "createtime",
        "order",
        "type",
        "gender",
        "add_way",
        "expires_in",
        "strategy_id",
    ];
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if quirks.numbers_as_strings
                    && NUMERIC.contains(&k.as_str())
                    && let Value::Number(n) = val
                {
                    *val = Value::String(n.to_string());
                } else {
                    apply_quirks(val, quirks);
                }
            }
            if quirks.extra_fields {
                map.insert(
                    "sim_unknown_field".into(),
                    json!({ "added_by": "a newer WeCom", "list": [1, "two"] }),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| apply_quirks(i, quirks)),
        _ => {}
    }
}

/// One event to send, with the fields WeCom puts in it (§5).
enum EventChange {
    Tag {
        change: &'static str,
        id: String,
        /// `None` on shuffle.
        tag_type: Option<&'static str>,
        strategy_id: Option<u32>,
    },
    Contact {
        change: &'static str,
        userid: String,
        external_userid: String,
        state: Option<String>,
        welcome_code: Option<String>,
    },
    /// `change_contact` (§13): a department or a staff member, with the fields WeCom puts in.
    Directory {
        change: &'static str,
        fields: Vec<(&'static str, String)>,
    },
    /// Contact changes with fields of their own (`Source`, `FailReason`).
    ContactWith {
        change: &'static str,
        userid: String,
        external_userid: String,
        extra: Vec<(&'static str, String)>,
    },
}

impl EventChange {
    /// (Event, ChangeType, [(element, value, bare)]).
    fn fields(
        &self,
    ) -> (
        &'static str,
        &'static str,
        Vec<(&'static str, String, bool)>,
    ) {
        match self {
            EventChange::Tag {
                change,
                id,
                tag_type,
                strategy_id,
            } => {
                let mut f = vec![("Id", id.clone(), false)];
                if let Some(t) = tag_type {
                    f.push(("TagType", (*t).to_owned(), false));
                }
                f.push(("ChangeType", (*change).to_owned(), false));
                if let Some(sid) = strategy_id {
                    f.push(("StrategyId", sid.to_string(), true));
                }
                ("change_external_tag", change, f)
            }
            EventChange::Directory { change, fields } => {
                let mut f = vec![("ChangeType", (*change).to_owned(), false)];
                f.extend(fields.iter().map(|(k, v)| (*k, v.clone(), false)));
                ("change_contact", change, f)
            }
            EventChange::ContactWith {
                change,
                userid,
                external_userid,
                extra,
            } => {
                let mut f = vec![
                    ("ChangeType", (*change).to_owned(), false),
                    ("UserID", userid.clone(), false),
                    ("ExternalUserID", external_userid.clone(), false),
                ];
                f.extend(extra.iter().map(|(k, v)| (*k, v.clone(), false)));
                ("change_external_contact", change, f)
            }
            EventChange::Contact {
                change,
                userid,
                external_userid,
                state,
                welcome_code,
            } => {
                let mut f = vec![
                    ("ChangeType", (*change).to_owned(), false),
                    ("UserID", userid.clone(), false),
                    ("ExternalUserID", external_userid.clone(), false),
                ];
                if let Some(st) = state {
                    f.push(("State", st.clone(), false));
                }
                if let Some(w) = welcome_code {
                    f.push(("WelcomeCode", w.clone(), false));
                }
                ("change_external_contact", change, f)
            }
        }
    }
}

/// A person changing things in the admin console or the WeCom client ([`WecomSim::console`],
/// which sends the callbacks WeCom sends), or another app writing through the API
/// ([`WecomSim::silent`], which sends none, §5.3). What either creates is read-only for
/// tagsync's app.
pub struct Actions<'a> {
    core: &'a Core,
    notify: bool,
}

impl Actions<'_> {
    fn owner(&self) -> Owner {
        if self.notify {
            Owner::Console
        } else {
            Owner::OtherApp
        }
    }

    fn emit(&self, s: &mut SimState, change: EventChange) {
        if self.notify {
            self.core.send_event(s, &change);
        }
    }

    /// A corp tag group with its tags (a group cannot be empty). One `tag_group` create
    /// event, no per-tag events (§12).
    pub fn create_group(
        &self,
        name: &str,
        order: u32,
        tags: &[(&str, u32)],
    ) -> Result<CreatedGroup, SimError> {
        self.create_group_in(None, name, order, tags)
    }

    /// A rule-group (strategy) tag group; its events carry `StrategyId` (§5.2).
    pub fn create_strategy_group(
        &self,
        strategy_id: u32,
        name: &str,
        order: u32,
        tags: &[(&str, u32)],
    ) -> Result<CreatedGroup, SimError> {
        self.create_group_in(Some(strategy_id), name, order, tags)
    }

    fn create_group_in(
        &self,
        strategy_id: Option<u32>,
        name: &str,
        order: u32,
        tags: &[(&str, u32)],
    ) -> Result<CreatedGroup, SimError> {
        check_name("group", name).map_err(SimError::Invalid)?;
        if tags.is_empty() {
            return Err(SimError::Invalid("a group cannot be empty".into()));
        }
        for (t, _) in tags {
            check_name("tag", t).map_err(SimError::Invalid)?;
        }
        let now = self.core.now().secs();
        let mut s = self.core.lock();
        if s.groups
            .iter()
            .any(|g| g.strategy_id == strategy_id && g.name == name)
        {
            return Err(SimError::Conflict(format!("a group named {name:?} exists")));
        }
        let mut group = SimGroup {
            id: new_tag_id(),
            name: name.to_owned(),
            order,
            create_time: now,
            owner: self.owner(),
            strategy_id,
            tags: vec![],
        };
        for (t, o) in tags {
            if group.tags.iter().any(|x| x.name == *t) {
                continue;
            }
            group.tags.push(SimTag {
                id: new_tag_id(),
                name: (*t).to_owned(),
                order: *o,
                create_time: now,
                owner: self.owner(),
            });
        }
        let created = CreatedGroup {
            group_id: group.id.clone(),
            tag_ids: tags
                .iter()
                .filter_map(|(t, _)| group.tags.iter().find(|x| x.name == *t))
                .map(|x| x.id.clone())
                .collect(),
        };
        s.groups.push(group);
        self.emit(
            &mut s,
            EventChange::Tag {
                change: "create",
                id: created.group_id.clone(),
                tag_type: Some("tag_group"),
                strategy_id,
            },
        );
        Ok(created)
    }

    /// A tag in an existing group: one `tag` create event.
    pub fn create_tag(&self, group_id: &str, name: &str, order: u32) -> Result<String, SimError> {
        check_name("tag", name).map_err(SimError::Invalid)?;
        let now = self.core.now().secs();
        let mut s = self.core.lock();
        let Some(g) = s.groups.iter_mut().find(|g| g.id == group_id) else {
            return Err(SimError::NotFound(format!("group {group_id}")));
        };
        if g.tags.iter().any(|t| t.name == name) {
            return Err(SimError::Conflict(format!("a tag named {name:?} exists")));
        }
        let id = new_tag_id();
        g.tags.push(SimTag {
            id: id.clone(),
            name: name.to_owned(),
            order,
            create_time: now,
            owner: self.owner(),
        });
        let strategy_id = g.strategy_id;
        self.emit(
            &mut s,
            EventChange::Tag {
                change: "create",
                id: id.clone(),
                tag_type: Some("tag"),
                strategy_id,
            },
        );
        Ok(id)
    }

    /// Renames a tag or group: one `update` event.
    pub fn rename(&self, id: &str, name: &str) -> Result<(), SimError> {
        check_name("tag or group", name).map_err(SimError::Invalid)?;
        let mut s = self.core.lock();
        let conflict = || SimError::Conflict(format!("{name:?} is taken by a sibling"));
        let (tag_type, strategy_id) = if let Some(gi) = s.groups.iter().position(|g| g.id == id) {
            let sid = s.groups[gi].strategy_id;
            if s.groups
                .iter()
                .any(|g| g.id != id && g.strategy_id == sid && g.name == name)
            {
                return Err(conflict());
            }
            s.groups[gi].name = name.to_owned();
            ("tag_group", sid)
        } else if let Some((gi, ti)) = s.tag_index(Scope::Any, id) {
            let g = &mut s.groups[gi];
            if g.tags.iter().any(|t| t.id != id && t.name == name) {
                return Err(conflict());
            }
            g.tags[ti].name = name.to_owned();
            ("tag", g.strategy_id)
        } else {
            return Err(SimError::NotFound(id.to_owned()));
        };
        self.emit(
            &mut s,
            EventChange::Tag {
                change: "update",
                id: id.to_owned(),
                tag_type: Some(tag_type),
                strategy_id,
            },
        );
        Ok(())
    }

    /// Drags the tags of a group into this order (first = largest `order`): one `shuffle`
    /// event with `Id` = the group (§8).
    pub fn reorder_tags(&self, group_id: &str, tag_ids: &[&str]) -> Result<(), SimError> {
        let mut s = self.core.lock();
        let Some(g) = s.groups.iter_mut().find(|g| g.id == group_id) else {
            return Err(SimError::NotFound(format!("group {group_id}")));
        };
        if let Some(missing) = tag_ids
            .iter()
            .find(|id| !g.tags.iter().any(|t| t.id == **id))
        {
            return Err(SimError::NotFound(format!("tag {missing} in {group_id}")));
        }
        let n = tag_ids.len() as u32;
        for (i, id) in tag_ids.iter().enumerate() {
            if let Some(t) = g.tags.iter_mut().find(|t| t.id == *id) {
                t.order = n - i as u32;
            }
        }
        let strategy_id = g.strategy_id;
        self.emit(
            &mut s,
            EventChange::Tag {
                change: "shuffle",
                id: group_id.to_owned(),
                tag_type: None,
                strategy_id,
            },
        );
        Ok(())
    }

    /// Drags groups into this order: one `shuffle` event with an empty `Id` (§8).
    pub fn reorder_groups(&self, group_ids: &[&str]) -> Result<(), SimError> {
        let mut s = self.core.lock();
        if let Some(missing) = group_ids
            .iter()
            .find(|id| !s.groups.iter().any(|g| g.id == **id))
        {
            return Err(SimError::NotFound(format!("group {missing}")));
        }
        let n = group_ids.len() as u32;
        let mut strategy_id = None;
        for (i, id) in group_ids.iter().enumerate() {
            if let Some(g) = s.groups.iter_mut().find(|g| g.id == *id) {
                g.order = n - i as u32;
                strategy_id = strategy_id.or(g.strategy_id);
            }
        }
        self.emit(
            &mut s,
            EventChange::Tag {
                change: "shuffle",
                id: String::new(),
                tag_type: None,
                strategy_id,
            },
        );
        Ok(())
    }

    /// Deletes a tag or group: one `delete` event. A group's tags go without events; a
    /// group emptied by deleting its last tag goes without a `tag_group` event (§5.2).
    pub fn delete(&self, id: &str) -> Result<(), SimError> {
        let mut s = self.core.lock();
        let (tag_type, strategy_id) = if let Some(gi) = s.groups.iter().position(|g| g.id == id) {
            let sid = s.groups[gi].strategy_id;
            s.remove_group(gi);
            ("tag_group", sid)
        } else if let Some((gi, ti)) = s.tag_index(Scope::Any, id) {
            let sid = s.groups[gi].strategy_id;
            s.remove_tag(gi, ti);
            ("tag", sid)
        } else {
            return Err(SimError::NotFound(id.to_owned()));
        };
        self.emit(
            &mut s,
            EventChange::Tag {
                change: "delete",
                id: id.to_owned(),
                tag_type: Some(tag_type),
                strategy_id,
            },
        );
        Ok(())
    }

    /// A member adds a customer: `add_external_contact` with `State` and a `WelcomeCode`.
    /// The customer is created if new; the member gets customer contact.
    pub fn add_relation(
        &self,
        userid: &str,
        external_userid: &str,
        state: Option<&str>,
    ) -> Result<(), SimError> {
        if userid.is_empty() || external_userid.is_empty() {
            return Err(SimError::Invalid(
                "userid and external_userid are required".into(),
            ));
        }
        if state.is_some_and(|s| s.chars().count() > MAX_NAME_CHARS) {
            return Err(SimError::Invalid(
                "state is at most 30 characters (§7)".into(),
            ));
        }
        let now = self.core.now().secs();
        let mut s = self.core.lock();
        if s.relation_index(userid, external_userid).is_some() {
            return Err(SimError::Conflict(format!(
                "{userid} already follows {external_userid}"
            )));
        }
        s.customers
            .entry(external_userid.to_owned())
            .or_insert_with(|| Customer {
                name: external_userid.to_owned(),
            });
        s.members.insert(userid.to_owned());
        s.push_relation(SimRelation {
            userid: userid.to_owned(),
            external_userid: external_userid.to_owned(),
            state: state.map(str::to_owned),
            createtime: now,
            remark: String::new(),
            add_way: 1,
            tags: vec![],
            personal_tags: vec![],
        });
        self.emit(
            &mut s,
            EventChange::Contact {
                change: "add_external_contact",
                userid: userid.to_owned(),
                external_userid: external_userid.to_owned(),
                state: state.map(str::to_owned),
                welcome_code: Some(random_alnum(24)),
            },
        );
        Ok(())
    }

    /// A member tags or untags a customer in the client: `edit_external_contact` (§5.3).
    pub fn tag_relation(
        &self,
        userid: &str,
        external_userid: &str,
        add: &[&str],
        remove: &[&str],
    ) -> Result<(), SimError> {
        let mut s = self.core.lock();
        let Some(ri) = s.relation_index(userid, external_userid) else {
            return Err(SimError::NotFound(format!(
                "relation {userid} → {external_userid}"
            )));
        };
        if let Some(missing) = add.iter().find(|id| s.any_tag(id).is_none()) {
            return Err(SimError::NotFound(format!("tag {missing}")));
        }
        let r = &mut s.relations[ri];
        for id in add {
            if !r.tags.iter().any(|t| t == id) {
                r.tags.push((*id).to_owned());
            }
        }
        r.tags.retain(|t| !remove.contains(&t.as_str()));
        self.emit(
            &mut s,
            EventChange::Contact {
                change: "edit_external_contact",
                userid: userid.to_owned(),
                external_userid: external_userid.to_owned(),
                state: None,
                welcome_code: None,
            },
        );
        Ok(())
    }

    /// A member sets their personal tags on a customer in the client (`type` 2, §1.5):
    /// `edit_external_contact`, as for corp tags.
    pub fn set_personal_tags(
        &self,
        userid: &str,
        external_userid: &str,
        tags: &[(&str, &str)],
    ) -> Result<(), SimError> {
        let mut s = self.core.lock();
        let Some(ri) = s.relation_index(userid, external_userid) else {
            return Err(SimError::NotFound(format!(
                "relation {userid} → {external_userid}"
            )));
        };
        s.relations[ri].personal_tags = tags
            .iter()
            .map(|(g, t)| ((*g).to_owned(), (*t).to_owned()))
            .collect();
        self.emit(
            &mut s,
            EventChange::Contact {
                change: "edit_external_contact",
                userid: userid.to_owned(),
                external_userid: external_userid.to_owned(),
                state: None,
                welcome_code: None,
            },
        );
        Ok(())
    }

    /// A customer adds a member through a no-verification contact way before the member has
    /// accepted: `add_half_external_contact` (§5.1). No follow relation exists yet.
    pub fn add_half_relation(
        &self,
        userid: &str,
        external_userid: &str,
        state: Option<&str>,
    ) -> Result<(), SimError> {
        let mut s = self.core.lock();
        self.emit(
            &mut s,
            EventChange::Contact {
                change: "add_half_external_contact",
                userid: userid.to_owned(),
                external_userid: external_userid.to_owned(),
                state: state.map(str::to_owned),
                welcome_code: Some(random_alnum(24)),
            },
        );
        Ok(())
    }

    /// A customer scans a contact way's QR code: the next of its members (in turn) adds the
    /// customer, and WeCom sends the add event with the way's `State` —
    /// `add_external_contact` when the way skips verification, else
    /// `add_half_external_contact` first and `add_external_contact` once the member accepts
    /// (here: at once). Answers the member who added the customer.
    pub fn scan(&self, config_id: &str, external_userid: &str) -> Result<String, SimError> {
        let (userid, state, skip_verify) = {
            let mut s = self.core.lock();
            let Some(way) = s.contact_ways.get_mut(config_id) else {
                return Err(SimError::NotFound(format!("contact way {config_id}")));
            };
            let userid = way.users[way.scans % way.users.len()].clone();
            way.scans += 1;
            (userid, way.state.clone(), way.skip_verify)
        };
        let state = (!state.is_empty()).then_some(state);
        if !skip_verify {
            self.add_half_relation(&userid, external_userid, state.as_deref())?;
        }
        self.add_relation(&userid, external_userid, state.as_deref())?;
        Ok(userid)
    }

    /// The customer deletes the member: `del_follow_user`; the relation is gone.
    pub fn customer_deletes_member(
        &self,
        userid: &str,
        external_userid: &str,
    ) -> Result<(), SimError> {
        self.remove_relation(userid, external_userid, "del_follow_user")
    }

    /// An in-service transfer to `takeover_userid` failed (`customer_refused` or
    /// `customer_limit_exceed`): `transfer_fail` (§6). Nothing else changes.
    pub fn transfer_failed(
        &self,
        takeover_userid: &str,
        external_userid: &str,
        reason: &str,
    ) -> Result<(), SimError> {
        let mut s = self.core.lock();
        self.emit(
            &mut s,
            EventChange::ContactWith {
                change: "transfer_fail",
                userid: takeover_userid.to_owned(),
                external_userid: external_userid.to_owned(),
                extra: vec![("FailReason", reason.to_owned())],
            },
        );
        Ok(())
    }

    /// The customer refuses their waiting in-service transfer (§6): the old relation and its
    /// tags stay, the transfer ends with status 3, and WeCom sends `transfer_fail`
    /// `customer_refused`.
    pub fn refuse_transfer(&self, external_userid: &str) -> Result<(), SimError> {
        let now = self.core.now();
        let mut s = self.core.lock();
        for event in transfer::take_over(&mut s, now) {
            self.core.send_event(&mut s, &event);
        }
        let Some(event) = transfer::refuse(&mut s, external_userid) else {
            return Err(SimError::NotFound(format!(
                "a waiting in-service transfer of {external_userid}"
            )));
        };
        self.core.send_event(&mut s, &event);
        Ok(())
    }

    /// A member deletes a customer: `del_external_contact`.
    pub fn delete_relation(&self, userid: &str, external_userid: &str) -> Result<(), SimError> {
        self.remove_relation(userid, external_userid, "del_external_contact")
    }

    /// Removes a follow relation and sends `change` (either side ending it).
    fn remove_relation(
        &self,
        userid: &str,
        external_userid: &str,
        change: &'static str,
    ) -> Result<(), SimError> {
        let mut s = self.core.lock();
        let Some(ri) = s.relation_index(userid, external_userid) else {
            return Err(SimError::NotFound(format!(
                "relation {userid} → {external_userid}"
            )));
        };
        s.remove_relation(ri);
        self.emit(
            &mut s,
            EventChange::ContactWith {
                change,
                userid: userid.to_owned(),
                external_userid: external_userid.to_owned(),
                extra: vec![],
            },
        );
        Ok(())
    }
}

/// A running simulator. Dropping it stops the server.
pub struct WecomSim {
    core: Arc<Core>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    delivery: JoinHandle<()>,
}

impl WecomSim {
    /// Starts on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound or the AES key is not 43 characters.
    pub async fn start(config: SimConfig) -> WecomSim {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the WeCom simulator on loopback")
    }

    /// Starts on `addr` (e.g. a fixed port for a demo).
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<WecomSim> {
        let crypto = CallbackCrypto::new(
            &config.callback_token,
            &config.encoding_aes_key,
            config.corp_id.as_str(),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
        let state = SimState {
            rate_limits: config.rate_limits.clone(),
            callback_url: config.callback_url.clone(),
            base_url: format!("http://{addr}"),
            ..SimState::default()
        };
        let core = Arc::new(Core {
            config,
            crypto,
            http: reqwest::Client::new(),
            state: Mutex::new(state),
            deliveries: tx,
            control_holds: Registry::default(),
        });
        let delivery = {
            let core = core.clone();
            tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    core.deliver(d).await;
                }
            })
        };
        let app = router(core.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "WeCom simulator stopped with an error");
            }
        });
        Ok(WecomSim {
            core,
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
            delivery,
        })
    }

    /// `http://127.0.0.1:P/cgi-bin`, what a `WecomClient` takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/cgi-bin", self.addr)
    }

    /// `http://127.0.0.1:P/control`, the JSON control surface.
    pub fn control_url(&self) -> String {
        format!("http://{}/control", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The credentials of the simulated app.
    pub fn credentials(&self) -> WecomCredentials {
        WecomCredentials {
            corp_id: self.core.config.corp_id.clone(),
            secret: self.core.config.secret.clone(),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.core.config
    }

    /// Stops the server and waits (briefly) for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }

    /// Acts as a person in the admin console or client: changes send callbacks.
    pub fn console(&self) -> Actions<'_> {
        Actions {
            core: &self.core,
            notify: true,
        }
    }

    /// Acts as another app writing through the API: no callbacks (§5.3).
    pub fn silent(&self) -> Actions<'_> {
        Actions {
            core: &self.core,
            notify: false,
        }
    }

    /// Where callbacks go (tagsync's callback URL); `None` records them undelivered.
    pub fn set_callback_url(&self, url: Option<String>) {
        self.core.lock().callback_url = url;
    }

    /// The URL-verification GET the console makes when the callback URL is saved (§4.2):
    /// `Ok` when tagsync answers 200 with the decrypted `echostr`.
    pub async fn verify_url(&self, url: &str) -> Result<(), String> {
        verify_url(&self.core, url).await
    }

    /// A member with customer contact enabled (listed by `get_follow_user_list`).
    pub fn add_member(&self, userid: &str) {
        self.core.lock().members.insert(userid.to_owned());
    }

    /// The member leaves the company: no longer listed by `get_follow_user_list`; their
    /// relations stay until a resigned transfer hands them over (§6).
    pub fn member_leaves(&self, userid: &str) {
        self.core.lock().resigned.insert(userid.to_owned());
    }

    /// At most `limit` customers for `userid` (a takeover beyond it fails, §6); `None`: no
    /// limit.
    pub fn set_customer_limit(&self, userid: &str, limit: Option<usize>) {
        let mut s = self.core.lock();
        match limit {
            Some(n) => s.customer_limits.insert(userid.to_owned(), n),
            None => s.customer_limits.remove(userid),
        };
    }

    /// Every customer transfer so far, oldest first.
    pub fn transfers(&self) -> Vec<SimTransfer> {
        self.core.lock().transfers.clone()
    }

    /// A customer's display name (no event: customers appear through relations).
    pub fn add_customer(&self, external_userid: &str, name: &str) {
        self.core.lock().customers.insert(
            external_userid.to_owned(),
            Customer {
                name: name.to_owned(),
            },
        );
    }

    /// Every issued token stops working (as after a secret reset); calls get 40014 (§2).
    pub fn invalidate_tokens(&self) {
        for t in self.core.lock().tokens.iter_mut() {
            t.invalidated = true;
        }
    }

    /// The token `gettoken` would answer now, if one is valid.
    pub fn current_token(&self) -> Option<String> {
        let now = self.core.now();
        let s = self.core.lock();
        s.tokens
            .iter()
            .rev()
            .find(|t| !t.invalidated && now < t.expires_at)
            .map(|t| t.token.clone())
    }

    pub fn inject(&self, op: ApiOp, fault: Fault) {
        self.core.lock().faults.entry(op).or_default().push(fault);
    }

    pub fn clear_faults(&self) {
        self.core.lock().faults.clear();
    }

    /// Holds the next call of `op` whose request (as [`WecomSim::calls`] logs it) has the
    /// fields of `matching` (`Value::Null`: any call) at `phase`: before it takes effect, or
    /// after, before its answer goes back. The returned [`Hold`] says when a call is held;
    /// the call goes on when the [`hold::Held`] is released or dropped. Injected faults
    /// come first (a call answered by a fault is not held).
    pub fn hold(&self, op: ApiOp, phase: Phase, matching: Value) -> Hold {
        let (trap, hold) = hold::arm(phase, matching);
        self.core.lock().holds.push((op, trap));
        hold
    }

    /// Calls per minute for `op` beyond which WeCom answers 45009; `None` = unlimited.
    pub fn set_rate_limit(&self, op: ApiOp, per_minute: Option<u32>) {
        let mut s = self.core.lock();
        match per_minute {
            Some(n) => s.rate_limits.insert(op, n),
            None => s.rate_limits.remove(&op),
        };
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        self.core.lock().quirks = quirks;
    }

    /// Every API call so far, in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.core.lock().calls.clone()
    }

    pub fn call_count(&self, op: ApiOp) -> usize {
        self.core.lock().calls.iter().filter(|c| c.op == op).count()
    }

    /// Every callback so far, in order, with tagsync's answers.
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        self.core.lock().callbacks.clone()
    }

    /// Waits until at least `n` callbacks exist and all are done (delivered or given up);
    /// returns them, or what there is at the deadline.
    pub async fn wait_for_callbacks(&self, n: usize, timeout: Duration) -> Vec<CallbackRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let cbs = self.callbacks();
            if (cbs.len() >= n && cbs.iter().all(|c| c.done))
                || tokio::time::Instant::now() >= deadline
            {
                return cbs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The customer strategies (rule groups) with their ranges, oldest first.
    pub fn strategies(&self) -> Vec<SimStrategy> {
        self.core.lock().strategies.clone()
    }

    /// A strategy made in WeCom's admin console (no callback: WeCom sends none for it).
    /// `parent_id` 0 for a top-level one. Answers its id.
    pub fn create_strategy(&self, parent_id: u32, name: &str, range: Vec<RangeNode>) -> u32 {
        let mut s = self.core.lock();
        let id = s.strategies.iter().map(|st| st.id).max().unwrap_or(0) + 1;
        let create_time = self.core.now().secs();
        s.strategies.push(SimStrategy {
            id,
            parent_id,
            name: name.to_owned(),
            admins: vec![],
            range: range.into_iter().collect(),
            create_time,
        });
        id
    }

    /// The whole library, corp and strategy groups, in answer order.
    pub fn library(&self) -> Vec<SimGroup> {
        let s = self.core.lock();
        sorted_groups(s.groups.iter())
            .into_iter()
            .map(|g| {
                let mut g = g.clone();
                g.tags.sort_by_key(|t| std::cmp::Reverse(t.order));
                g
            })
            .collect()
    }

    pub fn relations(&self) -> Vec<SimRelation> {
        self.core.lock().relations.clone()
    }

    /// The tag ids on one relation, `None` if there is no such relation.
    /// The contact ways that exist now.
    pub fn contact_ways(&self) -> Vec<SimContactWay> {
        self.core.lock().contact_ways.values().cloned().collect()
    }

    pub fn relation_tags(&self, userid: &str, external_userid: &str) -> Option<Vec<String>> {
        let s = self.core.lock();
        s.relation_index(userid, external_userid)
            .map(|i| s.relations[i].tags.clone())
    }
}

impl Drop for WecomSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.delivery.abort();
    }
}

async fn verify_url(core: &Core, url: &str) -> Result<(), String> {
    let echo = rand::rng()
        .random_range(1_000_000_000_000_000u64..10_000_000_000_000_000_000)
        .to_string();
    let encrypted = core.crypto.encrypt(&echo);
    let timestamp = core.now().secs().to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u64..1_000_000_000)
        .to_string();
    let signature = core.crypto.signature(&timestamp, &nonce, &encrypted);
    let resp = core
        .http
        .get(url)
        .query(&[
            ("msg_signature", signature.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
            ("echostr", encrypted.as_str()),
        ])
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| e.without_url().to_string())?;
    if status != 200 {
        return Err(format!("answered HTTP {status}"));
    }
    if body != echo {
        return Err(format!(
            "answered {body:?}, expected the decrypted echostr {echo:?}"
        ));
    }
    Ok(())
}

// ---- HTTP ------------------------------------------------------------------------------------

fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/cgi-bin/{*path}", get(api).post(api))
        .merge(contacts::routes())
        .route("/control/groups", post(ctl_create_group))
        .route("/control/tags", post(ctl_create_tag))
        .route("/control/rename", post(ctl_rename))
        .route("/control/delete", post(ctl_delete))
        .route("/control/reorder", post(ctl_reorder))
        .route("/control/members", post(ctl_add_member))
        .route("/control/customers", post(ctl_add_customer))
        .route("/control/contact-ways", get(ctl_contact_ways))
        .route("/control/contact-ways/{config_id}/scan", post(ctl_scan))
        .route("/qr/{file}", get(qr_image))
        .route(
            "/control/relations",
            post(ctl_add_relation).get(ctl_relations),
        )
        .route("/control/relations/tags", post(ctl_tag_relation))
        .route("/control/relations/personal-tags", post(ctl_personal_tags))
        .route("/control/relations/delete", post(ctl_delete_relation))
        .route("/control/tokens/invalidate", post(ctl_invalidate_tokens))
        .route("/control/faults", post(ctl_fault))
        .route("/control/faults/clear", post(ctl_clear_faults))
        .route("/control/holds", post(ctl_hold))
        .route("/control/holds/{id}/wait", post(ctl_hold_wait))
        .route("/control/holds/{id}/release", post(ctl_hold_release))
        .route("/control/rate_limits", post(ctl_rate_limit))
        .route("/control/quirks", post(ctl_quirks))
        .route("/control/callback_url", post(ctl_callback_url))
        .route("/control/verify_url", post(ctl_verify_url))
        .route("/control/library", get(ctl_library))
        .route("/control/calls", get(ctl_calls))
        .route("/control/callbacks", get(ctl_callbacks))
        .with_state(core)
}

/// The request as logged: without the secret or the token.
fn loggable(query: &HashMap<String, String>, body: &Value) -> Value {
    if !body.is_null() {
        return body.clone();
    }
    let q: BTreeMap<&str, &str> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "access_token" && k.as_str() != "corpsecret")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json!(q)
}

async fn api(
    AxumState(core): AxumState<Arc<Core>>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(op) = ApiOp::from_path(&path) else {
        return (StatusCode::NOT_FOUND, "no such WeCom API in the simulator").into_response();
    };
    let parsed: Result<Value, ApiErr> = if op.is_get() {
        if method != Method::GET {
            Err(err(43001, "require GET method"))
        } else {
            Ok(Value::Null)
        }
    } else if method != Method::POST {
        Err(err(43002, "require POST method"))
    } else {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| err(47001, "data format error"))
    };
    let logged = match &parsed {
        Ok(v) => loggable(&query, v),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    match core.take_fault(op) {
        Some(FaultKind::Errcode(code)) => {
            core.log_call(op, logged, Some(code), 200);
            let errmsg = if code == -1 {
                "system busy"
            } else {
                "injected fault"
            };
            return axum::Json(json!({ "errcode": code, "errmsg": errmsg })).into_response();
        }
        Some(FaultKind::HttpStatus(status)) => {
            core.log_call(op, logged, None, status);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return status.into_response();
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if let Some(trap) = core.take_hold(op, Phase::Before, &logged) {
        trap.spring(logged.clone()).await;
    }
    let result = parsed.and_then(|body| core.answer(op, &query, &body));
    let after = core.take_hold(op, Phase::After, &logged);
    let held = after.as_ref().map(|_| logged.clone());
    let answer = match result {
        Ok(mut v) => {
            v["errcode"] = json!(0);
            v["errmsg"] = json!("ok");
            core.log_call(op, logged, Some(0), 200);
            let quirks = core.lock().quirks;
            apply_quirks(&mut v, quirks);
            v
        }
        Err(ApiErr(code, msg)) => {
            core.log_call(op, logged, Some(code), 200);
            json!({ "errcode": code, "errmsg": msg })
        }
    };
    if let (Some(trap), Some(request)) = (after, held) {
        trap.spring(request).await;
    }
    axum::Json(answer).into_response()
}

fn ctl_result<T: Serialize>(r: Result<T, SimError>) -> Response {
    match r {
        Ok(v) => axum::Json(json!({ "ok": true, "result": v })).into_response(),
        Err(e) => {
            let status = match e {
                SimError::NotFound(_) => StatusCode::NOT_FOUND,
                SimError::Conflict(_) => StatusCode::CONFLICT,
                SimError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            (
                status,
                axum::Json(json!({ "ok": false, "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

fn actions(core: &Core, silent: bool) -> Actions<'_> {
    Actions {
        core,
        notify: !silent,
    }
}

#[derive(Deserialize)]
struct CtlTag {
    name: String,
    #[serde(default)]
    order: u32,
}

#[derive(Deserialize)]
struct CtlGroup {
    name: String,
    #[serde(default)]
    order: u32,
    tags: Vec<CtlTag>,
    strategy_id: Option<u32>,
    #[serde(default)]
    silent: bool,
}

async fn ctl_create_group(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlGroup>,
) -> Response {
    let tags: Vec<(&str, u32)> = b.tags.iter().map(|t| (t.name.as_str(), t.order)).collect();
    let a = actions(&core, b.silent);
    ctl_result(match b.strategy_id {
        Some(sid) => a.create_strategy_group(sid, &b.name, b.order, &tags),
        None => a.create_group(&b.name, b.order, &tags),
    })
}

#[derive(Deserialize)]
struct CtlNewTag {
    group_id: String,
    name: String,
    #[serde(default)]
    order: u32,
    #[serde(default)]
    silent: bool,
}

async fn ctl_create_tag(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlNewTag>,
) -> Response {
    ctl_result(
        actions(&core, b.silent)
            .create_tag(&b.group_id, &b.name, b.order)
            .map(|id| json!({ "tag_id": id })),
    )
}

#[derive(Deserialize)]
struct CtlRename {
    id: String,
    name: String,
    #[serde(default)]
    silent: bool,
}

async fn ctl_rename(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlRename>,
) -> Response {
    ctl_result(actions(&core, b.silent).rename(&b.id, &b.name))
}

#[derive(Deserialize)]
struct CtlId {
    id: String,
    #[serde(default)]
    silent: bool,
}

async fn ctl_delete(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlId>,
) -> Response {
    ctl_result(actions(&core, b.silent).delete(&b.id))
}

#[derive(Deserialize)]
struct CtlReorder {
    /// The group whose tags to reorder; absent = reorder the groups.
    group_id: Option<String>,
    ids: Vec<String>,
    #[serde(default)]
    silent: bool,
}

async fn ctl_reorder(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlReorder>,
) -> Response {
    let ids: Vec<&str> = b.ids.iter().map(String::as_str).collect();
    let a = actions(&core, b.silent);
    ctl_result(match &b.group_id {
        Some(g) => a.reorder_tags(g, &ids),
        None => a.reorder_groups(&ids),
    })
}

#[derive(Deserialize)]
struct CtlMember {
    userid: String,
}

async fn ctl_add_member(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlMember>,
) -> Response {
    core.lock().members.insert(b.userid);
    ctl_result(Ok(()))
}

#[derive(Deserialize)]
struct CtlCustomer {
    /// Generated (`wm…`) if absent.
    external_userid: Option<String>,
    name: String,
}

async fn ctl_add_customer(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlCustomer>,
) -> Response {
    let id = b
        .external_userid
        .unwrap_or_else(|| format!("wm{}", random_alnum(28)));
    core.lock()
        .customers
        .insert(id.clone(), Customer { name: b.name });
    ctl_result(Ok(json!({ "external_userid": id })))
}

#[derive(Deserialize)]
struct CtlRelation {
    userid: String,
    external_userid: String,
    state: Option<String>,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    silent: bool,
}

async fn ctl_add_relation(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlRelation>,
) -> Response {
    ctl_result(actions(&core, b.silent).add_relation(
        &b.userid,
        &b.external_userid,
        b.state.as_deref(),
    ))
}

async fn ctl_tag_relation(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlRelation>,
) -> Response {
    let add: Vec<&str> = b.add.iter().map(String::as_str).collect();
    let remove: Vec<&str> = b.remove.iter().map(String::as_str).collect();
    ctl_result(actions(&core, b.silent).tag_relation(&b.userid, &b.external_userid, &add, &remove))
}

#[derive(Deserialize)]
struct CtlPersonalTags {
    userid: String,
    external_userid: String,
    /// The relation's personal tags after the change, as `[group name, tag name]` pairs.
    tags: Vec<(String, String)>,
    #[serde(default)]
    silent: bool,
}

/// `POST /control/relations/personal-tags {"userid", "external_userid", "tags": [[group,
/// name]]}`: the member sets their personal tags on the customer in the client (see
/// [`Actions::set_personal_tags`]).
async fn ctl_personal_tags(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlPersonalTags>,
) -> Response {
    let tags: Vec<(&str, &str)> = b
        .tags
        .iter()
        .map(|(g, t)| (g.as_str(), t.as_str()))
        .collect();
    ctl_result(actions(&core, b.silent).set_personal_tags(&b.userid, &b.external_userid, &tags))
}

async fn ctl_delete_relation(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlRelation>,
) -> Response {
    ctl_result(actions(&core, b.silent).delete_relation(&b.userid, &b.external_userid))
}

async fn ctl_contact_ways(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let ways: Vec<SimContactWay> = core.lock().contact_ways.values().cloned().collect();
    ctl_result(Ok(ways))
}

#[derive(Deserialize)]
struct CtlScan {
    external_userid: String,
    #[serde(default)]
    silent: bool,
}

/// `POST /control/contact-ways/{config_id}/scan {"external_userid"}`: a customer scans the
/// code (see [`Actions::scan`]).
async fn ctl_scan(
    AxumState(core): AxumState<Arc<Core>>,
    Path(config_id): Path<String>,
    axum::Json(b): axum::Json<CtlScan>,
) -> Response {
    ctl_result(
        actions(&core, b.silent)
            .scan(&config_id, &b.external_userid)
            .map(|userid| json!({ "userid": userid })),
    )
}

/// A contact way's QR code image: a placeholder SVG naming the way (the simulator draws no
/// real QR code; a phone cannot scan it — `…/scan` does).
async fn qr_image(AxumState(core): AxumState<Arc<Core>>, Path(file): Path<String>) -> Response {
    let id = file.trim_end_matches(".svg");
    let Some(way) = core.lock().contact_ways.get(id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut cells = String::new();
    for (i, b) in way.config_id.bytes().enumerate().take(64) {
        if b % 2 == 0 {
            let (x, y) = (10 + (i % 8) * 10, 10 + (i / 8) * 10);
            cells.push_str(&format!(
                r#"<rect x="{x}" y="{y}" width="10" height="10"/>"#
            ));
        }
    }
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="112" viewBox="0 0 100 112"><rect width="100" height="112" fill="white"/>{cells}<text x="50" y="108" font-size="8" text-anchor="middle">{}</text></svg>"#,
        way.state.replace(['<', '>', '&', '"'], "")
    );
    ([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

async fn ctl_relations(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let rels = core.lock().relations.clone();
    ctl_result(Ok(rels))
}

async fn ctl_invalidate_tokens(AxumState(core): AxumState<Arc<Core>>) -> Response {
    for t in core.lock().tokens.iter_mut() {
        t.invalidated = true;
    }
    ctl_result(Ok(()))
}

#[derive(Deserialize)]
struct CtlFault {
    /// The API path, e.g. `externalcontact/mark_tag`.
    op: String,
    errcode: Option<i64>,
    http_status: Option<u16>,
    delay_ms: Option<u64>,
    /// The next N calls (default 1) unless `probability` is given.
    next: Option<u32>,
    probability: Option<f64>,
}

async fn ctl_fault(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlFault>,
) -> Response {
    let Some(op) = ApiOp::from_path(&b.op) else {
        return ctl_result::<()>(Err(SimError::NotFound(format!("API {}", b.op))));
    };
    let kind = match (b.errcode, b.http_status, b.delay_ms) {
        (Some(c), None, None) => FaultKind::Errcode(c),
        (None, Some(s), None) => FaultKind::HttpStatus(s),
        (None, None, Some(ms)) => FaultKind::Delay(Duration::from_millis(ms)),
        _ => {
            return ctl_result::<()>(Err(SimError::Invalid(
                "give exactly one of errcode, http_status, delay_ms".into(),
            )));
        }
    };
    let trigger = match b.probability {
        Some(p) => Trigger::Probability(p),
        None => Trigger::Next(b.next.unwrap_or(1)),
    };
    core.lock()
        .faults
        .entry(op)
        .or_default()
        .push(Fault { kind, trigger });
    ctl_result(Ok(()))
}

#[derive(Deserialize)]
struct CtlHold {
    /// The API path, e.g. `externalcontact/mark_tag`.
    op: String,
    #[serde(flatten)]
    hold: ControlHold,
}

/// Arms a hold (see [`WecomSim::hold`]): `{"op", "phase"?: "before"|"after", "match"?: {…}}`
/// → `{"id"}`.
async fn ctl_hold(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlHold>,
) -> Response {
    let Some(op) = ApiOp::from_path(&b.op) else {
        return ctl_result::<()>(Err(SimError::NotFound(format!("API {}", b.op))));
    };
    let (trap, hold) = hold::arm(b.hold.phase, b.hold.matching);
    core.lock().holds.push((op, trap));
    ctl_result(Ok(json!({ "id": core.control_holds.add(hold) })))
}

/// Waits until hold `id`'s call is held: `{"timeout_ms"?}` → `{"held", "request"?}`.
async fn ctl_hold_wait(
    AxumState(core): AxumState<Arc<Core>>,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    let wait: ControlWait = if body.is_empty() {
        ControlWait::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => return ctl_result::<()>(Err(SimError::Invalid(e.to_string()))),
        }
    };
    ctl_result(
        core.control_holds
            .wait(id, wait.within())
            .await
            .map_err(SimError::NotFound),
    )
}

async fn ctl_hold_release(AxumState(core): AxumState<Arc<Core>>, Path(id): Path<u64>) -> Response {
    ctl_result(core.control_holds.release(id).map_err(SimError::NotFound))
}

async fn ctl_clear_faults(AxumState(core): AxumState<Arc<Core>>) -> Response {
    core.lock().faults.clear();
    ctl_result(Ok(()))
}

#[derive(Deserialize)]
struct CtlRateLimit {
    op: String,
    per_minute: Option<u32>,
}

async fn ctl_rate_limit(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlRateLimit>,
) -> Response {
    let Some(op) = ApiOp::from_path(&b.op) else {
        return ctl_result::<()>(Err(SimError::NotFound(format!("API {}", b.op))));
    };
    let mut s = core.lock();
    match b.per_minute {
        Some(n) => s.rate_limits.insert(op, n),
        None => s.rate_limits.remove(&op),
    };
    ctl_result(Ok(()))
}

async fn ctl_quirks(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(q): axum::Json<Quirks>,
) -> Response {
    core.lock().quirks = q;
    ctl_result(Ok(()))
}

#[derive(Deserialize)]
struct CtlUrl {
    url: Option<String>,
}

async fn ctl_callback_url(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlUrl>,
) -> Response {
    core.lock().callback_url = b.url;
    ctl_result(Ok(()))
}

async fn ctl_verify_url(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlUrl>,
) -> Response {
    let Some(url) = b.url.or_else(|| core.lock().callback_url.clone()) else {
        return ctl_result::<()>(Err(SimError::Invalid("no URL to verify".into())));
    };
    ctl_result(verify_url(&core, &url).await.map_err(SimError::Invalid))
}

async fn ctl_library(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let s = core.lock();
    let groups: Vec<SimGroup> = sorted_groups(s.groups.iter())
        .into_iter()
        .cloned()
        .collect();
    ctl_result(Ok(groups))
}

async fn ctl_calls(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let calls: Vec<Value> = core
        .lock()
        .calls
        .iter()
        .map(|c| {
            json!({
                "op": c.op.path(), "request": c.request, "errcode": c.errcode,
                "http_status": c.http_status,
            })
        })
        .collect();
    ctl_result(Ok(calls))
}

async fn ctl_callbacks(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let cbs = core.lock().callbacks.clone();
    ctl_result(Ok(cbs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_group() -> SimState {
        let mut s = SimState::default();
        s.groups.push(SimGroup {
            id: "etG".into(),
            name: "G".into(),
            order: 1,
            create_time: 0,
            owner: Owner::App,
            strategy_id: None,
            tags: vec![SimTag {
                id: "etT".into(),
                name: "T".into(),
                order: 0,
                create_time: 0,
                owner: Owner::App,
            }],
        });
        s
    }

    #[test]
    fn names_over_30_characters_are_refused() {
        assert!(check_name("tag", &"字".repeat(30)).is_ok());
        assert!(check_name("tag", &"字".repeat(31)).is_err());
        assert!(check_name("tag", " ").is_err());
    }

    #[test]
    fn ids_look_like_wecoms() {
        let id = new_tag_id();
        assert!(id.starts_with("et") && id.len() == 32, "{id}");
    }

    #[test]
    fn deleting_the_last_tag_drops_the_group_and_leaves_a_tombstone() {
        let mut s = state_with_group();
        let r = del_tags(&mut s, Scope::Corp, &json!({"tag_id": ["etT"]}));
        assert!(r.is_ok());
        assert!(s.groups.is_empty());
        let v = tag_list(&s, Scope::Corp, &json!({"tag_id": ["etT"]}))
            .ok()
            .unwrap();
        assert_eq!(v["tag_group"][0]["deleted"], json!(true));
        assert_eq!(v["tag_group"][0]["tag"][0]["deleted"], json!(true));
    }

    #[test]
    fn quirks_turn_numbers_into_strings_and_add_unknown_fields() {
        let mut v = json!({"tag_group": [{"order": 3, "create_time": 5, "name": 7}]});
        apply_quirks(
            &mut v,
            Quirks {
                numbers_as_strings: true,
                extra_fields: true,
            },
        );
        assert_eq!(v["tag_group"][0]["order"], json!("3"));
        assert_eq!(v["tag_group"][0]["create_time"], json!("5"));
        assert_eq!(v["tag_group"][0]["name"], json!(7));
        assert!(v["sim_unknown_field"].is_object());
    }

    #[test]
    fn shuffle_events_have_no_tag_type_and_strategy_ids_are_bare() {
        let e = EventChange::Tag {
            change: "shuffle",
            id: String::new(),
            tag_type: None,
            strategy_id: Some(4),
        };
        let (event, change, fields) = e.fields();
        assert_eq!((event, change), ("change_external_tag", "shuffle"));
        assert!(fields.iter().all(|(n, _, _)| *n != "TagType"));
        assert!(fields.contains(&("StrategyId", "4".into(), true)));
    }
}
