//! `GET /admin/v1/tenants/{t}/directory` (the corp's departments and staff as tagsync last
//! read them) and `POST …/directory:refresh` (read them again from WeCom now). The reading is
//! [`crate::jobs::directory::refresh`]'s.

use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use http::Method;
use serde_json::{Value, json};

pub async fn route(
    app: &App,
    t: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (&req.method, rest) {
        (&Method::GET, ["directory"]) => {
            let dir = app.store.get_directory(&t.id).await?;
            Ok(HttpResponse::json(200, &view(&t.id, dir.as_ref())))
        }
        (_, ["directory"]) => Err(ApiError::MethodNotAllowed("use GET".into())),
        (&Method::POST, ["directory:refresh"]) => {
            let dir = crate::jobs::directory::refresh(app, t).await.map_err(|e| {
                ApiError::Unavailable(format!("reading the directory from WeCom: {}", e.reason))
            })?;
            super::append_audit(
                app,
                &t.id,
                "directory.refreshed",
                "directory".into(),
                None,
                Some(json!({
                    "departments": dir.departments.len(),
                    "staff": dir.staff.len(),
                })),
            )
            .await;
            Ok(HttpResponse::json(200, &view(&t.id, Some(&dir))))
        }
        (_, ["directory:refresh"]) => Err(ApiError::MethodNotAllowed("use POST".into())),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

/// The directory as the API shows it; never read: empty lists and `refreshed_at: null`.
fn view(tenant: &TenantId, dir: Option<&Directory>) -> Value {
    match dir {
        None => json!({ "tenant": tenant, "departments": [], "staff": [], "refreshed_at": null }),
        Some(d) => json!({
            "tenant": tenant,
            "departments": d.departments,
            "staff": d.staff,
            "refreshed_at": d.refreshed_at.to_rfc3339(),
        }),
    }
}
