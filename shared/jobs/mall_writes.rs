//! One job's mall member writes, gathered into `POST /members:batch-tags` (contract §3.1).
//!
//! A job that brings many members up to date at once (an operator's member-tag batch, a
//! reconciliation page's repairs, a bulk run's chunk) runs one repair per member, concurrently; each repair
//! reads, merges and marks WeCom on its own, then hands its mall change to the job's
//! [`MallWrites`] and waits. When every repair still running has handed in its change (or
//! 100 have), the changes go to the mall as one batch request, and each repair gets its own
//! member's result and carries on alone: a member the mall refused fails only that member's
//! repair. A repair joins (takes a [`Seat`]) once it holds its member's lock, so repairs
//! waiting for a lock another job holds never hold a batch back (two jobs' batches cannot
//! wait on each other). A bulk chunk, whose customers go in order, takes their seats before
//! their turns (else its first member's change would go out alone); their wait for a lock is
//! bounded instead (`members::repair`).
//!
//! One member to write goes out as `POST /members/{id}/tags` (the same request count). A mall
//! without the endpoint (404/405, remembered per mall by the client) gets one
//! `POST /members/{id}/tags` per member, a few at a time, paced by the client like every call.

use crate::app::App;
use crate::domain::{Job, JobId, MallTagId, MemberId, Tenant};
use crate::mall::client::{
    IdempotencyKey, MAX_BATCH_MEMBERS, MAX_IDS_PER_MEMBER_CALL, MallEndpoint, MallError,
    MallMember, MemberTagItem,
};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Member-by-member writes at once, for a mall without the batch endpoint.
const SINGLE_WRITES_AT_ONCE: usize = 8;

/// The result one member's write gets.
pub type Written = Result<MallMember, MallError>;

/// The mall writes of one job (see the module docs). Cheap to share: `Arc<MallWrites>`.
pub struct MallWrites {
    app: App,
    ep: MallEndpoint,
    job: JobId,
    /// On a mall without the batch endpoint: fail each member's write (its own job writes
    /// it) instead of writing them one by one within this job.
    alone_without_batch: bool,
    state: Mutex<Waiting>,
}

impl std::fmt::Debug for MallWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MallWrites")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Waiting {
    /// Seats taken and not yet given back.
    seated: usize,
    /// Changes handed in and not yet sent.
    changes: Vec<(MemberTagItem, oneshot::Sender<Written>)>,
}

/// A repair's place in its job's batch; given back when dropped.
#[derive(Debug)]
pub struct Seat(Arc<MallWrites>);

/// Keys of one member's own `POST /members/{id}/tags` (the same whether the job's batch or a
/// lone member job writes it, so a retry is answered from the mall's record).
pub fn member_key(job: &JobId, member: &MemberId) -> IdempotencyKey {
    IdempotencyKey::for_step(job, &format!("member-tags:{member}"))
}

impl MallWrites {
    pub fn new(app: &App, tenant: &Tenant, job: &Job) -> Arc<Self> {
        Self::build(app, tenant, job, false)
    }

    /// For a job of many members that hands a member it cannot finish to a job of its own:
    /// on a mall without the batch endpoint each member's write fails here (retryably), so
    /// its own job writes it, paced with every other job's, instead of this job writing 100
    /// members one by one at the mall's rate (longer than a job may take).
    pub fn alone_without_batch(app: &App, tenant: &Tenant, job: &Job) -> Arc<Self> {
        Self::build(app, tenant, job, true)
    }

    fn build(app: &App, tenant: &Tenant, job: &Job, alone_without_batch: bool) -> Arc<Self> {
        Arc::new(Self {
            app: app.clone(),
            ep: App::mall_endpoint(tenant),
            job: job.id.clone(),
            alone_without_batch,
            state: Mutex::default(),
        })
    }

    /// A seat in the batch, for a repair that holds its member's lock.
    pub fn seat(self: &Arc<Self>) -> Seat {
        self.lock().seated += 1;
        Seat(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The changes to send now, if every seated repair has handed its change in (or a full
    /// batch is waiting).
    fn ready(w: &mut Waiting) -> Option<Vec<(MemberTagItem, oneshot::Sender<Written>)>> {
        let n = w.changes.len();
        (n > 0 && (n >= w.seated || n >= MAX_BATCH_MEMBERS)).then(|| std::mem::take(&mut w.changes))
    }

    fn send_off(self: &Arc<Self>, changes: Vec<(MemberTagItem, oneshot::Sender<Written>)>) {
        let this = self.clone();
        tokio::spawn(async move { this.send(changes).await });
    }

    async fn send(&self, changes: Vec<(MemberTagItem, oneshot::Sender<Written>)>) {
        let (items, answers): (Vec<MemberTagItem>, Vec<oneshot::Sender<Written>>) =
            changes.into_iter().unzip();
        let results = if items.len() == 1 {
            None
        } else {
            let key =
                IdempotencyKey::for_step(&self.job, "member-batch").derive(&fingerprint(&items));
            match self
                .app
                .mall
                .batch_member_tags(&self.ep, &key, &items)
                .await
            {
                Ok(Some(results)) => Some(results),
                Ok(None) => None,
                Err(e) => Some(items.iter().map(|_| Err(e.clone())).collect()),
            }
        };
        let results = match results {
            Some(results) => results,
            None if self.alone_without_batch && items.len() > 1 => {
                let e = MallError {
                    op: "batch_member_tags",
                    status: None,
                    code: None,
                    message: "the mall has no batch endpoint; the member's own job writes it"
                        .to_owned(),
                    verdict: crate::mall::client::Verdict::RetryAfter(std::time::Duration::ZERO),
                    unknown_ids: Box::default(),
                };
                items.iter().map(|_| Err(e.clone())).collect()
            }
            None => self.one_by_one(items).await,
        };
        for (answer, result) in answers.into_iter().zip(results) {
            // A repair that stopped waiting has nothing to learn.
            let _ = answer.send(result);
        }
    }

    /// `POST /members/{id}/tags` per member, a few at a time.
    async fn one_by_one(&self, items: Vec<MemberTagItem>) -> Vec<Written> {
        let n = items.len();
        let written = crate::concurrency::bounded(items, SINGLE_WRITES_AT_ONCE, |item| {
            let app = self.app.clone();
            let ep = self.ep.clone();
            let key = member_key(&self.job, &item.member_id);
            async move {
                app.mall
                    .change_member_tags(&ep, &key, &item.member_id, &item.add, &item.remove)
                    .await
            }
        })
        .await;
        match written {
            Ok(w) => w,
            Err(e) => {
                let e = MallError {
                    op: "change_member_tags",
                    status: None,
                    code: None,
                    message: format!("a write task failed: {e}"),
                    verdict: crate::mall::client::Verdict::RetryAfter(
                        crate::mall::client::DEFAULT_RETRY_AFTER,
                    ),
                    unknown_ids: Box::default(),
                };
                (0..n).map(|_| Err(e.clone())).collect()
            }
        }
    }
}

impl Seat {
    /// Writes `member`'s change with the job's batch and returns the mall's answer for it.
    pub async fn write(
        &self,
        member: &MemberId,
        add: &[MallTagId],
        remove: &[MallTagId],
    ) -> Written {
        let batch = &self.0;
        if add.len() + remove.len() > MAX_IDS_PER_MEMBER_CALL {
            // Too many ids for one item: this member's own calls (the client splits them).
            let key = member_key(&batch.job, member);
            return batch
                .app
                .mall
                .change_member_tags(&batch.ep, &key, member, add, remove)
                .await;
        }
        let (tx, rx) = oneshot::channel();
        let ready = {
            let mut w = batch.lock();
            w.changes.push((
                MemberTagItem {
                    member_id: member.clone(),
                    add: add.to_vec(),
                    remove: remove.to_vec(),
                },
                tx,
            ));
            MallWrites::ready(&mut w)
        };
        if let Some(changes) = ready {
            batch.send_off(changes);
        }
        rx.await.unwrap_or_else(|_| {
            Err(MallError {
                op: "batch_member_tags",
                status: None,
                code: None,
                message: "the batch was dropped before it was sent".to_owned(),
                verdict: crate::mall::client::Verdict::RetryAfter(
                    crate::mall::client::DEFAULT_RETRY_AFTER,
                ),
                unknown_ids: Box::default(),
            })
        })
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let ready = {
            let mut w = self.0.lock();
            w.seated = w.seated.saturating_sub(1);
            MallWrites::ready(&mut w)
        };
        // The repairs still seated may all be waiting for this one.
        if let Some(changes) = ready {
            self.0.send_off(changes);
        }
    }
}

/// The batch's content in short: the same changes to the same members get the same key (a
/// retried job's batch is answered from the mall's record), different ones never do.
fn fingerprint(items: &[MemberTagItem]) -> String {
    let mut h = Sha256::new();
    for i in items {
        h.update(i.member_id.as_str().as_bytes());
        for (sign, ids) in [("+", &i.add), ("-", &i.remove)] {
            for id in ids {
                h.update(sign.as_bytes());
                h.update(id.as_str().as_bytes());
            }
        }
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}
