//! A tag group's scope: the WeCom rule group (规则组, a "customer strategy") whose range of
//! departments and staff limits who sees and applies the group's tags (wecom-api.md §1.4).
//! An unscoped group lives in WeCom's corp tag library and everyone sees it.

use serde::{Deserialize, Serialize};

/// Most range nodes (departments + users) one WeCom rule group may hold (§1.4).
pub const MAX_RANGE_NODES: usize = 3000;

/// The rule group a hub tag group belongs to, with the range the operator chose.
///
/// `departments` and `users` are what the operator asked for; with `include_sub` on, tagsync
/// sends WeCom the departments together with all their sub-departments (WeCom's ranges do not
/// inherit: each level must be listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupScope {
    /// WeCom's id of the rule group, `None` until tagsync created it (or read it from WeCom).
    #[serde(default)]
    pub strategy_id: Option<u32>,
    /// The rule group's name in WeCom.
    pub name: String,
    /// WeCom department ids (`partyid`), ascending, no duplicates.
    #[serde(default)]
    pub departments: Vec<u32>,
    /// WeCom staff userids, ascending, no duplicates.
    #[serde(default)]
    pub users: Vec<String>,
    /// Whether the range also covers every sub-department of `departments`.
    #[serde(default)]
    pub include_sub: bool,
}

impl GroupScope {
    /// Whether the range names nobody (WeCom refuses such a rule group).
    pub fn is_empty(&self) -> bool {
        self.departments.is_empty() && self.users.is_empty()
    }
}

/// The default of `TagGroup::carry_to_mall`: a group reaches the mall unless switched off.
pub fn carried_by_default() -> bool {
    true
}
