//! The operator API's dead-letter routes (`/admin/v1/tenants/{tenant}/dead-letters`,
//! `dead-letters:redrive`, see admin-api.md): the tenant's parked jobs and redriving them.
//! What a parked job shows on its object is the job side's (`jobs::parked`).

use super::append_audit;
use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use serde_json::json;

/// How many dead letters one listing reads (the DLQ is deployment-wide; this tenant's are
/// filtered from it).
const DEAD_LETTER_SCAN: usize = 1000;

pub(super) async fn dead_letters(app: &App, t: &Tenant) -> Result<HttpResponse, ApiError> {
    let letters = app.queue.dead_letters(DEAD_LETTER_SCAN).await?;
    let items: Vec<_> = letters
        .iter()
        .filter(|d| d.job.as_ref().is_some_and(|j| j.tenant == t.id))
        .map(|d| {
            let job = d.job.as_ref();
            json!({
                "message_id": d.message_id,
                "job_id": job.map(|j| j.id.to_string()),
                "kind": job.map(|j| j.kind.name()),
                "job": job.map(|j| &j.kind),
                "error": d.reason,
                "receive_count": d.receive_count,
                "parked_at": d.parked_at.map(|p| p.to_rfc3339()),
            })
        })
        .collect();
    Ok(HttpResponse::json(200, &json!({"dead_letters": items})))
}

pub(super) async fn redrive(
    app: &App,
    t: &Tenant,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let requested = if req.body.is_empty() {
        None
    } else {
        Body::parse(&req.body, &["message_ids"])?.optional_str_list("message_ids")?
    };
    // Only this tenant's dead letters may be redriven through this tenant's route.
    let mine: Vec<String> = app
        .queue
        .dead_letters(DEAD_LETTER_SCAN)
        .await?
        .into_iter()
        .filter(|d| d.job.as_ref().is_some_and(|j| j.tenant == t.id))
        .map(|d| d.message_id)
        .filter(|id| requested.as_ref().is_none_or(|r| r.contains(id)))
        .collect();
    let moved = if mine.is_empty() {
        0
    } else {
        app.queue.redrive(Some(&mine)).await?
    };
    tracing::info!(tenant = %t.id, moved, "dead letters redriven");
    append_audit(
        app,
        &t.id,
        "dead_letters.redriven",
        format!("tenant:{}", t.id),
        None,
        Some(json!({"count": moved, "message_ids": mine})),
    )
    .await;
    Ok(HttpResponse::json(200, &json!({"redriven": moved})))
}
