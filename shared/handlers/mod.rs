//! Transport-neutral handlers: a request in, a response out ([`dispatch`]); a job in, an
//! outcome out ([`worker`]). Both runtimes — `tagsync serve` and the Lambdas — call these.

pub mod admin;
mod json;
pub mod nightly;
pub mod worker;

use crate::app::App;
use crate::domain::TenantId;
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
            Ok(HttpResponse::json(
                200,
                &serde_json::json!({"status": "ok"}),
            ))
        }
        ["wecom", "callback", tenant] if allowed(Surface::WecomCallback) => {
            match (&req.method, TenantId::parse(*tenant)) {
                (&Method::GET | &Method::POST, Ok(_)) => Err(ApiError::NotImplemented(
                    "the WeCom callback is not available in this version".into(),
                )),
                (_, Ok(_)) => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
                (_, Err(e)) => Err(ApiError::NotFound(format!("unknown tenant: {e}"))),
            }
        }
        ["mall", "webhook", tenant] if allowed(Surface::MallWebhook) => {
            match (&req.method, TenantId::parse(*tenant)) {
                (&Method::POST, Ok(_)) => Err(ApiError::NotImplemented(
                    "the mall webhook is not available in this version".into(),
                )),
                (_, Ok(_)) => Err(ApiError::MethodNotAllowed("use POST".into())),
                (_, Err(e)) => Err(ApiError::NotFound(format!("unknown tenant: {e}"))),
            }
        }
        ["admin", rest @ ..] if allowed(Surface::Admin) => admin::route(app, &req, rest).await,
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    };
    result.unwrap_or_else(ApiError::into_response)
}
