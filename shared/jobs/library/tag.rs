//! Tag jobs: find the hub tag an event is about, see what both sides show for it (by id, or
//! a tag a crashed move left unmapped), merge (`crate::sync::library::merge_tag`), store the
//! result and run each side's leg (`wecom.rs`, `mall.rs`).

use super::persist::{Stored, cleared_links};
use super::{Cx, Step, StepError, id_to_read};
use crate::domain::*;
use crate::mall::webhook::MallTag;
use crate::ports::Write;
use crate::sync::library::{LibraryOp, Merged, Observed, TagPlan, merge_tag};
use crate::sync::object::LibraryObject;
use crate::wecom::client::TagInfo;
use std::collections::HashSet;

impl Cx<'_> {
    /// What WeCom shows for tag `stored` under WeCom id `id`: its WeCom id and snapshot
    /// (group as a hub id). A tag whose WeCom id is gone while its hub group holds an
    /// unmapped WeCom tag of its name is that tag (a move that crashed between its create and
    /// the id map switch).
    pub(super) async fn wecom_tag(
        &mut self,
        id: Option<&str>,
        stored: Option<&Tag>,
    ) -> Step<Option<(WecomTagId, TagSnapshot)>> {
        let found = self.wecom_tag_info(id).await?;
        let found = match (found, stored) {
            (Some(f), _) => Some(f),
            (None, Some(s)) if s.wecom.id.is_some() && s.deleted_at.is_none() => {
                self.orphan_of(s).await?
            }
            _ => None,
        };
        let Some((wgroup, info)) = found else {
            return Ok(None);
        };
        let seen = self.tag_seen(Side::Wecom, wgroup.as_str(), info.name, info.order);
        Ok(Some((info.id, seen.await?)))
    }

    pub(super) async fn orphan_of(&mut self, s: &Tag) -> Step<Option<(WecomGroupId, TagInfo)>> {
        let Some(group) = self.app.store.get_group(self.t(), &s.group_id).await? else {
            return Ok(None);
        };
        let Some(wg) = group.wecom.id else {
            return Ok(None);
        };
        let candidate = self
            .wecom_lib()
            .await?
            .iter()
            .find(|g| g.group_id == wg)
            .and_then(|g| g.tag.iter().find(|x| x.name == s.name).cloned());
        match candidate {
            Some(c)
                if self
                    .hub_of::<Tag>(Side::Wecom, c.id.as_str())
                    .await?
                    .is_none() =>
            {
                Ok(Some((wg, c)))
            }
            _ => Ok(None),
        }
    }

    /// What the mall shows under mall id `id`: its mall id and snapshot (group as a hub id).
    pub(super) async fn mall_tag(
        &mut self,
        id: Option<&str>,
    ) -> Step<Option<(MallTagId, TagSnapshot)>> {
        let Some(tag) = self.mall_tag_info(id).await? else {
            return Ok(None);
        };
        let seen = self.tag_seen(Side::Mall, tag.group_id.as_str(), tag.name, tag.order);
        Ok(Some((tag.id, seen.await?)))
    }

    /// A tag as `side` shows it, in `side`'s group `side_group` (as a hub group, brought
    /// into the hub first if it is new there).
    async fn tag_seen(
        &mut self,
        side: Side,
        side_group: &str,
        name: String,
        order: u32,
    ) -> Step<TagSnapshot> {
        let group_id = self.hub_group_for(side, side_group).await?;
        Ok(TagSnapshot {
            name,
            order,
            group_id,
        })
    }

    /// WeCom tag `id` (if any) as WeCom's library (as read) shows it, with its WeCom group.
    pub(super) async fn wecom_tag_info(
        &mut self,
        id: Option<&str>,
    ) -> Step<Option<(WecomGroupId, TagInfo)>> {
        let Some(id) = id else { return Ok(None) };
        Ok(self.wecom_lib().await?.iter().find_map(|g| {
            let x = g.tag.iter().find(|x| x.id.as_str() == id)?;
            Some((g.group_id.clone(), x.clone()))
        }))
    }

    /// Every tag id WeCom's library (as read) shows.
    pub(super) async fn wecom_tag_ids(&mut self) -> Step<HashSet<String>> {
        let lib = self.wecom_lib().await?.iter();
        Ok(lib
            .flat_map(|g| g.tag.iter().map(|x| x.id.to_string()))
            .collect())
    }

    /// Mall tag `id` (if any) as the mall's library (as read) shows it.
    pub(super) async fn mall_tag_info(&mut self, id: Option<&str>) -> Step<Option<MallTag>> {
        let Some(id) = id else { return Ok(None) };
        let mut tags = self.mall_lib().await?.iter().flat_map(|g| g.tags.iter());
        Ok(tags.find(|x| x.id.as_str() == id).cloned())
    }

    pub(super) async fn tag_once(&mut self, id: HubTagId, hint: Hint) -> Step<()> {
        let t = self.t().clone();
        let Some((id, mut stored)) = self.find_tag(id, &hint).await? else {
            return Ok(());
        };
        // A tag whose group was deleted goes with it.
        if let Some(s) = stored.as_mut()
            && s.deleted_at.is_none()
            && let Some(g) = self.app.store.get_group(&t, &s.group_id).await?
            && let Some(at) = g.deleted_at
        {
            s.deleted_at = Some(at);
        }
        // A tag of a scoped group kept from the mall: the mall has no say (nor copy).
        let kept_from_mall = match &stored {
            Some(s) => self
                .app
                .store
                .get_group(&t, &s.group_id)
                .await?
                .is_some_and(|g| !g.reaches_mall()),
            None => false,
        };
        if kept_from_mall && let Some(s) = stored.as_mut() {
            self.forget_mall_tag(s).await?;
        }
        let now = self.now();
        let mall_at = hint.mall_at.unwrap_or(now);
        // A side that cannot be read for good (a revoked token, say) shows on the tag.
        let wecom_id = id_to_read(stored.as_ref(), Side::Wecom, hint.wecom_id.as_deref());
        let wecom = match self.wecom_tag(wecom_id.as_deref(), stored.as_ref()).await {
            Ok(w) => w,
            Err(e) => return self.unreadable(stored, Side::Wecom, e).await,
        };
        let mall_id = id_to_read(stored.as_ref(), Side::Mall, hint.mall_id.as_deref());
        let mall = match kept_from_mall {
            true => None,
            false => match self.mall_tag(mall_id.as_deref()).await {
                Ok(m) => m,
                Err(e) => return self.unreadable(stored, Side::Mall, e).await,
            },
        };
        let mut wobs = match &wecom {
            Some((w, s)) => Observed::present(w.clone(), s.clone(), now),
            None => Observed::absent(now),
        };
        if stored
            .as_ref()
            .is_some_and(|x| x.wecom.state == SyncState::ReadOnly)
        {
            wobs = wobs.read_only();
        }
        let mobs = match &mall {
            Some((m, s)) => Observed::present(m.clone(), s.clone(), mall_at),
            None => Observed::absent(mall_at),
        };
        let Some(Merged { hub: x, plan }) = merge_tag(&t, &id, stored.as_ref(), &wobs, &mobs)
        else {
            return Ok(());
        };
        let x = self
            .save_merged_tag(stored.as_ref(), x, wecom.as_ref(), mall.as_ref())
            .await?;
        self.apply_tag_plan(x, plan, wecom.map(|(_, s)| s), mall.map(|(_, s)| s))
            .await
    }

    /// The hub tag a job for `id` is about, as stored: `id` itself, or the hub tag that
    /// adopted the event's side object meanwhile. `None`: the event's side object belongs to
    /// another hub tag by now (this one was merged into it), which was brought up to date
    /// instead — the side object is never read as this tag's.
    async fn find_tag(
        &mut self,
        id: HubTagId,
        hint: &Hint,
    ) -> Step<Option<(HubTagId, Option<Tag>)>> {
        let (id, stored) = self.stored::<Tag>(id, hint).await?;
        let Some(s) = &stored else {
            return Ok(Some((id, stored)));
        };
        if self.depth >= 4 {
            return Ok(Some((id, stored)));
        }
        for (side, side_id) in [(Side::Wecom, &hint.wecom_id), (Side::Mall, &hint.mall_id)] {
            if let Some(side_id) = side_id
                && s.side_id(side).as_ref() != Some(side_id)
                && let Some(other) = self.hub_of::<Tag>(side, side_id).await?
                && other != id
            {
                self.depth += 1;
                let r = Box::pin(self.tag(other, hint.clone())).await;
                self.depth -= 1;
                return r.map(|()| None);
            }
        }
        Ok(Some((id, stored)))
    }

    /// Stores the merged tag `x`: links the side objects found for it (a side object already
    /// mapped to another hub tag was adopted elsewhere), unlinks those the merge cleared, and
    /// notices a WeCom group the tag's leaving emptied.
    async fn save_merged_tag(
        &mut self,
        stored: Option<&Tag>,
        mut x: Tag,
        wecom: Option<&(WecomTagId, TagSnapshot)>,
        mall: Option<&(MallTagId, TagSnapshot)>,
    ) -> Step<Tag> {
        let mut writes = Vec::new();
        if let Some((wid, _)) = wecom
            && x.wecom.id.as_ref() != Some(wid)
        {
            if let Some(old) = &x.wecom.id {
                writes.push(Write::Unlink(x.link_on(Side::Wecom, old)));
            }
            x.wecom.id = Some(wid.clone());
            writes.push(Write::Link(x.link_on(Side::Wecom, wid)));
        }
        if let Some((mid, _)) = mall
            && x.mall.id.is_none()
        {
            x.mall.id = Some(mid.clone());
            writes.push(Write::Link(x.link_on(Side::Mall, mid)));
        }
        let cleared = cleared_links(stored, &x, &writes);
        writes.extend(cleared);
        // The tag left a WeCom group (it vanished from WeCom, or shows in another group than
        // its base: a move): if it was that group's last, WeCom dropped the group. Looked at
        // before the new base is written, so a failed look is retried with the job (the
        // stored base still names the group), never lost.
        if let Some(s) = stored.filter(|s| s.wecom.id.is_some()) {
            let was_in = s.wecom.base.as_ref().map_or(&s.group_id, |b| &b.group_id);
            let left = match wecom {
                None => true,
                Some((_, seen)) => &seen.group_id != was_in,
            };
            if left {
                self.old_group_dropped(&was_in.clone(), &x.id).await?;
            }
        }
        self.save_merged(stored, &mut x, writes).await?;
        Ok(x)
    }

    /// Runs the plan's WeCom leg, then its mall leg; `wecom_seen`, `mall_seen`: what this
    /// job read on each side.
    async fn apply_tag_plan(
        &mut self,
        x: Tag,
        plan: TagPlan,
        wecom_seen: Option<TagSnapshot>,
        mall_seen: Option<TagSnapshot>,
    ) -> Step<()> {
        let x = match plan.wecom.op {
            LibraryOp::Nothing => x,
            LibraryOp::MarkReadOnly => {
                self.commit(vec![self.tag_audit(
                    Actor::Wecom,
                    "tag.read_only",
                    &x.id,
                    wecom_seen.as_ref(),
                    None,
                )])
                .await?;
                x
            }
            op => {
                self.apply_wecom_tag(x, op, plan.wecom.base_after, wecom_seen)
                    .await?
            }
        };
        let carried = self
            .app
            .store
            .get_group(self.t(), &x.group_id)
            .await?
            .is_none_or(|g| g.reaches_mall());
        match plan.mall.op {
            LibraryOp::Nothing | LibraryOp::MarkReadOnly => {}
            // A scoped group kept from the mall: its tags have no mall leg.
            _ if !carried => {}
            op => {
                self.apply_mall_tag(x, op, plan.mall.base_after, mall_seen)
                    .await?;
            }
        }
        Ok(())
    }

    /// The hub group, with a WeCom id when WeCom still has it (a dropped group's stale id is
    /// ignored: the tag's create recreates the group by name).
    pub(super) async fn group_for_create(&mut self, id: &HubGroupId) -> Step<TagGroup> {
        self.app
            .store
            .get_group(self.t(), id)
            .await?
            .ok_or_else(|| StepError::park(format!("hub group {id} does not exist")))
    }
}
