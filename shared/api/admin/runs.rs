//! The operator API's sync routes (`/admin/v1/tenants/{tenant}/sync…`, see admin-api.md):
//! start a reconciliation run (single-flight per tenant), read one run's report, list runs.
//! The run itself proceeds as queued page jobs (`jobs::reconcile`), never in the request.

use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::jobs::reconcile::{self, StartError};
use http::Method;
use serde_json::{Value, json};

/// How many runs `GET …/sync` lists (newest first).
const LISTED_RUNS: usize = 50;

pub async fn route(
    app: &App,
    tenant: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (&req.method, rest) {
        (&Method::POST, ["sync"]) => start(app, tenant, req).await,
        (&Method::GET, ["sync"]) => {
            let runs = app.store.list_runs(&tenant.id, LISTED_RUNS).await?;
            let now = app.clock.now();
            let runs: Vec<Value> = runs.iter().map(|r| view(r, now)).collect();
            Ok(HttpResponse::json(200, &json!({ "runs": runs })))
        }
        (&Method::GET, ["sync", run_id]) => {
            let id = RunId::new_unchecked((*run_id).to_owned());
            match app.store.get_run(&tenant.id, &id).await? {
                Some(run) => Ok(HttpResponse::json(200, &view(&run, app.clock.now()))),
                None => Err(ApiError::NotFound(format!("no sync run `{run_id}`"))),
            }
        }
        (&Method::POST, ["sync", run_cancel]) if run_cancel.ends_with(":cancel") => {
            let id = RunId::new_unchecked(run_cancel.trim_end_matches(":cancel").to_owned());
            let run = crate::jobs::bulk_tags::cancel(app, &tenant.id, &id).await?;
            super::append_audit(
                app,
                &tenant.id,
                "bulk.cancelled",
                format!("run:{id}"),
                None,
                None,
            )
            .await;
            Ok(HttpResponse::json(202, &view(&run, app.clock.now())))
        }
        (_, ["sync"]) => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
        (_, ["sync", _]) => Err(ApiError::MethodNotAllowed("use GET".into())),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

async fn start(app: &App, tenant: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, &["scope"])?;
    let scope = match body.required_str("scope")? {
        "library" => RunScope::Library,
        "members" => RunScope::Members,
        "all" => RunScope::All,
        other => {
            return Err(ApiError::BadRequest(format!(
                "scope: `{other}` is not one of library, members, all"
            )));
        }
    };
    match reconcile::start(app, tenant, scope, Actor::Operator).await {
        Ok(run) => {
            super::append_audit(
                app,
                &tenant.id,
                "sync.started",
                format!("run:{}", run.id),
                None,
                Some(json!({ "scope": run.scope })),
            )
            .await;
            Ok(HttpResponse::json(202, &json!({ "run_id": run.id })))
        }
        Err(StartError::Busy(running)) => Err(ApiError::Conflict(format!(
            "a sync run of this tenant is going: {running}"
        ))),
        Err(StartError::Off) => Err(ApiError::Conflict(
            "the customer-tag feature (tags_enabled) is off for this tenant".into(),
        )),
        Err(StartError::Store(e)) => Err(e.into()),
        Err(StartError::Queue(e)) => Err(e.into()),
    }
}

/// A run as the API shows it (admin-api.md, plus progress, skips and ambiguous matches).
pub fn view(run: &SyncRun, now: Timestamp) -> Value {
    let (status, error) = reconcile::shown(run, now);
    let mut v = json!({
        "run_id": run.id,
        "scope": run.scope,
        "status": status,
        "origin": run.origin,
        "started_at": run.started_at.to_rfc3339(),
        "finished_at": run.finished_at.map(|t| t.to_rfc3339()),
        "progress": run.progress,
        "drift": run.drift,
        "repaired": run.repaired,
        "skipped": run.skipped,
        "ambiguous": run.ambiguous,
        "error": error,
        "rule_id": run.rule_id,
        "kept": run.kept,
        // A run that marks WeCom relations: its calls and when the budget lets the last go.
        "planned": run.planned.as_ref().map(|p| json!({
            "mark_tag_calls": p.mark_tag_calls,
            "remaining": p.remaining,
            "finish_at": p.finish_at.to_rfc3339(),
            "limited_by": p.limited_by,
            "planned_at": p.planned_at.to_rfc3339(),
        })),
    });
    // A bulk run (issue 15): its counts, what it changes, and the customers that failed.
    if let Some(b) = &run.bulk {
        v["counts"] = json!({"matched": b.matched, "done": b.done(), "failed": b.failed()});
        v["filter"] = json!(b.filter);
        v["add"] = json!(b.add);
        v["remove"] = json!(b.remove);
        v["failures"] = json!(b.failures);
    }
    v
}
