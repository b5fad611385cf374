//! A group job and the group's tags: whether a WeCom group that stopped showing can be judged
//! yet, and which of the group's tags the job brings up to date with it. Pure: the job
//! (`jobs/library/group.rs`) reads the hub and WeCom, asks, and runs the tags' work.

use crate::domain::{HubGroupId, HubTagId, SyncState, Tag, TagGroup};
use std::collections::HashSet;

/// WeCom no longer shows a group whose live hub tags still have WeCom ids: either the console
/// deleted the group (its own event says so: `deleted_event`) or its last tags went (their
/// events delete them here first). Until one of those events is handled the job cannot tell
/// which, so it leaves the WeCom leg as it was: the group counts as shown as its base.
pub fn wecom_group_undecided(
    stored: Option<&TagGroup>,
    tags: &[Tag],
    shown_in_wecom: bool,
    deleted_event: bool,
) -> bool {
    let Some(g) = stored else { return false };
    !shown_in_wecom
        && !deleted_event
        && g.wecom.base.is_some()
        && tags.iter().any(|x| in_wecom_group(x, &g.id))
}

/// Whether live tag `x` is in group `group` *in WeCom*: linked there, and in that group as its
/// WeCom base shows it (the hub's group when there is no base yet). A move the hub made is
/// not WeCom's until its job has created the tag in the new group: until then the tag is in
/// its old group there, and says nothing of the new one (a tag moved into a group WeCom had
/// just dropped kept that group's dead WeCom id for good; property test, seed
/// 10581312346689361892).
fn in_wecom_group(x: &Tag, group: &HubGroupId) -> bool {
    let there = x.wecom.base.as_ref().map_or(&x.group_id, |b| &b.group_id);
    x.deleted_at.is_none() && x.wecom.id.is_some() && there == group
}

/// Whether WeCom may have dropped group `group` because tag `leaving` was its last: only when
/// no other live hub tag is in the group in WeCom ([`in_wecom_group`]). Otherwise WeCom not showing the
/// group means it was deleted (its own event is coming, and deletes the group everywhere) or
/// those tags went too (their events come, and the last one lets the group go): either way
/// the group keeps its WeCom link until then, or the deletion event would find no group.
pub fn wecom_group_may_be_dropped(tags: &[Tag], group: &HubGroupId, leaving: &HubTagId) -> bool {
    !tags
        .iter()
        .any(|x| &x.id != leaving && in_wecom_group(x, group))
}

/// Whether tag `known`, which WeCom shows in group `group`, is one the group's job brings up
/// to date: unknown to the hub, in another hub group (this WeCom group was another hub
/// group's before), or not finished syncing (an earlier try stopped half-way through).
pub fn unfinished_child(tags: &[Tag], known: &HubTagId, group: &HubGroupId) -> bool {
    tags.iter().find(|x| &x.id == known).is_none_or(|x| {
        &x.group_id != group
            || [x.wecom.state, x.mall.state]
                .iter()
                .any(|s| matches!(s, SyncState::Pending | SyncState::Failed))
    })
}

/// The live hub tags of `group` that WeCom lacks (`shown`: every WeCom tag id it shows): no
/// WeCom id yet, or one WeCom no longer has (they went with a group WeCom deleted, which
/// sends no per-tag events).
pub fn children_wecom_lacks(
    tags: &[Tag],
    group: &HubGroupId,
    shown: &HashSet<String>,
) -> Vec<HubTagId> {
    tags.iter()
        .filter(|x| {
            &x.group_id == group
                && x.deleted_at.is_none()
                && x.wecom
                    .id
                    .as_ref()
                    .is_none_or(|w| !shown.contains(w.as_str()))
        })
        .map(|x| x.id.clone())
        .collect()
}

/// The tags that go with deleted group `group`: live ones, and deleted ones still linked to a
/// side.
pub fn children_of_deleted(tags: &[Tag], group: &HubGroupId) -> Vec<HubTagId> {
    tags.iter()
        .filter(|x| {
            &x.group_id == group
                && (x.deleted_at.is_none() || x.wecom.id.is_some() || x.mall.id.is_some())
        })
        .map(|x| x.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        GroupSnapshot, MallTagId, SideLink, TagSnapshot, TenantId, Timestamp, WecomGroupId,
        WecomTagId,
    };

    fn gid(s: &str) -> HubGroupId {
        HubGroupId::new_unchecked(s)
    }
    fn tid(s: &str) -> HubTagId {
        HubTagId::new_unchecked(s)
    }
    fn tag(id: &str, group: &str, wecom: Option<&str>, mall: Option<&str>) -> Tag {
        Tag {
            tenant: TenantId::parse("acme").unwrap(),
            id: tid(id),
            group_id: gid(group),
            name: id.into(),
            order: 1,
            name_at: Timestamp::from_millis(1),
            order_at: Timestamp::from_millis(1),
            group_at: Timestamp::from_millis(1),
            deleted_at: None,
            wecom: SideLink {
                id: wecom.map(WecomTagId::new_unchecked),
                base: None::<TagSnapshot>,
                state: SyncState::Synced,
                error: None,
            },
            mall: SideLink {
                id: mall.map(MallTagId::new_unchecked),
                base: None,
                state: SyncState::Synced,
                error: None,
            },
            version: 1,
        }
    }
    /// A WeCom base in group `group`.
    fn snap(group: &str) -> TagSnapshot {
        TagSnapshot {
            name: "x".into(),
            order: 1,
            group_id: gid(group),
        }
    }
    fn group_linked_in_wecom() -> TagGroup {
        TagGroup {
            tenant: TenantId::parse("acme").unwrap(),
            id: gid("g1"),
            name: "会员".into(),
            order: 1,
            name_at: Timestamp::from_millis(1),
            order_at: Timestamp::from_millis(1),
            deleted_at: None,
            wecom: SideLink {
                id: Some(WecomGroupId::new_unchecked("wg1")),
                base: Some(GroupSnapshot {
                    name: "会员".into(),
                    order: 1,
                }),
                state: SyncState::Synced,
                error: None,
            },
            mall: SideLink::default(),
            scope: None,
            carry_to_mall: true,
            version: 1,
        }
    }

    #[test]
    fn a_wecom_group_gone_with_linked_live_tags_is_undecided_until_an_event_says_why() {
        let g = group_linked_in_wecom();
        let tags = [tag("t1", "g1", Some("w1"), None)];
        assert!(wecom_group_undecided(Some(&g), &tags, false, false));
        // Its deletion event decides it; so does WeCom still showing it.
        assert!(!wecom_group_undecided(Some(&g), &tags, false, true));
        assert!(!wecom_group_undecided(Some(&g), &tags, true, false));
    }

    #[test]
    fn a_wecom_group_gone_without_linked_live_tags_or_base_is_decided() {
        let g = group_linked_in_wecom();
        // Its tags are deleted, or were never in WeCom, or are in another group.
        let mut deleted = tag("t1", "g1", Some("w1"), None);
        deleted.deleted_at = Some(Timestamp::from_millis(2));
        for tags in [
            vec![deleted],
            vec![tag("t2", "g1", None, Some("m2"))],
            vec![tag("t3", "g2", Some("w3"), None)],
        ] {
            assert!(!wecom_group_undecided(Some(&g), &tags, false, false));
        }
        // Never linked there (no base), or not in the hub at all.
        let mut unlinked = g.clone();
        unlinked.wecom = SideLink::default();
        let tags = [tag("t1", "g1", Some("w1"), None)];
        assert!(!wecom_group_undecided(Some(&unlinked), &tags, false, false));
        assert!(!wecom_group_undecided(None, &tags, false, false));
    }

    #[test]
    fn a_group_is_dropped_for_its_last_tag_only_when_no_other_live_tag_is_linked_in_wecom() {
        let leaving = tag("t1", "g1", Some("w1"), None);
        // Alone, or with tags that are deleted, not in WeCom, or in another group.
        let mut deleted = tag("t2", "g1", Some("w2"), None);
        deleted.deleted_at = Some(Timestamp::from_millis(2));
        let tags = [
            leaving.clone(),
            deleted,
            tag("t3", "g1", None, Some("m3")),
            tag("t4", "g2", Some("w4"), None),
        ];
        assert!(wecom_group_may_be_dropped(&tags, &gid("g1"), &tid("t1")));
        // Another live tag of the group still linked in WeCom: the group did not go empty.
        let tags = [leaving.clone(), tag("t5", "g1", Some("w5"), None)];
        assert!(!wecom_group_may_be_dropped(&tags, &gid("g1"), &tid("t1")));
        // One the hub moved here whose move has not reached WeCom is still in its old group
        // there; one whose base shows it here is here, whatever the hub says now.
        let mut moving_in = tag("t6", "g1", Some("w6"), None);
        moving_in.wecom.base = Some(snap("g2"));
        let tags = [leaving.clone(), moving_in];
        assert!(wecom_group_may_be_dropped(&tags, &gid("g1"), &tid("t1")));
        let mut moving_out = tag("t7", "g2", Some("w7"), None);
        moving_out.wecom.base = Some(snap("g1"));
        let tags = [leaving, moving_out];
        assert!(!wecom_group_may_be_dropped(&tags, &gid("g1"), &tid("t1")));
    }

    #[test]
    fn a_tag_moving_in_whose_move_has_not_reached_wecom_does_not_keep_a_gone_group_undecided() {
        let g = group_linked_in_wecom();
        let mut moving_in = tag("t1", "g1", Some("w1"), None);
        moving_in.wecom.base = Some(snap("g2"));
        assert!(!wecom_group_undecided(Some(&g), &[moving_in], false, false));
    }

    #[test]
    fn a_child_is_unfinished_when_unknown_elsewhere_pending_or_failed() {
        let mut pending = tag("t2", "g1", Some("w2"), None);
        pending.mall.state = SyncState::Pending;
        let mut failed = tag("t3", "g1", Some("w3"), None);
        failed.wecom.state = SyncState::Failed;
        let tags = [
            tag("t1", "g1", Some("w1"), Some("m1")),
            pending,
            failed,
            tag("t4", "g2", Some("w4"), None),
        ];
        let g1 = gid("g1");
        assert!(!unfinished_child(&tags, &tid("t1"), &g1), "in sync here");
        assert!(unfinished_child(&tags, &tid("t2"), &g1), "pending");
        assert!(unfinished_child(&tags, &tid("t3"), &g1), "failed");
        assert!(unfinished_child(&tags, &tid("t4"), &g1), "another group's");
        assert!(
            unfinished_child(&tags, &tid("t9"), &g1),
            "not in the hub's list"
        );
        let mut read_only = tag("t5", "g1", Some("w5"), None);
        read_only.wecom.state = SyncState::ReadOnly;
        assert!(!unfinished_child(&[read_only], &tid("t5"), &g1));
    }

    #[test]
    fn children_wecom_lacks_are_live_ones_without_a_shown_wecom_id() {
        let mut deleted = tag("t4", "g1", None, Some("m4"));
        deleted.deleted_at = Some(Timestamp::from_millis(2));
        let tags = [
            tag("t1", "g1", Some("w1"), None),
            tag("t2", "g1", Some("w-gone"), None),
            tag("t3", "g1", None, Some("m3")),
            deleted,
            tag("t5", "g2", None, None),
        ];
        let shown: HashSet<String> = ["w1".to_string()].into();
        assert_eq!(
            children_wecom_lacks(&tags, &gid("g1"), &shown),
            vec![tid("t2"), tid("t3")]
        );
    }

    #[test]
    fn a_deleted_groups_children_are_its_live_tags_and_deleted_ones_still_linked() {
        let mut gone = tag("t2", "g1", None, None);
        gone.deleted_at = Some(Timestamp::from_millis(2));
        let mut linked = tag("t3", "g1", None, Some("m3"));
        linked.deleted_at = Some(Timestamp::from_millis(2));
        let tags = [
            tag("t1", "g1", None, None),
            gone,
            linked,
            tag("t4", "g2", Some("w4"), None),
        ];
        assert_eq!(
            children_of_deleted(&tags, &gid("g1")),
            vec![tid("t1"), tid("t3")]
        );
    }
}
