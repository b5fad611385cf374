//! `GET/POST /wecom/callback/{tenant}`: WeCom's URL verification and encrypted event
//! callbacks (admin-api.md; wecom-api.md §4–5). Verify, decrypt, check the corp, parse, dedupe,
//! enqueue — never a call to WeCom on the request path, and a 200 only once the job is queued.

use super::inbound::{Accepted, OnRepeat, accept};
use super::inbound_tenant;
use crate::app::App;
use crate::domain::{InboundEvent, Tenant};
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::wecom::crypto::{CallbackCrypto, CryptoError, parse_envelope};
use crate::wecom::event::{EventKind, WecomEvent};
use http::Method;

/// WeCom's callbacks are small; anything bigger is not from WeCom.
pub const MAX_BODY: usize = 64 * 1024;

/// Dedupe records outlive WeCom's retries (three, within minutes) by a wide margin.
const DEDUPE_TTL_SECS: i64 = 24 * 3600;

pub async fn handle(app: &App, tenant: &str, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let tenant = inbound_tenant(app, tenant).await?;
    let crypto = CallbackCrypto::new(
        tenant.secrets.callback_token.expose(),
        tenant.secrets.encoding_aes_key.expose(),
        tenant.corp_id.as_str(),
    )
    .map_err(|e| {
        ApiError::Internal(format!(
            "tenant {}: callback settings unusable: {e}",
            tenant.id
        ))
    })?;
    let param = |name: &str| {
        req.query_param(name)
            .ok_or_else(|| ApiError::BadRequest(format!("query parameter `{name}` is required")))
    };
    let (signature, timestamp, nonce) = (
        param("msg_signature")?,
        param("timestamp")?,
        param("nonce")?,
    );
    match req.method {
        Method::GET => {
            // URL verification: answer the decrypted echostr as plain text, nothing else.
            let echostr = param("echostr")?;
            crypto
                .verify(signature, timestamp, nonce, echostr)
                .map_err(crypto_error)?;
            let plain = crypto.decrypt(echostr).map_err(crypto_error)?;
            tracing::info!(tenant = %tenant.id, "callback URL verified");
            Ok(HttpResponse::text(200, plain))
        }
        Method::POST => {
            let xml = std::str::from_utf8(&req.body)
                .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
            let envelope =
                parse_envelope(xml).map_err(|e| ApiError::BadRequest(format!("envelope: {e}")))?;
            crypto
                .verify(signature, timestamp, nonce, &envelope.encrypt)
                .map_err(crypto_error)?;
            let plain = crypto.decrypt(&envelope.encrypt).map_err(crypto_error)?;
            let event = WecomEvent::parse(&plain)
                .map_err(|e| ApiError::BadRequest(format!("event: {e}")))?;
            if event.to_user_name != tenant.corp_id {
                return Err(ApiError::Unauthorized(format!(
                    "event is for corp `{}`, not this tenant's",
                    event.to_user_name
                )));
            }
            receive(app, &tenant, event).await
        }
        _ => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
    }
}

/// A signature that does not verify, or a message for another corp, is 401; a body that
/// cannot be decrypted is 400. Either way nothing is recorded.
fn crypto_error(e: CryptoError) -> ApiError {
    match e {
        CryptoError::BadSignature | CryptoError::ReceiveIdMismatch { .. } => {
            ApiError::Unauthorized(e.to_string())
        }
        CryptoError::BadKey(_) => ApiError::Internal(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    }
}

async fn receive(app: &App, tenant: &Tenant, event: WecomEvent) -> Result<HttpResponse, ApiError> {
    if !tenant.settings.tags_enabled {
        tracing::info!(tenant = %tenant.id, "customer-tag feature is off: event acknowledged and dropped");
        return Ok(ignored(app));
    }
    let inbound = match &event.kind {
        EventKind::TagChange {
            change,
            id,
            tag_type,
            strategy_id,
        } => InboundEvent::WecomTag {
            change: change.as_str().to_string(),
            id: id.clone(),
            tag_type: tag_type.as_ref().map(|t| t.as_str().to_string()),
            strategy_id: strategy_id.clone(),
            create_time: event.create_time,
        },
        EventKind::ContactChange {
            change,
            user_id,
            external_user_id,
            state,
            source,
            ..
        } => InboundEvent::WecomContact {
            change: change.as_str().to_string(),
            user_id: user_id.clone(),
            external_user_id: external_user_id.clone(),
            state: state.clone(),
            source: source.clone(),
            create_time: event.create_time,
        },
        EventKind::DirectoryChange { change, id } => InboundEvent::WecomDirectory {
            change: change.clone(),
            id: id.clone(),
            create_time: event.create_time,
        },
        EventKind::Other { event: name } => {
            // Tolerated, never an error (wecom-api.md §9 P8): WeCom sends more than tags.
            tracing::info!(tenant = %tenant.id, event = %name, "callback event not used by tagsync: acknowledged");
            return Ok(ignored(app));
        }
    };
    let key = format!("wecom#{}#{}", tenant.id, event.dedupe_key());
    // A repeated key is queued again: WeCom gives two changes of one kind to one object
    // within one second the same key (see `OnRepeat::Requeue`).
    match accept(
        app,
        &tenant.id,
        &key,
        DEDUPE_TTL_SECS,
        inbound,
        OnRepeat::Requeue,
    )
    .await?
    {
        Accepted::Queued => {}
        Accepted::Duplicate => {
            tracing::info!(tenant = %tenant.id, "callback seen before: its jobs run again, its event is recorded once")
        }
    }
    Ok(HttpResponse::empty(200))
}

/// Acknowledged without recording anything (the feature is off, or tagsync does not use it).
fn ignored(app: &App) -> HttpResponse {
    app.metrics.incr(
        crate::metrics::EVENTS,
        &[("source", "wecom"), ("outcome", "ignored")],
    );
    HttpResponse::empty(200)
}
