//! A name two hub objects want on one side: the holder is brought up to date, then, as
//! `crate::sync::collision` judges it, the name is free, the holder steps aside under a
//! temporary name (a swap), the two merge (one object created twice), or the change that
//! brought one onto the name is refused.

use super::persist::{group_json, link, tag_json};
use super::{Cx, Step, StepError};
use crate::domain::*;
use crate::mall::client::{GroupPatch, TagPatch};
use crate::ports::Write;
use crate::sync::collision::{Collision, Holder, MERGE_CHILDREN_MAX, collision, holder_verdict};
use crate::sync::object::LibraryObject;
use crate::wecom::classify::Refusal;
use crate::wecom::client::EditTarget;
use serde_json::json;

impl Cx<'_> {
    /// Group `other` holds `name` on `side`, which hub group `me` wants there. `other` is
    /// brought up to date first (its own change may still be queued: a rename away, or a
    /// WeCom rename that makes its WeCom group `me`'s); if it still holds the name, then
    /// either the hub has two groups of that name (created at once on two sides: `me` is
    /// merged into `other`) or `other` is renaming away and gets a temporary name there now
    /// and its own after this job's work. `Ok`: try again.
    pub(super) async fn group_step_aside(
        &mut self,
        side: Side,
        me: &HubGroupId,
        other: &HubGroupId,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        let read = |o: Option<TagGroup>| {
            o.ok_or_else(|| {
                StepError::park(format!(
                    "the name `{name}` is taken on {side} by an unknown hub group {other}"
                ))
            })
        };
        let mut o = read(self.app.store.get_group(&t, other).await?)?;
        if o.deleted_at.is_none() && self.depth < 3 {
            self.depth += 1;
            let r = Box::pin(self.group(other.clone(), Hint::from(self.origin), false)).await;
            self.depth -= 1;
            r?;
            o = read(self.app.store.get_group(&t, other).await?)?;
        }
        let temp = match holder_verdict(&o, side, name, Some(&()), true) {
            Holder::Free => return Ok(()),
            Holder::Collides => return self.merge_group_into(me, o, side, name).await,
            Holder::StepAside(temp) => temp,
        };
        match side {
            Side::Wecom => {
                let wid = o.wecom.id.clone().ok_or_else(|| {
                    StepError::park(format!(
                        "hub group {other} holds `{name}` in WeCom without an id"
                    ))
                })?;
                match self
                    .app
                    .wecom
                    .edit_corp_tag(&self.creds, EditTarget::Group(&wid), Some(&temp), None)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.refusal() == Some(Refusal::NotOurs) => {
                        return Err(StepError::park(format!(
                            "the name `{name}` is held in WeCom by read-only tag group {other}; rename it in WeCom"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(b) = o.wecom.base.as_mut() {
                    b.name = temp.clone();
                }
                self.wecom_lib = None;
            }
            Side::Mall => {
                let mid = o.mall.id.clone().ok_or_else(|| {
                    StepError::park(format!(
                        "hub group {other} holds `{name}` in the mall without an id"
                    ))
                })?;
                self.app
                    .mall
                    .update_group(
                        &self.ep,
                        &self.key(&format!("step-aside:{other}:{temp}:v{}", o.version)),
                        &mid,
                        &GroupPatch {
                            name: Some(temp.clone()),
                            order: None,
                        },
                    )
                    .await?;
                if let Some(b) = o.mall.base.as_mut() {
                    b.name = temp.clone();
                }
                self.mall_lib = None;
            }
        }
        let entry = self.entry(
            match side {
                Side::Wecom => Actor::Wecom,
                Side::Mall => Actor::Mall,
            },
            "group.renamed_temporarily",
            format!("group:{other}"),
            Some(json!({"name": name})),
            Some(json!({"name": temp})),
        );
        self.save_group(&mut o, side, vec![Write::Audit(entry)])
            .await?;
        if !self.after_groups.contains(other) {
            self.after_groups.push(other.clone());
        }
        Ok(())
    }

    /// Hub groups `me` and `o` share a name. As for tags ([`Cx::merge_into`]): created at once
    /// on two sides, `o` takes over the side groups `me` has (never two on one side) and
    /// `me`'s tags, and `me` is retired in the hub without touching any side; two groups with
    /// their own objects on one side keep apart, the one renamed onto the name getting its
    /// former name back.
    pub(super) async fn merge_group_into(
        &mut self,
        me: &HubGroupId,
        o: TagGroup,
        side: Side,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        let holder = o.id.clone();
        let clash = || {
            StepError::park(format!(
                "the name `{name}` is held on {side} by hub group {holder}; two groups cannot share a name — rename one of them"
            ))
        };
        let Some(x) = self.app.store.get_group(&t, me).await? else {
            return Err(clash());
        };
        let tags: Vec<Tag> = self
            .app
            .store
            .list_tags(&t)
            .await?
            .into_iter()
            .filter(|y| &y.group_id == me)
            .collect();
        match collision(Some(&x), &o, tags.len() <= MERGE_CHILDREN_MAX) {
            Collision::Clash => Err(clash()),
            // As for tags: `me` changed meanwhile, so the step that met the name is stale.
            Collision::Stale => Err(StepError::retry(
                format!("hub group {me} changed while a clash on `{name}` was settled; again"),
                Some(std::time::Duration::from_millis(200)),
            )),
            // Each holds its own group on a side: not one group created twice. The one
            // renamed onto the name gets its former name back.
            Collision::Refuse { refused, back } => {
                let (xid, oid) = (x.id.clone(), o.id.clone());
                let y = if refused == x.id { x } else { o };
                let other = if y.id == xid { oid } else { xid };
                self.refuse_group_change(y, back, me, &other, name).await
            }
            Collision::Merge => self.merge_groups(x, o, tags, name).await,
        }
    }

    /// Refuses the rename that brought group `y` onto `name` (held by hub group `other`): it
    /// returns to `back`'s name as a hub edit, brought to its sides now. `Ok`: `y` was the
    /// holder, try again; `superseded` when `y` is `me`.
    async fn refuse_group_change(
        &mut self,
        mut y: TagGroup,
        back: GroupSnapshot,
        me: &HubGroupId,
        other: &HubGroupId,
        name: &str,
    ) -> Step<()> {
        let before = group_json(&y);
        // As for tags (`refuse_tag_change`): each side's base takes the name the side
        // shows, so the hub's name goes there rather than the side's coming back.
        if let Some(w) = y.wecom.id.clone()
            && let Some(shown) = self.wecom_group_name(w.as_str()).await?
            && let Some(b) = y.wecom.base.as_mut()
        {
            b.name = shown;
        }
        if let Some(m) = y.mall.id.clone() {
            let shown = self
                .mall_lib()
                .await?
                .iter()
                .find(|g| g.group.id == m)
                .map(|g| g.group.name.clone());
            if let (Some(shown), Some(b)) = (shown, y.mall.base.as_mut()) {
                b.name = shown;
            }
        }
        y.name = back.name;
        y.name_at = self.now();
        for state in [&mut y.wecom.state, &mut y.mall.state] {
            if *state != SyncState::ReadOnly {
                *state = SyncState::Pending;
            }
        }
        let entry = self.entry(
            Actor::Hub,
            "group.change_refused",
            format!("group:{}", y.id),
            Some(before),
            Some(json!({
                "group": group_json(&y),
                "clashed_with": other,
            })),
        );
        self.commit(vec![Write::Group(y.clone()), Write::Audit(entry)])
            .await?;
        if self.depth < 4 {
            self.depth += 1;
            let r = Box::pin(self.group(y.id.clone(), Hint::from(self.origin), false)).await;
            self.depth -= 1;
            r?;
        }
        if y.id == *me {
            return Err(StepError::superseded(format!(
                "hub group {me} came onto `{name}`, held by hub group {other}: its rename was refused"
            )));
        }
        Ok(())
    }

    /// Group `x` was created twice: hub group `o` takes over the side groups `x` has (never
    /// two on one side) and `x`'s `tags`, and `x` is retired in the hub without touching any
    /// side; `o` is brought up to date and `x`'s run ends `superseded`.
    async fn merge_groups(
        &mut self,
        mut x: TagGroup,
        mut o: TagGroup,
        tags: Vec<Tag>,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        let me = x.id.clone();
        let mut writes = Vec::new();
        if let Some(w) = x.wecom.id.clone() {
            o.wecom = x.wecom.clone();
            writes.push(Write::Relink(link(
                &t,
                Side::Wecom,
                EntityKind::Group,
                w.as_str(),
                o.id.as_str(),
            )));
        }
        if let Some(m) = x.mall.id.clone() {
            o.mall = x.mall.clone();
            writes.push(Write::Relink(link(
                &t,
                Side::Mall,
                EntityKind::Group,
                m.as_str(),
                o.id.as_str(),
            )));
        }
        // The tags (and what their sides hold: the side groups are `o`'s now) go along.
        for mut y in tags {
            y.group_id = o.id.clone();
            if let Some(b) = y.wecom.base.as_mut().filter(|b| b.group_id == me) {
                b.group_id = o.id.clone();
            }
            if let Some(b) = y.mall.base.as_mut().filter(|b| b.group_id == me) {
                b.group_id = o.id.clone();
            }
            writes.push(Write::Tag(y));
        }
        let before = group_json(&x);
        x.deleted_at = Some(self.now());
        x.wecom = SideLink::default();
        x.mall = SideLink::default();
        x.wecom.state = SyncState::Synced;
        x.mall.state = SyncState::Synced;
        writes.push(Write::Audit(self.entry(
            Actor::Hub,
            "group.merged",
            format!("group:{me}"),
            Some(before),
            Some(json!({"merged_into": o.id})),
        )));
        writes.push(Write::Group(x));
        writes.push(Write::Group(o.clone()));
        self.commit(writes).await?;
        if self.depth < 4 {
            self.depth += 1;
            let r = Box::pin(self.group(o.id.clone(), Hint::from(self.origin), true)).await;
            self.depth -= 1;
            r?;
        }
        Err(StepError::superseded(format!(
            "hub group {me} duplicated hub group {} (`{name}`) and was merged into it",
            o.id
        )))
    }

    /// Sibling `other` holds `name` on `side`. If the hub is renaming (or deleting) it away,
    /// it gets a temporary name there now and its own name after this job's work; otherwise
    /// the names truly collide and the job parks.
    pub(super) async fn step_aside(
        &mut self,
        side: Side,
        me: &HubTagId,
        other: &HubTagId,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        let Some(mut o) = self.app.store.get_tag(&t, other).await? else {
            return Err(StepError::park(format!(
                "the name `{name}` is taken on {side} by an unknown hub tag {other}"
            )));
        };
        // The group where the name is wanted (`me`'s): the sibling may hold the name there
        // on the side while the hub already has it elsewhere (a move on its way).
        let target = self.app.store.get_tag(&t, me).await?.map(|x| x.group_id);
        let refresh = o.name == name && o.deleted_at.is_none() && self.depth < 3;
        if refresh {
            // The hub has not heard yet that the sibling is moving away (its own event is
            // still queued): bring it up to date first, then look again.
            self.depth += 1;
            let r = Box::pin(self.tag(other.clone(), Hint::from(self.origin))).await;
            self.depth -= 1;
            r?;
            o = self.app.store.get_tag(&t, other).await?.ok_or_else(|| {
                StepError::park(format!("hub tag {other} vanished while stepping aside"))
            })?;
        }
        let temp = match holder_verdict(&o, side, name, target.as_ref(), refresh) {
            Holder::Free => return Ok(()),
            Holder::Collides => return self.merge_into(me, o, side, name).await,
            Holder::StepAside(temp) => temp,
        };
        match side {
            Side::Wecom => {
                let wid = o.wecom.id.clone().ok_or_else(|| {
                    StepError::park(format!(
                        "hub tag {other} holds `{name}` in WeCom without an id"
                    ))
                })?;
                match self
                    .app
                    .wecom
                    .edit_corp_tag(&self.creds, EditTarget::Tag(&wid), Some(&temp), None)
                    .await
                {
                    Ok(()) => {}
                    // The holder keeps its name in WeCom (not this app's): the change that
                    // brought `me` onto that name is refused instead, if there is one.
                    Err(e) if e.refusal() == Some(Refusal::NotOurs) => {
                        let x = self.app.store.get_tag(&t, me).await?;
                        if let Some(x) = x.filter(|x| x.deleted_at.is_none())
                            && let Some((_, back)) = x.came_from()
                        {
                            return self.refuse_tag_change(x, back, me, other, name).await;
                        }
                        return Err(StepError::park(format!(
                            "the name `{name}` is held in WeCom by read-only tag {other}; rename it in WeCom"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(b) = o.wecom.base.as_mut() {
                    b.name = temp.clone();
                }
                self.wecom_lib = None;
            }
            Side::Mall => {
                let mid = o.mall.id.clone().ok_or_else(|| {
                    StepError::park(format!(
                        "hub tag {other} holds `{name}` in the mall without an id"
                    ))
                })?;
                self.app
                    .mall
                    .update_tag(
                        &self.ep,
                        &self.key(&format!("step-aside:{other}:{temp}:v{}", o.version)),
                        &mid,
                        &TagPatch {
                            name: Some(temp.clone()),
                            ..TagPatch::default()
                        },
                    )
                    .await?;
                if let Some(b) = o.mall.base.as_mut() {
                    b.name = temp.clone();
                }
                self.mall_lib = None;
            }
        }
        let entry = self.entry(
            match side {
                Side::Wecom => Actor::Wecom,
                Side::Mall => Actor::Mall,
            },
            "tag.renamed_temporarily",
            format!("tag:{other}"),
            Some(json!({"name": name})),
            Some(json!({"name": temp})),
        );
        self.save_tag(&mut o, side, vec![Write::Audit(entry)])
            .await?;
        if !self.after.contains(other) {
            self.after.push(other.clone());
        }
        Ok(())
    }

    /// Hub tag `me` wants `name` on `side`, where hub tag `o` holds it, and both are named so
    /// in one group in the hub. If two sides created one tag at once (the hub's admin and the
    /// mall, say, before either heard of the other's), they end as one: `o` takes over the
    /// side objects `me` has (never two on one side: WeCom merges same-name creates and the
    /// mall refuses them), and `me` is retired in the hub without touching any side. If each
    /// holds its own object on a side, they are two tags, and the one that came onto the name
    /// by a rename or a move has that change refused (`crate::sync::collision::collision`). Either way the
    /// one that carries on is brought up to date, and a run of `me` that is moot ends
    /// `superseded`.
    pub(super) async fn merge_into(
        &mut self,
        me: &HubTagId,
        mut o: Tag,
        side: Side,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        let holder = o.id.clone();
        let clash = || {
            StepError::park(format!(
                "the name `{name}` is held on {side} by hub tag {holder} in the same group; two tags cannot share a name — rename one of them"
            ))
        };
        let Some(mut x) = self.app.store.get_tag(&t, me).await? else {
            return Err(clash());
        };
        match collision(Some(&x), &o, true) {
            Collision::Merge => {}
            Collision::Clash => return Err(clash()),
            // `me` changed meanwhile (a nested run settled the clash another way): the step
            // that met the name is stale; the job starts again from what is stored now.
            Collision::Stale => {
                return Err(StepError::retry(
                    format!("hub tag {me} changed while a clash on `{name}` was settled; again"),
                    Some(std::time::Duration::from_millis(200)),
                ));
            }
            // Each holds its own object on a side: not one tag created twice.
            Collision::Refuse { refused, back } => {
                let oid = o.id.clone();
                let y = if refused == x.id { x } else { o };
                return self.refuse_tag_change(y, back, me, &oid, name).await;
            }
        }
        let mut writes = Vec::new();
        if let Some(w) = x.wecom.id.clone() {
            o.wecom = x.wecom.clone();
            writes.push(Write::Relink(link(
                &t,
                Side::Wecom,
                EntityKind::Tag,
                w.as_str(),
                o.id.as_str(),
            )));
        }
        if let Some(m) = x.mall.id.clone() {
            o.mall = x.mall.clone();
            writes.push(Write::Relink(link(
                &t,
                Side::Mall,
                EntityKind::Tag,
                m.as_str(),
                o.id.as_str(),
            )));
        }
        let before = tag_json(&x);
        x.deleted_at = Some(self.now());
        x.wecom = SideLink::default();
        x.mall = SideLink::default();
        x.wecom.state = SyncState::Synced;
        x.mall.state = SyncState::Synced;
        writes.push(Write::Audit(self.entry(
            Actor::Hub,
            "tag.merged",
            format!("tag:{me}"),
            Some(before),
            Some(json!({"merged_into": o.id})),
        )));
        writes.push(Write::Tag(x));
        writes.push(Write::Tag(o.clone()));
        self.commit(writes).await?;
        if self.depth < 4 {
            self.depth += 1;
            let r = Box::pin(self.tag(o.id.clone(), Hint::from(self.origin))).await;
            self.depth -= 1;
            r?;
        }
        Err(StepError::superseded(format!(
            "hub tag {me} duplicated hub tag {} (`{name}`) and was merged into it",
            o.id
        )))
    }

    /// Refuses the change that brought tag `y` onto `name` (held by hub tag `other`): it
    /// returns to `back` (its former name, or else group) as a hub edit, brought to its sides
    /// now. `Ok`: `y` was the holder, try again; `superseded` when `y` is `me`.
    pub(super) async fn refuse_tag_change(
        &mut self,
        mut y: Tag,
        back: TagSnapshot,
        me: &HubTagId,
        other: &HubTagId,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        if back.group_id != y.group_id
            && self
                .app
                .store
                .get_group(&t, &back.group_id)
                .await?
                .is_none_or(|g| g.deleted_at.is_some())
        {
            return Err(StepError::park(format!(
                "hub tags {me} and {other} both hold `{name}` in one group, and the one to give way has no group to return to; rename one of them"
            )));
        }
        let before = tag_json(&y);
        let now = self.now();
        // Each side's base takes the refused value where the side shows it, so that the next
        // merge does not take the side's (older) change for a new one: the hub's value wins
        // and goes to the side.
        let (wecom_now, mall_now) = self.tag_where_shown(&y).await?;
        let renaming = back.name != y.name;
        for (base, shown) in [
            (y.wecom.base.as_mut(), wecom_now),
            (y.mall.base.as_mut(), mall_now),
        ] {
            if let (Some(base), Some((name, group))) = (base, shown) {
                if renaming {
                    base.name = name;
                } else if let Some(group) = group {
                    base.group_id = group;
                }
            }
        }
        if renaming {
            y.name = back.name;
            y.name_at = now;
        } else {
            y.group_id = back.group_id;
            y.group_at = now;
        }
        for state in [&mut y.wecom.state, &mut y.mall.state] {
            if *state != SyncState::ReadOnly {
                *state = SyncState::Pending;
            }
        }
        let entry = self.entry(
            Actor::Hub,
            "tag.change_refused",
            format!("tag:{}", y.id),
            Some(before),
            Some(json!({
                "tag": tag_json(&y),
                "clashed_with": if &y.id == me { other } else { me },
            })),
        );
        self.commit(vec![Write::Tag(y.clone()), Write::Audit(entry)])
            .await?;
        // The refused one brings its sides back; if that is `me`, this run is moot.
        if self.depth < 4 {
            self.depth += 1;
            let r = Box::pin(self.tag(y.id.clone(), Hint::from(self.origin))).await;
            self.depth -= 1;
            r?;
        }
        if y.id == *me {
            return Err(StepError::superseded(format!(
                "hub tag {me} came onto `{name}`, held by hub tag {other}: its change was refused"
            )));
        }
        Ok(())
    }

    /// The name and (hub) group each side shows tag `y` under now, by its ids.
    #[allow(clippy::type_complexity)]
    pub(super) async fn tag_where_shown(
        &mut self,
        y: &Tag,
    ) -> Step<(
        Option<(String, Option<HubGroupId>)>,
        Option<(String, Option<HubGroupId>)>,
    )> {
        let wecom = match &y.wecom.id {
            Some(wid) => {
                let found = self.wecom_lib().await?.iter().find_map(|g| {
                    g.tag
                        .iter()
                        .find(|x| &x.id == wid)
                        .map(|x| (x.name.clone(), g.group_id.to_string()))
                });
                match found {
                    Some((name, g)) => Some((
                        name,
                        self.hub_id(Side::Wecom, EntityKind::Group, &g)
                            .await?
                            .map(HubGroupId::new_unchecked),
                    )),
                    None => None,
                }
            }
            None => None,
        };
        let mall = match &y.mall.id {
            Some(mid) => {
                let found = self
                    .mall_lib()
                    .await?
                    .iter()
                    .flat_map(|g| g.tags.iter())
                    .find(|x| &x.id == mid)
                    .map(|x| (x.name.clone(), x.group_id.to_string()));
                match found {
                    Some((name, g)) => Some((
                        name,
                        self.hub_id(Side::Mall, EntityKind::Group, &g)
                            .await?
                            .map(HubGroupId::new_unchecked),
                    )),
                    None => None,
                }
            }
            None => None,
        };
        Ok((wecom, mall))
    }
}
