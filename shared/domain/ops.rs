//! What tagsync records about its own work: audit entries, sync runs, cached access tokens.

use super::ids::{CorpId, RunId, TenantId};
use super::tenant::Secret;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a change was applied, or who caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    Wecom,
    Mall,
    Hub,
    Operator,
    System,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Wecom => "wecom",
            Actor::Mall => "mall",
            Actor::Hub => "hub",
            Actor::Operator => "operator",
            Actor::System => "system",
        }
    }
}

/// One change applied to one side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub tenant: TenantId,
    pub at: Timestamp,
    /// The side the change was applied to.
    pub side: Actor,
    pub action: String,
    /// e.g. `tag:0193…` or `member:m_42`.
    pub entity: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// Who caused it: a side, an operator, or the system (e.g. `mall`, `operator`, `nightly`).
    pub origin: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunScope {
    Library,
    Members,
    All,
    /// Bulk tagging by a customer filter (`crate::jobs::bulk_tags`): no chains, see
    /// [`SyncRun::bulk`].
    Bulk,
    /// An undo of a rule's firings (automation.md §1, `crate::jobs::undo`).
    Undo,
    /// A customer transfer (`crate::jobs::transfers`): no chains, see [`SyncRun::transfer`].
    Transfer,
}

impl RunScope {
    /// The chain a run of this scope starts with, and what it walks.
    pub fn first_chain(self) -> (&'static str, Walk) {
        match self {
            RunScope::Library | RunScope::All => ("library", Walk::Library),
            RunScope::Members => ("mall_members", Walk::MallMembers),
            // A bulk run walks no side; its chain is only a placeholder (cleared at start).
            RunScope::Bulk => ("bulk", Walk::Library),
            RunScope::Undo => ("undo", Walk::Firings),
            // Like a bulk run: a placeholder, cleared at start.
            RunScope::Transfer => ("transfer", Walk::Library),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Done,
    Failed,
    /// Stopped by the operator (bulk runs): what it applied before stays applied.
    Cancelled,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    pub pages_done: u64,
    pub pages_known: u64,
    pub entities_compared: u64,
}

/// A full reconciliation run. It proceeds as chains of page jobs; the run item records where
/// each chain stands, so a page job is "advance chain C by one page" (level-triggered: a
/// duplicate or a redelivery after a crash finds the chain already past its page and stops).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    pub tenant: TenantId,
    pub id: RunId,
    pub scope: RunScope,
    pub status: RunStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub progress: RunProgress,
    pub drift: BTreeMap<String, u64>,
    pub repaired: BTreeMap<String, u64>,
    /// What the run saw and left alone on purpose (read-only tags, rule-group tags, customers
    /// bound to no member, repairs handed to the queue).
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
    #[serde(default)]
    pub error: Option<String>,
    /// Who started it: `operator` (the admin API) or `system` (the nightly trigger).
    #[serde(default = "default_origin")]
    pub origin: Actor,
    /// When a page last moved the run on (a run that stops moving is reported stalled).
    #[serde(default)]
    pub progressed_at: Option<Timestamp>,
    /// Where every chain of the run stands, by chain name.
    #[serde(default)]
    pub chains: BTreeMap<String, Chain>,
    /// Ambiguous onboarding matches, left unlinked for the operator to resolve.
    #[serde(default)]
    pub ambiguous: Vec<String>,
    /// A bulk run's filter, changes and counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<Box<super::bulk::BulkState>>,
    /// A transfer: who hands which customers to whom, and where each stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Box<super::transfer::TransferState>>,
    /// An undo run: the rule it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<super::ids::RuleId>,
    /// A run that marks WeCom relations: how many `mark_tag` calls the pages read so far need
    /// and when the rate budget lets the last of them go (`sync::pace`), kept current as pages
    /// are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<Planned>,
    /// An undo run: (customer, tag) pairs left alone because someone else changed them after
    /// the firing, each `{"customer", "tag_id", "reason"}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<serde_json::Value>,
    #[serde(skip)]
    pub version: u64,
}

fn default_origin() -> Actor {
    Actor::Operator
}

/// What a chain walks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "walk", rename_all = "snake_case")]
pub enum Walk {
    /// Both libraries, one page (they are small).
    Library,
    /// The mall's members, `GET /members` page by page.
    MallMembers,
    /// WeCom's members with customer contact (`get_follow_user_list`), one page: it splits
    /// them into `wecom_relations` chains.
    WecomUsers,
    /// The relations of up to 100 WeCom members, `batch/get_by_user` page by page. Their
    /// userids are stored apart from the run item (`users_apart`: `Store::get_chain_users`,
    /// so that the run item stays far below DynamoDB's 400 KB however large the corp); runs
    /// recorded before that hold them in `users`.
    WecomRelations {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        users_apart: bool,
    },
    /// A rule's firings, newest first, page by page (an undo run).
    Firings,
}

/// One chain of page jobs: its walk, the next page's number and cursor, and whether it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    #[serde(flatten)]
    pub walk: Walk,
    /// Pages done so far (the next page's number).
    pub page: u64,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub done: bool,
    /// The chain that created this one (its job re-sends this chain's first job if a crash
    /// came between recording the chain and sending that job).
    #[serde(default)]
    pub parent: Option<String>,
    /// What the next page found, recorded before its repairs: a page redone after a crash
    /// reports what was found the first time, not the remainder its first try left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<Found>,
    /// The chain's page job is parked: the run is failed until a redrive of it succeeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
}

impl Chain {
    /// A chain not walked yet, created by `parent` (`None`: the run's first chain).
    pub fn new(walk: Walk, parent: Option<&str>) -> Self {
        Self {
            walk,
            page: 0,
            cursor: None,
            done: false,
            parent: parent.map(str::to_owned),
            found: None,
            parked: false,
        }
    }
}

/// Which rate window spreads a run's calls out (see [`Planned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    Minute,
    Hour,
}

/// A run's plan of its WeCom `mark_tag` calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// Relations the pages read so far found differing from the tags the hub wants: one
    /// `mark_tag` each (pages not yet read add theirs when they are).
    pub mark_tag_calls: u64,
    /// Of those, the calls not yet made when the plan was made (the rest went inline).
    pub remaining: u64,
    /// When the rate budget lets the last remaining call go, if the run's calls take every
    /// slot it leaves from `planned_at` on.
    pub finish_at: Timestamp,
    /// `hour` or `minute`: the window that spreads them out; `None` when they all fit now.
    pub limited_by: Option<LimitedBy>,
    pub planned_at: Timestamp,
}

/// The drift one page found (see [`Chain::found`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// Relations the page found needing a `mark_tag` (see [`Planned::mark_tag_calls`]).
    #[serde(default)]
    pub marks: u64,
    pub page: u64,
    pub drift: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    pub compared: u64,
    pub ambiguous: Vec<String>,
}

impl SyncRun {
    pub fn new(
        tenant: TenantId,
        id: RunId,
        scope: RunScope,
        origin: Actor,
        now: Timestamp,
    ) -> Self {
        let first = scope.first_chain();
        let mut chains = BTreeMap::new();
        chains.insert(first.0.to_owned(), Chain::new(first.1, None));
        let mut run = Self {
            tenant,
            id,
            scope,
            status: RunStatus::Running,
            started_at: now,
            finished_at: None,
            progress: RunProgress::default(),
            drift: BTreeMap::new(),
            repaired: BTreeMap::new(),
            skipped: BTreeMap::new(),
            error: None,
            origin,
            progressed_at: Some(now),
            chains,
            ambiguous: Vec::new(),
            bulk: None,
            transfer: None,
            rule_id: None,
            planned: None,
            kept: Vec::new(),
            version: 0,
        };
        run.recount();
        run
    }

    /// Progress from the chains: pages done, and pages known (done, plus the next page of
    /// every open chain: walks learn their length only as they go).
    pub fn recount(&mut self) {
        self.progress.pages_done = self.chains.values().map(|c| c.page).sum();
        self.progress.pages_known =
            self.progress.pages_done + self.chains.values().filter(|c| !c.done).count() as u64;
    }

    pub fn all_chains_done(&self) -> bool {
        self.chains.values().all(|c| c.done)
    }

    pub fn add(map: &mut BTreeMap<String, u64>, counts: &BTreeMap<String, u64>) {
        for (k, v) in counts {
            if *v > 0 {
                *map.entry(k.clone()).or_default() += v;
            }
        }
    }
}

/// A WeCom access token, one per (corp, secret), shared by every process through the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    pub corp_id: CorpId,
    /// A fingerprint of the secret (never the secret itself) telling apps of one corp apart.
    pub secret_fingerprint: String,
    pub token: Secret,
    pub expires_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}
