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

//!
//! The files: this one runs a job and holds its context ([`Cx`]); `group.rs` and `tag.rs`
//! read, merge and store one group or tag; `wecom.rs` and `mall.rs` are each side's leg (the
//! calls and what their answers mean); `wecom_move.rs` re-marks relations when a tag moves
//! in WeCom; `collisions.rs` settles a name two objects want (the rules themselves are pure,
//! in `crate::sync::collision`); `persist.rs` saves objects, id links, audit entries and
//! failures.

mod collisions;
mod group;
mod mall;
mod persist;
mod strategy;
mod tag;
mod wecom;
mod wecom_move;

use super::worker::Outcome;
use super::{Step, StepError, library_lock, lock};
use crate::app::App;
use crate::domain::*;
use crate::mall::client::{IdempotencyKey, MallError, MallGroupWithTags};
use crate::wecom::client::{TagGroupInfo, WecomCredentials, WecomError};
use persist::Stored;
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
        depth: 0,
        active: 0,
    };
    let mut result = work(&mut cx).await;
    // Siblings that got a temporary name are brought to their own names now: work for other
    // objects, handed to their own jobs if it fails (`active` makes the calls nested).
    cx.active += 1;
    while result.is_ok() {
        let Some(next) = cx.next_after() else { break };
        result = cx.bring(next, false).await;
    }
    cx.active -= 1;
    // This job's retry may not come back to follow-ups it had still to do (what it saved
    // before failing can send its retry down another path): they get their own jobs.
    if result.as_ref().is_err_and(StepError::comes_back) && !cx.after.is_empty() {
        let mut after = std::mem::take(&mut cx.after);
        // Groups first, each kind in the order met (a stable sort).
        after.sort_by_key(|o| matches!(o, HubObject::Tag(_)));
        let kinds = after.into_iter().map(|o| o.job(Hint::from(origin)));
        if let Err(e) = super::enqueue(app, tenant, kinds.collect()).await {
            tracing::warn!(error = %e, "could not queue a failed job's follow-ups; its retry redoes what it can");
        }
    }
    // A job whose run was superseded by a nested one is done (see `Cx::settle`).
    if result.as_ref().is_err_and(StepError::is_superseded) {
        result = Ok(());
    }
    held.release(app).await;
    match result {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// A hub group or tag, by id: what a job brings up to date inside itself.
#[derive(Clone, PartialEq)]
enum HubObject {
    Group(HubGroupId),
    Tag(HubTagId),
}

impl HubObject {
    /// The job of its own that brings it up to date.
    fn job(self, hint: Hint) -> JobKind {
        match self {
            HubObject::Group(group) => JobKind::SyncGroup { group, hint },
            HubObject::Tag(tag) => JobKind::SyncTag { tag, hint },
        }
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
    /// Groups and tags to bring up to date once this job's own work is done (given a
    /// temporary name on a side, see [`Cx::step_aside`]).
    after: Vec<HubObject>,
    /// Inline recursion depth (an unknown group found while syncing a tag): bounded.
    depth: u32,
    /// `tag`/`group` calls in progress: above zero, a call is another object's work done
    /// inside this job (see [`Cx::hand_over`]).
    active: u32,
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
            None => self.read_wecom_lib().await?,
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

    /// Object `id` as stored. A job for an object new to the hub carries a fresh hub id; if
    /// another job linked the event's side object meanwhile (a duplicate event), that hub
    /// object is the one to update: its id is returned with it.
    async fn stored<T: Stored>(&self, id: T::Id, hint: &Hint) -> Step<(T::Id, Option<T>)> {
        if let Some(x) = T::read(self.app, self.t(), &id).await? {
            return Ok((id, Some(x)));
        }
        let mut id = id;
        for (side, side_id) in [(Side::Wecom, &hint.wecom_id), (Side::Mall, &hint.mall_id)] {
            if let Some(side_id) = side_id
                && let Some(known) = self.hub_of::<T>(side, side_id).await?
            {
                id = known;
                break;
            }
        }
        let stored = T::read(self.app, self.t(), &id).await?;
        Ok((id, stored))
    }

    /// Every hub object of kind `T` (live or not).
    async fn all<T: Stored>(&self) -> Step<Vec<T>> {
        Ok(T::list(self.app, self.t()).await?)
    }

    /// The hub object of kind `T` the id map links `side`'s object `side_id` to.
    async fn hub_of<T: Stored>(&self, side: Side, side_id: &str) -> Step<Option<T::Id>> {
        let store = &self.app.store;
        let found = store.lookup_link(self.t(), side, T::KIND, side_id).await?;
        Ok(found.map(T::hub_id))
    }

    /// Queues `kinds` as jobs of their own (`what` they are, for the error); a failure to
    /// queue is retried with this job, so the follow-ups are never lost.
    async fn queue(&self, kinds: Vec<JobKind>, what: &str) -> Step<()> {
        super::enqueue(self.app, self.tenant, kinds)
            .await
            .map_err(|e| StepError::retry(format!("queueing {what}: {e}"), None))?;
        Ok(())
    }

    /// The hub group a side's group maps to; a group the hub has never seen is brought in
    /// first (without its other tags: the caller is syncing one of them).
    async fn hub_group_for(&mut self, side: Side, side_group: &str) -> Step<HubGroupId> {
        if let Some(id) = self.hub_of::<TagGroup>(side, side_group).await? {
            return Ok(id);
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
        Ok(self
            .hub_of::<TagGroup>(side, side_group)
            .await?
            .unwrap_or(id))
    }

    /// Brings group `id` up to date. With `children`, also its tags WeCom shows that the hub
    /// does not know (a console-created group sends one event for the group and its tags)
    /// and its live tags WeCom still lacks (created with the group's first tag).
    async fn group(&mut self, id: HubGroupId, hint: Hint, children: bool) -> Step<()> {
        let nested = self.begin_run();
        let r = self.group_once(id.clone(), hint.clone(), children).await;
        let own_job = JobKind::SyncGroup { group: id, hint };
        self.end_run(nested, r, own_job).await
    }

    /// Starts one object's run (ended by [`Cx::end_run`]): whether it is nested, that is,
    /// another object's work done inside this job.
    fn begin_run(&mut self) -> bool {
        self.active += 1;
        self.active > 1
    }

    /// Ends one object's run with its result `r`: a run found superseded (see
    /// [`Cx::settle`]) is done; a nested one that fails hands `own_job` over (see
    /// [`Cx::hand_over`]).
    async fn end_run(&mut self, nested: bool, r: Step<()>, own_job: JobKind) -> Step<()> {
        self.active -= 1;
        match r {
            Err(e) if e.is_superseded() => Ok(()),
            Err(e) if nested => Err(self.hand_over(vec![own_job], e).await),
            r => r,
        }
    }

    /// Another object's work, done inside this job, failed and will be retried: it gets its
    /// own job too. This job's retry may not come back to it: what this job saved before the
    /// failure (a link, a base) can send its retry down another path, and the other object's
    /// change (a tag gone with its WeCom group, say, still to be deleted in the mall) would
    /// then wait for the nightly run. A duplicate job costs a look.
    async fn hand_over(&self, kinds: Vec<JobKind>, e: StepError) -> StepError {
        if e.comes_back()
            && !kinds.is_empty()
            && let Err(q) = super::enqueue(self.app, self.tenant, kinds).await
        {
            tracing::warn!(error = %q, "could not queue a nested job's own retry; the outer job's retry redoes what it can");
        }
        e
    }

    /// Brings tag `id` up to date. A tag found to duplicate another ends here (see
    /// [`Cx::settle`]): the other carries on with what it held.
    async fn tag(&mut self, id: HubTagId, hint: Hint) -> Step<()> {
        let nested = self.begin_run();
        let r = self.tag_once(id.clone(), hint.clone()).await;
        let own_job = JobKind::SyncTag { tag: id, hint };
        self.end_run(nested, r, own_job).await
    }

    /// Brings `o` up to date inside this job (`children`: a group's tags too, see
    /// [`Cx::group`]).
    fn bring(&mut self, o: HubObject, children: bool) -> StepFuture<'_> {
        let hint = Hint::from(self.origin);
        match o {
            HubObject::Group(id) => Box::pin(self.group(id, hint, children)),
            HubObject::Tag(id) => Box::pin(self.tag(id, hint)),
        }
    }

    /// [`Cx::bring`] as a nested run, one level deeper (the depth bounds the nesting).
    async fn bring_nested(&mut self, o: HubObject, children: bool) -> Step<()> {
        self.depth += 1;
        let r = self.bring(o, children).await;
        self.depth -= 1;
        r
    }

    /// The next follow-up to run: groups first, the one queued last first.
    fn next_after(&mut self) -> Option<HubObject> {
        let groups = self
            .after
            .iter()
            .rposition(|o| matches!(o, HubObject::Group(_)));
        let i = groups.or(self.after.len().checked_sub(1))?;
        Some(self.after.remove(i))
    }
}

/// The id to read `side`'s object for `stored` by: the one it is linked to, else the event's
/// (`hint_id`).
fn id_to_read<T: Stored>(stored: Option<&T>, side: Side, hint_id: Option<&str>) -> Option<String> {
    let linked = stored.and_then(|x| x.side_id(side));
    linked.or(hint_id.map(str::to_owned))
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
impl From<StepFailure> for StepError {
    fn from(f: StepFailure) -> Self {
        f.0
    }
}

/// The object was deleted on `side` while the job worked on it: retry soon, and the next try
/// sees the deletion (which wins over a concurrent rename).
pub(super) fn vanished(side: Side) -> StepError {
    StepError::retry(
        format!("the object was deleted in {side} meanwhile; reading it again"),
        Some(std::time::Duration::from_millis(200)),
    )
}
