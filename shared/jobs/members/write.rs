//! What a member job writes after its merge: one `mark_tag` per relation that differs, one
//! mall write, and the saved result (marks, bases, audit) in one transaction.
//!
//! The legs answer `Step<Result<(), StepError>>`: the outer error fails the job as it stands
//! (nothing was sent yet); the inner one is a side's call failing after earlier calls of this
//! job went through, whose work [`Cx::stop`] saves before the failure becomes the outcome.

use super::Cx;
use super::read::Read;
use crate::app::App;
use crate::domain::*;
use crate::jobs::{Step, StepError, audit};
use crate::ports::Write;
use crate::sync::members::{MallMemberTags, MarkTag, MemberMerge, base_after_write, carry_onto};
use crate::wecom::classify::Refusal;
use serde_json::json;
use std::collections::BTreeSet;

/// One `mark_tag` this job is about to send: the relation's planned change in WeCom ids, and
/// what was read and merged of the relation.
pub(super) struct MarkCall<'a> {
    mark: &'a MarkTag,
    add: Vec<String>,
    remove: Vec<String>,
    current: BTreeSet<String>,
}

fn wecom_ids<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<WecomTagId> {
    ids.into_iter()
        .cloned()
        .map(WecomTagId::new_unchecked)
        .collect()
}

impl Cx<'_> {
    /// WeCom: one `mark_tag` per relation that differs from the merge's desired set; `rel`
    /// ends with each relation's base as tagsync knows it.
    pub(super) async fn write_wecom(
        &mut self,
        read: &Read,
        merged: &MemberMerge,
        c: &ExternalUserId,
        rel: &mut CustomerRelations,
        before: Option<&CustomerRelations>,
        entries: &mut Vec<AuditEntry>,
    ) -> Step<Result<(), StepError>> {
        for userid in read.shown.keys() {
            // Relations already showing the desired set: their base is what was read.
            if merged.relation_bases.contains_key(userid) {
                let base = wecom_ids(&read.merged_read(userid));
                rel.relations
                    .insert(userid.clone(), base.into_iter().collect());
            }
        }
        let mut marks = Vec::new();
        for mark in &merged.plan.relations {
            let add = self.side_ids(Side::Wecom, &mark.add).await?;
            let remove = self.side_ids(Side::Wecom, &mark.remove).await?;
            let current = read.merged_read(&mark.userid);
            if add.is_empty() && remove.is_empty() {
                let base = wecom_ids(&current);
                rel.relations
                    .insert(mark.userid.clone(), base.into_iter().collect());
                continue;
            }
            marks.push(MarkCall {
                mark,
                add,
                remove,
                current,
            });
        }
        self.marking(rel, before, &marks).await?;
        let creds = App::wecom_credentials(self.tenant);
        for call in marks {
            let MarkCall {
                mark,
                add,
                remove,
                current,
            } = call;
            let (add_w, remove_w) = (wecom_ids(&add), wecom_ids(&remove));
            let sent = (self.app.wecom).mark_tag(&creds, &mark.userid, c, &add_w, &remove_w);
            match sent.await {
                Ok(()) => {}
                Err(e) if e.refusal() == Some(Refusal::NoRelation) => {
                    rel.relations.remove(&mark.userid);
                    rel.marking.remove(&mark.userid);
                    continue;
                }
                // A tag deleted in WeCom meanwhile: its tag job removes it from the hub,
                // after which this member's next try leaves it out.
                Err(e) if e.refusal() == Some(Refusal::UnknownId) => {
                    let why = format!("{e}; a tag was deleted meanwhile");
                    return Ok(Err(StepError::wait(why)));
                }
                Err(e) => return Ok(Err(e.into())),
            }
            // `mark_tag` answers nothing about the relation; what it holds as far as
            // tagsync knows is what was read plus this call (a change someone made there
            // meanwhile stays a difference from the base; see `base_after_write`).
            let after = base_after_write(&current, &add, &remove);
            self.applied.relations_marked += 1;
            self.applied.wecom_added += add.iter().filter(|i| !current.contains(*i)).count() as u64;
            self.applied.wecom_removed +=
                remove.iter().filter(|i| current.contains(*i)).count() as u64;
            entries.push(audit(
                &self.tenant.id,
                self.now,
                Actor::Wecom,
                "relation.tags_changed",
                format!("relation:{}/{c}", mark.userid),
                Some(json!(current)),
                Some(json!(after)),
                self.hint.origin,
            ));
            let base = wecom_ids(&after);
            rel.relations
                .insert(mark.userid.clone(), base.into_iter().collect());
            rel.marking.remove(&mark.userid);
        }
        Ok(Ok(()))
    }

    /// The mall: one call (split at 100 ids by the client, or a seat in the job's batch);
    /// sets the member's mall base.
    pub(super) async fn write_mall(
        &mut self,
        member: &MemberId,
        read: &Read,
        change: &MallMemberTags,
        tags: &mut MemberTags,
        entries: &mut Vec<AuditEntry>,
    ) -> Step<Result<(), StepError>> {
        let add = self.side_ids(Side::Mall, &change.add).await?;
        let remove = self.side_ids(Side::Mall, &change.remove).await?;
        if add.is_empty() && remove.is_empty() {
            tags.mall_base = read.mall_side.tags.clone();
            return Ok(Ok(()));
        }
        let typed = |ids: &[String]| -> Vec<MallTagId> {
            ids.iter().cloned().map(MallTagId::new_unchecked).collect()
        };
        let (add_m, remove_m) = (typed(&add), typed(&remove));
        let written = match self.seat {
            Some(seat) => seat.write(member, &add_m, &remove_m).await,
            None => {
                let ep = App::mall_endpoint(self.tenant);
                let key = crate::jobs::mall_writes::member_key(&self.job.id, member);
                let mall = &self.app.mall;
                mall.change_member_tags(&ep, &key, member, &add_m, &remove_m)
                    .await
            }
        };
        let answer = match written {
            Ok(answer) => answer,
            Err(e) if e.unknown_ids.is_empty() => return Ok(Err(e.into())),
            Err(e) => {
                let why = format!("{e}; a tag was deleted meanwhile");
                return Ok(Err(StepError::wait(why)));
            }
        };
        // The answer lists the member's tags after the call, which may include a change the
        // mall's operator made since this job read the member (issue 12 §1): the base is what
        // was read plus what this call did, so such a change stays the mall's, and its
        // webhook's job carries it everywhere.
        let mall_ids = &read.mall_ids;
        let read_ids: BTreeSet<String> = mall_ids.iter().cloned().collect();
        let after_ids = base_after_write(&read_ids, &add, &remove);
        // Its webhook should be on its way; queueing the member again costs one read if it
        // is, and carries the change if it never comes.
        let answered: BTreeSet<String> = answer.tag_ids.iter().map(|i| i.to_string()).collect();
        self.follow_up |= answered != after_ids;
        self.applied.mall_added += add.iter().filter(|i| !mall_ids.contains(*i)).count() as u64;
        self.applied.mall_removed += remove.iter().filter(|i| mall_ids.contains(*i)).count() as u64;
        let added = self.hub_ids(Side::Mall, &add).await?;
        let removed = self.hub_ids(Side::Mall, &remove).await?;
        tags.mall_base = base_after_write(&read.mall_side.tags, &added, &removed);
        entries.push(audit(
            &self.tenant.id,
            self.now,
            Actor::Mall,
            "member.tags_changed",
            format!("member:{member}"),
            Some(json!(mall_ids)),
            Some(json!(after_ids)),
            self.hint.origin,
        ));
        Ok(Ok(()))
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
        marks: &[MarkCall<'_>],
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
            .map(|m| {
                let marking = Marking {
                    add: w(&m.add),
                    remove: w(&m.remove),
                };
                (m.mark.userid.clone(), marking)
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

    /// A tag this job put on relations by its WeCom id may have moved meanwhile (WeCom: a new
    /// tag in the new group, the relations the move knew of re-marked, the old id deleted —
    /// and with it what this job put on). Looked at after this job's work is saved: the move
    /// either saw that work (and queued this member again) or switched ids before this look.
    pub(super) async fn moved_meanwhile(&self) -> Step<()> {
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
    pub(super) async fn stop(
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
    pub(super) async fn save(
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
