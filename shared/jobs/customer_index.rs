//! Keeping the customer index current (issue 15): the jobs that read a customer anyway fold
//! what they read into its index entry ([`crate::domain::CustomerEntry`]) — a member job
//! after its writes (the relations as tagsync now knows them), a page of the members
//! reconciliation (every customer it lists, bound or not), a contact event of a customer no
//! member is bound to (the read that looked for its member). No extra WeCom call is made for
//! the index. WeCom tag ids map to hub ids through the id map; tags the hub does not manage
//! are left out.

use crate::app::App;
use crate::domain::*;
use crate::ports::StoreResult;
use crate::wecom::client::ContactDetail;
use std::collections::{BTreeMap, BTreeSet};

/// WeCom's tag `type` of a personal tag (§1.5): names only, never written by the API.
const PERSONAL_TAG: i64 = 2;

/// Folds `read` into the customer's entry, retrying when another job wrote it meanwhile.
pub async fn record(
    app: &App,
    t: &TenantId,
    customer: &ExternalUserId,
    read: &CustomerRead,
) -> StoreResult<()> {
    record_by(app, t, customer, |_| read.clone()).await
}

/// Files a read taken at `read_at` after which tagsync itself put `applied` (hub ids) on
/// the customer's relation with `userid`. If the entry was filed again since the read began
/// (an event's job read the customer after a salesperson's change), the older read is not put
/// back over it: only what tagsync applied is added to that relation.
pub async fn record_after_write(
    app: &App,
    t: &TenantId,
    customer: &ExternalUserId,
    read: &CustomerRead,
    read_at: Timestamp,
    userid: &WecomUserId,
    applied: &BTreeSet<HubTagId>,
) -> StoreResult<()> {
    record_by(app, t, customer, |entry| {
        if entry.version == 0 || entry.updated_at < read_at {
            return read.clone();
        }
        let relations = entry
            .relations
            .get(userid)
            .map(|known| RelationRead {
                userid: userid.clone(),
                state: None,
                added_at: None,
                tag_ids: known.tag_ids.union(applied).cloned().collect(),
                personal_tags: None,
            })
            .into_iter()
            .collect();
        CustomerRead {
            name: None,
            member: None,
            relations,
            complete: false,
        }
    })
    .await
}

async fn record_by(
    app: &App,
    t: &TenantId,
    customer: &ExternalUserId,
    read_for: impl Fn(&CustomerEntry) -> CustomerRead,
) -> StoreResult<()> {
    let mut last = None;
    for _ in 0..5 {
        let mut entry = app
            .store
            .get_customer_entry(t, customer)
            .await?
            .unwrap_or_else(|| CustomerEntry::new(t.clone(), customer.clone(), app.clock.now()));
        if !entry.absorb(&read_for(&entry)) && entry.version != 0 {
            return Ok(());
        }
        entry.updated_at = app.clock.now();
        match app.store.put_customer_entry(&mut entry).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| crate::ports::StoreError::Conflict {
        key: format!("customer index {t}/{customer}"),
        reason: "kept changing".into(),
    }))
}

/// Hub ids of WeCom tag ids (unknown ones left out).
pub async fn hub_tags(
    app: &App,
    t: &TenantId,
    wecom_ids: Vec<String>,
) -> StoreResult<BTreeSet<HubTagId>> {
    let mut out = BTreeSet::new();
    for id in wecom_ids {
        if let Some(h) = app
            .store
            .lookup_link(t, Side::Wecom, EntityKind::Tag, &id)
            .await?
        {
            out.insert(HubTagId::new_unchecked(h));
        }
    }
    Ok(out)
}

/// What `externalcontact/get` showed of a customer: every relation with its personal tags.
/// `relations` (WeCom ids per relation) overrides the tags the read showed, when a job
/// changed them since (what tagsync knows them to be after its own writes).
pub async fn read_of_detail(
    app: &App,
    t: &TenantId,
    detail: &ContactDetail,
    member: Option<Option<MemberId>>,
    relations: Option<&BTreeMap<WecomUserId, BTreeSet<WecomTagId>>>,
) -> StoreResult<CustomerRead> {
    let mut read = CustomerRead {
        name: Some(detail.external_contact.name.clone()),
        member,
        relations: Vec::new(),
        complete: true,
    };
    for f in &detail.follow_user {
        let ids: Vec<String> = match relations.and_then(|r| r.get(&f.userid)) {
            Some(known) => known.iter().map(ToString::to_string).collect(),
            None => f
                .tags
                .iter()
                .filter(|x| x.kind != PERSONAL_TAG)
                .filter_map(|x| x.tag_id.as_ref().map(ToString::to_string))
                .collect(),
        };
        let tag_ids = hub_tags(app, t, ids).await?;
        read.relations.push(RelationRead {
            userid: f.userid.clone(),
            state: f.state.clone().filter(|s| !s.is_empty()),
            added_at: (f.createtime > 0).then(|| Timestamp::from_millis(f.createtime * 1000)),
            tag_ids,
            personal_tags: Some(
                f.tags
                    .iter()
                    .filter(|x| x.kind == PERSONAL_TAG)
                    .map(|x| x.tag_name.clone())
                    .collect(),
            ),
        });
    }
    Ok(read)
}

/// A member job's view of its customer once saved: the relations as tagsync knows them
/// (`relations`, WeCom ids), with what the job's read showed of the rest when it read the
/// customer itself (`detail`; a reconciliation page hands the job its relations instead).
pub async fn after_member_job(
    app: &App,
    t: &TenantId,
    customer: &ExternalUserId,
    member: &MemberId,
    relations: &BTreeMap<WecomUserId, BTreeSet<WecomTagId>>,
    detail: Option<&ContactDetail>,
) -> StoreResult<()> {
    let read = match detail {
        Some(d) => read_of_detail(app, t, d, Some(Some(member.clone())), Some(relations)).await?,
        None => {
            let mut read = CustomerRead {
                name: None,
                member: Some(Some(member.clone())),
                relations: Vec::new(),
                complete: true,
            };
            for (userid, ids) in relations {
                read.relations.push(RelationRead {
                    userid: userid.clone(),
                    state: None,
                    added_at: None,
                    tag_ids: hub_tags(app, t, ids.iter().map(ToString::to_string).collect())
                        .await?,
                    personal_tags: None,
                });
            }
            read
        }
    };
    record(app, t, customer, &read).await
}
