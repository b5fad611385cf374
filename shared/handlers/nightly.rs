//! The nightly trigger (EventBridge in the cloud, the in-process timer of `tagsync serve`).
//! It decides which tenants are due; the full reconciliation it will start is its own
//! capability and not part of this version, so today it reports and starts nothing.

use crate::app::App;
use crate::domain::TenantId;
use crate::ports::StoreError;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NightlyReport {
    /// Tenants with the customer-tag feature on: a reconciliation is due for each.
    pub due: Vec<TenantId>,
    /// Tenants skipped because `tags_enabled` is off.
    pub skipped: Vec<TenantId>,
    /// Runs actually started (none until reconciliation lands).
    pub started: Vec<String>,
}

pub async fn run(app: &App) -> Result<NightlyReport, StoreError> {
    let mut report = NightlyReport::default();
    for t in app.store.list_tenants().await? {
        if t.settings.tags_enabled {
            report.due.push(t.id)
        } else {
            report.skipped.push(t.id)
        }
    }
    tracing::info!(
        due = report.due.len(),
        skipped = report.skipped.len(),
        "nightly trigger: reconciliation is not available in this version; nothing started"
    );
    Ok(report)
}
