//! Tag jobs: find the hub tag an event is about, see what both sides show for it (by id, or
//! a tag a crashed move left unmapped), merge (`crate::sync::library::merge_tag`), store the
//! result and run each side's leg (`wecom.rs`, `mall.rs`).

use super::persist::{Stored, cleared_links};
use super::{Cx, Step, StepError};
use crate::domain::*;
use crate::mall::webhook::MallTag;
use crate::ports::Write;
use crate::sync::library::{LibraryOp, Merged, Observed, TagPlan, merge_tag};

impl Cx<'_> {
    /// What WeCom shows for a tag: its snapshot (group as a hub id) and its WeCom id. A tag
    /// whose WeCom id is gone while its hub group holds an unmapped WeCom tag of its name is
    /// that tag (a move that crashed between its create and the id map switch).
    pub(super) async fn wecom_tag(
        &mut self,
        stored: Option<&Tag>,
        seed: Option<&str>,
    ) -> Step<Option<(WecomTagId, TagSnapshot)>> {
        let id = stored
            .and_then(|x| x.wecom.id.as_ref().map(|i| i.to_string()))
            .or(seed.map(str::to_owned));
        let found = match &id {
            Some(id) => self.wecom_lib().await?.iter().find_map(|g| {
                g.tag
                    .iter()
                    .find(|x| x.id.as_str() == id)
                    .map(|x| (g.group_id.clone(), x.clone()))
            }),
            None => None,
        };
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
        let group_id = self.hub_group_for(Side::Wecom, wgroup.as_str()).await?;
        Ok(Some((
            info.id,
            TagSnapshot {
                name: info.name,
                order: info.order,
                group_id,
            },
        )))
    }

    pub(super) async fn orphan_of(
        &mut self,
        s: &Tag,
    ) -> Step<Option<(WecomGroupId, crate::wecom::client::TagInfo)>> {
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
                    .hub_id(Side::Wecom, EntityKind::Tag, c.id.as_str())
                    .await?
                    .is_none() =>
            {
                Ok(Some((wg, c)))
            }
            _ => Ok(None),
        }
    }

    pub(super) async fn mall_tag(
        &mut self,
        stored: Option<&Tag>,
        seed: Option<&str>,
    ) -> Step<Option<(MallTagId, TagSnapshot)>> {
        let id = stored
            .and_then(|x| x.mall.id.as_ref().map(|i| i.to_string()))
            .or(seed.map(str::to_owned));
        let found: Option<MallTag> = match &id {
            Some(id) => self
                .mall_lib()
                .await?
                .iter()
                .flat_map(|g| g.tags.iter())
                .find(|x| x.id.as_str() == id)
                .cloned(),
            None => None,
        };
        let Some(tag) = found else { return Ok(None) };
        let group_id = self
            .hub_group_for(Side::Mall, tag.group_id.as_str())
            .await?;
        Ok(Some((
            tag.id,
            TagSnapshot {
                name: tag.name,
                order: tag.order,
                group_id,
            },
        )))
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
        let wecom = match self
            .wecom_tag(stored.as_ref(), hint.wecom_id.as_deref())
            .await
        {
            Ok(w) => w,
            Err(e) => return self.unreadable(stored, Side::Wecom, e).await,
        };
        let mall = match kept_from_mall {
            true => None,
            false => match self
                .mall_tag(stored.as_ref(), hint.mall_id.as_deref())
                .await
            {
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
        let t = self.t().clone();
        let mut stored = self.app.store.get_tag(&t, &id).await?;
        let mut id = id;
        if stored.is_none() {
            id = HubTagId::new_unchecked(
                self.adopt_id(EntityKind::Tag, id.to_string(), hint).await?,
            );
            stored = self.app.store.get_tag(&t, &id).await?;
        }
        let Some(s) = &stored else {
            return Ok(Some((id, stored)));
        };
        if self.depth >= 4 {
            return Ok(Some((id, stored)));
        }
        for (side, side_id, own) in [
            (
                Side::Wecom,
                &hint.wecom_id,
                s.wecom.id.as_ref().map(|i| i.as_str()),
            ),
            (
                Side::Mall,
                &hint.mall_id,
                s.mall.id.as_ref().map(|i| i.as_str()),
            ),
        ] {
            if let Some(side_id) = side_id
                && own != Some(side_id.as_str())
                && let Some(other) = self.hub_id(side, EntityKind::Tag, side_id).await?
                && other != id.as_str()
            {
                self.depth += 1;
                let other = HubTagId::new_unchecked(other);
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
