//! Member tags: one customer's tags, merged per (member, hub tag) by time.
//!
//! In WeCom a tag sits on a (staff userid, customer) relation, so a customer has one tag set
//! per relation, each with its own base. A tag added or removed on any side relative to that
//! side's base is a change at that side's time; per tag the latest change wins. On equal
//! times the hub beats the mall, which beats WeCom; between WeCom relations at the same time,
//! the add wins. The merged set then goes to every relation and to the mall member.
//!
//! Tag ids are hub ids throughout: the worker maps WeCom and mall ids before and after (and
//! drops ids of tags the hub does not know or has deleted).

use crate::domain::{CustomerRelations, HubTagId, MemberTags, TagMark, Timestamp, WecomUserId};
use std::collections::{BTreeMap, BTreeSet};

/// What one side (the mall member, or one WeCom relation) shows now, its base (the set last
/// confirmed there; empty for a relation seen for the first time, so its tags count as adds
/// and nothing counts as removed) and the time of the observation or change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideTags {
    pub tags: BTreeSet<HubTagId>,
    pub base: BTreeSet<HubTagId>,
    pub at: Timestamp,
}

/// One `mark_tag` call: every add and remove for one relation together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkTag {
    pub userid: WecomUserId,
    pub add: BTreeSet<HubTagId>,
    pub remove: BTreeSet<HubTagId>,
}

/// One `POST /members/{id}/tags` (the client splits it at 100 ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MallMemberTags {
    pub add: BTreeSet<HubTagId>,
    pub remove: BTreeSet<HubTagId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemberPlan {
    /// At most one per relation, only for relations that differ from the desired set.
    pub relations: Vec<MarkTag>,
    pub mall: Option<MallMemberTags>,
}

impl MemberPlan {
    pub fn is_nothing(&self) -> bool {
        self.relations.is_empty() && self.mall.is_none()
    }
}

/// The merge's result. Every side's new base is `desired`: written now for the sides that
/// already show it (`tags.mall_base`, `relation_bases`), and by the worker once a planned
/// call succeeds for the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMerge {
    /// The hub's member tags with the merged marks (removals stay as marks so a stale add
    /// cannot bring a tag back).
    pub tags: MemberTags,
    pub desired: BTreeSet<HubTagId>,
    pub plan: MemberPlan,
    /// Bases to store now for the relations that already show `desired`.
    pub relation_bases: BTreeMap<WecomUserId, BTreeSet<HubTagId>>,
}

// Tie-break ranks: on equal times the higher rank wins.
const WECOM: u8 = 0;
const MALL: u8 = 1;
const HUB: u8 = 2;

/// Merges one member's tags with the mall member (`mall.base` should be `hub.mall_base`) and
/// each of the bound customer's follow relations.
pub fn merge_member_tags(
    hub: &MemberTags,
    mall: &SideTags,
    relations: &BTreeMap<WecomUserId, SideTags>,
) -> MemberMerge {
    let sides = std::iter::once((MALL, mall)).chain(relations.values().map(|r| (WECOM, r)));
    let mut all: BTreeSet<&HubTagId> = hub.marks.keys().collect();
    for (_, side) in sides.clone() {
        all.extend(side.tags.iter().chain(&side.base));
    }

    let mut marks = BTreeMap::new();
    for tag in all {
        let mark = hub.marks.get(tag);
        let mut best = mark.map(|m| (m.at, HUB, m.present));
        for (rank, side) in sides.clone() {
            let present = side.tags.contains(tag);
            // A tag a side shows and has in its base, but the hub has no mark for, was never
            // merged (a relation's base keeps the ids the hub did not know when it was first
            // read, which may be tags tagsync never syncs): not known to be in sync, so the
            // side showing it added it (else the merge would take it off that side).
            let unmerged = present && mark.is_none();
            if present == side.base.contains(tag) && !unmerged {
                continue;
            }
            let candidate = (side.at, rank, present);
            if best.is_none_or(|b| candidate > b) {
                best = Some(candidate);
            }
        }
        if let Some((at, _, present)) = best {
            marks.insert(tag.clone(), TagMark { present, at });
        }
    }
    let desired: BTreeSet<HubTagId> = marks
        .iter()
        .filter(|(_, m)| m.present)
        .map(|(t, _)| t.clone())
        .collect();

    let mut plan = MemberPlan::default();
    let mut relation_bases = BTreeMap::new();
    for (userid, rel) in relations {
        if rel.tags == desired {
            relation_bases.insert(userid.clone(), desired.clone());
        } else {
            let (add, remove) = difference(&rel.tags, &desired);
            plan.relations.push(MarkTag {
                userid: userid.clone(),
                add,
                remove,
            });
        }
    }
    let mut tags = hub.clone();
    tags.marks = marks;
    if mall.tags == desired {
        tags.mall_base = desired.clone();
    } else {
        let (add, remove) = difference(&mall.tags, &desired);
        plan.mall = Some(MallMemberTags { add, remove });
    }
    MemberMerge {
        tags,
        desired,
        plan,
        relation_bases,
    }
}

/// A side's base once tagsync's write there is confirmed: what the job read there, plus
/// exactly what it added and minus what it removed. Never the side's answer to the write (or
/// a read after it): that may also show a change someone else made in the meantime, which
/// must stay a difference from the base so that the next merge takes it for that side's
/// change and carries it everywhere. Works on hub ids (the mall) and side ids (relations).
pub fn base_after_write<'a, T: Ord + Clone + 'a>(
    read: &BTreeSet<T>,
    added: impl IntoIterator<Item = &'a T>,
    removed: impl IntoIterator<Item = &'a T>,
) -> BTreeSet<T> {
    let mut base = read.clone();
    for r in removed {
        base.remove(r);
    }
    base.extend(added.into_iter().cloned());
    base
}

/// A relation's base (WeCom tag ids) as tagsync knows it, given what the relation shows now.
/// The stored base, except while a member job's `mark_tag` on it is in flight or was cut off
/// (its marking is stored, the base after it not yet): each tag that marking adds or removes
/// counts as applied where the relation shows it applied and as not applied where it does
/// not, so tagsync's own write is never taken for the relation's change. Other tags keep the
/// stored base: a change someone else made stays a difference from it.
pub fn relation_base(
    stored: Option<&CustomerRelations>,
    userid: &WecomUserId,
    shown: &BTreeSet<String>,
) -> BTreeSet<String> {
    let Some(c) = stored else {
        return BTreeSet::new();
    };
    let mut base: BTreeSet<String> = c
        .relations
        .get(userid)
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    if let Some(m) = c.marking.get(userid) {
        for id in m.add.iter().chain(&m.remove).map(ToString::to_string) {
            if shown.contains(&id) {
                base.insert(id);
            } else {
                base.remove(&id);
            }
        }
    }
    base
}

/// A member job's result written over a copy someone changed since the job read it (the
/// operator, through the admin API): the job's mall base stays (it says what the job did in
/// the mall, which must not later look like the mall's own change), and per tag the later
/// mark wins (the fresh one on equal times). The version is the fresh copy's.
pub fn carry_onto(fresh: &MemberTags, ours: &MemberTags) -> MemberTags {
    let mut out = fresh.clone();
    for (tag, mark) in &ours.marks {
        if out.marks.get(tag).is_none_or(|f| mark.at > f.at) {
            out.marks.insert(tag.clone(), *mark);
        }
    }
    out.mall_base = ours.mall_base.clone();
    out
}

/// (to add, to remove) to turn `have` into `want`.
fn difference(
    have: &BTreeSet<HubTagId>,
    want: &BTreeSet<HubTagId>,
) -> (BTreeSet<HubTagId>, BTreeSet<HubTagId>) {
    (
        want.difference(have).cloned().collect(),
        have.difference(want).cloned().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberId, TenantId};
    use proptest::prelude::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }
    fn tag(s: &str) -> HubTagId {
        HubTagId::new_unchecked(s)
    }
    fn set(tags: &[&str]) -> BTreeSet<HubTagId> {
        tags.iter().map(|s| tag(s)).collect()
    }
    fn user(s: &str) -> WecomUserId {
        WecomUserId::new_unchecked(s)
    }
    fn side(tags: &[&str], base: &[&str], at: i64) -> SideTags {
        SideTags {
            tags: set(tags),
            base: set(base),
            at: t(at),
        }
    }
    /// The hub with `present` marked at `at` and the mall base equal to it.
    fn hub(present: &[&str], at: i64) -> MemberTags {
        MemberTags {
            tenant: TenantId::parse("acme").unwrap(),
            member_id: MemberId::new_unchecked("m1"),
            marks: present
                .iter()
                .map(|s| {
                    let mark = TagMark {
                        present: true,
                        at: t(at),
                    };
                    (tag(s), mark)
                })
                .collect(),
            mall_base: set(present),
            version: 2,
        }
    }
    fn relations(list: Vec<(&str, SideTags)>) -> BTreeMap<WecomUserId, SideTags> {
        list.into_iter().map(|(u, s)| (user(u), s)).collect()
    }

    #[test]
    fn tag_added_on_one_relation_reaches_all_relations_and_the_mall() {
        let h = hub(&["a"], 1);
        let rels = relations(vec![
            ("alice", side(&["a", "b"], &["a"], 5)),
            ("bob", side(&["a"], &["a"], 5)),
            ("carol", side(&["a"], &["a"], 5)),
        ]);
        let out = merge_member_tags(&h, &side(&["a"], &["a"], 2), &rels);
        assert_eq!(out.desired, set(&["a", "b"]));
        let add_b = |u: &str| MarkTag {
            userid: user(u),
            add: set(&["b"]),
            remove: set(&[]),
        };
        assert_eq!(out.plan.relations, vec![add_b("bob"), add_b("carol")]);
        let mall = MallMemberTags {
            add: set(&["b"]),
            remove: set(&[]),
        };
        assert_eq!(out.plan.mall, Some(mall));
        assert_eq!(
            out.tags.marks[&tag("b")],
            TagMark {
                present: true,
                at: t(5)
            }
        );
        assert_eq!(
            out.relation_bases,
            BTreeMap::from([(user("alice"), set(&["a", "b"]))])
        );
        assert_eq!(
            out.tags.mall_base,
            set(&["a"]),
            "the mall's base waits for its call"
        );
    }

    #[test]
    fn a_tag_in_a_relations_base_the_hub_never_marked_is_that_relations_add() {
        // Bob's relation was first read when the hub did not know `n` yet (its base kept it);
        // now the hub knows it, and has no mark for it: it reaches the mall and Alice.
        let h = hub(&["a"], 1);
        let rels = relations(vec![
            ("alice", side(&["a"], &["a"], 5)),
            ("bob", side(&["a", "n"], &["a", "n"], 5)),
        ]);
        let out = merge_member_tags(&h, &side(&["a"], &["a"], 2), &rels);
        assert_eq!(out.desired, set(&["a", "n"]));
        assert_eq!(
            out.plan.relations,
            vec![MarkTag {
                userid: user("alice"),
                add: set(&["n"]),
                remove: set(&[]),
            }]
        );
        let add_n = MallMemberTags {
            add: set(&["n"]),
            remove: set(&[]),
        };
        assert_eq!(out.plan.mall, Some(add_n));
        // Once marked, the same shown-and-based tag is simply in sync.
        let again = merge_member_tags(&out.tags, &side(&["a", "n"], &["a", "n"], 6), &rels);
        assert_eq!(again.tags.marks, out.tags.marks);
    }

    #[test]
    fn later_remove_beats_earlier_add() {
        let h = hub(&["a"], 1);
        // Alice added b at 5; the mall, which had b, removed it at 7.
        let rels = relations(vec![("alice", side(&["a", "b"], &["a"], 5))]);
        let out = merge_member_tags(&h, &side(&["a"], &["a", "b"], 7), &rels);
        assert_eq!(out.desired, set(&["a"]));
        assert_eq!(
            out.tags.marks[&tag("b")],
            TagMark {
                present: false,
                at: t(7)
            }
        );
        let remove_b = MarkTag {
            userid: user("alice"),
            add: set(&[]),
            remove: set(&["b"]),
        };
        assert_eq!(out.plan.relations, vec![remove_b]);
        assert_eq!(out.plan.mall, None);
    }

    #[test]
    fn later_add_beats_earlier_remove() {
        let h = hub(&["a", "b"], 1);
        // Alice removed b at 3; the mall (which had lost b) added it again at 8.
        let rels = relations(vec![("alice", side(&["a"], &["a", "b"], 3))]);
        let out = merge_member_tags(&h, &side(&["a", "b"], &["a"], 8), &rels);
        assert_eq!(out.desired, set(&["a", "b"]));
        assert_eq!(out.plan.relations[0].add, set(&["b"]));
        // The same two changes the other way round in time: the removal wins.
        let rels = relations(vec![("alice", side(&["a"], &["a", "b"], 9))]);
        let out = merge_member_tags(&h, &side(&["a", "b"], &["a"], 8), &rels);
        assert_eq!(out.desired, set(&["a"]));
    }

    #[test]
    fn stale_add_cannot_bring_back_a_removed_tag() {
        let mut h = hub(&["a"], 1);
        h.marks.insert(
            tag("b"),
            TagMark {
                present: false,
                at: t(10),
            },
        );
        let rels = relations(vec![("alice", side(&["a", "b"], &["a"], 6))]);
        let out = merge_member_tags(&h, &side(&["a"], &["a"], 2), &rels);
        assert_eq!(out.desired, set(&["a"]));
        assert_eq!(out.plan.relations[0].remove, set(&["b"]));
    }

    #[test]
    fn equal_times_prefer_hub_then_mall_then_wecom() {
        let h = hub(&["a"], 5);
        // The mall removed a at 5, the hub's mark is also at 5: the hub wins.
        let out = merge_member_tags(&h, &side(&[], &["a"], 5), &relations(vec![]));
        assert_eq!(out.desired, set(&["a"]));
        // The mall added b at 5, a relation removed it at 5: the mall wins.
        let h = hub(&["a"], 1);
        let rels = relations(vec![("alice", side(&["a"], &["a", "b"], 5))]);
        let out = merge_member_tags(&h, &side(&["a", "b"], &["a"], 5), &rels);
        assert_eq!(out.desired, set(&["a", "b"]));
    }

    #[test]
    fn one_mark_tag_per_relation_carries_all_adds_and_removes() {
        let mut h = hub(&["a", "b"], 1);
        // The hub took x and y off the member (Alice's relation still shows them).
        for x in ["x", "y"] {
            let removed = TagMark {
                present: false,
                at: t(1),
            };
            h.marks.insert(tag(x), removed);
        }
        let rels = relations(vec![("alice", side(&["b", "x", "y"], &["b", "x", "y"], 2))]);
        let out = merge_member_tags(&h, &side(&["a", "b"], &["a", "b"], 2), &rels);
        let expected = MarkTag {
            userid: user("alice"),
            add: set(&["a"]),
            remove: set(&["x", "y"]),
        };
        assert_eq!(out.plan.relations, vec![expected]);
    }

    #[test]
    fn new_relation_receives_the_customers_tags() {
        let h = hub(&["a", "b"], 1);
        let rels = relations(vec![("dave", side(&["c"], &[], 4))]);
        let out = merge_member_tags(&h, &side(&["a", "b"], &["a", "b"], 2), &rels);
        assert_eq!(
            out.desired,
            set(&["a", "b", "c"]),
            "its own tags count as adds"
        );
        assert_eq!(out.plan.relations[0].add, set(&["a", "b"]));
        assert!(out.plan.relations[0].remove.is_empty());
    }

    #[test]
    fn member_echo_plans_nothing() {
        let h = hub(&["a", "b"], 1);
        let rels = relations(vec![
            ("alice", side(&["a", "b"], &["a", "b"], 9)),
            ("bob", side(&["a", "b"], &["a", "b"], 9)),
        ]);
        let out = merge_member_tags(&h, &side(&["a", "b"], &["a", "b"], 9), &rels);
        assert!(out.plan.is_nothing());
        assert_eq!(out.tags, h);
    }

    #[test]
    fn base_after_a_write_is_what_was_read_plus_what_was_applied() {
        let base = base_after_write(&set(&["a", "b"]), &set(&["c"]), &set(&["b"]));
        assert_eq!(base, set(&["a", "c"]));
        // The same call on side ids (a relation's WeCom tags).
        let read: BTreeSet<String> = ["et1".to_owned()].into();
        let added = ["et2".to_owned()];
        assert_eq!(
            base_after_write(&read, &added, &[]),
            BTreeSet::from(["et1".to_owned(), "et2".to_owned()])
        );
    }

    /// Issue 12 §1: the job read the mall member with `b`, added `a`; the mall's operator
    /// added `c` meanwhile, so the answer to the write shows `a, b, c`. With the base taken
    /// from what was read and applied, the next merge (the webhook's job) sees `c` as the
    /// mall's change and carries it to the hub and every relation, instead of removing it.
    #[test]
    fn a_tag_someone_added_while_tagsync_wrote_stays_a_change_of_that_side() {
        let mut h = hub(&["b"], 1);
        // `c` was on the member once and taken off (the hub keeps that as a mark).
        let removed = TagMark {
            present: false,
            at: t(0),
        };
        h.marks.insert(tag("c"), removed);
        let rels = relations(vec![("alice", side(&["a", "b"], &["b"], 5))]);
        let first = merge_member_tags(&h, &side(&["b"], &["b"], 2), &rels);
        let plan = first.plan.mall.clone().expect("the mall gets a");
        assert_eq!(plan.add, set(&["a"]));
        let mut hub2 = first.tags.clone();
        hub2.mall_base = base_after_write(&set(&["b"]), &plan.add, &plan.remove);
        assert_eq!(hub2.mall_base, set(&["a", "b"]), "not the answer's a, b, c");

        let rels2 = relations(vec![("alice", side(&["a", "b"], &["a", "b"], 7))]);
        let next = merge_member_tags(&hub2, &side(&["a", "b", "c"], &["a", "b"], 6), &rels2);
        assert_eq!(next.desired, set(&["a", "b", "c"]));
        assert_eq!(next.plan.mall, None, "nothing is taken off the mall");
        assert_eq!(next.plan.relations[0].add, set(&["c"]));

        // Taking the answer for the base (the old behaviour) makes `c` look in sync in the
        // mall, so the hub's old removal wins and takes it off: lost.
        let mut stale = first.tags.clone();
        stale.mall_base = set(&["a", "b", "c"]);
        let lost = merge_member_tags(&stale, &side(&["a", "b", "c"], &["a", "b", "c"], 6), &rels2);
        assert!(!lost.desired.contains(&tag("c")));
    }

    #[test]
    fn a_job_result_carried_onto_an_operator_edit_keeps_the_later_marks_and_the_jobs_base() {
        let mut ours = hub(&["a", "b"], 5);
        ours.mall_base = set(&["a", "b", "x"]);
        let mut fresh = hub(&["c"], 3);
        fresh.version = 7;
        fresh.marks.insert(
            tag("b"),
            TagMark {
                present: false,
                at: t(9),
            },
        );
        let out = carry_onto(&fresh, &ours);
        assert_eq!(out.mall_base, set(&["a", "b", "x"]));
        assert_eq!(out.version, 7);
        assert!(out.marks[&tag("a")].present, "ours, later");
        assert!(!out.marks[&tag("b")].present, "the operator's, later");
        assert!(out.marks[&tag("c")].present, "the operator's, untouched");
    }

    // --- properties -------------------------------------------------------------------

    const UNIVERSE: [&str; 4] = ["a", "b", "c", "d"];

    fn any_set() -> impl Strategy<Value = BTreeSet<HubTagId>> {
        prop::collection::btree_set(prop::sample::select(&UNIVERSE[..]), 0..4)
            .prop_map(|s| s.into_iter().map(tag).collect())
    }
    fn any_side() -> impl Strategy<Value = SideTags> {
        (any_set(), any_set(), 0..10i64).prop_map(|(tags, base, at)| SideTags {
            tags,
            base,
            at: t(at),
        })
    }
    fn any_hub() -> impl Strategy<Value = MemberTags> {
        let marks = prop::collection::btree_map(
            prop::sample::select(&UNIVERSE[..]),
            (any::<bool>(), 0..10i64),
            0..4,
        );
        marks.prop_map(|marks| {
            let mut h = hub(&[], 0);
            h.marks = marks
                .into_iter()
                .map(|(k, (present, at))| (tag(k), TagMark { present, at: t(at) }))
                .collect();
            h
        })
    }
    fn any_case() -> impl Strategy<Value = (MemberTags, SideTags, BTreeMap<WecomUserId, SideTags>)>
    {
        let rels = prop::collection::btree_map(
            prop::sample::select(&["u1", "u2", "u3"][..]).prop_map(user),
            any_side(),
            0..4,
        );
        (any_hub(), any_side(), rels).prop_map(|(mut h, mall, rels)| {
            h.mall_base = mall.base.clone();
            (h, mall, rels)
        })
    }

    proptest! {
        #[test]
        fn applying_a_member_plan_converges_in_one_step((h, mall, rels) in any_case()) {
            let out = merge_member_tags(&h, &mall, &rels);
            // The worker applies every call and stores `desired` as each side's base.
            let mut hub2 = out.tags.clone();
            hub2.mall_base = out.desired.clone();
            let now = |_: &SideTags| SideTags { tags: out.desired.clone(), base: out.desired.clone(), at: t(100) };
            let rels2 = rels.iter().map(|(u, r)| (u.clone(), now(r))).collect();
            let again = merge_member_tags(&hub2, &now(&mall), &rels2);
            prop_assert!(again.plan.is_nothing(), "{:?}", again.plan);
            prop_assert_eq!(again.desired, out.desired);
            prop_assert_eq!(again.tags.marks, out.tags.marks);
        }

        #[test]
        fn merging_member_tags_is_idempotent((h, mall, rels) in any_case()) {
            let out = merge_member_tags(&h, &mall, &rels);
            // Its own output: the merged marks and the bases it said to store now.
            let mut mall2 = mall.clone();
            mall2.base = out.tags.mall_base.clone();
            let mut rels2 = rels.clone();
            for (u, base) in &out.relation_bases {
                rels2.get_mut(u).unwrap().base = base.clone();
            }
            let again = merge_member_tags(&out.tags, &mall2, &rels2);
            prop_assert_eq!(&again.tags, &out.tags);
            prop_assert_eq!(&again.plan, &out.plan);
            prop_assert_eq!(&again.desired, &out.desired);
        }

        /// Whatever someone else adds to or removes from a side while tagsync writes there,
        /// and whatever the write was, the change survives the next merge: with the base
        /// taken from what was read plus what was applied, the foreign change is newer than
        /// every mark and wins.
        #[test]
        fn a_change_made_during_a_write_survives_the_next_merge(
            (h, mall, rels) in any_case(),
            foreign in prop::sample::select(&UNIVERSE[..]),
            foreign_add in any::<bool>(),
        ) {
            let out = merge_member_tags(&h, &mall, &rels);
            let foreign = tag(foreign);
            let mut hub2 = out.tags.clone();
            let mut shown = out.desired.clone();
            if let Some(p) = &out.plan.mall {
                hub2.mall_base = base_after_write(&mall.tags, &p.add, &p.remove);
            }
            // Someone else's change, seen in the answer (or any later read).
            if foreign_add {
                shown.insert(foreign.clone());
            } else {
                shown.remove(&foreign);
            }
            let mall2 = SideTags {
                tags: shown,
                base: hub2.mall_base.clone(),
                at: t(100),
            };
            let in_step = SideTags {
                tags: out.desired.clone(),
                base: out.desired.clone(),
                at: t(100),
            };
            let rels2: BTreeMap<_, _> = rels.keys().map(|u| (u.clone(), in_step.clone())).collect();
            let next = merge_member_tags(&hub2, &mall2, &rels2);
            // The base is what tagsync knows the mall holds: the merged set, not the answer.
            prop_assert_eq!(&hub2.mall_base, &out.desired);
            if out.desired.contains(&foreign) != foreign_add {
                prop_assert_eq!(next.desired.contains(&foreign), foreign_add);
            }
        }

        #[test]
        fn one_mark_tag_per_relation_that_differs((h, mall, rels) in any_case()) {
            let out = merge_member_tags(&h, &mall, &rels);
            let differing = rels.values().filter(|r| r.tags != out.desired).count();
            prop_assert_eq!(out.plan.relations.len(), differing);
            let users: BTreeSet<_> = out.plan.relations.iter().map(|m| &m.userid).collect();
            prop_assert_eq!(users.len(), differing);
            for m in &out.plan.relations {
                let r = &rels[&m.userid];
                prop_assert!(m.add.is_disjoint(&r.tags) && m.remove.is_subset(&r.tags));
                prop_assert!(!(m.add.is_empty() && m.remove.is_empty()));
            }
            prop_assert_eq!(out.plan.mall.is_some(), mall.tags != out.desired);
        }
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn customer(base: &[&str], marking: Option<(&[&str], &[&str])>) -> CustomerRelations {
        use crate::domain::{ExternalUserId, Marking, WecomTagId};
        let u = WecomUserId::new_unchecked("sales_li");
        let w = |l: &[&str]| l.iter().map(|i| WecomTagId::new_unchecked(*i)).collect();
        CustomerRelations {
            tenant: TenantId::parse("acme").unwrap(),
            external_userid: ExternalUserId::new_unchecked("wm_a"),
            relations: BTreeMap::from([(u.clone(), w(base))]),
            marking: marking
                .map(|(add, remove)| {
                    BTreeMap::from([(
                        u,
                        Marking {
                            add: w(add),
                            remove: w(remove),
                        },
                    )])
                })
                .unwrap_or_default(),
            updated_at: t(1),
            version: 1,
        }
    }

    #[test]
    fn a_relation_base_is_the_stored_one_when_nothing_is_being_marked() {
        let u = WecomUserId::new_unchecked("sales_li");
        let c = customer(&["a", "b"], None);
        // What the relation shows beyond the base stays a difference (someone else's change).
        assert_eq!(
            relation_base(Some(&c), &u, &ids(&["a", "c"])),
            ids(&["a", "b"])
        );
        assert_eq!(relation_base(None, &u, &ids(&["a"])), ids(&[]));
    }

    #[test]
    fn a_marking_in_flight_counts_as_applied_where_the_relation_shows_it_and_only_for_its_tags() {
        let u = WecomUserId::new_unchecked("sales_li");
        let c = customer(&["a", "b"], Some((&["x"], &["b"])));
        // Applied: x shows, b is gone; the foreign c stays a difference from the base.
        assert_eq!(
            relation_base(Some(&c), &u, &ids(&["a", "x", "c"])),
            ids(&["a", "x"])
        );
        // Not applied (the process died before the call): the base as stored.
        assert_eq!(
            relation_base(Some(&c), &u, &ids(&["a", "b"])),
            ids(&["a", "b"])
        );
        // Another relation of the customer is not touched by this one's marking.
        let other = WecomUserId::new_unchecked("sales_wang");
        assert_eq!(relation_base(Some(&c), &other, &ids(&["x"])), ids(&[]));
    }
}
