//! The `scope` and `carry_to_mall` fields of the library's group routes: a group scoped to a
//! WeCom rule group (规则组) with its range of departments and staff, and whether such a
//! group is carried to the mall (which has no scopes). See docs/scoped-groups.md.

use crate::api::json::Body;
use crate::domain::{GroupScope, MAX_RANGE_NODES, TagGroup};
use crate::http::ApiError;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

const SCOPE_FIELDS: &[&str] = &["name", "departments", "users", "include_sub"];
/// WeCom userids are 1 to 64 characters.
const MAX_USERID_CHARS: usize = 64;

/// The group's scope as the API shows it (`null` for an unscoped group).
pub(super) fn scope_view(g: &TagGroup) -> Value {
    serde_json::to_value(&g.scope).unwrap_or(Value::Null)
}

/// The `scope` of a `POST …/tag-groups`: `None` when absent (or `null`). Its `name` defaults
/// to the group's.
pub(super) fn scope_for_create(
    body: &Body,
    group_name: &str,
) -> Result<Option<GroupScope>, ApiError> {
    let Some(map) = body.optional_object("scope")? else {
        return Ok(None);
    };
    let blank = GroupScope {
        strategy_id: None,
        name: group_name.to_owned(),
        departments: Vec::new(),
        users: Vec::new(),
        include_sub: false,
    };
    apply_scope(map, blank).map(Some)
}

/// The `scope` of a `PATCH …/tag-groups/{id}`: the fields given replace the group's, the
/// others stay. `None` when absent. A group cannot move between WeCom's corp library and a
/// rule group (WeCom has no call that moves tags between them), so giving a scope to an
/// unscoped group is refused.
pub(super) fn scope_for_patch(
    body: &Body,
    group: &TagGroup,
) -> Result<Option<GroupScope>, ApiError> {
    let Some(map) = body.optional_object("scope")? else {
        return Ok(None);
    };
    let Some(current) = group.scope.clone() else {
        return Err(ApiError::Conflict(
            "field `scope`: an unscoped group cannot become scoped (WeCom cannot move tags from \
             the corp library into a rule group); create a scoped group instead"
                .into(),
        ));
    };
    apply_scope(map, current).map(Some)
}

/// `carry_to_mall` of a create or a patch: only a scoped group may be kept from the mall.
pub(super) fn carry_to_mall(body: &Body, scoped: bool, current: bool) -> Result<bool, ApiError> {
    match body.optional_bool("carry_to_mall")? {
        None => Ok(current),
        Some(false) if !scoped => Err(ApiError::BadRequest(
            "field `carry_to_mall`: only a scoped group may be kept from the mall (an unscoped \
             group is everyone's and always carried)"
                .into(),
        )),
        Some(on) => Ok(on),
    }
}

fn apply_scope(map: Map<String, Value>, mut scope: GroupScope) -> Result<GroupScope, ApiError> {
    let body = Body::from_map(map, SCOPE_FIELDS, "scope.")?;
    if let Some(name) = body.optional_str("name")? {
        super::library::check_name(&body.field("name"), name)?;
        scope.name = name.to_owned();
    }
    if body.get("departments").is_some() {
        scope.departments = departments(&body)?;
    }
    if let Some(users) = body.optional_str_list("users")? {
        scope.users = userids(&body, users)?;
    }
    if let Some(on) = body.optional_bool("include_sub")? {
        scope.include_sub = on;
    }
    if scope.is_empty() {
        return Err(ApiError::BadRequest(
            "field `scope`: the range must name at least one department (`scope.departments`) \
             or staff member (`scope.users`)"
                .into(),
        ));
    }
    let nodes = scope.departments.len() + scope.users.len();
    if nodes > MAX_RANGE_NODES {
        return Err(ApiError::BadRequest(format!(
            "field `scope`: a WeCom rule group's range holds at most {MAX_RANGE_NODES} \
             departments and staff ({nodes} given)"
        )));
    }
    Ok(scope)
}

/// WeCom department ids: positive integers, each once; kept ascending.
fn departments(body: &Body) -> Result<Vec<u32>, ApiError> {
    let field = body.field("departments");
    let Some(Value::Array(items)) = body.get("departments") else {
        return Err(ApiError::BadRequest(format!(
            "field `{field}` must be a list of department ids"
        )));
    };
    let mut seen = BTreeSet::new();
    for (i, v) in items.iter().enumerate() {
        let id = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "field `{field}[{i}]` must be a WeCom department id (an integer from 1 to {})",
                    u32::MAX
                ))
            })?;
        if !seen.insert(id) {
            return Err(ApiError::BadRequest(format!(
                "field `{field}[{i}]`: department {id} is listed twice"
            )));
        }
    }
    Ok(seen.into_iter().collect())
}

/// WeCom userids: 1 to 64 visible ASCII characters, each once; kept ascending.
fn userids(body: &Body, users: Vec<String>) -> Result<Vec<String>, ApiError> {
    let field = body.field("users");
    let mut seen = BTreeSet::new();
    for (i, u) in users.into_iter().enumerate() {
        if u.is_empty() || u.len() > MAX_USERID_CHARS || !u.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::BadRequest(format!(
                "field `{field}[{i}]` must be a WeCom userid (1 to {MAX_USERID_CHARS} visible \
                 ASCII characters)"
            )));
        }
        if seen.contains(&u) {
            return Err(ApiError::BadRequest(format!(
                "field `{field}[{i}]`: `{u}` is listed twice"
            )));
        }
        seen.insert(u);
    }
    Ok(seen.into_iter().collect())
}
