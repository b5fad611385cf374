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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Done,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    pub pages_done: u64,
    pub pages_known: u64,
    pub entities_compared: u64,
}

/// A full reconciliation run.
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
    #[serde(default)]
    pub error: Option<String>,
    #[serde(skip)]
    pub version: u64,
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
