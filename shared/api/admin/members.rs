//! The operator API's member routes (`/admin/v1/tenants/{tenant}/members/…`,
//! `/member-tags:batch`, see admin-api.md): a member's tags as the hub and WeCom show them, and
//! operator changes to a member's hub tags.
//!
//! A change writes the member's marks in the hub (each `(member, tag)` decided now, so it wins
//! over older changes from the sides) together with an audit entry in one transaction, then
//! queues a `SyncMember` job that carries it to WeCom and the mall. The job is dropped while
//! the tenant's `tags_enabled` or `member_sync` switch is off; the hub change stands and the
//! manual sync carries it later.

use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::jobs;
use crate::ports::Write;
use http::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// Most items of one `POST …/member-tags:batch`.
pub const MAX_BATCH_ITEMS: usize = 10_000;
/// How many store operations one request runs at once (member writes, tag reads).
const CONCURRENCY: usize = 32;
/// How often a member write is re-read and re-applied after a concurrent change to it.
const WRITE_ATTEMPTS: usize = 5;
/// How many unknown tag ids a 400 lists by name (and unknown members an answer lists).
const LISTED_UNKNOWN: usize = 20;
/// Most members one request asks the mall about (members the hub has not seen yet): a second
/// of the mall's default 50 requests a second. A member sync makes the hub know every mall
/// member, so a larger batch of unseen ones waits for it instead of a mall call each.
const MALL_LOOKUPS: usize = 50;
/// Mall look-ups at once (they share the tenant's mall rate limit with the jobs).
const MALL_LOOKUP_CONCURRENCY: usize = 8;

const CHANGE_FIELDS: &[&str] = &["add", "remove"];
const BATCH_FIELDS: &[&str] = &["items"];
const ITEM_FIELDS: &[&str] = &["member_id", "add", "remove"];

/// Routes `rest` (the path after `/admin/v1/tenants/{tenant}/`) of a known tenant.
pub(super) async fn route(
    app: &App,
    tenant: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (req.method.clone(), rest) {
        (Method::GET, ["members", id]) => view(app, &tenant.id, &member_id(id)?).await,
        (Method::POST, ["members", id, "tags"]) => change(app, tenant, &member_id(id)?, req).await,
        (Method::POST, ["member-tags:batch"]) => batch(app, tenant, req).await,
        (_, ["members", _]) => Err(ApiError::MethodNotAllowed("use GET".into())),
        (_, ["members", _, "tags"] | ["member-tags:batch"]) => {
            Err(ApiError::MethodNotAllowed("use POST".into()))
        }
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Ids from paths and bodies.

/// A mall member id from a path (percent-decoded once: mall ids need not be URL-safe); one
/// that cannot be a member id names no member.
fn member_id(raw: &str) -> Result<MemberId, ApiError> {
    decode_segment(raw)
        .and_then(|s| MemberId::parse(s).ok())
        .ok_or_else(|| unknown_member(raw))
}

fn unknown_member(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown member `{id}`"))
}

/// Percent-decodes a path segment; `None` when the result is not UTF-8. A `%` not followed by
/// two hex digits is kept as it is.
fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The tag ids of `key` (absent or `null`: none), each named by its position on error.
/// Returns (id, field) pairs, e.g. (`0193…`, `items[3].add[1]`).
fn tag_ids(body: &Body, key: &str) -> Result<Vec<(HubTagId, String)>, ApiError> {
    let items = match body.get(key) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "field `{}` must be a list of tag ids",
                body.field(key)
            )));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("{}[{i}]", body.field(key));
            let s = v.as_str().ok_or_else(|| {
                ApiError::BadRequest(format!("field `{field}` must be a tag id (a string)"))
            })?;
            let id = HubTagId::parse(s)
                .map_err(|e| ApiError::BadRequest(format!("field `{field}`: {e}")))?;
            Ok((id, field))
        })
        .collect()
}

/// One requested change of one member: tag → present after it.
struct Change {
    marks: BTreeMap<HubTagId, bool>,
}

/// Reads `add` and `remove` of one change (`body` is the request or one batch item): at least
/// one id, none in both lists. Pushes every id with its field onto `named`.
fn read_change(body: &Body, named: &mut Vec<(HubTagId, String)>) -> Result<Change, ApiError> {
    let add = tag_ids(body, "add")?;
    let remove = tag_ids(body, "remove")?;
    if add.is_empty() && remove.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "fields `{}` and `{}` list no tag id: give at least one",
            body.field("add"),
            body.field("remove")
        )));
    }
    let added: BTreeMap<&HubTagId, &str> = add.iter().map(|(id, f)| (id, f.as_str())).collect();
    if let Some((id, field)) = remove.iter().find(|(id, _)| added.contains_key(id)) {
        return Err(ApiError::BadRequest(format!(
            "field `{field}`: tag `{id}` is also in `{}` (a tag is either added or removed)",
            added[id]
        )));
    }
    let mut marks = BTreeMap::new();
    for (id, _) in &add {
        marks.insert(id.clone(), true);
    }
    for (id, _) in &remove {
        marks.insert(id.clone(), false);
    }
    named.extend(add);
    named.extend(remove);
    Ok(Change { marks })
}

/// Every named id must be a live hub tag; each distinct id is read once. The 400 lists the
/// unknown ones with the field that first named them.
async fn check_live_tags(
    app: &App,
    tenant: &TenantId,
    named: Vec<(HubTagId, String)>,
) -> Result<(), ApiError> {
    let mut seen = BTreeSet::new();
    let distinct: Vec<(HubTagId, String)> = named
        .into_iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .collect();
    let found = concurrently(distinct, |(id, field)| {
        let app = app.clone();
        let tenant = tenant.clone();
        async move {
            let live = app
                .store
                .get_tag(&tenant, &id)
                .await
                .map(|t| t.is_some_and(|t| t.deleted_at.is_none()));
            (id, field, live)
        }
    })
    .await?;
    let mut unknown = Vec::new();
    for (id, field, live) in found {
        if !live? {
            unknown.push(format!("`{id}` ({field})"));
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let more = unknown.len().saturating_sub(LISTED_UNKNOWN);
    unknown.truncate(LISTED_UNKNOWN);
    let mut message = format!(
        "unknown or deleted tag ids (not live hub tags): {}",
        unknown.join(", ")
    );
    if more > 0 {
        message.push_str(&format!(" and {more} more"));
    }
    Err(ApiError::BadRequest(message))
}

/// Runs `f` over `items`, at most [`CONCURRENCY`] at once, in the order of `items`.
async fn concurrently<I, T, F, Fut>(items: Vec<I>, f: F) -> Result<Vec<T>, ApiError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    crate::concurrency::bounded(items, CONCURRENCY, f)
        .await
        .map_err(|e| ApiError::Internal(format!("a concurrent store task failed: {e}")))
}

// ---------------------------------------------------------------------------------------
// Whether members exist.

/// Whether the hub has seen the member: a binding or hub tags, left by a webhook, a job or a
/// member sync.
async fn known_to_hub(app: &App, t: &TenantId, member: &MemberId) -> Result<bool, ApiError> {
    if app.store.get_binding(t, member).await?.is_some() {
        return Ok(true);
    }
    Ok(app.store.get_member_tags(t, member).await?.is_some())
}

/// Whether the mall has the member (`GET /members/{id}`): a member created in the mall a
/// moment ago, before any webhook or sync told the hub, is a member all the same.
async fn known_to_mall(app: &App, tenant: &Tenant, member: &MemberId) -> Result<bool, ApiError> {
    app.mall
        .get_member(&App::mall_endpoint(tenant), member)
        .await
        .map(|m| m.is_some())
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the mall could not be asked whether member `{member}` exists ({e}); try again"
            ))
        })
}

/// Why a member was left out.
enum Unknown {
    /// Neither the hub nor the mall knows it.
    Nowhere,
    /// The hub has not seen it and the request's mall look-ups were used up.
    NotLookedUp,
    /// The hub has not seen it and the mall could not be asked (busy, unreachable).
    NotChecked(String),
}

/// Splits `members` into those that exist (known to the hub, else to the mall) and those
/// that do not, asking the mall about at most [`MALL_LOOKUPS`] of them.
async fn existing_members(
    app: &App,
    tenant: &Tenant,
    members: Vec<MemberId>,
) -> Result<(BTreeSet<MemberId>, Vec<(MemberId, Unknown)>), ApiError> {
    let seen = concurrently(members, |m| {
        let app = app.clone();
        let t = tenant.id.clone();
        async move {
            let known = known_to_hub(&app, &t, &m).await;
            (m, known)
        }
    })
    .await?;
    let mut known = BTreeSet::new();
    let mut unseen = Vec::new();
    for (m, k) in seen {
        if k? {
            known.insert(m);
        } else {
            unseen.push(m);
        }
    }
    let mut unknown = Vec::new();
    let ask: Vec<MemberId> = if unseen.len() > MALL_LOOKUPS {
        let rest = unseen.split_off(MALL_LOOKUPS);
        unknown.extend(rest.into_iter().map(|m| (m, Unknown::NotLookedUp)));
        unseen
    } else {
        unseen
    };
    let asked = crate::concurrency::bounded(ask, MALL_LOOKUP_CONCURRENCY, |m| {
        let app = app.clone();
        let tenant = tenant.clone();
        async move {
            let exists = known_to_mall(&app, &tenant, &m).await;
            (m, exists)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a mall look-up task failed: {e}")))?;
    // One look-up refused (rate limited, say) leaves that member out, named, rather than
    // failing the whole batch.
    for (m, exists) in asked {
        match exists {
            Ok(true) => {
                known.insert(m);
            }
            Ok(false) => unknown.push((m, Unknown::Nowhere)),
            Err(e) => unknown.push((m, Unknown::NotChecked(e.to_string()))),
        }
    }
    Ok((known, unknown))
}

/// The answer's account of unknown members: the first few by id, and how many in all.
fn unknown_view(unknown: &[(MemberId, Unknown)]) -> Value {
    let listed: Vec<Value> = unknown
        .iter()
        .take(LISTED_UNKNOWN)
        .map(|(m, why)| {
            let reason = match why {
                Unknown::Nowhere => "neither the hub nor the mall knows this member".to_string(),
                Unknown::NotLookedUp => "not seen by the hub yet, and this batch's mall look-ups \
                                         were used up: run a member sync, then send it again"
                    .to_string(),
                Unknown::NotChecked(e) => format!("not seen by the hub yet, and {e}"),
            };
            json!({"member_id": m, "reason": reason})
        })
        .collect();
    json!({"count": unknown.len(), "members": listed})
}

// ---------------------------------------------------------------------------------------
// The member's hub tags.

/// Applies `marks` (tag → present) to the member's hub tags, decided now, with one audit entry
/// in the same transaction; a concurrent change of the member is re-read and the marks
/// re-applied. Answers the tags present after the change, and those it added (with their
/// mark's time: the `tag_added` event rules see).
async fn write_marks(
    app: &App,
    tenant: &TenantId,
    member: &MemberId,
    marks: &BTreeMap<HubTagId, bool>,
    batch_id: Option<&str>,
) -> Result<(Vec<HubTagId>, Vec<(HubTagId, Timestamp)>), ApiError> {
    let mut attempt = 1;
    loop {
        let mut mt = app
            .store
            .get_member_tags(tenant, member)
            .await?
            .unwrap_or_else(|| MemberTags::empty(tenant, member));
        let before = mt.present();
        let now = app.clock.now();
        for (tag, on) in marks {
            mt.marks.insert(
                tag.clone(),
                TagMark {
                    present: *on,
                    at: now,
                },
            );
        }
        let after = mt.present();
        let mut after_view = json!({"tag_ids": after});
        if let Some(b) = batch_id {
            after_view["batch_id"] = json!(b);
        }
        let entry = AuditEntry {
            tenant: tenant.clone(),
            at: now,
            side: Actor::Hub,
            action: "member.tags_changed".into(),
            entity: format!("member:{member}"),
            before: Some(json!({"tag_ids": before})),
            after: Some(after_view),
            origin: crate::api::access::current_origin(),
        };
        match app
            .store
            .transact(vec![Write::MemberTags(mt), Write::Audit(entry)])
            .await
        {
            Ok(()) => {
                let gained = after
                    .iter()
                    .filter(|t| !before.contains(t))
                    .map(|t| (t.clone(), now))
                    .collect();
                return Ok((after, gained));
            }
            Err(e) if e.is_conflict() && attempt < WRITE_ATTEMPTS => {
                tracing::debug!(tenant = %tenant, member = %member, attempt, "member tags changed meanwhile; re-applying");
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Tags an operator added reach the `tag_added` rules. The change itself is saved either way;
/// a failure to queue their evaluation is logged, not the request's failure.
async fn gained_reach_rules(
    app: &App,
    tenant: &Tenant,
    member: &MemberId,
    gained: Vec<(HubTagId, Timestamp)>,
) {
    if let Err(e) = crate::jobs::rules::tags_gained(app, tenant, member, gained, "operator").await {
        tracing::warn!(tenant = %tenant.id, member = %member, error = %e.reason, "tag_added rules not queued");
    }
}

fn sync_member(member: MemberId) -> JobKind {
    JobKind::SyncMember {
        member,
        hint: Hint::from(Actor::Operator),
    }
}

// ---------------------------------------------------------------------------------------
// Routes.

async fn view(app: &App, t: &TenantId, member: &MemberId) -> Result<HttpResponse, ApiError> {
    let (binding, tags) = tokio::join!(
        app.store.get_binding(t, member),
        app.store.get_member_tags(t, member)
    );
    let (binding, tags) = (binding?, tags?);
    if binding.is_none() && tags.is_none() {
        // Not seen by the hub yet; if the mall has it, it is a member without hub tags.
        let tenant = crate::api::load_tenant(app, t).await?;
        if !known_to_mall(app, &tenant, member).await? {
            return Err(unknown_member(member.as_str()));
        }
    }
    let external = binding.and_then(|b| b.external_userid);
    let customer = match &external {
        Some(e) => app.store.get_customer(t, e).await?,
        None => None,
    };

    // The relations carry WeCom tag ids: map each distinct one to its hub tag once; ids the
    // hub does not know (yet) are left out.
    let relations = customer.map(|c| c.relations).unwrap_or_default();
    let wecom_ids: Vec<WecomTagId> = relations
        .values()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mapped = concurrently(wecom_ids, |id| {
        let app = app.clone();
        let t = t.clone();
        async move {
            let hub = app
                .store
                .lookup_link(&t, Side::Wecom, EntityKind::Tag, id.as_str())
                .await;
            (id, hub)
        }
    })
    .await?;
    let mut to_hub: BTreeMap<WecomTagId, HubTagId> = BTreeMap::new();
    for (id, hub) in mapped {
        if let Some(h) = hub? {
            to_hub.insert(id, HubTagId::new_unchecked(h));
        }
    }
    let relations: Vec<Value> = relations
        .iter()
        .map(|(userid, tags)| {
            let ids: BTreeSet<&HubTagId> = tags.iter().filter_map(|w| to_hub.get(w)).collect();
            json!({"userid": userid, "tag_ids": ids})
        })
        .collect();

    // Marks of tags deleted since are not the member's tags any more.
    let live: BTreeSet<HubTagId> = app
        .store
        .list_tags(t)
        .await?
        .into_iter()
        .filter(|x| x.deleted_at.is_none())
        .map(|x| x.id)
        .collect();
    let tag_ids: Vec<HubTagId> = tags
        .as_ref()
        .map(MemberTags::present)
        .unwrap_or_default()
        .into_iter()
        .filter(|id| live.contains(id))
        .collect();
    Ok(HttpResponse::json(
        200,
        &json!({
            "member_id": member,
            "external_userid": external,
            "tag_ids": tag_ids,
            "relations": relations,
        }),
    ))
}

async fn change(
    app: &App,
    tenant: &Tenant,
    member: &MemberId,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, CHANGE_FIELDS)?;
    let mut named = Vec::new();
    let change = read_change(&body, &mut named)?;
    check_live_tags(app, &tenant.id, named).await?;
    if !known_to_hub(app, &tenant.id, member).await? && !known_to_mall(app, tenant, member).await? {
        return Err(ApiError::NotFound(format!(
            "unknown member `{member}`: neither the hub nor the mall knows it"
        )));
    }

    let (after, gained) = write_marks(app, &tenant.id, member, &change.marks, None).await?;
    let queued = jobs::enqueue(app, tenant, vec![sync_member(member.clone())]).await?;
    gained_reach_rules(app, tenant, member, gained).await;
    tracing::info!(tenant = %tenant.id, member = %member, tags = change.marks.len(), queued, "member tags changed");
    Ok(HttpResponse::json(
        202,
        &json!({"member_id": member, "tag_ids": after}),
    ))
}

async fn batch(app: &App, tenant: &Tenant, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, BATCH_FIELDS)?;
    let items = body.required_list("items")?;
    if items.is_empty() {
        return Err(ApiError::BadRequest(
            "field `items` must list at least one item".into(),
        ));
    }
    if items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "field `items` may list at most {MAX_BATCH_ITEMS} items ({} given)",
            items.len()
        )));
    }

    // Everything is validated before anything is written.
    let mut named = Vec::new();
    // Member → tag → present; a later item overrides an earlier one for the same pair.
    let mut members: BTreeMap<MemberId, BTreeMap<HubTagId, bool>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(ApiError::BadRequest(format!(
                "field `items[{i}]` must be an object"
            )));
        };
        let f = Body::from_map(map.clone(), ITEM_FIELDS, &format!("items[{i}]."))?;
        let member = MemberId::parse(f.required_str("member_id")?)
            .map_err(|e| ApiError::BadRequest(format!("field `{}`: {e}", f.field("member_id"))))?;
        let change = read_change(&f, &mut named)?;
        members.entry(member).or_default().extend(change.marks);
    }
    check_live_tags(app, &tenant.id, named).await?;

    // Members nobody knows are left out (and named in the answer), not queued for nothing.
    let (known, unknown) = existing_members(app, tenant, members.keys().cloned().collect()).await?;
    if known.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no member of the batch is known (to the hub or the mall): {}",
            unknown_view(&unknown)
        )));
    }
    members.retain(|m, _| known.contains(m));

    let batch_id = new_ordered_id();
    let count = members.len();
    let written = concurrently(members.into_iter().collect(), |(member, marks)| {
        let app = app.clone();
        let t = tenant.id.clone();
        let batch_id = batch_id.clone();
        async move {
            let r = write_marks(&app, &t, &member, &marks, Some(&batch_id)).await;
            (member, r)
        }
    })
    .await?;

    // Members whose write failed are not queued; the first failure is the answer (retrying
    // the whole batch re-applies the same decisions). The others are queued either way.
    let mut failed = 0;
    let mut first_error = None;
    let mut synced = Vec::with_capacity(written.len());
    for (member, r) in written {
        match r {
            Ok((_, gained)) => {
                gained_reach_rules(app, tenant, &member, gained).await;
                synced.push(member);
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(tenant = %tenant.id, member = %member, error = %e, "member tags not written");
                first_error.get_or_insert(e);
            }
        }
    }
    // One job per 100 members: their mall writes go in one batch request.
    let kinds = jobs::member_batch::jobs_for(synced, &Hint::from(Actor::Operator));
    let queued = jobs::enqueue(app, tenant, kinds).await?;
    tracing::info!(tenant = %tenant.id, batch = %batch_id, items = items.len(), members = count, failed, queued, "member tag batch applied");
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(HttpResponse::json(
        202,
        &json!({
            "batch_id": batch_id,
            "members": count,
            "items": items.len(),
            "unknown_members": unknown_view(&unknown),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_decoded_once_and_must_be_utf8() {
        assert_eq!(decode_segment("m_42").as_deref(), Some("m_42"));
        assert_eq!(decode_segment("a%2Fb%25").as_deref(), Some("a/b%"));
        assert_eq!(decode_segment("%E4%BC%9A").as_deref(), Some("会"));
        assert_eq!(decode_segment("100%").as_deref(), Some("100%"));
        assert_eq!(decode_segment("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(decode_segment("%ff"), None);
        assert!(member_id("m%0A1").is_err(), "control characters");
        assert!(member_id("").is_err());
    }
}
