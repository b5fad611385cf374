//! Two hub objects (groups, or tags in one group) that want one name on a side. A side keeps
//! names unique (WeCom per level, the mall per group), so the job that meets the name taken
//! decides here what the holder is: gone from the name meanwhile, the same object created
//! twice, a change onto a taken name to refuse, or a sibling renaming away that takes a
//! temporary name first (the swap). Pure: the jobs (`jobs/library/collisions.rs`) read, ask
//! and apply.

use super::object::LibraryObject;
use crate::domain::{Side, Timestamp};

/// Most tags a group merge moves along in one transaction; beyond that the two groups clash
/// and an operator renames one.
pub const MERGE_CHILDREN_MAX: usize = 90;

/// A name for a holder that must step aside: its own name plus a short mark of its id,
/// within WeCom's 30 characters.
pub fn temporary_name(name: &str, id: &str) -> String {
    let mark: String = id.chars().rev().take(4).collect();
    let keep: String = name.chars().take(30 - 5).collect();
    format!("{keep}~{mark}")
}

/// Whether `name` is a temporary name [`temporary_name`] gave the object `id`. A side's base
/// under such a name says only that tagsync moved the object out of a sibling's way there,
/// not what it was called before (the name may be cut short), so it is never a place the
/// object "came from" (a refused change sent back to it made the temporary name the
/// object's own everywhere).
pub fn is_temporary_name(name: &str, id: &str) -> bool {
    let mark: String = id.chars().rev().take(4).collect();
    name.strip_suffix(mark.as_str())
        .is_some_and(|rest| rest.ends_with('~'))
}

/// What the hub object that holds a name on a side is to the object that wants it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Its base there no longer shows it under the name (it moved away meanwhile): the name
    /// is free, try again.
    Free,
    /// The hub names it so too, in the same place: two hub objects for one name, settled by
    /// [`collision`].
    Collides,
    /// The hub is taking it elsewhere: it takes this temporary name on the side now, and its
    /// own name after the job's work.
    StepAside(String),
}

/// Judges `holder`, which holds `name` on `side` where an object placed in `scope` wants it
/// (`None`: that object is not in the hub, so nothing is in its place). With `look_at_base`
/// (the holder was just brought up to date) its base on the side says whether it still holds
/// the name there.
pub fn holder_verdict<T: LibraryObject>(
    holder: &T,
    side: Side,
    name: &str,
    scope: Option<&T::Scope>,
    look_at_base: bool,
) -> Holder {
    if look_at_base {
        let holds = holder
            .base_on(side)
            .is_some_and(|b| T::snapshot_name(b) == name && Some(&T::snapshot_scope(b)) == scope);
        if !holds {
            return Holder::Free;
        }
    }
    if holder.name() == name && !holder.is_deleted() && Some(&holder.scope()) == scope {
        Holder::Collides
    } else {
        Holder::StepAside(temporary_name(name, &holder.id().to_string()))
    }
}

/// How two hub objects named alike in one place end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collision<I, S> {
    /// The one that met the name changed meanwhile (a nested run settled it another way):
    /// the step is stale, the job starts again from what is stored.
    Stale,
    /// Each holds its own object on a side, so they are two: the one that came onto the name
    /// by a change has it refused and returns to `back`.
    Refuse { refused: I, back: S },
    /// Two that neither merge nor have a change to refuse: an operator renames one.
    Clash,
    /// One object created twice (on two sides before either heard of the other): `me` is
    /// merged into the holder, which takes over `me`'s side objects.
    Merge,
}

/// Settles `me` (as stored now; `None`: gone) against `holder`, which holds the name `me`
/// wants. `movable`: whatever `me` carries along in a merge (a group's tags) fits in one go.
/// `back_taken(id)`: whether the place object `id` came from is held by a third object now
/// (see [`refused_change_where_free`]).
pub fn collision<T: LibraryObject>(
    me: Option<&T>,
    holder: &T,
    movable: bool,
    back_taken: impl Fn(&T::Id) -> bool,
) -> Collision<T::Id, T::Snapshot> {
    let Some(x) = me else {
        return Collision::Clash;
    };
    if x.is_deleted() || x.scope() != holder.scope() || x.name() != holder.name() {
        return Collision::Stale;
    }
    let both_on_one_side = [Side::Wecom, Side::Mall]
        .into_iter()
        .any(|side| x.linked_on(side) && holder.linked_on(side));
    if both_on_one_side {
        return match refused_change_where_free(x, holder, back_taken) {
            Some((refused, back)) => Collision::Refuse { refused, back },
            None => Collision::Clash,
        };
    }
    if !movable {
        return Collision::Clash;
    }
    Collision::Merge
}

/// Two live hub objects came to one name in one place, each holding its own object on a side
/// (say a rename in WeCom and a move in the hub took one onto the name while the mall created
/// another there): they cannot be merged. The one that came there by a change — a side's base
/// still shows it under another name, or in another group — has that change refused: it
/// returns to that base's name (or else group). If both came by a change, the later one is
/// refused. Returns the object to change and where it returns to; `None` when neither changed.
pub fn refused_change<T: LibraryObject>(a: &T, b: &T) -> Option<(T::Id, T::Snapshot)> {
    refused_change_where_free(a, b, |_| false)
}

/// As [`refused_change`], where a change can only be refused if the place it came from is
/// free: `back_taken(id)` says whether a third object holds that name there now (on a side
/// or in the hub: say the mall renamed `G1` to `G3` and made a new `G1` before tagsync heard
/// of either). Such a change stands and the other one, if it is a change, is refused in its
/// place, whatever the times; with neither to refuse, the two clash and an operator renames
/// one. (Refusing it anyway sent the object back onto the third one's name, where that
/// clash refused the refusal: it went back and forth until its jobs were parked.)
pub fn refused_change_where_free<T: LibraryObject>(
    a: &T,
    b: &T,
    back_taken: impl Fn(&T::Id) -> bool,
) -> Option<(T::Id, T::Snapshot)> {
    let free = |x: &T| x.came_from().filter(|_| !back_taken(x.id()));
    refused((a.id().clone(), free(a)), (b.id().clone(), free(b)))
}

/// Of two changes, the one refused: the only one, or the later (the other's id breaks a tie).
fn refused<I: Ord, S>(
    a: (I, Option<(Timestamp, S)>),
    b: (I, Option<(Timestamp, S)>),
) -> Option<(I, S)> {
    match (a, b) {
        ((ia, Some((ta, sa))), (ib, Some((tb, sb)))) => {
            if (ta, &ia) >= (tb, &ib) {
                Some((ia, sa))
            } else {
                Some((ib, sb))
            }
        }
        ((ia, Some((_, sa))), _) => Some((ia, sa)),
        (_, (ib, Some((_, sb)))) => Some((ib, sb)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict on `me` against `holder` with children carried and no place taken.
    fn judged<T: LibraryObject>(me: &T, holder: &T) -> Collision<T::Id, T::Snapshot> {
        collision(Some(me), holder, true, |_| false)
    }
    use crate::domain::{
        GroupSnapshot, HubGroupId, HubTagId, MallGroupId, MallTagId, SideLink, SyncState, Tag,
        TagGroup, TagSnapshot, TenantId, WecomGroupId, WecomTagId,
    };

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }
    fn gid(s: &str) -> HubGroupId {
        HubGroupId::new_unchecked(s)
    }
    fn snap(name: &str, group: &str) -> TagSnapshot {
        TagSnapshot {
            name: name.into(),
            order: 1,
            group_id: gid(group),
        }
    }
    fn linked<I, S: Clone>(id: Option<I>, base: &S) -> SideLink<I, S> {
        SideLink {
            base: id.as_ref().map(|_| base.clone()),
            id,
            state: SyncState::Synced,
            error: None,
        }
    }
    /// Tag `id` named `name` in group `group`, in sync where it has side ids.
    fn tag(id: &str, name: &str, group: &str, wecom: Option<&str>, mall: Option<&str>) -> Tag {
        let s = snap(name, group);
        Tag {
            tenant: TenantId::parse("acme").unwrap(),
            id: HubTagId::new_unchecked(id),
            group_id: gid(group),
            name: name.into(),
            order: 1,
            name_at: t(1),
            order_at: t(1),
            group_at: t(1),
            deleted_at: None,
            wecom: linked(wecom.map(WecomTagId::new_unchecked), &s),
            mall: linked(mall.map(MallTagId::new_unchecked), &s),
            version: 1,
        }
    }
    fn group(id: &str, name: &str, wecom: Option<&str>, mall: Option<&str>) -> TagGroup {
        let s = GroupSnapshot {
            name: name.into(),
            order: 1,
        };
        TagGroup {
            tenant: TenantId::parse("acme").unwrap(),
            id: gid(id),
            name: name.into(),
            order: 1,
            name_at: t(1),
            order_at: t(1),
            deleted_at: None,
            wecom: linked(wecom.map(WecomGroupId::new_unchecked), &s),
            mall: linked(mall.map(MallGroupId::new_unchecked), &s),
            scope: None,
            carry_to_mall: true,
            version: 1,
        }
    }

    #[test]
    fn a_temporary_name_keeps_the_name_marks_the_id_and_fits_wecoms_thirty_characters() {
        assert_eq!(temporary_name("金卡", "01HXYZAB"), "金卡~BAZY");
        let long = "会".repeat(40);
        let temp = temporary_name(&long, "t1");
        assert_eq!(temp.chars().count(), 25 + 1 + 2);
        assert!(temp.starts_with(&"会".repeat(25)) && temp.ends_with("~1t"));
    }

    #[test]
    fn a_temporary_name_is_known_for_its_own_object_only() {
        let temp = temporary_name("金卡", "01HXYZAB");
        assert!(is_temporary_name(&temp, "01HXYZAB"));
        assert!(
            !is_temporary_name(&temp, "01HXYZAC"),
            "another object's mark"
        );
        assert!(!is_temporary_name("金卡", "01HXYZAB"), "an ordinary name");
        assert!(
            !is_temporary_name("BAZY", "01HXYZAB"),
            "the mark alone, no `~`"
        );
    }

    #[test]
    fn a_holder_renaming_away_steps_aside_under_a_temporary_name() {
        // The hub renamed the holder to "旧" already; its WeCom base still shows "金卡".
        let mut holder = tag("t2", "金卡", "g1", Some("w2"), None);
        holder.name = "旧".into();
        let verdict = holder_verdict(&holder, Side::Wecom, "金卡", Some(&gid("g1")), false);
        assert_eq!(verdict, Holder::StepAside(temporary_name("金卡", "t2")));
        // Moving to another group in the hub counts as leaving the name here too.
        let mut mover = tag("t3", "金卡", "g1", Some("w3"), None);
        mover.group_id = gid("g2");
        assert!(matches!(
            holder_verdict(&mover, Side::Wecom, "金卡", Some(&gid("g1")), false),
            Holder::StepAside(_)
        ));
    }

    #[test]
    fn a_holder_named_alike_in_the_same_place_collides_and_elsewhere_does_not() {
        let holder = tag("t2", "金卡", "g1", Some("w2"), None);
        assert_eq!(
            holder_verdict(&holder, Side::Wecom, "金卡", Some(&gid("g1")), false),
            Holder::Collides
        );
        // The object that wants the name is gone from the hub: nothing is in its place.
        assert!(matches!(
            holder_verdict(&holder, Side::Wecom, "金卡", None, false),
            Holder::StepAside(_)
        ));
        let mut deleted = holder.clone();
        deleted.deleted_at = Some(t(2));
        assert!(matches!(
            holder_verdict(&deleted, Side::Wecom, "金卡", Some(&gid("g1")), false),
            Holder::StepAside(_)
        ));
    }

    #[test]
    fn a_holder_whose_base_no_longer_shows_the_name_leaves_it_free() {
        let mut holder = group("g2", "会员", Some("wg2"), Some("mg2"));
        assert_eq!(
            holder_verdict(&holder, Side::Mall, "会员", Some(&()), true),
            Holder::Collides
        );
        holder.mall.base.as_mut().unwrap().name = "会员~2g".into();
        assert_eq!(
            holder_verdict(&holder, Side::Mall, "会员", Some(&()), true),
            Holder::Free
        );
        // WeCom's base still shows it: held there.
        assert_eq!(
            holder_verdict(&holder, Side::Wecom, "会员", Some(&()), true),
            Holder::Collides
        );
        // Not looked at: the holder's base is not consulted.
        assert_eq!(
            holder_verdict(&holder, Side::Mall, "会员", Some(&()), false),
            Holder::Collides
        );
    }

    #[test]
    fn one_tag_created_on_two_sides_at_once_merges() {
        let me = tag("t1", "金卡", "g1", None, Some("m1"));
        let holder = tag("t2", "金卡", "g1", Some("w2"), None);
        assert_eq!(judged(&me, &holder), Collision::Merge);
    }

    #[test]
    fn two_tags_each_with_an_object_on_one_side_refuse_the_change_onto_the_name() {
        // `me` was renamed c → 金卡 in the hub; both hold a WeCom tag.
        let mut me = tag("t1", "c", "g1", Some("w1"), None);
        me.name = "金卡".into();
        me.name_at = t(5);
        let holder = tag("t2", "金卡", "g1", Some("w2"), None);
        assert_eq!(
            judged(&me, &holder),
            Collision::Refuse {
                refused: HubTagId::new_unchecked("t1"),
                back: snap("c", "g1"),
            }
        );
        // Neither came by a change: they clash.
        let me = tag("t1", "金卡", "g1", Some("w1"), None);
        assert_eq!(judged(&me, &holder), Collision::Clash);
    }

    #[test]
    fn a_stale_or_missing_claimant_does_not_merge() {
        let holder = tag("t2", "金卡", "g1", Some("w2"), None);
        assert_eq!(collision(None, &holder, true, |_| false), Collision::Clash);
        let renamed = tag("t1", "银卡", "g1", None, Some("m1"));
        assert_eq!(judged(&renamed, &holder), Collision::Stale);
        let elsewhere = tag("t1", "金卡", "g9", None, Some("m1"));
        assert_eq!(judged(&elsewhere, &holder), Collision::Stale);
        let mut deleted = tag("t1", "金卡", "g1", None, Some("m1"));
        deleted.deleted_at = Some(t(3));
        assert_eq!(judged(&deleted, &holder), Collision::Stale);
    }

    #[test]
    fn a_group_too_big_to_move_clashes_instead_of_merging() {
        let me = group("g1", "会员", None, Some("mg1"));
        let holder = group("g2", "会员", Some("wg2"), None);
        assert_eq!(judged(&me, &holder), Collision::Merge);
        assert_eq!(
            collision(Some(&me), &holder, false, |_| false),
            Collision::Clash
        );
    }

    #[test]
    fn a_change_whose_old_place_a_third_object_holds_stands_and_the_other_is_refused() {
        // `x` was renamed G1 → 会员 (the mall did it, seen later); `o` was renamed G2 → 会员 in
        // the hub before `x`'s rename was seen: `x`'s is the later change.
        let mut x = group("g1", "G1", Some("wg1"), Some("mg1"));
        x.name = "会员".into();
        x.name_at = t(9);
        let mut o = group("g2", "G2", Some("wg2"), Some("mg2"));
        o.name = "会员".into();
        o.name_at = t(5);
        let g1 = HubGroupId::new_unchecked("g1");
        let g2 = HubGroupId::new_unchecked("g2");
        assert_eq!(
            judged(&x, &o),
            Collision::Refuse {
                refused: g1.clone(),
                back: GroupSnapshot {
                    name: "G1".into(),
                    order: x.order
                },
            },
            "the later change is refused when its old name is free"
        );
        // A new group took `G1` meanwhile: `x`'s rename stands, `o`'s is refused.
        let g1_taken = |id: &HubGroupId| id == &g1;
        assert_eq!(
            collision(Some(&x), &o, true, g1_taken),
            Collision::Refuse {
                refused: g2.clone(),
                back: GroupSnapshot {
                    name: "G2".into(),
                    order: o.order
                },
            }
        );
        // Neither can go back: they clash.
        assert_eq!(collision(Some(&x), &o, true, |_| true), Collision::Clash);
    }
}
