//! Merge and plan for one library object (a group or a tag).
//!
//! Detection is three-way against each side's base: a side whose snapshot differs from its
//! base changed those fields at its observation time; a side that is absent while it has a
//! base deleted the object. Per field the latest change wins; on equal times the hub beats
//! the mall, which beats WeCom (the hub carries operator edits, the mall carries real event
//! times, WeCom only observation times). A delete beats any rename, whatever the times, and a
//! deleted object is never resurrected (hub ids are not reused).

use super::object::LibraryObject;
use crate::domain::{
    GroupSnapshot, HubGroupId, HubTagId, MallGroupId, MallTagId, SideLink, SyncState, Tag,
    TagGroup, TagSnapshot, TenantId, Timestamp, WecomGroupId, WecomTagId,
};

/// What one side shows for the object right now: its id there and its fields, or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen<I, S> {
    Present(I, S),
    Absent,
}

impl<I, S> Seen<I, S> {
    pub fn as_option(&self) -> Option<&S> {
        match self {
            Seen::Present(_, s) => Some(s),
            Seen::Absent => None,
        }
    }
}

/// One side's observation: what it shows, when (the mall: the webhook's `occurred_at`;
/// WeCom: the observation time, its callbacks carry none), and whether tagsync may edit it
/// there (WeCom console tags are read-only to the app).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed<I, S> {
    pub seen: Seen<I, S>,
    pub at: Timestamp,
    pub read_only: bool,
}

impl<I, S> Observed<I, S> {
    /// The side shows the object `id` with `snapshot`.
    pub fn present(id: I, snapshot: S, at: Timestamp) -> Self {
        Self {
            seen: Seen::Present(id, snapshot),
            at,
            read_only: false,
        }
    }

    pub fn absent(at: Timestamp) -> Self {
        Self {
            seen: Seen::Absent,
            at,
            read_only: false,
        }
    }

    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// The one operation planned for one side. Operations on the side's object carry its id
/// there (`I`), and those that make an object carry what it becomes (`S`), so the engine that
/// applies them never has to look for either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LibraryOp<I, S> {
    Nothing,
    /// Create as `after` (also the plan's `base_after`). A WeCom group is created together
    /// with its first tag (WeCom refuses empty groups).
    Create {
        after: S,
    },
    /// Only the fields that differ are set.
    Update {
        id: I,
        name: Option<String>,
        order: Option<u32>,
    },
    /// A tag changes group (plus any other field that differs) to become `after`. WeCom has
    /// no move: create in the new group, re-mark every relation that carried the old id,
    /// delete the old one.
    Move {
        id: I,
        to_group: HubGroupId,
        name: Option<String>,
        order: Option<u32>,
        after: S,
    },
    Delete {
        id: I,
    },
    /// The side needs a write tagsync may not make (a read-only WeCom object): leave it as it
    /// is and show `read_only`. Already recorded in the merged hub object; no remote call.
    MarkReadOnly,
}

/// A side's operation and the base its link gets once the side confirms it (`None`: the
/// object is gone there). For `Nothing` and `MarkReadOnly` the merged hub object already
/// carries that base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidePlan<I, S> {
    pub op: LibraryOp<I, S>,
    pub base_after: Option<S>,
}

/// The plan for both sides: WeCom's ids are `W`, the mall's `M`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<W, M, S> {
    pub wecom: SidePlan<W, S>,
    pub mall: SidePlan<M, S>,
}

impl<W, M, S> Plan<W, M, S> {
    /// An echo or a duplicate: nothing to send anywhere.
    pub fn is_nothing(&self) -> bool {
        matches!(self.wecom.op, LibraryOp::Nothing) && matches!(self.mall.op, LibraryOp::Nothing)
    }
}

pub type GroupPlan = Plan<WecomGroupId, MallGroupId, GroupSnapshot>;
pub type TagPlan = Plan<WecomTagId, MallTagId, TagSnapshot>;
/// Observations of a group and of a tag on WeCom and on the mall.
pub type WecomGroupSeen = Observed<WecomGroupId, GroupSnapshot>;
pub type MallGroupSeen = Observed<MallGroupId, GroupSnapshot>;
pub type WecomTagSeen = Observed<WecomTagId, TagSnapshot>;
pub type MallTagSeen = Observed<MallTagId, TagSnapshot>;

/// The merged hub object (fields, their times, `deleted_at`, and the links of the sides that
/// need no remote call) and the plan for the sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged<T, P> {
    pub hub: T,
    pub plan: P,
}

/// What the group merge needs to know about the group's tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GroupFacts {
    /// Live (not deleted) hub tags in the group after this job.
    pub live_tags: usize,
    /// The worker knows WeCom dropped the group because its last tag went (not an explicit
    /// group deletion).
    pub wecom_dropped: bool,
}

/// Merges one group. `None` when nobody has it (no hub object and both sides absent).
///
/// A WeCom group absent while it has a base is a deletion only if the group still has live
/// tags and the worker did not flag it as dropped; otherwise WeCom merely dropped an empty
/// group: its link is cleared and it is recreated with the next tag.
pub fn merge_group(
    tenant: &TenantId,
    id: &HubGroupId,
    hub: Option<&TagGroup>,
    wecom: &WecomGroupSeen,
    mall: &MallGroupSeen,
    facts: GroupFacts,
) -> Option<Merged<TagGroup, GroupPlan>> {
    let dropped = hub.is_some_and(|h| h.wecom.base.is_some())
        && wecom.seen == Seen::Absent
        && (facts.wecom_dropped || facts.live_tags == 0);
    // WeCom refuses empty groups: the group waits for a tag there.
    merge_object(tenant, id, hub, wecom, mall, dropped, facts.live_tags == 0)
}

/// Merges one tag. `None` when nobody has it (no hub object and both sides absent).
pub fn merge_tag(
    tenant: &TenantId,
    id: &HubTagId,
    hub: Option<&Tag>,
    wecom: &WecomTagSeen,
    mall: &MallTagSeen,
) -> Option<Merged<Tag, TagPlan>> {
    merge_object(tenant, id, hub, wecom, mall, false, false)
}

/// The merge of one object of either kind. `wecom_dropped`: WeCom's base no longer counts
/// (WeCom dropped the object, which is no deletion) and its link is cleared; `wait_for_tags`:
/// an object absent in WeCom is not created there yet.
fn merge_object<T: Mergeable>(
    tenant: &TenantId,
    id: &T::Id,
    hub: Option<&T>,
    wecom: &Observed<T::WecomId, T::Snapshot>,
    mall: &Observed<T::MallId, T::Snapshot>,
    wecom_dropped: bool,
    wait_for_tags: bool,
) -> Option<Merged<T, Plan<T::WecomId, T::MallId, T::Snapshot>>> {
    let wecom_base = hub
        .and_then(|h| h.wecom().base.as_ref())
        .filter(|_| !wecom_dropped);
    let core = merge_core(
        hub.map(T::core),
        [
            SideIn::new(wecom_base, wecom, WECOM),
            SideIn::new(hub.and_then(|h| h.mall().base.as_ref()), mall, MALL),
        ],
    )?;
    let deleted = core.deleted_at.is_some();
    let (v, pending) = (&core.value, SyncState::Pending);
    let wecom_state = hub.map_or(pending, |h| h.wecom().state);
    let (wecom_plan, wecom_now) = plan_side(v, deleted, wecom, wecom_state, wait_for_tags, T::diff);
    let mall_state = hub.map_or(pending, |h| h.mall().state);
    let (mall_plan, mall_now) = plan_side(v, deleted, mall, mall_state, false, T::diff);
    let mut out = match hub {
        Some(h) => h.clone(),
        None => T::blank(tenant, id, &core.value),
    };
    if wecom_dropped {
        *out.wecom_mut() = SideLink::default();
    }
    out.set_core(core);
    wecom_now.write(out.wecom_mut());
    mall_now.write(out.mall_mut());
    Some(Merged {
        hub: out,
        plan: Plan {
            wecom: wecom_plan,
            mall: mall_plan,
        },
    })
}

/// How the merge reads and writes one kind's hub object field by field.
trait Mergeable: LibraryObject<Snapshot: Fields> {
    fn core(&self) -> Core<Self::Snapshot>;
    /// A new hub object, before the merged fields are set.
    fn blank(tenant: &TenantId, id: &Self::Id, value: &Self::Snapshot) -> Self;
    fn set_core(&mut self, core: Core<Self::Snapshot>);
    /// The operation that takes a side's object from `seen` to `merged`.
    fn diff<I>(
        id: I,
        seen: &Self::Snapshot,
        merged: &Self::Snapshot,
    ) -> LibraryOp<I, Self::Snapshot>;
}

impl Mergeable for TagGroup {
    fn core(&self) -> Core<GroupSnapshot> {
        Core {
            value: GroupSnapshot {
                name: self.name.clone(),
                order: self.order,
            },
            at: vec![self.name_at, self.order_at],
            deleted_at: self.deleted_at,
        }
    }
    fn blank(tenant: &TenantId, id: &HubGroupId, _: &GroupSnapshot) -> Self {
        TagGroup {
            tenant: tenant.clone(),
            id: id.clone(),
            name: String::new(),
            order: 0,
            name_at: Timestamp::default(),
            order_at: Timestamp::default(),
            deleted_at: None,
            wecom: SideLink::default(),
            mall: SideLink::default(),
            scope: None,
            carry_to_mall: true,
            version: 0,
        }
    }
    fn set_core(&mut self, core: Core<GroupSnapshot>) {
        self.name = core.value.name;
        self.order = core.value.order;
        self.name_at = core.at[0];
        self.order_at = core.at[1];
        self.deleted_at = core.deleted_at;
    }
    fn diff<I>(id: I, seen: &GroupSnapshot, merged: &GroupSnapshot) -> LibraryOp<I, GroupSnapshot> {
        LibraryOp::Update {
            id,
            name: changed(&seen.name, &merged.name),
            order: changed(&seen.order, &merged.order),
        }
    }
}

impl Mergeable for Tag {
    fn core(&self) -> Core<TagSnapshot> {
        Core {
            value: TagSnapshot {
                name: self.name.clone(),
                order: self.order,
                group_id: self.group_id.clone(),
            },
            at: vec![self.name_at, self.order_at, self.group_at],
            deleted_at: self.deleted_at,
        }
    }
    fn blank(tenant: &TenantId, id: &HubTagId, value: &TagSnapshot) -> Self {
        Tag {
            tenant: tenant.clone(),
            id: id.clone(),
            group_id: value.group_id.clone(),
            name: String::new(),
            order: 0,
            name_at: Timestamp::default(),
            order_at: Timestamp::default(),
            group_at: Timestamp::default(),
            deleted_at: None,
            wecom: SideLink::default(),
            mall: SideLink::default(),
            version: 0,
        }
    }
    fn set_core(&mut self, core: Core<TagSnapshot>) {
        self.name = core.value.name;
        self.order = core.value.order;
        self.group_id = core.value.group_id;
        self.name_at = core.at[0];
        self.order_at = core.at[1];
        self.group_at = core.at[2];
        self.deleted_at = core.deleted_at;
    }
    /// A change of group is a move (plus any other field that differs).
    fn diff<I>(id: I, seen: &TagSnapshot, merged: &TagSnapshot) -> LibraryOp<I, TagSnapshot> {
        let name = changed(&seen.name, &merged.name);
        let order = changed(&seen.order, &merged.order);
        match changed(&seen.group_id, &merged.group_id) {
            Some(to_group) => LibraryOp::Move {
                id,
                to_group,
                name,
                order,
                after: merged.clone(),
            },
            None => LibraryOp::Update { id, name, order },
        }
    }
}

// Tie-break ranks: on equal times the higher rank wins.
const WECOM: u8 = 0;
const MALL: u8 = 1;
const HUB: u8 = 2;

/// Field-wise access to a snapshot, so groups and tags share one merge.
trait Fields: Clone + PartialEq {
    const COUNT: usize;
    fn same(&self, other: &Self, field: usize) -> bool;
    fn take(&mut self, from: &Self, field: usize);
}

impl Fields for GroupSnapshot {
    const COUNT: usize = 2;
    fn same(&self, other: &Self, field: usize) -> bool {
        match field {
            0 => self.name == other.name,
            _ => self.order == other.order,
        }
    }
    fn take(&mut self, from: &Self, field: usize) {
        match field {
            0 => self.name = from.name.clone(),
            _ => self.order = from.order,
        }
    }
}

impl Fields for TagSnapshot {
    const COUNT: usize = 3;
    fn same(&self, other: &Self, field: usize) -> bool {
        match field {
            0 => self.name == other.name,
            1 => self.order == other.order,
            _ => self.group_id == other.group_id,
        }
    }
    fn take(&mut self, from: &Self, field: usize) {
        match field {
            0 => self.name = from.name.clone(),
            1 => self.order = from.order,
            _ => self.group_id = from.group_id.clone(),
        }
    }
}

/// The hub's state in field-wise form (`at[i]`: when field `i` last changed).
struct Core<S> {
    value: S,
    at: Vec<Timestamp>,
    deleted_at: Option<Timestamp>,
}

/// One side as the merge of fields sees it (the side's id does not matter there).
struct SideIn<'a, S> {
    base: Option<&'a S>,
    seen: Option<&'a S>,
    at: Timestamp,
    rank: u8,
}

impl<'a, S> SideIn<'a, S> {
    fn new<I>(base: Option<&'a S>, obs: &'a Observed<I, S>, rank: u8) -> Self {
        Self {
            base,
            seen: obs.seen.as_option(),
            at: obs.at,
            rank,
        }
    }
}

fn merge_core<S: Fields>(hub: Option<Core<S>>, sides: [SideIn<'_, S>; 2]) -> Option<Core<S>> {
    let deletes = sides
        .iter()
        .filter(|s| s.base.is_some() && s.seen.is_none())
        .map(|s| s.at);
    let (mut value, mut at, hub_deleted) = match hub {
        Some(h) => (h.value, h.at, h.deleted_at),
        None => {
            // New to the hub: no side has a base, so neither has per-field times; the present
            // side with the latest time (then the tie-break) supplies the whole object.
            let first = sides
                .iter()
                .filter_map(|s| s.seen.map(|v| (s.at, s.rank, v)))
                .max_by_key(|(t, r, _)| (*t, *r))?;
            (first.2.clone(), vec![first.0; S::COUNT], None)
        }
    };
    // The first delete stands; later deletes or renames do not move it.
    let deleted_at = hub_deleted.or_else(|| deletes.min());
    if deleted_at.is_none() {
        for (field, field_at) in at.iter_mut().enumerate() {
            let mut best: (Timestamp, u8, Option<&S>) = (*field_at, HUB, None);
            for side in &sides {
                let Some(seen) = side.seen else {
                    continue;
                };
                let changed = match side.base {
                    Some(base) => !seen.same(base, field),
                    // No base (just created or adopted there): the side claims every field
                    // at its time. Comparing with the hub instead would flip-flop once the
                    // hub moves.
                    None => true,
                };
                if changed && (side.at, side.rank) > (best.0, best.1) {
                    best = (side.at, side.rank, Some(seen));
                }
            }
            if let (t, _, Some(winner)) = best {
                value.take(winner, field);
                *field_at = t;
            }
        }
    }
    Some(Core {
        value,
        at,
        deleted_at,
    })
}

/// How a side's link changes now, before any remote call.
enum LinkNow<S> {
    /// The side already is where it should be (or may not be touched): store this base.
    Settled(Option<S>, SyncState),
    /// An operation is on its way: keep the base until the side confirms.
    Pending,
}

impl<S> LinkNow<S> {
    fn write<I>(self, link: &mut SideLink<I, S>) {
        match self {
            LinkNow::Settled(base, state) => {
                if base.is_none() {
                    link.id = None;
                }
                link.base = base;
                link.state = state;
                link.error = None;
            }
            // A side that failed shows it, with its reason, until a try succeeds there
            // (an operator's edit makes it pending again: the admin routes do that).
            LinkNow::Pending if link.state == SyncState::Failed => {}
            LinkNow::Pending => link.state = SyncState::Pending,
        }
    }
}

fn plan_side<I: Clone, S: Fields>(
    merged: &S,
    deleted: bool,
    obs: &Observed<I, S>,
    state: SyncState,
    wait_for_tags: bool,
    diff: fn(I, &S, &S) -> LibraryOp<I, S>,
) -> (SidePlan<I, S>, LinkNow<S>) {
    let seen = obs.seen.as_option();
    let settled_state = if obs.read_only {
        SyncState::ReadOnly
    } else {
        SyncState::Synced
    };
    let (op, base_after) = match &obs.seen {
        Seen::Absent if deleted => (LibraryOp::Nothing, None),
        // WeCom refuses empty groups: stay pending until the group has a tag.
        Seen::Absent if wait_for_tags => {
            return (
                SidePlan {
                    op: LibraryOp::Nothing,
                    base_after: None,
                },
                LinkNow::Settled(None, SyncState::Pending),
            );
        }
        Seen::Absent => (
            LibraryOp::Create {
                after: merged.clone(),
            },
            Some(merged.clone()),
        ),
        Seen::Present(id, _) if deleted => (LibraryOp::Delete { id: id.clone() }, None),
        Seen::Present(_, s) if s == merged => (LibraryOp::Nothing, Some(s.clone())),
        Seen::Present(id, s) => (diff(id.clone(), s, merged), Some(merged.clone())),
    };
    match op {
        LibraryOp::Nothing => (
            SidePlan {
                op,
                base_after: base_after.clone(),
            },
            LinkNow::Settled(base_after, settled_state),
        ),
        // Read-only: leave the side's object as it shows; say so once.
        _ if obs.read_only && seen.is_some() => {
            let op = if state == SyncState::ReadOnly {
                LibraryOp::Nothing
            } else {
                LibraryOp::MarkReadOnly
            };
            let base = seen.cloned();
            (
                SidePlan {
                    op,
                    base_after: base.clone(),
                },
                LinkNow::Settled(base, SyncState::ReadOnly),
            )
        }
        _ => (SidePlan { op, base_after }, LinkNow::Pending),
    }
}

fn changed<T: PartialEq + Clone>(from: &T, to: &T) -> Option<T> {
    (from != to).then(|| to.clone())
}

#[cfg(test)]
mod tests;
