//! The WeCom leg of group and tag jobs: the calls (edit, create with its group, delete) and
//! what WeCom's answers mean for the hub object, read from `crate::wecom::classify`'s
//! [`Refusal`]: not this app's (read-only), name taken (a sibling steps aside), unknown id
//! (deleted meanwhile). WeCom creates a group only with a tag and drops a group whose last
//! tag goes, which is not a deletion.

use super::group::{g_name, wecom_group_snapshot};
use super::persist::Stored;
use super::{Cx, Step, StepError, StepFailure, vanished};
use crate::domain::*;
use crate::ports::Write;
use crate::sync::group_tags::wecom_group_may_be_dropped;
use crate::sync::library::LibraryOp;
use crate::wecom::classify::Refusal;
use crate::wecom::client::{AddTarget, EditTarget, NewTag, TagGroupInfo, WecomError};
use serde_json::json;

impl Cx<'_> {
    /// Group `g`'s WeCom leg: the planned operation `op` (nothing while WeCom's dropping of
    /// the group is undecided), then `g` saved with what WeCom confirmed (`base_after`) or
    /// what refused it; `seen`: what this job read there.
    pub(super) async fn group_wecom_leg(
        &mut self,
        g: &mut TagGroup,
        op: LibraryOp<WecomGroupId, GroupSnapshot>,
        base_after: &Option<GroupSnapshot>,
        seen: Option<&GroupSnapshot>,
    ) -> Step<()> {
        let id = g.id.clone();
        let wecom_call = match op {
            LibraryOp::Nothing | LibraryOp::Create { .. } | LibraryOp::Move { .. } => None,
            LibraryOp::MarkReadOnly => {
                self.commit(vec![Write::Audit(self.entry(
                    Actor::Wecom,
                    "group.read_only",
                    format!("group:{id}"),
                    seen.map(|s| json!(s)),
                    None,
                ))])
                .await?;
                None
            }
            LibraryOp::Update {
                id: wid,
                name,
                order,
            } => {
                let r = self
                    .wecom_group_edit(&id, &wid, name.as_deref(), order)
                    .await?;
                Some((wid, r, false))
            }
            LibraryOp::Delete { id: wid } => {
                let r = self
                    .wecom_del_call(&[], std::slice::from_ref(&wid))
                    .await?
                    .map(|_| ());
                Some((wid, r, true))
            }
        };
        let Some((wid, result, deleted)) = wecom_call else {
            return Ok(());
        };
        let mut writes = Vec::new();
        match result.map_err(|e| (e.refusal(), e)) {
            Ok(()) => {
                if deleted {
                    writes.push(Write::Unlink(g.link_on(Side::Wecom, &wid)));
                    g.wecom = SideLink::default();
                    g.wecom.synced(None);
                } else {
                    g.wecom.synced(base_after.clone());
                }
                writes.push(Write::Audit(self.entry(
                    Actor::Wecom,
                    if deleted {
                        "group.deleted"
                    } else {
                        "group.updated"
                    },
                    format!("group:{id}"),
                    seen.map(|s| json!(s)),
                    base_after.as_ref().map(|s| json!(s)),
                )));
            }
            Err((Some(Refusal::NotOurs), _)) => {
                g.wecom.base = seen.cloned();
                g.wecom.state = SyncState::ReadOnly;
                writes.push(Write::Audit(self.entry(
                    Actor::Wecom,
                    "group.read_only",
                    format!("group:{id}"),
                    seen.map(|s| json!(s)),
                    None,
                )));
            }
            Err((Some(Refusal::UnknownId), _)) => return Err(vanished(Side::Wecom)),
            Err((Some(Refusal::NameTaken), _)) => {
                let why = format!(
                    "WeCom already has a tag group named `{}`; rename one of them",
                    g_name(base_after)
                );
                return self
                    .fail(g.clone(), Side::Wecom, StepError::park(why))
                    .await;
            }
            Err((_, e)) => return self.fail(g.clone(), Side::Wecom, e).await,
        }
        self.save_group(g, Side::Wecom, writes).await?;
        self.wecom_lib = None;
        Ok(())
    }

    /// Edits WeCom group `wid` of hub group `me`. A name another group holds there makes
    /// that group step aside first (once); WeCom's last answer is returned.
    pub(super) async fn wecom_group_edit(
        &mut self,
        me: &HubGroupId,
        wid: &WecomGroupId,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Step<Result<(), WecomError>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .wecom_edit_call(EditTarget::Group(wid), name, order)
                .await?;
            let (Err(e), Some(name), 1) = (&r, name, attempt) else {
                return Ok(r);
            };
            if e.refusal() != Some(Refusal::NameTaken) {
                return Ok(r);
            }
            self.wecom_lib = None;
            let holder = self
                .wecom_lib()
                .await?
                .iter()
                .find(|g| g.group_name == name && &g.group_id != wid)
                .map(|g| g.group_id.clone());
            // Gone meanwhile: the next try finds the name free.
            let Some(holder) = holder else { continue };
            let Some(other) = self
                .hub_of::<TagGroup>(Side::Wecom, holder.as_str())
                .await?
            else {
                return Err(StepError::park(format!(
                    "the name `{name}` is taken in WeCom by tag group {holder}, which tagsync does not manage; rename or delete it"
                )));
            };
            self.step_aside::<TagGroup>(Side::Wecom, me, &other, name)
                .await?;
        }
    }

    /// Tag `x`'s WeCom leg: the planned operation, then `x` saved with what WeCom confirmed
    /// (`after`); `seen`: what this job read there.
    pub(super) async fn apply_wecom_tag(
        &mut self,
        x: Tag,
        op: LibraryOp<WecomTagId, TagSnapshot>,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        match op {
            LibraryOp::Create { after: s } => self.wecom_tag_create(x, &s, after, seen).await,
            LibraryOp::Update {
                id: wid,
                name,
                order,
            } => {
                self.wecom_tag_update(x, &wid, name.as_deref(), order, after, seen)
                    .await
            }
            LibraryOp::Move {
                id: old, after: s, ..
            } => self.wecom_tag_move(x, old, s, after, seen).await,
            LibraryOp::Delete { id: wid } => self.wecom_tag_delete(x, wid, after, seen).await,
            LibraryOp::Nothing | LibraryOp::MarkReadOnly => Ok(x),
        }
    }

    async fn wecom_tag_create(
        &mut self,
        mut x: Tag,
        s: &TagSnapshot,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        let wid = match self.wecom_create(&x, s).await {
            Ok(wid) => wid,
            Err(e) => return self.fail(x, Side::Wecom, e).await,
        };
        let writes = vec![
            Write::Link(x.link_on(Side::Wecom, &wid)),
            self.tag_audit(
                Actor::Wecom,
                "tag.created",
                &x.id,
                seen.as_ref(),
                after.as_ref(),
            ),
        ];
        x.wecom.id = Some(wid);
        self.wecom_tag_done(x, after, writes).await
    }

    async fn wecom_tag_update(
        &mut self,
        x: Tag,
        wid: &WecomTagId,
        name: Option<&str>,
        order: Option<u32>,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        match self.wecom_edit(&x, wid, name, order).await {
            Ok(true) => {
                let audit = self.tag_audit(
                    Actor::Wecom,
                    "tag.updated",
                    &x.id,
                    seen.as_ref(),
                    after.as_ref(),
                );
                self.wecom_tag_done(x, after, vec![audit]).await
            }
            Ok(false) => self.read_only(x, seen).await,
            Err(e) => self.fail(x, Side::Wecom, e).await,
        }
    }

    /// WeCom has no move: the tag is created in its new group, every relation that carried
    /// the old tag is re-marked (`wecom_move.rs`), the old one is deleted, and the id map
    /// switches in one transaction.
    async fn wecom_tag_move(
        &mut self,
        mut x: Tag,
        old: WecomTagId,
        s: TagSnapshot,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        // Probe ownership with an edit that changes nothing: a tag this app may not edit
        // cannot be moved either (its delete would fail after the create).
        let current_order = seen.as_ref().map(|s| s.order);
        match self.wecom_edit(&x, &old, None, current_order).await {
            Ok(true) => {}
            Ok(false) => return self.read_only(x, seen).await,
            Err(e) => return self.fail(x, Side::Wecom, e).await,
        }
        let new = match self.wecom_create(&x, &s).await {
            Ok(w) => w,
            Err(e) => return self.fail(x, Side::Wecom, e).await,
        };
        let (remarked, changed) = match self.remark(&old, &new).await {
            Ok(r) => r,
            Err(e) => return self.fail(x, Side::Wecom, e).await,
        };
        let carried = match self.carry_onto_moved(&old, &new, seen.as_ref()).await {
            Ok(c) => c,
            Err(e) => return self.fail(x, Side::Wecom, e).await,
        };
        match self.wecom_del_call(std::slice::from_ref(&old), &[]).await? {
            Ok(_) => {}
            Err(e) if e.refusal() == Some(Refusal::UnknownId) => {}
            Err(e) => return self.fail(x, Side::Wecom, e).await,
        }
        let id = x.id.clone();
        let before = seen.as_ref().map(|s| {
            let mut b = json!(s);
            b["wecom_id"] = json!(old);
            b
        });
        let writes = vec![
            Write::Unlink(x.link_on(Side::Wecom, &old)),
            Write::Link(x.link_on(Side::Wecom, &new)),
            Write::Audit(self.entry(
                Actor::Wecom,
                "tag.moved",
                format!("tag:{id}"),
                before,
                Some(json!({"snapshot": s, "wecom_id": new, "relations_remarked": remarked})),
            )),
        ];
        x.wecom.id = Some(new.clone());
        if let Some(old_group) = seen.as_ref().map(|s| s.group_id.clone()) {
            self.old_group_dropped(&old_group, &x.id).await?;
        }
        let x = self.wecom_tag_done(x, after, writes).await?;
        self.remember_moved(&old, changed).await?;
        if carried {
            // The new tag shows a change this job did not make: its job takes it for
            // WeCom's and brings it to the other sides.
            let tag = x.id.clone();
            let hint = Hint::from(self.origin);
            self.queue(vec![JobKind::SyncTag { tag, hint }], "a tag job")
                .await?;
        }
        Ok(x)
    }

    async fn wecom_tag_delete(
        &mut self,
        mut x: Tag,
        wid: WecomTagId,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        match self.wecom_del_call(std::slice::from_ref(&wid), &[]).await? {
            Ok(_) => {}
            Err(e) => match e.refusal() {
                Some(Refusal::UnknownId) => {}
                Some(Refusal::NotOurs) => return self.read_only(x, seen).await,
                _ => return self.fail(x, Side::Wecom, e).await,
            },
        }
        let writes = vec![
            Write::Unlink(x.link_on(Side::Wecom, &wid)),
            self.tag_audit(Actor::Wecom, "tag.deleted", &x.id, seen.as_ref(), None),
        ];
        // The group WeCom had it in (the hub may have moved it meanwhile).
        let was_in = seen.as_ref().map_or(&x.group_id, |s| &s.group_id).clone();
        self.old_group_dropped(&was_in, &x.id).await?;
        x.wecom.id = None;
        self.wecom_tag_done(x, after, writes).await
    }

    /// WeCom confirmed: the tag's base there is `after`, saved with `writes`.
    async fn wecom_tag_done(
        &mut self,
        mut x: Tag,
        after: Option<TagSnapshot>,
        writes: Vec<Write>,
    ) -> Step<Tag> {
        x.wecom.synced(after);
        self.save_tag(&mut x, Side::Wecom, writes).await?;
        self.wecom_lib = None;
        Ok(x)
    }

    /// WeCom refused to edit the tag (not this app's): it keeps WeCom's value there (`seen`),
    /// shown as `read_only`.
    pub(super) async fn read_only(&self, mut x: Tag, seen: Option<TagSnapshot>) -> Step<Tag> {
        let audit = self.tag_audit(Actor::Wecom, "tag.read_only", &x.id, seen.as_ref(), None);
        x.wecom.base = seen;
        x.wecom.state = SyncState::ReadOnly;
        x.wecom.error = None;
        self.save_tag(&mut x, Side::Wecom, vec![audit]).await?;
        Ok(x)
    }

    /// After WeCom tag `leaving` left its group: WeCom drops a group with no tags left, which
    /// is not a group deletion — the hub group loses its WeCom id and gets a new one with its
    /// next tag. Only if `leaving` was the group's last linked tag
    /// ([`wecom_group_may_be_dropped`]): a group WeCom stopped showing while other tags are
    /// linked in it was deleted (or they went too), and its own event must still find it.
    pub(super) async fn old_group_dropped(
        &mut self,
        group: &HubGroupId,
        leaving: &HubTagId,
    ) -> Step<()> {
        let t = self.t().clone();
        let Some(mut g) = self.app.store.get_group(&t, group).await? else {
            return Ok(());
        };
        let Some(wg) = g.wecom.id.clone() else {
            return Ok(());
        };
        let tags = self.app.store.list_tags(&t).await?;
        if !wecom_group_may_be_dropped(&tags, group, leaving) {
            return Ok(());
        }
        self.wecom_lib = None;
        if self.wecom_lib().await?.iter().any(|x| x.group_id == wg) {
            return Ok(());
        }
        let unlink = g.link_on(Side::Wecom, &wg);
        g.wecom = SideLink::default();
        self.commit(vec![Write::Unlink(unlink), Write::Group(g)])
            .await
    }

    /// Creates tag `x` with snapshot `s` in WeCom, creating or adopting its group as needed;
    /// adopts a same-name tag nobody maps. Returns the WeCom id.
    pub(super) async fn wecom_create(
        &mut self,
        x: &Tag,
        s: &TagSnapshot,
    ) -> Result<WecomTagId, StepFailure> {
        let (mut group, lib, wgroup) = self.wecom_create_target(s).await?;
        if let Some(wg) = &wgroup
            && let Some(adopted) = self.same_name_wecom_tag(x, s, &mut group, &lib, wg).await?
        {
            return Ok(adopted);
        }
        let new = [NewTag {
            name: s.name.clone(),
            order: Some(s.order),
        }];
        let target = match &wgroup {
            Some(wg) => AddTarget::Group(wg),
            None => AddTarget::Named {
                name: &group.name,
                order: Some(group.order),
            },
        };
        let created = self
            .wecom_add_call(&group, target, &new)
            .await
            .map_err(|e| {
                // The group was deleted in WeCom meanwhile: the next try reads that, and the
                // deletion (which takes the group's tags) wins over the create.
                if e.refusal() == Some(Refusal::UnknownId) {
                    vanished(Side::Wecom)
                } else {
                    StepError::from(e)
                }
            })?;
        self.wecom_lib = None;
        if group.wecom.id.as_ref() != Some(&created.group_id) {
            self.link_created_wecom_group(x, &mut group, &lib, wgroup.as_ref(), &created)
                .await?;
        }
        created
            .tag
            .iter()
            .find(|y| y.name == s.name)
            .map(|y| y.id.clone())
            .ok_or_else(|| {
                StepError::retry("WeCom's add_corp_tag answer lacks the new tag", None).into()
            })
    }

    /// The hub group a WeCom create of `s` goes into, WeCom's library as read, and the WeCom
    /// group to create in: the group's own, if WeCom still has it; else a same-name WeCom
    /// group nobody maps (WeCom would merge into it anyway); else none (created by name).
    async fn wecom_create_target(
        &mut self,
        s: &TagSnapshot,
    ) -> Step<(TagGroup, Vec<TagGroupInfo>, Option<WecomGroupId>)> {
        let mut stepped = false;
        loop {
            let group = self.group_for_create(&s.group_id).await?;
            let group = self.with_strategy(group).await?;
            // Only the group's own library (the corp's, or its rule group's) can hold it.
            let strategy = group.scope.as_ref().and_then(|x| x.strategy_id);
            let lib: Vec<TagGroupInfo> = self
                .wecom_lib()
                .await?
                .iter()
                .filter(|g| g.strategy_id == strategy)
                .cloned()
                .collect();
            let mut wgroup = group
                .wecom
                .id
                .clone()
                .filter(|w| lib.iter().any(|g| &g.group_id == w));
            if wgroup.is_none()
                && let Some(same) = lib.iter().find(|g| g.group_name == group.name)
            {
                let same_id = same.group_id.as_str();
                match self.hub_of::<TagGroup>(Side::Wecom, same_id).await? {
                    // Another hub group's: it steps aside (once), then look again.
                    Some(other) if other != group.id && !stepped => {
                        stepped = true;
                        self.step_aside::<TagGroup>(Side::Wecom, &group.id, &other, &group.name)
                            .await?;
                        self.wecom_lib = None;
                        continue;
                    }
                    Some(other) if other != group.id => {
                        return Err(StepError::park(format!(
                            "WeCom's tag group `{}` belongs to another hub group ({other}); rename one of them",
                            group.name
                        )));
                    }
                    _ => wgroup = Some(same.group_id.clone()),
                }
            }
            return Ok((group, lib, wgroup));
        }
    }

    /// A tag named `s.name` already in WeCom group `wg`: adopted if nobody maps it (a
    /// retried or crashed create; returned), this tag's own, or a sibling's, which steps
    /// aside (`None`: create now).
    async fn same_name_wecom_tag(
        &mut self,
        x: &Tag,
        s: &TagSnapshot,
        group: &mut TagGroup,
        lib: &[TagGroupInfo],
        wg: &WecomGroupId,
    ) -> Result<Option<WecomTagId>, StepFailure> {
        let Some(same) = lib
            .iter()
            .find(|g| &g.group_id == wg)
            .and_then(|g| g.tag.iter().find(|y| y.name == s.name))
        else {
            return Ok(None);
        };
        match self.hub_of::<Tag>(Side::Wecom, same.id.as_str()).await? {
            None => {
                let read = lib
                    .iter()
                    .find(|g| &g.group_id == wg)
                    .map(wecom_group_snapshot);
                self.link_wecom_group(group, wg, read).await?;
                if same.order != s.order {
                    self.wecom_edit(x, &same.id, None, Some(s.order)).await?;
                }
                Ok(Some(same.id.clone()))
            }
            Some(other) if other == x.id => Ok(Some(same.id.clone())),
            Some(other) => {
                self.step_aside::<Tag>(Side::Wecom, &x.id, &other, &s.name)
                    .await?;
                Ok(None)
            }
        }
    }

    /// The create of `x` put it in WeCom group `created.group_id`, new to hub group `group`
    /// (created with it, or one WeCom merged the create into): `group` is linked to it.
    async fn link_created_wecom_group(
        &mut self,
        x: &Tag,
        group: &mut TagGroup,
        lib: &[TagGroupInfo],
        wgroup: Option<&WecomGroupId>,
        created: &TagGroupInfo,
    ) -> Step<()> {
        // The group's base: as this job read it, or as this job created it — never as
        // WeCom shows it after the create, which may hold a change someone made since
        // (a console rename, say: its callback's job must find it a WeCom change).
        let known = match wgroup {
            Some(w) => lib
                .iter()
                .find(|g| &g.group_id == w)
                .map(wecom_group_snapshot),
            None => Some(GroupSnapshot {
                name: group.name.clone(),
                order: group.order,
            }),
        };
        // WeCom merged the create into a same-name group made meanwhile (by the console,
        // or by another app, which WeCom reports to nobody): its job looks at it.
        let answered = GroupSnapshot {
            name: created.group_name.clone(),
            order: created.order,
        };
        if known.as_ref().is_some_and(|k| *k != answered) {
            let (group, hint) = (group.id.clone(), Hint::from(self.origin));
            self.queue(vec![JobKind::SyncGroup { group, hint }], "a group job")
                .await?;
        }
        if wgroup.is_none() {
            self.commit(vec![Write::Audit(self.entry(
                Actor::Wecom,
                "group.created",
                format!("group:{}", group.id),
                None,
                Some(json!({"name": created.group_name, "order": created.order})),
            ))])
            .await?;
        }
        let stale = group.wecom.id.is_some();
        self.link_wecom_group(group, &created.group_id, known)
            .await?;
        if stale {
            self.gone_with_wecom_group(&group.id, &x.id).await?;
        }
        Ok(())
    }

    /// Hub group `group` had a WeCom group WeCom no longer shows (deleted in the console, or
    /// dropped), and got a new one: its tags (other than `except`, being created) still linked
    /// to WeCom tags that are gone went with the old group, which their jobs now find (the
    /// old group's own event may find no link left to act on).
    pub(super) async fn gone_with_wecom_group(
        &mut self,
        group: &HubGroupId,
        except: &HubTagId,
    ) -> Step<()> {
        let shown = self.wecom_tag_ids().await?;
        let tags: Vec<Tag> = self.all().await?;
        let gone: Vec<HubTagId> = tags
            .into_iter()
            .filter(|y| {
                &y.group_id == group
                    && &y.id != except
                    && y.deleted_at.is_none()
                    && y.wecom
                        .id
                        .as_ref()
                        .is_some_and(|w| !shown.contains(w.as_str()))
            })
            .map(|y| y.id)
            .collect();
        let mut gone = gone.into_iter();
        while let Some(y) = gone.next() {
            if let Err(e) = Box::pin(self.tag(y, Hint::from(self.origin))).await {
                // This job's retry finds the group linked and does not come back here: the
                // rest get their own jobs (the failed one has its own already).
                let rest = gone
                    .map(|tag| JobKind::SyncTag {
                        tag,
                        hint: Hint::from(self.origin),
                    })
                    .collect();
                return Err(self.hand_over(rest, e).await);
            }
        }
        Ok(())
    }

    /// Points hub group `g` at WeCom group `wg`, with `known` for its base: the group as this
    /// job read it (adopted) or created it; never a read after this job's write.
    pub(super) async fn link_wecom_group(
        &mut self,
        g: &mut TagGroup,
        wg: &WecomGroupId,
        known: Option<GroupSnapshot>,
    ) -> Step<()> {
        if g.wecom.id.as_ref() == Some(wg) {
            return Ok(());
        }
        let mut writes = Vec::new();
        if let Some(old) = &g.wecom.id {
            writes.push(Write::Unlink(g.link_on(Side::Wecom, old)));
        }
        writes.push(Write::Link(g.link_on(Side::Wecom, wg)));
        g.wecom.id = Some(wg.clone());
        // If the base differs from the hub the group job brings the hub's value there.
        g.wecom.synced(known.or(Some(GroupSnapshot {
            name: g.name.clone(),
            order: g.order,
        })));
        self.save_group(g, Side::Wecom, writes).await?;
        // Bring the group's own fields over if WeCom's differ (a merged same-name group).
        if g.wecom.base.as_ref().map(|b| b.order) != Some(g.order) {
            let id = g.id.clone();
            Box::pin(self.group(id, Hint::from(self.origin), false)).await?;
            if let Some(fresh) = self.app.store.get_group(self.t(), &g.id).await? {
                *g = fresh;
            }
        }
        Ok(())
    }

    /// Edits a WeCom tag. `Ok(false)`: the tag is not this app's (read-only). A name a
    /// sibling holds makes that sibling step aside when it is renaming away.
    pub(super) async fn wecom_edit(
        &mut self,
        x: &Tag,
        wid: &WecomTagId,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<bool, StepFailure> {
        for attempt in 0..2 {
            match self
                .wecom_edit_call(EditTarget::Tag(wid), name, order)
                .await?
            {
                Ok(()) => {
                    self.wecom_lib = None;
                    return Ok(true);
                }
                Err(e) if e.refusal() == Some(Refusal::NotOurs) => return Ok(false),
                // Deleted in WeCom while this job ran: the next try reads that, and the delete
                // wins over the edit.
                Err(e) if e.refusal() == Some(Refusal::UnknownId) => {
                    return Err(vanished(Side::Wecom).into());
                }
                Err(e) if e.refusal() == Some(Refusal::NameTaken) && attempt == 0 => {
                    let name = name.unwrap_or_default().to_owned();
                    let holder = self.wecom_sibling(x, &name).await?;
                    self.step_aside::<Tag>(Side::Wecom, &x.id, &holder, &name)
                        .await?;
                }
                Err(e) => return Err(StepError::from(e).into()),
            }
        }
        Err(StepError::park("WeCom refused the rename twice").into())
    }

    /// The hub tag holding `name` next to `x` in WeCom.
    pub(super) async fn wecom_sibling(&mut self, x: &Tag, name: &str) -> Step<HubTagId> {
        self.wecom_lib = None;
        let wid = x.wecom.id.clone();
        let holder = self
            .wecom_lib()
            .await?
            .iter()
            .find(|g| g.tag.iter().any(|y| Some(&y.id) == wid.as_ref()))
            .and_then(|g| g.tag.iter().find(|y| y.name == name).cloned());
        let Some(holder) = holder else {
            return Err(StepError::retry(
                format!("WeCom said `{name}` is taken but no sibling has it; retrying"),
                None,
            ));
        };
        match self.hub_of::<Tag>(Side::Wecom, holder.id.as_str()).await? {
            Some(h) => Ok(h),
            None => Err(StepError::park(format!(
                "the name `{name}` is taken in WeCom by tag {} which tagsync does not manage; rename or delete it",
                holder.id
            ))),
        }
    }
}
