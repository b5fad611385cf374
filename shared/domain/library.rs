//! The tag library as the hub holds it: groups and tags, each with its link to every side
//! (the side's id, the last state seen in sync there — the base — and the sync state).

use super::ids::{
    HubGroupId, HubTagId, MallGroupId, MallTagId, TenantId, WecomGroupId, WecomTagId,
};
use super::scope::GroupScope;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The two sides tagsync syncs the hub with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Wecom,
    Mall,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Wecom => "wecom",
            Side::Mall => "mall",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of library object an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Group,
    Tag,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Group => "group",
            EntityKind::Tag => "tag",
        }
    }
}

/// An object's sync state on one side, as the admin API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Synced,
    #[default]
    Pending,
    Failed,
    /// WeCom will not let this app edit the object (created in the console or by another app).
    ReadOnly,
}

/// The fields of a group that sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub name: String,
    pub order: u32,
}

/// The fields of a tag that sync (the group as the hub names it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSnapshot {
    pub name: String,
    pub order: u32,
    pub group_id: HubGroupId,
}

/// An object's link to one side: the side's id once created there, the base (the last state
/// both agreed on), and where syncing it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideLink<I, S> {
    pub id: Option<I>,
    pub base: Option<S>,
    #[serde(default)]
    pub state: SyncState,
    #[serde(default)]
    pub error: Option<String>,
}

impl<I, S> SideLink<I, S> {
    /// Syncing to this side failed for good: shown with its reason until a later try succeeds.
    pub fn fail(&mut self, reason: &str) {
        self.state = SyncState::Failed;
        self.error = Some(reason.to_owned());
    }

    /// The side confirmed a write: it holds `base`, and a failure shown before is over.
    pub fn synced(&mut self, base: Option<S>) {
        self.base = base;
        self.state = SyncState::Synced;
        self.error = None;
    }
}

impl<I, S> Default for SideLink<I, S> {
    fn default() -> Self {
        Self {
            id: None,
            base: None,
            state: SyncState::Pending,
            error: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagGroup {
    pub tenant: TenantId,
    pub id: HubGroupId,
    pub name: String,
    pub order: u32,
    /// When each field last changed (the later change wins a conflict).
    pub name_at: Timestamp,
    pub order_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    #[serde(default)]
    pub wecom: SideLink<WecomGroupId, GroupSnapshot>,
    #[serde(default)]
    pub mall: SideLink<MallGroupId, GroupSnapshot>,
    /// The WeCom rule group the group belongs to; `None`: the corp library, seen by everyone.
    #[serde(default)]
    pub scope: Option<GroupScope>,
    /// Whether a scoped group is carried to the mall (which has no scopes). Always true for an
    /// unscoped group.
    #[serde(default = "super::scope::carried_by_default")]
    pub carry_to_mall: bool,
    #[serde(skip)]
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub tenant: TenantId,
    pub id: HubTagId,
    pub group_id: HubGroupId,
    pub name: String,
    pub order: u32,
    pub name_at: Timestamp,
    pub order_at: Timestamp,
    pub group_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    #[serde(default)]
    pub wecom: SideLink<WecomTagId, TagSnapshot>,
    #[serde(default)]
    pub mall: SideLink<MallTagId, TagSnapshot>,
    #[serde(skip)]
    pub version: u64,
}

/// One entry of the id map: side object ↔ hub object. Written in the same transaction as the
/// object's link and only if absent, so a side id maps to at most one hub object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdLink {
    pub tenant: TenantId,
    pub side: Side,
    pub kind: EntityKind,
    pub side_id: String,
    pub hub_id: String,
}
