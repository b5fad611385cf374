//! The operator's API (`/admin/v1/...`, see admin-api.md): the router, the bearer check and
//! the audit helper every route uses; one file per resource (tenants with their switches and
//! status, the tag library, members, sync runs, the audit log, dead letters, customers, transfers, automatic-tagging rules, channel codes, the corp's directory).

mod audit;
pub mod channels;
pub mod customers;
mod dead_letters;
mod directory;
mod group_scope;
mod library;
mod login;
mod members;
mod operators;
pub mod rules;
mod runs;
mod tenants;
pub mod transfers;

use super::access::{self, Caller, Need};
use super::{load_tenant, parse_tenant};
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use http::Method;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every admin request: its row in [`access::ROUTES`] (404/405 without one), its caller
/// (401), the one check of what the caller may do ([`access::check`], 403), then the
/// resource's handler, run with the caller as the current one (the audit names them).
pub(super) async fn route(
    app: &App,
    req: &HttpRequest,
    segments: &[&str],
) -> Result<HttpResponse, ApiError> {
    let found = access::find(&req.method, segments);
    if let Ok((spec, _)) = &found
        && spec.need == Need::Public
    {
        return match segments {
            ["v1", "tenants", t, "login"] => login::start(app, t, req).await,
            ["v1", "tenants", t, "login", "callback"] => login::callback(app, t, req).await,
            _ => Err(ApiError::NotFound(format!(
                "no route for {} {}",
                req.method, req.path
            ))),
        };
    }
    let caller = access::authenticate(app, req).await?;
    require_json(req)?;
    let (spec, params) = found?;
    access::check(app, &caller, spec, &params, req).await?;
    caller
        .clone()
        .scope(resource(app, &caller, req, segments))
        .await
}

async fn resource(
    app: &App,
    caller: &Caller,
    req: &HttpRequest,
    segments: &[&str],
) -> Result<HttpResponse, ApiError> {
    let m = &req.method;
    match segments {
        ["v1", "me"] => Ok(login::me(caller)),
        ["v1", "logout"] => login::logout(app, caller, req).await,
        ["v1", "tenants"] => match (m.clone(), caller) {
            (Method::GET, Caller::Operator(o)) => Ok(HttpResponse::json(
                200,
                &serde_json::json!({
                    "tenants": [tenants::tenant_view(&load_tenant(app, &o.session.tenant).await?)]
                }),
            )),
            (Method::GET, _) => tenants::list_tenants(app).await,
            _ => Err(ApiError::MethodNotAllowed("use GET".into())),
        },
        ["v1", "tenants", tenant] => {
            let tenant = parse_tenant(tenant)?;
            match *m {
                Method::PUT => tenants::put_tenant(app, &tenant, req).await,
                Method::GET => Ok(HttpResponse::json(
                    200,
                    &tenants::tenant_view(&load_tenant(app, &tenant).await?),
                )),
                _ => Err(ApiError::MethodNotAllowed("use GET or PUT".into())),
            }
        }
        ["v1", "tenants", tenant, rest @ ..] => {
            let tenant = parse_tenant(tenant)?;
            let t = load_tenant(app, &tenant).await?;
            match (m.clone(), rest) {
                (Method::PATCH, ["settings"]) => tenants::patch_settings(app, t, req).await,
                (Method::GET, ["settings"]) => Ok(HttpResponse::json(200, &t.settings)),
                (Method::GET, ["status"]) => tenants::status(app, &t).await,
                (Method::GET, ["audit"]) => audit::audit(app, &t, req).await,
                (Method::GET, ["dead-letters"]) => dead_letters::dead_letters(app, &t).await,
                (Method::POST, ["dead-letters:redrive"]) => {
                    dead_letters::redrive(app, &t, req).await
                }
                (_, ["tag-groups", ..] | ["tags", ..]) => library::route(app, &t, req, rest).await,
                (_, ["members", ..] | ["member-tags:batch"]) => {
                    members::route(app, &t, req, rest).await
                }
                (_, ["sync", ..]) => runs::route(app, &t, req, rest).await,
                (_, ["rules", ..]) => rules::route(app, &t, req, rest).await,
                (_, ["channels", ..]) => channels::route(app, &t, req, rest).await,
                (_, ["customers" | "customers:bulk-tags"]) => {
                    customers::route(app, &t, req, rest).await
                }
                (_, ["transfers", ..]) => transfers::route(app, &t, req, rest).await,
                (_, ["directory" | "directory:refresh"]) => {
                    directory::route(app, &t, req, rest).await
                }
                (_, ["operators", ..]) => operators::route(app, &t, req, rest).await,
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
pub(crate) fn authorize(app: &App, req: &HttpRequest) -> Result<(), ApiError> {
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
        origin: access::current_origin(),
    };
    if let Err(e) = app.store.append_audit(&entry).await {
        tracing::warn!(tenant = %tenant, error = %e, "audit entry not recorded");
    }
}
