//! What the library rules need of a group or a tag, so that one rule (the merge, a name
//! collision, a temporary name) serves both kinds instead of a mirrored copy per kind.

use super::collision::is_temporary_name;
use crate::domain::{
    EntityKind, GroupSnapshot, HubGroupId, HubTagId, MallGroupId, MallTagId, Side, SideLink,
    SyncState, Tag, TagGroup, TagSnapshot, TenantId, Timestamp, WecomGroupId, WecomTagId,
};
use std::fmt;

/// A tag group or a tag as the hub holds it.
pub trait LibraryObject: Clone + Send + Sync {
    type Id: Clone + Ord + fmt::Display + Send + Sync;
    type WecomId: Clone + PartialEq + fmt::Display + Send + Sync;
    type MallId: Clone + PartialEq + fmt::Display + Send + Sync;
    /// The fields that sync (name, order, and a tag's group).
    type Snapshot: Clone + PartialEq + Send + Sync;
    /// Where a name must be unique on a side: everywhere for groups (`()`), within its group
    /// for tags.
    type Scope: Clone + PartialEq + Send + Sync;

    const KIND: EntityKind;

    fn tenant(&self) -> &TenantId;
    fn id(&self) -> &Self::Id;
    /// The hub id the id map holds as `raw` (it holds only ids the hub made).
    fn hub_id(raw: String) -> Self::Id;
    fn name(&self) -> &str;
    fn scope(&self) -> Self::Scope;
    fn is_deleted(&self) -> bool;
    fn set_deleted(&mut self, at: Timestamp);
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    fn wecom(&self) -> &SideLink<Self::WecomId, Self::Snapshot>;
    fn wecom_mut(&mut self) -> &mut SideLink<Self::WecomId, Self::Snapshot>;
    fn mall(&self) -> &SideLink<Self::MallId, Self::Snapshot>;
    fn mall_mut(&mut self) -> &mut SideLink<Self::MallId, Self::Snapshot>;
    fn snapshot_name(s: &Self::Snapshot) -> &str;
    fn snapshot_name_mut(s: &mut Self::Snapshot) -> &mut String;
    fn snapshot_scope(s: &Self::Snapshot) -> Self::Scope;
    /// Where the object was before the change that brought it to its name (or scope), as a
    /// side's base still shows it, and when that change was made; `None` when every base
    /// agrees with the hub.
    fn came_from(&self) -> Option<(Timestamp, Self::Snapshot)>;

    /// Whether `side` holds an object of its own for this one.
    fn linked_on(&self, side: Side) -> bool {
        match side {
            Side::Wecom => self.wecom().id.is_some(),
            Side::Mall => self.mall().id.is_some(),
        }
    }

    /// `side`'s id of its object for this one, as the id map and job hints write it.
    fn side_id(&self, side: Side) -> Option<String> {
        match side {
            Side::Wecom => self.wecom().id.as_ref().map(ToString::to_string),
            Side::Mall => self.mall().id.as_ref().map(ToString::to_string),
        }
    }

    /// The base on `side`: what tagsync knows that side to hold.
    fn base_on(&self, side: Side) -> Option<&Self::Snapshot> {
        match side {
            Side::Wecom => self.wecom().base.as_ref(),
            Side::Mall => self.mall().base.as_ref(),
        }
    }

    fn base_on_mut(&mut self, side: Side) -> Option<&mut Self::Snapshot> {
        match side {
            Side::Wecom => self.wecom_mut().base.as_mut(),
            Side::Mall => self.mall_mut().base.as_mut(),
        }
    }

    /// Retires the object in the hub at `at` without touching any side (merged into
    /// another): deleted, linked nowhere.
    fn retire(&mut self, at: Timestamp) {
        self.set_deleted(at);
        *self.wecom_mut() = SideLink {
            state: SyncState::Synced,
            ..SideLink::default()
        };
        *self.mall_mut() = SideLink {
            state: SyncState::Synced,
            ..SideLink::default()
        };
    }

    /// Shows `side` failed, with the reason, until a try there succeeds.
    fn fail_on(&mut self, side: Side, reason: &str) {
        match side {
            Side::Wecom => self.wecom_mut().fail(reason),
            Side::Mall => self.mall_mut().fail(reason),
        }
    }
}

/// The accessors groups and tags share field for field.
macro_rules! common_fields {
    ($id:ty, $wecom:ty, $mall:ty, $snapshot:ty) => {
        fn tenant(&self) -> &TenantId {
            &self.tenant
        }
        fn id(&self) -> &$id {
            &self.id
        }
        fn hub_id(raw: String) -> $id {
            <$id>::new_unchecked(raw)
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn is_deleted(&self) -> bool {
            self.deleted_at.is_some()
        }
        fn set_deleted(&mut self, at: Timestamp) {
            self.deleted_at = Some(at);
        }
        fn version(&self) -> u64 {
            self.version
        }
        fn set_version(&mut self, version: u64) {
            self.version = version;
        }
        fn wecom(&self) -> &SideLink<$wecom, $snapshot> {
            &self.wecom
        }
        fn wecom_mut(&mut self) -> &mut SideLink<$wecom, $snapshot> {
            &mut self.wecom
        }
        fn mall(&self) -> &SideLink<$mall, $snapshot> {
            &self.mall
        }
        fn mall_mut(&mut self) -> &mut SideLink<$mall, $snapshot> {
            &mut self.mall
        }
        fn snapshot_name(s: &$snapshot) -> &str {
            &s.name
        }
        fn snapshot_name_mut(s: &mut $snapshot) -> &mut String {
            &mut s.name
        }
    };
}

impl LibraryObject for TagGroup {
    type Id = HubGroupId;
    type WecomId = WecomGroupId;
    type MallId = MallGroupId;
    type Snapshot = GroupSnapshot;
    type Scope = ();

    const KIND: EntityKind = EntityKind::Group;

    common_fields!(HubGroupId, WecomGroupId, MallGroupId, GroupSnapshot);

    fn scope(&self) {}
    fn snapshot_scope(_: &GroupSnapshot) {}
    /// A group renamed onto another's name came from the name a side's base still shows
    /// (not a temporary one: see [`is_temporary_name`]).
    fn came_from(&self) -> Option<(Timestamp, GroupSnapshot)> {
        let id = self.id.to_string();
        let base = [self.wecom.base.as_ref(), self.mall.base.as_ref()]
            .into_iter()
            .flatten()
            .find(|b| b.name != self.name && !is_temporary_name(&b.name, &id))?;
        Some((
            self.name_at,
            GroupSnapshot {
                name: base.name.clone(),
                order: self.order,
            },
        ))
    }
}

impl LibraryObject for Tag {
    type Id = HubTagId;
    type WecomId = WecomTagId;
    type MallId = MallTagId;
    type Snapshot = TagSnapshot;
    type Scope = HubGroupId;

    const KIND: EntityKind = EntityKind::Tag;

    common_fields!(HubTagId, WecomTagId, MallTagId, TagSnapshot);

    fn scope(&self) -> HubGroupId {
        self.group_id.clone()
    }
    fn snapshot_scope(s: &TagSnapshot) -> HubGroupId {
        s.group_id.clone()
    }
    /// Its former name, or else its former group, as a side's base still shows it (a
    /// temporary name is no former name: see [`is_temporary_name`]).
    fn came_from(&self) -> Option<(Timestamp, TagSnapshot)> {
        let id = self.id.to_string();
        let here = TagSnapshot {
            name: self.name.clone(),
            order: self.order,
            group_id: self.group_id.clone(),
        };
        [self.wecom.base.as_ref(), self.mall.base.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|b| {
                if b.name != self.name && !is_temporary_name(&b.name, &id) {
                    let name = b.name.clone();
                    Some((
                        self.name_at,
                        TagSnapshot {
                            name,
                            ..here.clone()
                        },
                    ))
                } else if b.group_id != self.group_id {
                    let group_id = b.group_id.clone();
                    Some((
                        self.group_at,
                        TagSnapshot {
                            group_id,
                            ..here.clone()
                        },
                    ))
                } else {
                    None
                }
            })
    }
}
