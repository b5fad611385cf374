//! Customer strategies (rule groups, 规则组, wecom-api.md §1.4) through the WeCom client:
//! `externalcontact/customer_strategy/list|get|get_range|create|edit|del`. A strategy's range
//! is a set of staff members and departments; its tags (`*_strategy_tag`, in `client.rs`) are
//! seen and applied only by them.
//!
//! Limits the callers must keep (WeCom refuses otherwise): at most [`MAX_RANGE_PER_CALL`]
//! range nodes per `create` / `edit` (this client splits larger changes into several edits),
//! at most [`MAX_RANGE_NODES`] per strategy, a child's range inside its parent's, and no two
//! edits of one strategy at the same time (tagsync's library jobs hold the tenant's library
//! lock around them).

use super::classify::ApiOp;
use super::client::{Empty, WecomClient, WecomCredentials, WecomError, json, lenient};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const MAX_RANGE_PER_CALL: usize = 100;
pub const MAX_RANGE_NODES: usize = 3000;
/// Page size of `list` and `get_range` (WeCom's largest).
const PAGE: u32 = 1000;
/// A guard against a server that keeps answering with a cursor.
const MAX_PAGES: usize = 100;

/// One node of a strategy's range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeNode {
    /// A staff member (`type` 1).
    User(String),
    /// A department (`type` 2).
    Party(u32),
}

#[derive(Serialize, Deserialize)]
struct RangeItem {
    #[serde(rename = "type", deserialize_with = "lenient::u32")]
    kind: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    userid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_u32"
    )]
    partyid: Option<u32>,
}

impl From<&RangeNode> for RangeItem {
    fn from(n: &RangeNode) -> Self {
        match n {
            RangeNode::User(u) => RangeItem {
                kind: 1,
                userid: Some(u.clone()),
                partyid: None,
            },
            RangeNode::Party(p) => RangeItem {
                kind: 2,
                userid: None,
                partyid: Some(*p),
            },
        }
    }
}

impl RangeItem {
    fn node(self) -> Option<RangeNode> {
        match (self.kind, self.userid, self.partyid) {
            (1, Some(u), _) => Some(RangeNode::User(u)),
            (2, _, Some(p)) => Some(RangeNode::Party(p)),
            _ => None,
        }
    }
}

/// A strategy as `customer_strategy/get` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StrategyInfo {
    #[serde(deserialize_with = "lenient::u32")]
    pub strategy_id: u32,
    /// 0 for a top-level strategy.
    #[serde(default, deserialize_with = "lenient::u32")]
    pub parent_id: u32,
    #[serde(default, deserialize_with = "lenient::string")]
    pub strategy_name: String,
}

#[derive(Serialize)]
struct PageReq<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_id: Option<u32>,
    #[serde(skip_serializing_if = "str::is_empty")]
    cursor: &'a str,
    limit: u32,
}

#[derive(Deserialize)]
struct IdItem {
    #[serde(deserialize_with = "lenient::u32")]
    strategy_id: u32,
}

#[derive(Deserialize)]
struct ListResp {
    #[serde(default)]
    strategy: Vec<IdItem>,
    #[serde(default, deserialize_with = "lenient::string")]
    next_cursor: String,
}

#[derive(Deserialize)]
struct GetResp {
    strategy: StrategyInfo,
}

#[derive(Deserialize)]
struct RangeResp {
    #[serde(default)]
    range: Vec<RangeItem>,
    #[serde(default, deserialize_with = "lenient::string")]
    next_cursor: String,
}

#[derive(Serialize)]
struct IdReq {
    strategy_id: u32,
}

#[derive(Serialize)]
struct CreateReq<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<u32>,
    strategy_name: &'a str,
    range: Vec<RangeItem>,
}

#[derive(Deserialize)]
struct CreateResp {
    #[serde(deserialize_with = "lenient::u32")]
    strategy_id: u32,
}

#[derive(Serialize)]
struct EditReq<'a> {
    strategy_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    range_add: Vec<RangeItem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    range_del: Vec<RangeItem>,
}

impl WecomClient {
    /// Every strategy's id, all pages.
    pub async fn strategy_ids(&self, creds: &WecomCredentials) -> Result<Vec<u32>, WecomError> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let req = PageReq {
                strategy_id: None,
                cursor: &cursor,
                limit: PAGE,
            };
            let resp: ListResp = self.call(creds, ApiOp::StrategyList, json(&req)).await?;
            ids.extend(resp.strategy.into_iter().map(|s| s.strategy_id));
            if resp.next_cursor.is_empty() {
                return Ok(ids);
            }
            cursor = resp.next_cursor;
        }
        Err(WecomError::invalid_request(
            ApiOp::StrategyList,
            "too many pages of strategies",
        ))
    }

    pub async fn strategy_get(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<StrategyInfo, WecomError> {
        let resp: GetResp = self
            .call(creds, ApiOp::StrategyGet, json(&IdReq { strategy_id }))
            .await?;
        Ok(resp.strategy)
    }

    /// A strategy's whole range, all pages.
    pub async fn strategy_range(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<BTreeSet<RangeNode>, WecomError> {
        let mut range = BTreeSet::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let req = PageReq {
                strategy_id: Some(strategy_id),
                cursor: &cursor,
                limit: PAGE,
            };
            let resp: RangeResp = self
                .call(creds, ApiOp::StrategyGetRange, json(&req))
                .await?;
            range.extend(resp.range.into_iter().filter_map(RangeItem::node));
            if resp.next_cursor.is_empty() {
                return Ok(range);
            }
            cursor = resp.next_cursor;
        }
        Err(WecomError::invalid_request(
            ApiOp::StrategyGetRange,
            "too many pages of range",
        ))
    }

    /// Creates a top-level strategy (`parent_id` `None`) or a child, with the first
    /// [`MAX_RANGE_PER_CALL`] nodes of `range`, then adds the rest edit by edit. Not safe to
    /// repeat (a second create makes a second strategy): callers look for it by name first.
    pub async fn strategy_create(
        &self,
        creds: &WecomCredentials,
        parent_id: Option<u32>,
        name: &str,
        range: &BTreeSet<RangeNode>,
    ) -> Result<u32, WecomError> {
        let op = ApiOp::StrategyCreate;
        if range.is_empty() {
            return Err(WecomError::invalid_request(
                op,
                "a strategy's range names nobody",
            ));
        }
        if range.len() > MAX_RANGE_NODES {
            return Err(WecomError::invalid_request(
                op,
                "a strategy's range holds at most 3000 nodes",
            ));
        }
        let nodes: Vec<&RangeNode> = range.iter().collect();
        let (first, rest) = nodes.split_at(nodes.len().min(MAX_RANGE_PER_CALL));
        let req = CreateReq {
            parent_id,
            strategy_name: name,
            range: first.iter().map(|n| RangeItem::from(*n)).collect(),
        };
        let resp: CreateResp = self.call(creds, op, json(&req)).await?;
        let rest: BTreeSet<RangeNode> = rest.iter().map(|n| (*n).clone()).collect();
        self.strategy_edit(creds, resp.strategy_id, None, &rest, &BTreeSet::new())
            .await?;
        Ok(resp.strategy_id)
    }

    /// Renames (`name`) and changes the range of a strategy: adds `add` and removes `del`,
    /// at most [`MAX_RANGE_PER_CALL`] nodes per call, additions first (a range never passes
    /// through empty). Nothing is sent when there is nothing to change.
    pub async fn strategy_edit(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        name: Option<&str>,
        add: &BTreeSet<RangeNode>,
        del: &BTreeSet<RangeNode>,
    ) -> Result<(), WecomError> {
        let mut add: Vec<&RangeNode> = add.iter().collect();
        let mut del: Vec<&RangeNode> = del.iter().collect();
        let mut name = name;
        while name.is_some() || !add.is_empty() || !del.is_empty() {
            let a = add.len().min(MAX_RANGE_PER_CALL);
            let d = del.len().min(MAX_RANGE_PER_CALL - a);
            let req = EditReq {
                strategy_id,
                strategy_name: name.take(),
                range_add: add.drain(..a).map(RangeItem::from).collect(),
                range_del: del.drain(..d).map(RangeItem::from).collect(),
            };
            let _: Empty = self.call(creds, ApiOp::StrategyEdit, json(&req)).await?;
        }
        Ok(())
    }

    /// Deletes a strategy (WeCom deletes its tags with it).
    pub async fn strategy_del(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<(), WecomError> {
        let _: Empty = self
            .call(creds, ApiOp::StrategyDel, json(&IdReq { strategy_id }))
            .await?;
        Ok(())
    }
}
