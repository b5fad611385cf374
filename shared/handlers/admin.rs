//! The operator's API (`/admin/v1/...`, see admin-api.md): tenants, switches, status, audit,
//! dead letters. Library, member and sync routes arrive with the sync engine.

use super::json::Body;
use super::{load_tenant, parse_tenant};
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub(super) async fn route(
    app: &App,
    req: &HttpRequest,
    segments: &[&str],
) -> Result<HttpResponse, ApiError> {
    authorize(app, req)?;
    require_json(req)?;
    let m = &req.method;
    match segments {
        ["v1", "tenants"] => match *m {
            Method::GET => list_tenants(app).await,
            _ => Err(ApiError::MethodNotAllowed("use GET".into())),
        },
        ["v1", "tenants", tenant] => {
            let tenant = parse_tenant(tenant)?;
            match *m {
                Method::PUT => put_tenant(app, &tenant, req).await,
                Method::GET => Ok(HttpResponse::json(
                    200,
                    &tenant_view(&load_tenant(app, &tenant).await?),
                )),
                _ => Err(ApiError::MethodNotAllowed("use GET or PUT".into())),
            }
        }
        ["v1", "tenants", tenant, rest @ ..] => {
            let tenant = parse_tenant(tenant)?;
            let t = load_tenant(app, &tenant).await?;
            match (m.clone(), rest) {
                (Method::PATCH, ["settings"]) => patch_settings(app, t, req).await,
                (Method::GET, ["settings"]) => Ok(HttpResponse::json(200, &t.settings)),
                (Method::GET, ["status"]) => status(app, &t).await,
                (Method::GET, ["audit"]) => audit(app, &t, req).await,
                (Method::GET, ["dead-letters"]) => dead_letters(app, &t).await,
                (Method::POST, ["dead-letters:redrive"]) => redrive(app, &t, req).await,
                (_, ["tag-groups", ..] | ["tags", ..]) => {
                    super::library::route(app, &t, req, rest).await
                }
                (_, ["members", ..] | ["member-tags:batch"]) => {
                    super::members::route(app, &t, req, rest).await
                }
                (_, ["sync", ..]) => super::sync::route(app, &t, req, rest).await,
                (_, ["rules", ..]) => crate::api::admin::rules::route(app, &t, req, rest).await,
                (_, ["channels", ..]) => {
                    crate::api::admin::channels::route(app, &t, req, rest).await
                }
                (_, ["customers" | "customers:bulk-tags"]) => {
                    crate::api::admin::customers::route(app, &t, req, rest).await
                }
                (_, ["transfers", ..]) => {
                    crate::api::admin::transfers::route(app, &t, req, rest).await
                }
                _ => Err(ApiError::NotFound(format!(
                    "no route for {} {}",
                    req.method, req.path
                ))),
            }
        }
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

/// `Authorization: Bearer {token}`, compared in constant time. Both sides are hashed first so
/// the comparison does not leak the token's length either.
pub(super) fn authorize(app: &App, req: &HttpRequest) -> Result<(), ApiError> {
    let presented = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let a = Sha256::digest(presented.trim().as_bytes());
    let b = Sha256::digest(app.config.admin_token.expose().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong bearer token".into()))
    }
}

/// A request carrying a body must say it is JSON (415 otherwise): every admin route with a
/// body reads JSON, and requiring the type keeps a cross-site form post (which cannot send
/// `application/json` without a preflight) from ever being read as one.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    if req.body.is_empty() {
        return Ok(());
    }
    let sent = req.header("content-type").unwrap_or("");
    let essence = sent.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else if sent.is_empty() {
        Err(ApiError::UnsupportedMediaType(
            "the body must be JSON, sent with `Content-Type: application/json` (none was given)"
                .into(),
        ))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body must be JSON, sent with `Content-Type: application/json` (not `{}`)",
            sent.chars().take(100).collect::<String>()
        )))
    }
}

/// The tenant as the API shows it: never a secret.
fn tenant_view(t: &Tenant) -> serde_json::Value {
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
async fn list_tenants(app: &App) -> Result<HttpResponse, ApiError> {
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

async fn put_tenant(app: &App, id: &TenantId, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
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

async fn patch_settings(
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

/// Records an operator action. An audit write that fails is logged, not fatal: the change
/// itself was applied and answering 5xx would invite a duplicate.
pub(crate) async fn append_audit(
    app: &App,
    tenant: &TenantId,
    action: &str,
    entity: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let entry = AuditEntry {
        tenant: tenant.clone(),
        at: app.clock.now(),
        side: Actor::Hub,
        action: action.to_string(),
        entity,
        before,
        after,
        origin: "operator".into(),
    };
    if let Err(e) = app.store.append_audit(&entry).await {
        tracing::warn!(tenant = %tenant, error = %e, "audit entry not recorded");
    }
}

async fn status(app: &App, t: &Tenant) -> Result<HttpResponse, ApiError> {
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

async fn audit(app: &App, t: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
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

/// How many dead letters one listing reads (the DLQ is deployment-wide; this tenant's are
/// filtered from it).
const DEAD_LETTER_SCAN: usize = 1000;

async fn dead_letters(app: &App, t: &Tenant) -> Result<HttpResponse, ApiError> {
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

async fn redrive(app: &App, t: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
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
