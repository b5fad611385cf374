//! The nightly trigger (EventBridge in the cloud, the in-process timer of `tagsync serve`):
//! starts an `all` reconciliation run for every tenant whose customer-tag feature is on. A
//! tenant whose previous run is still going is skipped (runs are single-flight per tenant).
//! The automatic-sync switches do not hold the nightly run back: it is the repair that brings
//! the sides together, as the issue that asked for it says. It also reads each such tenant's
//! directory again (`jobs::directory`), so a department change whose callback was lost is
//! caught within a day.

use super::reconcile::{self, StartError};
use crate::app::App;
use crate::domain::{Actor, RunScope, TenantId};
use crate::ports::StoreError;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NightlyReport {
    /// Tenants with the customer-tag feature on: a reconciliation is due for each.
    pub due: Vec<TenantId>,
    /// Tenants skipped because `tags_enabled` is off.
    pub skipped: Vec<TenantId>,
    /// Runs started, by id.
    pub started: Vec<String>,
    /// Tenants whose run could not start (still running, or an error), with why.
    pub not_started: Vec<(TenantId, String)>,
    /// Tenants whose directory (departments and staff) was read again from WeCom.
    pub directories: Vec<TenantId>,
    /// Tenants whose directory could not be read, with why (the stored one stays).
    pub directories_failed: Vec<(TenantId, String)>,
}

pub async fn run(app: &App) -> Result<NightlyReport, StoreError> {
    let mut report = NightlyReport::default();
    for t in app.store.list_tenants().await? {
        if !t.settings.tags_enabled {
            report.skipped.push(t.id);
            continue;
        }
        report.due.push(t.id.clone());
        // The directory first: scopes expanded after the run's start read it.
        match super::directory::refresh(app, &t).await {
            Ok(_) => {
                report.directories.push(t.id.clone());
                // The backstop for a lost department callback: ranges with sub-departments
                // are brought to the tree just read.
                let queued = match super::directory::expanded_scopes(app, &t.id).await {
                    Ok(jobs) => super::enqueue(app, &t, jobs)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.reason),
                };
                if let Err(e) = queued {
                    tracing::warn!(tenant = %t.id, error = %e, "nightly scope expansion not queued");
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %t.id, error = %e.reason, "nightly directory refresh failed");
                report.directories_failed.push((t.id.clone(), e.reason));
            }
        }
        match reconcile::start(app, &t, RunScope::All, Actor::System).await {
            Ok(run) => report.started.push(run.id.to_string()),
            Err(e @ (StartError::Busy(_) | StartError::Off)) => {
                report.not_started.push((t.id.clone(), e.to_string()))
            }
            Err(e) => {
                tracing::warn!(tenant = %t.id, error = %e, "nightly run not started");
                report.not_started.push((t.id.clone(), e.to_string()))
            }
        }
    }
    tracing::info!(
        due = report.due.len(),
        started = report.started.len(),
        skipped = report.skipped.len(),
        not_started = report.not_started.len(),
        "nightly trigger"
    );
    Ok(report)
}
