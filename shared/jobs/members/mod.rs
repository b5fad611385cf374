//! Member jobs: one mall member, the WeCom customer bound to it, and every follow relation of
//! that customer. Reads the mall member (`GET /members/{id}`) and the customer
//! (`externalcontact/get`), merges per (member, tag) by time (`crate::sync::members`), then
//! sends one `mark_tag` per relation that differs and one `POST /members/{id}/tags`.
//!
//! Tag ids are hub ids inside the merge; WeCom and mall ids are mapped through the id map on
//! the way in (ids the hub does not know are left alone) and through the hub tag on the way
//! out (a tag not created on a side yet cannot be put there; the next job for the member,
//! or the reconciliation, puts it there once it exists).

mod ids;
mod read;
mod write;

use super::worker::Outcome;
use super::{Step, StepError, audit, lock, member_lock};
use crate::app::App;
use crate::domain::*;
use crate::mall::client::MallMember;
use crate::sync::members::{MemberMerge, merge_member_tags};
use read::Read;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub async fn sync_member(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    member: &MemberId,
    hint: &Hint,
) -> Outcome {
    let view = View {
        mall_from_base: hint.mall_from_base,
        ..View::default()
    };
    match repair(app, tenant, job, member, hint, view, Turn::default()).await {
        Ok(_) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// What a reconciliation page already read of a member's sides, so bringing the member up to
/// date need not read them again (the run's WeCom calls stay: pages + the `mark_tag`s).
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The mall member as the page listed it; `None`: read it.
    pub mall: Option<MallMember>,
    /// Relations of the customer as a WeCom page listed them (WeCom tag ids); relations the
    /// page did not list count as their stored base. `None`: read the customer from WeCom.
    pub wecom: Option<BTreeMap<WecomUserId, Vec<String>>>,
    /// The customer's stored version when the page compared it with these relations: if a
    /// job has changed the relations since, the page's view is stale and WeCom is read.
    pub customer_version: Option<u64>,
    /// Without `mall`: take the mall member to be as the hub last knew it (its binding and
    /// mall base) instead of reading it, when the hub has both. For jobs that carry the
    /// operator's changes (member-tag batches, bulk runs): every change in the mall sends a
    /// webhook whose own job merges it, and the write names only tags whose state differs
    /// from the base, so a change the hub has not heard of yet is never undone (a tag has two
    /// states: a change from the base the mall made is the one this write would make). The
    /// write's answer shows such changes; the member is then queued again to carry them.
    pub mall_from_base: bool,
    /// The job's gathered mall writes (`jobs::mall_writes`); `None`: this member's own call.
    pub batch: Option<std::sync::Arc<crate::jobs::mall_writes::MallWrites>>,
}

/// What bringing one member up to date changed, for a run's report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub hub_changed: bool,
    pub relations_marked: u64,
    pub wecom_added: u64,
    pub wecom_removed: u64,
    pub mall_added: u64,
    pub mall_removed: u64,
}

/// What a job that brings its members up to date in a set order (`jobs::bulk_tags`) hands a
/// member's repair already taken: the member's seat in the job's mall batch (taken before
/// its turn, so the batch waits for it) and the job's WeCom turn.
#[derive(Debug, Default)]
pub struct Turn {
    pub seat: Option<crate::jobs::mall_writes::Seat>,
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// How long a member that holds a seat in its job's batch waits for the member's lock: the
/// holder may be another job waiting for its own batch, which may wait on a member this job
/// holds; the wait ends that (the member is tried again with its job).
const SEATED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Brings one member (and its customer's relations) up to date, starting from what `view`
/// already knows of the sides, with what `turn` brings already taken (`Turn::default()`:
/// nothing).
pub async fn repair(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    member: &MemberId,
    hint: &Hint,
    view: View,
    turn: Turn,
) -> Step<Applied> {
    let locking = lock(app, member_lock(&tenant.id, member));
    let held = if turn.seat.is_some() {
        tokio::time::timeout(SEATED_LOCK_WAIT, locking)
            .await
            .map_err(|_| {
                StepError::retry(
                    format!("member {member} is held by another job"),
                    Some(std::time::Duration::from_secs(1)),
                )
            })??
    } else {
        locking.await?
    };
    // Unless the turn brought it, taken with the lock held, so this job's batch never waits on
    // another job's member.
    let seat = turn.seat.or_else(|| view.batch.as_ref().map(|b| b.seat()));
    let permit = turn.permit;
    let mut cx = Cx {
        app,
        now: app.clock.now(),
        tenant,
        job,
        hint,
        ids: IdCache::default(),
        waiting: BTreeSet::new(),
        blocked: BTreeSet::new(),
        view,
        applied: Applied::default(),
        wecom_used: BTreeMap::new(),
        follow_up: false,
        detail: None,
        seat: seat.as_ref(),
        permit,
    };
    let result = cx
        .run(member)
        .await
        .map(|()| std::mem::take(&mut cx.applied));
    drop(cx);
    // Given back before the lease: the job's other members may be waiting for this one.
    drop(seat);
    held.release(app).await;
    result
}

/// Id translations, each looked up once per job.
#[derive(Default)]
struct IdCache {
    to_hub: HashMap<(Side, String), Option<HubTagId>>,
    to_side: HashMap<(Side, HubTagId), Option<String>>,
    live: HashMap<HubTagId, bool>,
    /// Per side and tag without an id there, why its own job failed there for good.
    failed: HashMap<(Side, HubTagId), String>,
    /// Per tag, whether it belongs to a scoped group kept from the mall.
    kept_from_mall: HashMap<HubTagId, bool>,
    /// Per group, whether it is kept from the mall (`carry_to_mall` off).
    group_kept: HashMap<HubGroupId, bool>,
}

struct Cx<'a> {
    app: &'a App,
    /// When the job began its work on the member (its lock held): the time of everything it
    /// reads and writes.
    now: Timestamp,
    tenant: &'a Tenant,
    job: &'a Job,
    hint: &'a Hint,
    ids: IdCache,
    /// Tags this job could not put on a side yet (not created there yet).
    waiting: BTreeSet<String>,
    /// Tags this job could not put on a side because their own job failed there for good
    /// (parked, say on a name clash an operator settles): no use waiting long for them.
    blocked: BTreeSet<String>,
    view: View,
    applied: Applied,
    /// The WeCom id each hub tag had when this job put it on (or took it off) relations.
    wecom_used: BTreeMap<HubTagId, String>,
    /// A side answered with someone else's change made since this job read it: the member
    /// is queued again once this job's work is saved.
    follow_up: bool,
    /// The customer as this job read it from WeCom, for the customer index.
    detail: Option<crate::wecom::client::ContactDetail>,
    /// This member's place in the job's gathered mall writes.
    seat: Option<&'a crate::jobs::mall_writes::Seat>,
    /// The job's WeCom turn (see `Turn`), held while this member reads and marks WeCom.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Cx<'_> {
    /// Reads the member's sides, merges them, writes what differs to WeCom and the mall, and
    /// saves what it did.
    async fn run(&mut self, member: &MemberId) -> Step<()> {
        let Some(read) = self.read(member).await? else {
            return Ok(());
        };
        let merged = merge_member_tags(&read.hub, &read.mall_side, &read.relations);
        tracing::debug!(%member, customer = ?read.customer, hub = ?read.hub, mall = ?read.mall_side, relations = ?read.relations, desired = ?merged.desired, "member merged");
        let mut tags = merged.tags.clone();
        let mut customer_rel = read.settled_relations(&self.tenant.id, self.now);
        // The relations as tagsync knew them before this job's merge: what a marking is
        // written over (never this job's new bases, which hold only once its merge is saved).
        let known_before = customer_rel.clone();
        let mut entries = Vec::new();
        self.applied.hub_changed = merged.tags.present() != read.hub.present();
        if merged.tags.marks != read.hub.marks {
            entries.push(audit(
                &self.tenant.id,
                self.now,
                Actor::Hub,
                "member.tags_changed",
                format!("member:{member}"),
                Some(json!(read.hub.present())),
                Some(json!(merged.desired)),
                self.hint.origin,
            ));
        }
        if let (Some(c), Some(rel)) = (&read.customer, customer_rel.as_mut()) {
            let before = known_before.as_ref();
            let sent = self.write_wecom(&read, &merged, c, rel, before, &mut entries);
            if let Err(failure) = sent.await? {
                return Err(self.stop(&mut tags, customer_rel, entries, failure).await);
            }
        }
        // WeCom is done with: the job's next member may go on while this one waits for its
        // batch.
        self.permit = None;
        if let Some(change) = &merged.plan.mall {
            let sent = self.write_mall(member, &read, change, &mut tags, &mut entries);
            if let Err(failure) = sent.await? {
                return Err(self.stop(&mut tags, customer_rel, entries, failure).await);
            }
        }
        tags.mall_base.retain(|tag| !read.kept.contains(tag));
        let known = customer_rel.as_ref().map(|r| r.relations.clone());
        self.save(&mut tags, customer_rel, entries).await?;
        self.after_save(member, &read, &merged, &tags, known).await
    }

    /// What follows a saved member: the `tag_added` rules, the customer index, a look for a
    /// tag moved meanwhile, the member queued again when a side showed someone else's change,
    /// and a wait for tags not created yet.
    async fn after_save(
        &self,
        member: &MemberId,
        read: &Read,
        merged: &MemberMerge,
        tags: &MemberTags,
        known: Option<BTreeMap<WecomUserId, BTreeSet<WecomTagId>>>,
    ) -> Step<()> {
        let app = self.app;
        // Tags this job's merge turned on from a side reach the `tag_added` rules; a mark
        // found on the fresh copy while saving (an operator's or a rule's, made meanwhile) is
        // that writer's, not a gain of this job.
        let had: BTreeSet<HubTagId> = read.hub.present().into_iter().collect();
        let gained: Vec<(HubTagId, Timestamp)> = merged
            .tags
            .marks
            .iter()
            .filter(|(id, m)| m.present && !had.contains(*id) && tags.marks.get(*id) == Some(*m))
            .map(|(id, m)| (id.clone(), m.at))
            .collect();
        let origin = self.hint.origin.as_str();
        crate::jobs::rules::tags_gained(app, self.tenant, member, gained, origin).await?;
        if let (Some(c), Some(known)) = (&read.customer, known) {
            let (t, d) = (&self.tenant.id, self.detail.as_ref());
            crate::jobs::customer_index::after_member_job(app, t, c, member, &known, d).await?;
        }
        self.moved_meanwhile().await?;
        if self.follow_up {
            let again = JobKind::SyncMember {
                member: member.clone(),
                hint: Hint::from(Actor::Mall),
            };
            super::enqueue(app, self.tenant, vec![again])
                .await
                .map_err(|e| StepError::retry(format!("queueing the member again: {e}"), None))?;
        }
        // Retried with the worker's backoff, then parked beside the tag's own job: a redrive
        // of both once it is fixed carries the change (waiting the long patience for a tag
        // that only an operator can bring would hold the member's change for a minute and
        // then park it anyway).
        if !self.blocked.is_empty() {
            let blocked: Vec<&str> = self.blocked.iter().map(String::as_str).collect();
            return Err(StepError::retry(
                format!(
                    "tags failed on a side, which this member's change needs (redrive it with \
                     them once they are fixed): {}",
                    blocked.join(", ")
                ),
                None,
            ));
        }
        if !self.waiting.is_empty() {
            let waiting: Vec<&str> = self.waiting.iter().map(String::as_str).collect();
            return Err(StepError::wait(format!(
                "waiting for tags to be created first: {}",
                waiting.join(", ")
            )));
        }
        Ok(())
    }
}
