//! Customer strategies (客户联系规则组, wecom-api.md §1.4) in the WeCom simulator:
//! `customer_strategy/list|get|get_range|create|edit|del`, with the documented limits, and the
//! check `add_strategy_tag` makes (only on an existing top-level strategy).
//!
//! Choices where the reference is silent:
//! - Every limit refusal answers 40058 (invalid parameter) with a message naming the limit;
//!   an unknown `strategy_id` answers 40058 too.
//! - "≤ 100 range nodes per call" counts `range_add` and `range_del` together.
//! - The range of a strategy with children cannot lose a node a child still holds (child ⊆
//!   parent would break); a strategy with children cannot be deleted.
//! - Deleting a strategy deletes its tag groups (their tags leave every relation).
//! - `admin_list` is optional (at most 20); tagsync creates strategies without admins (the
//!   corp's super admins manage every strategy).
//! - Calls are answered one at a time under the simulator's lock, so edits of one strategy
//!   are serial by construction; a client must still not overlap them (tagsync's library jobs
//!   hold the tenant's library lock).

use super::{ApiErr, ApiResult, SimState, invalid_param, opt_str, opt_u32};
use crate::domain::Timestamp;
pub use crate::wecom::strategy::RangeNode;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;

use crate::wecom::strategy::{MAX_RANGE_NODES, MAX_RANGE_PER_CALL};
/// Levels of strategies (§1.4).
const MAX_LEVELS: usize = 5;
const MAX_ADMINS: usize = 20;
const MAX_PAGE: usize = 1000;

fn node_json(n: &RangeNode) -> Value {
    match n {
        RangeNode::User(u) => json!({"type": 1, "userid": u}),
        RangeNode::Party(p) => json!({"type": 2, "partyid": p}),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimStrategy {
    pub id: u32,
    /// 0 for a top-level strategy.
    pub parent_id: u32,
    pub name: String,
    pub admins: Vec<String>,
    pub range: BTreeSet<RangeNode>,
    pub create_time: i64,
}

impl SimState {
    fn strategy(&self, id: u32) -> Result<&SimStrategy, ApiErr> {
        self.strategies
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| invalid_param(format!("invalid strategy_id {id}")))
    }

    fn level_of(&self, mut id: u32) -> usize {
        let mut level = 0;
        while id != 0 && level <= MAX_LEVELS {
            level += 1;
            id = self
                .strategies
                .iter()
                .find(|s| s.id == id)
                .map_or(0, |s| s.parent_id);
        }
        level
    }
}

/// `add_strategy_tag` only works on an existing top-level strategy (§1.4).
pub(super) fn check_tag_target(s: &SimState, strategy_id: u32) -> Result<(), ApiErr> {
    let st = s.strategy(strategy_id)?;
    if st.parent_id != 0 {
        return Err(invalid_param(format!(
            "strategy {strategy_id} is not a top-level strategy: tags can be added only to one"
        )));
    }
    Ok(())
}

fn range_list(body: &Value, field: &str) -> Result<Vec<RangeNode>, ApiErr> {
    let items = match &body[field] {
        Value::Null => return Ok(vec![]),
        Value::Array(a) => a,
        _ => return Err(invalid_param(format!("{field} must be a list"))),
    };
    items
        .iter()
        .map(|n| match opt_u32(n, "type")? {
            Some(1) => opt_str(n, "userid")?
                .filter(|u| !u.is_empty())
                .map(|u| RangeNode::User(u.to_owned()))
                .ok_or_else(|| invalid_param(format!("{field}: userid is required for type 1"))),
            Some(2) => opt_u32(n, "partyid")?
                .filter(|p| *p >= 1)
                .map(RangeNode::Party)
                .ok_or_else(|| invalid_param(format!("{field}: partyid is required for type 2"))),
            _ => Err(invalid_param(format!("{field}: type must be 1 or 2"))),
        })
        .collect()
}

fn required_id(body: &Value) -> Result<u32, ApiErr> {
    opt_u32(body, "strategy_id")?.ok_or_else(|| invalid_param("strategy_id is required"))
}

fn page_args(body: &Value) -> Result<(usize, usize), ApiErr> {
    let limit = opt_u32(body, "limit")?.unwrap_or(MAX_PAGE as u32) as usize;
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid_param(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let start = match opt_str(body, "cursor")? {
        None | Some("") => 0,
        Some(c) => c.parse().map_err(|_| invalid_param("invalid cursor"))?,
    };
    Ok((start, limit))
}

fn next_cursor(start: usize, limit: usize, total: usize) -> String {
    if start + limit < total {
        (start + limit).to_string()
    } else {
        String::new()
    }
}

/// `customer_strategy/list`.
pub(super) fn list(s: &SimState, body: &Value) -> ApiResult {
    let (start, limit) = page_args(body)?;
    let page: Vec<Value> = s
        .strategies
        .iter()
        .skip(start)
        .take(limit)
        .map(|st| json!({"strategy_id": st.id}))
        .collect();
    Ok(json!({"strategy": page, "next_cursor": next_cursor(start, limit, s.strategies.len())}))
}

/// `customer_strategy/get`.
pub(super) fn get(s: &SimState, body: &Value) -> ApiResult {
    let st = s.strategy(required_id(body)?)?;
    Ok(json!({"strategy": {
        "strategy_id": st.id, "parent_id": st.parent_id, "strategy_name": st.name,
        "create_time": st.create_time, "admin_list": st.admins,
        "privilege": {"manage_customer_tag": true},
    }}))
}

/// `customer_strategy/get_range`.
pub(super) fn get_range(s: &SimState, body: &Value) -> ApiResult {
    let st = s.strategy(required_id(body)?)?;
    let (start, limit) = page_args(body)?;
    let page: Vec<Value> = st
        .range
        .iter()
        .skip(start)
        .take(limit)
        .map(node_json)
        .collect();
    Ok(json!({"range": page, "next_cursor": next_cursor(start, limit, st.range.len())}))
}

fn admins(body: &Value) -> Result<Option<Vec<String>>, ApiErr> {
    match &body["admin_list"] {
        Value::Null => Ok(None),
        Value::Array(a) if a.len() <= MAX_ADMINS => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid_param("admin_list must be a list of userids"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Value::Array(_) => Err(invalid_param(format!(
            "admin_list holds at most {MAX_ADMINS} userids"
        ))),
        _ => Err(invalid_param("admin_list must be a list of userids")),
    }
}

fn check_name(body: &Value) -> Result<Option<String>, ApiErr> {
    match opt_str(body, "strategy_name")? {
        None => Ok(None),
        Some(n) if n.is_empty() || n.chars().count() > 30 => {
            Err(invalid_param("strategy_name must be 1 to 30 characters"))
        }
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// Nodes of `range` the parent's range lacks (a child's range must be a subset).
fn outside_parent(s: &SimState, parent_id: u32, range: &BTreeSet<RangeNode>) -> Result<(), ApiErr> {
    if parent_id == 0 {
        return Ok(());
    }
    let parent = s.strategy(parent_id)?;
    if let Some(n) = range.iter().find(|n| !parent.range.contains(n)) {
        return Err(invalid_param(format!(
            "range node {n:?} is outside the parent strategy's range: a child's range must be \
             a subset of its parent's"
        )));
    }
    Ok(())
}

/// `customer_strategy/create`.
pub(super) fn create(s: &mut SimState, body: &Value, now: Timestamp) -> ApiResult {
    let parent_id = opt_u32(body, "parent_id")?.unwrap_or(0);
    let name = check_name(body)?.ok_or_else(|| invalid_param("strategy_name is required"))?;
    let admins = admins(body)?.unwrap_or_default();
    let nodes = range_list(body, "range")?;
    if nodes.len() > MAX_RANGE_PER_CALL {
        return Err(invalid_param(format!(
            "range holds at most {MAX_RANGE_PER_CALL} nodes per call"
        )));
    }
    if parent_id != 0 {
        s.strategy(parent_id)?;
        if s.level_of(parent_id) + 1 > MAX_LEVELS {
            return Err(invalid_param(format!(
                "strategies nest at most {MAX_LEVELS} levels"
            )));
        }
    }
    let range: BTreeSet<RangeNode> = nodes.into_iter().collect();
    outside_parent(s, parent_id, &range)?;
    let id = s.strategies.iter().map(|st| st.id).max().unwrap_or(0) + 1;
    s.strategies.push(SimStrategy {
        id,
        parent_id,
        name,
        admins,
        range,
        create_time: now.secs(),
    });
    Ok(json!({"strategy_id": id}))
}

/// `customer_strategy/edit`: name, admins, `range_add` / `range_del`.
pub(super) fn edit(s: &mut SimState, body: &Value) -> ApiResult {
    let id = required_id(body)?;
    let current = s.strategy(id)?.clone();
    let name = check_name(body)?;
    let admins = admins(body)?;
    let add = range_list(body, "range_add")?;
    let del = range_list(body, "range_del")?;
    if add.len() + del.len() > MAX_RANGE_PER_CALL {
        return Err(invalid_param(format!(
            "range_add and range_del hold at most {MAX_RANGE_PER_CALL} nodes per call"
        )));
    }
    let mut range = current.range.clone();
    for n in &del {
        range.remove(n);
    }
    range.extend(add);
    if range.len() > MAX_RANGE_NODES {
        return Err(invalid_param(format!(
            "a strategy's range holds at most {MAX_RANGE_NODES} nodes"
        )));
    }
    outside_parent(s, current.parent_id, &range)?;
    for child in s.strategies.iter().filter(|c| c.parent_id == id) {
        if let Some(n) = child.range.iter().find(|n| !range.contains(n)) {
            return Err(invalid_param(format!(
                "range node {n:?} is still in child strategy {}'s range",
                child.id
            )));
        }
    }
    let st = s
        .strategies
        .iter_mut()
        .find(|st| st.id == id)
        .expect("found above");
    st.range = range;
    if let Some(n) = name {
        st.name = n;
    }
    if let Some(a) = admins {
        st.admins = a;
    }
    Ok(json!({}))
}

/// `customer_strategy/del`: its tag groups go with it.
pub(super) fn del(s: &mut SimState, body: &Value) -> ApiResult {
    let id = required_id(body)?;
    s.strategy(id)?;
    if s.strategies.iter().any(|c| c.parent_id == id) {
        return Err(invalid_param(format!(
            "strategy {id} has child strategies; delete them first"
        )));
    }
    while let Some(gi) = s.groups.iter().position(|g| g.strategy_id == Some(id)) {
        s.remove_group(gi);
    }
    s.strategies.retain(|st| st.id != id);
    Ok(json!({}))
}
