//! The operator API's tag library routes (`/admin/v1/tenants/{tenant}/tag-groups`, `/tags`,
//! see admin-api.md): the hub side only. These routes write the hub's groups and tags (new
//! objects start `pending` on both sides, with no side ids) and an audit entry; carrying the
//! changes to WeCom and the mall is the sync engine's job.
//!
//! Deleting marks objects deleted (`deleted_at`) and keeps them: the engine needs them to
//! delete on the sides. Deleted objects are not listed, cannot be patched (404), and deleting
//! them again is a no-op (204), so a retried DELETE is harmless.

use super::append_audit;
use super::group_scope::{carry_to_mall, scope_for_create, scope_for_patch, scope_view};
use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::ports::Write;
use http::Method;
use serde_json::{Value, json};

/// Longest name of a group or a tag, in characters (WeCom's limit; the mall's is the same).
pub const MAX_NAME_CHARS: usize = 30;
/// Most live tags one tenant may hold (WeCom's limit per corp).
pub const MAX_LIVE_TAGS: usize = 10_000;
/// Most tags one `POST …/tag-groups` may create: the group and its tags are written in one
/// store transaction, which holds at most 100 writes.
pub const MAX_TAGS_PER_CREATE: usize = 99;
/// Most writes of one store transaction.
const MAX_TRANSACT: usize = 100;

const GROUP_CREATE_FIELDS: &[&str] = &["name", "order", "tags", "scope", "carry_to_mall"];
const GROUP_TAG_FIELDS: &[&str] = &["name", "order"];
const GROUP_PATCH_FIELDS: &[&str] = &["name", "order", "scope", "carry_to_mall"];
const TAG_CREATE_FIELDS: &[&str] = &["group_id", "name", "order"];
const TAG_PATCH_FIELDS: &[&str] = &["name", "order", "group_id"];

/// Routes `rest` (the path after `/admin/v1/tenants/{tenant}/`) of a known tenant.
pub(super) async fn route(
    app: &App,
    tenant: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    let t = &tenant.id;
    match (req.method.clone(), rest) {
        (Method::GET, ["tag-groups"]) => list(app, t).await,
        (Method::POST, ["tag-groups"]) => create_group(app, t, req).await,
        (Method::PATCH, ["tag-groups", id]) => patch_group(app, t, &group_id(id)?, req).await,
        (Method::DELETE, ["tag-groups", id]) => delete_group(app, t, &group_id(id)?).await,
        (Method::POST, ["tags"]) => create_tag(app, t, req).await,
        (Method::PATCH, ["tags", id]) => patch_tag(app, t, &tag_id(id)?, req).await,
        (Method::DELETE, ["tags", id]) => delete_tag(app, t, &tag_id(id)?).await,
        (_, ["tag-groups"]) => Err(ApiError::MethodNotAllowed("use GET or POST".into())),
        (_, ["tags"]) => Err(ApiError::MethodNotAllowed("use POST".into())),
        (_, ["tag-groups", _] | ["tags", _]) => {
            Err(ApiError::MethodNotAllowed("use PATCH or DELETE".into()))
        }
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

/// Queues the jobs that carry an operator's change to WeCom and the mall (unless the tenant's
/// switches hold library changes back). Queued even when the request changed nothing: a
/// client retrying after a failed enqueue must get its change carried; an extra job finds
/// nothing to do. A queue failure answers 503, and the client's retry queues again.
async fn carry(app: &App, t: &TenantId, kinds: Vec<JobKind>) -> Result<(), ApiError> {
    let tenant = crate::api::load_tenant(app, t).await?;
    crate::jobs::enqueue(app, &tenant, kinds).await?;
    Ok(())
}

fn operator() -> Hint {
    Hint::from(Actor::Operator)
}

// ---------------------------------------------------------------------------------------
// Ids from paths and bodies.

/// A group id from a path: anything that cannot be a hub id names no group.
fn group_id(s: &str) -> Result<HubGroupId, ApiError> {
    HubGroupId::parse(s).map_err(|_| unknown_group(s))
}

fn tag_id(s: &str) -> Result<HubTagId, ApiError> {
    HubTagId::parse(s).map_err(|_| unknown_tag(s))
}

fn unknown_group(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown tag group `{id}`"))
}

fn unknown_tag(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown tag `{id}`"))
}

/// The group, if it exists and is not deleted.
async fn live_group(app: &App, t: &TenantId, id: &HubGroupId) -> Result<TagGroup, ApiError> {
    app.store
        .get_group(t, id)
        .await?
        .filter(|g| g.deleted_at.is_none())
        .ok_or_else(|| unknown_group(id.as_str()))
}

// ---------------------------------------------------------------------------------------
// Request bodies, field by field, so every 400 names the field (as `api::json`).

fn optional_name(body: &Body, key: &str) -> Result<Option<String>, ApiError> {
    body.optional_str(key)?
        .map(|s| check_name(&body.field(key), s).map(|()| s.to_string()))
        .transpose()
}

fn required_name(body: &Body, key: &str) -> Result<String, ApiError> {
    let s = body.required_str(key)?;
    check_name(&body.field(key), s)?;
    Ok(s.to_string())
}

fn optional_group_id(body: &Body, key: &str) -> Result<Option<HubGroupId>, ApiError> {
    body.optional_str(key)?
        .map(|s| {
            HubGroupId::parse(s)
                .map_err(|e| ApiError::BadRequest(format!("field `{}`: {e}", body.field(key))))
        })
        .transpose()
}

/// A group's or a tag's name: 1 to 30 characters (characters, not bytes: names are mostly
/// Chinese), no control characters, no whitespace at either end.
pub(super) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must not be empty"
        )));
    }
    if chars > MAX_NAME_CHARS {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must be at most {MAX_NAME_CHARS} characters (it has {chars})"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must not contain control characters"
        )));
    }
    if name.trim() != name {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must not start or end with whitespace"
        )));
    }
    if let Some(c) = name.chars().find(|c| is_bidi_control(*c)) {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must not contain bidirectional controls (U+{:04X}): they make a \
             name read differently from what it is",
            c as u32
        )));
    }
    if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` has no visible character"
        )));
    }
    Ok(())
}

/// Unicode's explicit bidirectional formatting characters (embeddings, overrides, isolates and
/// the marks), which can reorder what a name shows.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing: zero-width spaces and joiners, the word joiner and
/// invisible operators, the BOM, soft hyphen, variation selectors, Hangul fillers, tag
/// characters and the like. Allowed inside a name (emoji sequences use some), not as all of it.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

// ---------------------------------------------------------------------------------------
// Views.

fn sync_view<A, B, C, D>(wecom: &SideLink<A, B>, mall: &SideLink<C, D>) -> Value {
    json!({"wecom": wecom.state, "mall": mall.state})
}

/// Why a side failed, while it shows `failed` (the console shows it beside the badge).
fn errors_view<A, B, C, D>(wecom: &SideLink<A, B>, mall: &SideLink<C, D>) -> Value {
    let why = |state: SyncState, error: &Option<String>| match state {
        SyncState::Failed => json!(error),
        _ => Value::Null,
    };
    json!({"wecom": why(wecom.state, &wecom.error), "mall": why(mall.state, &mall.error)})
}

fn tag_view(t: &Tag) -> Value {
    json!({
        "id": t.id,
        "group_id": t.group_id,
        "name": t.name,
        "order": t.order,
        "wecom_id": t.wecom.id,
        "mall_id": t.mall.id,
        "sync": sync_view(&t.wecom, &t.mall),
        "errors": errors_view(&t.wecom, &t.mall),
    })
}

/// A group with its tags (`tags` must be the group's live tags, in listing order).
fn group_view(g: &TagGroup, tags: &[&Tag]) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "order": g.order,
        "wecom_id": g.wecom.id,
        "mall_id": g.mall.id,
        "sync": sync_view(&g.wecom, &g.mall),
        "errors": errors_view(&g.wecom, &g.mall),
        "scope": scope_view(g),
        "carry_to_mall": g.carry_to_mall,
        "tags": tags.iter().map(|t| tag_view(t)).collect::<Vec<_>>(),
    })
}

/// Listing order: `order` descending (both platforms show larger orders first), then id.
fn sort_groups(groups: &mut [TagGroup]) {
    groups.sort_by(|a, b| b.order.cmp(&a.order).then_with(|| a.id.cmp(&b.id)));
}

fn sort_tags(tags: &mut [&Tag]) {
    tags.sort_by(|a, b| b.order.cmp(&a.order).then_with(|| a.id.cmp(&b.id)));
}

/// The live tags of one group, in listing order.
fn tags_of<'a>(tags: &'a [Tag], group: &HubGroupId) -> Vec<&'a Tag> {
    let mut mine: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.deleted_at.is_none() && &t.group_id == group)
        .collect();
    sort_tags(&mut mine);
    mine
}

/// An operator change must reach the side: it is pending there again (a WeCom object this
/// app may not edit stays read-only).
fn mark_pending<I, S>(link: &mut SideLink<I, S>) {
    if link.state != SyncState::ReadOnly {
        link.state = SyncState::Pending;
        link.error = None;
    }
}

// ---------------------------------------------------------------------------------------
// Routes.

async fn list(app: &App, t: &TenantId) -> Result<HttpResponse, ApiError> {
    // A department-scoped operator sees the unscoped groups and their departments' groups.
    let scope = crate::api::access::current_scope(app, t).await?;
    let mut groups: Vec<TagGroup> = app
        .store
        .list_groups(t)
        .await?
        .into_iter()
        .filter(|g| g.deleted_at.is_none())
        .filter(|g| scope.as_ref().is_none_or(|s| s.sees_group(g)))
        .collect();
    sort_groups(&mut groups);
    let tags = app.store.list_tags(t).await?;
    let views: Vec<Value> = groups
        .iter()
        .map(|g| group_view(g, &tags_of(&tags, &g.id)))
        .collect();
    Ok(HttpResponse::json(200, &json!({"groups": views})))
}

/// The live group named exactly `name`, other than `except`.
async fn group_named(
    app: &App,
    t: &TenantId,
    name: &str,
    except: Option<&HubGroupId>,
) -> Result<Option<TagGroup>, ApiError> {
    Ok(app
        .store
        .list_groups(t)
        .await?
        .into_iter()
        .find(|g| g.deleted_at.is_none() && g.name == name && except.is_none_or(|e| e != &g.id)))
}

fn group_name_clash(name: &str, other: &TagGroup) -> ApiError {
    ApiError::Conflict(format!(
        "field `name`: a tag group named `{name}` already exists (id `{}`)",
        other.id
    ))
}

fn tag_name_clash(field: &str, name: &str, group: &HubGroupId, other: &str) -> ApiError {
    ApiError::Conflict(format!(
        "field `{field}`: tag group `{group}` already has a tag named `{name}` ({other})"
    ))
}

fn live_tag_count(tags: &[Tag]) -> usize {
    tags.iter().filter(|t| t.deleted_at.is_none()).count()
}

fn too_many_tags(field: &str, live: usize, adding: usize) -> ApiError {
    ApiError::BadRequest(format!(
        "field `{field}`: a tenant may hold at most {MAX_LIVE_TAGS} live tags \
         ({live} now, {adding} more requested)"
    ))
}

async fn create_group(
    app: &App,
    t: &TenantId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, GROUP_CREATE_FIELDS)?;
    let name = required_name(&body, "name")?;
    let order = body.optional_u32("order")?.unwrap_or(0);
    let items = body.required_list("tags")?;
    let scope = scope_for_create(&body, &name)?;
    let carried = carry_to_mall(&body, scope.is_some(), true)?;
    // An empty list is allowed: the group reaches the mall at once and WeCom (which keeps
    // no empty groups) with its first tag.
    if items.len() > MAX_TAGS_PER_CREATE {
        return Err(ApiError::BadRequest(format!(
            "field `tags` may list at most {MAX_TAGS_PER_CREATE} tags; add more with POST …/tags"
        )));
    }
    let mut new_tags: Vec<(String, u32)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("tags[{i}].");
        let Value::Object(map) = item else {
            return Err(ApiError::BadRequest(format!(
                "field `tags[{i}]` must be an object"
            )));
        };
        let f = Body::from_map(map.clone(), GROUP_TAG_FIELDS, &prefix)?;
        let tag_name = required_name(&f, "name")?;
        let tag_order = f.optional_u32("order")?.unwrap_or(0);
        if let Some(j) = new_tags.iter().position(|(n, _)| n == &tag_name) {
            return Err(ApiError::Conflict(format!(
                "field `tags[{i}].name`: `{tag_name}` is also the name of `tags[{j}]`"
            )));
        }
        new_tags.push((tag_name, tag_order));
    }

    if let Some(other) = group_named(app, t, &name, None).await? {
        return Err(group_name_clash(&name, &other));
    }
    let live = live_tag_count(&app.store.list_tags(t).await?);
    if live + new_tags.len() > MAX_LIVE_TAGS {
        return Err(too_many_tags("tags", live, new_tags.len()));
    }

    let now = app.clock.now();
    let group = TagGroup {
        tenant: t.clone(),
        id: HubGroupId::new_unchecked(new_ordered_id()),
        name,
        order,
        name_at: now,
        order_at: now,
        deleted_at: None,
        wecom: SideLink::default(),
        mall: SideLink::default(),
        scope,
        carry_to_mall: carried,
        version: 0,
    };
    let tags: Vec<Tag> = new_tags
        .into_iter()
        .map(|(name, order)| Tag {
            tenant: t.clone(),
            id: HubTagId::new_unchecked(new_ordered_id()),
            group_id: group.id.clone(),
            name,
            order,
            name_at: now,
            order_at: now,
            group_at: now,
            deleted_at: None,
            wecom: SideLink::default(),
            mall: SideLink::default(),
            version: 0,
        })
        .collect();
    let mut writes = vec![Write::Group(group.clone())];
    writes.extend(tags.iter().cloned().map(Write::Tag));
    app.store.transact(writes).await?;

    let view = group_view(&group, &tags_of(&tags, &group.id));
    tracing::info!(tenant = %t, group = %group.id, tags = tags.len(), "tag group created");
    append_audit(
        app,
        t,
        "tag_group.created",
        format!("group:{}", group.id),
        None,
        Some(view.clone()),
    )
    .await;
    let mut jobs = vec![JobKind::SyncGroup {
        group: group.id.clone(),
        hint: operator(),
    }];
    jobs.extend(tags.iter().map(|x| JobKind::SyncTag {
        tag: x.id.clone(),
        hint: operator(),
    }));
    carry(app, t, jobs).await?;
    Ok(HttpResponse::json(201, &view))
}

async fn patch_group(
    app: &App,
    t: &TenantId,
    id: &HubGroupId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, GROUP_PATCH_FIELDS)?;
    let name = optional_name(&body, "name")?;
    let order = body.optional_u32("order")?;
    let mut group = live_group(app, t, id).await?;
    let scope = scope_for_patch(&body, &group)?;
    let carried = carry_to_mall(&body, group.scope.is_some(), group.carry_to_mall)?;
    let tags = app.store.list_tags(t).await?;
    let before = group_view(&group, &tags_of(&tags, id));

    let now = app.clock.now();
    let mut changed = false;
    if let Some(name) = name.filter(|n| n != &group.name) {
        if let Some(other) = group_named(app, t, &name, Some(id)).await? {
            return Err(group_name_clash(&name, &other));
        }
        group.name = name;
        group.name_at = now;
        changed = true;
    }
    if let Some(order) = order.filter(|o| *o != group.order) {
        group.order = order;
        group.order_at = now;
        changed = true;
    }
    // A new range is WeCom's business only; the switch the mall's.
    let mut wecom_changed = changed;
    let mut mall_changed = changed;
    if let Some(scope) = scope.filter(|s| Some(s) != group.scope.as_ref()) {
        group.scope = Some(scope);
        wecom_changed = true;
    }
    if carried != group.carry_to_mall {
        group.carry_to_mall = carried;
        mall_changed = true;
    }
    let changed = wecom_changed || mall_changed;
    let after = group_view(&group, &tags_of(&tags, id));
    if changed {
        if wecom_changed {
            mark_pending(&mut group.wecom);
        }
        if mall_changed {
            mark_pending(&mut group.mall);
        }
        app.store.put_group(&mut group).await?;
        tracing::info!(tenant = %t, group = %id, "tag group changed");
        append_audit(
            app,
            t,
            "tag_group.updated",
            format!("group:{id}"),
            Some(before),
            Some(after.clone()),
        )
        .await;
    }
    let jobs = vec![JobKind::SyncGroup {
        group: id.clone(),
        hint: operator(),
    }];
    carry(app, t, jobs).await?;
    Ok(HttpResponse::json(200, &after))
}

async fn delete_group(app: &App, t: &TenantId, id: &HubGroupId) -> Result<HttpResponse, ApiError> {
    let mut group = app
        .store
        .get_group(t, id)
        .await?
        .ok_or_else(|| unknown_group(id.as_str()))?;
    let tags = app.store.list_tags(t).await?;
    let live_tags = tags_of(&tags, id);
    let group_live = group.deleted_at.is_none();
    let jobs = vec![JobKind::SyncGroup {
        group: id.clone(),
        hint: operator(),
    }];
    if !group_live && live_tags.is_empty() {
        carry(app, t, jobs).await?;
        return Ok(HttpResponse::empty(204));
    }
    let before = group_view(&group, &live_tags);

    let now = app.clock.now();
    let mut writes = Vec::with_capacity(live_tags.len() + 1);
    if group_live {
        group.deleted_at = Some(now);
        mark_pending(&mut group.wecom);
        mark_pending(&mut group.mall);
        writes.push(Write::Group(group));
    }
    for tag in &live_tags {
        let mut tag = (*tag).clone();
        tag.deleted_at = Some(now);
        mark_pending(&mut tag.wecom);
        mark_pending(&mut tag.mall);
        writes.push(Write::Tag(tag));
    }
    // The group goes first, with as many tags as fit: once it is deleted the listing shows
    // none of its tags. Should a later chunk fail, the DELETE answers an error and a retry
    // (deleting a deleted group is allowed) marks the rest.
    let mut rest = writes;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_TRANSACT));
        app.store.transact(rest).await?;
        rest = tail;
    }
    tracing::info!(tenant = %t, group = %id, tags = live_tags.len(), "tag group deleted");
    append_audit(
        app,
        t,
        "tag_group.deleted",
        format!("group:{id}"),
        Some(before),
        None,
    )
    .await;
    carry(app, t, jobs).await?;
    Ok(HttpResponse::empty(204))
}

async fn create_tag(app: &App, t: &TenantId, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, TAG_CREATE_FIELDS)?;
    let group_id = optional_group_id(&body, "group_id")?
        .ok_or_else(|| ApiError::BadRequest("field `group_id` is required".into()))?;
    let name = required_name(&body, "name")?;
    let order = body.optional_u32("order")?.unwrap_or(0);
    let group = live_group(app, t, &group_id).await?;
    let tags = app.store.list_tags(t).await?;
    if let Some(other) = tags_of(&tags, &group_id).iter().find(|x| x.name == name) {
        return Err(tag_name_clash(
            "name",
            &name,
            &group_id,
            &format!("id `{}`", other.id),
        ));
    }
    let live = live_tag_count(&tags);
    if live + 1 > MAX_LIVE_TAGS {
        return Err(too_many_tags("name", live, 1));
    }

    let now = app.clock.now();
    let tag = Tag {
        tenant: t.clone(),
        id: HubTagId::new_unchecked(new_ordered_id()),
        group_id,
        name,
        order,
        name_at: now,
        order_at: now,
        group_at: now,
        deleted_at: None,
        wecom: SideLink::default(),
        mall: SideLink::default(),
        version: 0,
    };
    // The group is written back unchanged: its version guards against a concurrent delete of
    // the group and serialises name checks within it.
    app.store
        .transact(vec![Write::Group(group), Write::Tag(tag.clone())])
        .await?;
    let view = tag_view(&tag);
    tracing::info!(tenant = %t, tag = %tag.id, group = %tag.group_id, "tag created");
    append_audit(
        app,
        t,
        "tag.created",
        format!("tag:{}", tag.id),
        None,
        Some(view.clone()),
    )
    .await;
    let jobs = vec![JobKind::SyncTag {
        tag: tag.id.clone(),
        hint: operator(),
    }];
    carry(app, t, jobs).await?;
    Ok(HttpResponse::json(201, &view))
}

async fn patch_tag(
    app: &App,
    t: &TenantId,
    id: &HubTagId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, TAG_PATCH_FIELDS)?;
    let name = optional_name(&body, "name")?;
    let order = body.optional_u32("order")?;
    let new_group = optional_group_id(&body, "group_id")?;
    let mut tag = app
        .store
        .get_tag(t, id)
        .await?
        .filter(|x| x.deleted_at.is_none())
        .ok_or_else(|| unknown_tag(id.as_str()))?;
    let before = tag_view(&tag);

    let now = app.clock.now();
    let name = name.filter(|n| n != &tag.name);
    let new_group = new_group.filter(|g| g != &tag.group_id);
    let order = order.filter(|o| *o != tag.order);
    if name.is_none() && new_group.is_none() && order.is_none() {
        carry(
            app,
            t,
            vec![JobKind::SyncTag {
                tag: id.clone(),
                hint: operator(),
            }],
        )
        .await?;
        return Ok(HttpResponse::json(200, &before));
    }
    // A rename or a move checks names in the group the tag ends up in, and writes that group
    // back unchanged so a concurrent delete of it or a clashing name fails on its version.
    let mut guard = None;
    if name.is_some() || new_group.is_some() {
        let target = new_group.clone().unwrap_or_else(|| tag.group_id.clone());
        let group = live_group(app, t, &target).await?;
        let final_name = name.as_deref().unwrap_or(&tag.name);
        let tags = app.store.list_tags(t).await?;
        if let Some(other) = tags_of(&tags, &target)
            .iter()
            .find(|x| x.id != tag.id && x.name == final_name)
        {
            let field = if name.is_some() { "name" } else { "group_id" };
            return Err(tag_name_clash(
                field,
                final_name,
                &target,
                &format!("id `{}`", other.id),
            ));
        }
        guard = Some(group);
    }
    if let Some(name) = name {
        tag.name = name;
        tag.name_at = now;
    }
    if let Some(order) = order {
        tag.order = order;
        tag.order_at = now;
    }
    if let Some(group) = new_group {
        tag.group_id = group;
        tag.group_at = now;
    }
    mark_pending(&mut tag.wecom);
    mark_pending(&mut tag.mall);
    let after = tag_view(&tag);
    match guard {
        Some(group) => {
            app.store
                .transact(vec![Write::Group(group), Write::Tag(tag)])
                .await?
        }
        None => app.store.put_tag(&mut tag).await?,
    }
    tracing::info!(tenant = %t, tag = %id, "tag changed");
    append_audit(
        app,
        t,
        "tag.updated",
        format!("tag:{id}"),
        Some(before),
        Some(after.clone()),
    )
    .await;
    carry(
        app,
        t,
        vec![JobKind::SyncTag {
            tag: id.clone(),
            hint: operator(),
        }],
    )
    .await?;
    Ok(HttpResponse::json(200, &after))
}

async fn delete_tag(app: &App, t: &TenantId, id: &HubTagId) -> Result<HttpResponse, ApiError> {
    let mut tag = app
        .store
        .get_tag(t, id)
        .await?
        .ok_or_else(|| unknown_tag(id.as_str()))?;
    let jobs = vec![JobKind::SyncTag {
        tag: id.clone(),
        hint: operator(),
    }];
    if tag.deleted_at.is_some() {
        carry(app, t, jobs).await?;
        return Ok(HttpResponse::empty(204));
    }
    let before = tag_view(&tag);
    tag.deleted_at = Some(app.clock.now());
    mark_pending(&mut tag.wecom);
    mark_pending(&mut tag.mall);
    app.store.put_tag(&mut tag).await?;
    tracing::info!(tenant = %t, tag = %id, "tag deleted");
    append_audit(
        app,
        t,
        "tag.deleted",
        format!("tag:{id}"),
        Some(before),
        None,
    )
    .await;
    carry(app, t, jobs).await?;
    Ok(HttpResponse::empty(204))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_counted_in_characters_and_checked_for_whitespace_and_controls() {
        assert!(check_name("name", &"标".repeat(30)).is_ok());
        assert!(check_name("name", &"标".repeat(31)).is_err());
        assert!(check_name("name", "").is_err());
        assert!(check_name("name", " vip").is_err());
        assert!(check_name("name", "vip\u{3000}").is_err());
        assert!(check_name("name", "v\u{7}ip").is_err());
        assert!(check_name("name", "v i p").is_ok());
    }

    #[test]
    fn names_of_only_invisible_characters_or_with_bidi_controls_are_refused() {
        for invisible in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            "\u{FEFF}\u{2060}",
            "\u{3164}",
            "\u{200B} \u{200B}",
            "\u{00AD}\u{FE0F}",
        ] {
            let e = check_name("name", invisible).unwrap_err().to_string();
            assert!(e.contains("no visible character"), "{invisible:?}: {e}");
        }
        for bidi in [
            "vip\u{202E}gpj.exe",
            "\u{2067}客户\u{2069}",
            "a\u{200F}b",
            "\u{061C}x",
        ] {
            let e = check_name("name", bidi).unwrap_err().to_string();
            assert!(e.contains("bidirectional"), "{bidi:?}: {e}");
        }
        // Joiners and selectors inside real text stay allowed (emoji sequences use them).
        assert!(check_name("name", "👨\u{200D}👩\u{200D}👧 家庭").is_ok());
        assert!(check_name("name", "❤\u{FE0F}").is_ok());
        assert!(check_name("name", "金卡").is_ok());
    }
}
