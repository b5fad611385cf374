//! A member job's id translations (hub ↔ WeCom ↔ mall tag ids), each looked up once per job.

use super::Cx;
use crate::domain::*;
use crate::jobs::Step;
use std::collections::BTreeSet;

impl Cx<'_> {
    pub(super) async fn hub_of(&mut self, side: Side, id: &str) -> Step<Option<HubTagId>> {
        let key = (side, id.to_owned());
        if let Some(v) = self.ids.to_hub.get(&key) {
            return Ok(v.clone());
        }
        let found = self
            .app
            .store
            .lookup_link(&self.tenant.id, side, EntityKind::Tag, id)
            .await?
            .map(HubTagId::new_unchecked);
        self.ids.to_hub.insert(key, found.clone());
        Ok(found)
    }

    /// Whether the hub still has this tag (not deleted).
    pub(super) async fn live(&mut self, tag: &HubTagId) -> Step<bool> {
        if let Some(known) = self.ids.live.get(tag) {
            return Ok(*known);
        }
        let live = self
            .app
            .store
            .get_tag(&self.tenant.id, tag)
            .await?
            .is_some_and(|x| x.deleted_at.is_none());
        self.ids.live.insert(tag.clone(), live);
        Ok(live)
    }

    /// Whether `tag` belongs to a scoped group kept from the mall (docs/scoped-groups.md):
    /// the mall neither gets it nor has a say about it. A tag with a mall id is carried, so
    /// only tags without one cost a read of their group.
    pub(super) async fn kept_from_mall(&mut self, tag: &HubTagId) -> Step<bool> {
        if let Some(known) = self.ids.kept_from_mall.get(tag) {
            return Ok(*known);
        }
        let t = &self.tenant.id;
        let group = match self.app.store.get_tag(t, tag).await? {
            Some(x) if x.mall.id.is_none() => Some(x.group_id),
            _ => None,
        };
        let kept = match group {
            None => false,
            Some(g) => match self.ids.group_kept.get(&g) {
                Some(k) => *k,
                None => {
                    let k = self
                        .app
                        .store
                        .get_group(t, &g)
                        .await?
                        .is_some_and(|g| !g.reaches_mall());
                    self.ids.group_kept.insert(g, k);
                    k
                }
            },
        };
        self.ids.kept_from_mall.insert(tag.clone(), kept);
        Ok(kept)
    }

    pub(super) async fn side_of(&mut self, side: Side, tag: &HubTagId) -> Step<Option<String>> {
        let key = (side, tag.clone());
        if let Some(v) = self.ids.to_side.get(&key) {
            return Ok(v.clone());
        }
        let stored = self.app.store.get_tag(&self.tenant.id, tag).await?;
        let link = stored
            .filter(|x| x.deleted_at.is_none())
            .map(|x| match side {
                Side::Wecom => (
                    x.wecom.id.map(|i| i.to_string()),
                    x.wecom.state,
                    x.wecom.error,
                ),
                Side::Mall => (x.mall.id.map(|i| i.to_string()), x.mall.state, x.mall.error),
            });
        let found = match link {
            Some((id, state, error)) => {
                // Read here once: why the tag's own job failed there for good, if it did.
                if id.is_none() && state == SyncState::Failed {
                    let why = error.unwrap_or_else(|| "failed".into());
                    self.ids.failed.insert(key.clone(), why);
                }
                id
            }
            None => None,
        };
        self.ids.to_side.insert(key, found.clone());
        Ok(found)
    }

    pub(super) async fn hub_ids(&mut self, side: Side, ids: &[String]) -> Step<BTreeSet<HubTagId>> {
        let mut out = BTreeSet::new();
        for id in ids {
            if let Some(h) = self.hub_of(side, id).await? {
                out.insert(h);
            }
        }
        Ok(out)
    }

    /// Side ids of hub tags. A live tag not created on that side yet (its tag job is still
    /// on its way) is noted in `waiting`: the job retries shortly rather than drop it.
    pub(super) async fn side_ids(
        &mut self,
        side: Side,
        tags: &BTreeSet<HubTagId>,
    ) -> Step<Vec<String>> {
        let mut out = Vec::new();
        for t in tags {
            match self.side_of(side, t).await? {
                Some(id) => {
                    if side == Side::Wecom {
                        self.wecom_used.insert(t.clone(), id.clone());
                    }
                    out.push(id)
                }
                None if side == Side::Mall && self.kept_from_mall(t).await? => {}
                None if self.live(t).await? => match self.ids.failed.get(&(side, t.clone())) {
                    Some(why) => {
                        self.blocked.insert(format!("{t} in {side} ({why})"));
                    }
                    None => {
                        self.waiting.insert(format!("{t} in {side}"));
                    }
                },
                None => {}
            }
        }
        Ok(out)
    }
}
