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

/// A store read of one kind of object, as [`Stored`] hands it out.
type Load<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// What saving needs of a group or a tag beyond the library rules' view of it.
pub(super) trait Stored: LibraryObject + PartialEq {
    /// The store write of this object.
    fn write(&self) -> Write;
    /// Its fields as the audit log shows them.
    fn json(&self) -> serde_json::Value;
    /// The stored copy of object `id`.
    fn read<'a>(app: &'a App, t: &'a TenantId, id: &'a Self::Id) -> Load<'a, Option<Self>>;
    /// Every stored object of this kind (live or not).
    fn list<'a>(app: &'a App, t: &'a TenantId) -> Load<'a, Vec<Self>>;

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

    /// The id-map entry of this object and `side`'s object `side_id`.
    fn link_on(&self, side: Side, side_id: impl std::fmt::Display) -> IdLink {
        link(self.tenant(), side, Self::KIND, side_id, self.id())
    }
}

impl Stored for Tag {
    fn write(&self) -> Write {
        Write::Tag(self.clone())
    }
    fn json(&self) -> serde_json::Value {
        let deleted = self.deleted_at.is_some();
        json!({"name": self.name, "order": self.order, "group_id": self.group_id, "deleted": deleted})
    }
    fn read<'a>(app: &'a App, t: &'a TenantId, id: &'a HubTagId) -> Load<'a, Option<Self>> {
        Box::pin(app.store.get_tag(t, id))
    }
    fn list<'a>(app: &'a App, t: &'a TenantId) -> Load<'a, Vec<Self>> {
        Box::pin(app.store.list_tags(t))
    }
}

/// The same for a group; its audit fields are a tag's but its group.
impl Stored for TagGroup {
    fn write(&self) -> Write {
        Write::Group(self.clone())
    }
    fn json(&self) -> serde_json::Value {
        json!({"name": self.name, "order": self.order, "deleted": self.deleted_at.is_some()})
    }
    fn read<'a>(app: &'a App, t: &'a TenantId, id: &'a HubGroupId) -> Load<'a, Option<Self>> {
        Box::pin(app.store.get_group(t, id))
    }
    fn list<'a>(app: &'a App, t: &'a TenantId) -> Load<'a, Vec<Self>> {
        Box::pin(app.store.list_groups(t))
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

    /// Writes object `x` as the merge left it, with `writes` (its id-map changes) and the
    /// hub's audit entry of the change, if anything changed.
    pub(super) async fn save_merged<T: Stored>(
        &self,
        stored: Option<&T>,
        x: &mut T,
        mut writes: Vec<Write>,
    ) -> Step<()> {
        if stored == Some(&*x) && writes.is_empty() {
            return Ok(());
        }
        let before = stored.map(T::json);
        let after = x.json();
        if before.as_ref() != Some(&after) {
            let was_deleted = before.as_ref().map(|b| b["deleted"] == true);
            let action = match (was_deleted, after["deleted"] == true) {
                (None, _) => "created",
                (Some(false), true) => "deleted",
                _ => "updated",
            };
            let kind = T::KIND.as_str();
            writes.push(Write::Audit(self.entry(
                Actor::Hub,
                &format!("{kind}.{action}"),
                format!("{kind}:{}", x.id()),
                before,
                Some(after),
            )));
        }
        writes.push(x.write());
        self.commit(writes).await?;
        x.set_version(x.version() + 1);
        Ok(())
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

/// Id-map entries of object `x` that the merge cleared (the side no longer has the object,
/// or has another), as unlinks, unless `writes` unlink them already.
pub(super) fn cleared_links<T: Stored>(stored: Option<&T>, x: &T, writes: &[Write]) -> Vec<Write> {
    let mut out: Vec<Write> = Vec::new();
    for side in [Side::Wecom, Side::Mall] {
        let unlinked =
            |w: &Write, b: &str| matches!(w, Write::Unlink(l) if l.side == side && l.side_id == b);
        if let Some(b) = stored.and_then(|s| s.side_id(side))
            && x.side_id(side).as_ref() != Some(&b)
            && !writes.iter().chain(&out).any(|w| unlinked(w, &b))
        {
            out.push(Write::Unlink(x.link_on(side, &b)));
        }
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
