//! What the automation tests share: a tag library, rules made through the admin API, and
//! reading firings and members back.

// The shared harness (tests/support), reachable as `crate::support::…` like in the other
// test binaries (sync/steps.rs, included here too, names it so).
pub use crate::harness::world;

use crate::harness::world::World;
use crate::steps::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tagsync::domain::MemberId;
use tagsync::sim::mall::NewMember;

/// The group every test's tags live in.
pub const GROUP: &str = "营销";

/// A world with the group 营销 and its tags made in the mall and carried everywhere; answers
/// the hub id of each tag by name.
pub async fn world_with_tags(tags: &[&str]) -> (World, BTreeMap<String, String>) {
    let w = start().await;
    let with_order: Vec<(&str, u32)> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i as u32 + 1))
        .collect();
    mall_made_group(&w, GROUP, 30, &with_order).await;
    let mut ids = BTreeMap::new();
    for t in tags {
        ids.insert((*t).to_owned(), s(&hub_tag(&w, GROUP, t).await["id"]));
    }
    (w, ids)
}

/// `GROUP/tag` names, as `member_tags_everywhere` compares them.
pub fn named(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| format!("{GROUP}/{t}")).collect()
}

pub async fn tags_everywhere(w: &World, member: &MemberId, tags: &[&str]) {
    let names = named(tags);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    member_tags_everywhere(w, member, &refs).await;
}

/// Creates a rule (201) and answers it.
pub async fn create_rule(w: &World, body: Value) -> Value {
    let (status, rule) = w.admin(Method::POST, "/rules", Some(body)).await;
    assert_eq!(status, 201, "creating a rule: {rule}");
    rule
}

/// A keyword rule: customer messages containing `word` add `add` (hub ids), mode `mode`.
pub fn keyword_rule(word: &str, add: &[&String], mode: &str) -> Value {
    json!({
        "name": format!("说了{word}"),
        "trigger": {"kind": "keyword", "any": [word], "from": "customer"},
        "conditions": [],
        "actions": {"add": add},
        "mode": mode,
    })
}

/// Every firing of a rule, newest first (all pages).
pub async fn firings(w: &World, rule: &Value) -> Vec<Value> {
    let id = s(&rule["id"]);
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = w
            .admin(
                Method::GET,
                &format!("/rules/{id}/firings?limit=7&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["firings"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

/// Customers `wm_{prefix}{i}` for i in 0..n, each followed by `sales_li`, each a mall member;
/// settled once. Answers (customer, member) pairs.
pub async fn customers(w: &World, prefix: &str, n: usize) -> Vec<(String, MemberId)> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = format!("wm_{prefix}{i}");
        w.wecom
            .console()
            .add_relation("sales_li", &c, None)
            .unwrap();
        let m = w
            .mall
            .operator()
            .create_member(NewMember::external(&c))
            .unwrap();
        out.push((c, m.id));
    }
    settle(w).await;
    out
}

/// The member's hub tag ids as the admin API shows them.
pub async fn hub_tag_ids(w: &World, member: &MemberId) -> Vec<String> {
    let (status, view) = w
        .admin(Method::GET, &format!("/members/{member}"), None)
        .await;
    assert_eq!(status, 200, "{view}");
    view["tag_ids"].as_array().unwrap().iter().map(s).collect()
}
