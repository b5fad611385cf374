//! Group and tag jobs: read the hub object and what WeCom and the mall show for it, merge
//! (`crate::sync::library`), and apply the plan side by side, writing the hub, the bases and
//! the id map after each side confirms.
//!
//! All library jobs of a tenant hold one lock (see [`super::library_lock`]), so within a job
//! the hub is ours: a step that finds something unknown (a WeCom group the hub has never
//! seen) brings it up to date inline instead of queueing and waiting.
//!
//! Side rules applied here, outside the pure core:
//! - WeCom creates a group only together with a tag, and may merge a create into an existing
//!   same-name object; both sides' same-name objects are adopted when nobody else owns them
//!   (which also makes a retried create harmless).
//! - WeCom has no move: create in the new group, re-mark every relation that carried the old
//!   tag, delete the old one, then switch the id map in one transaction.
//! - 301002 (not this app's tag) makes the WeCom leg `read_only`: WeCom keeps its value.
//! - A name a sibling holds: when the sibling is itself renaming away (a swap), it first gets
//!   a temporary name; otherwise the job parks with both names in the reason.

use super::worker::Outcome;
use super::{
    Step, StepError, WECOM_CORP_TAG, WECOM_NAME_TAKEN, WECOM_NO_RELATION, WECOM_NOT_OURS,
    WECOM_UNKNOWN_ID, audit, library_lock, lock, member_lock,
};
use crate::app::App;
use crate::domain::*;
use crate::mall::client::{GroupPatch, IdempotencyKey, MallError, MallGroupWithTags, TagPatch};
use crate::mall::webhook::MallTag;
use crate::ports::Write;
use crate::sync::library::{
    GroupFacts, LibraryOp, Merged, Observed, merge_group, merge_tag, refused_group_change,
    refused_tag_change, tag_came_from,
};
use crate::wecom::client::{
    AddTarget, EditTarget, NewTag, TagGroupInfo, WecomCredentials, WecomError,
};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

pub async fn sync_group(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    group: &HubGroupId,
    hint: &Hint,
) -> Outcome {
    run(app, tenant, job, hint.origin, |cx| {
        Box::pin(cx.group(group.clone(), hint.clone(), true))
    })
    .await
}

pub async fn sync_tag(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    tag: &HubTagId,
    hint: &Hint,
) -> Outcome {
    run(app, tenant, job, hint.origin, |cx| {
        Box::pin(cx.tag(tag.clone(), hint.clone()))
    })
    .await
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = Step<()>> + Send + 'a>>;

async fn run<F>(app: &App, tenant: &Tenant, job: &Job, origin: Actor, work: F) -> Outcome
where
    F: for<'c> FnOnce(&'c mut Cx<'_>) -> StepFuture<'c>,
{
    let held = match lock(app, library_lock(&tenant.id)).await {
        Ok(l) => l,
        Err(e) => return e.into_outcome(),
    };
    let mut cx = Cx {
        app,
        tenant,
        job,
        origin,
        creds: App::wecom_credentials(tenant),
        ep: App::mall_endpoint(tenant),
        wecom_lib: None,
        mall_lib: None,
        after: Vec::new(),
        after_groups: Vec::new(),
        depth: 0,
        active: 0,
    };
    let mut result = work(&mut cx).await;
    // Siblings that got a temporary name are brought to their own names now: work for other
    // objects, handed to their own jobs if it fails (`active` makes the calls nested).
    cx.active += 1;
    while result.is_ok() {
        if let Some(group) = cx.after_groups.pop() {
            result = cx.group(group, Hint::from(origin), false).await;
            continue;
        }
        let Some(tag) = cx.after.pop() else { break };
        result = cx.tag(tag, Hint::from(origin)).await;
    }
    cx.active -= 1;
    // This job's retry may not come back to follow-ups it had still to do (what it saved
    // before failing can send its retry down another path): they get their own jobs.
    if result.as_ref().is_err_and(|e| e.retry.is_some())
        && (!cx.after.is_empty() || !cx.after_groups.is_empty())
    {
        let mut kinds: Vec<JobKind> = std::mem::take(&mut cx.after_groups)
            .into_iter()
            .map(|group| JobKind::SyncGroup {
                group,
                hint: Hint::from(origin),
            })
            .collect();
        kinds.extend(cx.after.drain(..).map(|tag| JobKind::SyncTag {
            tag,
            hint: Hint::from(origin),
        }));
        if let Err(e) = super::enqueue(app, tenant, kinds).await {
            tracing::warn!(error = %e, "could not queue a failed job's follow-ups; its retry redoes what it can");
        }
    }
    // A job whose run was superseded by a nested one is done (see `Cx::merge_into`).
    if result.as_ref().is_err_and(|e| e.superseded) {
        result = Ok(());
    }
    held.release(app).await;
    match result {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// One library job's context: the tenant's credentials and, read once and kept current, both
/// sides' libraries.
struct Cx<'a> {
    app: &'a App,
    tenant: &'a Tenant,
    job: &'a Job,
    origin: Actor,
    creds: WecomCredentials,
    ep: crate::mall::client::MallEndpoint,
    wecom_lib: Option<Vec<TagGroupInfo>>,
    mall_lib: Option<Vec<MallGroupWithTags>>,
    /// Tags to bring up to date once this job's own work is done.
    after: Vec<HubTagId>,
    /// Groups likewise (given a temporary name on a side).
    after_groups: Vec<HubGroupId>,
    /// Inline recursion depth (an unknown group found while syncing a tag): bounded.
    depth: u32,
    /// `tag`/`group` calls in progress: above zero, a call is another object's work done
    /// inside this job (see [`Cx::hand_over`]).
    active: u32,
}

fn wecom_group_snapshot(g: &TagGroupInfo) -> GroupSnapshot {
    GroupSnapshot {
        name: g.group_name.clone(),
        order: g.order,
    }
}

fn mall_group_snapshot(g: &MallGroupWithTags) -> GroupSnapshot {
    GroupSnapshot {
        name: g.group.name.clone(),
        order: g.group.order,
    }
}

fn link(tenant: &TenantId, side: Side, kind: EntityKind, side_id: &str, hub_id: &str) -> IdLink {
    IdLink {
        tenant: tenant.clone(),
        side,
        kind,
        side_id: side_id.to_owned(),
        hub_id: hub_id.to_owned(),
    }
}

fn is_wecom(e: &WecomError, code: i64) -> bool {
    e.errcode == Some(code)
}

/// A name for a sibling that must step aside: its own name plus a short mark, within 30
/// characters.
fn temporary_name(name: &str, id: &str) -> String {
    let mark: String = id.chars().rev().take(4).collect();
    let keep: String = name.chars().take(30 - 5).collect();
    format!("{keep}~{mark}")
}

impl<'a> Cx<'a> {
    fn t(&self) -> &TenantId {
        &self.tenant.id
    }

    fn now(&self) -> Timestamp {
        self.app.clock.now()
    }

    /// A mall write's key. Steps name the hub object's version: a retry after a transient
    /// failure (nothing written in between) reuses the key and gets the mall's recorded
    /// answer; after a permanent failure the object is marked `failed` (a new version), so a
    /// redrive after the cause is fixed is a new request, not a replay of the old refusal.
    fn key(&self, step: &str) -> IdempotencyKey {
        IdempotencyKey::for_step(&self.job.id, step)
    }

    async fn wecom_lib(&mut self) -> Step<&Vec<TagGroupInfo>> {
        let lib = match self.wecom_lib.take() {
            Some(lib) => lib,
            None => {
                self.app
                    .wecom
                    .get_corp_tag_list(&self.creds, &[], &[])
                    .await?
            }
        };
        Ok(self.wecom_lib.insert(lib))
    }

    async fn mall_lib(&mut self) -> Step<&Vec<MallGroupWithTags>> {
        let lib = match self.mall_lib.take() {
            Some(lib) => lib,
            None => self.app.mall.list_groups(&self.ep).await?,
        };
        Ok(self.mall_lib.insert(lib))
    }

    /// A job for an object new to the hub carries a fresh hub id; if another job linked the
    /// side's object meanwhile (a duplicate event), that hub object is the one to update.
    async fn adopt_id(&self, kind: EntityKind, id: String, hint: &Hint) -> Step<String> {
        for (side, side_id) in [(Side::Wecom, &hint.wecom_id), (Side::Mall, &hint.mall_id)] {
            if let Some(side_id) = side_id
                && let Some(known) = self.hub_id(side, kind, side_id).await?
            {
                return Ok(known);
            }
        }
        Ok(id)
    }

    async fn hub_id(&self, side: Side, kind: EntityKind, side_id: &str) -> Step<Option<String>> {
        Ok(self
            .app
            .store
            .lookup_link(self.t(), side, kind, side_id)
            .await?)
    }

    /// The hub group a side's group maps to; a group the hub has never seen is brought in
    /// first (without its other tags: the caller is syncing one of them).
    async fn hub_group_for(&mut self, side: Side, side_group: &str) -> Step<HubGroupId> {
        if let Some(id) = self.hub_id(side, EntityKind::Group, side_group).await? {
            return Ok(HubGroupId::new_unchecked(id));
        }
        if self.depth > 4 {
            return Err(StepError::park(format!(
                "{side} group {side_group}: too many unknown objects nested"
            )));
        }
        let id = HubGroupId::new_unchecked(new_ordered_id());
        let mut hint = Hint::from(self.origin);
        match side {
            Side::Wecom => hint.wecom_id = Some(side_group.to_owned()),
            Side::Mall => hint.mall_id = Some(side_group.to_owned()),
        }
        self.depth += 1;
        let r = Box::pin(self.group(id.clone(), hint, false)).await;
        self.depth -= 1;
        r?;
        // The group may have been adopted under another id (a concurrent create): read the map.
        match self.hub_id(side, EntityKind::Group, side_group).await? {
            Some(id) => Ok(HubGroupId::new_unchecked(id)),
            None => Ok(id),
        }
    }

    async fn commit(&self, writes: Vec<Write>) -> Step<()> {
        if !writes.is_empty() {
            self.app.store.transact(writes).await?;
        }
        Ok(())
    }

    /// Writes tag `x` after `side` confirmed an operation, with `writes`. The operator may
    /// have edited the tag since this job read it (the admin API takes no library lock): on a
    /// version conflict the side's link (id, base, state) is carried onto the fresh tag and
    /// written again, so what the side did is never forgotten — a retry would otherwise, say,
    /// create the tag there a second time under its new name.
    async fn save_tag(&self, x: &mut Tag, side: Side, writes: Vec<Write>) -> Step<()> {
        self.save(x, side, writes).await
    }

    /// [`Cx::save_tag`] for a group.
    async fn save_group(&self, g: &mut TagGroup, side: Side, writes: Vec<Write>) -> Step<()> {
        self.save(g, side, writes).await
    }

    async fn save<T: Saved>(&self, x: &mut T, side: Side, writes: Vec<Write>) -> Step<()> {
        let mut next = x.clone();
        for _ in 0..3 {
            let mut all = writes.clone();
            all.push(next.write());
            match self.app.store.transact(all).await {
                Ok(()) => {
                    next.set_version(next.version() + 1);
                    *x = next;
                    return Ok(());
                }
                Err(e) if e.is_conflict() => {
                    let fresh = T::read(self.app, self.t(), x).await?;
                    // Unchanged: the conflict is elsewhere (an id already mapped).
                    let Some(mut fresh) = fresh.filter(|f| f.version() != next.version()) else {
                        return Err(e.into());
                    };
                    let edited = fresh.json() != next.json();
                    fresh.carry(&next, side, edited);
                    next = fresh;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StepError::retry(
            format!("{} kept changing while saving", x.name()),
            None,
        ))
    }

    // -----------------------------------------------------------------------------------
    // Groups.

    /// Brings group `id` up to date. With `children`, also its tags WeCom shows that the hub
    /// does not know (a console-created group sends one event for the group and its tags)
    /// and its live tags WeCom still lacks (created with the group's first tag).
    async fn group(&mut self, id: HubGroupId, hint: Hint, children: bool) -> Step<()> {
        let nested = self.active > 0;
        self.active += 1;
        let r = self.group_once(id.clone(), hint.clone(), children).await;
        self.active -= 1;
        match r {
            Err(e) if e.superseded => Ok(()),
            Err(e) if nested => Err(self
                .hand_over(vec![JobKind::SyncGroup { group: id, hint }], e)
                .await),
            r => r,
        }
    }

    /// Another object's work, done inside this job, failed and will be retried: it gets its
    /// own job too. This job's retry may not come back to it: what this job saved before the
    /// failure (a link, a base) can send its retry down another path, and the other object's
    /// change (a tag gone with its WeCom group, say, still to be deleted in the mall) would
    /// then wait for the nightly run. A duplicate job costs a look.
    async fn hand_over(&self, kinds: Vec<JobKind>, e: StepError) -> StepError {
        if e.retry.is_some()
            && !kinds.is_empty()
            && let Err(q) = super::enqueue(self.app, self.tenant, kinds).await
        {
            tracing::warn!(error = %q, "could not queue a nested job's own retry; the outer job's retry redoes what it can");
        }
        e
    }

    async fn group_once(&mut self, id: HubGroupId, hint: Hint, children: bool) -> Step<()> {
        let t = self.t().clone();
        let mut stored = self.app.store.get_group(&t, &id).await?;
        let mut id = id;
        if stored.is_none() {
            id = HubGroupId::new_unchecked(
                self.adopt_id(EntityKind::Group, id.to_string(), &hint)
                    .await?,
            );
            stored = self.app.store.get_group(&t, &id).await?;
        }
        // The event's WeCom group maps to another hub group by now (WeCom renamed it onto
        // that group's name, see `relink_group`): that group is the one to bring up to date.
        if let (Some(s), Some(w)) = (&stored, &hint.wecom_id)
            && s.wecom.id.as_ref().is_none_or(|i| i.as_str() != w)
            && let Some(other) = self.hub_id(Side::Wecom, EntityKind::Group, w).await?
            && other != id.as_str()
            && self.depth < 4
        {
            self.depth += 1;
            let other = HubGroupId::new_unchecked(other);
            let r = Box::pin(self.group(other, hint.clone(), true)).await;
            self.depth -= 1;
            return r;
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
                let unlink = link(
                    &t,
                    Side::Wecom,
                    EntityKind::Group,
                    stale.as_str(),
                    id.as_str(),
                );
                self.commit(vec![Write::Unlink(unlink), Write::Group(kept.clone())])
                    .await?;
                kept.version += 1;
            }
            stored = Some(kept);
        }
        let wecom_id = stored
            .as_ref()
            .and_then(|g| g.wecom.id.as_ref().map(|i| i.to_string()))
            .or(hint.wecom_id.clone());
        let mall_id = stored
            .as_ref()
            .and_then(|g| g.mall.id.as_ref().map(|i| i.to_string()))
            .or(hint.mall_id.clone());
        let now = self.now();
        let mall_at = hint.mall_at.unwrap_or(now);

        let wecom_seen = match &wecom_id {
            Some(w) => self
                .wecom_lib()
                .await?
                .iter()
                .find(|g| g.group_id.as_str() == w)
                .map(wecom_group_snapshot),
            None => None,
        };
        let mall_seen = match &mall_id {
            Some(m) => self
                .mall_lib()
                .await?
                .iter()
                .find(|g| g.group.id.as_str() == m)
                .map(mall_group_snapshot),
            None => None,
        };
        // Likewise a WeCom group renamed (in WeCom) onto such a group's name becomes that
        // group's; this one keeps its name and no WeCom group, and its tags there follow.
        if let (Some(s), Some(seen), Some(w)) = (&stored, &wecom_seen, &wecom_id)
            && s.name != seen.name
            && s.wecom.base.as_ref().is_some_and(|b| b.name != seen.name)
            && let Some(kept) = self.kept_group_named(&seen.name, &id).await?
        {
            let w = WecomGroupId::new_unchecked(w.clone());
            return self.relink_group(s.clone(), kept, w).await;
        }
        let tags = self.app.store.list_tags(&t).await?;
        // WeCom no longer shows a group whose live hub tags still have WeCom ids: either the
        // console deleted the group (its own event says so) or its last tags went (their
        // events delete them here first). Until one of those events is handled this job
        // cannot tell which, so it leaves the WeCom leg as it was.
        let undecided = wecom_seen.is_none()
            && !hint.wecom_deleted
            && stored.as_ref().is_some_and(|g| g.wecom.base.is_some())
            && tags
                .iter()
                .any(|x| x.group_id == id && x.deleted_at.is_none() && x.wecom.id.is_some());
        // WeCom shows the group under `wecom_id` (it was looked up by that id); an undecided
        // group counts as shown as its base (it has a base, so the hub linked it there).
        let wecom_group = wecom_id.clone().map(WecomGroupId::new_unchecked);
        let mut wobs = match (
            &wecom_seen,
            stored.as_ref().and_then(|g| g.wecom.base.clone()),
            wecom_group,
        ) {
            (Some(s), _, Some(w)) => Observed::present(w, s.clone(), now),
            (None, Some(base), Some(w)) if undecided => Observed::present(w, base, now),
            _ => Observed::absent(now),
        };
        if stored
            .as_ref()
            .is_some_and(|g| g.wecom.state == SyncState::ReadOnly)
        {
            wobs = wobs.read_only();
        }
        let mobs = match (mall_seen.clone(), mall_id.clone()) {
            (Some(s), Some(m)) => Observed::present(MallGroupId::new_unchecked(m), s, mall_at),
            _ => Observed::absent(mall_at),
        };
        let live_tags = tags
            .iter()
            .filter(|x| x.group_id == id && x.deleted_at.is_none())
            .count();
        let facts = GroupFacts {
            live_tags,
            wecom_dropped: !hint.wecom_deleted,
        };
        let Some(Merged { hub: mut g, plan }) =
            merge_group(&t, &id, stored.as_ref(), &wobs, &mobs, facts)
        else {
            return Ok(());
        };

        // Link the sides that show the object and are not linked yet.
        let mut writes = Vec::new();
        if let (Some(w), Some(_)) = (&wecom_id, &wecom_seen)
            && g.wecom.id.is_none()
        {
            g.wecom.id = Some(WecomGroupId::new_unchecked(w.clone()));
            writes.push(Write::Link(link(
                &t,
                Side::Wecom,
                EntityKind::Group,
                w,
                id.as_str(),
            )));
        }
        if let (Some(m), Some(_)) = (&mall_id, &mall_seen)
            && g.mall.id.is_none()
        {
            g.mall.id = Some(MallGroupId::new_unchecked(m.clone()));
            writes.push(Write::Link(link(
                &t,
                Side::Mall,
                EntityKind::Group,
                m,
                id.as_str(),
            )));
        }
        let unlinks = stale_group_links(stored.as_ref(), &g);
        writes.extend(unlinks.into_iter().map(Write::Unlink));
        if stored.as_ref() != Some(&g) || !writes.is_empty() {
            writes.extend(self.hub_entry(
                EntityKind::Group,
                id.as_str(),
                stored.as_ref().map(group_json),
                group_json(&g),
            ));
            writes.push(Write::Group(g.clone()));
            self.commit(writes).await?;
            g.version += 1;
        }

        // WeCom.
        let wecom_op = if undecided {
            LibraryOp::Nothing
        } else {
            plan.wecom.op.clone()
        };
        let wecom_call = match wecom_op {
            LibraryOp::Nothing | LibraryOp::Create { .. } | LibraryOp::Move { .. } => None,
            LibraryOp::MarkReadOnly => {
                self.commit(vec![Write::Audit(self.entry(
                    Actor::Wecom,
                    "group.read_only",
                    format!("group:{id}"),
                    wecom_seen.as_ref().map(|s| json!(s)),
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
                    .app
                    .wecom
                    .del_corp_tag(&self.creds, &[], std::slice::from_ref(&wid))
                    .await
                    .map(|_| ());
                Some((wid, r, true))
            }
        };
        if let Some((wid, result, deleted)) = wecom_call {
            let mut writes = Vec::new();
            match result {
                Ok(()) => {
                    if deleted {
                        writes.push(Write::Unlink(link(
                            &t,
                            Side::Wecom,
                            EntityKind::Group,
                            wid.as_str(),
                            id.as_str(),
                        )));
                        g.wecom = SideLink::default();
                        g.wecom.state = SyncState::Synced;
                    } else {
                        g.wecom.base = plan.wecom.base_after.clone();
                        g.wecom.state = SyncState::Synced;
                        g.wecom.error = None;
                    }
                    writes.push(Write::Audit(self.entry(
                        Actor::Wecom,
                        if deleted {
                            "group.deleted"
                        } else {
                            "group.updated"
                        },
                        format!("group:{id}"),
                        wecom_seen.as_ref().map(|s| json!(s)),
                        plan.wecom.base_after.as_ref().map(|s| json!(s)),
                    )));
                }
                Err(e) if is_wecom(&e, WECOM_NOT_OURS) => {
                    g.wecom.base = wecom_seen.clone();
                    g.wecom.state = SyncState::ReadOnly;
                    writes.push(Write::Audit(self.entry(
                        Actor::Wecom,
                        "group.read_only",
                        format!("group:{id}"),
                        wecom_seen.as_ref().map(|s| json!(s)),
                        None,
                    )));
                }
                Err(e) if is_wecom(&e, WECOM_UNKNOWN_ID) => return Err(vanished(Side::Wecom)),
                Err(e) if is_wecom(&e, WECOM_NAME_TAKEN) => {
                    return self
                        .fail_group(
                            g,
                            Side::Wecom,
                            format!(
                                "WeCom already has a tag group named `{}`; rename one of them",
                                g_name(&plan.wecom.base_after)
                            ),
                        )
                        .await;
                }
                Err(e) => return self.fail_group(g, Side::Wecom, e).await,
            }
            self.save_group(&mut g, Side::Wecom, writes).await?;
            self.wecom_lib = None;
        }

        // The mall.
        let mall_op = plan.mall.op.clone();
        if !matches!(mall_op, LibraryOp::Nothing | LibraryOp::MarkReadOnly) {
            let before = mall_seen.as_ref().map(|s| json!(s));
            let after = plan.mall.base_after.clone();
            // A name another hub group holds in the mall makes it step aside first (once).
            let mut attempt = 0;
            let result: Result<Option<MallGroupId>, MallError> = loop {
                attempt += 1;
                let r = self.mall_group_op(&g, &mall_op, attempt).await?;
                let wanted = match &mall_op {
                    LibraryOp::Create { after } => Some(after.name.clone()),
                    LibraryOp::Update { name, .. } => name.clone(),
                    _ => None,
                };
                if let (Err(e), Some(name), 1) = (&r, wanted, attempt)
                    && let Some(existing) = e.existing_id()
                {
                    match self.hub_id(Side::Mall, EntityKind::Group, existing).await? {
                        Some(other) if other != id.as_str() => {
                            let other = HubGroupId::new_unchecked(other);
                            self.group_step_aside(Side::Mall, &id, &other, &name)
                                .await?;
                            continue;
                        }
                        Some(_) => {}
                        // As for tags (`mall_update`): every mall group is synced, so one the
                        // hub does not know is most likely on its way in (its webhook still
                        // coming; a create adopted it already if nobody maps it). Retried, and
                        // parked if it never comes (made without a webhook).
                        None => {
                            return self
                                .fail_group(
                                    g,
                                    Side::Mall,
                                    StepError::retry_shown(
                                        format!(
                                            "the name `{name}` is taken in the mall by tag group {existing} which tagsync does not manage (yet); rename or delete it"
                                        ),
                                        None,
                                    ),
                                )
                                .await;
                        }
                    }
                }
                break r;
            };
            let mut writes = Vec::new();
            match result {
                Ok(created) => {
                    if let Some(mid) = created {
                        writes.push(Write::Link(link(
                            &t,
                            Side::Mall,
                            EntityKind::Group,
                            mid.as_str(),
                            id.as_str(),
                        )));
                        g.mall.id = Some(mid);
                    }
                    if matches!(mall_op, LibraryOp::Delete { .. }) {
                        if let Some(mid) = &g.mall.id {
                            writes.push(Write::Unlink(link(
                                &t,
                                Side::Mall,
                                EntityKind::Group,
                                mid.as_str(),
                                id.as_str(),
                            )));
                        }
                        g.mall = SideLink::default();
                    } else {
                        g.mall.base = after.clone();
                    }
                    g.mall.state = SyncState::Synced;
                    g.mall.error = None;
                    let action = match mall_op {
                        LibraryOp::Create { .. } => "group.created",
                        LibraryOp::Delete { .. } => "group.deleted",
                        _ => "group.updated",
                    };
                    writes.push(Write::Audit(self.entry(
                        Actor::Mall,
                        action,
                        format!("group:{id}"),
                        before,
                        after.as_ref().map(|s| json!(s)),
                    )));
                }
                Err(e) if e.is_not_found() && !matches!(mall_op, LibraryOp::Create { .. }) => {
                    return Err(vanished(Side::Mall));
                }
                Err(e) if e.existing_id().is_some() => {
                    let name = g_name(&after);
                    return self
                        .fail_group(
                            g,
                            Side::Mall,
                            format!(
                                "the mall already has a tag group named `{name}` (id {}), managed as another hub group; rename one of them",
                                e.existing_id().unwrap_or_default()
                            ),
                        )
                        .await;
                }
                Err(e) => return self.fail_group(g, Side::Mall, e).await,
            }
            self.save_group(&mut g, Side::Mall, writes).await?;
            self.mall_lib = None;
        }

        // The group's tags.
        if g.deleted_at.is_some() {
            // Its tags go with it: live ones, and deleted ones still linked to a side.
            for tag in tags.iter().filter(|x| {
                x.group_id == id
                    && (x.deleted_at.is_none() || x.wecom.id.is_some() || x.mall.id.is_some())
            }) {
                Box::pin(self.tag(tag.id.clone(), Hint::from(self.origin))).await?;
            }
        } else if children {
            // Tags WeCom shows in this group that the hub does not know, knows but has not
            // finished syncing (an earlier try of this job stopped half-way through them), or
            // knows in another group (this WeCom group was another hub group's before).
            if let Some(wid) = &g.wecom.id {
                let shown: Vec<String> = {
                    let lib = self.wecom_lib().await?;
                    lib.iter()
                        .find(|x| &x.group_id == wid)
                        .map(|x| x.tag.iter().map(|t| t.id.to_string()).collect())
                        .unwrap_or_default()
                };
                for wtag in shown {
                    match self.hub_id(Side::Wecom, EntityKind::Tag, &wtag).await? {
                        None => {
                            let mut h = Hint::from(self.origin);
                            h.wecom_id = Some(wtag);
                            let new = HubTagId::new_unchecked(new_ordered_id());
                            Box::pin(self.tag(new, h)).await?;
                        }
                        Some(known) => {
                            let known = HubTagId::new_unchecked(known);
                            let unfinished = tags.iter().find(|x| x.id == known).is_none_or(|x| {
                                x.group_id != id
                                    || [x.wecom.state, x.mall.state].iter().any(|s| {
                                        matches!(s, SyncState::Pending | SyncState::Failed)
                                    })
                            });
                            if unfinished {
                                Box::pin(self.tag(known, Hint::from(self.origin))).await?;
                            }
                        }
                    }
                }
            }
            // Live hub tags WeCom lacks: the first of them creates the group there. With the
            // group in WeCom, also those whose WeCom id WeCom no longer has (they went with a
            // group WeCom deleted, which sends no per-tag events).
            let shown_here = match &g.wecom.id {
                None => true,
                Some(wid) => self.wecom_lib().await?.iter().any(|x| &x.group_id == wid),
            };
            if shown_here && g.wecom.state != SyncState::ReadOnly {
                let known: std::collections::HashSet<String> = self
                    .wecom_lib()
                    .await?
                    .iter()
                    .flat_map(|x| x.tag.iter().map(|t| t.id.to_string()))
                    .collect();
                for tag in tags.iter().filter(|x| {
                    x.group_id == id
                        && x.deleted_at.is_none()
                        && x.wecom
                            .id
                            .as_ref()
                            .is_none_or(|w| !known.contains(w.as_str()))
                }) {
                    Box::pin(self.tag(tag.id.clone(), Hint::from(self.origin))).await?;
                }
            }
        }
        Ok(())
    }

    /// One mall call for group `g`'s planned operation (`attempt` keys a second try after a
    /// sibling stepped aside, which the mall must not answer from its record of the first).
    async fn mall_group_op(
        &mut self,
        g: &TagGroup,
        op: &LibraryOp<MallGroupId, GroupSnapshot>,
        attempt: u32,
    ) -> Step<Result<Option<MallGroupId>, MallError>> {
        let id = g.id.clone();
        Ok(match op {
            LibraryOp::Nothing | LibraryOp::MarkReadOnly | LibraryOp::Move { .. } => Ok(None),
            LibraryOp::Create { after: s } => {
                match self
                    .app
                    .mall
                    .create_group(
                        &self.ep,
                        &self.key(&format!("create-group:{id}:v{}:{attempt}", g.version)),
                        &s.name,
                        Some(s.order),
                    )
                    .await
                {
                    Ok(created) => Ok(Some(created.id)),
                    Err(e) => match e.existing_id() {
                        // Adopt a same-name group nobody maps (a retried or crashed create).
                        Some(existing)
                            if self
                                .hub_id(Side::Mall, EntityKind::Group, existing)
                                .await?
                                .is_none() =>
                        {
                            let existing = MallGroupId::new_unchecked(existing);
                            self.app
                                .mall
                                .update_group(
                                    &self.ep,
                                    &self.key(&format!("adopt-group:{id}:v{}", g.version)),
                                    &existing,
                                    &GroupPatch {
                                        name: None,
                                        order: Some(s.order),
                                    },
                                )
                                .await
                                .map(|_| Some(existing))
                        }
                        _ => Err(e),
                    },
                }
            }
            LibraryOp::Update {
                id: mid,
                name,
                order,
            } => self
                .app
                .mall
                .update_group(
                    &self.ep,
                    &self.key(&format!("update-group:{id}:v{}:{attempt}", g.version)),
                    mid,
                    &GroupPatch {
                        name: name.clone(),
                        order: *order,
                    },
                )
                .await
                .map(|_| None),
            LibraryOp::Delete { id: mid } => self
                .app
                .mall
                .delete_group(
                    &self.ep,
                    &self.key(&format!("delete-group:{id}:v{}", g.version)),
                    mid,
                )
                .await
                .map(|_| None),
        })
    }

    /// Edits WeCom group `wid` of hub group `me`. A name another group holds there makes
    /// that group step aside first (once); WeCom's last answer is returned.
    async fn wecom_group_edit(
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
                .app
                .wecom
                .edit_corp_tag(&self.creds, EditTarget::Group(wid), name, order)
                .await;
            let (Err(e), Some(name), 1) = (&r, name, attempt) else {
                return Ok(r);
            };
            if !is_wecom(e, WECOM_NAME_TAKEN) {
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
                .hub_id(Side::Wecom, EntityKind::Group, holder.as_str())
                .await?
            else {
                return Err(StepError::park(format!(
                    "the name `{name}` is taken in WeCom by tag group {holder}, which tagsync does not manage; rename or delete it"
                )));
            };
            self.group_step_aside(Side::Wecom, me, &HubGroupId::new_unchecked(other), name)
                .await?;
        }
    }

    /// Group `other` holds `name` on `side`, which hub group `me` wants there. `other` is
    /// brought up to date first (its own change may still be queued: a rename away, or a
    /// WeCom rename that makes its WeCom group `me`'s); if it still holds the name, then
    /// either the hub has two groups of that name (created at once on two sides: `me` is
    /// merged into `other`) or `other` is renaming away and gets a temporary name there now
    /// and its own after this job's work. `Ok`: try again.
    async fn group_step_aside(
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
        let holds = match side {
            Side::Wecom => o.wecom.base.as_ref().map(|b| b.name.as_str()),
            Side::Mall => o.mall.base.as_ref().map(|b| b.name.as_str()),
        };
        if holds != Some(name) {
            return Ok(());
        }
        if o.name == name && o.deleted_at.is_none() {
            return self.merge_group_into(me, o, side, name).await;
        }
        let temp = temporary_name(name, other.as_str());
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
                    Err(e) if is_wecom(&e, WECOM_NOT_OURS) => {
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
    /// former name back (`refused_group_change`).
    async fn merge_group_into(
        &mut self,
        me: &HubGroupId,
        mut o: TagGroup,
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
        let Some(mut x) = self.app.store.get_group(&t, me).await? else {
            return Err(clash());
        };
        if x.deleted_at.is_none()
            && x.name == o.name
            && ((x.wecom.id.is_some() && o.wecom.id.is_some())
                || (x.mall.id.is_some() && o.mall.id.is_some()))
        {
            // Each holds its own group on a side: not one group created twice. The one
            // renamed onto the name gets its former name back (see `refused_group_change`).
            let Some((refused, back)) = refused_group_change(&x, &o) else {
                return Err(clash());
            };
            let (xid, oid) = (x.id.clone(), o.id.clone());
            let mut y = if refused == x.id { x } else { o };
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
                    "clashed_with": if y.id == xid { &oid } else { &xid },
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
                    "hub group {me} came onto `{name}`, held by hub group {oid}: its rename was refused"
                )));
            }
            return Ok(());
        }
        let tags: Vec<Tag> = self
            .app
            .store
            .list_tags(&t)
            .await?
            .into_iter()
            .filter(|y| &y.group_id == me)
            .collect();
        if x.deleted_at.is_some() || x.name != o.name {
            // As for tags: `me` changed meanwhile, so the step that met the name is stale.
            return Err(StepError::retry(
                format!("hub group {me} changed while a clash on `{name}` was settled; again"),
                Some(std::time::Duration::from_millis(200)),
            ));
        }
        if (x.wecom.id.is_some() && o.wecom.id.is_some())
            || (x.mall.id.is_some() && o.mall.id.is_some())
            || tags.len() > 90
        {
            return Err(clash());
        }
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
            if let Some(b) = y.wecom.base.as_mut().filter(|b| &b.group_id == me) {
                b.group_id = o.id.clone();
            }
            if let Some(b) = y.mall.base.as_mut().filter(|b| &b.group_id == me) {
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

    async fn wecom_group_name(&mut self, wecom_id: &str) -> Step<Option<String>> {
        Ok(self
            .wecom_lib()
            .await?
            .iter()
            .find(|g| g.group_id.as_str() == wecom_id)
            .map(|g| g.group_name.clone()))
    }

    /// The live hub group named `name` (other than `except`) that has no WeCom group (or
    /// one WeCom no longer shows: dropped, and not noticed yet).
    async fn kept_group_named(
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
    async fn relink_group(
        &mut self,
        mut from: TagGroup,
        mut to: TagGroup,
        w: WecomGroupId,
    ) -> Step<()> {
        let t = self.t().clone();
        let mut writes = Vec::new();
        // `to`'s stale WeCom id (a group WeCom dropped, not noticed yet) goes.
        if let Some(stale) = to.wecom.id.as_ref().filter(|s| *s != &w) {
            writes.push(Write::Unlink(link(
                &t,
                Side::Wecom,
                EntityKind::Group,
                stale.as_str(),
                to.id.as_str(),
            )));
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
            Write::Relink(link(
                &t,
                Side::Wecom,
                EntityKind::Group,
                w.as_str(),
                to.id.as_str(),
            )),
            Write::Group(from),
            Write::Group(to.clone()),
            Write::Audit(entry),
        ]);
        self.commit(writes).await?;
        // Its job revisits the tags WeCom shows in `w` (the hub has them in `from`).
        Box::pin(self.group(to.id.clone(), Hint::from(self.origin), true)).await
    }

    /// Records a side's failure on the group (shown by the admin API) and parks or retries.
    async fn fail_group(
        &self,
        mut g: TagGroup,
        side: Side,
        why: impl Into<StepFailure>,
    ) -> Step<()> {
        let failure: StepFailure = why.into();
        if failure.0.superseded {
            return Err(failure.0);
        }
        if failure.0.retry.is_none() || failure.0.shown {
            match side {
                Side::Wecom => g.wecom.fail(&failure.0.reason),
                Side::Mall => g.mall.fail(&failure.0.reason),
            }
            if let Err(e) = self.save_group(&mut g, side, Vec::new()).await {
                tracing::warn!(error = %e.reason, "could not record the failure on the group");
            }
        }
        Err(StepError::from_parts(
            failure.0.retry,
            format!("group {} on {side}: {}", g.id, failure.0.reason),
        )
        .on(side))
    }

    /// The audit entry of a change the merge made to the hub object, if it changed.
    fn hub_entry(
        &self,
        kind: EntityKind,
        id: &str,
        before: Option<serde_json::Value>,
        after: serde_json::Value,
    ) -> Option<Write> {
        if before.as_ref() == Some(&after) {
            return None;
        }
        let was_deleted = before.as_ref().map(|b| b["deleted"] == true);
        let action = match (was_deleted, after["deleted"] == true) {
            (None, _) => "created",
            (Some(false), true) => "deleted",
            _ => "updated",
        };
        let kind = kind.as_str();
        Some(Write::Audit(audit(
            self.t(),
            self.now(),
            Actor::Hub,
            &format!("{kind}.{action}"),
            format!("{kind}:{id}"),
            before,
            Some(after),
            self.origin,
        )))
    }

    fn entry(
        &self,
        side: Actor,
        action: &str,
        entity: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        audit(
            self.t(),
            self.now(),
            side,
            action,
            entity,
            before,
            after,
            self.origin,
        )
    }

    // -----------------------------------------------------------------------------------
    // Tags.

    /// What WeCom shows for a tag: its snapshot (group as a hub id) and its WeCom id. A tag
    /// whose WeCom id is gone while its hub group holds an unmapped WeCom tag of its name is
    /// that tag (a move that crashed between its create and the id map switch).
    async fn wecom_tag(
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

    async fn orphan_of(
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

    async fn mall_tag(
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

    /// Brings tag `id` up to date. A tag found to duplicate another ends here (see
    /// [`Cx::merge_into`]): the other carries on with what it held.
    async fn tag(&mut self, id: HubTagId, hint: Hint) -> Step<()> {
        let nested = self.active > 0;
        self.active += 1;
        let r = self.tag_once(id.clone(), hint.clone()).await;
        self.active -= 1;
        match r {
            Err(e) if e.superseded => Ok(()),
            Err(e) if nested => Err(self
                .hand_over(vec![JobKind::SyncTag { tag: id, hint }], e)
                .await),
            r => r,
        }
    }

    async fn tag_once(&mut self, id: HubTagId, hint: Hint) -> Step<()> {
        let t = self.t().clone();
        let mut stored = self.app.store.get_tag(&t, &id).await?;
        let mut id = id;
        if stored.is_none() {
            id = HubTagId::new_unchecked(
                self.adopt_id(EntityKind::Tag, id.to_string(), &hint)
                    .await?,
            );
            stored = self.app.store.get_tag(&t, &id).await?;
        }
        // The event's side object belongs to another hub tag by now (this one was merged
        // into it): that one is the tag to bring up to date — never read the side object as
        // this tag's.
        if let Some(s) = &stored
            && self.depth < 4
        {
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
                    return r;
                }
            }
        }
        // A tag whose group was deleted goes with it.
        if let Some(s) = stored.as_mut()
            && s.deleted_at.is_none()
            && let Some(g) = self.app.store.get_group(&t, &s.group_id).await?
            && let Some(at) = g.deleted_at
        {
            s.deleted_at = Some(at);
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
        let mall = match self
            .mall_tag(stored.as_ref(), hint.mall_id.as_deref())
            .await
        {
            Ok(m) => m,
            Err(e) => return self.unreadable(stored, Side::Mall, e).await,
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
        let Some(Merged { hub: mut x, plan }) = merge_tag(&t, &id, stored.as_ref(), &wobs, &mobs)
        else {
            return Ok(());
        };
        // A side object of this tag already mapped to another hub tag: adopted elsewhere.
        let mut writes = Vec::new();
        if let Some((wid, _)) = &wecom {
            if x.wecom.id.as_ref() != Some(wid) {
                if let Some(old) = &x.wecom.id {
                    writes.push(Write::Unlink(link(
                        &t,
                        Side::Wecom,
                        EntityKind::Tag,
                        old.as_str(),
                        id.as_str(),
                    )));
                }
                x.wecom.id = Some(wid.clone());
                writes.push(Write::Link(link(
                    &t,
                    Side::Wecom,
                    EntityKind::Tag,
                    wid.as_str(),
                    id.as_str(),
                )));
            }
        }
        if let Some((mid, _)) = &mall
            && x.mall.id.is_none()
        {
            x.mall.id = Some(mid.clone());
            writes.push(Write::Link(link(
                &t,
                Side::Mall,
                EntityKind::Tag,
                mid.as_str(),
                id.as_str(),
            )));
        }
        // The pure merge clears a link's id when the side no longer has the object.
        for side in [Side::Wecom, Side::Mall] {
            let (before, after) = match side {
                Side::Wecom => (
                    stored
                        .as_ref()
                        .and_then(|s| s.wecom.id.as_ref().map(|i| i.to_string())),
                    x.wecom.id.as_ref().map(|i| i.to_string()),
                ),
                Side::Mall => (
                    stored
                        .as_ref()
                        .and_then(|s| s.mall.id.as_ref().map(|i| i.to_string())),
                    x.mall.id.as_ref().map(|i| i.to_string()),
                ),
            };
            if let Some(b) = before
                && after.as_ref() != Some(&b)
                && !writes
                    .iter()
                    .any(|w| matches!(w, Write::Unlink(l) if l.side_id == b))
            {
                writes.push(Write::Unlink(link(
                    &t,
                    side,
                    EntityKind::Tag,
                    &b,
                    id.as_str(),
                )));
            }
        }
        // The tag left a WeCom group (it vanished from WeCom, or shows in another group than
        // its base: a move): if it was that group's last, WeCom dropped the group. Looked at
        // before the new base is written, so a failed look is retried with the job (the
        // stored base still names the group), never lost.
        if let Some(s) = stored.as_ref().filter(|s| s.wecom.id.is_some()) {
            let was_in = s.wecom.base.as_ref().map_or(&s.group_id, |b| &b.group_id);
            let left = match &wecom {
                None => true,
                Some((_, seen)) => &seen.group_id != was_in,
            };
            if left {
                self.old_group_dropped(&was_in.clone()).await?;
            }
        }
        let changed = match &stored {
            Some(s) => s != &x,
            None => true,
        };
        if changed || !writes.is_empty() {
            writes.extend(self.hub_entry(
                EntityKind::Tag,
                id.as_str(),
                stored.as_ref().map(tag_json),
                tag_json(&x),
            ));
            writes.push(Write::Tag(x.clone()));
            self.commit(writes).await?;
            x.version += 1;
        }

        let wecom_before = wecom.as_ref().map(|(_, s)| json!(s));
        match plan.wecom.op.clone() {
            LibraryOp::Nothing => {}
            LibraryOp::MarkReadOnly => {
                self.commit(vec![Write::Audit(self.entry(
                    Actor::Wecom,
                    "tag.read_only",
                    format!("tag:{id}"),
                    wecom_before,
                    None,
                ))])
                .await?;
            }
            op => {
                let after = plan.wecom.base_after.clone();
                x = self
                    .apply_wecom_tag(x, op, after, wecom.as_ref().map(|(_, s)| s.clone()))
                    .await?;
            }
        }
        match plan.mall.op.clone() {
            LibraryOp::Nothing | LibraryOp::MarkReadOnly => {}
            op => {
                let after = plan.mall.base_after.clone();
                self.apply_mall_tag(x, op, after, mall.as_ref().map(|(_, s)| s.clone()))
                    .await?;
            }
        }
        Ok(())
    }

    /// The hub group, with a WeCom id when WeCom still has it (a dropped group's stale id is
    /// ignored: the tag's create recreates the group by name).
    async fn group_for_create(&mut self, id: &HubGroupId) -> Step<TagGroup> {
        self.app
            .store
            .get_group(self.t(), id)
            .await?
            .ok_or_else(|| StepError::park(format!("hub group {id} does not exist")))
    }

    async fn apply_wecom_tag(
        &mut self,
        mut x: Tag,
        op: LibraryOp<WecomTagId, TagSnapshot>,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        let t = self.t().clone();
        let id = x.id.clone();
        let entity = format!("tag:{id}");
        let before = seen.as_ref().map(|s| json!(s));
        let mut writes = Vec::new();
        let mut moved_from = None;
        match op {
            LibraryOp::Create { after: s } => {
                match self.wecom_create(&x, &s).await {
                    Ok(wid) => {
                        writes.push(Write::Link(link(
                            &t,
                            Side::Wecom,
                            EntityKind::Tag,
                            wid.as_str(),
                            id.as_str(),
                        )));
                        x.wecom.id = Some(wid);
                    }
                    Err(e) => return self.fail_tag(x, Side::Wecom, e).await,
                }
                writes.push(Write::Audit(self.entry(
                    Actor::Wecom,
                    "tag.created",
                    entity,
                    before,
                    after.as_ref().map(|s| json!(s)),
                )));
            }
            LibraryOp::Update {
                id: wid,
                name,
                order,
            } => match self.wecom_edit(&x, &wid, name.as_deref(), order).await {
                Ok(true) => {
                    writes.push(Write::Audit(self.entry(
                        Actor::Wecom,
                        "tag.updated",
                        entity,
                        before,
                        after.as_ref().map(|s| json!(s)),
                    )));
                }
                Ok(false) => {
                    return self.read_only(x, seen, before, entity, writes).await;
                }
                Err(e) => return self.fail_tag(x, Side::Wecom, e).await,
            },
            LibraryOp::Move {
                id: old, after: s, ..
            } => {
                // Probe ownership with an edit that changes nothing: a tag this app may not
                // edit cannot be moved either (its delete would fail after the create).
                let current_order = seen.as_ref().map(|s| s.order);
                match self.wecom_edit(&x, &old, None, current_order).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return self.read_only(x, seen, before, entity, writes).await;
                    }
                    Err(e) => return self.fail_tag(x, Side::Wecom, e).await,
                }
                let new = match self.wecom_create(&x, &s).await {
                    Ok(w) => w,
                    Err(e) => return self.fail_tag(x, Side::Wecom, e).await,
                };
                let (remarked, changed) = match self.remark(&old, &new).await {
                    Ok(r) => r,
                    Err(e) => return self.fail_tag(x, Side::Wecom, e).await,
                };
                let carried = match self.carry_onto_moved(&old, &new, seen.as_ref()).await {
                    Ok(c) => c,
                    Err(e) => return self.fail_tag(x, Side::Wecom, e).await,
                };
                match self
                    .app
                    .wecom
                    .del_corp_tag(&self.creds, std::slice::from_ref(&old), &[])
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_wecom(&e, WECOM_UNKNOWN_ID) => {}
                    Err(e) => return self.fail_tag(x, Side::Wecom, e.into()).await,
                }
                writes.push(Write::Unlink(link(
                    &t,
                    Side::Wecom,
                    EntityKind::Tag,
                    old.as_str(),
                    id.as_str(),
                )));
                writes.push(Write::Link(link(
                    &t,
                    Side::Wecom,
                    EntityKind::Tag,
                    new.as_str(),
                    id.as_str(),
                )));
                x.wecom.id = Some(new.clone());
                moved_from = Some((old.clone(), changed, carried));
                writes.push(Write::Audit(self.entry(
                    Actor::Wecom,
                    "tag.moved",
                    entity,
                    before.map(|mut b| {
                        b["wecom_id"] = json!(old);
                        b
                    }),
                    Some(json!({"snapshot": s, "wecom_id": new, "relations_remarked": remarked})),
                )));
                if let Some(old_group) = seen.as_ref().map(|s| s.group_id.clone()) {
                    self.old_group_dropped(&old_group).await?;
                }
            }
            LibraryOp::Delete { id: wid } => {
                match self
                    .app
                    .wecom
                    .del_corp_tag(&self.creds, std::slice::from_ref(&wid), &[])
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_wecom(&e, WECOM_UNKNOWN_ID) => {}
                    Err(e) if is_wecom(&e, WECOM_NOT_OURS) => {
                        return self.read_only(x, seen, before, entity, writes).await;
                    }
                    Err(e) => return self.fail_tag(x, Side::Wecom, e.into()).await,
                }
                writes.push(Write::Unlink(link(
                    &t,
                    Side::Wecom,
                    EntityKind::Tag,
                    wid.as_str(),
                    id.as_str(),
                )));
                writes.push(Write::Audit(self.entry(
                    Actor::Wecom,
                    "tag.deleted",
                    entity,
                    before,
                    None,
                )));
                // The group WeCom had it in (the hub may have moved it meanwhile).
                let was_in = seen.as_ref().map_or(&x.group_id, |s| &s.group_id).clone();
                self.old_group_dropped(&was_in).await?;
                x.wecom.id = None;
            }
            LibraryOp::Nothing | LibraryOp::MarkReadOnly => return Ok(x),
        }
        x.wecom.base = after;
        x.wecom.state = SyncState::Synced;
        x.wecom.error = None;
        self.save_tag(&mut x, Side::Wecom, writes).await?;
        self.wecom_lib = None;
        if let Some((old, changed, carried)) = moved_from {
            self.remember_moved(&old, changed).await?;
            if carried {
                // The new tag shows a change this job did not make: its job takes it for
                // WeCom's and brings it to the other sides.
                let kinds = vec![JobKind::SyncTag {
                    tag: x.id.clone(),
                    hint: Hint::from(self.origin),
                }];
                super::enqueue(self.app, self.tenant, kinds)
                    .await
                    .map_err(|e| StepError::retry(format!("queueing a tag job: {e}"), None))?;
            }
        }
        Ok(x)
    }

    /// After a move's id switch: relations a member job tagged with the old WeCom id while
    /// the move ran (after its re-mark, before the old tag's deletion took it off them again)
    /// get their member's job. A member job that tags later sees the new id, and one that
    /// saved its work after this look notices the switch itself and looks again. `changed`:
    /// members whose relations the re-mark found changed by someone else (see
    /// [`Cx::remark`]), whose change may have no event on its way.
    async fn remember_moved(&self, old: &WecomTagId, changed: Vec<MemberId>) -> Step<()> {
        let t = self.t();
        let mut kinds: Vec<JobKind> = changed
            .into_iter()
            .map(|member| JobKind::SyncMember {
                member,
                hint: Hint::from(self.origin),
            })
            .collect();
        for customer in self.app.store.list_customers(t).await? {
            let carried = self
                .app
                .store
                .get_customer(t, &customer)
                .await?
                .is_some_and(|c| c.relations.values().any(|tags| tags.contains(old)));
            if carried && let Some(b) = self.app.store.binding_by_customer(t, &customer).await? {
                kinds.push(JobKind::SyncMember {
                    member: b.member_id,
                    hint: Hint::from(self.origin),
                });
            }
        }
        if !kinds.is_empty() {
            super::enqueue(self.app, self.tenant, kinds)
                .await
                .map_err(|e| StepError::retry(format!("queueing member jobs: {e}"), None))?;
        }
        Ok(())
    }

    /// A move made a new WeCom tag from what this job read of the old one (`seen`); before the
    /// old one goes, a change someone made to it since (a console rename or reorder, whose
    /// callback's job would otherwise find only the new tag as this job made it) is carried
    /// onto the new one. The base stays what this job created, so the change remains WeCom's
    /// for the tag's next job. `Ok(true)`: something was carried. A change the new group
    /// cannot take (its name held there) is left behind, with a log line.
    async fn carry_onto_moved(
        &mut self,
        old: &WecomTagId,
        new: &WecomTagId,
        seen: Option<&TagSnapshot>,
    ) -> Result<bool, StepFailure> {
        let Some(seen) = seen else { return Ok(false) };
        self.wecom_lib = None;
        let now = self
            .wecom_lib()
            .await?
            .iter()
            .flat_map(|g| g.tag.iter())
            .find(|y| &y.id == old)
            .cloned();
        let Some(now) = now else { return Ok(false) };
        let name = (now.name != seen.name).then_some(now.name.as_str());
        let order = (now.order != seen.order).then_some(now.order);
        if name.is_none() && order.is_none() {
            return Ok(false);
        }
        match self
            .app
            .wecom
            .edit_corp_tag(&self.creds, EditTarget::Tag(new), name, order)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.retryable() => Err(StepError::from(e).into()),
            Err(e) => {
                tracing::warn!(tag = %new, error = %e, "a change made to a moving tag meanwhile could not follow it");
                Ok(false)
            }
        }
    }

    /// WeCom refused to edit the tag (not this app's): it keeps WeCom's value there, shown as
    /// `read_only`, and the rest of `writes` go with that.
    async fn read_only(
        &self,
        mut x: Tag,
        seen: Option<TagSnapshot>,
        before: Option<serde_json::Value>,
        entity: String,
        mut writes: Vec<Write>,
    ) -> Step<Tag> {
        x.wecom.base = seen;
        x.wecom.state = SyncState::ReadOnly;
        x.wecom.error = None;
        writes.push(Write::Audit(self.entry(
            Actor::Wecom,
            "tag.read_only",
            entity,
            before,
            None,
        )));
        self.save_tag(&mut x, Side::Wecom, writes).await?;
        Ok(x)
    }

    /// After a WeCom tag left its group: WeCom drops a group with no tags left, which is not
    /// a group deletion — the hub group loses its WeCom id and gets a new one with its next tag.
    async fn old_group_dropped(&mut self, group: &HubGroupId) -> Step<()> {
        let t = self.t().clone();
        let Some(mut g) = self.app.store.get_group(&t, group).await? else {
            return Ok(());
        };
        let Some(wg) = g.wecom.id.clone() else {
            return Ok(());
        };
        self.wecom_lib = None;
        if self.wecom_lib().await?.iter().any(|x| x.group_id == wg) {
            return Ok(());
        }
        let unlink = link(
            &t,
            Side::Wecom,
            EntityKind::Group,
            wg.as_str(),
            g.id.as_str(),
        );
        g.wecom = SideLink::default();
        self.commit(vec![Write::Unlink(unlink), Write::Group(g)])
            .await
    }

    /// Creates tag `x` with snapshot `s` in WeCom, creating or adopting its group as needed;
    /// adopts a same-name tag nobody maps. Returns the WeCom id.
    async fn wecom_create(&mut self, x: &Tag, s: &TagSnapshot) -> Result<WecomTagId, StepFailure> {
        let t = self.t().clone();
        let mut stepped = false;
        let (mut group, lib, wgroup) = loop {
            let group = self.group_for_create(&s.group_id).await?;
            let lib = self.wecom_lib().await?.clone();
            // The group's WeCom id, if WeCom still has it; else a same-name WeCom group nobody
            // maps (WeCom would merge into it anyway).
            let mut wgroup = group
                .wecom
                .id
                .clone()
                .filter(|w| lib.iter().any(|g| &g.group_id == w));
            if wgroup.is_none()
                && let Some(same) = lib.iter().find(|g| g.group_name == group.name)
            {
                match self
                    .hub_id(Side::Wecom, EntityKind::Group, same.group_id.as_str())
                    .await?
                {
                    // Another hub group's: it steps aside (once), then look again.
                    Some(other) if other != group.id.as_str() && !stepped => {
                        stepped = true;
                        let other = HubGroupId::new_unchecked(other);
                        self.group_step_aside(Side::Wecom, &group.id, &other, &group.name)
                            .await?;
                        self.wecom_lib = None;
                        continue;
                    }
                    Some(other) if other != group.id.as_str() => {
                        return Err(StepError::park(format!(
                            "WeCom's tag group `{}` belongs to another hub group ({other}); rename one of them",
                            group.name
                        ))
                        .into());
                    }
                    _ => wgroup = Some(same.group_id.clone()),
                }
            }
            break (group, lib, wgroup);
        };
        // A same-name tag in the target group.
        if let Some(wg) = &wgroup
            && let Some(same) = lib
                .iter()
                .find(|g| &g.group_id == wg)
                .and_then(|g| g.tag.iter().find(|y| y.name == s.name))
        {
            match self
                .hub_id(Side::Wecom, EntityKind::Tag, same.id.as_str())
                .await?
            {
                None => {
                    let read = lib
                        .iter()
                        .find(|g| &g.group_id == wg)
                        .map(wecom_group_snapshot);
                    self.link_wecom_group(&mut group, wg, read).await?;
                    if same.order != s.order {
                        self.wecom_edit(x, &same.id, None, Some(s.order)).await?;
                    }
                    return Ok(same.id.clone());
                }
                Some(other) if other == x.id.as_str() => return Ok(same.id.clone()),
                Some(other) => {
                    self.step_aside(Side::Wecom, &x.id, &HubTagId::new_unchecked(other), &s.name)
                        .await?;
                }
            }
        }
        let new = [NewTag {
            name: s.name.clone(),
            order: Some(s.order),
        }];
        let created = match &wgroup {
            Some(wg) => {
                self.app
                    .wecom
                    .add_corp_tag(&self.creds, AddTarget::Group(wg), &new)
                    .await
            }
            None => {
                self.app
                    .wecom
                    .add_corp_tag(
                        &self.creds,
                        AddTarget::Named {
                            name: &group.name,
                            order: Some(group.order),
                        },
                        &new,
                    )
                    .await
            }
        }
        .map_err(|e| {
            // The group was deleted in WeCom meanwhile: the next try reads that, and the
            // deletion (which takes the group's tags) wins over the create.
            if is_wecom(&e, WECOM_UNKNOWN_ID) {
                vanished(Side::Wecom)
            } else {
                StepError::from(e)
            }
        })?;
        self.wecom_lib = None;
        let wg = created.group_id.clone();
        if group.wecom.id.as_ref() != Some(&wg) {
            // The group's base: as this job read it, or as this job created it — never as
            // WeCom shows it after the create, which may hold a change someone made since
            // (a console rename, say: its callback's job must find it a WeCom change).
            let known = match &wgroup {
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
                let kinds = vec![JobKind::SyncGroup {
                    group: group.id.clone(),
                    hint: Hint::from(self.origin),
                }];
                super::enqueue(self.app, self.tenant, kinds)
                    .await
                    .map_err(|e| StepError::retry(format!("queueing a group job: {e}"), None))?;
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
            self.link_wecom_group(&mut group, &wg, known).await?;
            if stale {
                self.gone_with_wecom_group(&group.id, &x.id).await?;
            }
        }
        let _ = t;
        created
            .tag
            .iter()
            .find(|y| y.name == s.name)
            .map(|y| y.id.clone())
            .ok_or_else(|| {
                StepError::retry("WeCom's add_corp_tag answer lacks the new tag", None).into()
            })
    }

    /// Hub group `group` had a WeCom group WeCom no longer shows (deleted in the console, or
    /// dropped), and got a new one: its tags (other than `except`, being created) still linked
    /// to WeCom tags that are gone went with the old group, which their jobs now find (the
    /// old group's own event may find no link left to act on).
    async fn gone_with_wecom_group(&mut self, group: &HubGroupId, except: &HubTagId) -> Step<()> {
        let shown: std::collections::HashSet<WecomTagId> = self
            .wecom_lib()
            .await?
            .iter()
            .flat_map(|g| g.tag.iter().map(|x| x.id.clone()))
            .collect();
        let gone: Vec<HubTagId> = self
            .app
            .store
            .list_tags(self.t())
            .await?
            .into_iter()
            .filter(|y| {
                &y.group_id == group
                    && &y.id != except
                    && y.deleted_at.is_none()
                    && y.wecom.id.as_ref().is_some_and(|w| !shown.contains(w))
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
    async fn link_wecom_group(
        &mut self,
        g: &mut TagGroup,
        wg: &WecomGroupId,
        known: Option<GroupSnapshot>,
    ) -> Step<()> {
        if g.wecom.id.as_ref() == Some(wg) {
            return Ok(());
        }
        let t = self.t().clone();
        let mut writes = Vec::new();
        if let Some(old) = &g.wecom.id {
            writes.push(Write::Unlink(link(
                &t,
                Side::Wecom,
                EntityKind::Group,
                old.as_str(),
                g.id.as_str(),
            )));
        }
        writes.push(Write::Link(link(
            &t,
            Side::Wecom,
            EntityKind::Group,
            wg.as_str(),
            g.id.as_str(),
        )));
        g.wecom.id = Some(wg.clone());
        // If the base differs from the hub the group job brings the hub's value there.
        g.wecom.base = known.or(Some(GroupSnapshot {
            name: g.name.clone(),
            order: g.order,
        }));
        g.wecom.state = SyncState::Synced;
        g.wecom.error = None;
        self.save_group(g, Side::Wecom, writes).await?;
        // Bring the group's own fields over if WeCom's differ (a merged same-name group).
        if g.wecom.base.as_ref().map(|b| b.order) != Some(g.order) {
            let id = g.id.clone();
            Box::pin(self.group(id, Hint::from(self.origin), false)).await?;
            if let Some(fresh) = self.app.store.get_group(&t, &g.id).await? {
                *g = fresh;
            }
        }
        Ok(())
    }

    /// Edits a WeCom tag. `Ok(false)`: the tag is not this app's (read-only). A name a
    /// sibling holds makes that sibling step aside when it is renaming away.
    async fn wecom_edit(
        &mut self,
        x: &Tag,
        wid: &WecomTagId,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<bool, StepFailure> {
        for attempt in 0..2 {
            match self
                .app
                .wecom
                .edit_corp_tag(&self.creds, EditTarget::Tag(wid), name, order)
                .await
            {
                Ok(()) => {
                    self.wecom_lib = None;
                    return Ok(true);
                }
                Err(e) if is_wecom(&e, WECOM_NOT_OURS) => return Ok(false),
                // Deleted in WeCom while this job ran: the next try reads that, and the delete
                // wins over the edit.
                Err(e) if is_wecom(&e, WECOM_UNKNOWN_ID) => {
                    return Err(vanished(Side::Wecom).into());
                }
                Err(e) if is_wecom(&e, WECOM_NAME_TAKEN) && attempt == 0 => {
                    let name = name.unwrap_or_default().to_owned();
                    let holder = self.wecom_sibling(x, &name).await?;
                    self.step_aside(Side::Wecom, &x.id, &holder, &name).await?;
                }
                Err(e) => return Err(StepError::from(e).into()),
            }
        }
        Err(StepError::park("WeCom refused the rename twice").into())
    }

    /// The hub tag holding `name` next to `x` in WeCom.
    async fn wecom_sibling(&mut self, x: &Tag, name: &str) -> Step<HubTagId> {
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
        match self
            .hub_id(Side::Wecom, EntityKind::Tag, holder.id.as_str())
            .await?
        {
            Some(h) => Ok(HubTagId::new_unchecked(h)),
            None => Err(StepError::park(format!(
                "the name `{name}` is taken in WeCom by tag {} which tagsync does not manage; rename or delete it",
                holder.id
            ))),
        }
    }

    /// Sibling `other` holds `name` on `side`. If the hub is renaming (or deleting) it away,
    /// it gets a temporary name there now and its own name after this job's work; otherwise
    /// the names truly collide and the job parks.
    async fn step_aside(
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
        let wants = |o: &Tag| {
            o.name == name && o.deleted_at.is_none() && Some(&o.group_id) == target.as_ref()
        };
        if o.name == name && o.deleted_at.is_none() && self.depth < 3 {
            // The hub has not heard yet that the sibling is moving away (its own event is
            // still queued): bring it up to date first, then look again.
            self.depth += 1;
            let r = Box::pin(self.tag(other.clone(), Hint::from(self.origin))).await;
            self.depth -= 1;
            r?;
            o = self.app.store.get_tag(&t, other).await?.ok_or_else(|| {
                StepError::park(format!("hub tag {other} vanished while stepping aside"))
            })?;
            let base = match side {
                Side::Wecom => o.wecom.base.as_ref(),
                Side::Mall => o.mall.base.as_ref(),
            };
            if base.is_none_or(|b| b.name != name || Some(&b.group_id) != target.as_ref()) {
                return Ok(());
            }
        }
        if wants(&o) {
            return self.merge_into(me, o, side, name).await;
        }
        let temp = temporary_name(name, other.as_str());
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
                    Err(e) if is_wecom(&e, WECOM_NOT_OURS) => {
                        let x = self.app.store.get_tag(&t, me).await?;
                        if let Some(x) = x.filter(|x| x.deleted_at.is_none())
                            && let Some((_, back)) = tag_came_from(&x)
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
    /// by a rename or a move has that change refused (`refused_tag_change`). Either way the
    /// one that carries on is brought up to date, and a run of `me` that is moot ends
    /// `superseded`.
    async fn merge_into(&mut self, me: &HubTagId, mut o: Tag, side: Side, name: &str) -> Step<()> {
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
        if x.deleted_at.is_some() || x.group_id != o.group_id || x.name != o.name {
            // `me` changed meanwhile (a nested run settled the clash another way): the step
            // that met the name is stale; the job starts again from what is stored now.
            return Err(StepError::retry(
                format!("hub tag {me} changed while a clash on `{name}` was settled; again"),
                Some(std::time::Duration::from_millis(200)),
            ));
        }
        if (x.wecom.id.is_some() && o.wecom.id.is_some())
            || (x.mall.id.is_some() && o.mall.id.is_some())
        {
            // Each holds its own object on a side: not one tag created twice.
            let Some((refused, back)) = refused_tag_change(&x, &o) else {
                return Err(clash());
            };
            let oid = o.id.clone();
            let y = if refused == x.id { x } else { o };
            return self.refuse_tag_change(y, back, me, &oid, name).await;
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
    async fn refuse_tag_change(
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
    async fn tag_where_shown(
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

    /// Re-marks the relations of every customer whose stored bases carry WeCom tag `old`
    /// with `new` (one `mark_tag` per relation, adding the new and removing the old), and
    /// moves `old` to `new` in those bases. Returns how many relations were re-marked and the
    /// members whose relations someone else changed (see below).
    ///
    /// Each customer is done under its member's lock (so no member job reads or writes its
    /// relations halfway through), after reading its relations from WeCom: only a relation
    /// that shows `old` is re-marked, so a relation someone took it off (its member job not
    /// run yet, or another app's API write, which WeCom reports to nobody) does not get it
    /// back. The bases change only by the id: whatever a relation shows beyond them stays a
    /// difference for the member's next job, which is queued here (no event may be coming).
    async fn remark(
        &mut self,
        old: &WecomTagId,
        new: &WecomTagId,
    ) -> Result<(usize, Vec<MemberId>), StepFailure> {
        let t = self.t().clone();
        let mut n = 0;
        let mut changed = Vec::new();
        for customer in self.app.store.list_customers(&t).await? {
            let carries = |c: &Option<CustomerRelations>| {
                c.as_ref()
                    .is_some_and(|c| c.relations.values().any(|tags| tags.contains(old)))
            };
            if !carries(&self.app.store.get_customer(&t, &customer).await?) {
                continue;
            }
            let member = self
                .app
                .store
                .binding_by_customer(&t, &customer)
                .await?
                .map(|b| b.member_id);
            let held = match &member {
                Some(m) => Some(lock(self.app, member_lock(&t, m)).await?),
                None => None,
            };
            let result = self.remark_customer(&customer, old, new).await;
            if let Some(held) = held {
                held.release(self.app).await;
            }
            let (marked, foreign) = result?;
            n += marked;
            if let (true, Some(m)) = (foreign, member) {
                changed.push(m);
            }
        }
        Ok((n, changed))
    }

    /// [`Cx::remark`] for one customer, its member's lock held. Returns how many relations
    /// were re-marked and whether WeCom showed them other than their stored bases.
    async fn remark_customer(
        &mut self,
        customer: &ExternalUserId,
        old: &WecomTagId,
        new: &WecomTagId,
    ) -> Result<(usize, bool), StepFailure> {
        let t = self.t().clone();
        // Read again under the lock: a member job may have written it meanwhile.
        let Some(mut c) = self.app.store.get_customer(&t, customer).await? else {
            return Ok((0, false));
        };
        if !c.relations.values().any(|tags| tags.contains(old)) {
            return Ok((0, false));
        }
        let shown = match self
            .app
            .wecom
            .get_external_contact(&self.creds, customer)
            .await
        {
            Ok(detail) => detail
                .follow_user
                .into_iter()
                .map(|f| {
                    let tags: std::collections::BTreeSet<WecomTagId> = f
                        .tags
                        .into_iter()
                        .filter(|x| x.kind == WECOM_CORP_TAG)
                        .filter_map(|x| x.tag_id)
                        .collect();
                    (f.userid, tags)
                })
                .collect::<std::collections::BTreeMap<_, _>>(),
            // No such customer any more: nothing to re-mark; its member's job drops the
            // relations.
            Err(e) if !e.retryable() => return Ok((0, true)),
            Err(e) => return Err(StepError::from(e).into()),
        };
        let mut foreign = c.relations.keys().any(|u| !shown.contains_key(u));
        let mut n = 0;
        for (userid, tags) in &shown {
            let base = c.relations.get(userid);
            foreign |= base != Some(tags);
            if tags.contains(old) {
                match self
                    .app
                    .wecom
                    .mark_tag(
                        &self.creds,
                        userid,
                        customer,
                        std::slice::from_ref(new),
                        std::slice::from_ref(old),
                    )
                    .await
                {
                    Ok(()) => n += 1,
                    Err(e) if is_wecom(&e, WECOM_NO_RELATION) => {
                        c.relations.remove(userid);
                        continue;
                    }
                    Err(e) => return Err(StepError::from(e).into()),
                }
            }
            // The base changes by the id only (what the relation showed beyond it stays a
            // difference for the member's job).
            if let Some(base) = c.relations.get_mut(userid)
                && base.remove(old)
            {
                base.insert(new.clone());
            }
        }
        c.updated_at = self.now();
        self.app.store.transact(vec![Write::Customer(c)]).await?;
        Ok((n, foreign))
    }

    /// A side could not be read: a permanent failure is recorded on the tag (if the hub has
    /// it) before the job parks.
    async fn unreadable(&self, stored: Option<Tag>, side: Side, e: StepError) -> Step<()> {
        match stored {
            Some(x) if e.retry.is_none() && !e.superseded => {
                self.fail_tag(x, side, e.into()).await.map(|_| ())
            }
            _ => Err(e),
        }
    }

    /// Records a side's permanent failure on the tag and parks; a transient one retries.
    async fn fail_tag(&self, mut x: Tag, side: Side, failure: StepFailure) -> Step<Tag> {
        let e = failure.0;
        if e.superseded {
            return Err(e);
        }
        if e.retry.is_none() || e.shown {
            match side {
                Side::Wecom => x.wecom.fail(&e.reason),
                Side::Mall => x.mall.fail(&e.reason),
            }
            if let Err(err) = self.save_tag(&mut x, side, Vec::new()).await {
                tracing::warn!(error = %err.reason, "could not record the failure on the tag");
            }
        }
        Err(
            StepError::from_parts(e.retry, format!("tag {} on {side}: {}", x.id, e.reason))
                .on(side),
        )
    }

    async fn apply_mall_tag(
        &mut self,
        mut x: Tag,
        op: LibraryOp<MallTagId, TagSnapshot>,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        let t = self.t().clone();
        let id = x.id.clone();
        let entity = format!("tag:{id}");
        let before = seen.as_ref().map(|s| json!(s));
        let mut writes = Vec::new();
        let action = match &op {
            LibraryOp::Create { .. } => "tag.created",
            LibraryOp::Move { .. } => "tag.moved",
            LibraryOp::Delete { .. } => "tag.deleted",
            _ => "tag.updated",
        };
        let result: Result<(), StepFailure> = async {
            match &op {
                LibraryOp::Create { after: s } => {
                    let mid = self.mall_create(&x, s).await?;
                    writes.push(Write::Link(link(
                        &t,
                        Side::Mall,
                        EntityKind::Tag,
                        mid.as_str(),
                        id.as_str(),
                    )));
                    x.mall.id = Some(mid);
                }
                LibraryOp::Update {
                    id: mid,
                    name,
                    order,
                } => {
                    let patch = TagPatch {
                        name: name.clone(),
                        order: *order,
                        group_id: None,
                    };
                    self.mall_update(&x, mid, patch).await?;
                }
                LibraryOp::Move {
                    id: mid,
                    to_group,
                    name,
                    order,
                    ..
                } => {
                    let gid = self.mall_group_id(to_group).await?;
                    let patch = TagPatch {
                        name: name.clone(),
                        order: *order,
                        group_id: Some(gid),
                    };
                    self.mall_update(&x, mid, patch).await?;
                }
                LibraryOp::Delete { id: mid } => {
                    self.app
                        .mall
                        .delete_tag(
                            &self.ep,
                            &self.key(&format!("delete-tag:{id}:v{}", x.version)),
                            mid,
                        )
                        .await
                        .map_err(StepError::from)?;
                    writes.push(Write::Unlink(link(
                        &t,
                        Side::Mall,
                        EntityKind::Tag,
                        mid.as_str(),
                        id.as_str(),
                    )));
                    x.mall.id = None;
                }
                LibraryOp::Nothing | LibraryOp::MarkReadOnly => {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            return self.fail_tag(x, Side::Mall, e).await;
        }
        x.mall.base = after.clone();
        x.mall.state = SyncState::Synced;
        x.mall.error = None;
        writes.push(Write::Audit(self.entry(
            Actor::Mall,
            action,
            entity,
            before,
            after.as_ref().map(|s| json!(s)),
        )));
        self.save_tag(&mut x, Side::Mall, writes).await?;
        self.mall_lib = None;
        Ok(x)
    }

    /// The mall id of hub group `g`, creating the group in the mall first if needed.
    async fn mall_group_id(&mut self, g: &HubGroupId) -> Result<MallGroupId, StepFailure> {
        let t = self.t().clone();
        let group = self.group_for_create(g).await?;
        if let Some(m) = group.mall.id {
            return Ok(m);
        }
        Box::pin(self.group(g.clone(), Hint::from(self.origin), false)).await?;
        self.app
            .store
            .get_group(&t, g)
            .await?
            .and_then(|x| x.mall.id)
            .ok_or_else(|| {
                StepError::retry(format!("hub group {g} is not in the mall yet"), None).into()
            })
    }

    async fn mall_create(&mut self, x: &Tag, s: &TagSnapshot) -> Result<MallTagId, StepFailure> {
        let gid = self.mall_group_id(&s.group_id).await?;
        for attempt in 0..2 {
            let key = self.key(&format!("create-tag:{}:v{}:{attempt}", x.id, x.version));
            match self
                .app
                .mall
                .create_tag(&self.ep, &key, &gid, &s.name, Some(s.order))
                .await
            {
                Ok(created) => return Ok(created.id),
                // The group was deleted in the mall meanwhile: the next try reads that, and
                // the deletion (which takes the group's tags) wins over the create.
                Err(e) if e.is_not_found() => return Err(vanished(Side::Mall).into()),
                Err(e) => match e.existing_id().map(str::to_owned) {
                    Some(existing) => {
                        match self.hub_id(Side::Mall, EntityKind::Tag, &existing).await? {
                            // Nobody maps it: adopt it (a retried or crashed create).
                            None => {
                                let existing = MallTagId::new_unchecked(existing);
                                self.app
                                    .mall
                                    .update_tag(
                                        &self.ep,
                                        &self.key(&format!("adopt-tag:{}:v{}", x.id, x.version)),
                                        &existing,
                                        &TagPatch {
                                            order: Some(s.order),
                                            ..TagPatch::default()
                                        },
                                    )
                                    .await
                                    .map_err(StepError::from)?;
                                return Ok(existing);
                            }
                            Some(h) if h == x.id.as_str() => {
                                return Ok(MallTagId::new_unchecked(existing));
                            }
                            Some(h) if attempt == 0 => {
                                self.step_aside(
                                    Side::Mall,
                                    &x.id,
                                    &HubTagId::new_unchecked(h),
                                    &s.name,
                                )
                                .await?;
                            }
                            Some(_) => return Err(StepError::from(e).into()),
                        }
                    }
                    None => return Err(StepError::from(e).into()),
                },
            }
        }
        Err(StepError::park("the mall refused the create twice").into())
    }

    async fn mall_update(
        &mut self,
        x: &Tag,
        mid: &MallTagId,
        patch: TagPatch,
    ) -> Result<(), StepFailure> {
        for attempt in 0..2 {
            let key = self.key(&format!("update-tag:{}:v{}:{attempt}", x.id, x.version));
            match self.app.mall.update_tag(&self.ep, &key, mid, &patch).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Err(vanished(Side::Mall).into()),
                Err(e) => match e.existing_id().map(str::to_owned) {
                    Some(existing) if attempt == 0 => {
                        let name = patch.name.clone().unwrap_or_else(|| x.name.clone());
                        match self.hub_id(Side::Mall, EntityKind::Tag, &existing).await? {
                            Some(h) => {
                                self.step_aside(
                                    Side::Mall,
                                    &x.id,
                                    &HubTagId::new_unchecked(h),
                                    &name,
                                )
                                .await?
                            }
                            // Every mall tag is synced: one the hub does not know is most
                            // likely on its way in (its webhook still coming). Retried, and
                            // parked if it never comes (made without a webhook).
                            None => {
                                return Err(StepError::retry_shown(
                                    format!(
                                        "the name `{name}` is taken in the mall by tag {existing} which tagsync does not manage (yet); rename or delete it"
                                    ),
                                    None,
                                )
                                .into());
                            }
                        }
                    }
                    _ => return Err(StepError::from(e).into()),
                },
            }
        }
        Err(StepError::park("the mall refused the update twice").into())
    }
}

/// A step's failure inside a side operation (so `?` works on every error kind there).
pub struct StepFailure(StepError);

impl From<StepError> for StepFailure {
    fn from(e: StepError) -> Self {
        Self(e)
    }
}
impl From<WecomError> for StepFailure {
    fn from(e: WecomError) -> Self {
        Self(e.into())
    }
}
impl From<MallError> for StepFailure {
    fn from(e: MallError) -> Self {
        Self(e.into())
    }
}
impl From<crate::ports::StoreError> for StepFailure {
    fn from(e: crate::ports::StoreError) -> Self {
        Self(e.into())
    }
}
impl From<String> for StepFailure {
    fn from(reason: String) -> Self {
        Self(StepError::park(reason))
    }
}
impl From<StepFailure> for StepError {
    fn from(f: StepFailure) -> Self {
        f.0
    }
}

/// The object was deleted on `side` while the job worked on it: retry soon, and the next try
/// sees the deletion (which wins over a concurrent rename).
fn vanished(side: Side) -> StepError {
    StepError::retry(
        format!("the object was deleted in {side} meanwhile; reading it again"),
        Some(std::time::Duration::from_millis(200)),
    )
}

fn g_name(s: &Option<GroupSnapshot>) -> String {
    s.as_ref().map(|s| s.name.clone()).unwrap_or_default()
}

/// Id-map entries of a group that the merge cleared (the side no longer has it).
fn stale_group_links(stored: Option<&TagGroup>, g: &TagGroup) -> Vec<IdLink> {
    let Some(s) = stored else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(w) = &s.wecom.id
        && g.wecom.id.as_ref() != Some(w)
    {
        out.push(link(
            &s.tenant,
            Side::Wecom,
            EntityKind::Group,
            w.as_str(),
            s.id.as_str(),
        ));
    }
    if let Some(m) = &s.mall.id
        && g.mall.id.as_ref() != Some(m)
    {
        out.push(link(
            &s.tenant,
            Side::Mall,
            EntityKind::Group,
            m.as_str(),
            s.id.as_str(),
        ));
    }
    out
}

/// Carries a side's link onto a fresh copy of its object. If the operator edited the object
/// meanwhile, the side is still pending: the edit's own job brings it there.
fn carry_link<I: Clone, S: Clone>(to: &mut SideLink<I, S>, from: &SideLink<I, S>, edited: bool) {
    let state = to.state;
    *to = from.clone();
    if edited && state == SyncState::Pending && from.state == SyncState::Synced {
        to.state = SyncState::Pending;
    }
}

/// What [`Cx::save`] needs of a tag or a group.
trait Saved: Clone + Send + Sync {
    fn write(&self) -> Write;
    fn version(&self) -> u64;
    fn set_version(&mut self, v: u64);
    fn json(&self) -> serde_json::Value;
    /// `tag {id}` / `group {id}`, for messages.
    fn name(&self) -> String;
    /// Takes `side`'s link from `from` (see [`carry_link`]).
    fn carry(&mut self, from: &Self, side: Side, edited: bool);
    /// The stored copy of this object.
    fn read<'a>(
        app: &'a App,
        t: &'a TenantId,
        this: &'a Self,
    ) -> Pin<Box<dyn Future<Output = crate::ports::StoreResult<Option<Self>>> + Send + 'a>>;
}

impl Saved for Tag {
    fn write(&self) -> Write {
        Write::Tag(self.clone())
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, v: u64) {
        self.version = v;
    }
    fn json(&self) -> serde_json::Value {
        tag_json(self)
    }
    fn name(&self) -> String {
        format!("tag {}", self.id)
    }
    fn carry(&mut self, from: &Self, side: Side, edited: bool) {
        match side {
            Side::Wecom => carry_link(&mut self.wecom, &from.wecom, edited),
            Side::Mall => carry_link(&mut self.mall, &from.mall, edited),
        }
    }
    fn read<'a>(
        app: &'a App,
        t: &'a TenantId,
        this: &'a Self,
    ) -> Pin<Box<dyn Future<Output = crate::ports::StoreResult<Option<Self>>> + Send + 'a>> {
        Box::pin(app.store.get_tag(t, &this.id))
    }
}

impl Saved for TagGroup {
    fn write(&self) -> Write {
        Write::Group(self.clone())
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, v: u64) {
        self.version = v;
    }
    fn json(&self) -> serde_json::Value {
        group_json(self)
    }
    fn name(&self) -> String {
        format!("group {}", self.id)
    }
    fn carry(&mut self, from: &Self, side: Side, edited: bool) {
        match side {
            Side::Wecom => carry_link(&mut self.wecom, &from.wecom, edited),
            Side::Mall => carry_link(&mut self.mall, &from.mall, edited),
        }
    }
    fn read<'a>(
        app: &'a App,
        t: &'a TenantId,
        this: &'a Self,
    ) -> Pin<Box<dyn Future<Output = crate::ports::StoreResult<Option<Self>>> + Send + 'a>> {
        Box::pin(app.store.get_group(t, &this.id))
    }
}

fn group_json(g: &TagGroup) -> serde_json::Value {
    json!({"name": g.name, "order": g.order, "deleted": g.deleted_at.is_some()})
}

fn tag_json(x: &Tag) -> serde_json::Value {
    json!({"name": x.name, "order": x.order, "group_id": x.group_id, "deleted": x.deleted_at.is_some()})
}
