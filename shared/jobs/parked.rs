//! What a parked job shows beyond its dead letter, so operators see failure as failure: the
//! library object a group or tag job was bringing up to date shows `failed` with the reason
//! on the sides it had not brought there, and a parked page of a sync run fails the run at
//! once (see `jobs::reconcile::page_parked`). The job that then succeeds (a redrive, or any
//! later job for the object) shows the sides `synced` again.
//!
//! Member jobs name a member, whose views carry no sync state: a parked member job is shown by
//! its dead letter. Inbound and probe jobs name no hub object.

use super::reconcile;
use crate::app::App;
use crate::domain::*;

/// Shows the failure of a job just parked with `reason`; `side` is the side the failure came
/// from, when the job knew. Best effort: a failure to show it is logged (the dead letter
/// stands either way).
pub async fn show(app: &App, job: &Job, reason: &str, side: Option<Side>) {
    let t = &job.tenant;
    let shown = match &job.kind {
        JobKind::SyncGroup { group, .. } => group_failed(app, t, group, reason, side).await,
        JobKind::SyncTag { tag, .. } => tag_failed(app, t, tag, reason, side).await,
        JobKind::RunChain { run, chain } => reconcile::page_parked(app, t, run, chain, reason)
            .await
            .map_err(|e| e.reason),
        JobKind::BulkStart { run } | JobKind::BulkChunk { run, .. } => {
            crate::jobs::bulk_tags::parked(app, t, run, reason).await
        }
        JobKind::Undo { run, .. } => crate::jobs::undo::parked(app, t, run, reason).await,
        JobKind::Transfer { run } => crate::jobs::transfers::parked(app, t, run, reason).await,
        JobKind::SyncMember { .. }
        | JobKind::SyncMembers { .. }
        | JobKind::Inbound { .. }
        | JobKind::Probe { .. }
        | JobKind::Rules { .. } => Ok(()),
    };
    if let Err(e) = shown {
        tracing::warn!(error = %e, "the parked job's failure is not shown on its object");
    }
}

/// How often a mark is tried again when the object changed under it.
const TRIES: usize = 5;

async fn tag_failed(
    app: &App,
    t: &TenantId,
    id: &HubTagId,
    reason: &str,
    side: Option<Side>,
) -> Result<(), String> {
    for _ in 0..TRIES {
        // A job for an object new to the hub may park before the hub has it: nothing to show.
        let Some(mut x) = app.store.get_tag(t, id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let wecom = fail_side(&mut x.wecom, Side::Wecom, side, reason);
        let mall = fail_side(&mut x.mall, Side::Mall, side, reason);
        if !(wecom || mall) {
            return Ok(());
        }
        match app.store.put_tag(&mut x).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("tag {id} kept changing"))
}

async fn group_failed(
    app: &App,
    t: &TenantId,
    id: &HubGroupId,
    reason: &str,
    side: Option<Side>,
) -> Result<(), String> {
    for _ in 0..TRIES {
        let Some(mut g) = app
            .store
            .get_group(t, id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let wecom = fail_side(&mut g.wecom, Side::Wecom, side, reason);
        let mall = fail_side(&mut g.mall, Side::Mall, side, reason);
        if !(wecom || mall) {
            return Ok(());
        }
        match app.store.put_group(&mut g).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("group {id} kept changing"))
}

/// Marks one side `failed` with `reason` if the parked job had not brought the object there
/// (the side is pending, or failed already) or the failure came from that side. A read-only
/// WeCom side stays read-only (tagsync never writes there); a side in sync stays synced.
/// Returns whether the link changed.
fn fail_side<I, S>(
    link: &mut SideLink<I, S>,
    this: Side,
    failed: Option<Side>,
    reason: &str,
) -> bool {
    let behind = match link.state {
        SyncState::ReadOnly => false,
        SyncState::Pending | SyncState::Failed => true,
        SyncState::Synced => failed == Some(this),
    };
    if !behind || (link.state == SyncState::Failed && link.error.as_deref() == Some(reason)) {
        return false;
    }
    link.fail(reason);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(state: SyncState) -> SideLink<String, String> {
        SideLink {
            id: Some("x".into()),
            base: None,
            state,
            error: None,
        }
    }

    #[test]
    fn a_parked_job_fails_the_sides_it_had_not_brought_up_to_date_and_the_side_that_failed() {
        let why = "mall unreachable (gave up after 5 tries)";
        let mut pending = link(SyncState::Pending);
        assert!(fail_side(&mut pending, Side::Wecom, None, why));
        assert_eq!(
            (pending.state, pending.error.as_deref()),
            (SyncState::Failed, Some(why))
        );

        let mut synced = link(SyncState::Synced);
        assert!(!fail_side(&mut synced, Side::Wecom, Some(Side::Mall), why));
        assert_eq!(synced.state, SyncState::Synced, "another side's failure");
        assert!(fail_side(&mut synced, Side::Mall, Some(Side::Mall), why));
        assert_eq!(synced.state, SyncState::Failed, "the side that failed");

        let mut read_only = link(SyncState::ReadOnly);
        assert!(!fail_side(
            &mut read_only,
            Side::Wecom,
            Some(Side::Wecom),
            why
        ));
        assert_eq!(read_only.state, SyncState::ReadOnly);

        let mut failed = link(SyncState::Failed);
        failed.error = Some("an older reason".into());
        assert!(fail_side(&mut failed, Side::Mall, None, why));
        assert_eq!(
            failed.error.as_deref(),
            Some(why),
            "the newest reason shows"
        );
        assert!(
            !fail_side(&mut failed, Side::Mall, None, why),
            "no write for no change"
        );
    }
}
