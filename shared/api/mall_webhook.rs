//! `POST /mall/webhook/{tenant}`: signed mall webhooks (mall-connector.md §2). Check the size,
//! the signature and the replay window, parse strictly, dedupe by `event_id`, enqueue, and
//! answer 202 only once the job is queued.

use super::inbound::{Accepted, OnRepeat, accept};
use super::inbound_tenant;
use crate::app::App;
use crate::domain::InboundEvent;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::mall::webhook::{MAX_BODY_BYTES, MallEvent, WebhookError, parse_event, verify};

/// The mall retries for up to 24 h; dedupe records outlive that.
const DEDUPE_TTL_SECS: i64 = 48 * 3600;

pub async fn handle(app: &App, tenant: &str, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let tenant = inbound_tenant(app, tenant).await?;
    let now = app.clock.now().secs();
    verify(
        tenant.secrets.mall_webhook_secret.expose().as_bytes(),
        req.header("x-mall-timestamp"),
        req.header("x-mall-signature"),
        &req.body,
        now,
    )
    .map_err(webhook_error)?;
    let hook = parse_event(&req.body).map_err(webhook_error)?;
    if let Some(header_id) = req.header("x-mall-event-id") {
        if header_id != hook.event_id {
            return Err(ApiError::BadRequest(
                "header `X-Mall-Event-Id` differs from body field `event_id`".into(),
            ));
        }
    }
    if !tenant.settings.tags_enabled {
        tracing::info!(tenant = %tenant.id, event_id = %hook.event_id, "customer-tag feature is off: webhook acknowledged and dropped");
        return Ok(ignored(app));
    }
    // The echo of tagsync's own write: nothing to apply, nothing to queue.
    if hook
        .origin_request_id
        .as_deref()
        .is_some_and(crate::mall::client::IdempotencyKey::is_own)
    {
        tracing::debug!(tenant = %tenant.id, event_id = %hook.event_id, "echo of tagsync's own write: acknowledged");
        return Ok(ignored(app));
    }
    if let MallEvent::Unknown { type_name } = &hook.event {
        tracing::info!(tenant = %tenant.id, event_id = %hook.event_id, r#type = %type_name, "unknown webhook type: acknowledged and ignored");
        return Ok(ignored(app));
    }
    let body: serde_json::Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let event = InboundEvent::Mall {
        event_id: hook.event_id.clone(),
        event_type: hook.event.type_name().to_string(),
        occurred_at: hook.occurred_at,
        origin_request_id: hook.origin_request_id.clone(),
        body,
    };
    let key = format!("mall#{}#{}", tenant.id, hook.event_id);
    if accept(
        app,
        &tenant.id,
        &key,
        DEDUPE_TTL_SECS,
        event,
        OnRepeat::Drop,
    )
    .await?
        == Accepted::Duplicate
    {
        tracing::info!(tenant = %tenant.id, event_id = %hook.event_id, "duplicate webhook: already queued");
    }
    Ok(HttpResponse::empty(202))
}

/// The one mapping of webhook errors to answers: 401 for signature and time problems, 400
/// for schema problems (the message names the field), 413 for size.
fn webhook_error(e: WebhookError) -> ApiError {
    match e.status() {
        401 => ApiError::Unauthorized(e.to_string()),
        413 => ApiError::PayloadTooLarge(MAX_BODY_BYTES),
        _ => ApiError::BadRequest(e.to_string()),
    }
}

/// Acknowledged without recording anything (the feature is off, or tagsync does not use it).
fn ignored(app: &App) -> HttpResponse {
    app.metrics.incr(
        crate::metrics::EVENTS,
        &[("source", "mall"), ("outcome", "ignored")],
    );
    HttpResponse::empty(202)
}
