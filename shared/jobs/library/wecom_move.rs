//! A tag moving between groups in WeCom, which has no move: every relation that carried the
//! old tag is re-marked with the new one under its member's lock, a change made to the old
//! tag meanwhile is carried over, and member jobs are queued where someone else's change may
//! have no event on its way.

use super::{Cx, Step, StepError, StepFailure};
use crate::domain::*;
use crate::jobs::{is_synced_wecom_tag, lock, member_lock};
use crate::ports::Write;
use crate::wecom::classify::Refusal;
use crate::wecom::client::EditTarget;

impl Cx<'_> {
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
    pub(super) async fn remark(
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
    pub(super) async fn remark_customer(
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
                        .filter(|x| is_synced_wecom_tag(x.kind))
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
                    Err(e) if e.refusal() == Some(Refusal::NoRelation) => {
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

    /// A move made a new WeCom tag from what this job read of the old one (`seen`); before the
    /// old one goes, a change someone made to it since (a console rename or reorder, whose
    /// callback's job would otherwise find only the new tag as this job made it) is carried
    /// onto the new one. The base stays what this job created, so the change remains WeCom's
    /// for the tag's next job. `Ok(true)`: something was carried. A change the new group
    /// cannot take (its name held there) is left behind, with a log line.
    pub(super) async fn carry_onto_moved(
        &mut self,
        old: &WecomTagId,
        new: &WecomTagId,
        seen: Option<&TagSnapshot>,
    ) -> Result<bool, StepFailure> {
        let Some(seen) = seen else { return Ok(false) };
        self.wecom_lib = None;
        let Some((_, now)) = self.wecom_tag_info(Some(old.as_str())).await? else {
            return Ok(false);
        };
        let name = (now.name != seen.name).then_some(now.name.as_str());
        let order = (now.order != seen.order).then_some(now.order);
        if name.is_none() && order.is_none() {
            return Ok(false);
        }
        match self
            .wecom_edit_call(EditTarget::Tag(new), name, order)
            .await?
        {
            Ok(()) => Ok(true),
            Err(e) if e.retryable() => Err(StepError::from(e).into()),
            Err(e) => {
                tracing::warn!(tag = %new, error = %e, "a change made to a moving tag meanwhile could not follow it");
                Ok(false)
            }
        }
    }

    /// After a move's id switch: relations a member job tagged with the old WeCom id while
    /// the move ran (after its re-mark, before the old tag's deletion took it off them again)
    /// get their member's job. A member job that tags later sees the new id, and one that
    /// saved its work after this look notices the switch itself and looks again. `changed`:
    /// members whose relations the re-mark found changed by someone else (see
    /// [`Cx::remark`]), whose change may have no event on its way.
    pub(super) async fn remember_moved(
        &self,
        old: &WecomTagId,
        changed: Vec<MemberId>,
    ) -> Step<()> {
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
            self.queue(kinds, "member jobs").await?;
        }
        Ok(())
    }
}
