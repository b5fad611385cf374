//! The operator API's tenant routes (`/admin/v1/tenants`, `/tenants/{tenant}`, its
//! `settings` and `status`, see admin-api.md): onboarding a tenant, its switches, and how
//! far its sync is.

use super::append_audit;
use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use serde_json::json;

/// The tenant as the API shows it: never a secret.
pub(super) fn tenant_view(t: &Tenant) -> serde_json::Value {
    json!({
        "tenant": t.id,
        "corp_id": t.corp_id,
        "agent_id": t.agent_id,
        "mall_api_base": t.mall_api_base,
        "settings": t.settings,
        "message_feed": t.secrets.message_feed_secret.is_some(),
        "created_at": t.created_at.to_rfc3339(),
        "updated_at": t.updated_at.to_rfc3339(),
    })
}

/// Every tenant of the deployment (the console's tenant picker), by id, without secrets.
pub(super) async fn list_tenants(app: &App) -> Result<HttpResponse, ApiError> {
    let mut tenants = app.store.list_tenants().await?;
    tenants.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let views: Vec<_> = tenants.iter().map(tenant_view).collect();
    Ok(HttpResponse::json(200, &json!({"tenants": views})))
}

const TENANT_FIELDS: &[&str] = &[
    "corp_id",
    "agent_id",
    "corp_secret",
    "callback_token",
    "encoding_aes_key",
    "mall_api_base",
    "mall_api_token",
    "mall_webhook_secret",
    "message_feed_secret",
    "settings",
];

const SETTINGS_FIELDS: &[&str] = &["tags_enabled", "auto_sync", "member_sync"];

/// An EncodingAESKey is 43 characters of the base64 alphabet. Its last character usually
/// carries non-zero trailing bits (WeCom's own keys do), so only the alphabet is checked.
fn valid_aes_key(key: &str) -> bool {
    key.len() == 43
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// WeCom's callback Token: at most 32 letters or digits.
fn valid_callback_token(token: &str) -> bool {
    token.len() <= 32 && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn parse_url(field: &str, s: &str) -> Result<String, ApiError> {
    let url = reqwest::Url::parse(s)
        .map_err(|e| ApiError::BadRequest(format!("field `{field}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must be an http(s) URL with a host"
        )));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn apply_settings(settings: &mut Settings, body: &Body) -> Result<(), ApiError> {
    if let Some(v) = body.optional_bool("tags_enabled")? {
        settings.tags_enabled = v;
    }
    if let Some(v) = body.optional_bool("auto_sync")? {
        settings.auto_sync = v;
    }
    if let Some(v) = body.optional_bool("member_sync")? {
        settings.member_sync = v;
    }
    Ok(())
}

pub(super) async fn put_tenant(
    app: &App,
    id: &TenantId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, TENANT_FIELDS)?;
    let corp_id = CorpId::parse(body.nonempty_str("corp_id")?)
        .map_err(|e| ApiError::BadRequest(format!("field `corp_id`: {e}")))?;
    let agent_id = body.required_digits("agent_id")?;
    let corp_secret = body.nonempty_str("corp_secret")?;
    let callback_token = body.nonempty_str("callback_token")?;
    if !valid_callback_token(&callback_token) {
        return Err(ApiError::BadRequest(
            "field `callback_token` must be at most 32 letters or digits (WeCom's rule)".into(),
        ));
    }
    let encoding_aes_key = body.nonempty_str("encoding_aes_key")?;
    if !valid_aes_key(&encoding_aes_key) {
        return Err(ApiError::BadRequest(
            "field `encoding_aes_key` must be 43 characters of the base64 alphabet".into(),
        ));
    }
    let mall_api_base = parse_url("mall_api_base", &body.nonempty_str("mall_api_base")?)?;
    let mall_api_token = body.nonempty_str("mall_api_token")?;
    let mall_webhook_secret = body.nonempty_str("mall_webhook_secret")?;
    // Optional: a tenant without the chat feed has none; absent keeps the one set before.
    let message_feed_secret = match body.get("message_feed_secret") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(body.nonempty_str("message_feed_secret")?),
    };
    let settings_body = body
        .optional_object("settings")?
        .map(|m| Body::from_map(m, SETTINGS_FIELDS, "settings."))
        .transpose()?;

    let now = app.clock.now();
    let existing = app.store.get_tenant(id).await?;
    let created = existing.is_none();
    let mut tenant = Tenant {
        id: id.clone(),
        corp_id,
        agent_id,
        mall_api_base,
        secrets: TenantSecrets {
            corp_secret: Secret::new(corp_secret),
            callback_token: Secret::new(callback_token),
            encoding_aes_key: Secret::new(encoding_aes_key),
            mall_api_token: Secret::new(mall_api_token),
            mall_webhook_secret: Secret::new(mall_webhook_secret),
            message_feed_secret: message_feed_secret.map(Secret::new).or_else(|| {
                existing
                    .as_ref()
                    .and_then(|t| t.secrets.message_feed_secret.clone())
            }),
        },
        settings: existing.as_ref().map(|t| t.settings).unwrap_or_default(),
        created_at: existing.as_ref().map_or(now, |t| t.created_at),
        updated_at: now,
        version: existing.as_ref().map_or(0, |t| t.version),
    };
    if let Some(s) = &settings_body {
        apply_settings(&mut tenant.settings, s)?;
    }
    app.store.put_tenant(&mut tenant).await?;
    app.tenants.forget(&tenant.id);
    tracing::info!(tenant = %id, created, "tenant saved");
    append_audit(
        app,
        id,
        if created {
            "tenant.created"
        } else {
            "tenant.updated"
        },
        format!("tenant:{id}"),
        None,
        Some(tenant_view(&tenant)),
    )
    .await;
    Ok(HttpResponse::json(
        if created { 201 } else { 200 },
        &tenant_view(&tenant),
    ))
}

pub(super) async fn patch_settings(
    app: &App,
    mut tenant: Tenant,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, SETTINGS_FIELDS)?;
    let before = tenant.settings;
    apply_settings(&mut tenant.settings, &body)?;
    tenant.updated_at = app.clock.now();
    app.store.put_tenant(&mut tenant).await?;
    app.tenants.forget(&tenant.id);
    let after = tenant.settings;
    tracing::info!(tenant = %tenant.id, ?before, ?after, "settings changed");
    append_audit(
        app,
        &tenant.id,
        "settings.updated",
        format!("tenant:{}", tenant.id),
        Some(json!(before)),
        Some(json!(after)),
    )
    .await;
    Ok(HttpResponse::json(200, &after))
}

pub(super) async fn status(app: &App, t: &Tenant) -> Result<HttpResponse, ApiError> {
    // The tenant's own jobs (the SQLite queue counts them; on SQS, marks in the store do). A
    // queue that can only count everything says so with `scope`: pending and in_flight both 0
    // still mean every accepted change was applied or parked.
    let (counts, scope) = match app.queue.tenant_counts(&t.id).await? {
        Some(c) => (c, "tenant"),
        None => (app.queue.counts().await?, "deployment"),
    };
    let mut queue = json!(counts);
    queue["scope"] = json!(scope);
    let last_run = app.store.list_runs(&t.id, 1).await?.into_iter().next();
    Ok(HttpResponse::json(
        200,
        &json!({
            "queue": queue,
            "last_event_at": app.store.last_event_at(&t.id).await?.map(|a| a.to_rfc3339()),
            "last_run": last_run.map(|r| json!({"run_id": r.id, "scope": r.scope, "status": r.status, "started_at": r.started_at.to_rfc3339()})),
            "settings": t.settings,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_keys_are_checked_for_length_and_alphabet_only() {
        assert!(valid_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"));
        assert!(!valid_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2"));
        assert!(!valid_aes_key(
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2-"
        ));
    }
}
