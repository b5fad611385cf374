//! Customer transfers (issue 15, `POST …/transfers`; wecom-api.md §6). A transfer is a
//! [`SyncRun`] of scope `transfer` whose [`TransferState`] says where each customer stands,
//! moved on by **one job** that re-queues itself until every customer is over:
//!
//! 1. **send** — `transfer_customer` (in-service or resigned) for the next 100 customers not
//!    sent; each customer's errcode is recorded (0: waiting; 40128 and the like: failed with
//!    WeCom's reason);
//! 2. **sleep** — until the takeover is due (24 h after the last chunk was sent): the job is
//!    rescheduled to that moment ([`Outcome::Reschedule`]: a wait, not a failure; on SQS it
//!    hops in 15-minute steps and goes back to sleep each time);
//! 3. **follow** — `transfer_result`, page by page: done (1), still waiting (2; looked at
//!    again [`FOLLOW_AGAIN_MS`] later), refused (3), at the takeover's limit (4), no record
//!    (5 or not listed: failed);
//! 4. **carry** — a customer taken over gets its tags on the new relation, 25 per job run: a
//!    customer bound to a mall member is brought up to date through the member-tag path
//!    (the new relation has no base, so the member's tags go onto it like onto any new
//!    relation); a customer bound to none gets the hub tags the index showed when the
//!    transfer started, added (never removed) on the takeover's relation with one
//!    `mark_tag`. Only then does the customer show `done`.
//!
//! Every WeCom call goes through the client's rate budget: a spent window reschedules the job
//! to its end. The run is written after each step with its version, so a redelivered job
//! repeats at most the step in hand (a chunk sent twice answers 40129 "in progress", which
//! counts as sent).

use super::members::{Turn, View, repair};
use super::worker::Outcome;
use super::{StepError, is_synced_wecom_tag};
use crate::app::App;
use crate::domain::*;
use crate::http::ApiError;
use crate::wecom::classify::{ApiOp, Verdict, classify_errcode_at, transfer_sent};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How often a write of the run is tried again when it changed meanwhile.
const TRIES: usize = 8;
/// A guard against a `transfer_result` that keeps answering with a cursor.
const MAX_RESULT_PAGES: usize = 1_000;

/// Records a transfer and queues its job.
pub async fn start(app: &App, tenant: &Tenant, state: TransferState) -> Result<SyncRun, ApiError> {
    let now = app.clock.now();
    let id = RunId::new_unchecked(new_ordered_id());
    let mut run = SyncRun::new(
        tenant.id.clone(),
        id.clone(),
        RunScope::Transfer,
        Actor::Operator,
        now,
    );
    run.chains.clear();
    run.recount();
    // A transfer sleeps a day between steps: it is never "stalled" like a sync run.
    run.progressed_at = None;
    run.transfer = Some(Box::new(state));
    app.store.put_run(&mut run).await?;
    let job = Job::new(
        tenant.id.clone(),
        JobKind::Transfer { run: id.clone() },
        now,
    );
    if let Err(e) = app.queue.send(&[job]).await {
        run.status = RunStatus::Failed;
        run.error = Some(format!("could not queue the transfer's job: {e}"));
        run.finished_at = Some(now);
        let _ = app.store.put_run(&mut run).await;
        return Err(e.into());
    }
    tracing::info!(tenant = %tenant.id, run = %id, "transfer started");
    Ok(run)
}

/// The transfer's job: one step, then re-queued for the next (or done).
pub async fn run(app: &App, tenant: &Tenant, job: &Job, run_id: &RunId) -> Outcome {
    match step(app, tenant, job, run_id).await {
        Ok(Some(delay)) => Outcome::Reschedule {
            delay,
            reason: format!("transfer {run_id}: next step"),
        },
        Ok(None) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// One step; answers when to run again (`None`: the transfer is over).
async fn step(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
) -> Result<Option<Duration>, StepError> {
    let t = &tenant.id;
    let Some(run) = app.store.get_run(t, run_id).await? else {
        return Ok(None);
    };
    let Some(state) = run.transfer.as_deref().cloned() else {
        return Ok(None);
    };
    if run.status != RunStatus::Running {
        return Ok(None);
    }
    let now = app.clock.now();
    match state.next_step(now) {
        TransferStep::Send(customers) => {
            send(app, tenant, run_id, &state, &customers).await?;
            Ok(Some(Duration::ZERO))
        }
        TransferStep::Carry(customers) => {
            carry(app, tenant, job, run_id, &state, &customers).await?;
            Ok(Some(Duration::ZERO))
        }
        TransferStep::Follow => {
            follow(app, tenant, run_id, &state).await?;
            Ok(Some(Duration::ZERO))
        }
        TransferStep::Sleep(until) => Ok(Some(Duration::from_millis(
            (until.millis() - now.millis()).max(0) as u64,
        ))),
        TransferStep::Over => {
            update(app, t, run_id, |run, _| {
                run.status = RunStatus::Done;
                run.finished_at = Some(now);
                true
            })
            .await?;
            tracing::info!(tenant = %t, run = %run_id, "transfer over");
            Ok(None)
        }
    }
}

/// WeCom's reason for a per-customer errcode (the classifier is the one place that reads
/// errcodes).
fn reason_of(op: ApiOp, errcode: i64, now: Timestamp) -> String {
    match classify_errcode_at(op, errcode, "", now) {
        Verdict::Permanent(reason) => reason,
        other => format!("WeCom errcode {errcode} ({})", other.label()),
    }
}

async fn send(
    app: &App,
    tenant: &Tenant,
    run_id: &RunId,
    state: &TransferState,
    customers: &[ExternalUserId],
) -> Result<(), StepError> {
    let creds = App::wecom_credentials(tenant);
    let op = if state.resigned {
        ApiOp::ResignedTransferCustomer
    } else {
        ApiOp::TransferCustomer
    };
    let answer = app
        .wecom
        .transfer_customer(
            &creds,
            state.resigned,
            &state.handover_userid,
            &state.takeover_userid,
            customers,
        )
        .await;
    let now = app.clock.now();
    let answers: BTreeMap<ExternalUserId, i64> = match answer {
        Ok(list) => list
            .into_iter()
            .map(|a| (a.external_userid, a.errcode))
            .collect(),
        // Refused as a whole (40097 the handover has not left, 40130…): every customer of the
        // chunk fails with the reason; the rest of the transfer goes on.
        Err(e) if !e.retryable() => {
            let reason = e.to_string();
            let code = e.errcode;
            update(app, &tenant.id, run_id, |_, s| {
                for c in customers {
                    if let Some(x) = s.customer_mut(c) {
                        x.status = CustomerTransfer::Failed;
                        x.errcode = code;
                        x.reason = Some(reason.clone());
                    }
                }
                true
            })
            .await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    update(app, &tenant.id, run_id, |_, s| {
        for c in customers {
            let Some(x) = s.customer_mut(c) else { continue };
            if x.sent_at.is_some() || x.status != CustomerTransfer::Waiting {
                continue;
            }
            match answers.get(c) {
                Some(code) => x.sent(
                    transfer_sent(*code),
                    *code,
                    || reason_of(op, *code, now),
                    now,
                ),
                None => {
                    x.status = CustomerTransfer::Failed;
                    x.reason = Some("WeCom's answer did not list this customer".into());
                }
            }
        }
        // Once every customer is sent, the next look is when the last one is due.
        if !s
            .customers
            .iter()
            .any(|c| c.status == CustomerTransfer::Waiting && c.sent_at.is_none())
        {
            s.follow_at = s.takeover_due();
        }
        true
    })
    .await
}

async fn follow(
    app: &App,
    tenant: &Tenant,
    run_id: &RunId,
    state: &TransferState,
) -> Result<(), StepError> {
    let creds = App::wecom_credentials(tenant);
    let mut listed: BTreeMap<ExternalUserId, (i64, i64)> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_RESULT_PAGES {
        let page = app
            .wecom
            .transfer_result(
                &creds,
                state.resigned,
                &state.handover_userid,
                &state.takeover_userid,
                cursor.as_deref(),
            )
            .await?;
        for c in page.customer {
            listed.insert(c.external_userid, (c.status, c.takeover_time));
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() && Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => break,
        }
    }
    let now = app.clock.now();
    update(app, &tenant.id, run_id, |_, s| {
        for c in s.customers.iter_mut().filter(|c| c.awaiting_wecom()) {
            let (status, at) = match listed.get(&c.external_userid) {
                Some((status, at)) => (Some(*status), *at),
                None => (None, 0),
            };
            c.followed(status, at, now);
        }
        s.follow_at = Some(now.plus_millis(FOLLOW_AGAIN_MS));
        true
    })
    .await
}

async fn carry(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    state: &TransferState,
    customers: &[ExternalUserId],
) -> Result<(), StepError> {
    let mut outcomes: Vec<(ExternalUserId, Result<(), String>)> = Vec::new();
    let mut transient = None;
    // Customers are independent (each its own member or relation): a few at once.
    let mut tasks = tokio::task::JoinSet::new();
    for c in customers {
        let tags = state
            .customers
            .iter()
            .find(|x| &x.external_userid == c)
            .map(|x| x.tags.clone())
            .unwrap_or_default();
        let (app, tenant, job, run_id) = (app.clone(), tenant.clone(), job.clone(), run_id.clone());
        let (takeover, c) = (state.takeover_userid.clone(), c.clone());
        tasks.spawn(async move {
            let r = carry_one(&app, &tenant, &job, &run_id, &takeover, &c, &tags).await;
            (c, r)
        });
        if tasks.len() >= CARRY_AT_ONCE
            && let Some(done) = tasks.join_next().await
        {
            settle_carry(done, &mut outcomes, &mut transient);
        }
    }
    while let Some(done) = tasks.join_next().await {
        settle_carry(done, &mut outcomes, &mut transient);
    }
    update(app, &tenant.id, run_id, |_, s| {
        for (c, outcome) in &outcomes {
            if let Some(x) = s.customer_mut(c) {
                match outcome {
                    Ok(()) => x.status = CustomerTransfer::Done,
                    Err(reason) => {
                        x.status = CustomerTransfer::Failed;
                        x.reason = Some(reason.clone());
                    }
                }
            }
        }
        !outcomes.is_empty()
    })
    .await?;
    match transient {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How many customers one job carries at once.
const CARRY_AT_ONCE: usize = 8;

/// Files one customer's carrying: done, failed for good (with the reason), or transient (the
/// step is tried again; what was carried is recorded first).
fn settle_carry(
    done: Result<(ExternalUserId, Result<(), StepError>), tokio::task::JoinError>,
    outcomes: &mut Vec<(ExternalUserId, Result<(), String>)>,
    transient: &mut Option<StepError>,
) {
    match done {
        Ok((c, Ok(()))) => outcomes.push((c, Ok(()))),
        Ok((c, Err(e))) if !e.comes_back() => outcomes.push((
            c,
            Err(format!(
                "taken over, but its tags could not be carried: {}",
                e.reason
            )),
        )),
        Ok((_, Err(e))) => *transient = Some(e),
        Err(e) => {
            *transient = Some(StepError::retry(
                format!("carrying a customer's tags: {e}"),
                None,
            ))
        }
    }
}

/// The takeover's new relation carries the customer's tags.
async fn carry_one(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run_id: &RunId,
    takeover: &WecomUserId,
    c: &ExternalUserId,
    tags: &[HubTagId],
) -> Result<(), StepError> {
    let t = &tenant.id;
    let cause = format!("transfer:{run_id}");
    if let Some(binding) = app.store.binding_by_customer(t, c).await? {
        let hint = Hint {
            cause: Some(cause),
            ..Hint::from(Actor::Operator)
        };
        repair(
            app,
            tenant,
            job,
            &binding.member_id,
            &hint,
            View::default(),
            Turn::default(),
        )
        .await?;
        return Ok(());
    }
    let creds = App::wecom_credentials(tenant);
    let read_at = app.clock.now();
    let detail = match app.wecom.get_external_contact(&creds, c).await {
        Ok(d) => d,
        Err(e) if !e.retryable() => {
            return Err(StepError::park(format!(
                "reading the customer in WeCom: {e}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(relation) = detail.follow_user.iter().find(|f| &f.userid == takeover) else {
        return Err(StepError::park(format!(
            "WeCom shows no relation of {takeover} with the customer"
        )));
    };
    let shown: BTreeSet<String> = relation
        .tags
        .iter()
        .filter(|x| is_synced_wecom_tag(x.kind))
        .filter_map(|x| x.tag_id.as_ref().map(ToString::to_string))
        .collect();
    let mut add = Vec::new();
    let mut applied = BTreeSet::new();
    for id in tags {
        match app.store.get_tag(t, id).await? {
            Some(x) if x.deleted_at.is_none() => match x.wecom.id {
                Some(w) if !shown.contains(w.as_str()) => {
                    add.push(w);
                    applied.insert(id.clone());
                }
                Some(_) => {}
                None => return Err(StepError::wait(format!("tag {id} is not in WeCom yet"))),
            },
            // Deleted meanwhile: nothing to carry.
            _ => {}
        }
    }
    let mut after = shown.clone();
    if !add.is_empty() {
        app.wecom.mark_tag(&creds, takeover, c, &add, &[]).await?;
        after.extend(add.iter().map(ToString::to_string));
        app.store
            .append_audit(&AuditEntry {
                tenant: t.clone(),
                at: app.clock.now(),
                side: Actor::Wecom,
                action: "relation.tags_changed".into(),
                entity: format!("relation:{takeover}/{c}"),
                before: Some(json!(shown)),
                after: Some(json!(after)),
                origin: cause,
            })
            .await?;
    }
    // The index: the relation as tagsync knows it (what it read plus what it applied), unless
    // an event's job filed a newer read meanwhile; then only what this carried is added.
    let known = BTreeMap::from([(
        takeover.clone(),
        after.into_iter().map(WecomTagId::new_unchecked).collect(),
    )]);
    let read =
        super::customer_index::read_of_detail(app, t, &detail, Some(None), Some(&known)).await?;
    super::customer_index::record_after_write(app, t, c, &read, read_at, takeover, &applied)
        .await?;
    Ok(())
}

/// Rewrites the run's transfer state with `change` (which answers whether it changed
/// anything), again when another copy of the job wrote it meanwhile.
async fn update(
    app: &App,
    t: &TenantId,
    run_id: &RunId,
    mut change: impl FnMut(&mut SyncRun, &mut TransferState) -> bool,
) -> Result<(), StepError> {
    for _ in 0..TRIES {
        let Some(mut run) = app.store.get_run(t, run_id).await? else {
            return Ok(());
        };
        let Some(mut state) = run.transfer.take() else {
            return Ok(());
        };
        let changed = change(&mut run, &mut state);
        run.transfer = Some(state);
        if !changed {
            return Ok(());
        }
        match app.store.put_run(&mut run).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry(
        format!("transfer {run_id} kept changing"),
        Some(Duration::ZERO),
    ))
}

/// A parked transfer job fails its transfer at once, with the reason; the customers keep
/// where they stood.
pub async fn parked(app: &App, t: &TenantId, run_id: &RunId, reason: &str) -> Result<(), String> {
    let now = app.clock.now();
    update(app, t, run_id, |run, _| {
        if run.status != RunStatus::Running {
            return false;
        }
        run.status = RunStatus::Failed;
        run.error = Some(format!("the transfer's job is parked: {reason}"));
        run.finished_at = Some(now);
        true
    })
    .await
    .map_err(|e| e.reason)
}

/// A transfer as the API shows it (`with_customers`: every customer's status).
pub fn view(run: &SyncRun, with_customers: bool) -> serde_json::Value {
    let Some(s) = run.transfer.as_deref() else {
        return json!({"transfer_id": run.id});
    };
    let mut v = json!({
        "transfer_id": run.id,
        "status": run.status,
        "error": run.error,
        "handover_userid": s.handover_userid,
        "takeover_userid": s.takeover_userid,
        "resigned": s.resigned,
        "started_at": run.started_at.to_rfc3339(),
        "finished_at": run.finished_at.map(|t| t.to_rfc3339()),
        "next_look_at": s.follow_at.filter(|_| run.status == RunStatus::Running).map(|t| t.to_rfc3339()),
        "counts": s.counts(),
    });
    if with_customers {
        let customers: Vec<serde_json::Value> = s
            .customers
            .iter()
            .map(|c| {
                let mut x = json!({"external_userid": c.external_userid, "status": c.status});
                if let Some(code) = c.errcode {
                    x["errcode"] = json!(code);
                }
                if let Some(r) = &c.reason {
                    x["reason"] = json!(r);
                }
                x
            })
            .collect();
        v["customers"] = json!(customers);
    }
    v
}
