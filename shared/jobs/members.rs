//! Member jobs: one mall member, the WeCom customer bound to it, and every follow relation of
//! that customer. Reads the mall member (`GET /members/{id}`) and the customer
//! (`externalcontact/get`), merges per (member, tag) by time (`crate::sync::members`), then
//! sends one `mark_tag` per relation that differs and one `POST /members/{id}/tags`.
//!
//! Tag ids are hub ids inside the merge; WeCom and mall ids are mapped through the id map on
//! the way in (ids the hub does not know are left alone) and through the hub tag on the way
//! out (a tag not created on a side yet cannot be put there; the next job for the member,
//! or the reconciliation, puts it there once it exists).

use super::intake::bind;
use super::worker::Outcome;
use super::{Step, StepError, WECOM_CORP_TAG, audit, lock, member_lock};
use crate::app::App;
use crate::domain::*;
use crate::mall::client::MallMember;
use crate::ports::Write;
use crate::sync::members::{
    MarkTag, SideTags, base_after_write, carry_onto, merge_member_tags, relation_base,
};
use crate::wecom::classify::Refusal;
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
    match repair(app, tenant, job, member, hint, view).await {
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

/// Brings one member (and its customer's relations) up to date, starting from what `view`
/// already knows of the sides.
pub async fn repair(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    member: &MemberId,
    hint: &Hint,
    view: View,
) -> Step<Applied> {
    repair_in_turn(app, tenant, job, member, hint, view, Turn::default()).await
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

/// [`repair`] with what `turn` brings already taken.
pub async fn repair_in_turn(
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
        tenant,
        job,
        hint,
        ids: IdCache::default(),
        waiting: BTreeSet::new(),
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
}

struct Cx<'a> {
    app: &'a App,
    tenant: &'a Tenant,
    job: &'a Job,
    hint: &'a Hint,
    ids: IdCache,
    /// Tags this job could not put on a side yet (not created there yet).
    waiting: BTreeSet<String>,
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
    async fn hub_of(&mut self, side: Side, id: &str) -> Step<Option<HubTagId>> {
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
    async fn live(&mut self, tag: &HubTagId) -> Step<bool> {
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

    async fn side_of(&mut self, side: Side, tag: &HubTagId) -> Step<Option<String>> {
        let key = (side, tag.clone());
        if let Some(v) = self.ids.to_side.get(&key) {
            return Ok(v.clone());
        }
        let found = self
            .app
            .store
            .get_tag(&self.tenant.id, tag)
            .await?
            .filter(|x| x.deleted_at.is_none())
            .and_then(|x| match side {
                Side::Wecom => x.wecom.id.map(|i| i.to_string()),
                Side::Mall => x.mall.id.map(|i| i.to_string()),
            });
        self.ids.to_side.insert(key, found.clone());
        Ok(found)
    }

    async fn hub_ids(&mut self, side: Side, ids: &[String]) -> Step<BTreeSet<HubTagId>> {
        let mut out = BTreeSet::new();
        for id in ids {
            if let Some(h) = self.hub_of(side, id).await? {
                out.insert(h);
            }
        }
        Ok(out)
    }

    /// Side ids of hub tags; tags without an id on that side are skipped.
    /// Side ids of hub tags. A live tag not created on that side yet (its tag job is still
    /// on its way) is noted in `waiting`: the job retries shortly rather than drop it.
    async fn side_ids(&mut self, side: Side, tags: &BTreeSet<HubTagId>) -> Step<Vec<String>> {
        let mut out = Vec::new();
        for t in tags {
            match self.side_of(side, t).await? {
                Some(id) => {
                    if side == Side::Wecom {
                        self.wecom_used.insert(t.clone(), id.clone());
                    }
                    out.push(id)
                }
                None if self.live(t).await? => {
                    self.waiting.insert(format!("{t} in {side}"));
                }
                None => {}
            }
        }
        Ok(out)
    }

    async fn run(&mut self, member: &MemberId) -> Step<()> {
        let app = self.app;
        let t = self.tenant.id.clone();
        let now = app.clock.now();
        let ep = App::mall_endpoint(self.tenant);
        let creds = App::wecom_credentials(self.tenant);

        let listed = match self.view.mall.take() {
            Some(m) => Some(m),
            None => self.as_hub_knows(member).await?,
        };
        let mall_member = match listed {
            Some(m) => m,
            None => match app.mall.get_member(&ep, member).await? {
                Some(m) => m,
                None => {
                    tracing::info!(%member, "the mall has no such member; nothing to sync");
                    return Ok(());
                }
            },
        };
        let mut binding = app.store.get_binding(&t, member).await?;
        if binding
            .as_ref()
            .and_then(|b| b.external_userid.as_ref())
            .is_none()
            && let Some(customer) = &mall_member.external_userid
        {
            bind(
                app,
                &t,
                member,
                Some(customer.clone()),
                mall_member.unionid.clone(),
            )
            .await?;
            binding = app.store.get_binding(&t, member).await?;
        }
        let customer = binding.and_then(|b| b.external_userid);

        let stored_tags = app.store.get_member_tags(&t, member).await?;
        let hub = stored_tags.clone().unwrap_or(MemberTags {
            tenant: t.clone(),
            member_id: member.clone(),
            marks: BTreeMap::new(),
            mall_base: BTreeSet::new(),
            version: 0,
        });
        // A deleted tag leaves the member with it (WeCom and the mall drop it silently).
        let mut hub = hub;
        let mut gone = Vec::new();
        for tag in hub.marks.keys() {
            if !self.live(tag).await? {
                gone.push(tag.clone());
            }
        }
        for tag in gone {
            hub.marks.remove(&tag);
            hub.mall_base.remove(&tag);
        }
        let mall_ids: Vec<String> = mall_member.tag_ids.iter().map(|i| i.to_string()).collect();
        // Every mall tag is synced: one the hub does not know yet is still on its way in.
        for id in &mall_ids {
            if self.hub_of(Side::Mall, id).await?.is_none() {
                self.waiting.insert(format!("mall tag {id}"));
            }
        }
        let mall_side = SideTags {
            tags: self.hub_ids(Side::Mall, &mall_ids).await?,
            base: hub.mall_base.clone(),
            at: self.hint.mall_at.unwrap_or(now),
        };

        // The customer's relations as WeCom shows them (WeCom ids), and their stored bases.
        let mut shown: BTreeMap<WecomUserId, Vec<String>> = BTreeMap::new();
        let mut stored_customer = None;
        if let Some(c) = &customer {
            stored_customer = app.store.get_customer(&t, c).await?;
            let fresh = match (&self.view.wecom, self.view.customer_version) {
                (Some(_), Some(v)) => stored_customer.as_ref().map_or(0, |s| s.version) == v,
                (Some(_), None) => true,
                (None, _) => false,
            };
            // Relations the view did not list count as their stored bases, which a marking
            // left in flight (its process died) says may no longer be what WeCom holds: taking
            // them as shown would undo that job's marks. Read WeCom instead.
            let unlisted_marking = match (&self.view.wecom, &stored_customer) {
                (Some(listed), Some(s)) => s.marking.keys().any(|u| !listed.contains_key(u)),
                _ => false,
            };
            let fresh = fresh && !unlisted_marking;
            if let (true, Some(listed)) = (fresh, self.view.wecom.take()) {
                // The page's relations over the stored bases of those it did not list.
                if let Some(stored) = &stored_customer {
                    for (userid, ids) in &stored.relations {
                        shown.insert(userid.clone(), ids.iter().map(|i| i.to_string()).collect());
                    }
                }
                shown.extend(listed);
            } else {
                self.view.wecom = None;
                self.read_customer(c, &mut shown).await?;
            }
        }

        let mut relations = BTreeMap::new();
        // Per relation, the ids waited for below: read but not merged, so kept out of the
        // relation's new base (else the next job would find them in sync and never carry them).
        let mut unmerged: BTreeMap<WecomUserId, BTreeSet<String>> = BTreeMap::new();
        // Per relation, its base as tagsync knows it (a marking left in flight settled).
        let mut bases: BTreeMap<WecomUserId, BTreeSet<String>> = BTreeMap::new();
        for (userid, ids) in &shown {
            let showing: BTreeSet<String> = ids.iter().cloned().collect();
            let base_ids: Vec<String> = relation_base(stored_customer.as_ref(), userid, &showing)
                .into_iter()
                .collect();
            bases.insert(userid.clone(), base_ids.iter().cloned().collect());
            // A tag just put on a relation that the hub does not know yet is most likely a new
            // WeCom tag whose own job has not run: wait for it rather than miss it. (Tags the
            // relation already had are left alone: they may be ones tagsync does not manage.)
            if stored_customer
                .as_ref()
                .is_some_and(|c| c.relations.contains_key(userid))
            {
                for id in ids.iter().filter(|i| !base_ids.contains(i)) {
                    if self.hub_of(Side::Wecom, id).await?.is_none() {
                        self.waiting.insert(format!("WeCom tag {id}"));
                        unmerged
                            .entry(userid.clone())
                            .or_default()
                            .insert(id.clone());
                    }
                }
            }
            relations.insert(
                userid.clone(),
                SideTags {
                    tags: self.hub_ids(Side::Wecom, ids).await?,
                    base: self.hub_ids(Side::Wecom, &base_ids).await?,
                    at: now,
                },
            );
        }

        let merged = merge_member_tags(&hub, &mall_side, &relations);
        tracing::debug!(%member, customer = ?customer, hub = ?hub, mall = ?mall_side, relations = ?relations, desired = ?merged.desired, "member merged");
        let mut tags = merged.tags.clone();
        let mut customer_rel = customer.as_ref().map(|c| {
            let mut r = stored_customer.clone().unwrap_or(CustomerRelations {
                tenant: t.clone(),
                external_userid: c.clone(),
                relations: BTreeMap::new(),
                marking: BTreeMap::new(),
                updated_at: now,
                version: 0,
            });
            // Relations WeCom no longer shows are gone (deleted, transferred).
            r.relations.retain(|u, _| shown.contains_key(u));
            // A marking left in flight (its process died) is settled into the bases; this job
            // writes its own.
            for (u, base) in &bases {
                r.relations.insert(
                    u.clone(),
                    base.iter()
                        .cloned()
                        .map(WecomTagId::new_unchecked)
                        .collect(),
                );
            }
            r.marking.clear();
            r
        });
        // The relations as tagsync knew them before this job's merge: what a marking is
        // written over (never this job's new bases, which hold only once its merge is saved).
        let known_before = customer_rel.clone();
        let mut entries = Vec::new();
        self.applied.hub_changed = present(&merged.tags) != present(&hub);
        if merged.tags.marks != hub.marks {
            entries.push(audit(
                &t,
                now,
                Actor::Hub,
                "member.tags_changed",
                format!("member:{member}"),
                Some(json!(present(&hub))),
                Some(json!(merged.desired)),
                self.hint.origin,
            ));
        }

        // What was read and merged of a relation (its ids less those waited for).
        let merged_read = |userid: &WecomUserId| -> BTreeSet<String> {
            let skip = unmerged.get(userid);
            shown
                .get(userid)
                .into_iter()
                .flatten()
                .filter(|i| skip.is_none_or(|s| !s.contains(*i)))
                .cloned()
                .collect()
        };
        // WeCom: one mark_tag per relation that differs.
        if let (Some(c), Some(rel)) = (&customer, customer_rel.as_mut()) {
            for userid in shown.keys() {
                // Relations already showing the desired set: their base is what was read.
                if merged.relation_bases.contains_key(userid) {
                    rel.relations.insert(
                        userid.clone(),
                        merged_read(userid)
                            .into_iter()
                            .map(WecomTagId::new_unchecked)
                            .collect(),
                    );
                }
            }
            let mut marks = Vec::new();
            for mark in &merged.plan.relations {
                let add = self.side_ids(Side::Wecom, &mark.add).await?;
                let remove = self.side_ids(Side::Wecom, &mark.remove).await?;
                let current = merged_read(&mark.userid);
                if add.is_empty() && remove.is_empty() {
                    rel.relations.insert(
                        mark.userid.clone(),
                        current
                            .iter()
                            .map(|i| WecomTagId::new_unchecked(i.clone()))
                            .collect(),
                    );
                    continue;
                }
                marks.push((mark, add, remove, current));
            }
            self.marking(rel, known_before.as_ref(), &marks).await?;
            for (mark, add, remove, current) in marks {
                let add_w: Vec<WecomTagId> = add
                    .iter()
                    .map(|i| WecomTagId::new_unchecked(i.clone()))
                    .collect();
                let remove_w: Vec<WecomTagId> = remove
                    .iter()
                    .map(|i| WecomTagId::new_unchecked(i.clone()))
                    .collect();
                match app
                    .wecom
                    .mark_tag(&creds, &mark.userid, c, &add_w, &remove_w)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.refusal() == Some(Refusal::NoRelation) => {
                        rel.relations.remove(&mark.userid);
                        rel.marking.remove(&mark.userid);
                        continue;
                    }
                    // A tag deleted in WeCom meanwhile: its tag job removes it from the hub,
                    // after which this member's next try leaves it out.
                    Err(e) if e.refusal() == Some(Refusal::UnknownId) => {
                        let rel = customer_rel.clone();
                        let wait = StepError::wait(format!("{e}; a tag was deleted meanwhile"));
                        return Err(self.stop(&mut tags, rel, entries, wait).await);
                    }
                    Err(e) => {
                        let rel = customer_rel.clone();
                        return Err(self.stop(&mut tags, rel, entries, e.into()).await);
                    }
                }
                // `mark_tag` answers nothing about the relation; what it holds as far as
                // tagsync knows is what was read plus this call (a change someone made there
                // meanwhile stays a difference from the base; see `base_after_write`).
                let after = base_after_write(&current, &add, &remove);
                self.applied.relations_marked += 1;
                self.applied.wecom_added +=
                    add.iter().filter(|i| !current.contains(*i)).count() as u64;
                self.applied.wecom_removed +=
                    remove.iter().filter(|i| current.contains(*i)).count() as u64;
                entries.push(audit(
                    &t,
                    now,
                    Actor::Wecom,
                    "relation.tags_changed",
                    format!("relation:{}/{c}", mark.userid),
                    Some(json!(current)),
                    Some(json!(after)),
                    self.hint.origin,
                ));
                rel.relations.insert(
                    mark.userid.clone(),
                    after.into_iter().map(WecomTagId::new_unchecked).collect(),
                );
                rel.marking.remove(&mark.userid);
            }
        }

        // WeCom is done with: the job's next member may go on while this one waits for its
        // batch.
        self.permit = None;
        // The mall: one call (split at 100 ids by the client).
        if let Some(change) = &merged.plan.mall {
            let add = self.side_ids(Side::Mall, &change.add).await?;
            let remove = self.side_ids(Side::Mall, &change.remove).await?;
            if !add.is_empty() || !remove.is_empty() {
                let add_m: Vec<MallTagId> = add
                    .iter()
                    .map(|i| MallTagId::new_unchecked(i.clone()))
                    .collect();
                let remove_m: Vec<MallTagId> = remove
                    .iter()
                    .map(|i| MallTagId::new_unchecked(i.clone()))
                    .collect();
                let written = match self.seat {
                    Some(seat) => seat.write(member, &add_m, &remove_m).await,
                    None => {
                        let key = crate::jobs::mall_writes::member_key(&self.job.id, member);
                        app.mall
                            .change_member_tags(&ep, &key, member, &add_m, &remove_m)
                            .await
                    }
                };
                match written {
                    // The answer lists the member's tags after the call, which may include a
                    // change the mall's operator made since this job read the member (issue
                    // 12 §1): the base is what was read plus what this call did, so such a
                    // change stays the mall's, and its webhook's job carries it everywhere.
                    Ok(answer) => {
                        let read: BTreeSet<String> = mall_ids.iter().cloned().collect();
                        let after_ids = base_after_write(&read, &add, &remove);
                        // Its webhook should be on its way; queueing the member again costs
                        // one read if it is, and carries the change if it never comes.
                        let answered: BTreeSet<String> =
                            answer.tag_ids.iter().map(|i| i.to_string()).collect();
                        self.follow_up |= answered != after_ids;
                        self.applied.mall_added +=
                            add.iter().filter(|i| !mall_ids.contains(*i)).count() as u64;
                        self.applied.mall_removed +=
                            remove.iter().filter(|i| mall_ids.contains(*i)).count() as u64;
                        let added = self.hub_ids(Side::Mall, &add).await?;
                        let removed = self.hub_ids(Side::Mall, &remove).await?;
                        tags.mall_base = base_after_write(&mall_side.tags, &added, &removed);
                        entries.push(audit(
                            &t,
                            now,
                            Actor::Mall,
                            "member.tags_changed",
                            format!("member:{member}"),
                            Some(json!(mall_ids)),
                            Some(json!(after_ids)),
                            self.hint.origin,
                        ));
                    }
                    Err(e) => {
                        let failure = if e.unknown_ids.is_empty() {
                            e.into()
                        } else {
                            StepError::wait(format!("{e}; a tag was deleted meanwhile"))
                        };
                        return Err(self.stop(&mut tags, customer_rel, entries, failure).await);
                    }
                }
            } else {
                tags.mall_base = mall_side.tags.clone();
            }
        }
        let known = customer_rel.as_ref().map(|r| r.relations.clone());
        self.save(&mut tags, customer_rel, entries).await?;
        // Tags this job's merge turned on from a side reach the `tag_added` rules; a mark
        // found on the fresh copy while saving (an operator's or a rule's, made meanwhile) is
        // that writer's, not a gain of this job.
        let had: BTreeSet<&HubTagId> = present(&hub).into_iter().collect();
        let gained: Vec<(HubTagId, Timestamp)> = merged
            .tags
            .marks
            .iter()
            .filter(|(id, m)| m.present && !had.contains(id) && tags.marks.get(*id) == Some(*m))
            .map(|(id, m)| (id.clone(), m.at))
            .collect();
        crate::jobs::rules::tags_gained(
            app,
            self.tenant,
            member,
            gained,
            self.hint.origin.as_str(),
        )
        .await?;
        if let (Some(c), Some(known)) = (&customer, known) {
            let d = self.detail.as_ref();
            crate::jobs::customer_index::after_member_job(app, &t, c, member, &known, d).await?;
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
        if !self.waiting.is_empty() {
            let waiting: Vec<&str> = self.waiting.iter().map(String::as_str).collect();
            return Err(StepError::wait(format!(
                "waiting for tags to be created first: {}",
                waiting.join(", ")
            )));
        }
        Ok(())
    }

    /// Writes down the relations this job is about to mark, and how, before the first
    /// `mark_tag` (over the bases as they were before this job's merge): if the process dies before the
    /// bases after the calls are saved, or a run's page reads a relation in between, the
    /// marking tells tagsync's own change from the relation's (`relation_base`). One write per
    /// member that marks anything; cleared by [`Self::save`] with the new bases.
    async fn marking(
        &self,
        rel: &mut CustomerRelations,
        before: Option<&CustomerRelations>,
        marks: &[(&MarkTag, Vec<String>, Vec<String>, BTreeSet<String>)],
    ) -> Step<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let w = |ids: &[String]| ids.iter().cloned().map(WecomTagId::new_unchecked).collect();
        // Over the bases as they were: a relation this job found in step gets its new base
        // only with the save (else a process dying before it would leave a base that hides
        // the change this job was carrying, and the hub's old marks would undo it).
        let mut intent = before.cloned().unwrap_or_else(|| rel.clone());
        intent.marking = marks
            .iter()
            .map(|(m, add, remove, _)| {
                let marking = Marking {
                    add: w(add),
                    remove: w(remove),
                };
                (m.userid.clone(), marking)
            })
            .collect();
        intent.updated_at = self.app.clock.now();
        rel.marking = intent.marking.clone();
        // Under the member's lock nobody else writes the relations (a tag move's re-marking
        // takes it too); a conflict is a concurrent writer this job should not overrule.
        self.app
            .store
            .transact(vec![Write::Customer(intent)])
            .await
            .map_err(|e| {
                if e.is_conflict() {
                    StepError::retry(
                        format!("the customer's relations changed while marking them: {e}"),
                        Some(std::time::Duration::ZERO),
                    )
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    /// The mall member as the hub last knew it, when the view says to use it and the hub has
    /// the member's binding (with its customer) and mall base; `None`: read it.
    async fn as_hub_knows(&mut self, member: &MemberId) -> Step<Option<MallMember>> {
        if !self.view.mall_from_base {
            return Ok(None);
        }
        let t = &self.tenant.id;
        let Some(binding) = self
            .app
            .store
            .get_binding(t, member)
            .await?
            .filter(|b| b.external_userid.is_some())
        else {
            return Ok(None);
        };
        let Some(known) = self.app.store.get_member_tags(t, member).await? else {
            return Ok(None);
        };
        let mut tag_ids = Vec::new();
        for tag in &known.mall_base {
            if let Some(id) = self.side_of(Side::Mall, tag).await? {
                tag_ids.push(MallTagId::new_unchecked(id));
            }
        }
        Ok(Some(MallMember {
            id: member.clone(),
            unionid: binding.unionid,
            external_userid: binding.external_userid,
            mobile: None,
            tag_ids,
        }))
    }

    /// Reads the customer's relations from WeCom (corp tags only: personal tags cannot be
    /// written by the API).
    async fn read_customer(
        &mut self,
        c: &ExternalUserId,
        shown: &mut BTreeMap<WecomUserId, Vec<String>>,
    ) -> Step<()> {
        let creds = App::wecom_credentials(self.tenant);
        match self.app.wecom.get_external_contact(&creds, c).await {
            Ok(detail) => {
                for f in &detail.follow_user {
                    let ids = f
                        .tags
                        .iter()
                        .filter(|x| x.kind == WECOM_CORP_TAG)
                        .filter_map(|x| x.tag_id.as_ref().map(|i| i.to_string()))
                        .collect();
                    shown.insert(f.userid.clone(), ids);
                }
                self.detail = Some(detail);
                Ok(())
            }
            // No such customer (any more): it has no relations to keep in step.
            Err(e) if !e.retryable() => {
                tracing::info!(customer = %c, error = %e, "customer not readable in WeCom");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A tag this job put on relations by its WeCom id may have moved meanwhile (WeCom: a new
    /// tag in the new group, the relations the move knew of re-marked, the old id deleted —
    /// and with it what this job put on). Looked at after this job's work is saved: the move
    /// either saw that work (and queued this member again) or switched ids before this look.
    async fn moved_meanwhile(&self) -> Step<()> {
        for (tag, used) in &self.wecom_used {
            let now = self.app.store.get_tag(&self.tenant.id, tag).await?;
            if let Some(x) = now.filter(|x| x.deleted_at.is_none())
                && x.wecom.id.as_ref().map(|i| i.as_str()) != Some(used.as_str())
            {
                return Err(StepError::wait(format!(
                    "tag {tag} moved in WeCom while this job tagged with it; again"
                )));
            }
        }
        Ok(())
    }

    /// A call failed: what is done so far stays recorded (the retry does only the rest), and
    /// the failure is the job's outcome.
    async fn stop(
        &self,
        tags: &mut MemberTags,
        customer: Option<CustomerRelations>,
        entries: Vec<AuditEntry>,
        failure: StepError,
    ) -> StepError {
        match self.save(tags, customer, entries).await {
            Ok(()) => failure,
            Err(e) => e,
        }
    }

    /// Writes the member's marks and mall base, the customer's relation bases and the audit
    /// entries in one transaction (at most 100 writes: entries beyond are dropped with a log
    /// line rather than failing the job). Whatever this job did on the sides is recorded even
    /// when the operator changed the member's marks meanwhile (the admin API takes no member
    /// lock): the bases are carried onto the fresh copy (`carry_onto`), since a base lost
    /// here would make this job's own writes look like the sides' changes to the next job.
    async fn save(
        &self,
        tags: &mut MemberTags,
        customer: Option<CustomerRelations>,
        mut entries: Vec<AuditEntry>,
    ) -> Step<()> {
        if entries.len() > 88 {
            tracing::warn!(
                dropped = entries.len() - 88,
                "too many audit entries for one transaction"
            );
            entries.truncate(88);
        }
        // A bulk run's changes are audited as its own.
        if let Some(cause) = &self.hint.cause {
            for e in entries.iter_mut() {
                e.origin = cause.clone();
            }
        }
        let mut customer = customer;
        for _ in 0..3 {
            let stored_tags = self
                .app
                .store
                .get_member_tags(&tags.tenant, &tags.member_id)
                .await?;
            if let Some(fresh) = stored_tags.as_ref().filter(|s| s.version != tags.version) {
                *tags = carry_onto(fresh, tags);
            }
            let mut writes = Vec::new();
            let tags_changed = stored_tags
                .as_ref()
                .is_none_or(|s| s.marks != tags.marks || s.mall_base != tags.mall_base);
            if tags_changed {
                writes.push(Write::MemberTags(tags.clone()));
            }
            if let Some(c) = customer.as_mut() {
                let stored = self
                    .app
                    .store
                    .get_customer(&c.tenant, &c.external_userid)
                    .await?;
                // Under the member's lock nobody else writes the relations' bases; a newer
                // copy only moves the version on.
                c.version = stored.as_ref().map_or(0, |s| s.version);
                if stored
                    .as_ref()
                    .is_none_or(|s| s.relations != c.relations || s.marking != c.marking)
                {
                    c.updated_at = self.app.clock.now();
                    writes.push(Write::Customer(c.clone()));
                }
            }
            if writes.is_empty() && entries.is_empty() {
                return Ok(());
            }
            writes.extend(entries.iter().cloned().map(Write::Audit));
            match self.app.store.transact(writes).await {
                Ok(()) => {
                    if tags_changed {
                        tags.version += 1;
                    }
                    return Ok(());
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StepError::retry(
            format!(
                "member {} kept changing while saving; again",
                tags.member_id
            ),
            Some(std::time::Duration::ZERO),
        ))
    }
}

fn present(m: &MemberTags) -> Vec<&HubTagId> {
    m.marks
        .iter()
        .filter(|(_, x)| x.present)
        .map(|(t, _)| t)
        .collect()
}
