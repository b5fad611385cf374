//! `GET /members` paging: the pager walks every member exactly once, one page at a time.

use crate::helpers::*;
use std::collections::BTreeSet;
use tagsync::sim::mall::NewMember;

#[tokio::test]
async fn the_pager_walks_every_member_exactly_once_with_small_pages() {
    let m = spawn_mall().await;
    for i in 0..53 {
        m.sim
            .silent()
            .create_member(NewMember::external(&format!("wm{i}")))
            .unwrap();
    }
    let mut pager = m.client.members(&m.ep, 7);
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 7);
        pages += 1;
        seen.extend(page.into_iter().map(|member| member.id));
    }
    assert_eq!(pages, 8, "7 full pages and one of 4");
    assert!(pager.is_done());
    assert_eq!(pager.next_page().await.unwrap(), None);
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no member twice");
    let all: Vec<_> = m
        .sim
        .members()
        .into_iter()
        .map(|member| member.id)
        .collect();
    assert_eq!(seen, all);
}

#[tokio::test]
async fn a_walk_resumes_from_a_saved_cursor_and_sees_members_added_meanwhile() {
    let m = spawn_mall().await;
    for _ in 0..10 {
        m.sim.silent().create_member(NewMember::default()).unwrap();
    }
    let mut pager = m.client.members(&m.ep, 4);
    let first = pager.next_page().await.unwrap().unwrap();
    let cursor = pager.cursor().unwrap().to_owned();
    let late = m.sim.silent().create_member(NewMember::default()).unwrap();

    let mut resumed = m.client.members_from(&m.ep, Some(cursor), 4);
    let mut rest = Vec::new();
    while let Some(page) = resumed.next_page().await.unwrap() {
        rest.extend(page);
    }
    assert_eq!(first.len() + rest.len(), 11);
    assert_eq!(rest.last().unwrap().id, late.id);
}

#[tokio::test]
async fn an_empty_mall_is_one_empty_page() {
    let m = spawn_mall().await;
    let mut pager = m.client.members(&m.ep, 100);
    assert_eq!(pager.next_page().await.unwrap(), Some(vec![]));
    assert_eq!(pager.next_page().await.unwrap(), None);
}

#[tokio::test]
async fn limits_default_to_100_and_out_of_range_limits_and_bad_cursors_are_refused() {
    let m = spawn_mall().await;
    for _ in 0..101 {
        m.sim.silent().create_member(NewMember::default()).unwrap();
    }
    let get = |query: &str| {
        reqwest::Client::new()
            .get(format!("{}/members{query}", m.sim.base_url()))
            .bearer_auth(m.ep.token.expose())
            .send()
    };
    let page: serde_json::Value = get("").await.unwrap().json().await.unwrap();
    assert_eq!(page["members"].as_array().unwrap().len(), 100);
    assert!(page["next_cursor"].is_string());
    // The contract's own example leaves both empty.
    let page: serde_json::Value = get("?cursor=&limit=").await.unwrap().json().await.unwrap();
    assert_eq!(page["members"].as_array().unwrap().len(), 100);
    let page: serde_json::Value = get("?limit=500").await.unwrap().json().await.unwrap();
    assert_eq!(page["members"].as_array().unwrap().len(), 101);
    assert!(page["next_cursor"].is_null());
    for bad in ["?limit=0", "?limit=501", "?limit=x", "?cursor=garbage"] {
        assert_eq!(get(bad).await.unwrap().status(), 400, "{bad}");
    }
    let err = m
        .client
        .list_members(&m.ep, Some("garbage"), 10)
        .await
        .unwrap_err();
    assert_eq!((err.status, err.retryable()), (Some(400), false));
}
