use super::*;
use crate::domain::{MallGroupId, MallTagId, WecomGroupId, WecomTagId};
use crate::sync::collision::refused_change;
use proptest::prelude::*;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}
fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}
fn gid(s: &str) -> HubGroupId {
    HubGroupId::new_unchecked(s)
}
fn tid() -> HubTagId {
    HubTagId::new_unchecked("t1")
}
fn snap(name: &str, order: u32, group: &str) -> TagSnapshot {
    TagSnapshot {
        name: name.into(),
        order,
        group_id: gid(group),
    }
}
fn gsnap(name: &str, order: u32) -> GroupSnapshot {
    GroupSnapshot {
        name: name.into(),
        order,
    }
}
fn link<I, S: Clone>(id: I, base: &S) -> SideLink<I, S> {
    SideLink {
        id: Some(id),
        base: Some(base.clone()),
        state: SyncState::Synced,
        error: None,
    }
}
/// A tag in sync on both sides, every field last changed at `at`.
fn synced_tag(s: &TagSnapshot, at: Timestamp) -> Tag {
    Tag {
        tenant: tenant(),
        id: tid(),
        group_id: s.group_id.clone(),
        name: s.name.clone(),
        order: s.order,
        name_at: at,
        order_at: at,
        group_at: at,
        deleted_at: None,
        wecom: link(WecomTagId::test_id(), s),
        mall: link(MallTagId::test_id(), s),
        version: 3,
    }
}
fn synced_group(s: &GroupSnapshot, at: Timestamp) -> TagGroup {
    TagGroup {
        tenant: tenant(),
        id: gid("g1"),
        name: s.name.clone(),
        order: s.order,
        name_at: at,
        order_at: at,
        deleted_at: None,
        wecom: link(WecomGroupId::test_id(), s),
        mall: link(MallGroupId::test_id(), s),
        scope: None,
        carry_to_mall: true,
        version: 1,
    }
}
/// The ids the sides show the test's objects under (as `synced_tag` / `synced_group`).
trait TestId {
    fn test_id() -> Self;
}
// One id per id type, as a table.
macro_rules! test_ids {
    ($($ty:ident => $id:literal),* $(,)?) => {
        $(impl TestId for $ty {
            fn test_id() -> Self {
                $ty::new_unchecked($id)
            }
        })*
    };
}
test_ids!(WecomTagId => "et1", MallTagId => "m1", WecomGroupId => "etg1", MallGroupId => "mg1");

/// The side shows the test's object as `s`.
fn seen<I: TestId, S>(s: S, at: Timestamp) -> Observed<I, S> {
    Observed::present(I::test_id(), s, at)
}
fn delete<I: TestId, S>() -> LibraryOp<I, S> {
    LibraryOp::Delete { id: I::test_id() }
}
fn create<I, S>(after: S) -> LibraryOp<I, S> {
    LibraryOp::Create { after }
}
fn tag(hub: Option<&Tag>, wecom: &WecomTagSeen, mall: &MallTagSeen) -> Merged<Tag, TagPlan> {
    merge_tag(&tenant(), &tid(), hub, wecom, mall).expect("someone has the tag")
}
fn group(
    hub: Option<&TagGroup>,
    wecom: &WecomGroupSeen,
    mall: &MallGroupSeen,
    live_tags: usize,
) -> Merged<TagGroup, GroupPlan> {
    let facts = GroupFacts {
        live_tags,
        wecom_dropped: false,
    };
    merge_group(&tenant(), &gid("g1"), hub, wecom, mall, facts).expect("someone has it")
}
fn rename<I: TestId, S>(name: &str) -> LibraryOp<I, S> {
    LibraryOp::Update {
        id: I::test_id(),
        name: Some(name.into()),
        order: None,
    }
}

#[test]
fn of_two_tags_on_one_name_the_one_renamed_onto_it_is_refused() {
    // `a` was renamed c → d in the hub (its sides still show c); `b` was created as d.
    let mut a = synced_tag(&snap("c", 1, "g1"), t(1));
    a.name = "d".into();
    a.name_at = t(5);
    let mut b = synced_tag(&snap("d", 2, "g1"), t(9));
    b.id = HubTagId::new_unchecked("t2");
    assert_eq!(
        refused_change(&a, &b),
        Some((tid(), snap("c", 1, "g1"))),
        "a gets its name back, whatever the times"
    );
    assert_eq!(refused_change(&b, &a).map(|(i, _)| i), Some(tid()));
}

#[test]
fn of_two_tags_changed_onto_one_name_the_later_change_is_refused() {
    // `a` moved g1 → g2 at 5; `b` was renamed x → d at 7: b's rename is refused.
    let mut a = synced_tag(&snap("d", 1, "g1"), t(1));
    a.group_id = gid("g2");
    a.group_at = t(5);
    let mut b = synced_tag(&snap("x", 2, "g2"), t(1));
    b.id = HubTagId::new_unchecked("t2");
    b.name = "d".into();
    b.name_at = t(7);
    let (id, back) = refused_change(&a, &b).expect("one is refused");
    assert_eq!((id.as_str(), back), ("t2", snap("x", 2, "g2")));
    // Moved earlier than the rename: a's move would be refused, the group given back.
    b.name_at = t(3);
    assert_eq!(refused_change(&a, &b), Some((tid(), snap("d", 1, "g1"))));
}

#[test]
fn two_tags_created_with_one_name_have_no_change_to_refuse() {
    let a = synced_tag(&snap("d", 1, "g1"), t(1));
    let mut b = synced_tag(&snap("d", 2, "g1"), t(2));
    b.id = HubTagId::new_unchecked("t2");
    assert_eq!(refused_change(&a, &b), None);
}

#[test]
fn a_group_renamed_onto_another_groups_name_gets_its_name_back() {
    let mut a = synced_group(&gsnap("G1", 3), t(1));
    a.name = "G3".into();
    a.name_at = t(4);
    let mut b = synced_group(&gsnap("G3", 5), t(6));
    b.id = gid("g2");
    assert_eq!(refused_change(&b, &a), Some((gid("g1"), gsnap("G1", 3))));
}

/// The tag `VIP` (order 1, group g1) as the hub and both sides last agreed on it.
fn vip() -> TagSnapshot {
    snap("VIP", 1, "g1")
}
/// The hub's copy of that tag, every field last changed at 1.
fn synced_vip() -> Tag {
    synced_tag(&vip(), t(1))
}
/// Merges that tag, as the hub holds it, with what WeCom and the mall show.
fn merge_vip(wecom: WecomTagSeen, mall: MallTagSeen) -> Merged<Tag, TagPlan> {
    tag(Some(&synced_vip()), &wecom, &mall)
}

#[test]
fn rename_in_mall_renames_wecom_tag() {
    let new = snap("Gold", 1, "g1");
    let m = merge_vip(seen(vip(), t(6)), seen(new.clone(), t(5)));
    assert_eq!((m.hub.name.as_str(), m.hub.name_at), ("Gold", t(5)));
    assert_eq!(m.hub.order_at, t(1), "untouched fields keep their time");
    assert_eq!(m.plan.wecom.op, rename("Gold"));
    assert_eq!(m.plan.wecom.base_after, Some(new.clone()));
    assert_eq!(m.plan.mall.op, LibraryOp::Nothing);
    // The mall already shows the merged state: its base moves now; WeCom's on confirmation.
    assert_eq!(m.hub.mall.base, Some(new));
    assert_eq!(m.hub.wecom.base, Some(vip()));
    assert_eq!(m.hub.wecom.state, SyncState::Pending);
    assert_eq!(
        m.hub.wecom.id,
        synced_vip().wecom.id,
        "a rename keeps the WeCom id"
    );
}

#[test]
fn rename_in_wecom_renames_mall_tag() {
    let m = merge_vip(seen(snap("Gold", 1, "g1"), t(6)), seen(vip(), t(2)));
    assert_eq!(m.plan.mall.op, rename("Gold"));
    assert_eq!(m.plan.wecom.op, LibraryOp::Nothing);
    assert_eq!(m.hub.name_at, t(6));
}

#[test]
fn latest_change_wins_per_field() {
    // Both renamed, the mall also reordered: WeCom's later name, the mall's order.
    let m = merge_vip(
        seen(snap("Gold", 1, "g1"), t(7)),
        seen(snap("Silver", 9, "g1"), t(5)),
    );
    assert_eq!((m.hub.name.as_str(), m.hub.order), ("Gold", 9));
    assert_eq!((m.hub.name_at, m.hub.order_at), (t(7), t(5)));
    let to_wecom = LibraryOp::Update {
        id: WecomTagId::test_id(),
        name: None,
        order: Some(9),
    };
    assert_eq!(m.plan.wecom.op, to_wecom);
    assert_eq!(m.plan.mall.op, rename("Gold"));
}

#[test]
fn equal_times_prefer_hub_then_mall_then_wecom() {
    let wecom = seen(snap("W", 1, "g1"), t(5));
    let mall = seen(snap("M", 1, "g1"), t(5));
    let both = merge_vip(wecom.clone(), mall.clone());
    assert_eq!(both.hub.name, "M");

    let hub = Tag {
        name: "H".into(),
        name_at: t(5),
        ..synced_vip()
    };
    let m = tag(Some(&hub), &wecom, &mall);
    assert_eq!(m.hub.name, "H");
    assert_eq!(m.plan.wecom.op, rename("H"));
    assert_eq!(m.plan.mall.op, rename("H"));
}

#[test]
fn later_operator_edit_beats_earlier_side_rename() {
    let hub = Tag {
        name: "Operator".into(),
        name_at: t(10),
        ..synced_vip()
    };
    let m = tag(
        Some(&hub),
        &seen(vip(), t(11)),
        &seen(snap("Mall", 1, "g1"), t(8)),
    );
    assert_eq!((m.hub.name.as_str(), m.hub.name_at), ("Operator", t(10)));
    assert_eq!(m.plan.mall.op, rename("Operator"));
    assert_eq!(m.plan.wecom.op, rename("Operator"));
}

#[test]
fn delete_wins_over_concurrent_rename() {
    // The rename is even later than the delete: the delete still wins.
    let m = merge_vip(seen(snap("Gold", 1, "g1"), t(9)), Observed::absent(t(3)));
    assert_eq!(m.hub.deleted_at, Some(t(3)));
    assert_eq!(m.hub.name, "VIP");
    assert_eq!(m.plan.wecom.op, delete());
    assert_eq!(m.plan.wecom.base_after, None);
    assert_eq!(m.plan.mall.op, LibraryOp::Nothing);
    assert_eq!(
        (m.hub.mall.id.as_ref(), m.hub.mall.base.as_ref()),
        (None, None)
    );
}

#[test]
fn hub_deletion_deletes_on_every_side() {
    let hub = Tag {
        deleted_at: Some(t(4)),
        ..synced_vip()
    };
    let m = tag(Some(&hub), &seen(vip(), t(5)), &seen(vip(), t(5)));
    assert_eq!(m.plan.wecom.op, delete());
    assert_eq!(m.plan.mall.op, delete());
    assert_eq!(m.hub.deleted_at, Some(t(4)));
}

#[test]
fn tag_new_in_mall_is_created_in_wecom() {
    let s = snap("VIP", 2, "g1");
    let m = tag(None, &Observed::absent(t(6)), &seen(s.clone(), t(5)));
    assert_eq!(m.plan.wecom.op, create(s.clone()));
    assert_eq!(m.plan.wecom.base_after, Some(s.clone()));
    assert_eq!(m.plan.mall.op, LibraryOp::Nothing);
    assert_eq!(m.hub.mall.base, Some(s));
    assert_eq!((m.hub.name.as_str(), m.hub.name_at), ("VIP", t(5)));
    assert_eq!(m.hub.wecom.state, SyncState::Pending);
}

#[test]
fn operator_created_tag_is_created_on_both_sides() {
    let s = snap("VIP", 2, "g1");
    let mut hub = synced_tag(&s, t(1));
    hub.wecom = SideLink::default();
    hub.mall = SideLink::default();
    let m = tag(Some(&hub), &Observed::absent(t(2)), &Observed::absent(t(2)));
    assert_eq!(m.plan.wecom.op, create(s.clone()));
    assert_eq!(m.plan.mall.op, create(s));
    assert_eq!(
        m.hub.deleted_at, None,
        "absent without a base is not a delete"
    );
}

#[test]
fn side_without_a_base_claims_its_fields_at_its_time() {
    // Found by the idempotency property: comparing a base-less side with the hub made the
    // second run flip the name back.
    let mut hub = synced_group(&gsnap("n0", 0), t(0));
    hub.wecom = SideLink::default();
    hub.mall = SideLink::default();
    let wecom = seen(gsnap("n1", 0), t(1));
    let mall = seen(gsnap("n0", 0), t(2));
    let m = group(Some(&hub), &wecom, &mall, 0);
    assert_eq!((m.hub.name.as_str(), m.hub.name_at), ("n0", t(2)));
    assert_eq!(m.plan.wecom.op, rename("n0"));
    let again = group(Some(&m.hub), &wecom, &mall, 0);
    assert_eq!(again, m);
}

#[test]
fn nobody_having_the_object_plans_nothing() {
    let none = merge_tag(
        &tenant(),
        &tid(),
        None,
        &Observed::absent(t(1)),
        &Observed::absent(t(1)),
    );
    assert_eq!(none, None);
}

#[test]
fn echo_plans_nothing() {
    let m = merge_vip(seen(vip(), t(9)), seen(vip(), t(9)));
    assert!(m.plan.is_nothing());
    assert_eq!(m.hub, synced_vip());
}

#[test]
fn read_only_wecom_tag_is_not_renamed() {
    let wecom = seen(vip(), t(6)).read_only();
    let mall = seen(snap("Gold", 1, "g1"), t(5));
    let m = merge_vip(wecom.clone(), mall.clone());
    assert_eq!(m.hub.name, "Gold");
    assert_eq!(m.plan.wecom.op, LibraryOp::MarkReadOnly);
    assert_eq!(m.hub.wecom.state, SyncState::ReadOnly);
    assert_eq!(m.hub.wecom.base, Some(vip()), "WeCom's name is left alone");
    // Recorded once: the next run has nothing to do.
    let again = tag(Some(&m.hub), &wecom, &mall);
    assert!(again.plan.is_nothing());
}

#[test]
fn read_only_wecom_tag_is_not_deleted() {
    let m = merge_vip(seen(vip(), t(6)).read_only(), Observed::absent(t(5)));
    assert!(m.hub.deleted_at.is_some());
    assert_eq!(m.plan.wecom.op, LibraryOp::MarkReadOnly);
}

#[test]
fn console_rename_of_read_only_tag_reaches_the_mall() {
    let m = merge_vip(
        seen(snap("Gold", 1, "g1"), t(6)).read_only(),
        seen(vip(), t(2)),
    );
    assert_eq!(m.plan.mall.op, rename("Gold"));
    assert_eq!(m.plan.wecom.op, LibraryOp::Nothing);
    assert_eq!(m.hub.wecom.state, SyncState::ReadOnly);
}

#[test]
fn a_failed_side_stays_failed_with_its_reason_while_another_try_is_on_its_way() {
    let gold = snap("Gold", 1, "g1");
    let mut hub = synced_vip();
    hub.mall.fail("the mall is unreachable");
    let m = tag(Some(&hub), &seen(gold.clone(), t(6)), &seen(vip(), t(2)));
    assert_eq!(m.plan.mall.op, rename("Gold"));
    assert_eq!(m.hub.mall.state, SyncState::Failed);
    assert_eq!(m.hub.mall.error.as_deref(), Some("the mall is unreachable"));
    // Once the side shows what the hub wants, it is synced again.
    let settled = tag(Some(&m.hub), &seen(gold.clone(), t(6)), &seen(gold, t(7)));
    assert_eq!(settled.hub.mall.state, SyncState::Synced);
    assert_eq!(settled.hub.mall.error, None);
}

#[test]
fn tag_moved_in_mall_moves_wecom_tag() {
    let m = merge_vip(seen(vip(), t(6)), seen(snap("VIP", 1, "g2"), t(5)));
    let to_g2 = LibraryOp::Move {
        id: WecomTagId::test_id(),
        to_group: gid("g2"),
        name: None,
        order: None,
        after: snap("VIP", 1, "g2"),
    };
    assert_eq!(m.plan.wecom.op, to_g2);
    assert_eq!((m.hub.group_id.clone(), m.hub.group_at), (gid("g2"), t(5)));
    assert_eq!(m.plan.mall.op, LibraryOp::Nothing);
}

/// The group `Level` (order 1) as the hub and both sides last agreed on it.
fn level() -> GroupSnapshot {
    gsnap("Level", 1)
}
/// Merges that group, synced at 1, with what WeCom and the mall show, given its live tags.
fn merge_level(
    wecom: WecomGroupSeen,
    mall: MallGroupSeen,
    live_tags: usize,
) -> Merged<TagGroup, GroupPlan> {
    group(
        Some(&synced_group(&level(), t(1))),
        &wecom,
        &mall,
        live_tags,
    )
}

#[test]
fn empty_group_waits_for_wecom() {
    let m = group(None, &Observed::absent(t(6)), &seen(level(), t(5)), 0);
    assert_eq!(m.plan.wecom.op, LibraryOp::Nothing);
    assert_eq!(m.hub.wecom.state, SyncState::Pending);
    assert_eq!(m.hub.wecom.base, None);
    assert!(m.plan.is_nothing());
}

#[test]
fn group_is_created_in_wecom_with_its_first_tag() {
    let m = group(None, &Observed::absent(t(6)), &seen(level(), t(5)), 1);
    assert_eq!(m.plan.wecom.op, create(level()));
    assert_eq!(m.plan.wecom.base_after, Some(level()));
}

#[test]
fn wecom_dropping_an_empty_group_is_not_a_deletion() {
    let m = merge_level(Observed::absent(t(6)), seen(level(), t(2)), 0);
    assert_eq!(m.hub.deleted_at, None);
    assert_eq!(
        m.hub.wecom,
        SideLink::default(),
        "the WeCom link is cleared"
    );
    assert!(m.plan.is_nothing());
    // Its next tag brings it back.
    let next = group(
        Some(&m.hub),
        &Observed::absent(t(8)),
        &seen(level(), t(2)),
        1,
    );
    assert_eq!(next.plan.wecom.op, create(gsnap("Level", 1)));
}

#[test]
fn flagged_wecom_drop_is_not_a_deletion_even_with_live_tags() {
    let facts = GroupFacts {
        live_tags: 2,
        wecom_dropped: true,
    };
    let m = merge_group(
        &tenant(),
        &gid("g1"),
        Some(&synced_group(&level(), t(1))),
        &Observed::absent(t(6)),
        &seen(level(), t(2)),
        facts,
    )
    .unwrap();
    assert_eq!(m.hub.deleted_at, None);
    assert_eq!(m.plan.wecom.op, create(gsnap("Level", 1)));
}

#[test]
fn wecom_group_deletion_with_live_tags_deletes_everywhere() {
    let m = merge_level(Observed::absent(t(6)), seen(level(), t(2)), 2);
    assert_eq!(m.hub.deleted_at, Some(t(6)));
    assert_eq!(m.plan.mall.op, delete());
}

#[test]
fn group_reorder_in_wecom_reaches_the_mall() {
    let m = merge_level(seen(gsnap("Level", 7), t(6)), seen(level(), t(2)), 1);
    let reorder = LibraryOp::Update {
        id: MallGroupId::test_id(),
        name: None,
        order: Some(7),
    };
    assert_eq!(m.plan.mall.op, reorder);
    assert_eq!(m.hub.order_at, t(6));
}

// --- properties -------------------------------------------------------------------

fn any_snap() -> impl Strategy<Value = TagSnapshot> {
    (0..3u8, 0..2u32, 0..2u8).prop_map(|(n, o, g)| snap(&format!("n{n}"), o, &format!("g{g}")))
}
fn any_gsnap() -> impl Strategy<Value = GroupSnapshot> {
    (0..3u8, 0..2u32).prop_map(|(n, o)| gsnap(&format!("n{n}"), o))
}
fn any_state() -> impl Strategy<Value = SyncState> {
    prop_oneof![
        Just(SyncState::Synced),
        Just(SyncState::Pending),
        Just(SyncState::Failed),
        Just(SyncState::ReadOnly),
    ]
}
fn any_observed<I: TestId + Clone + std::fmt::Debug, S: Clone + std::fmt::Debug>(
    snap: impl Strategy<Value = S>,
) -> impl Strategy<Value = Observed<I, S>> {
    (prop::option::of(snap), 0..10i64, any::<bool>()).prop_map(|(s, at, ro)| Observed {
        seen: s.map_or(Seen::Absent, |s| Seen::Present(I::test_id(), s)),
        at: t(at),
        read_only: ro,
    })
}
fn any_link<I: Clone + std::fmt::Debug, S: Clone + std::fmt::Debug>(
    id: I,
    snap: impl Strategy<Value = S>,
) -> impl Strategy<Value = SideLink<I, S>> {
    (prop::option::of(snap), any_state()).prop_map(move |(base, state)| SideLink {
        id: base.as_ref().map(|_| id.clone()),
        base,
        state,
        error: None,
    })
}
fn any_hub_tag() -> impl Strategy<Value = Option<Tag>> {
    let times = (0..10i64, 0..10i64, 0..10i64, prop::option::of(0..10i64));
    let links = (
        any_link(WecomTagId::new_unchecked("et1"), any_snap()),
        any_link(MallTagId::new_unchecked("m1"), any_snap()),
    );
    prop::option::of(
        (any_snap(), times, links).prop_map(|(s, (n, o, g, d), (w, m))| {
            let mut tag = synced_tag(&s, t(0));
            (tag.name_at, tag.order_at, tag.group_at) = (t(n), t(o), t(g));
            tag.deleted_at = d.map(t);
            (tag.wecom, tag.mall) = (w, m);
            tag
        }),
    )
}
fn any_hub_group() -> impl Strategy<Value = Option<TagGroup>> {
    let links = (
        any_link(WecomGroupId::new_unchecked("etg1"), any_gsnap()),
        any_link(MallGroupId::new_unchecked("mg1"), any_gsnap()),
    );
    let times = (0..10i64, 0..10i64, prop::option::of(0..10i64));
    prop::option::of(
        (any_gsnap(), times, links).prop_map(|(s, (n, o, d), (w, m))| {
            let mut g = synced_group(&s, t(0));
            (g.name_at, g.order_at, g.deleted_at) = (t(n), t(o), d.map(t));
            (g.wecom, g.mall) = (w, m);
            g
        }),
    )
}
fn any_facts() -> impl Strategy<Value = GroupFacts> {
    (0..3usize, any::<bool>()).prop_map(|(live_tags, wecom_dropped)| GroupFacts {
        live_tags,
        wecom_dropped,
    })
}
/// What a tag's merge is given: the hub's copy and what WeCom and the mall show.
#[derive(Clone, Debug)]
struct TagIn {
    hub: Option<Tag>,
    wecom: WecomTagSeen,
    mall: MallTagSeen,
}
/// What a group's merge is given: the same, and the group's facts.
#[derive(Clone, Debug)]
struct GroupIn {
    hub: Option<TagGroup>,
    wecom: WecomGroupSeen,
    mall: MallGroupSeen,
    facts: GroupFacts,
}
/// Any tag's merge inputs (drawn as the three would be one by one).
fn any_tag_in() -> impl Strategy<Value = TagIn> {
    let (w, m) = (any_observed(any_snap()), any_observed(any_snap()));
    (any_hub_tag(), w, m).prop_map(|(hub, wecom, mall)| TagIn { hub, wecom, mall })
}
/// Any group's merge inputs, likewise.
fn any_group_in() -> impl Strategy<Value = GroupIn> {
    let (w, m) = (any_observed(any_gsnap()), any_observed(any_gsnap()));
    (any_hub_group(), w, m, any_facts()).prop_map(|(hub, wecom, mall, facts)| GroupIn {
        hub,
        wecom,
        mall,
        facts,
    })
}
/// Checks that merging `hub` with what the sides show keeps the order 7 someone set on a
/// side meanwhile (unless the tag is deleted).
fn keeps_reorder(hub: &Tag, w: &WecomTagSeen, m: &MallTagSeen) -> Result<(), TestCaseError> {
    let again = merge_tag(&tenant(), &tid(), Some(hub), w, m).unwrap();
    if again.hub.deleted_at.is_none() {
        prop_assert_eq!(again.hub.order, 7);
    }
    Ok(())
}

/// What the worker does once a side confirms its op: the side shows `base_after`, the
/// link stores it. Returns the side's next observation (later).
fn confirm<I: Clone, S: Clone>(
    plan: &SidePlan<I, S>,
    link: &mut SideLink<I, S>,
    obs: &Observed<I, S>,
    id: I,
) -> Observed<I, S> {
    let mut next = obs.clone();
    next.at = t(100);
    if matches!(plan.op, LibraryOp::Nothing | LibraryOp::MarkReadOnly) {
        return next;
    }
    link.base = plan.base_after.clone();
    link.id = plan.base_after.as_ref().map(|_| id.clone());
    link.state = SyncState::Synced;
    next.seen = plan
        .base_after
        .clone()
        .map_or(Seen::Absent, |s| Seen::Present(id, s));
    next
}

fn no_create_where_present<W, M, S>(
    plan: &Plan<W, M, S>,
    w: &Observed<W, S>,
    m: &Observed<M, S>,
) -> bool {
    (!matches!(plan.wecom.op, LibraryOp::Create { .. }) || w.seen.as_option().is_none())
        && (!matches!(plan.mall.op, LibraryOp::Create { .. }) || m.seen.as_option().is_none())
}

/// Nothing new: the same ops, except a `MarkReadOnly` already recorded.
fn nothing_new<I: PartialEq, S: PartialEq>(
    first: &SidePlan<I, S>,
    second: &SidePlan<I, S>,
) -> bool {
    second == first || (first.op == LibraryOp::MarkReadOnly && second.op == LibraryOp::Nothing)
}

/// What a side shows once `op` was applied to what the job read there (`seen`): the
/// fields the op sets, the rest as read.
fn applied_to<I>(seen: &TagSnapshot, op: &LibraryOp<I, TagSnapshot>) -> TagSnapshot {
    let mut s = seen.clone();
    let (name, order, group) = match op {
        LibraryOp::Update { name, order, .. } => (name, order, None),
        LibraryOp::Move {
            to_group,
            name,
            order,
            ..
        } => (name, order, Some(to_group)),
        _ => return s,
    };
    if let Some(n) = name {
        s.name = n.clone();
    }
    if let Some(o) = order {
        s.order = *o;
    }
    if let Some(g) = group {
        s.group_id = g.clone();
    }
    s
}

/// Checks that an update or move's `base_after` is what was read plus what the op sets;
/// when the op leaves the order alone, gives that base and what the side shows once
/// someone reorders the object there while the op is carried.
#[allow(clippy::type_complexity)]
fn reordered_meanwhile<I: Clone + std::fmt::Debug>(
    plan: &SidePlan<I, TagSnapshot>,
    obs: &Observed<I, TagSnapshot>,
) -> Result<Option<(Option<TagSnapshot>, Observed<I, TagSnapshot>)>, TestCaseError> {
    let (LibraryOp::Update { id, order, .. } | LibraryOp::Move { id, order, .. }) = &plan.op else {
        return Ok(None);
    };
    let Some(seen) = obs.seen.as_option() else {
        return Ok(None);
    };
    prop_assert_eq!(plan.base_after.as_ref(), Some(&applied_to(seen, &plan.op)));
    if order.is_some() || obs.read_only {
        return Ok(None);
    }
    let mut shown = applied_to(seen, &plan.op);
    shown.order = 7;
    Ok(Some((
        plan.base_after.clone(),
        Observed::present(id.clone(), shown, t(100)),
    )))
}

proptest! {
    /// The base a side gets after an update or move is what the job read there plus
    /// exactly the fields the op sets — never anything else the side might show by
    /// then. So a field someone else changes on that side while the op is carried (one
    /// the op does not set) is still a change of that side at the next merge, and wins.
    #[test]
    fn a_tag_base_after_a_write_is_what_was_read_plus_what_was_set(i in any_tag_in()) {
        let (w, m) = (&i.wecom, &i.mall);
        let Some(out) = merge_tag(&tenant(), &tid(), i.hub.as_ref(), w, m) else {
            return Ok(());
        };
        if let Some((base, next)) = reordered_meanwhile(&out.plan.wecom, w)? {
            let mut hub2 = out.hub.clone();
            hub2.wecom.base = base;
            keeps_reorder(&hub2, &next, m)?;
        }
        if let Some((base, next)) = reordered_meanwhile(&out.plan.mall, m)? {
            let mut hub2 = out.hub.clone();
            hub2.mall.base = base;
            keeps_reorder(&hub2, w, &next)?;
        }
    }

    #[test]
    fn applying_a_tag_plan_converges_in_one_step(i in any_tag_in()) {
        let (w, m) = (&i.wecom, &i.mall);
        let Some(out) = merge_tag(&tenant(), &tid(), i.hub.as_ref(), w, m) else {
            return Ok(());
        };
        prop_assert!(no_create_where_present(&out.plan, w, m));
        let mut hub2 = out.hub.clone();
        let w2 = confirm(&out.plan.wecom, &mut hub2.wecom, w, WecomTagId::new_unchecked("et2"));
        let m2 = confirm(&out.plan.mall, &mut hub2.mall, m, MallTagId::new_unchecked("m2"));
        let again = merge_tag(&tenant(), &tid(), Some(&hub2), &w2, &m2).unwrap();
        prop_assert!(again.plan.is_nothing(), "{:?}", again.plan);
        prop_assert_eq!(again.hub.name, out.hub.name);
        prop_assert_eq!(again.hub.deleted_at, out.hub.deleted_at);
    }

    #[test]
    fn merging_a_tag_is_idempotent(i in any_tag_in()) {
        let (w, m) = (&i.wecom, &i.mall);
        let Some(out) = merge_tag(&tenant(), &tid(), i.hub.as_ref(), w, m) else {
            return Ok(());
        };
        let again = merge_tag(&tenant(), &tid(), Some(&out.hub), w, m).unwrap();
        prop_assert_eq!(&again.hub, &out.hub);
        prop_assert!(nothing_new(&out.plan.wecom, &again.plan.wecom));
        prop_assert!(nothing_new(&out.plan.mall, &again.plan.mall));
        prop_assert!(no_create_where_present(&again.plan, w, m));
    }

    #[test]
    fn applying_a_group_plan_converges_in_one_step(i in any_group_in()) {
        let (w, m, facts) = (&i.wecom, &i.mall, i.facts);
        let Some(out) = merge_group(&tenant(), &gid("g1"), i.hub.as_ref(), w, m, facts) else {
            return Ok(());
        };
        prop_assert!(no_create_where_present(&out.plan, w, m));
        let moved = matches!(out.plan.wecom.op, LibraryOp::Move { .. });
        prop_assert!(!moved);
        let mut hub2 = out.hub.clone();
        let w2 = confirm(&out.plan.wecom, &mut hub2.wecom, w, WecomGroupId::new_unchecked("etg2"));
        let m2 = confirm(&out.plan.mall, &mut hub2.mall, m, MallGroupId::new_unchecked("mg2"));
        let again = merge_group(&tenant(), &gid("g1"), Some(&hub2), &w2, &m2, facts).unwrap();
        prop_assert!(again.plan.is_nothing(), "{:?}", again.plan);
        prop_assert_eq!(again.hub.deleted_at, out.hub.deleted_at);
    }

    #[test]
    fn merging_a_group_is_idempotent(i in any_group_in()) {
        let (w, m, facts) = (&i.wecom, &i.mall, i.facts);
        let Some(out) = merge_group(&tenant(), &gid("g1"), i.hub.as_ref(), w, m, facts) else {
            return Ok(());
        };
        let again = merge_group(&tenant(), &gid("g1"), Some(&out.hub), w, m, facts).unwrap();
        prop_assert_eq!(&again.hub, &out.hub);
        prop_assert!(nothing_new(&out.plan.wecom, &again.plan.wecom));
        prop_assert!(nothing_new(&out.plan.mall, &again.plan.mall));
    }
}
