//! The operator API's audit route (`/admin/v1/tenants/{tenant}/audit`, see admin-api.md):
//! the tenant's audit log, newest first, a page at a time. Entries are written by the routes
//! ([`super::append_audit`]) and the jobs.

use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use serde_json::json;

pub(super) async fn audit(
    app: &App,
    t: &Tenant,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let limit = match req.query_param("limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::BadRequest("query `limit` must be 1..=500".into()))?,
    };
    let page = app
        .store
        .list_audit(
            &t.id,
            req.query_param("cursor").filter(|c| !c.is_empty()),
            limit,
        )
        .await?;
    let entries: Vec<_> = page
        .items
        .iter()
        .map(|e| json!({"at": e.at.to_rfc3339(), "side": e.side, "action": e.action, "entity": e.entity, "before": e.before, "after": e.after, "origin": e.origin}))
        .collect();
    Ok(HttpResponse::json(
        200,
        &json!({"entries": entries, "next_cursor": page.next_cursor}),
    ))
}
