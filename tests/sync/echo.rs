//! No echo loops: tagsync's own writes come back (the mall sends a webhook for every change,
//! API-made or not) and change nothing, so a converged system goes quiet and stays quiet.

use crate::steps::*;
use crate::support::world::World;
use serde_json::json;
use std::time::Duration;
use tagsync::wecom::classify::ApiOp;

/// Longer than the workers' longest backoff (200 ms): a loop with retries in it shows here.
const QUIET_WINDOW: Duration = Duration::from_millis(600);

async fn stays_quiet(w: &World) {
    let before = w.activity();
    tokio::time::sleep(QUIET_WINDOW).await;
    settle(w).await;
    assert_eq!(w.activity(), before, "nothing happened while nobody acted");
}

fn wecom_writes(w: &World) -> usize {
    [
        ApiOp::AddCorpTag,
        ApiOp::EditCorpTag,
        ApiOp::DelCorpTag,
        ApiOp::MarkTag,
    ]
    .into_iter()
    .map(|op| w.wecom.call_count(op))
    .sum()
}

fn mall_writes(w: &World) -> usize {
    w.mall
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

#[tokio::test]
async fn mall_rename_converges_without_an_echo_loop() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let (wecom_before, mall_before) = (wecom_writes(&w), mall_writes(&w));

    w.mall
        .operator()
        .rename_tag(&mall_tag_id(&w, "会员等级", "金卡"), "黑金卡")
        .unwrap();
    converged(&w).await;
    stays_quiet(&w).await;

    assert_eq!(
        wecom_writes(&w) - wecom_before,
        1,
        "one rename in WeCom: {:?}",
        w.wecom.calls()
    );
    assert_eq!(
        mall_writes(&w),
        mall_before,
        "nothing written back to the mall"
    );
    w.stop().await;
}

#[tokio::test]
async fn admin_rename_echo_from_the_mall_changes_nothing() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let tag = hub_tag(&w, "会员等级", "金卡").await;
    let (wecom_before, mall_before) = (wecom_writes(&w), mall_writes(&w));
    let events_before = w.mall.events().len();

    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{}", s(&tag["id"])),
            Some(json!({"name": "黑金卡"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    converged(&w).await;
    stays_quiet(&w).await;

    assert_eq!(mall_writes(&w) - mall_before, 1, "{:#?}", w.mall.requests());
    assert_eq!(wecom_writes(&w) - wecom_before, 1, "{:?}", w.wecom.calls());
    let echoes = &w.mall.events()[events_before..];
    assert_eq!(
        echoes.len(),
        1,
        "the mall reported tagsync's own write once: {echoes:?}"
    );
    assert!(!echoes[0]["origin_request_id"].is_null(), "{echoes:?}");
    w.stop().await;
}

#[tokio::test]
async fn wecom_console_rename_converges_without_an_echo_loop() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let (wecom_before, mall_before) = (wecom_writes(&w), mall_writes(&w));

    w.wecom
        .console()
        .rename(&wecom_tag(&w, "会员等级", "金卡").id, "黑金卡")
        .unwrap();
    converged(&w).await;
    stays_quiet(&w).await;

    assert_eq!(
        wecom_writes(&w),
        wecom_before,
        "nothing written back to WeCom"
    );
    assert_eq!(mall_writes(&w) - mall_before, 1, "{:#?}", w.mall.requests());
    w.stop().await;
}
