//! Members and customers: a mall member bound to a WeCom customer, the hub's member tag
//! set, and the customer's follow relations in WeCom (where tags actually live).

use super::ids::{ExternalUserId, HubTagId, MemberId, TenantId, WecomTagId, WecomUserId};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A mall member and the WeCom customer it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberBinding {
    pub tenant: TenantId,
    pub member_id: MemberId,
    pub external_userid: Option<ExternalUserId>,
    pub unionid: Option<String>,
    pub bound_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}

/// The hub's view of one (member, tag) pair: present or not, and when that was decided
/// (member tags merge per pair by time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagMark {
    pub present: bool,
    pub at: Timestamp,
}

/// A member's tags in the hub, with the mall's base (the tag set last confirmed there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTags {
    pub tenant: TenantId,
    pub member_id: MemberId,
    pub marks: BTreeMap<HubTagId, TagMark>,
    #[serde(default)]
    pub mall_base: BTreeSet<HubTagId>,
    #[serde(skip)]
    pub version: u64,
}

impl MemberTags {
    /// A member the hub has no tags for yet (never stored).
    pub fn empty(tenant: &TenantId, member: &MemberId) -> Self {
        Self {
            tenant: tenant.clone(),
            member_id: member.clone(),
            marks: BTreeMap::new(),
            mall_base: BTreeSet::new(),
            version: 0,
        }
    }

    /// The tags the member has (marks that say present), in id order.
    pub fn present(&self) -> Vec<HubTagId> {
        self.marks
            .iter()
            .filter(|(_, m)| m.present)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A WeCom customer's follow relations, each with the tag set last confirmed on it (the
/// WeCom base per relation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRelations {
    pub tenant: TenantId,
    pub external_userid: ExternalUserId,
    pub relations: BTreeMap<WecomUserId, BTreeSet<WecomTagId>>,
    /// Relations a member job is marking: written before its `mark_tag` calls and cleared with
    /// the bases written after them, so that whoever reads the relation in between (a run's
    /// page, the job's retry after its process died) takes what the job may have applied for
    /// tagsync's own, not the relation's change (`sync::members::relation_base`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marking: BTreeMap<WecomUserId, Marking>,
    /// When this record last changed (a base or a marking written).
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}

/// One relation's `mark_tag` in flight: the WeCom tags it adds and removes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marking {
    pub add: BTreeSet<WecomTagId>,
    pub remove: BTreeSet<WecomTagId>,
}
