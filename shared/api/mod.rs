//! The inbound surface, transport-neutral: a request in, a response out ([`dispatch`]). The
//! WeCom callback, the mall webhook and the chat-message feed ([`messages`]) only verify,
//! record and queue; the operator's API and
//! console live in [`admin`]. Both runtimes — `tagsync serve` and the Lambdas — call these.
//! Jobs run elsewhere ([`crate::jobs`]).

pub mod access;
pub mod admin;
pub mod inbound;
pub(crate) mod json;
pub mod mall_webhook;
pub mod messages;
pub mod wecom_callback;

use crate::app::App;
use crate::domain::{Tenant, TenantId};
use crate::http::{ApiError, HttpRequest, HttpResponse};
use http::Method;

/// Which routes an entry point serves: `serve` answers all of them; each HTTPS Lambda only
/// its own (API Gateway routes to it, and anything else is a misconfiguration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    All,
    WecomCallback,
    MallWebhook,
    Admin,
}

/// A tenant id from a path: anything that cannot be a tenant id is an unknown tenant.
pub(crate) fn parse_tenant(s: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(s).map_err(|e| ApiError::NotFound(format!("unknown tenant: {e}")))
}

/// The tenant, or 404 (operator routes: always read from the store).
pub(crate) async fn load_tenant(app: &App, id: &TenantId) -> Result<Tenant, ApiError> {
    app.store
        .get_tenant(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown tenant `{id}`")))
}

/// The tenant of an inbound callback or webhook, or 404 (through the per-process cache).
pub(crate) async fn inbound_tenant(app: &App, raw: &str) -> Result<Tenant, ApiError> {
    let id = parse_tenant(raw)?;
    app.tenants
        .get(app.store.as_ref(), app.clock.now(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown tenant `{id}`")))
}

/// Counts an inbound request that was refused, by status.
fn refused_counted(
    app: &App,
    source: &'static str,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    if let Err(e) = &result {
        let outcome = format!("refused_{}", e.status());
        app.metrics.incr(
            crate::metrics::EVENTS,
            &[("source", source), ("outcome", &outcome)],
        );
    }
    result
}

/// Routes a request to its handler.
pub async fn dispatch(app: &App, surface: Surface, req: HttpRequest) -> HttpResponse {
    let path = req.path.trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let allowed = |s: Surface| surface == Surface::All || surface == s;
    let result = match segments.as_slice() {
        ["healthz"]
            if allowed(Surface::Admin)
                || allowed(Surface::WecomCallback)
                || allowed(Surface::MallWebhook) =>
        {
            Ok(health(app).await)
        }
        ["wecom", "callback", tenant] if allowed(Surface::WecomCallback) => refused_counted(
            app,
            "wecom",
            wecom_callback::handle(app, tenant, &req).await,
        ),
        ["mall", "webhook", tenant] if allowed(Surface::MallWebhook) => match req.method {
            Method::POST => {
                refused_counted(app, "mall", mall_webhook::handle(app, tenant, &req).await)
            }
            _ => Err(ApiError::MethodNotAllowed("use POST".into())),
        },
        // The chat-message feed is signed like a mall webhook and served with it.
        ["messages", tenant] if allowed(Surface::MallWebhook) => match req.method {
            Method::POST => refused_counted(app, "feed", messages::handle(app, tenant, &req).await),
            _ => Err(ApiError::MethodNotAllowed("use POST".into())),
        },
        ["metrics"] if allowed(Surface::Admin) => {
            admin::authorize(app, &req).map(|()| HttpResponse::text(200, app.metrics.prometheus()))
        }
        ["admin", rest @ ..] if allowed(Surface::Admin) && crate::console::serves(rest) => {
            crate::console::respond(&req, rest, &app.config.wecom_api_base)
        }
        ["admin", rest @ ..] if allowed(Surface::Admin) => admin::route(app, &req, rest).await,
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    };
    with_api_headers(result.unwrap_or_else(ApiError::into_response))
}

/// `/healthz`: 200 when the store answers a read, 503 when it does not (the details go to the
/// log, not to an unauthenticated caller).
async fn health(app: &App) -> HttpResponse {
    match app.store.check().await {
        Ok(()) => HttpResponse::json(200, &serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store is unusable");
            HttpResponse::json(
                503,
                &serde_json::json!({"status": "unavailable", "store": "unusable"}),
            )
        }
    }
}

/// Every answer: never sniffed as another type, and never cached unless the route said
/// otherwise (the console's assets do); API answers carry tenant data.
fn with_api_headers(mut r: HttpResponse) -> HttpResponse {
    let has =
        |r: &HttpResponse, name: &str| r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has(&r, "x-content-type-options") {
        r = r.with_header("x-content-type-options", "nosniff");
    }
    if !has(&r, "cache-control") {
        r = r.with_header("cache-control", "no-store");
    }
    r
}
