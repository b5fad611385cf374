//! Keeps each tenant's copy of the corp directory (`domain::directory`) in step with WeCom:
//! read whole (`department/list`, then `user/simplelist` of every root department with its
//! children) and stored when it differs. Called by the admin route
//! (`POST …/directory:refresh`), the nightly run, and a `change_contact` callback (a
//! department or a staff member changed: the event is a thin signal, so the whole directory
//! is read again).

use super::Step;
use crate::app::App;
use crate::domain::{Actor, Directory, Hint, JobKind, Tenant, TenantId};
use crate::ports::StoreError;

/// How often a refresh re-reads and writes again when another refresh stored meanwhile.
const WRITE_ATTEMPTS: usize = 3;

/// Reads the directory from WeCom and stores it. Answers what is stored now.
pub async fn refresh(app: &App, tenant: &Tenant) -> Step<Directory> {
    let creds = App::wecom_credentials(tenant);
    let departments = app.wecom.department_list(&creds, None).await?;
    let known: std::collections::BTreeSet<u32> = departments.iter().map(|d| d.id).collect();
    let mut staff = Vec::new();
    // Roots: departments whose parent is not in the tree (the corp's root has parent 0).
    for root in departments.iter().filter(|d| !known.contains(&d.parent_id)) {
        staff.extend(app.wecom.user_simplelist(&creds, root.id, true).await?);
    }
    let read = Directory::new(tenant.id.clone(), departments, staff, app.clock.now());
    let mut last = None;
    for _ in 0..WRITE_ATTEMPTS {
        let stored = app.store.get_directory(&tenant.id).await?;
        let mut next = read.clone();
        next.version = stored.map_or(0, |s| s.version);
        match app.store.put_directory(&mut next).await {
            Ok(()) => {
                tracing::info!(tenant = %tenant.id, departments = next.departments.len(),
                    staff = next.staff.len(), "directory refreshed from WeCom");
                return Ok(next);
            }
            Err(e) if e.is_conflict() => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| StoreError::Invalid("no directory write attempted".into()))
        .into())
}

/// A group job for every live scoped group whose range includes sub-departments (and whose
/// rule group exists): after a department change its expanded range may differ, and each
/// job sends WeCom only the difference (docs/scoped-groups.md).
pub async fn expanded_scopes(app: &App, t: &TenantId) -> Step<Vec<JobKind>> {
    Ok(app
        .store
        .list_groups(t)
        .await?
        .into_iter()
        .filter(|g| {
            g.deleted_at.is_none()
                && g.scope
                    .as_ref()
                    .is_some_and(|s| s.include_sub && s.strategy_id.is_some())
        })
        .map(|g| JobKind::SyncGroup {
            group: g.id,
            hint: Hint::from(Actor::Wecom),
        })
        .collect())
}
