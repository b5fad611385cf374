//! `SyncMembers`: up to [`MEMBERS_PER_JOB`] members brought up to date by one job, their mall
//! writes gathered into `POST /members:batch-tags` (`super::mall_writes`). The operator's
//! member-tag batches queue these (one per 100 members) instead of one job per member.
//!
//! Each member is repaired on its own, all of them at once (their WeCom calls wait for the
//! client's in-flight limit, one call per worker: `WecomClient::limit_in_flight`, so a spent
//! WeCom window still meets at most one 45009 per worker); the mall member is taken as the
//! hub last knew it (`View::mall_from_base`), so the job reads nothing from the mall. A member
//! whose repair fails (the mall refused its item, WeCom failed, its lock is busy) is handed
//! to a `SyncMember` job of its own, which retries and, if it keeps failing, parks alone with
//! its reason shown on the member; the others are done.

use super::members::{Turn, View, repair};
use super::worker::Outcome;
use super::{StepError, StepKind};
use crate::app::App;
use crate::domain::{Hint, Job, JobKind, MemberId, Tenant};
use crate::mall::client::MAX_BATCH_MEMBERS;

/// Most members one `SyncMembers` job takes: one batch request's worth.
pub const MEMBERS_PER_JOB: usize = MAX_BATCH_MEMBERS;

/// The jobs that carry the operator's changes to `members`: one `SyncMembers` per 100 (a lone
/// member gets a plain `SyncMember`), none of them reading the mall members.
pub fn jobs_for(members: Vec<MemberId>, hint: &Hint) -> Vec<JobKind> {
    let hint = &Hint {
        mall_from_base: true,
        ..hint.clone()
    };
    members
        .chunks(MEMBERS_PER_JOB)
        .map(|chunk| match chunk {
            [member] => JobKind::SyncMember {
                member: member.clone(),
                hint: hint.clone(),
            },
            _ => JobKind::SyncMembers {
                members: chunk.to_vec(),
                hint: hint.clone(),
            },
        })
        .collect()
}

pub async fn run(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    members: &[MemberId],
    hint: &Hint,
) -> Outcome {
    let hint = &Hint {
        mall_from_base: true,
        ..hint.clone()
    };
    // A mall without the batch endpoint: each member's own job (as many at once as workers,
    // paced together) writes it.
    if !app.mall.offers_batch(&App::mall_endpoint(tenant)) {
        return hand_over(app, tenant, members.iter().cloned(), hint).await;
    }
    let writes = super::mall_writes::MallWrites::alone_without_batch(app, tenant, job);
    let done = crate::concurrency::bounded(members.to_vec(), MEMBERS_PER_JOB, |member| {
        let (app, tenant, job, hint) = (app.clone(), tenant.clone(), job.clone(), hint.clone());
        let view = View {
            mall_from_base: true,
            batch: Some(writes.clone()),
            ..View::default()
        };
        async move {
            let out = repair(&app, &tenant, &job, &member, &hint, view, Turn::default()).await;
            (member, out)
        }
    })
    .await;
    let done = match done {
        Ok(d) => d,
        Err(e) => return Outcome::retry(format!("a member task failed: {e}")),
    };
    let mut alone = Vec::new();
    // WeCom's window is spent: the whole job runs again when it ends (members already done
    // find nothing to change), rather than a job per member meeting the same window.
    let mut window: Option<StepError> = None;
    for (member, out) in done {
        match out {
            Ok(_) => {}
            Err(e) if matches!(e.kind, StepKind::RateLimited { .. }) => {
                let until = |w: &StepError| match w.kind {
                    StepKind::RateLimited { after } => Some(after),
                    _ => None,
                };
                let later = |w: &StepError| until(w) >= until(&e);
                if !window.as_ref().is_some_and(later) {
                    window = Some(e);
                }
            }
            Err(e) => {
                tracing::info!(%member, why = e.reason, "member handed to a job of its own");
                alone.push(member);
            }
        }
    }
    match (
        hand_over(app, tenant, alone.into_iter(), hint).await,
        window,
    ) {
        (Outcome::Done, Some(e)) => e.into_outcome(),
        (outcome, _) => outcome,
    }
}

/// Queues a `SyncMember` job for each of `members`.
async fn hand_over(
    app: &App,
    tenant: &Tenant,
    members: impl Iterator<Item = MemberId>,
    hint: &Hint,
) -> Outcome {
    let kinds: Vec<JobKind> = members
        .map(|member| JobKind::SyncMember {
            member,
            hint: hint.clone(),
        })
        .collect();
    if kinds.is_empty() {
        return Outcome::Done;
    }
    match super::enqueue(app, tenant, kinds).await {
        Ok(_) => Outcome::Done,
        Err(e) => StepError::retry(format!("queueing members alone: {e}"), None).into_outcome(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Actor;

    #[test]
    fn members_are_queued_a_hundred_to_a_job_and_a_lone_one_as_a_plain_member_job() {
        let members: Vec<MemberId> = (0..201)
            .map(|i| MemberId::new_unchecked(format!("m_{i}")))
            .collect();
        let jobs = jobs_for(members, &Hint::from(Actor::Operator));
        let sizes: Vec<Option<usize>> = jobs
            .iter()
            .map(|k| match k {
                JobKind::SyncMembers { members, .. } => Some(members.len()),
                JobKind::SyncMember { .. } => None,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [Some(100), Some(100), None]);
        assert!(jobs_for(vec![], &Hint::default()).is_empty());
    }
}
