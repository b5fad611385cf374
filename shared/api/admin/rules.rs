//! The operator API's rule routes (`/admin/v1/tenants/{t}/rules…`, automation.md §2):
//! create, read, change and delete rules, page their firings, and start an undo run.

use super::append_audit;
use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::sync::rules::problems;
use http::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const RULE_FIELDS: &[&str] = &[
    "name",
    "trigger",
    "conditions",
    "actions",
    "mode",
    "canary_limit",
];
/// Firings one page shows by default, and at most.
const FIRINGS_PAGE: usize = 50;
const MAX_FIRINGS_PAGE: usize = 500;
const MAX_NAME_CHARS: usize = 100;
const MAX_KEYWORDS: usize = 100;

pub async fn route(
    app: &App,
    tenant: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    let m = req.method.clone();
    match (m, rest) {
        (Method::GET, ["rules"]) => list(app, tenant).await,
        (Method::POST, ["rules"]) => create(app, tenant, req).await,
        (_, ["rules"]) => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
        (Method::POST, ["rules", id]) if id.ends_with(":undo") => {
            undo(app, tenant, &rule_id(id.trim_end_matches(":undo")), req).await
        }
        (Method::GET, ["rules", id]) => {
            let rule = load(app, tenant, &rule_id(id)).await?;
            let live = live_tags(app, &tenant.id).await?;
            Ok(HttpResponse::json(200, &view(&rule, &live)))
        }
        (Method::PATCH, ["rules", id]) => patch(app, tenant, &rule_id(id), req).await,
        (Method::DELETE, ["rules", id]) => delete(app, tenant, &rule_id(id)).await,
        (_, ["rules", _]) => Err(ApiError::MethodNotAllowed(
            "use GET, PATCH or DELETE (POST for `:undo`)".into(),
        )),
        (Method::GET, ["rules", id, "firings"]) => firings(app, tenant, &rule_id(id), req).await,
        (_, ["rules", _, "firings"]) => Err(ApiError::MethodNotAllowed("use GET".into())),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

fn rule_id(raw: &str) -> RuleId {
    RuleId::new_unchecked(raw)
}

async fn load(app: &App, tenant: &Tenant, id: &RuleId) -> Result<Rule, ApiError> {
    app.store
        .get_rule(&tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no rule `{id}`")))
}

async fn live_tags(app: &App, t: &TenantId) -> Result<BTreeSet<HubTagId>, ApiError> {
    Ok(app
        .store
        .list_tags(t)
        .await?
        .into_iter()
        .filter(|x| x.deleted_at.is_none())
        .map(|x| x.id)
        .collect())
}

/// A rule as the API shows it: with its computed `status` and `problems`.
pub fn view(rule: &Rule, live: &BTreeSet<HubTagId>) -> Value {
    let problems = problems(rule, live);
    json!({
        "id": rule.id,
        "name": rule.name,
        "trigger": rule.trigger,
        "conditions": rule.conditions,
        "actions": rule.actions,
        "mode": rule.mode,
        "canary_limit": rule.canary_limit,
        "canary_acted": if rule.mode == Mode::Canary { Some(rule.canary_customers.len()) } else { None },
        "status": if problems.is_empty() { "ok" } else { "broken" },
        "problems": problems,
        "created_at": rule.created_at.to_rfc3339(),
        "updated_at": rule.updated_at.to_rfc3339(),
    })
}

pub fn firing_view(f: &Firing) -> Value {
    json!({
        "id": f.id,
        "rule_id": f.rule_id,
        "at": f.at.to_rfc3339(),
        "customer": f.customer,
        "member_id": f.member_id,
        "event": f.event,
        "outcome": f.outcome,
        "excluded_by": f.excluded_by,
        "changes": f.changes,
        "depth": f.depth,
        "chain_stopped": f.chain_stopped,
        "undone_by": f.undone_by,
    })
}

async fn list(app: &App, tenant: &Tenant) -> Result<HttpResponse, ApiError> {
    let (rules, live) = tokio::join!(app.store.list_rules(&tenant.id), live_tags(app, &tenant.id));
    let live = live?;
    let rules: Vec<Value> = rules?.iter().map(|r| view(r, &live)).collect();
    Ok(HttpResponse::json(200, &json!({ "rules": rules })))
}

/// The parts of a rule a request sets.
pub(crate) struct Parts {
    name: String,
    trigger: Trigger,
    conditions: Vec<Condition>,
    actions: Actions,
    mode: Mode,
    canary_limit: Option<u32>,
}

fn bad(field: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("field `{field}` {what}"))
}

/// Reads a rule body over `base` (a PATCH changes only what it names) and checks it whole.
fn read(body: &Body, base: Option<Parts>, live: &BTreeSet<HubTagId>) -> Result<Parts, ApiError> {
    let required =
        |k: &str| -> Result<&Value, ApiError> { body.get(k).ok_or_else(|| bad(k, "is required")) };
    let name = match (body.get("name"), &base) {
        (None, Some(b)) => b.name.clone(),
        _ => body.nonempty_str("name")?,
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad("name", format!("is over {MAX_NAME_CHARS} characters")));
    }
    let trigger = match (body.get("trigger"), &base) {
        (None, Some(b)) => b.trigger.clone(),
        _ => trigger(required("trigger")?)?,
    };
    let conditions = match (body.get("conditions"), &base) {
        (None, Some(b)) => b.conditions.clone(),
        (None, None) => Vec::new(),
        (Some(v), _) => conditions(v)?,
    };
    let actions = match (body.get("actions"), &base) {
        (None, Some(b)) => b.actions.clone(),
        _ => actions(required("actions")?)?,
    };
    let mode = match (body.get("mode"), &base) {
        (None, Some(b)) => b.mode,
        _ => serde_json::from_value::<Mode>(required("mode")?.clone())
            .map_err(|_| bad("mode", "must be one of off, dry_run, canary, on"))?,
    };
    let canary_limit = match (body.get("canary_limit"), &base) {
        (None, Some(b)) => b.canary_limit,
        (None, None) => None,
        (Some(v), _) => Some(
            v.as_u64()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| bad("canary_limit", "must be a whole number from 1"))?
                as u32,
        ),
    };
    if mode == Mode::Canary && canary_limit.is_none() {
        return Err(bad("canary_limit", "is required with mode `canary`"));
    }
    // Every tag named must be a live hub tag.
    let mut named: Vec<(String, &HubTagId)> = Vec::new();
    if let Trigger::TagAdded { tag_id } = &trigger {
        named.push(("trigger.tag_id".into(), tag_id));
    }
    for (i, c) in conditions.iter().enumerate() {
        for (j, t) in c.tags().iter().enumerate() {
            named.push((format!("conditions[{i}][{j}]"), t));
        }
    }
    for (j, t) in actions.add.iter().enumerate() {
        named.push((format!("actions.add[{j}]"), t));
    }
    for (j, t) in actions.remove.iter().enumerate() {
        named.push((format!("actions.remove[{j}]"), t));
    }
    if let Some((field, id)) = named.iter().find(|(_, id)| !live.contains(*id)) {
        return Err(bad(
            field,
            format!("names `{id}`, which is not a live hub tag"),
        ));
    }
    Ok(Parts {
        name,
        trigger,
        conditions,
        actions,
        mode,
        canary_limit,
    })
}

fn trigger(v: &Value) -> Result<Trigger, ApiError> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let allowed: &[&str] = match kind {
        "channel" => &["kind", "state"],
        "keyword" => &["kind", "any", "from"],
        "tag_added" => &["kind", "tag_id"],
        _ => {
            return Err(bad(
                "trigger.kind",
                "must be one of channel, keyword, tag_added",
            ));
        }
    };
    if let Some(unknown) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
    {
        return Err(bad(
            &format!("trigger.{unknown}"),
            "is not a field of this trigger",
        ));
    }
    let mut v = v.clone();
    if kind == "keyword" && v.get("from").is_none() {
        // A keyword rule listens to customers unless it says otherwise.
        v["from"] = json!("customer");
    }
    let t: Trigger = serde_json::from_value(v).map_err(|e| bad("trigger", e))?;
    match &t {
        Trigger::Channel { state } => check_state(state, "trigger.state")?,
        Trigger::Keyword { any, .. } => {
            if any.is_empty() || any.len() > MAX_KEYWORDS {
                return Err(bad(
                    "trigger.any",
                    format!("must list 1 to {MAX_KEYWORDS} words"),
                ));
            }
            if let Some(i) = any.iter().position(|w| w.trim().is_empty()) {
                return Err(bad(&format!("trigger.any[{i}]"), "is empty"));
            }
        }
        Trigger::TagAdded { .. } => {}
    }
    Ok(t)
}

/// A contact way's `state`: 1 to 30 characters (WeCom's limit).
pub fn check_state(state: &str, field: &str) -> Result<(), ApiError> {
    let n = state.chars().count();
    if n == 0 || n > MAX_STATE_CHARS {
        return Err(bad(
            field,
            format!("must be 1 to {MAX_STATE_CHARS} characters ({n} given)"),
        ));
    }
    if state.chars().any(char::is_control) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

fn conditions(v: &Value) -> Result<Vec<Condition>, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("conditions", "must be a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let field = format!("conditions[{i}]");
            let one_key = c.as_object().is_some_and(|o| o.len() == 1);
            if !one_key {
                return Err(bad(&field, "must be an object with one key"));
            }
            serde_json::from_value::<Condition>(c.clone()).map_err(|_| {
                bad(
                    &field,
                    "must be one of has_any, has_all, has_none (tag ids), staff_in (userids), \
                     added_within_days (a number)",
                )
            })
        })
        .collect()
}

fn actions(v: &Value) -> Result<Actions, ApiError> {
    if let Some(unknown) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| !["add", "remove"].contains(&k.as_str())))
    {
        return Err(bad(&format!("actions.{unknown}"), "is not add or remove"));
    }
    let a: Actions = serde_json::from_value(v.clone()).map_err(|e| {
        bad(
            "actions",
            format!("must be {{\"add\": [tag ids], \"remove\": [tag ids]}}: {e}"),
        )
    })?;
    if a.add.is_empty() && a.remove.is_empty() {
        return Err(bad("actions", "must add or remove at least one tag"));
    }
    if a.add.len() + a.remove.len() > MAX_ACTION_TAGS {
        return Err(bad(
            "actions",
            format!("may name at most {MAX_ACTION_TAGS} tag ids"),
        ));
    }
    if let Some(t) = a.add.iter().find(|t| a.remove.contains(t)) {
        return Err(bad(
            "actions.remove",
            format!("names `{t}`, which is also in `actions.add`"),
        ));
    }
    Ok(a)
}

/// Creates a rule from `parts` and stores it (used by the channel routes too).
pub(crate) async fn insert(app: &App, tenant: &Tenant, parts: Parts) -> Result<Rule, ApiError> {
    let now = app.clock.now();
    let mut rule = Rule {
        tenant: tenant.id.clone(),
        id: RuleId::new_unchecked(new_ordered_id()),
        name: parts.name,
        trigger: parts.trigger,
        conditions: parts.conditions,
        actions: parts.actions,
        mode: parts.mode,
        canary_limit: parts.canary_limit,
        canary_customers: BTreeSet::new(),
        created_at: now,
        updated_at: now,
        version: 0,
    };
    app.store.put_rule(&mut rule).await?;
    append_audit(
        app,
        &tenant.id,
        "rule.created",
        format!("rule:{}", rule.id),
        None,
        Some(json!({"name": rule.name, "mode": rule.mode, "trigger": rule.trigger})),
    )
    .await;
    Ok(rule)
}

/// A channel rule for `state` adding `tags`, in mode `on` (the channel routes).
pub async fn channel_rule(
    app: &App,
    tenant: &Tenant,
    name: &str,
    state: &str,
    tags: Vec<HubTagId>,
) -> Result<Rule, ApiError> {
    let parts = Parts {
        name: format!("渠道 {name}"),
        trigger: Trigger::Channel {
            state: state.to_owned(),
        },
        conditions: Vec::new(),
        actions: Actions {
            add: tags,
            remove: Vec::new(),
        },
        mode: Mode::On,
        canary_limit: None,
    };
    insert(app, tenant, parts).await
}

async fn create(app: &App, tenant: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, RULE_FIELDS)?;
    let live = live_tags(app, &tenant.id).await?;
    let parts = read(&body, None, &live)?;
    let rule = insert(app, tenant, parts).await?;
    Ok(HttpResponse::json(201, &view(&rule, &live)))
}

async fn patch(
    app: &App,
    tenant: &Tenant,
    id: &RuleId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, RULE_FIELDS)?;
    let live = live_tags(app, &tenant.id).await?;
    // A canary counting its customers meanwhile bumps the version: re-read and re-apply.
    for _ in 0..5 {
        let mut rule = load(app, tenant, id).await?;
        let before = json!({"mode": rule.mode, "trigger": rule.trigger, "actions": rule.actions});
        let base = Parts {
            name: rule.name.clone(),
            trigger: rule.trigger.clone(),
            conditions: rule.conditions.clone(),
            actions: rule.actions.clone(),
            mode: rule.mode,
            canary_limit: rule.canary_limit,
        };
        let p = read(&body, Some(base), &live)?;
        rule.name = p.name;
        rule.trigger = p.trigger;
        rule.conditions = p.conditions;
        rule.actions = p.actions;
        rule.mode = p.mode;
        rule.canary_limit = p.canary_limit;
        rule.updated_at = app.clock.now();
        match app.store.put_rule(&mut rule).await {
            Ok(()) => {
                append_audit(
                    app,
                    &tenant.id,
                    "rule.updated",
                    format!("rule:{id}"),
                    Some(before),
                    Some(json!({"mode": rule.mode, "trigger": rule.trigger, "actions": rule.actions})),
                )
                .await;
                return Ok(HttpResponse::json(200, &view(&rule, &live)));
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable(format!(
        "rule `{id}` kept changing; try again"
    )))
}

async fn delete(app: &App, tenant: &Tenant, id: &RuleId) -> Result<HttpResponse, ApiError> {
    for _ in 0..5 {
        let rule = load(app, tenant, id).await?;
        match app.store.delete_rule(&tenant.id, id, rule.version).await {
            Ok(()) => {
                append_audit(
                    app,
                    &tenant.id,
                    "rule.deleted",
                    format!("rule:{id}"),
                    Some(json!({"name": rule.name, "mode": rule.mode})),
                    None,
                )
                .await;
                return Ok(HttpResponse::empty(204));
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable(format!(
        "rule `{id}` kept changing; try again"
    )))
}

async fn firings(
    app: &App,
    tenant: &Tenant,
    id: &RuleId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    load(app, tenant, id).await?;
    let limit = match req.query_param("limit") {
        None => FIRINGS_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_FIRINGS_PAGE).contains(n))
            .ok_or_else(|| ApiError::BadRequest("query `limit` must be 1..=500".into()))?,
    };
    let cursor = req.query_param("cursor").filter(|c| !c.is_empty());
    let page = app
        .store
        .list_firings(&tenant.id, id, cursor, limit)
        .await?;
    let firings: Vec<Value> = page.items.iter().map(firing_view).collect();
    Ok(HttpResponse::json(
        200,
        &json!({"firings": firings, "next_cursor": page.next_cursor}),
    ))
}

async fn undo(
    app: &App,
    tenant: &Tenant,
    id: &RuleId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    load(app, tenant, id).await?;
    let since = if req.body.is_empty() {
        None
    } else {
        let body = Body::parse(&req.body, &["since"])?;
        match body.optional_str("since")? {
            None => None,
            Some(s) => Some(Timestamp::parse_rfc3339(s).ok_or_else(|| {
                bad(
                    "since",
                    "must be an RFC 3339 time, e.g. 2026-12-01T08:00:00Z",
                )
            })?),
        }
    };
    use crate::jobs::undo::{StartError, start};
    match start(app, tenant, id, since).await {
        Ok(run) => {
            append_audit(
                app,
                &tenant.id,
                "rule.undo_started",
                format!("rule:{id}"),
                None,
                Some(json!({"run_id": run.id, "since": since.map(|s| s.to_rfc3339())})),
            )
            .await;
            Ok(HttpResponse::json(202, &json!({"run_id": run.id})))
        }
        Err(StartError::Busy(m)) => Err(ApiError::Conflict(m)),
        Err(StartError::Store(e)) => Err(e.into()),
        Err(StartError::Queue(e)) => Err(e.into()),
    }
}
