//! The member pages: the mall's members page by page, then WeCom's members with customer
//! contact in chains of relations pages; each entry compared with the hub and, when it
//! drifted, repaired with what the page already read of it.

use super::{CHAINS_WANTED, MALL_PAGE, PageResult, Recorder, WECOM_PAGE, add_applied, bump, send};
use crate::app::App;
use crate::domain::*;
use crate::jobs::intake::{bind, find_in_mall};
use crate::jobs::members::{Turn, View, repair};
use crate::jobs::{Step, StepError};
use crate::mall::client::MallMember;
use crate::sync::members::relation_base;
use crate::sync::reconcile::{self as pure, Counts};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The hub's tags as the member pages need them, read once per page.
struct TagMaps {
    to_hub: [HashMap<String, HubTagId>; 2],
    to_side: [HashMap<HubTagId, String>; 2],
}

impl TagMaps {
    async fn read(app: &App, t: &TenantId) -> Step<Self> {
        let mut m = TagMaps {
            to_hub: [HashMap::new(), HashMap::new()],
            to_side: [HashMap::new(), HashMap::new()],
        };
        for x in app.store.list_tags(t).await? {
            if x.deleted_at.is_some() {
                continue;
            }
            let ids = [
                x.wecom.id.as_ref().map(ToString::to_string),
                x.mall.id.as_ref().map(ToString::to_string),
            ];
            for (i, id) in ids.into_iter().enumerate() {
                if let Some(id) = id {
                    m.to_hub[i].insert(id.clone(), x.id.clone());
                    m.to_side[i].insert(x.id.clone(), id);
                }
            }
        }
        Ok(m)
    }

    fn hub(&self, side: usize, ids: impl IntoIterator<Item = String>) -> BTreeSet<HubTagId> {
        ids.into_iter()
            .filter_map(|id| self.to_hub[side].get(&id).cloned())
            .collect()
    }

    /// The member's wanted tags as one side's ids (tags not on that side yet left out).
    fn wanted(&self, side: usize, tags: Option<&MemberTags>) -> BTreeSet<String> {
        tags.map(|m| {
            m.marks
                .iter()
                .filter(|(_, x)| x.present)
                .filter_map(|(t, _)| self.to_side[side].get(t).cloned())
                .collect()
        })
        .unwrap_or_default()
    }
}

const WECOM: usize = 0;
const MALL: usize = 1;

/// How many members (or customers) of one page are compared and repaired at once.
const PAGE_CONCURRENCY: usize = 16;

/// What comparing one member or customer of a page found.
#[derive(Default)]
struct Item {
    drift: Counts,
    skipped: Counts,
    compared: u64,
    /// Relations that need a `mark_tag` (see [`Planned::mark_tag_calls`]).
    marks: u64,
}

/// Shared by a page's item tasks.
struct PageCx {
    app: App,
    tenant: Tenant,
    job: Job,
    hint: Hint,
    maps: TagMaps,
    /// When the page was asked for: a stored record written since may hold a job's write
    /// that the page's listing does not show yet.
    listed_at: Timestamp,
}

impl PageCx {
    /// What a page's tasks share, with the tenant's tag id maps as they are now.
    async fn read(
        app: &App,
        tenant: &Tenant,
        job: &Job,
        hint: &Hint,
        listed_at: Timestamp,
    ) -> Step<Arc<Self>> {
        Ok(Arc::new(Self {
            app: app.clone(),
            tenant: tenant.clone(),
            job: job.clone(),
            hint: hint.clone(),
            maps: TagMaps::read(app, &tenant.id).await?,
            listed_at,
        }))
    }
}

/// Compares a page's entries with `compare`, [`PAGE_CONCURRENCY`] at once, records what
/// they found, then repairs those that drifted (as many at once) and sums it all into `r`;
/// repairs that could not finish inline go to the queue together.
async fn each<I, F, Fut>(
    cx: Arc<PageCx>,
    entries: Vec<I>,
    r: &mut PageResult,
    rec: &Recorder,
    compare: F,
) -> Step<()>
where
    I: Send + 'static,
    F: Fn(Arc<PageCx>, I) -> Fut,
    Fut: std::future::Future<Output = Step<(Item, Option<Repair>)>> + Send + 'static,
{
    let failed =
        |e: tokio::task::JoinError| StepError::retry(format!("a page task failed: {e}"), None);
    let compared =
        crate::concurrency::bounded(entries, PAGE_CONCURRENCY, |e| compare(cx.clone(), e))
            .await
            .map_err(failed)?;
    let mut repairs = Vec::new();
    for x in compared {
        let (x, repair) = x?;
        SyncRun::add(&mut r.drift, &x.drift);
        SyncRun::add(&mut r.skipped, &x.skipped);
        r.compared += x.compared;
        r.marks += x.marks;
        repairs.extend(repair);
    }
    rec.found(r).await?;
    // The page's mall writes go in batch requests (`jobs::mall_writes`).
    let writes = crate::jobs::mall_writes::MallWrites::new(&cx.app, &cx.tenant, &cx.job);
    let done = crate::concurrency::bounded(repairs, PAGE_CONCURRENCY, |(member, mut view)| {
        let cx = cx.clone();
        view.batch = Some(writes.clone());
        async move {
            let out = repair(
                &cx.app,
                &cx.tenant,
                &cx.job,
                &member,
                &cx.hint,
                view,
                Turn::default(),
            )
            .await;
            (member, out)
        }
    })
    .await
    .map_err(failed)?;
    let mut deferred = Vec::new();
    for (member, out) in done {
        match out {
            Ok(a) => add_applied(&mut r.repaired, &a),
            Err(e) => {
                tracing::info!(%member, why = e.reason, "repair deferred to the queue");
                bump(&mut r.skipped, "jobs.deferred", 1);
                deferred.push(JobKind::SyncMember {
                    member,
                    hint: cx.hint.clone(),
                });
            }
        }
    }
    send(&cx.app, &cx.tenant.id, deferred).await
}

/// A member to bring up to date, with what the page already read of it.
type Repair = (MemberId, View);

pub(super) async fn mall_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    hint: &Hint,
    cursor: Option<&str>,
    rec: &Recorder,
) -> Step<PageResult> {
    let listed_at = app.clock.now();
    let page = app
        .mall
        .list_members(&App::mall_endpoint(tenant), cursor, MALL_PAGE)
        .await?;
    let cx = PageCx::read(app, tenant, job, hint, listed_at).await?;
    let mut r = PageResult::paged(page.next_cursor.clone());
    each(cx, page.members, &mut r, rec, |cx, m| async move {
        mall_member(&cx, m).await
    })
    .await?;
    if r.done {
        r.new_chains.push((
            "wecom_users".into(),
            Chain::new(Walk::WecomUsers, Some("mall_members")),
        ));
    }
    Ok(r)
}

/// One mall member: bound to its customer as the mall says, its tags compared with the hub's
/// mall base (the mall changed them) and with the hub's wanted set (the hub did).
async fn mall_member(cx: &PageCx, m: MallMember) -> Step<(Item, Option<Repair>)> {
    let (app, t, maps) = (&cx.app, &cx.tenant.id, &cx.maps);
    let mut x = Item {
        compared: 1,
        ..Item::default()
    };
    if m.external_userid.is_some() || m.unionid.is_some() {
        let b = app.store.get_binding(t, &m.id).await?;
        let missing = b.as_ref().is_none_or(|b| {
            (m.external_userid.is_some() && b.external_userid != m.external_userid)
                || (m.unionid.is_some() && b.unionid != m.unionid)
        });
        if missing {
            bind(app, t, &m.id, m.external_userid.clone(), m.unionid.clone()).await?;
        }
    }
    let stored = app.store.get_member_tags(t, &m.id).await?;
    let base: BTreeSet<HubTagId> = stored
        .as_ref()
        .map(|s| s.mall_base.clone())
        .unwrap_or_default();
    let shown = maps.hub(MALL, m.tag_ids.iter().map(ToString::to_string));
    let (added, removed) = pure::tag_drift(&shown, &base);
    bump(&mut x.drift, "member_tags.added.mall", added);
    bump(&mut x.drift, "member_tags.removed.mall", removed);
    let wanted = maps.hub(MALL, maps.wanted(MALL, stored.as_ref()));
    let pending = added == 0 && removed == 0 && wanted != shown;
    bump(&mut x.drift, "members.pending.mall", u64::from(pending));
    if added + removed == 0 && !pending {
        return Ok((x, None));
    }
    let member = m.id.clone();
    let view = View {
        mall: Some(m),
        // WeCom's relations count as their stored bases here: the WeCom walk that follows
        // compares them page by page.
        wecom: Some(BTreeMap::new()),
        customer_version: None,
        ..View::default()
    };
    Ok((x, Some((member, view))))
}

/// How long a chain's member list is kept (its run is over within hours; a run stalls after
/// [`STALL_MS`] without progress).
pub const CHAIN_USERS_TTL_SECS: i64 = 35 * 24 * 3600;

/// The `wecom_relations` chains over a corp's members with customer contact (sorted and
/// deduplicated): up to 100 members each (`batch/get_by_user`'s maximum), fewer when that
/// gives the workers [`CHAINS_WANTED`] chains side by side; each with its member list, which
/// is stored apart from the run item (`users_apart`).
pub fn relation_chains(users: &[String]) -> Vec<(String, Chain, &[String])> {
    let size = users.len().div_ceil(CHAINS_WANTED).clamp(1, 100);
    users
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let walk = Walk::WecomRelations {
                users: Vec::new(),
                users_apart: true,
            };
            let chain = Chain::new(walk, Some("wecom_users"));
            (format!("wecom_relations_{i:04}"), chain, chunk)
        })
        .collect()
}

pub(super) async fn users_page(app: &App, tenant: &Tenant, run: &RunId) -> Step<PageResult> {
    let mut users: Vec<String> = app
        .wecom
        .get_follow_user_list(&App::wecom_credentials(tenant))
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    users.sort();
    users.dedup();
    let mut r = PageResult {
        done: true,
        ..PageResult::default()
    };
    let expires_at = app.clock.now().plus_secs(CHAIN_USERS_TTL_SECS);
    for (name, chain, members) in relation_chains(&users) {
        // Before the chain is recorded: a recorded chain always finds its members.
        app.store
            .put_chain_users(&tenant.id, run, &name, members, expires_at)
            .await?;
        r.new_chains.push((name, chain));
    }
    Ok(r)
}

/// A relations chain's members: from their own item, or (runs recorded before they were kept
/// apart) from the chain itself.
pub(super) async fn chain_users(
    app: &App,
    t: &TenantId,
    run: &RunId,
    chain: &str,
    inline: &[String],
    apart: bool,
) -> Step<Vec<String>> {
    if !apart {
        return Ok(inline.to_vec());
    }
    app.store
        .get_chain_users(t, run, chain)
        .await?
        .ok_or_else(|| StepError::park(format!("the member list of chain {chain} is missing")))
}

pub(super) async fn relations_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    hint: &Hint,
    users: &[String],
    cursor: Option<&str>,
    rec: &Recorder,
) -> Step<PageResult> {
    let users: Vec<WecomUserId> = users
        .iter()
        .map(|u| WecomUserId::new_unchecked(u.clone()))
        .collect();
    let listed_at = app.clock.now();
    let page = app
        .wecom
        .batch_get_by_user(&App::wecom_credentials(tenant), &users, cursor, WECOM_PAGE)
        .await?;
    let cx = PageCx::read(app, tenant, job, hint, listed_at).await?;
    let mut r = PageResult::paged(page.next_cursor.clone());
    // The page's relations by customer (a customer's other relations may be on other pages).
    let mut by_customer: BTreeMap<ExternalUserId, Listed> = BTreeMap::new();
    for c in page.external_contact_list {
        let e = by_customer
            .entry(c.external_contact.external_userid.clone())
            .or_default();
        if e.unionid.is_none() {
            e.unionid = c.external_contact.unionid.clone().filter(|u| !u.is_empty());
        }
        e.name = Some(c.external_contact.name.clone());
        e.added.insert(
            c.follow_info.userid.clone(),
            (c.follow_info.state.clone(), c.follow_info.createtime),
        );
        e.relations.insert(
            c.follow_info.userid.clone(),
            c.follow_info
                .tag_id
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
    }
    each(
        cx,
        by_customer.into_iter().collect(),
        &mut r,
        rec,
        |cx, (c, l)| async move { customer(&cx, c, l).await },
    )
    .await?;
    Ok(r)
}

/// Files what a page listed of a customer in the customer index (its other relations may be
/// on other pages: they are left as they are).
async fn index_listed(
    cx: &PageCx,
    customer: &ExternalUserId,
    listed: &Listed,
    member: Option<MemberId>,
) -> Step<()> {
    let mut read = CustomerRead {
        name: listed.name.clone(),
        member: Some(member),
        relations: Vec::new(),
        complete: false,
    };
    for (userid, ids) in &listed.relations {
        let (state, createtime) = listed.added.get(userid).cloned().unwrap_or_default();
        read.relations.push(RelationRead {
            userid: userid.clone(),
            state: state.filter(|s| !s.is_empty()),
            added_at: (createtime > 0).then(|| Timestamp::from_millis(createtime * 1000)),
            tag_ids: ids
                .iter()
                .filter_map(|i| cx.maps.to_hub[WECOM].get(i))
                .cloned()
                .collect(),
            personal_tags: None,
        });
    }
    crate::jobs::customer_index::record(&cx.app, &cx.tenant.id, customer, &read).await?;
    Ok(())
}

/// A customer's relations as one WeCom page listed them.
#[derive(Default)]
struct Listed {
    unionid: Option<String>,
    /// For the customer index: the name, and per relation its `state` and `createtime`.
    name: Option<String>,
    added: BTreeMap<WecomUserId, (Option<String>, i64)>,
    relations: BTreeMap<WecomUserId, Vec<String>>,
}

/// One customer of a WeCom page: bound to its member (looked up in the mall when unknown),
/// each listed relation compared with its stored base (WeCom changed it) and with the
/// member's wanted set (the hub did).
async fn customer(
    cx: &PageCx,
    customer: ExternalUserId,
    listed: Listed,
) -> Step<(Item, Option<Repair>)> {
    let (app, t, maps) = (&cx.app, &cx.tenant.id, &cx.maps);
    let mut x = Item {
        compared: listed.relations.len() as u64,
        ..Item::default()
    };
    let member = match app.store.binding_by_customer(t, &customer).await? {
        Some(b) => Some(b.member_id),
        None => find_in_mall(app, &cx.tenant, &customer, listed.unionid.clone()).await?,
    };
    index_listed(cx, &customer, &listed, member.clone()).await?;
    let Some(member) = member else {
        bump(&mut x.skipped, "customers.unbound.wecom", 1);
        return Ok((x, None));
    };
    let stored = app.store.get_customer(t, &customer).await?;
    if stored
        .as_ref()
        .is_some_and(|s| s.updated_at >= cx.listed_at)
    {
        // A job wrote the customer's relations (a marking or the bases after it) since the
        // page was listed: the listing may not show that job's marks, and comparing it with
        // the bases would take them for WeCom's changes, and the repair would undo them. The
        // member is brought up to date from WeCom as it is now, without counting drift here.
        x.marks += listed.relations.len() as u64;
        let v = View {
            mall: None,
            wecom: None,
            ..View::default()
        };
        return Ok((x, Some((member, v))));
    }
    let tags = app.store.get_member_tags(t, &member).await?;
    let wanted = maps.wanted(WECOM, tags.as_ref());
    let mut needed = false;
    let mut view = BTreeMap::new();
    for (userid, ids) in listed.relations {
        let listed_ids: BTreeSet<String> = ids.iter().cloned().collect();
        let base_raw = relation_base(stored.as_ref(), &userid, &listed_ids);
        // A member job is marking this relation (or was, in a process that died): what it
        // applied is not drift, and the relation differing from what the hub wants is that
        // job's work in progress, not pending; the member is still brought up to date.
        let in_flight = stored
            .as_ref()
            .is_some_and(|s| s.marking.contains_key(&userid));
        let known = |x: &String| maps.to_hub[WECOM].contains_key(x);
        let shown: BTreeSet<String> = ids.iter().filter(|x| known(x)).cloned().collect();
        let base: BTreeSet<String> = base_raw.iter().filter(|x| known(x)).cloned().collect();
        let (added, removed) = pure::tag_drift(&shown, &base);
        bump(&mut x.drift, "member_tags.added.wecom", added);
        bump(&mut x.drift, "member_tags.removed.wecom", removed);
        let pending = added == 0 && removed == 0 && shown != wanted;
        bump(
            &mut x.drift,
            "relations.pending.wecom",
            u64::from(pending && !in_flight),
        );
        // About one `mark_tag` per relation that does not show what the hub wants (a
        // relation whose own change the merge takes may need none: the plan errs late).
        x.marks += u64::from(shown != wanted);
        needed |= added + removed > 0 || pending;
        // Tags the hub does not know are passed on only if the relation already had them
        // (they may be rule-group tags, which the hub does not sync; §1.5 lists them too).
        let passed = ids
            .into_iter()
            .filter(|x| known(x) || base_raw.contains(x))
            .collect();
        view.insert(userid, passed);
    }
    if !needed {
        return Ok((x, None));
    }
    let v = View {
        mall: None,
        wecom: Some(view),
        customer_version: Some(stored.as_ref().map_or(0, |s| s.version)),
        ..View::default()
    };
    Ok((x, Some((member, v))))
}
