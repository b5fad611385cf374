//! Undo of a rule (automation.md §1): a tracked run (scope `undo`, followed at
//! `GET …/sync/{run_id}`) that walks the rule's firings newest first, a page per job, and
//! reverses each `applied` one per (customer, tag) — unless someone or something else changed
//! that tag on the customer after the firing (the mark is no longer the one the firing
//! wrote), which is left alone and listed in the run's `kept`. Each reversal is a hub change
//! with origin `rule-undo:{id}`, written with the firing's new outcome `undone` in one
//! transaction; member jobs carry it to the sides. One undo at a time per rule (a lease); it
//! neither blocks nor waits for sync runs.

use super::worker::Outcome;
use super::{Step, StepError, enqueue};
use crate::app::App;
use crate::domain::*;
use crate::ports::{StoreError, Write};
use crate::sync::rules::undo_plan;
use serde_json::json;
use std::collections::BTreeSet;

/// Firings one undo job looks at.
const PAGE: usize = 100;
/// An undo holds its rule's lease this long between pages (a crashed run frees it by then).
const LEASE_MS: i64 = 10 * 60 * 1000;
const WRITE_ATTEMPTS: usize = 6;

fn lease(t: &TenantId, rule: &RuleId) -> String {
    format!("undo#{t}#{rule}")
}

/// Why an undo did not start.
#[derive(Debug)]
pub enum StartError {
    /// An undo of this rule is going: its run id.
    Busy(String),
    Store(StoreError),
    Queue(crate::ports::QueueError),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Starts an undo run of `rule` (firings at or after `since`, all when `None`).
pub async fn start(
    app: &App,
    tenant: &Tenant,
    rule: &RuleId,
    since: Option<Timestamp>,
) -> Result<SyncRun, StartError> {
    let now = app.clock.now();
    let id = RunId::new_unchecked(new_ordered_id());
    let name = lease(&tenant.id, rule);
    if !app
        .store
        .acquire_lease(&name, id.as_str(), now, now.plus_millis(LEASE_MS))
        .await?
    {
        return Err(StartError::Busy(format!("an undo of rule {rule} is going")));
    }
    let mut run = SyncRun::new(
        tenant.id.clone(),
        id.clone(),
        RunScope::Undo,
        Actor::Operator,
        now,
    );
    run.rule_id = Some(rule.clone());
    if let Err(e) = app.store.put_run(&mut run).await {
        let _ = app.store.release_lease(&name, id.as_str()).await;
        return Err(e.into());
    }
    let job = Job::new(
        tenant.id.clone(),
        JobKind::Undo {
            run: id.clone(),
            rule: rule.clone(),
            since,
            page: 0,
        },
        now,
    );
    if let Err(e) = app.queue.send(&[job]).await {
        let _ = finish(app, &tenant.id, &id, Some(format!("could not queue: {e}"))).await;
        return Err(StartError::Queue(e));
    }
    Ok(run)
}

pub async fn run(
    app: &App,
    tenant: &Tenant,
    _job: &Job,
    run: &RunId,
    rule: &RuleId,
    since: Option<Timestamp>,
    page: u64,
) -> Outcome {
    match advance(app, tenant, run, rule, since, page).await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// A parked undo page fails its run at once (failure shows as failure) and frees the rule.
pub async fn parked(app: &App, t: &TenantId, run: &RunId, reason: &str) -> Result<(), String> {
    finish(app, t, run, Some(format!("a page was parked: {reason}")))
        .await
        .map_err(|e| e.reason)
}

/// One page: the next firings after the chain's cursor.
async fn advance(
    app: &App,
    tenant: &Tenant,
    run_id: &RunId,
    rule: &RuleId,
    since: Option<Timestamp>,
    page: u64,
) -> Step<()> {
    let t = &tenant.id;
    let Some(run) = app.store.get_run(t, run_id).await? else {
        return Err(StepError::park(format!("undo run {run_id} is gone")));
    };
    let Some(chain) = run.chains.get("undo").cloned() else {
        return Err(StepError::park(format!("undo run {run_id} has no chain")));
    };
    if run.status != RunStatus::Running || chain.done || chain.page != page {
        // A copy of a page already done.
        return Ok(());
    }
    let listed = app
        .store
        .list_firings(t, rule, chain.cursor.as_deref(), PAGE)
        .await?;
    let past_since = |f: &Firing| since.is_some_and(|s| f.at < s);
    let mut undone = 0u64;
    let mut kept = Vec::new();
    let mut changed = BTreeSet::new();
    let mut reached_since = false;
    for firing in &listed.items {
        if past_since(firing) {
            reached_since = true;
            break;
        }
        if firing.outcome != FiringOutcome::Applied {
            continue;
        }
        let (did, left) = reverse(app, firing, run_id).await?;
        if did {
            undone += 1;
            if let Some(m) = &firing.member_id {
                changed.insert(m.clone());
            }
        }
        kept.extend(left);
    }
    if !changed.is_empty() {
        let kinds: Vec<JobKind> = changed
            .into_iter()
            .map(|member| JobKind::SyncMember {
                member,
                hint: Hint::from(Actor::Hub),
            })
            .collect();
        enqueue(app, tenant, kinds)
            .await
            .map_err(|e| StepError::retry(format!("queueing member jobs: {e}"), None))?;
    }
    let done = reached_since || listed.next_cursor.is_none();
    record_page(
        app,
        t,
        run_id,
        page,
        listed.next_cursor.clone(),
        done,
        listed.items.len() as u64,
        undone,
        kept,
    )
    .await?;
    if done {
        finish(app, t, run_id, None).await?;
        return Ok(());
    }
    let next = JobKind::Undo {
        run: run_id.clone(),
        rule: rule.clone(),
        since,
        page: page + 1,
    };
    app.store
        .acquire_lease(
            &lease(t, rule),
            run_id.as_str(),
            app.clock.now(),
            app.clock.now().plus_millis(LEASE_MS),
        )
        .await?;
    app.queue
        .send(&[Job::new(t.clone(), next, app.clock.now())])
        .await
        .map_err(|e| StepError::retry(format!("queueing the next undo page: {e}"), None))?;
    Ok(())
}

/// Reverses one applied firing as far as its marks are still the rule's; answers whether it
/// was undone and the (customer, tag) pairs kept.
async fn reverse(
    app: &App,
    firing: &Firing,
    run_id: &RunId,
) -> Step<(bool, Vec<serde_json::Value>)> {
    let t = &firing.tenant;
    let Some(member) = &firing.member_id else {
        return Ok((false, Vec::new()));
    };
    let who = firing
        .customer
        .as_ref()
        .map_or_else(|| member.to_string(), |c| c.to_string());
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut mt) = app.store.get_member_tags(t, member).await? else {
            return Ok((false, Vec::new()));
        };
        let plan = undo_plan(&firing.written, &mt.marks);
        let kept: Vec<serde_json::Value> = plan
            .kept
            .iter()
            .map(|tag| {
                let reason = match mt.marks.get(tag) {
                    Some(m) => format!(
                        "changed after the firing by someone else (now {} since {})",
                        if m.present { "on" } else { "off" },
                        m.at.to_rfc3339()
                    ),
                    None => "no longer marked on the member".to_owned(),
                };
                json!({"customer": who, "tag_id": tag, "reason": reason})
            })
            .collect();
        if plan.reverse.is_empty() {
            // Nothing of it is the rule's any more: the firing stays `applied`, its tags listed.
            return Ok((false, kept));
        }
        let now = app.clock.now();
        let mut f = firing.clone();
        f.outcome = FiringOutcome::Undone;
        f.undone_by = Some(run_id.to_string());
        let mut writes = vec![Write::Firing(f)];
        {
            let before = mt.present();
            for (tag, on) in &plan.reverse {
                mt.marks.insert(
                    tag.clone(),
                    TagMark {
                        present: *on,
                        at: now,
                    },
                );
            }
            writes.push(Write::Audit(AuditEntry {
                tenant: t.clone(),
                at: now,
                side: Actor::Hub,
                action: "member.tags_changed".into(),
                entity: format!("member:{member}"),
                before: Some(json!({ "tag_ids": before })),
                after: Some(json!({ "tag_ids": mt.present(), "undo_run": run_id })),
                origin: format!("rule-undo:{}", firing.rule_id),
            }));
            writes.push(Write::MemberTags(mt));
        }
        match app.store.transact(writes).await {
            Ok(()) => return Ok((true, kept)),
            // The firing itself changed meanwhile (a copy of this page undid it): done.
            Err(StoreError::TransactionConflict { failed }) if failed.iter().any(|f| f.0 == 0) => {
                return Ok((false, Vec::new()));
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry(
        format!("member {member} kept changing during the undo"),
        Some(std::time::Duration::ZERO),
    ))
}

/// Moves the run's chain past `page` with what the page did (once: a stale copy finds the
/// chain past it).
#[allow(clippy::too_many_arguments)] // the page's counts, each its own field of the report
async fn record_page(
    app: &App,
    t: &TenantId,
    run_id: &RunId,
    page: u64,
    cursor: Option<String>,
    done: bool,
    looked: u64,
    undone: u64,
    kept: Vec<serde_json::Value>,
) -> Step<()> {
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut run) = app.store.get_run(t, run_id).await? else {
            return Ok(());
        };
        let Some(chain) = run.chains.get_mut("undo") else {
            return Ok(());
        };
        if chain.page != page {
            return Ok(());
        }
        chain.page += 1;
        chain.cursor = cursor.clone();
        chain.done = done;
        run.progress.entities_compared += looked;
        *run.repaired.entry("firings_undone".into()).or_default() += undone;
        if !kept.is_empty() {
            *run.skipped.entry("tags_kept".into()).or_default() += kept.len() as u64;
        }
        run.kept.extend(kept.iter().cloned());
        run.progressed_at = Some(app.clock.now());
        run.recount();
        match app.store.put_run(&mut run).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::retry("the undo run kept changing", None))
}

/// Ends the run (failed with `error`, or done) and frees the rule for another undo.
async fn finish(app: &App, t: &TenantId, run_id: &RunId, error: Option<String>) -> Step<()> {
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut run) = app.store.get_run(t, run_id).await? else {
            return Ok(());
        };
        if run.status == RunStatus::Running {
            run.status = if error.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Done
            };
            run.error = error.clone();
            run.finished_at = Some(app.clock.now());
            match app.store.put_run(&mut run).await {
                Ok(()) => {}
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(rule) = &run.rule_id {
            app.store
                .release_lease(&lease(t, rule), run_id.as_str())
                .await?;
        }
        return Ok(());
    }
    Err(StepError::retry("the undo run kept changing", None))
}
