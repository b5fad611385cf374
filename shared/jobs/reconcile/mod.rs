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

mod library_page;
mod member_pages;

use super::members::Applied;
use super::worker::Outcome;
use super::{Step, StepError};
use crate::app::App;
use crate::domain::*;
use crate::ports::{QueueError, StoreError};
use crate::sync::pace;
use crate::sync::reconcile::Counts;
use crate::wecom::classify::ApiOp;
use library_page::library_page;
pub use member_pages::{CHAIN_USERS_TTL_SECS, relation_chains};
use member_pages::{chain_users, mall_page, relations_page, users_page};

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

impl PageResult {
    /// A page of a listing that goes on at `next_cursor` (`None`: the chain's last page).
    fn paged(next_cursor: Option<String>) -> Self {
        Self {
            done: next_cursor.is_none(),
            next_cursor,
            ..Self::default()
        }
    }
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
    let result = walk_page(app, tenant, job, &run, &hint, &rec, &state).await;
    // A failure names its page; if the job ends parked, the run is failed with it
    // ([`page_parked`]).
    let result = result.map_err(|mut e| {
        e.reason = format!("{chain} page {page}: {}", e.reason);
        e
    })?;
    record(app, tenant, run, chain, page, result).await
}

/// Reads and handles the next page of `state`'s walk.
async fn walk_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run: &SyncRun,
    hint: &Hint,
    rec: &Recorder,
    state: &Chain,
) -> Step<PageResult> {
    let (t, run_id, chain) = (&tenant.id, &run.id, rec.chain.as_str());
    let cursor = state.cursor.as_deref();
    match &state.walk {
        Walk::Library => library_page(app, tenant, job, run, hint, rec).await,
        Walk::MallMembers => mall_page(app, tenant, job, hint, cursor, rec).await,
        Walk::WecomUsers => users_page(app, tenant, run_id).await,
        Walk::Firings => Err(StepError::park(
            "an undo run's chain is advanced by undo jobs, not by reconciliation pages",
        )),
        Walk::WecomRelations { users, users_apart } => {
            let users = chain_users(app, t, run_id, chain, users, *users_apart).await?;
            relations_page(app, tenant, job, hint, &users, cursor, rec).await
        }
    }
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
