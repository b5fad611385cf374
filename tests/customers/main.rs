//! Customers in the hub (issue 15), end to end: the WeCom simulator, the mall simulator and a
//! real `tagsync serve` in one world per test. The customer index filled by the jobs that
//! read customers, `GET …/customers` with its filters, bulk tagging by filter, transfers.

#[path = "../sync/steps.rs"]
#[allow(dead_code)] // shared with tests/sync; not every helper is used here
mod steps;
#[path = "../support/mod.rs"]
mod support;

mod bulk;
mod list;
mod transfer_meanwhile;
mod transfers;

use crate::support::world::World;
use serde_json::Value;
use steps::*;

/// `GET …/customers?{query}`: 200 and its body, or the failure.
pub async fn customers(w: &World, query: &str) -> Value {
    let (status, body) = w
        .admin(Method::GET, &format!("/customers?{query}"), None)
        .await;
    assert_eq!(status, 200, "GET customers?{query}: {body}");
    body
}

/// The external userids of every page of `query` (50 a page), checking `total` on each.
pub async fn all_ids(w: &World, query: &str) -> Vec<String> {
    let (mut ids, mut cursor) = (Vec::new(), String::new());
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let body = customers(w, &format!("{query}{sep}limit=50&cursor={cursor}")).await;
        for c in body["customers"].as_array().expect("a list") {
            ids.push(s(&c["external_userid"]));
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => {
                assert_eq!(body["total"].as_u64(), Some(ids.len() as u64), "{query}");
                return ids;
            }
        }
    }
}

/// The hub id of `group/tag`.
pub async fn hub_tag_id(w: &World, group: &str, tag: &str) -> String {
    s(&hub_tag(w, group, tag).await["id"])
}
