//! Full reconciliation: a run walks the sides as chains of page jobs (`JobKind::RunChain`),
//! each page one job that compares what it read with the hub and its bases, repairs what
//! drifted through the same code the sync jobs use, records its counts in the run item and
//! queues the chain's next page. Nothing holds a whole side in memory; a crash or a Lambda
//! deadline resumes at the page the run item says is next.
//!
//! Order: the library (scope `library`, `all`), then the mall's members (which binds members
//! to customers), then WeCom's members with customer contact, split into chains of up to 100
//! members whose relations are read with `batch/get_by_user` (scope `members`, `all`).
//!
//! One run per tenant at a time: the store lease `run#{tenant}`, held by the run id and
//! renewed by every page; a run that stops moving for [`STALL_MS`] lets the lease lapse, is
//! reported stalled and no longer blocks a new run. A run whose page job is parked is failed
//! at once and gives the lease up ([`page_parked`]): its other chains go on without it, and a
//! redrive of the parked page takes it again and sets the run running — unless a newer run
//! started meanwhile, which supersedes it (the old run's pages then stop).

use super::intake::{bind, find_in_mall};
use super::library::{sync_group, sync_tag};
use super::members::{Applied, View, repair};
use super::worker::Outcome;
use super::{Step, StepError};
use crate::app::App;
use crate::domain::*;
use crate::mall::client::{MallGroupWithTags, MallMember};
use crate::ports::{QueueError, StoreError, Write};
use crate::sync::members::relation_base;
use crate::sync::pace;
use crate::sync::reconcile::{self as pure, Counts, Match, SideGroup, SideLib, SideTag, Target};
use crate::wecom::classify::ApiOp;
use crate::wecom::client::TagGroupInfo;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A run whose pages have not moved it on for this long is stalled: its lease lapses.
pub const STALL_MS: i64 = 10 * 60_000;
/// Members per `GET /members` page (the contract's maximum).
const MALL_PAGE: u32 = 500;
/// Relations per `batch/get_by_user` page (WeCom's maximum).
const WECOM_PAGE: u32 = 100;
/// WeCom members per relations chain (WeCom's maximum per call is 100); fewer when that gives
/// the workers chains to run side by side.
const CHAINS_WANTED: usize = 8;

pub fn run_lock(t: &TenantId) -> String {
    format!("run#{t}")
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a sync run of this tenant is going: {0}")]
    Busy(String),
    #[error("the customer-tag feature is off for this tenant")]
    Off,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Starts a run: takes the tenant's run lease, records the run and queues its first page.
pub async fn start(
    app: &App,
    tenant: &Tenant,
    scope: RunScope,
    origin: Actor,
) -> Result<SyncRun, StartError> {
    if !tenant.settings.tags_enabled {
        return Err(StartError::Off);
    }
    let now = app.clock.now();
    let id = RunId::new_unchecked(new_ordered_id());
    let lock = run_lock(&tenant.id);
    if !app
        .store
        .acquire_lease(&lock, id.as_str(), now, now.plus_millis(STALL_MS))
        .await?
    {
        let running = app
            .store
            .list_runs(&tenant.id, 5)
            .await?
            .into_iter()
            .find(|r| r.status == RunStatus::Running)
            .map_or_else(|| "(starting)".to_owned(), |r| r.id.to_string());
        return Err(StartError::Busy(running));
    }
    let mut run = SyncRun::new(tenant.id.clone(), id.clone(), scope, origin, now);
    let first = scope.first_chain().0.to_owned();
    if let Err(e) = app.store.put_run(&mut run).await {
        let _ = app.store.release_lease(&lock, id.as_str()).await;
        return Err(e.into());
    }
    let job = Job::new(
        tenant.id.clone(),
        JobKind::RunChain {
            run: id,
            chain: first,
        },
        now,
    );
    if let Err(e) = app.queue.send(&[job]).await {
        run.status = RunStatus::Failed;
        run.error = Some(format!("could not queue the first page: {e}"));
        run.finished_at = Some(now);
        let _ = app.store.put_run(&mut run).await;
        let _ = app.store.release_lease(&lock, run.id.as_str()).await;
        return Err(e.into());
    }
    tracing::info!(tenant = %tenant.id, run = %run.id, ?scope, "sync run started");
    Ok(run)
}

/// How a run looks to a reader: a running run whose pages stopped moving is stalled.
pub fn shown(run: &SyncRun, now: Timestamp) -> (RunStatus, Option<String>) {
    let stalled = run.status == RunStatus::Running
        && run
            .progressed_at
            .is_some_and(|at| now.millis() - at.millis() > STALL_MS);
    if stalled {
        (
            RunStatus::Failed,
            Some("stalled: no page finished for 10 minutes (see dead letters)".into()),
        )
    } else {
        (run.status, run.error.clone())
    }
}

/// What one page found and did.
#[derive(Default)]
struct PageResult {
    next_cursor: Option<String>,
    done: bool,
    drift: Counts,
    repaired: Counts,
    skipped: Counts,
    compared: u64,
    /// Relations that need a `mark_tag`.
    marks: u64,
    new_chains: Vec<(String, Chain)>,
    ambiguous: Vec<String>,
}

/// Advances chain `chain` of run `run_id` by one page.
pub async fn advance(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    chain: &str,
) -> Outcome {
    match advance_inner(app, tenant, job, run_id, chain).await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

async fn advance_inner(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    chain: &str,
) -> Step<()> {
    let t = &tenant.id;
    let Some(run) = app.store.get_run(t, run_id).await? else {
        return Err(StepError::park(format!("no sync run {run_id}")));
    };
    if run.status == RunStatus::Done {
        return Ok(());
    }
    if !tenant.settings.tags_enabled {
        let why = "the customer-tag feature (tags_enabled) was switched off during the run";
        finish(app, run, RunStatus::Failed, Some(why.into())).await?;
        return Ok(());
    }
    let Some(state) = run.chains.get(chain).cloned() else {
        return Err(StepError::park(format!(
            "run {run_id} has no chain {chain}"
        )));
    };
    if state.done {
        // A redelivery after the page that ended this chain was recorded: make sure the chains
        // it started were queued (a crash may have come in between); extra copies find their
        // page done and stop.
        let children: Vec<JobKind> = run
            .chains
            .iter()
            .filter(|(_, c)| c.parent.as_deref() == Some(chain) && c.page == 0 && !c.done)
            .map(|(name, _)| JobKind::RunChain {
                run: run_id.clone(),
                chain: name.clone(),
            })
            .collect();
        send(app, t, children).await?;
        return Ok(());
    }
    // A run a newer one replaced (it failed or stalled, and the operator started another)
    // stops here: the newer run repairs from what the sides show now.
    if let Some(newer) = app
        .store
        .list_runs(t, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.id > *run_id)
    {
        let why = format!("superseded by a newer run ({})", newer.id);
        if run.error.as_deref() != Some(why.as_str()) {
            finish(app, run, RunStatus::Failed, Some(why)).await?;
        }
        return Ok(());
    }
    let now = app.clock.now();
    // A failed run holds no lease (a new run may start); only its parked chain, redriven,
    // takes it again. Its other chains go on without it.
    let takes_lease = run.status != RunStatus::Failed || state.parked;
    if takes_lease
        && !app
            .store
            .acquire_lease(
                &run_lock(t),
                run_id.as_str(),
                now,
                now.plus_millis(STALL_MS),
            )
            .await?
    {
        // This run stalled and another one started: the newer run does the work.
        finish(
            app,
            run,
            RunStatus::Failed,
            Some("superseded by a newer run".into()),
        )
        .await?;
        return Ok(());
    }
    let hint = Hint {
        run: Some(run_id.clone()),
        ..Hint::from(run.origin)
    };
    let page = state.page;
    let rec = Recorder {
        app: app.clone(),
        run: run_id.clone(),
        tenant: t.clone(),
        chain: chain.to_owned(),
        page,
    };
    let result = match &state.walk {
        Walk::Library => library_page(app, tenant, job, &run, &hint, &rec).await,
        Walk::MallMembers => {
            mall_page(app, tenant, job, &hint, state.cursor.as_deref(), &rec).await
        }
        Walk::WecomUsers => users_page(app, tenant, run_id).await,
        Walk::Firings => Err(StepError::park(
            "an undo run's chain is advanced by undo jobs, not by reconciliation pages",
        )),
        Walk::WecomRelations { users, users_apart } => {
            match chain_users(app, t, run_id, chain, users, *users_apart).await {
                Ok(users) => {
                    relations_page(
                        app,
                        tenant,
                        job,
                        &hint,
                        &users,
                        state.cursor.as_deref(),
                        &rec,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
    };
    // A failure names its page; if the job ends parked, the run is failed with it
    // ([`page_parked`]).
    let result = result.map_err(|mut e| {
        e.reason = format!("{chain} page {page}: {}", e.reason);
        e
    })?;
    record(app, tenant, run, chain, page, result).await
}

/// Records a page in the run item (unless another copy of this job got there first) and
/// queues what comes next.
async fn record(
    app: &App,
    tenant: &Tenant,
    mut run: SyncRun,
    chain: &str,
    page: u64,
    r: PageResult,
) -> Step<()> {
    let t = &tenant.id;
    // The budget as it stands, for the plan of the run's `mark_tag` calls.
    let windows = if r.marks > 0 || run.planned.is_some() {
        mark_tag_windows(app, tenant).await
    } else {
        None
    };
    for _ in 0..20 {
        let Some(state) = run.chains.get_mut(chain) else {
            return Err(StepError::park(format!("chain {chain} vanished")));
        };
        if state.page != page || state.done {
            tracing::info!(run = %run.id, chain, page, "page already recorded by another copy");
            return Ok(());
        }
        state.page += 1;
        state.cursor = r.next_cursor.clone();
        state.done = r.done;
        state.found = None;
        let redriven = std::mem::take(&mut state.parked);
        for (name, c) in &r.new_chains {
            run.chains.entry(name.clone()).or_insert_with(|| c.clone());
        }
        SyncRun::add(&mut run.drift, &r.drift);
        SyncRun::add(&mut run.repaired, &r.repaired);
        SyncRun::add(&mut run.skipped, &r.skipped);
        run.progress.entities_compared += r.compared;
        run.ambiguous.extend(r.ambiguous.iter().cloned());
        run.recount();
        let now = app.clock.now();
        run.progressed_at = Some(now);
        if let Some(w) = windows {
            plan(&mut run, r.marks, w, now);
        }
        if run.status == RunStatus::Failed && redriven && !run.chains.values().any(|c| c.parked) {
            // The parked page, redriven after the fix, went through: running again.
            run.status = RunStatus::Running;
            run.error = None;
            run.finished_at = None;
        }
        let all_done = run.all_chains_done() && run.status == RunStatus::Running;
        if all_done {
            run.status = RunStatus::Done;
            run.finished_at = Some(now);
        }
        match app.store.put_run(&mut run).await {
            Ok(()) => {
                let mut next = Vec::new();
                if !r.done {
                    next.push(chain.to_owned());
                }
                next.extend(r.new_chains.iter().map(|(n, _)| n.clone()));
                let jobs = next
                    .into_iter()
                    .map(|chain| JobKind::RunChain {
                        run: run.id.clone(),
                        chain,
                    })
                    .collect();
                send(app, t, jobs).await?;
                if all_done {
                    let _ = app.store.release_lease(&run_lock(t), run.id.as_str()).await;
                    tracing::info!(run = %run.id, drift = ?run.drift, repaired = ?run.repaired, "sync run done");
                }
                return Ok(());
            }
            Err(e) if e.is_conflict() => {
                run = app
                    .store
                    .get_run(t, &run.id)
                    .await?
                    .ok_or_else(|| StepError::park("the run vanished"))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry("the run item kept changing", None))
}

/// The `mark_tag` budget of the tenant's corp as it stands; `None` (no plan update this page)
/// when the store cannot say.
async fn mark_tag_windows(app: &App, tenant: &Tenant) -> Option<pace::Windows> {
    let corp = &App::wecom_credentials(tenant).corp_id;
    match app.wecom.rate_windows(corp, ApiOp::MarkTag).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, error = %e, "rate budget unreadable; the run's plan is not updated");
            None
        }
    }
}

/// Adds a recorded page's `mark_tag` calls to the run's plan and plans what is left: all the
/// pages found so far, less what the run made inline (a repair the budget held back went to
/// the queue as a member job, rescheduled to its window).
fn plan(run: &mut SyncRun, marks: u64, w: pace::Windows, now: Timestamp) {
    let needed = run.planned.as_ref().map_or(0, |p| p.mark_tag_calls) + marks;
    let made = run
        .repaired
        .get("relations.marked.wecom")
        .copied()
        .unwrap_or(0);
    let remaining = needed.saturating_sub(made);
    let finish = pace::finish(remaining, now, w);
    run.planned = Some(Planned {
        mark_tag_calls: needed,
        remaining,
        finish_at: finish.at,
        limited_by: finish.limited_by,
        planned_at: now,
    });
}

/// Records what a page found before it repairs anything (see [`Chain::found`]).
struct Recorder {
    app: App,
    tenant: TenantId,
    run: RunId,
    chain: String,
    page: u64,
}

impl Recorder {
    /// Keeps `r`'s found counts in the run item; on a redo of the page after a crash, puts the
    /// counts recorded the first time into `r` instead.
    async fn found(&self, r: &mut PageResult) -> Step<()> {
        for _ in 0..20 {
            let Some(mut run) = self.app.store.get_run(&self.tenant, &self.run).await? else {
                return Err(StepError::park("the run vanished"));
            };
            let Some(state) = run.chains.get_mut(&self.chain) else {
                return Err(StepError::park(format!("chain {} vanished", self.chain)));
            };
            if state.page != self.page {
                // Another copy recorded this page meanwhile; its record stands (ours is dropped).
                return Ok(());
            }
            if let Some(f) = state.found.as_ref().filter(|f| f.page == self.page) {
                r.drift = f.drift.clone();
                r.skipped = f.skipped.clone();
                r.compared = f.compared;
                r.marks = f.marks;
                r.ambiguous = f.ambiguous.clone();
                return Ok(());
            }
            state.found = Some(Found {
                marks: r.marks,
                page: self.page,
                drift: r.drift.clone(),
                skipped: r.skipped.clone(),
                compared: r.compared,
                ambiguous: r.ambiguous.clone(),
            });
            match self.app.store.put_run(&mut run).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StepError::retry("the run item kept changing", None))
    }
}

async fn send(app: &App, t: &TenantId, kinds: Vec<JobKind>) -> Step<()> {
    if kinds.is_empty() {
        return Ok(());
    }
    let now = app.clock.now();
    let jobs: Vec<Job> = kinds
        .into_iter()
        .map(|k| Job::new(t.clone(), k, now))
        .collect();
    app.queue
        .send(&jobs)
        .await
        .map_err(|e| StepError::retry(format!("queueing: {e}"), None))
}

/// A page job of the run was parked (it failed for good, or on every try): the run is failed
/// at once with the reason, and gives up the tenant's run lease so a new manual sync can
/// start. Redriving the page continues the run (see [`advance`]).
pub async fn page_parked(
    app: &App,
    t: &TenantId,
    run_id: &RunId,
    chain: &str,
    reason: &str,
) -> Step<()> {
    for _ in 0..20 {
        let Some(mut run) = app.store.get_run(t, run_id).await? else {
            return Ok(());
        };
        let Some(state) = run.chains.get_mut(chain) else {
            return Ok(());
        };
        // Another copy of the page went through (or the run ended): nothing is parked.
        if state.done || run.status == RunStatus::Done {
            return Ok(());
        }
        state.parked = true;
        run.status = RunStatus::Failed;
        run.error = Some(format!("a page job is parked: {reason}"));
        run.finished_at = Some(app.clock.now());
        match app.store.put_run(&mut run).await {
            Ok(()) => {
                let _ = app.store.release_lease(&run_lock(t), run_id.as_str()).await;
                tracing::warn!(run = %run_id, chain, "sync run failed: a page job is parked");
                return Ok(());
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry("the run item kept changing", None))
}

async fn finish(app: &App, mut run: SyncRun, status: RunStatus, error: Option<String>) -> Step<()> {
    for _ in 0..20 {
        run.status = status;
        run.error = error.clone();
        run.finished_at = Some(app.clock.now());
        match app.store.put_run(&mut run).await {
            Ok(()) => break,
            Err(e) if e.is_conflict() => {
                let Some(fresh) = app.store.get_run(&run.tenant, &run.id).await? else {
                    return Ok(());
                };
                run = fresh;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let _ = app
        .store
        .release_lease(&run_lock(&run.tenant), run.id.as_str())
        .await;
    Ok(())
}

/// A repair that could not finish inline goes to the queue as the ordinary job it is.
async fn defer(
    app: &App,
    t: &TenantId,
    kind: JobKind,
    skipped: &mut Counts,
    why: &str,
) -> Step<()> {
    tracing::info!(tenant = %t, job = kind.name(), why, "repair deferred to the queue");
    *skipped.entry("jobs.deferred".into()).or_default() += 1;
    send(app, t, vec![kind]).await
}

fn add_applied(c: &mut Counts, a: &Applied) {
    for (k, v) in [
        ("member_tags.added.wecom", a.wecom_added),
        ("member_tags.removed.wecom", a.wecom_removed),
        ("member_tags.added.mall", a.mall_added),
        ("member_tags.removed.mall", a.mall_removed),
        ("relations.marked.wecom", a.relations_marked),
        ("members.changed.hub", u64::from(a.hub_changed)),
    ] {
        if v > 0 {
            *c.entry(k.into()).or_default() += v;
        }
    }
}

fn bump(c: &mut Counts, key: &str, n: u64) {
    if n > 0 {
        *c.entry(key.into()).or_default() += n;
    }
}

// ---------------------------------------------------------------------------------------
// The library.

fn wecom_lib(groups: &[TagGroupInfo]) -> SideLib {
    SideLib {
        groups: groups
            .iter()
            .map(|g| SideGroup {
                id: g.group_id.to_string(),
                name: g.group_name.clone(),
                order: g.order,
                tags: g
                    .tag
                    .iter()
                    .map(|x| SideTag {
                        id: x.id.to_string(),
                        name: x.name.clone(),
                        order: x.order,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn mall_lib(groups: &[MallGroupWithTags]) -> SideLib {
    SideLib {
        groups: groups
            .iter()
            .map(|g| SideGroup {
                id: g.group.id.to_string(),
                name: g.group.name.clone(),
                order: g.group.order,
                tags: g
                    .tags
                    .iter()
                    .map(|x| SideTag {
                        id: x.id.to_string(),
                        name: x.name.clone(),
                        order: x.order,
                    })
                    .collect(),
            })
            .collect(),
    }
}

async fn read_libs(app: &App, tenant: &Tenant) -> Step<(SideLib, SideLib)> {
    // Corp and rule-group (strategy) tags alike: scoped hub groups live in the latter.
    let creds = App::wecom_credentials(tenant);
    let mut w = app.wecom.get_corp_tag_list(&creds, &[], &[]).await?;
    w.extend(
        app.wecom
            .get_strategy_tag_list(&creds, None, &[], &[])
            .await?,
    );
    let m = app.mall.list_groups(&App::mall_endpoint(tenant)).await?;
    Ok((wecom_lib(&w), mall_lib(&m)))
}

/// Side id → hub id of every group and tag the hub links, for one side.
fn hub_map(groups: &[TagGroup], tags: &[Tag], side: Side) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for g in groups {
        let id = match side {
            Side::Wecom => g.wecom.id.as_ref().map(ToString::to_string),
            Side::Mall => g.mall.id.as_ref().map(ToString::to_string),
        };
        if let Some(id) = id {
            m.insert(id, g.id.to_string());
        }
    }
    for x in tags {
        let id = match side {
            Side::Wecom => x.wecom.id.as_ref().map(ToString::to_string),
            Side::Mall => x.mall.id.as_ref().map(ToString::to_string),
        };
        if let Some(id) = id {
            m.insert(id, x.id.to_string());
        }
    }
    m
}

async fn library_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run: &SyncRun,
    hint: &Hint,
    rec: &Recorder,
) -> Step<PageResult> {
    let t = &tenant.id;
    let mut r = PageResult {
        done: true,
        ..PageResult::default()
    };
    let (wecom, mall) = read_libs(app, tenant).await?;
    let groups = app.store.list_groups(t).await?;
    let tags = app.store.list_tags(t).await?;
    let found = pure::library(&groups, &tags, &wecom, &mall);
    r.drift = found.drift;
    r.skipped.extend(found.skipped);
    r.compared = found.compared;
    r.ambiguous = found.ambiguous;
    rec.found(&mut r).await?;

    let mut targets = Vec::new();
    let linked = link_matches(app, tenant, &found.matches, &mut targets).await?;
    for (k, n) in linked {
        bump(&mut r.repaired, k, n);
    }
    // Groups before tags (a tag's first WeCom create needs its group), as the finder orders.
    let mut ordered: Vec<Target> = targets
        .iter()
        .filter(|x| matches!(x, Target::Group(_)))
        .cloned()
        .collect();
    ordered.extend(found.targets);
    ordered.extend(targets.into_iter().filter(|x| matches!(x, Target::Tag(_))));
    for target in ordered {
        let mut h = hint.clone();
        let object = match target {
            Target::Group(group) => LibObject::Group(group),
            Target::Tag(tag) => LibObject::Tag(tag),
            Target::NewGroup { side, id } => {
                set_side_id(&mut h, side, id);
                LibObject::Group(HubGroupId::new_unchecked(new_ordered_id()))
            }
            Target::NewTag { side, id } => {
                set_side_id(&mut h, side, id);
                LibObject::Tag(HubTagId::new_unchecked(new_ordered_id()))
            }
        };
        let (kind, outcome) = match object {
            LibObject::Group(group) => {
                let outcome = sync_group(app, tenant, job, &group, &h).await;
                (JobKind::SyncGroup { group, hint: h }, outcome)
            }
            LibObject::Tag(tag) => {
                let outcome = sync_tag(app, tenant, job, &tag, &h).await;
                (JobKind::SyncTag { tag, hint: h }, outcome)
            }
        };
        match outcome {
            Outcome::Done => {}
            Outcome::RetryAfter { reason, .. }
            | Outcome::Reschedule { reason, .. }
            | Outcome::Park { reason, .. }
            | Outcome::Wait { reason } => {
                defer(app, t, kind, &mut r.skipped, &reason).await?;
            }
        }
    }

    // What the repairs changed on each side: the libraries read again, compared by hub id.
    let hub_before = [
        hub_map(&groups, &tags, Side::Wecom),
        hub_map(&groups, &tags, Side::Mall),
    ];
    let (groups2, tags2) = (
        app.store.list_groups(t).await?,
        app.store.list_tags(t).await?,
    );
    let (wecom2, mall2) = read_libs(app, tenant).await?;
    for (i, (side, before, after)) in [(Side::Wecom, &wecom, &wecom2), (Side::Mall, &mall, &mall2)]
        .into_iter()
        .enumerate()
    {
        let changed = pure::changes(
            side,
            before,
            after,
            &hub_before[i],
            &hub_map(&groups2, &tags2, side),
        );
        SyncRun::add(&mut r.repaired, &changed);
    }
    if run.scope == RunScope::All {
        r.new_chains.push((
            "mall_members".into(),
            Chain {
                walk: Walk::MallMembers,
                page: 0,
                cursor: None,
                done: false,
                parent: Some("library".into()),
                found: None,
                parked: false,
            },
        ));
    }
    Ok(r)
}

/// A library object a repair brings up to date.
enum LibObject {
    Group(HubGroupId),
    Tag(HubTagId),
}

fn set_side_id(h: &mut Hint, side: Side, id: String) {
    match side {
        Side::Wecom => h.wecom_id = Some(id),
        Side::Mall => h.mall_id = Some(id),
    }
}

/// Onboarding: links each same-name pair to one new hub object (bases = what each side
/// shows, so nothing is created again); a pair whose sides differ in order is brought up to
/// date by its job afterwards (`targets`).
async fn link_matches(
    app: &App,
    tenant: &Tenant,
    matches: &[Match],
    targets: &mut Vec<Target>,
) -> Step<Vec<(&'static str, u64)>> {
    let t = &tenant.id;
    let now = app.clock.now();
    let (mut groups, mut tags) = (0, 0);
    for m in matches {
        match m {
            Match::Group { wecom, mall } => {
                let id = HubGroupId::new_unchecked(new_ordered_id());
                let snap = |g: &SideGroup| GroupSnapshot {
                    name: g.name.clone(),
                    order: g.order,
                };
                let g = TagGroup {
                    tenant: t.clone(),
                    id: id.clone(),
                    name: wecom.name.clone(),
                    order: wecom.order,
                    name_at: now,
                    order_at: now,
                    deleted_at: None,
                    wecom: synced(WecomGroupId::new_unchecked(wecom.id.clone()), snap(wecom)),
                    mall: synced(MallGroupId::new_unchecked(mall.id.clone()), snap(mall)),
                    scope: None,
                    carry_to_mall: true,
                    version: 0,
                };
                let links = both_links(t, EntityKind::Group, &wecom.id, &mall.id, id.as_str());
                let writes = [vec![Write::Group(g)], links].concat();
                if commit_link(app, writes).await? {
                    groups += 1;
                    if wecom.order != mall.order {
                        targets.push(Target::Group(id));
                    }
                }
            }
            Match::Tag {
                wecom,
                wecom_group,
                mall,
                ..
            } => {
                let Some(group) = app
                    .store
                    .lookup_link(t, Side::Wecom, EntityKind::Group, wecom_group)
                    .await?
                else {
                    continue;
                };
                let group = HubGroupId::new_unchecked(group);
                let id = HubTagId::new_unchecked(new_ordered_id());
                let snap = |x: &SideTag| TagSnapshot {
                    name: x.name.clone(),
                    order: x.order,
                    group_id: group.clone(),
                };
                let x = Tag {
                    tenant: t.clone(),
                    id: id.clone(),
                    group_id: group.clone(),
                    name: wecom.name.clone(),
                    order: wecom.order,
                    name_at: now,
                    order_at: now,
                    group_at: now,
                    deleted_at: None,
                    wecom: synced(WecomTagId::new_unchecked(wecom.id.clone()), snap(wecom)),
                    mall: synced(MallTagId::new_unchecked(mall.id.clone()), snap(mall)),
                    version: 0,
                };
                let links = both_links(t, EntityKind::Tag, &wecom.id, &mall.id, id.as_str());
                let writes = [vec![Write::Tag(x)], links].concat();
                if commit_link(app, writes).await? {
                    tags += 1;
                    if wecom.order != mall.order {
                        targets.push(Target::Tag(id));
                    }
                }
            }
        }
    }
    Ok(vec![("groups.linked", groups), ("tags.linked", tags)])
}

/// Writes a link; false when a side id got linked meanwhile (an event's job was quicker).
async fn commit_link(app: &App, writes: Vec<Write>) -> Step<bool> {
    match app.store.transact(writes).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn synced<I, S>(id: I, base: S) -> SideLink<I, S> {
    SideLink {
        id: Some(id),
        base: Some(base),
        state: SyncState::Synced,
        error: None,
    }
}

/// The id-map entries of a hub object linked to a WeCom and a mall object at once.
fn both_links(
    t: &TenantId,
    kind: EntityKind,
    wecom_id: &str,
    mall_id: &str,
    hub_id: &str,
) -> Vec<Write> {
    [(Side::Wecom, wecom_id), (Side::Mall, mall_id)]
        .into_iter()
        .map(|(side, side_id)| {
            Write::Link(IdLink {
                tenant: t.clone(),
                side,
                kind,
                side_id: side_id.to_owned(),
                hub_id: hub_id.to_owned(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Members.

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
    let writes = super::mall_writes::MallWrites::new(&cx.app, &cx.tenant, &cx.job);
    let done = crate::concurrency::bounded(repairs, PAGE_CONCURRENCY, |(member, mut view)| {
        let cx = cx.clone();
        view.batch = Some(writes.clone());
        async move {
            let out = repair(&cx.app, &cx.tenant, &cx.job, &member, &cx.hint, view).await;
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

async fn mall_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    hint: &Hint,
    cursor: Option<&str>,
    rec: &Recorder,
) -> Step<PageResult> {
    let t = &tenant.id;
    let listed_at = app.clock.now();
    let page = app
        .mall
        .list_members(&App::mall_endpoint(tenant), cursor, MALL_PAGE)
        .await?;
    let cx = Arc::new(PageCx {
        app: app.clone(),
        tenant: tenant.clone(),
        job: job.clone(),
        hint: hint.clone(),
        maps: TagMaps::read(app, t).await?,
        listed_at,
    });
    let mut r = PageResult {
        next_cursor: page.next_cursor.clone(),
        done: page.next_cursor.is_none(),
        ..PageResult::default()
    };
    each(cx, page.members, &mut r, rec, |cx, m| async move {
        mall_member(&cx, m).await
    })
    .await?;
    if r.done {
        r.new_chains.push((
            "wecom_users".into(),
            Chain {
                walk: Walk::WecomUsers,
                page: 0,
                cursor: None,
                done: false,
                parent: Some("mall_members".into()),
                found: None,
                parked: false,
            },
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
            let chain = Chain {
                walk: Walk::WecomRelations {
                    users: Vec::new(),
                    users_apart: true,
                },
                page: 0,
                cursor: None,
                done: false,
                parent: Some("wecom_users".into()),
                found: None,
                parked: false,
            };
            (format!("wecom_relations_{i:04}"), chain, chunk)
        })
        .collect()
}

async fn users_page(app: &App, tenant: &Tenant, run: &RunId) -> Step<PageResult> {
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
async fn chain_users(
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

async fn relations_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    hint: &Hint,
    users: &[String],
    cursor: Option<&str>,
    rec: &Recorder,
) -> Step<PageResult> {
    let t = &tenant.id;
    let users: Vec<WecomUserId> = users
        .iter()
        .map(|u| WecomUserId::new_unchecked(u.clone()))
        .collect();
    let listed_at = app.clock.now();
    let page = app
        .wecom
        .batch_get_by_user(&App::wecom_credentials(tenant), &users, cursor, WECOM_PAGE)
        .await?;
    let cx = Arc::new(PageCx {
        app: app.clone(),
        tenant: tenant.clone(),
        job: job.clone(),
        hint: hint.clone(),
        maps: TagMaps::read(app, t).await?,
        listed_at,
    });
    let mut r = PageResult {
        next_cursor: page.next_cursor.clone(),
        done: page.next_cursor.is_none(),
        ..PageResult::default()
    };
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
