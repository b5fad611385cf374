//! The operator API's channel codes (`/admin/v1/tenants/{t}/channels…`, automation.md §2): a
//! channel is a WeCom contact way (QR code, scene 2) created by tagsync with a `state`, and —
//! when tags are given — the `channel` rule that tags the customers who arrive through it.

use super::append_audit;
use super::rules::{channel_rule, check_state};
use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::wecom::client::WecomError;
use http::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const CHANNEL_FIELDS: &[&str] = &["name", "state", "users", "tag_ids"];
const MAX_USERS: usize = 100;

pub async fn route(
    app: &App,
    tenant: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (req.method.clone(), rest) {
        (Method::GET, ["channels"]) => {
            let channels: Vec<Value> = app
                .store
                .list_channels(&tenant.id)
                .await?
                .iter()
                .map(view)
                .collect();
            Ok(HttpResponse::json(200, &json!({ "channels": channels })))
        }
        (Method::POST, ["channels"]) => create(app, tenant, req).await,
        (_, ["channels"]) => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
        (Method::DELETE, ["channels", id]) => {
            delete(app, tenant, &ChannelId::new_unchecked(*id)).await
        }
        (_, ["channels", _]) => Err(ApiError::MethodNotAllowed("use DELETE".into())),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

pub fn view(c: &Channel) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "config_id": c.config_id,
        "qr_code": c.qr_code,
        "users": c.users,
        "rule_ids": c.rule_ids,
        "created_at": c.created_at.to_rfc3339(),
    })
}

/// WeCom refused or failed: retryable failures are 503 (try again), others 400 with WeCom's
/// reason (a member without customer contact, say).
fn wecom_error(e: WecomError) -> ApiError {
    if e.retryable() {
        ApiError::Unavailable(format!("WeCom did not answer in time ({e}); try again"))
    } else {
        ApiError::BadRequest(format!("WeCom refused the contact way: {e}"))
    }
}

async fn create(app: &App, tenant: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, CHANNEL_FIELDS)?;
    let name = body.nonempty_str("name")?;
    if name.chars().count() > MAX_STATE_CHARS {
        // WeCom's `remark` of a contact way holds at most 30 characters.
        return Err(ApiError::BadRequest(format!(
            "field `name` must be at most {MAX_STATE_CHARS} characters"
        )));
    }
    let state = match body.optional_str("state")? {
        Some(s) => s.to_owned(),
        None => format!("ch-{}", &new_ordered_id()[20..]),
    };
    check_state(&state, "state")?;
    let users: Vec<WecomUserId> = body
        .optional_str_list("users")?
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            WecomUserId::parse(u)
                .map_err(|e| ApiError::BadRequest(format!("field `users[{i}]`: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if users.is_empty() || users.len() > MAX_USERS {
        return Err(ApiError::BadRequest(format!(
            "field `users` must list 1 to {MAX_USERS} WeCom userids"
        )));
    }
    let tag_ids: Vec<HubTagId> = body
        .optional_str_list("tag_ids")?
        .unwrap_or_default()
        .into_iter()
        .map(HubTagId::new_unchecked)
        .collect();
    if tag_ids.len() > MAX_ACTION_TAGS {
        return Err(ApiError::BadRequest(format!(
            "field `tag_ids` may list at most {MAX_ACTION_TAGS} tags"
        )));
    }
    let live: BTreeSet<HubTagId> = app
        .store
        .list_tags(&tenant.id)
        .await?
        .into_iter()
        .filter(|t| t.deleted_at.is_none())
        .map(|t| t.id)
        .collect();
    if let Some((i, t)) = tag_ids.iter().enumerate().find(|(_, t)| !live.contains(*t)) {
        return Err(ApiError::BadRequest(format!(
            "field `tag_ids[{i}]` names `{t}`, which is not a live hub tag"
        )));
    }
    let existing = app.store.list_channels(&tenant.id).await?;
    if let Some(other) = existing.iter().find(|c| c.state == state) {
        return Err(ApiError::Conflict(format!(
            "state `{state}` is already the state of channel `{}` ({})",
            other.id, other.name
        )));
    }

    let creds = App::wecom_credentials(tenant);
    let way = app
        .wecom
        .add_contact_way(&creds, &state, &users, &name)
        .await
        .map_err(wecom_error)?;
    let mut rule_ids = Vec::new();
    if !tag_ids.is_empty() {
        match channel_rule(app, tenant, &name, &state, tag_ids).await {
            Ok(rule) => rule_ids.push(rule.id),
            Err(e) => {
                undo_way(app, tenant, &way.config_id).await;
                return Err(e);
            }
        }
    }
    let mut channel = Channel {
        tenant: tenant.id.clone(),
        id: ChannelId::new_unchecked(new_ordered_id()),
        name,
        state,
        config_id: way.config_id.clone(),
        qr_code: way.qr_code,
        users,
        rule_ids,
        created_at: app.clock.now(),
        version: 0,
    };
    if let Err(e) = app.store.put_channel(&mut channel).await {
        undo_way(app, tenant, &way.config_id).await;
        return Err(e.into());
    }
    append_audit(
        app,
        &tenant.id,
        "channel.created",
        format!("channel:{}", channel.id),
        None,
        Some(view(&channel)),
    )
    .await;
    Ok(HttpResponse::json(201, &view(&channel)))
}

/// A contact way created for a channel that could not be saved is deleted again (best
/// effort: API-created ways are invisible in WeCom's console, so none should be left over).
async fn undo_way(app: &App, tenant: &Tenant, config_id: &str) {
    if let Err(e) = app
        .wecom
        .del_contact_way(&App::wecom_credentials(tenant), config_id)
        .await
    {
        tracing::error!(tenant = %tenant.id, config_id, error = %e, "a contact way of an unsaved channel is left in WeCom");
    }
}

async fn delete(app: &App, tenant: &Tenant, id: &ChannelId) -> Result<HttpResponse, ApiError> {
    let Some(channel) = app.store.get_channel(&tenant.id, id).await? else {
        return Err(ApiError::NotFound(format!("no channel `{id}`")));
    };
    app.wecom
        .del_contact_way(&App::wecom_credentials(tenant), &channel.config_id)
        .await
        .map_err(wecom_error)?;
    // The channel's rules are switched off and kept, with their firings.
    for rule_id in &channel.rule_ids {
        for _ in 0..5 {
            let Some(mut rule) = app.store.get_rule(&tenant.id, rule_id).await? else {
                break;
            };
            if rule.mode == Mode::Off {
                break;
            }
            rule.mode = Mode::Off;
            rule.updated_at = app.clock.now();
            match app.store.put_rule(&mut rule).await {
                Ok(()) => break,
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    app.store.delete_channel(&tenant.id, id).await?;
    append_audit(
        app,
        &tenant.id,
        "channel.deleted",
        format!("channel:{id}"),
        Some(view(&channel)),
        None,
    )
    .await;
    Ok(HttpResponse::empty(204))
}
