//! What every test does around its own steps: start a world, wait for it to go quiet (and
//! fail on anything parked or refused), check convergence, and find objects by name on each
//! side (failing with the side's library when they are missing).

use crate::support::world::{World, WorldOptions};
use serde_json::Value;
use std::time::Duration;
use tagsync::domain::{AuditEntry, MallGroupId, MallTagId, MemberId};
use tagsync::mall::client::MallGroupWithTags;
use tagsync::mall::webhook::MallTag;
use tagsync::sim::wecom::{SimGroup, SimTag};

pub use reqwest::Method;

/// Long enough for a slow machine; a test that waits this long has failed anyway.
const SETTLE: Duration = Duration::from_secs(30);

/// How long a test waits for a simulator to hold the call it armed a hold for.
pub const HELD_WITHIN: Duration = Duration::from_secs(30);

pub async fn start() -> World {
    World::start(WorldOptions::default()).await
}

/// Waits until nothing moves; fails the test when that does not happen, or when a job was
/// parked or a callback or webhook refused on the way.
pub async fn settle(w: &World) {
    if let Err(e) = w.settle(SETTLE).await {
        panic!("{e}\nproblems so far: {:#?}", w.problems().await);
    }
    let problems = w.problems().await;
    assert!(
        problems.is_empty(),
        "problems after settling:\n{}",
        problems.join("\n")
    );
}

/// Settles, then requires the three libraries to be the same (see `World::assert_converged`).
pub async fn converged(w: &World) {
    settle(w).await;
    if let Err(e) = w.assert_converged().await {
        panic!("{e}");
    }
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v}"))
        .to_owned()
}

pub async fn hub_group(w: &World, name: &str) -> Value {
    match w.hub_group(name).await {
        Some(g) => g,
        None => panic!("the hub has no group {name:?}: {}", w.hub_groups().await),
    }
}

pub async fn hub_tag(w: &World, group: &str, tag: &str) -> Value {
    match w.hub_tag(group, tag).await {
        Some(t) => t,
        None => panic!(
            "the hub has no tag {group:?}/{tag:?}: {}",
            w.hub_groups().await
        ),
    }
}

pub fn wecom_group(w: &World, name: &str) -> SimGroup {
    w.wecom_group(name)
        .unwrap_or_else(|| panic!("WeCom has no group {name:?}: {:#?}", w.wecom_library()))
}

pub fn wecom_tag(w: &World, group: &str, tag: &str) -> SimTag {
    w.wecom_tag(group, tag).unwrap_or_else(|| {
        panic!(
            "WeCom has no tag {group:?}/{tag:?}: {:#?}",
            w.wecom_library()
        )
    })
}

pub fn mall_group(w: &World, name: &str) -> MallGroupWithTags {
    w.mall_group(name)
        .unwrap_or_else(|| panic!("the mall has no group {name:?}: {:#?}", w.mall.library()))
}

pub fn mall_tag(w: &World, group: &str, tag: &str) -> MallTag {
    w.mall_tag(group, tag).unwrap_or_else(|| {
        panic!(
            "the mall has no tag {group:?}/{tag:?}: {:#?}",
            w.mall.library()
        )
    })
}

/// A group made in the mall by its operator, with tags `(name, order)`, and carried to the
/// other sides. Returns the mall group.
pub async fn mall_made_group(
    w: &World,
    name: &str,
    order: u32,
    tags: &[(&str, u32)],
) -> MallGroupId {
    let op = w.mall.operator();
    let g = op.create_group(name, order).unwrap();
    for (t, o) in tags {
        op.create_tag(&g.id, t, *o).unwrap();
    }
    converged(w).await;
    g.id
}

pub fn mall_tag_id(w: &World, group: &str, tag: &str) -> MallTagId {
    mall_tag(w, group, tag).id
}

/// A mall member bound to WeCom customer `customer`, who follows `followers` (a relation
/// each, added in the WeCom client), all known to tagsync. Returns the member id.
pub async fn bound_member(w: &World, customer: &str, followers: &[&str]) -> MemberId {
    for userid in followers {
        w.wecom
            .console()
            .add_relation(userid, customer, None)
            .unwrap();
    }
    let member = w
        .mall
        .operator()
        .create_member(tagsync::sim::mall::NewMember::external(customer))
        .unwrap();
    settle(w).await;
    member.id
}

/// Fails unless the member holds exactly `expected` (`"group/tag"`) in the hub, the mall and
/// on every WeCom relation of its customer.
pub async fn member_tags_everywhere(w: &World, member: &MemberId, expected: &[&str]) {
    let view = w.member_view(member.as_str()).await;
    if let Err(e) = view.expect_everywhere(expected) {
        panic!("member {member}: {e}");
    }
}

/// tagsync's audit trail, oldest first.
pub async fn audit(w: &World) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = w
            .app
            .store
            .list_audit(&w.tenant, cursor.as_deref(), 200)
            .await
            .expect("the audit trail is readable");
        entries.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    entries.reverse();
    entries
}

/// The audit trail, one line per entry, for a failure message.
pub fn render_audit(entries: &[AuditEntry]) -> String {
    let show = |v: &Option<Value>| v.as_ref().map_or("-".to_owned(), Value::to_string);
    entries
        .iter()
        .map(|e| {
            format!(
                "  {:?} {} {} by {}: {} → {}",
                e.side,
                e.action,
                e.entity,
                e.origin,
                show(&e.before),
                show(&e.after)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Entries that took any of `ids` (a tag's hub, WeCom and mall ids) off a member or a
/// relation: it was in their `before` list and is not in their `after` list.
pub fn removals_of<'a>(entries: &'a [AuditEntry], ids: &[&str]) -> Vec<&'a AuditEntry> {
    let holds = |v: &Option<Value>| {
        v.as_ref()
            .and_then(Value::as_array)
            .is_some_and(|xs| xs.iter().any(|x| ids.contains(&x.as_str().unwrap_or(""))))
    };
    entries
        .iter()
        .filter(|e| e.action.ends_with("tags_changed"))
        .filter(|e| holds(&e.before) && !holds(&e.after))
        .collect()
}

/// Polls `condition` (every 10 ms) until it holds; fails the test with `what` after
/// [`HELD_WITHIN`].
pub async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_within(what, HELD_WITHIN, condition).await
}

/// [`wait_until`] for work that takes longer than [`HELD_WITHIN`] on a loaded machine (a
/// long chain of jobs): fails the test with `what` after `within`.
pub async fn wait_until_within<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
