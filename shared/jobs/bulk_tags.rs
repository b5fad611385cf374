//! Bulk tagging by a customer filter (issue 15, `POST …/customers:bulk-tags`). A bulk run is a
//! [`SyncRun`] of scope `bulk`, followed and cancelled like a sync run:
//!
//! 1. the request records the run and queues its start job;
//! 2. the start job takes the snapshot — the customers the filter matches *now*, once (a
//!    customer added later is not swept in) — and queues them in chunks of [`BULK_CHUNK`];
//! 3. each chunk job applies the change to its customers one by one, whole or not at all,
//!    through the member-tag path: a bound customer's hub marks are written (audit origin
//!    `bulk:{run}`) and its member job runs (one `mark_tag` per relation that differs, its
//!    mall change waiting for the chunk's others to go in one `POST /members:batch-tags`);
//!    an unbound customer has no hub marks, so its relations get the WeCom tags directly
//!    (one `mark_tag` per relation). It records its counts once.
//!
//! A customer that fails for good counts as failed (with WeCom's or the mall's reason) and the
//! chunk goes on; a chunk that cannot finish is retried, and when parked fails the run with
//! the reason. Cancelling marks the run `cancelled`: every chunk stops before its next
//! customer, and the counts say how far it got.

use super::mall_writes::Seat;
use super::members::{Turn, View, repair};
use super::worker::Outcome;
use super::{StepError, is_synced_wecom_tag};
use crate::app::App;
use crate::domain::*;
use crate::http::ApiError;
use crate::ports::{StoreError, Write};
use crate::wecom::classify::Refusal;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How often a write of the run or a member's marks is tried again when it changed meanwhile.
const TRIES: usize = 8;

/// Records a bulk run and queues its start job.
pub async fn start(
    app: &App,
    tenant: &Tenant,
    filter: CustomerFilter,
    add: Vec<HubTagId>,
    remove: Vec<HubTagId>,
) -> Result<SyncRun, ApiError> {
    let now = app.clock.now();
    let id = RunId::new_unchecked(new_ordered_id());
    let mut run = SyncRun::new(
        tenant.id.clone(),
        id.clone(),
        RunScope::Bulk,
        Actor::Operator,
        now,
    );
    run.chains.clear();
    run.recount();
    run.bulk = Some(Box::new(BulkState {
        filter,
        add,
        remove,
        ..BulkState::default()
    }));
    app.store.put_run(&mut run).await?;
    let job = Job::new(
        tenant.id.clone(),
        JobKind::BulkStart { run: id.clone() },
        now,
    );
    if let Err(e) = app.queue.send(&[job]).await {
        run.status = RunStatus::Failed;
        run.error = Some(format!("could not queue the run's start: {e}"));
        run.finished_at = Some(now);
        let _ = app.store.put_run(&mut run).await;
        return Err(e.into());
    }
    tracing::info!(tenant = %tenant.id, run = %id, "bulk run started");
    Ok(run)
}

/// The start job: the snapshot, queued in chunks.
pub async fn snapshot(app: &App, tenant: &Tenant, run_id: &RunId) -> Outcome {
    match snapshot_inner(app, tenant, run_id).await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

async fn snapshot_inner(app: &App, tenant: &Tenant, run_id: &RunId) -> Result<(), StepError> {
    let t = &tenant.id;
    let Some(run) = app.store.get_run(t, run_id).await? else {
        return Ok(());
    };
    let Some(bulk) = run.bulk.as_ref() else {
        return Ok(());
    };
    if run.status != RunStatus::Running || bulk.matched.is_some() {
        return Ok(());
    }
    let ids = app.store.matching_customers(t, &bulk.filter).await?;
    let now = app.clock.now();
    let jobs: Vec<Job> = ids
        .chunks(BULK_CHUNK)
        .enumerate()
        .map(|(i, c)| {
            let kind = JobKind::BulkChunk {
                run: run_id.clone(),
                chunk: i as u64,
                customers: c.to_vec(),
            };
            Job::new(t.clone(), kind, now)
        })
        .collect();
    // Queued before the snapshot is recorded: a crash in between queues them again on the
    // retry (chunks count once, and applying a customer twice changes nothing).
    if !jobs.is_empty() {
        app.queue
            .send(&jobs)
            .await
            .map_err(|e| StepError::retry(format!("queueing the run's chunks: {e}"), None))?;
    }
    let (matched, chunks) = (ids.len() as u64, jobs.len() as u64);
    update_run(app, t, run_id, |run| {
        let Some(b) = run.bulk.as_mut() else {
            return false;
        };
        if b.matched.is_some() {
            return false;
        }
        b.matched = Some(matched);
        b.chunks = chunks;
        run.progressed_at = Some(now);
        if chunks == 0 && run.status == RunStatus::Running {
            run.status = RunStatus::Done;
            run.finished_at = Some(now);
        }
        true
    })
    .await?;
    Ok(())
}

/// A chunk job: its customers, one by one, then its counts.
pub async fn chunk(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    chunk: u64,
    customers: &[ExternalUserId],
) -> Outcome {
    let t = &tenant.id;
    let run = match app.store.get_run(t, run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Done,
        Err(e) => return StepError::from(e).into_outcome(),
    };
    let Some(bulk) = run.bulk.clone() else {
        return Outcome::Done;
    };
    if bulk.chunks_done.contains_key(&chunk) {
        return Outcome::Done;
    }
    let (mut done, mut failures) = (0, Vec::new());
    let mut again = None;
    for (c, result) in apply_all(app, tenant, job, run_id, &bulk, customers).await {
        match result {
            Ok(()) => done += 1,
            Err(e) => match e.into_outcome() {
                Outcome::Done => done += 1,
                Outcome::Park { reason, .. } => failures.push(BulkFailure {
                    external_userid: c,
                    reason,
                }),
                // Transient: the whole chunk again (what it applied is applied; applying it
                // again changes nothing).
                other => {
                    again.get_or_insert(other);
                }
            },
        }
    }
    if let Some(other) = again {
        return other;
    }
    let now = app.clock.now();
    let recorded = update_run(app, t, run_id, |run| {
        let Some(b) = run.bulk.as_mut() else {
            return false;
        };
        if !b.record_chunk(chunk, done, failures.clone()) {
            return false;
        }
        run.progressed_at = Some(now);
        if run.status == RunStatus::Running
            && let Some(end) = b.outcome()
        {
            if end == RunStatus::Failed {
                run.error = Some(format!("{} customers failed", b.failed()));
            }
            run.status = end;
            run.finished_at = Some(now);
        }
        true
    })
    .await;
    match recorded {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// One chunk's customers, each whole or not at all, in the snapshot's order: one customer at a
/// time takes the job's WeCom turn (the chunk's WeCom calls go one by one, as they did when it
/// went customer by customer), while the members' mall writes wait for each other and go in
/// one batch request (`jobs::mall_writes`). Each customer's seat in that batch is taken before
/// its turn; a customer not started because the run was cancelled (or failed) meanwhile gives
/// it back and is left out of the answer.
async fn apply_all(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    bulk: &BulkState,
    customers: &[ExternalUserId],
) -> Vec<(ExternalUserId, Result<(), StepError>)> {
    let writes = super::mall_writes::MallWrites::new(app, tenant, job);
    let gate = Arc::new(tokio::sync::Semaphore::new(1));
    let turns = Arc::new(tokio::sync::watch::channel(0usize).0);
    let items: Vec<(usize, ExternalUserId, Seat)> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.clone(), writes.seat()))
        .collect();
    let n = items.len().max(1);
    let done = crate::concurrency::bounded(items, n, |(i, c, seat)| {
        let (app, tenant, job, run_id, bulk) = (
            app.clone(),
            tenant.clone(),
            job.clone(),
            run_id.clone(),
            bulk.clone(),
        );
        let (gate, turns) = (gate.clone(), turns.clone());
        async move {
            // The next customer's turn comes when this one has the WeCom turn (or stops).
            let next = NextTurn(turns.clone(), i + 1);
            let mut mine = turns.subscribe();
            let _ = mine.wait_for(|t| *t >= i).await;
            let permit = gate.acquire_owned().await;
            drop(next);
            let permit = match permit {
                Ok(p) => p,
                Err(e) => {
                    let e = StepError::retry(format!("the chunk's WeCom turn closed: {e}"), None);
                    return (c, Some(Err(e)));
                }
            };
            let t = &tenant.id;
            // Cancelled (or failed) meanwhile: stop before this customer.
            match app.store.get_run(t, &run_id).await {
                Ok(Some(r)) if r.status == RunStatus::Running => {}
                Ok(_) => return (c, None),
                Err(e) => return (c, Some(Err(e.into()))),
            }
            let turn = Turn {
                seat: Some(seat),
                permit: Some(permit),
            };
            let out = apply(&app, &tenant, &job, &run_id, &bulk, &c, turn).await;
            (c, Some(out))
        }
    })
    .await;
    match done {
        Ok(done) => done
            .into_iter()
            .filter_map(|(c, out)| out.map(|o| (c, o)))
            .collect(),
        Err(e) => {
            let e = StepError::retry(format!("a customer task failed: {e}"), None);
            vec![(customers[0].clone(), Err(e))]
        }
    }
}

/// Gives the next customer its turn when dropped (also when this one's task ends early).
struct NextTurn(Arc<tokio::sync::watch::Sender<usize>>, usize);

impl Drop for NextTurn {
    fn drop(&mut self) {
        let next = self.1;
        self.0.send_modify(|t| *t = (*t).max(next));
    }
}

/// The change applied to one customer, whole or not at all, in its turn (`turn`: its WeCom
/// turn and its seat in the chunk's mall batch).
async fn apply(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    bulk: &BulkState,
    c: &ExternalUserId,
    turn: Turn,
) -> Result<(), StepError> {
    let t = &tenant.id;
    let cause = format!("bulk:{run_id}");
    let Some(binding) = app.store.binding_by_customer(t, c).await? else {
        return apply_unbound(app, tenant, bulk, c, &cause).await;
    };
    let member = binding.member_id;
    for _ in 0..TRIES {
        let now = app.clock.now();
        let marks = app
            .store
            .get_member_tags(t, &member)
            .await?
            .unwrap_or_else(|| MemberTags::empty(t, &member));
        let Some(next) = marks_after(&marks, &bulk.add, &bulk.remove, now) else {
            break;
        };
        let entry = AuditEntry {
            tenant: t.clone(),
            at: now,
            side: Actor::Hub,
            action: "member.tags_changed".into(),
            entity: format!("member:{member}"),
            before: Some(json!(marks.present())),
            after: Some(json!(next.present())),
            origin: cause.clone(),
        };
        match app
            .store
            .transact(vec![Write::MemberTags(next), Write::Audit(entry)])
            .await
        {
            Ok(()) => break,
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let hint = Hint {
        cause: Some(cause),
        ..Hint::from(Actor::Operator)
    };
    repair(app, tenant, job, &member, &hint, View::default(), turn).await?;
    Ok(())
}

/// A customer no member is bound to: the hub holds no tags for it, so its relations get the
/// change in WeCom directly (one `mark_tag` per relation that differs).
async fn apply_unbound(
    app: &App,
    tenant: &Tenant,
    bulk: &BulkState,
    c: &ExternalUserId,
    cause: &str,
) -> Result<(), StepError> {
    let t = &tenant.id;
    let creds = App::wecom_credentials(tenant);
    let detail = match app.wecom.get_external_contact(&creds, c).await {
        Ok(d) => d,
        Err(e) if !e.retryable() => {
            return Err(StepError::park(format!(
                "reading the customer in WeCom: {e}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let add = wecom_ids(app, t, &bulk.add).await?;
    let remove = wecom_ids(app, t, &bulk.remove).await?;
    let mut known = BTreeMap::new();
    for f in &detail.follow_user {
        let shown: BTreeSet<String> = f
            .tags
            .iter()
            .filter(|x| is_synced_wecom_tag(x.kind))
            .filter_map(|x| x.tag_id.as_ref().map(ToString::to_string))
            .collect();
        let to_add: Vec<WecomTagId> = add
            .iter()
            .filter(|i| !shown.contains(*i))
            .map(|i| WecomTagId::new_unchecked(i.clone()))
            .collect();
        let to_remove: Vec<WecomTagId> = remove
            .iter()
            .filter(|i| shown.contains(*i))
            .map(|i| WecomTagId::new_unchecked(i.clone()))
            .collect();
        let mut after = shown.clone();
        if !to_add.is_empty() || !to_remove.is_empty() {
            match app
                .wecom
                .mark_tag(&creds, &f.userid, c, &to_add, &to_remove)
                .await
            {
                Ok(()) => {}
                Err(e) if e.refusal() == Some(Refusal::NoRelation) => continue,
                Err(e) => return Err(e.into()),
            }
            after.extend(to_add.iter().map(ToString::to_string));
            after.retain(|i| !to_remove.iter().any(|r| r.as_str() == i));
            app.store
                .append_audit(&AuditEntry {
                    tenant: t.clone(),
                    at: app.clock.now(),
                    side: Actor::Wecom,
                    action: "relation.tags_changed".into(),
                    entity: format!("relation:{}/{c}", f.userid),
                    before: Some(json!(shown)),
                    after: Some(json!(after)),
                    origin: cause.to_string(),
                })
                .await?;
        }
        known.insert(
            f.userid.clone(),
            after.into_iter().map(WecomTagId::new_unchecked).collect(),
        );
    }
    let read =
        super::customer_index::read_of_detail(app, t, &detail, Some(None), Some(&known)).await?;
    super::customer_index::record(app, t, c, &read).await?;
    Ok(())
}

/// WeCom ids of hub tags; a live tag not in WeCom yet is waited for.
async fn wecom_ids(app: &App, t: &TenantId, tags: &[HubTagId]) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    for id in tags {
        match app.store.get_tag(t, id).await? {
            Some(x) if x.deleted_at.is_none() => match x.wecom.id {
                Some(w) => out.push(w.to_string()),
                None => return Err(StepError::wait(format!("tag {id} is not in WeCom yet"))),
            },
            // Deleted meanwhile: nothing to put on or take off.
            _ => {}
        }
    }
    Ok(out)
}

/// Rewrites the run with `change` (which answers whether it changed anything), again when
/// another chunk wrote it meanwhile.
async fn update_run(
    app: &App,
    t: &TenantId,
    run_id: &RunId,
    mut change: impl FnMut(&mut SyncRun) -> bool,
) -> Result<(), StepError> {
    for _ in 0..TRIES {
        let Some(mut run) = app.store.get_run(t, run_id).await? else {
            return Ok(());
        };
        if !change(&mut run) {
            return Ok(());
        }
        match app.store.put_run(&mut run).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry(
        format!("bulk run {run_id} kept changing"),
        Some(std::time::Duration::ZERO),
    ))
}

/// A parked start or chunk job fails its run at once, with the reason.
pub async fn parked(app: &App, t: &TenantId, run_id: &RunId, reason: &str) -> Result<(), String> {
    let now = app.clock.now();
    update_run(app, t, run_id, |run| {
        if run.status != RunStatus::Running {
            return false;
        }
        run.status = RunStatus::Failed;
        run.error = Some(format!("a part of the run is parked: {reason}"));
        run.finished_at = Some(now);
        true
    })
    .await
    .map_err(|e| e.reason)
}

/// `POST …/sync/{run}:cancel`: a running bulk run ends `cancelled`; its chunks stop before
/// their next customer.
pub async fn cancel(app: &App, t: &TenantId, run_id: &RunId) -> Result<SyncRun, ApiError> {
    for _ in 0..TRIES {
        let Some(mut run) = app.store.get_run(t, run_id).await? else {
            return Err(ApiError::NotFound(format!("no sync run `{run_id}`")));
        };
        if run.scope != RunScope::Bulk {
            return Err(ApiError::Conflict(
                "only bulk runs can be cancelled; a reconciliation run finishes on its own".into(),
            ));
        }
        if run.status != RunStatus::Running {
            return Err(ApiError::Conflict(format!(
                "run `{run_id}` has already finished"
            )));
        }
        run.status = RunStatus::Cancelled;
        run.finished_at = Some(app.clock.now());
        match app.store.put_run(&mut run).await {
            Ok(()) => return Ok(run),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        key: format!("run {run_id}"),
        reason: "kept changing".into(),
    }
    .into())
}
