//! What a member job reads before its merge: the mall member, its binding, the hub's marks
//! and the customer's relations in WeCom (or what a reconciliation page already read of them),
//! each side as a [`SideTags`] of hub tag ids with its base.

use super::Cx;
use crate::app::App;
use crate::domain::*;
use crate::jobs::intake::bind;
use crate::jobs::{Step, is_synced_wecom_tag};
use crate::mall::client::MallMember;
use crate::sync::members::{SideTags, relation_base};
use std::collections::{BTreeMap, BTreeSet};

/// What the job read of the member's sides, as the merge takes it.
pub(super) struct Read {
    /// The mall member's tags as read (mall ids).
    pub mall_ids: Vec<String>,
    /// The WeCom customer the member is bound to, if any.
    pub customer: Option<ExternalUserId>,
    /// The hub's marks, less those of deleted tags.
    pub hub: MemberTags,
    pub mall_side: SideTags,
    /// The customer's relations as WeCom shows them (WeCom ids).
    pub shown: BTreeMap<WecomUserId, Vec<String>>,
    pub stored_customer: Option<CustomerRelations>,
    pub relations: BTreeMap<WecomUserId, SideTags>,
    /// Per relation, the ids waited for: read but not merged, so kept out of the relation's
    /// new base (else the next job would find them in sync and never carry them).
    pub unmerged: BTreeMap<WecomUserId, BTreeSet<String>>,
    /// Per relation, its base as tagsync knows it (a marking left in flight settled).
    pub bases: BTreeMap<WecomUserId, BTreeSet<String>>,
    /// Tags of scoped groups kept from the mall (docs/scoped-groups.md).
    pub kept: BTreeSet<HubTagId>,
}

impl Read {
    /// What was read and merged of a relation (its ids less those waited for).
    pub fn merged_read(&self, userid: &WecomUserId) -> BTreeSet<String> {
        let skip = self.unmerged.get(userid);
        self.shown
            .get(userid)
            .into_iter()
            .flatten()
            .filter(|i| skip.is_none_or(|s| !s.contains(*i)))
            .cloned()
            .collect()
    }

    /// The customer's relations as this job starts from them: those WeCom no longer shows are
    /// gone (deleted, transferred), and a marking left in flight (its process died) is settled
    /// into the bases; this job writes its own.
    pub fn settled_relations(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Option<CustomerRelations> {
        let c = self.customer.as_ref()?;
        let mut r = self.stored_customer.clone().unwrap_or(CustomerRelations {
            tenant: tenant.clone(),
            external_userid: c.clone(),
            relations: BTreeMap::new(),
            marking: BTreeMap::new(),
            updated_at: now,
            version: 0,
        });
        r.relations.retain(|u, _| self.shown.contains_key(u));
        for (u, base) in &self.bases {
            r.relations.insert(
                u.clone(),
                base.iter()
                    .cloned()
                    .map(WecomTagId::new_unchecked)
                    .collect(),
            );
        }
        r.marking.clear();
        Some(r)
    }
}

impl Cx<'_> {
    /// Reads the member's sides; `None`: the mall has no such member (nothing to sync).
    pub(super) async fn read(&mut self, member: &MemberId) -> Step<Option<Read>> {
        let Some(mall_member) = self.mall_member(member).await? else {
            tracing::info!(%member, "the mall has no such member; nothing to sync");
            return Ok(None);
        };
        let customer = self.bound_customer(member, &mall_member).await?;
        let hub = self.hub_marks(member).await?;
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
            at: self.hint.mall_at.unwrap_or(self.now),
        };
        let (shown, stored_customer) = self.shown_relations(customer.as_ref()).await?;
        let mut read = Read {
            mall_ids,
            customer,
            hub,
            mall_side,
            shown,
            stored_customer,
            relations: BTreeMap::new(),
            unmerged: BTreeMap::new(),
            bases: BTreeMap::new(),
            kept: BTreeSet::new(),
        };
        self.relation_sides(&mut read).await?;
        self.keep_from_mall(&mut read).await?;
        Ok(Some(read))
    }

    /// The mall member as the view has it, as the hub knows it, or else as the mall answers.
    async fn mall_member(&mut self, member: &MemberId) -> Step<Option<MallMember>> {
        if let Some(m) = self.view.mall.take() {
            return Ok(Some(m));
        }
        if let Some(m) = self.as_hub_knows(member).await? {
            return Ok(Some(m));
        }
        let ep = App::mall_endpoint(self.tenant);
        Ok(self.app.mall.get_member(&ep, member).await?)
    }

    /// The customer the member is bound to; a member the mall shows bound that the hub has
    /// not bound yet is bound now.
    async fn bound_customer(
        &self,
        member: &MemberId,
        mall_member: &MallMember,
    ) -> Step<Option<ExternalUserId>> {
        let (app, t) = (self.app, &self.tenant.id);
        let mut binding = app.store.get_binding(t, member).await?;
        if binding
            .as_ref()
            .and_then(|b| b.external_userid.as_ref())
            .is_none()
            && let Some(customer) = &mall_member.external_userid
        {
            let unionid = mall_member.unionid.clone();
            bind(app, t, member, Some(customer.clone()), unionid).await?;
            binding = app.store.get_binding(t, member).await?;
        }
        Ok(binding.and_then(|b| b.external_userid))
    }

    /// The hub's marks of the member. A deleted tag leaves the member with it (WeCom and the
    /// mall drop it silently).
    async fn hub_marks(&mut self, member: &MemberId) -> Step<MemberTags> {
        let t = &self.tenant.id;
        let stored = self.app.store.get_member_tags(t, member).await?;
        let mut hub = stored.unwrap_or_else(|| MemberTags::empty(t, member));
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
        Ok(hub)
    }

    /// The customer's relations as WeCom shows them (WeCom ids), from the view when it is
    /// still fresh, else read; and the customer as stored.
    async fn shown_relations(
        &mut self,
        customer: Option<&ExternalUserId>,
    ) -> Step<(
        BTreeMap<WecomUserId, Vec<String>>,
        Option<CustomerRelations>,
    )> {
        let mut shown: BTreeMap<WecomUserId, Vec<String>> = BTreeMap::new();
        let Some(c) = customer else {
            return Ok((shown, None));
        };
        let stored_customer = self.app.store.get_customer(&self.tenant.id, c).await?;
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
        Ok((shown, stored_customer))
    }

    /// Each shown relation as a [`SideTags`] of hub ids over its base.
    async fn relation_sides(&mut self, read: &mut Read) -> Step<()> {
        for (userid, ids) in &read.shown {
            let showing: BTreeSet<String> = ids.iter().cloned().collect();
            let stored = read.stored_customer.as_ref();
            let base_ids: Vec<String> = relation_base(stored, userid, &showing)
                .into_iter()
                .collect();
            read.bases
                .insert(userid.clone(), base_ids.iter().cloned().collect());
            // A tag just put on a relation that the hub does not know yet is most likely a new
            // WeCom tag whose own job has not run: wait for it rather than miss it. (Tags the
            // relation already had are left alone: they may be ones tagsync does not manage.)
            if stored.is_some_and(|c| c.relations.contains_key(userid)) {
                for id in ids.iter().filter(|i| !base_ids.contains(i)) {
                    if self.hub_of(Side::Wecom, id).await?.is_none() {
                        self.waiting.insert(format!("WeCom tag {id}"));
                        read.unmerged
                            .entry(userid.clone())
                            .or_default()
                            .insert(id.clone());
                    }
                }
            }
            let side = SideTags {
                tags: self.hub_ids(Side::Wecom, ids).await?,
                base: self.hub_ids(Side::Wecom, &base_ids).await?,
                at: self.now,
            };
            read.relations.insert(userid.clone(), side);
        }
        Ok(())
    }

    /// Tags of scoped groups kept from the mall: the mall has no say about them (a base from
    /// before the group left the mall must not read as the mall taking them off), and its base
    /// never claims them.
    async fn keep_from_mall(&mut self, read: &mut Read) -> Step<()> {
        let mut candidates: BTreeSet<HubTagId> = read.hub.marks.keys().cloned().collect();
        for r in read.relations.values() {
            candidates.extend(r.tags.iter().chain(&r.base).cloned());
        }
        for tag in candidates {
            if self.kept_from_mall(&tag).await? {
                read.kept.insert(tag);
            }
        }
        for tag in &read.kept {
            read.mall_side.tags.remove(tag);
            read.mall_side.base.remove(tag);
        }
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
                        .filter(|x| is_synced_wecom_tag(x.kind))
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
}
