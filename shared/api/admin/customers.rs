//! `GET /admin/v1/tenants/{t}/customers`: the customer index, filtered and paged (issue 15,
//! admin-api.md 1.1). It answers from the index only: no WeCom call. Bulk tagging by a
//! filter is `customers:bulk-tags` (see [`crate::jobs::bulk_tags`]).

use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::store::customers::MAX_PAGE;
use http::Method;
use serde_json::{Map, Value, json};

pub async fn route(
    app: &App,
    t: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (&req.method, rest) {
        (&Method::GET, ["customers"]) => list(app, t, req).await,
        (&Method::POST, ["customers:bulk-tags"]) => bulk(app, t, req).await,
        (_, ["customers"]) => Err(ApiError::MethodNotAllowed("use GET".into())),
        (_, ["customers:bulk-tags"]) => Err(ApiError::MethodNotAllowed("use POST".into())),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

const DEFAULT_PAGE: usize = 50;

async fn list(app: &App, t: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let filter = filter_from_query(req)?;
    check_tags(app, &t.id, &filter.tags, "tag").await?;
    let limit = match req.query_param("limit") {
        None => DEFAULT_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("query `limit` must be 1..={MAX_PAGE}")))?,
    };
    let cursor = req.query_param("cursor").filter(|c| !c.is_empty());
    // A department-scoped operator sees the customers of their departments' staff.
    let page = match crate::api::access::current_scope(app, &t.id).await? {
        Some(scope) => {
            scope
                .customers_page(app, &t.id, &filter, cursor, limit)
                .await?
        }
        None => {
            app.store
                .query_customers(&t.id, &filter, cursor, limit)
                .await?
        }
    };
    Ok(HttpResponse::json(200, &page_view(&page)))
}

pub fn page_view(page: &CustomerPage) -> Value {
    let customers: Vec<Value> = page.customers.iter().map(CustomerEntry::view).collect();
    json!({"customers": customers, "next_cursor": page.next_cursor, "total": page.total})
}

/// The filter of a listing's query string: `tag` (repeatable), `tag_mode`, `state`,
/// `userid`, `bound`, `q`; anything malformed is a 400 naming the parameter.
pub fn filter_from_query(req: &HttpRequest) -> Result<CustomerFilter, ApiError> {
    let bad = |name: &str, what: &str| ApiError::BadRequest(format!("query `{name}` {what}"));
    let mut f = CustomerFilter::default();
    for (k, v) in &req.query {
        match k.as_str() {
            "tag" => f
                .tags
                .push(HubTagId::parse(v.clone()).map_err(|e| bad("tag", &e.reason.to_string()))?),
            "tag_mode" => {
                f.tag_mode =
                    TagMode::parse(v).ok_or_else(|| bad("tag_mode", "must be any, all or none"))?
            }
            "state" => {
                f.state = Some(nonempty(v).ok_or_else(|| bad("state", "must not be empty"))?)
            }
            "userid" => {
                f.userid = Some(WecomUserId::parse(v.clone()).map_err(|e| bad("userid", e.reason))?)
            }
            "bound" => {
                f.bound = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("bound", "must be true or false")),
                })
            }
            "q" => f.q = nonempty(v),
            "cursor" | "limit" => {}
            other => return Err(bad(other, "is not a filter of customers")),
        }
    }
    Ok(f)
}

/// The filter of a bulk request's `filter` object (same names as the query; `tag` a list).
pub fn filter_from_body(fields: Map<String, Value>) -> Result<CustomerFilter, ApiError> {
    let b = Body::from_map(
        fields,
        &["tag", "tag_mode", "state", "userid", "bound", "q"],
        "filter.",
    )?;
    let bad =
        |key: &str, what: &str| ApiError::BadRequest(format!("field `{}` {what}", b.field(key)));
    let mut f = CustomerFilter::default();
    for id in b.optional_str_list("tag")?.unwrap_or_default() {
        f.tags
            .push(HubTagId::parse(id).map_err(|e| bad("tag", e.reason))?);
    }
    if let Some(m) = b.optional_str("tag_mode")? {
        f.tag_mode =
            TagMode::parse(m).ok_or_else(|| bad("tag_mode", "must be any, all or none"))?;
    }
    f.state = b.optional_str("state")?.and_then(nonempty);
    if let Some(u) = b.optional_str("userid")?.and_then(nonempty) {
        f.userid = Some(WecomUserId::parse(u).map_err(|e| bad("userid", e.reason))?);
    }
    f.bound = b.optional_bool("bound")?;
    f.q = b.optional_str("q")?.and_then(nonempty);
    Ok(f)
}

/// How many customers a preview shows.
const SAMPLE: usize = 20;

/// `POST …/customers:bulk-tags`: a preview (200, nothing started) or a bulk run (202).
async fn bulk(app: &App, t: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, &["filter", "add", "remove", "preview"])?;
    let filter = match body.optional_object("filter")? {
        Some(fields) => filter_from_body(fields)?,
        None => CustomerFilter::default(),
    };
    check_tags(app, &t.id, &filter.tags, "filter.tag").await?;
    let mut change = Vec::new();
    for key in ["add", "remove"] {
        let mut ids = Vec::new();
        for id in body.optional_str_list(key)?.unwrap_or_default() {
            ids.push(
                HubTagId::parse(id)
                    .map_err(|e| ApiError::BadRequest(format!("field `{key}`: {}", e.reason)))?,
            );
        }
        check_tags(app, &t.id, &ids, key).await?;
        change.push(ids);
    }
    let (add, remove) = (change.remove(0), change.remove(0));
    if add.is_empty() && remove.is_empty() {
        return Err(ApiError::BadRequest(
            "field `add`: give at least one tag to add or to remove".into(),
        ));
    }
    if let Some(both) = add.iter().find(|x| remove.contains(x)) {
        return Err(ApiError::BadRequest(format!(
            "field `remove`: tag `{both}` is also in `add`"
        )));
    }
    if body.optional_bool("preview")?.unwrap_or(false) {
        let page = app
            .store
            .query_customers(&t.id, &filter, None, SAMPLE)
            .await?;
        let sample: Vec<Value> = page.customers.iter().map(CustomerEntry::view).collect();
        return Ok(HttpResponse::json(
            200,
            &json!({"matched": page.total, "sample": sample}),
        ));
    }
    if !t.settings.tags_enabled {
        return Err(ApiError::Conflict(
            "the customer-tag feature (tags_enabled) is off for this tenant".into(),
        ));
    }
    let run =
        crate::jobs::bulk_tags::start(app, t, filter.clone(), add.clone(), remove.clone()).await?;
    super::append_audit(
        app,
        &t.id,
        "bulk.started",
        format!("run:{}", run.id),
        None,
        Some(json!({"filter": filter, "add": add, "remove": remove})),
    )
    .await;
    Ok(HttpResponse::json(202, &json!({"run_id": run.id})))
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Every id names a live hub tag, or 400 naming `field` and the id.
pub async fn check_tags(
    app: &App,
    t: &TenantId,
    ids: &[HubTagId],
    field: &str,
) -> Result<(), ApiError> {
    for id in ids {
        let live = app
            .store
            .get_tag(t, id)
            .await?
            .is_some_and(|x| x.deleted_at.is_none());
        if !live {
            return Err(ApiError::BadRequest(format!(
                "field `{field}`: unknown tag id `{id}`"
            )));
        }
    }
    Ok(())
}
