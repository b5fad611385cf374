//! Group jobs: find the hub group an event is about, see what both sides show for it, merge
//! (`crate::sync::library::merge_group`), store the result, run each side's leg
//! (`wecom.rs`, `mall.rs`) and bring the group's tags along (`crate::sync::group_tags`).

use super::persist::{Stored, cleared_links};
use super::{Cx, Step, id_to_read};
use crate::domain::*;
use crate::mall::client::MallGroupWithTags;
use crate::ports::Write;
use crate::sync::group_tags::{
    children_of_deleted, children_wecom_lacks, unfinished_child, wecom_group_undecided,
};
use crate::sync::library::{GroupFacts, GroupPlan, LibraryOp, Merged, Observed, merge_group};
use crate::wecom::client::TagGroupInfo;
use serde_json::json;

/// What the two sides show for a group job's group, looked up by its ids (or the event's),
/// and when.
struct GroupSeen {
    wecom_id: Option<String>,
    mall_id: Option<String>,
    wecom: Option<GroupSnapshot>,
    mall: Option<GroupSnapshot>,
    now: Timestamp,
    mall_at: Timestamp,
}

impl Cx<'_> {
    pub(super) async fn group_once(
        &mut self,
        id: HubGroupId,
        hint: Hint,
        children: bool,
    ) -> Step<()> {
        let Some((id, stored)) = self.find_group(id, &hint).await? else {
            return Ok(());
        };
        let seen = self.group_seen(stored.as_ref(), &hint).await?;
        // Likewise a WeCom group renamed (in WeCom) onto such a group's name becomes that
        // group's; this one keeps its name and no WeCom group, and its tags there follow.
        if let (Some(s), Some(shown), Some(w)) = (&stored, &seen.wecom, &seen.wecom_id)
            && s.name != shown.name
            && s.wecom.base.as_ref().is_some_and(|b| b.name != shown.name)
            && let Some(kept) = self.kept_group_named(&shown.name, &id).await?
        {
            let w = WecomGroupId::new_unchecked(w.clone());
            return self.relink_group(s.clone(), kept, w).await;
        }
        let tags = self.app.store.list_tags(self.t()).await?;
        let undecided = wecom_group_undecided(
            stored.as_ref(),
            &tags,
            seen.wecom.is_some(),
            hint.wecom_deleted,
        );
        let merged = merge_seen(
            self.t(),
            &id,
            stored.as_ref(),
            &seen,
            &tags,
            undecided,
            hint.wecom_deleted,
        );
        let Some(Merged { hub: g, plan }) = merged else {
            return Ok(());
        };
        let mut g = self.save_merged_group(stored.as_ref(), g, &seen).await?;
        let wecom_op = if undecided {
            LibraryOp::Nothing
        } else {
            plan.wecom.op.clone()
        };
        self.group_wecom_leg(
            &mut g,
            wecom_op,
            &plan.wecom.base_after,
            seen.wecom.as_ref(),
        )
        .await?;
        self.strategy_range_leg(&mut g).await?;
        if g.reaches_mall() {
            self.group_mall_leg(&mut g, &plan.mall, seen.mall.as_ref())
                .await?;
        } else {
            self.leave_mall(&mut g).await?;
        }
        self.group_tags(&g, &tags, children).await
    }

    /// The hub group a job for `id` is about, as stored: `id` itself, the hub group that
    /// adopted the event's side object meanwhile, or a kept group of the WeCom group's name.
    /// `None`: the event's WeCom group is another hub group's by now, which was brought up to
    /// date instead.
    async fn find_group(
        &mut self,
        id: HubGroupId,
        hint: &Hint,
    ) -> Step<Option<(HubGroupId, Option<TagGroup>)>> {
        let (mut id, mut stored) = self.stored::<TagGroup>(id, hint).await?;
        // The event's WeCom group maps to another hub group by now (WeCom renamed it onto
        // that group's name, see `relink_group`): that group is the one to bring up to date.
        if let (Some(s), Some(w)) = (&stored, &hint.wecom_id)
            && s.wecom.id.as_ref().is_none_or(|i| i.as_str() != w)
            && let Some(other) = self.hub_of::<TagGroup>(Side::Wecom, w).await?
            && other != id
            && self.depth < 4
        {
            self.depth += 1;
            let r = Box::pin(self.group(other, hint.clone(), true)).await;
            self.depth -= 1;
            return r.map(|()| None);
        }
        // A WeCom group new to the hub, named like a hub group WeCom does not show (one WeCom
        // dropped when its last tag went, or one not created there yet): it is that group —
        // WeCom would put that group's next tag into it by name anyway.
        if stored.is_none()
            && let Some(w) = &hint.wecom_id
            && let Some(name) = self.wecom_group_name(w).await?
            && let Some(mut kept) = self.kept_group_named(&name, &id).await?
        {
            id = kept.id.clone();
            // A stale WeCom id (the drop not noticed yet) goes: the new group replaces it.
            if let Some(stale) = kept.wecom.id.take() {
                kept.wecom = SideLink::default();
                let unlink = kept.link_on(Side::Wecom, &stale);
                self.commit(vec![Write::Unlink(unlink), Write::Group(kept.clone())])
                    .await?;
                kept.version += 1;
            }
            stored = Some(kept);
        }
        Ok(Some((id, stored)))
    }

    /// What both sides show for the group, by its ids or else the event's.
    async fn group_seen(&mut self, stored: Option<&TagGroup>, hint: &Hint) -> Step<GroupSeen> {
        let wecom_id = id_to_read(stored, Side::Wecom, hint.wecom_id.as_deref());
        let mall_id = id_to_read(stored, Side::Mall, hint.mall_id.as_deref());
        let now = self.now();
        let mall_at = hint.mall_at.unwrap_or(now);
        let wecom = match &wecom_id {
            Some(w) => self
                .wecom_lib()
                .await?
                .iter()
                .find(|g| g.group_id.as_str() == w)
                .map(wecom_group_snapshot),
            None => None,
        };
        let mall = match &mall_id {
            Some(m) => self
                .mall_lib()
                .await?
                .iter()
                .find(|g| g.group.id.as_str() == m)
                .map(mall_group_snapshot),
            None => None,
        };
        Ok(GroupSeen {
            wecom_id,
            mall_id,
            wecom,
            mall,
            now,
            mall_at,
        })
    }

    /// Stores the merged group `g`, linking the sides that show it and are not linked yet
    /// and unlinking those the merge cleared.
    async fn save_merged_group(
        &mut self,
        stored: Option<&TagGroup>,
        mut g: TagGroup,
        seen: &GroupSeen,
    ) -> Step<TagGroup> {
        let mut writes = Vec::new();
        // A group new from WeCom's side that lives in a rule group is scoped to it.
        if stored.is_none()
            && g.scope.is_none()
            && let (Some(w), Some(_)) = (&seen.wecom_id, &seen.wecom)
        {
            g.scope = self.scope_from_wecom(w).await?;
        }
        if let (Some(w), Some(_)) = (&seen.wecom_id, &seen.wecom)
            && g.wecom.id.is_none()
        {
            g.wecom.id = Some(WecomGroupId::new_unchecked(w.clone()));
            writes.push(Write::Link(g.link_on(Side::Wecom, w)));
        }
        if let (Some(m), Some(_)) = (&seen.mall_id, &seen.mall)
            && g.mall.id.is_none()
        {
            g.mall.id = Some(MallGroupId::new_unchecked(m.clone()));
            writes.push(Write::Link(g.link_on(Side::Mall, m)));
        }
        let cleared = cleared_links(stored, &g, &writes);
        writes.extend(cleared);
        self.save_merged(stored, &mut g, writes).await?;
        Ok(g)
    }

    /// The group's tags its job brings along: a deleted group's go with it. With `children`,
    /// also its tags WeCom shows that the hub does not know (a console-created group sends
    /// one event for the group and its tags) and its live tags WeCom still lacks (created
    /// with the group's first tag).
    async fn group_tags(&mut self, g: &TagGroup, tags: &[Tag], children: bool) -> Step<()> {
        if g.deleted_at.is_some() {
            for tag in children_of_deleted(tags, &g.id) {
                Box::pin(self.tag(tag, Hint::from(self.origin))).await?;
            }
            return Ok(());
        }
        if !children {
            return Ok(());
        }
        if let Some(wid) = &g.wecom.id {
            self.tags_wecom_shows(&g.id, wid, tags).await?;
        }
        // With the group in WeCom, also those whose WeCom id WeCom no longer has.
        let shown_here = match &g.wecom.id {
            None => true,
            Some(wid) => self.wecom_lib().await?.iter().any(|x| &x.group_id == wid),
        };
        if shown_here && g.wecom.state != SyncState::ReadOnly {
            let known = self.wecom_tag_ids().await?;
            for tag in children_wecom_lacks(tags, &g.id, &known) {
                Box::pin(self.tag(tag, Hint::from(self.origin))).await?;
            }
        }
        Ok(())
    }

    /// Tags WeCom shows in WeCom group `wid` that the hub does not know, knows but has not
    /// finished syncing (an earlier try of this job stopped half-way through them), or knows
    /// in another group (this WeCom group was another hub group's before).
    async fn tags_wecom_shows(
        &mut self,
        group: &HubGroupId,
        wid: &WecomGroupId,
        tags: &[Tag],
    ) -> Step<()> {
        let shown: Vec<String> = {
            let lib = self.wecom_lib().await?;
            lib.iter()
                .find(|x| &x.group_id == wid)
                .map(|x| x.tag.iter().map(|t| t.id.to_string()).collect())
                .unwrap_or_default()
        };
        for wtag in shown {
            match self.hub_of::<Tag>(Side::Wecom, &wtag).await? {
                None => {
                    let mut h = Hint::from(self.origin);
                    h.wecom_id = Some(wtag);
                    let new = HubTagId::new_unchecked(new_ordered_id());
                    Box::pin(self.tag(new, h)).await?;
                }
                Some(known) => {
                    if unfinished_child(tags, &known, group) {
                        Box::pin(self.tag(known, Hint::from(self.origin))).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) async fn wecom_group_name(&mut self, wecom_id: &str) -> Step<Option<String>> {
        Ok(self
            .wecom_lib()
            .await?
            .iter()
            .find(|g| g.group_id.as_str() == wecom_id)
            .map(|g| g.group_name.clone()))
    }

    /// The live hub group named `name` (other than `except`) that has no WeCom group (or
    /// one WeCom no longer shows: dropped, and not noticed yet).
    pub(super) async fn kept_group_named(
        &mut self,
        name: &str,
        except: &HubGroupId,
    ) -> Step<Option<TagGroup>> {
        let shown: std::collections::HashSet<WecomGroupId> = self
            .wecom_lib()
            .await?
            .iter()
            .map(|g| g.group_id.clone())
            .collect();
        Ok(self
            .app
            .store
            .list_groups(self.t())
            .await?
            .into_iter()
            .find(|g| {
                g.deleted_at.is_none()
                    && g.name == name
                    && &g.id != except
                    && g.wecom.id.as_ref().is_none_or(|w| !shown.contains(w))
            }))
    }

    /// WeCom group `w`, linked to hub group `from`, was renamed in WeCom to the name of hub
    /// group `to`, which has no WeCom group: `w` becomes `to`'s (one transaction), `from` is
    /// left as if WeCom had dropped it, and `to` is brought up to date with the tags WeCom
    /// shows in `w` (they moved to `to`, as far as the hub can tell).
    pub(super) async fn relink_group(
        &mut self,
        mut from: TagGroup,
        mut to: TagGroup,
        w: WecomGroupId,
    ) -> Step<()> {
        let mut writes = Vec::new();
        // `to`'s stale WeCom id (a group WeCom dropped, not noticed yet) goes.
        if let Some(stale) = to.wecom.id.as_ref().filter(|s| *s != &w) {
            writes.push(Write::Unlink(to.link_on(Side::Wecom, stale)));
        }
        from.wecom = SideLink::default();
        to.wecom = SideLink {
            id: Some(w.clone()),
            ..SideLink::default()
        };
        let entry = self.entry(
            Actor::Hub,
            "group.relinked",
            format!("group:{}", to.id),
            Some(json!({"wecom_id": w, "group": from.id})),
            Some(json!({"wecom_id": w, "group": to.id})),
        );
        writes.extend([
            Write::Relink(to.link_on(Side::Wecom, &w)),
            Write::Group(from),
            Write::Group(to.clone()),
            Write::Audit(entry),
        ]);
        self.commit(writes).await?;
        // Its job revisits the tags WeCom shows in `w` (the hub has them in `from`).
        Box::pin(self.group(to.id.clone(), Hint::from(self.origin), true)).await
    }
}

pub(super) fn wecom_group_snapshot(g: &TagGroupInfo) -> GroupSnapshot {
    GroupSnapshot {
        name: g.group_name.clone(),
        order: g.order,
    }
}

pub(super) fn mall_group_snapshot(g: &MallGroupWithTags) -> GroupSnapshot {
    GroupSnapshot {
        name: g.group.name.clone(),
        order: g.group.order,
    }
}

pub(super) fn g_name(s: &Option<GroupSnapshot>) -> String {
    s.as_ref().map(|s| s.name.clone()).unwrap_or_default()
}

/// The merge of group `id` with what the sides show. An undecided WeCom group counts as
/// shown as its base (it has a base, so the hub linked it there).
fn merge_seen(
    t: &TenantId,
    id: &HubGroupId,
    stored: Option<&TagGroup>,
    seen: &GroupSeen,
    tags: &[Tag],
    undecided: bool,
    wecom_deleted: bool,
) -> Option<Merged<TagGroup, GroupPlan>> {
    // WeCom shows the group under `wecom_id` (it was looked up by that id).
    let wecom_group = seen.wecom_id.clone().map(WecomGroupId::new_unchecked);
    let mut wobs = match (
        &seen.wecom,
        stored.and_then(|g| g.wecom.base.clone()),
        wecom_group,
    ) {
        (Some(s), _, Some(w)) => Observed::present(w, s.clone(), seen.now),
        (None, Some(base), Some(w)) if undecided => Observed::present(w, base, seen.now),
        _ => Observed::absent(seen.now),
    };
    if stored.is_some_and(|g| g.wecom.state == SyncState::ReadOnly) {
        wobs = wobs.read_only();
    }
    let mobs = match (seen.mall.clone(), seen.mall_id.clone()) {
        (Some(s), Some(m)) => Observed::present(MallGroupId::new_unchecked(m), s, seen.mall_at),
        _ => Observed::absent(seen.mall_at),
    };
    let live_tags = tags
        .iter()
        .filter(|x| &x.group_id == id && x.deleted_at.is_none())
        .count();
    let facts = GroupFacts {
        live_tags,
        wecom_dropped: !wecom_deleted,
    };
    merge_group(t, id, stored, &wobs, &mobs, facts)
}
