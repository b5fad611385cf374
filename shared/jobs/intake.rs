//! Intake: a verified, deduplicated inbound event becomes "bring entity K up to date" jobs.
//!
//! Events carry ids (WeCom: nothing else); the jobs read the details. An id the hub has never
//! seen gets a fresh hub id here and travels in the job's [`Hint`]; the job that first links
//! it wins, and a second job for the same side id finds the link and adopts it.
//!
//! A mall webhook whose `origin_request_id` is one of tagsync's own keys is the echo of a
//! write tagsync made: it changes nothing and queues nothing.

use super::worker::{Outcome, record_once};
use super::{Step, StepError, enqueue};
use crate::app::App;
use crate::domain::*;
use crate::mall::client::{IdempotencyKey, MemberLookup};
use crate::mall::webhook::{MallEvent, parse_event};
use crate::ports::Write;

pub async fn run(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    event: &InboundEvent,
    repeat: bool,
) -> Outcome {
    if is_echo(event) {
        return Outcome::Done;
    }
    if !repeat && let retry @ Outcome::RetryAfter { .. } = record(app, tenant, job, event).await {
        return retry;
    }
    // A customer arriving through a channel code fires its channel rules.
    if let InboundEvent::WecomContact {
        change,
        user_id,
        external_user_id,
        state: Some(state),
        create_time,
        ..
    } = event
        && matches!(
            change.as_str(),
            "add_external_contact" | "add_half_external_contact"
        )
        && !state.is_empty()
        && let Err(e) = crate::jobs::rules::channel(
            app,
            tenant,
            user_id,
            external_user_id,
            state,
            change,
            *create_time,
        )
        .await
    {
        return e.into_outcome();
    }
    let kinds = match jobs_for(app, tenant, event).await {
        Ok(k) => k,
        Err(e) => return e.into_outcome(),
    };
    match enqueue(app, tenant, kinds).await {
        Ok(n) => {
            tracing::debug!(job_id = %job.id, queued = n, repeat, "event turned into sync jobs");
            Outcome::Done
        }
        Err(e) => Outcome::retry(format!("queueing sync jobs: {e}")),
    }
}

/// The operator's trace of what the side reported (`event.received`), once per event.
async fn record(app: &App, tenant: &Tenant, job: &Job, event: &InboundEvent) -> Outcome {
    // First the operator's trace of what the side reported, once per event (a redelivery
    // finds it written and goes on to queue the jobs, which is harmless to repeat).
    let (side, entity) = match event {
        InboundEvent::WecomTag { tag_type, id, .. } => (
            Actor::Wecom,
            format!(
                "{}:{}",
                tag_type.as_deref().unwrap_or("tag_group_order"),
                id.as_deref().unwrap_or("")
            ),
        ),
        InboundEvent::WecomContact {
            user_id,
            external_user_id,
            ..
        } => (
            Actor::Wecom,
            format!("relation:{user_id}/{external_user_id}"),
        ),
        InboundEvent::Mall {
            event_type,
            event_id,
            ..
        } => (Actor::Mall, format!("{event_type}:{event_id}")),
        InboundEvent::WecomDirectory { change, id, .. } => (
            Actor::Wecom,
            format!("directory:{change}:{}", id.as_deref().unwrap_or("")),
        ),
    };
    let entry = AuditEntry {
        tenant: tenant.id.clone(),
        at: app.clock.now(),
        side,
        action: "event.received".into(),
        entity,
        before: None,
        after: serde_json::to_value(event).ok(),
        origin: side.as_str().into(),
    };
    record_once(app, job, entry).await
}

/// A mall webhook caused by one of tagsync's own writes.
fn is_echo(event: &InboundEvent) -> bool {
    matches!(event, InboundEvent::Mall { origin_request_id: Some(o), .. } if IdempotencyKey::is_own(o))
}

async fn jobs_for(app: &App, tenant: &Tenant, event: &InboundEvent) -> Step<Vec<JobKind>> {
    match event {
        // Rule-group (strategy) tags sync like corp tags: the jobs read both libraries and
        // their hub groups carry the rule group as their scope (docs/scoped-groups.md).
        InboundEvent::WecomTag {
            change,
            id,
            tag_type,
            ..
        } => {
            wecom_tag(
                app,
                tenant,
                change,
                id.as_deref().unwrap_or(""),
                tag_type.as_deref(),
            )
            .await
        }
        InboundEvent::WecomContact {
            external_user_id, ..
        } => Ok(member_of_customer(app, tenant, external_user_id)
            .await?
            .map(|member| JobKind::SyncMember {
                member,
                hint: Hint::from(Actor::Wecom),
            })
            .into_iter()
            .collect()),
        InboundEvent::Mall {
            occurred_at, body, ..
        } => mall(app, tenant, *occurred_at, body).await,
        // The event says only what changed: the whole directory is read again, here. A
        // department change may change the expanded range of scopes with sub-departments.
        InboundEvent::WecomDirectory { change, .. } => {
            crate::jobs::directory::refresh(app, tenant).await?;
            if change.ends_with("_party") {
                crate::jobs::directory::expanded_scopes(app, &tenant.id).await
            } else {
                Ok(Vec::new())
            }
        }
    }
}

async fn hub_id(
    app: &App,
    t: &TenantId,
    side: Side,
    kind: EntityKind,
    id: &str,
) -> Step<Option<String>> {
    Ok(app.store.lookup_link(t, side, kind, id).await?)
}

async fn wecom_tag(
    app: &App,
    tenant: &Tenant,
    change: &str,
    id: &str,
    tag_type: Option<&str>,
) -> Step<Vec<JobKind>> {
    let t = &tenant.id;
    let hint = |wecom_deleted: bool| Hint {
        wecom_id: (!id.is_empty()).then(|| id.to_owned()),
        wecom_deleted,
        ..Hint::from(Actor::Wecom)
    };
    Ok(match (change, tag_type) {
        ("shuffle", _) if id.is_empty() => app
            .store
            .list_groups(t)
            .await?
            .into_iter()
            .filter(|g| g.deleted_at.is_none())
            .map(|g| JobKind::SyncGroup {
                group: g.id,
                hint: Hint::from(Actor::Wecom),
            })
            .collect(),
        ("shuffle", _) => {
            let Some(group) = hub_id(app, t, Side::Wecom, EntityKind::Group, id).await? else {
                return Ok(Vec::new());
            };
            app.store
                .list_tags(t)
                .await?
                .into_iter()
                .filter(|x| x.group_id.as_str() == group && x.deleted_at.is_none())
                .map(|x| JobKind::SyncTag {
                    tag: x.id,
                    hint: Hint::from(Actor::Wecom),
                })
                .collect()
        }
        // A deletion of an id the hub does not know yet still gets its job, as for the mall
        // (see `mall` below): a move's job may have just created that tag in WeCom and not yet
        // switched the id map when a person deleted it in the console (property test, seed
        // 11046882575451475142). WeCom sends no callback for API writes, so this costs no
        // job for tagsync's own deletions.
        (_, Some("tag_group")) => {
            let known = hub_id(app, t, Side::Wecom, EntityKind::Group, id).await?;
            vec![JobKind::SyncGroup {
                group: HubGroupId::new_unchecked(known.unwrap_or_else(new_ordered_id)),
                hint: hint(change == "delete"),
            }]
        }
        (_, Some("tag")) => {
            let known = hub_id(app, t, Side::Wecom, EntityKind::Tag, id).await?;
            vec![JobKind::SyncTag {
                tag: HubTagId::new_unchecked(known.unwrap_or_else(new_ordered_id)),
                hint: hint(false),
            }]
        }
        _ => {
            tracing::info!(
                change,
                ?tag_type,
                "WeCom tag event of a kind tagsync ignores"
            );
            Vec::new()
        }
    })
}

async fn mall(
    app: &App,
    tenant: &Tenant,
    occurred_at: Timestamp,
    body: &serde_json::Value,
) -> Step<Vec<JobKind>> {
    let t = &tenant.id;
    let raw = serde_json::to_vec(body).map_err(|e| StepError::park(e.to_string()))?;
    let hook = parse_event(&raw)
        .map_err(|e| StepError::park(format!("stored mall event no longer parses: {e}")))?;
    let hint = |mall_id: &str| Hint {
        mall_id: Some(mall_id.to_owned()),
        mall_at: Some(occurred_at),
        ..Hint::from(Actor::Mall)
    };
    let group = |known: Option<String>, mall_id: &str| JobKind::SyncGroup {
        group: HubGroupId::new_unchecked(known.unwrap_or_else(new_ordered_id)),
        hint: hint(mall_id),
    };
    let tag = |known: Option<String>, mall_id: &str| JobKind::SyncTag {
        tag: HubTagId::new_unchecked(known.unwrap_or_else(new_ordered_id)),
        hint: hint(mall_id),
    };
    Ok(match hook.event {
        MallEvent::TagGroupCreated { group: g } | MallEvent::TagGroupUpdated { group: g } => {
            let known = hub_id(app, t, Side::Mall, EntityKind::Group, g.id.as_str()).await?;
            vec![group(known, g.id.as_str())]
        }
        // A deletion of an object the id map does not know yet still gets its job: the job
        // that links it (the create's, or its group's) may be running now, and this one,
        // queued behind it on the library lock, finds it by the mall id and deletes it.
        // Dropped here, the deletion was lost: the hub kept a tag with a mall id the mall no
        // longer had (property test, seed 3056573132117036851). For an object nobody links
        // the job reads the mall once and ends.
        MallEvent::TagGroupDeleted { group_id } => {
            let known = hub_id(app, t, Side::Mall, EntityKind::Group, group_id.as_str()).await?;
            vec![group(known, group_id.as_str())]
        }
        MallEvent::TagCreated { tag: x } | MallEvent::TagUpdated { tag: x } => {
            let known = hub_id(app, t, Side::Mall, EntityKind::Tag, x.id.as_str()).await?;
            vec![tag(known, x.id.as_str())]
        }
        MallEvent::TagDeleted { tag_id, .. } => {
            let known = hub_id(app, t, Side::Mall, EntityKind::Tag, tag_id.as_str()).await?;
            vec![tag(known, tag_id.as_str())]
        }
        MallEvent::MemberTagsChanged { member_id, .. } => vec![JobKind::SyncMember {
            member: member_id,
            hint: Hint {
                mall_at: Some(occurred_at),
                ..Hint::from(Actor::Mall)
            },
        }],
        MallEvent::MemberBound {
            member_id,
            unionid,
            external_userid,
            ..
        } => {
            bind(app, t, &member_id, external_userid, unionid).await?;
            vec![JobKind::SyncMember {
                member: member_id,
                hint: Hint {
                    mall_at: Some(occurred_at),
                    ..Hint::from(Actor::Mall)
                },
            }]
        }
        MallEvent::Unknown { type_name } => {
            tracing::info!(type_name, "mall event of a type tagsync ignores");
            Vec::new()
        }
    })
}

/// Records (or updates) the binding of a mall member to a WeCom customer.
pub async fn bind(
    app: &App,
    t: &TenantId,
    member: &MemberId,
    external_userid: Option<ExternalUserId>,
    unionid: Option<String>,
) -> Step<()> {
    for _ in 0..5 {
        let existing = app.store.get_binding(t, member).await?;
        let mut b = existing.clone().unwrap_or(MemberBinding {
            tenant: t.clone(),
            member_id: member.clone(),
            external_userid: None,
            unionid: None,
            bound_at: app.clock.now(),
            version: 0,
        });
        if external_userid.is_some() {
            b.external_userid = external_userid.clone();
        }
        if unionid.is_some() {
            b.unionid = unionid.clone();
        }
        if existing.as_ref() == Some(&b) {
            return Ok(());
        }
        b.bound_at = app.clock.now();
        match app.store.transact(vec![Write::Binding(b)]).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry("binding kept changing under us", None))
}

/// The mall member bound to a WeCom customer. An unbound customer is looked up in the mall
/// (by the customer's unionid from WeCom, then by external userid) and bound when found.
pub async fn member_of_customer(
    app: &App,
    tenant: &Tenant,
    customer: &ExternalUserId,
) -> Step<Option<MemberId>> {
    let t = &tenant.id;
    if let Some(b) = app.store.binding_by_customer(t, customer).await? {
        return Ok(Some(b.member_id));
    }
    let detail = match app
        .wecom
        .get_external_contact(&App::wecom_credentials(tenant), customer)
        .await
    {
        Ok(detail) => Some(detail),
        // The customer may be gone already (a deletion event); the mall may still know it.
        Err(e) if !e.retryable() => None,
        Err(e) => return Err(e.into()),
    };
    let unionid = detail
        .as_ref()
        .and_then(|d| d.external_contact.unionid.clone())
        .filter(|u| !u.is_empty());
    let member = find_in_mall(app, tenant, customer, unionid).await?;
    // The read is in hand: the customer index shows an unbound customer too (a bound one
    // is filed by its member job).
    if let (Some(d), None) = (&detail, &member) {
        let index =
            &crate::jobs::customer_index::read_of_detail(app, t, d, Some(None), None).await?;
        crate::jobs::customer_index::record(app, t, customer, index).await?;
    }
    Ok(member)
}

/// Looks an unbound customer up in the mall — by `unionid` when WeCom gave one, then by the
/// external userid — and binds the member found.
pub async fn find_in_mall(
    app: &App,
    tenant: &Tenant,
    customer: &ExternalUserId,
    unionid: Option<String>,
) -> Step<Option<MemberId>> {
    let ep = App::mall_endpoint(tenant);
    let mut found = None;
    if let Some(u) = &unionid {
        found = app
            .mall
            .lookup_member(&ep, MemberLookup::Unionid(u))
            .await?;
    }
    if found.is_none() {
        found = app
            .mall
            .lookup_member(&ep, MemberLookup::ExternalUserid(customer))
            .await?;
    }
    let Some(member) = found else {
        return Ok(None);
    };
    bind(app, &tenant.id, &member.id, Some(customer.clone()), unionid).await?;
    Ok(Some(member.id))
}
