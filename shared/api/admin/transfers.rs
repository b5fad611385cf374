//! `POST /admin/v1/tenants/{t}/transfers`, `GET …/transfers`, `GET …/transfers/{id}`: hand a
//! staff member's customers to a colleague with WeCom's transfer (wecom-api.md §6), keeping
//! their tags (issue 15). The work is done by [`crate::jobs::transfers`].

use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::jobs::transfers;
use crate::wecom::client::WecomError;
use http::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// How many transfers the list shows (newest first, among the tenant's latest runs).
const LISTED_RUNS: usize = 100;

pub async fn route(
    app: &App,
    t: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (&req.method, rest) {
        (&Method::POST, ["transfers"]) => create(app, t, req).await,
        (&Method::GET, ["transfers"]) => list(app, t).await,
        (_, ["transfers"]) => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
        (&Method::GET, ["transfers", id]) => get(app, t, id).await,
        (_, ["transfers", _]) => Err(ApiError::MethodNotAllowed("use GET".into())),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

async fn get(app: &App, t: &Tenant, id: &str) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::NotFound(format!("no transfer `{id}`"));
    let id = RunId::parse(id.to_owned()).map_err(|_| missing())?;
    match app.store.get_run(&t.id, &id).await? {
        Some(run) if run.scope == RunScope::Transfer => {
            Ok(HttpResponse::json(200, &transfers::view(&run, true)))
        }
        _ => Err(missing()),
    }
}

async fn list(app: &App, t: &Tenant) -> Result<HttpResponse, ApiError> {
    let runs = app.store.list_runs(&t.id, LISTED_RUNS).await?;
    let listed: Vec<Value> = runs
        .iter()
        .filter(|r| r.scope == RunScope::Transfer)
        .map(|r| transfers::view(r, false))
        .collect();
    Ok(HttpResponse::json(200, &json!({ "transfers": listed })))
}

fn userid(body: &Body, key: &str) -> Result<WecomUserId, ApiError> {
    let raw = body.nonempty_str(key)?;
    WecomUserId::parse(raw)
        .map_err(|e| ApiError::BadRequest(format!("field `{key}`: {}", e.reason)))
}

fn wecom_unavailable(e: WecomError) -> ApiError {
    if e.retryable() {
        ApiError::Unavailable(format!("WeCom did not answer in time ({e}); try again"))
    } else {
        ApiError::Unavailable(format!("WeCom refused to list the staff members: {e}"))
    }
}

/// The customers `external_userids` names, each once; `None`: all of the handover's.
fn given_customers(body: &Body) -> Result<Option<Vec<ExternalUserId>>, ApiError> {
    let Some(list) = body.optional_str_list("external_userids")? else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(ApiError::BadRequest(
            "field `external_userids` must not be empty (leave it out for all of the handover's customers)"
                .into(),
        ));
    }
    let mut ids = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, raw) in list.into_iter().enumerate() {
        let id = ExternalUserId::parse(raw).map_err(|e| {
            ApiError::BadRequest(format!("field `external_userids[{i}]`: {}", e.reason))
        })?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

async fn create(app: &App, t: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(
        &req.body,
        &[
            "handover_userid",
            "takeover_userid",
            "external_userids",
            "resigned",
        ],
    )?;
    let handover = userid(&body, "handover_userid")?;
    let takeover = userid(&body, "takeover_userid")?;
    let resigned = body.optional_bool("resigned")?.ok_or_else(|| {
        ApiError::BadRequest("field `resigned` is required (true or false)".into())
    })?;
    if handover == takeover {
        return Err(ApiError::BadRequest(
            "field `takeover_userid` must differ from `handover_userid`".into(),
        ));
    }
    let given = given_customers(&body)?;

    // Who is staff: WeCom's members with customer contact (one call). A departed handover is
    // no longer listed; the hub's index still knows their customers.
    let staff: BTreeSet<WecomUserId> = app
        .wecom
        .get_follow_user_list(&App::wecom_credentials(t))
        .await
        .map_err(wecom_unavailable)?
        .into_iter()
        .collect();
    if !staff.contains(&takeover) {
        return Err(ApiError::BadRequest(format!(
            "field `takeover_userid`: `{takeover}` is not a staff member with customer contact"
        )));
    }
    let of_handover = CustomerFilter {
        userid: Some(handover.clone()),
        ..CustomerFilter::default()
    };
    let indexed = app.store.matching_customers(&t.id, &of_handover).await?;
    match (resigned, staff.contains(&handover)) {
        (false, false) => {
            return Err(ApiError::BadRequest(format!(
                "field `handover_userid`: `{handover}` is not a staff member with customer contact (if they have left, set `resigned`: true)"
            )));
        }
        (true, true) => {
            return Err(ApiError::BadRequest(format!(
                "field `handover_userid`: `{handover}` has not left (use `resigned`: false)"
            )));
        }
        (true, false) if indexed.is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "field `handover_userid`: `{handover}` is unknown: not a staff member, and no customer in the hub's index follows them"
            )));
        }
        _ => {}
    }
    let customers = match given {
        Some(ids) => ids,
        None if indexed.is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "field `handover_userid`: no customer in the hub's index follows `{handover}` (give `external_userids`, or run a members sync first)"
            )));
        }
        None => indexed,
    };
    if customers.len() > MAX_TRANSFER_CUSTOMERS {
        return Err(ApiError::BadRequest(format!(
            "field `external_userids`: at most {MAX_TRANSFER_CUSTOMERS} customers per transfer ({} given); split it",
            customers.len()
        )));
    }
    let mut list = Vec::with_capacity(customers.len());
    for c in customers {
        // A customer bound to no member keeps the tags the index shows now.
        let tags = match app.store.get_customer_entry(&t.id, &c).await? {
            Some(e) if e.member_id.is_none() => e.tag_ids().into_iter().collect(),
            _ => Vec::new(),
        };
        list.push(TransferCustomer::new(c, tags));
    }
    let count = list.len();
    let state = TransferState {
        handover_userid: handover.clone(),
        takeover_userid: takeover.clone(),
        resigned,
        customers: list,
        follow_at: None,
    };
    let run = transfers::start(app, t, state).await?;
    super::append_audit(
        app,
        &t.id,
        "transfer.started",
        format!("transfer:{}", run.id),
        None,
        Some(json!({
            "handover_userid": handover, "takeover_userid": takeover,
            "resigned": resigned, "customers": count,
        })),
    )
    .await;
    Ok(HttpResponse::json(202, &json!({"transfer_id": run.id})))
}
