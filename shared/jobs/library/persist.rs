//! Saving what a library job learned and did: the hub object (carrying a side's link onto an
//! operator's concurrent edit), the id map, the audit entries, and a side's failure shown on
//! its object. One way for groups and tags alike ([`Stored`]).

use super::{Cx, Step, StepFailure};
use crate::app::App;
use crate::domain::*;
use crate::jobs::{StepError, audit};
use crate::ports::{StoreResult, Write};
use crate::sync::object::LibraryObject;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// What saving needs of a group or a tag beyond the library rules' view of it.
pub(super) trait Stored: LibraryObject {
    /// The store write of this object.
    fn write(&self) -> Write;
    /// Its fields as the audit log shows them.
    fn json(&self) -> serde_json::Value;
    /// The stored copy of object `id`.
    fn read<'a>(
        app: &'a App,
        t: &'a TenantId,
        id: &'a Self::Id,
    ) -> Pin<Box<dyn Future<Output = StoreResult<Option<Self>>> + Send + 'a>>;

    /// `tag {id}` / `group {id}`, for messages.
    fn label(&self) -> String {
        format!("{} {}", Self::KIND.as_str(), self.id())
    }

    /// Takes `side`'s link from `from` (see [`carry_link`]).
    fn carry(&mut self, from: &Self, side: Side, edited: bool) {
        match side {
            Side::Wecom => carry_link(self.wecom_mut(), from.wecom(), edited),
            Side::Mall => carry_link(self.mall_mut(), from.mall(), edited),
        }
    }
}

impl Stored for Tag {
    fn write(&self) -> Write {
        Write::Tag(self.clone())
    }
    fn json(&self) -> serde_json::Value {
        tag_json(self)
    }
    fn read<'a>(
        app: &'a App,
        t: &'a TenantId,
        id: &'a HubTagId,
    ) -> Pin<Box<dyn Future<Output = StoreResult<Option<Self>>> + Send + 'a>> {
        Box::pin(app.store.get_tag(t, id))
    }
}

impl Stored for TagGroup {
    fn write(&self) -> Write {
        Write::Group(self.clone())
    }
    fn json(&self) -> serde_json::Value {
        group_json(self)
    }
    fn read<'a>(
        app: &'a App,
        t: &'a TenantId,
        id: &'a HubGroupId,
    ) -> Pin<Box<dyn Future<Output = StoreResult<Option<Self>>> + Send + 'a>> {
        Box::pin(app.store.get_group(t, id))
    }
}

impl Cx<'_> {
    pub(super) async fn commit(&self, writes: Vec<Write>) -> Step<()> {
        if !writes.is_empty() {
            self.app.store.transact(writes).await?;
        }
        Ok(())
    }

    /// Writes tag `x` after `side` confirmed an operation, with `writes` (see [`Cx::save`]).
    pub(super) async fn save_tag(&self, x: &mut Tag, side: Side, writes: Vec<Write>) -> Step<()> {
        self.save(x, side, writes).await
    }

    /// [`Cx::save_tag`] for a group.
    pub(super) async fn save_group(
        &self,
        g: &mut TagGroup,
        side: Side,
        writes: Vec<Write>,
    ) -> Step<()> {
        self.save(g, side, writes).await
    }

    /// Writes object `x` after `side` confirmed an operation, with `writes`. The operator may
    /// have edited the object since this job read it (the admin API takes no library lock):
    /// on a version conflict the side's link (id, base, state) is carried onto the fresh copy
    /// and written again, so what the side did is never forgotten — a retry would otherwise,
    /// say, create the tag there a second time under its new name.
    pub(super) async fn save<T: Stored>(
        &self,
        x: &mut T,
        side: Side,
        writes: Vec<Write>,
    ) -> Step<()> {
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
                    let fresh = T::read(self.app, self.t(), x.id()).await?;
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
            format!("{} kept changing while saving", x.label()),
            None,
        ))
    }

    /// Records a side's failure on object `x` (shown by the admin API: a permanent one, or a
    /// retry meant to be seen) and parks or retries. Always an error.
    pub(super) async fn fail<T: Stored, R>(
        &self,
        mut x: T,
        side: Side,
        why: impl Into<StepFailure>,
    ) -> Step<R> {
        let e = why.into().0;
        if e.is_superseded() {
            return Err(e);
        }
        if e.is_shown() {
            x.fail_on(side, &e.reason);
            if let Err(err) = self.save(&mut x, side, Vec::new()).await {
                tracing::warn!(object = %x.label(), error = %err.reason, "could not record the failure on the object");
            }
        }
        let reason = format!("{} on {side}: {}", x.label(), e.reason);
        Err(e.because(reason).on(side))
    }

    /// A side could not be read: a permanent failure is recorded on the tag (if the hub has
    /// it) before the job parks.
    pub(super) async fn unreadable(
        &self,
        stored: Option<Tag>,
        side: Side,
        e: StepError,
    ) -> Step<()> {
        match stored {
            Some(x) if e.is_park() => self.fail(x, side, e).await,
            _ => Err(e),
        }
    }

    /// The audit entry of a change the merge made to the hub object, if it changed.
    pub(super) fn hub_entry(
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
        Some(Write::Audit(self.entry(
            Actor::Hub,
            &format!("{kind}.{action}"),
            format!("{kind}:{id}"),
            before,
            Some(after),
        )))
    }

    /// The audit entry of something this job did to `side`, as its origin's.
    pub(super) fn entry(
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

    /// [`Cx::entry`] for tag `id` on a side, as it was (`before`) and became (`after`).
    pub(super) fn tag_audit(
        &self,
        side: Actor,
        action: &str,
        id: &HubTagId,
        before: Option<&TagSnapshot>,
        after: Option<&TagSnapshot>,
    ) -> Write {
        Write::Audit(self.entry(
            side,
            action,
            format!("tag:{id}"),
            before.map(|s| json!(s)),
            after.map(|s| json!(s)),
        ))
    }
}

/// The id-map entry of side object `side_id` and hub object `hub_id`.
pub(super) fn link(
    tenant: &TenantId,
    side: Side,
    kind: EntityKind,
    side_id: impl std::fmt::Display,
    hub_id: impl std::fmt::Display,
) -> IdLink {
    IdLink {
        tenant: tenant.clone(),
        side,
        kind,
        side_id: side_id.to_string(),
        hub_id: hub_id.to_string(),
    }
}

/// Id-map entries of a group that the merge cleared (the side no longer has it).
pub(super) fn stale_group_links(stored: Option<&TagGroup>, g: &TagGroup) -> Vec<IdLink> {
    let Some(s) = stored else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(w) = &s.wecom.id
        && g.wecom.id.as_ref() != Some(w)
    {
        out.push(link(&s.tenant, Side::Wecom, EntityKind::Group, &w, &s.id));
    }
    if let Some(m) = &s.mall.id
        && g.mall.id.as_ref() != Some(m)
    {
        out.push(link(&s.tenant, Side::Mall, EntityKind::Group, &m, &s.id));
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

pub(super) fn group_json(g: &TagGroup) -> serde_json::Value {
    json!({"name": g.name, "order": g.order, "deleted": g.deleted_at.is_some()})
}

pub(super) fn tag_json(x: &Tag) -> serde_json::Value {
    json!({"name": x.name, "order": x.order, "group_id": x.group_id, "deleted": x.deleted_at.is_some()})
}
