//! Runs: single-flight per tenant, listed, and started every night for every tenant whose
//! customer-tag feature is on.

use crate::steps::*;
use crate::{counts, pairs, wait_run};
use serde_json::json;
use std::time::Duration;
use tagsync::sim::wecom::{Fault, FaultKind};
use tagsync::wecom::classify::ApiOp;

#[tokio::test]
async fn a_second_run_while_one_is_going_gets_409_and_runs_are_listed() {
    let w = start().await;
    let path = "/sync".to_string();
    // WeCom answers the run's first library read slowly: the run is surely still going.
    w.wecom.inject(
        ApiOp::GetCorpTagList,
        Fault::next(1, FaultKind::Delay(Duration::from_secs(2))),
    );
    let (status, first) = w
        .admin(Method::POST, &path, Some(json!({"scope": "all"})))
        .await;
    assert_eq!(status, 202, "{first}");
    let (status, busy) = w
        .admin(Method::POST, &path, Some(json!({"scope": "library"})))
        .await;
    assert_eq!(status, 409, "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains(first["run_id"].as_str().unwrap()),
        "the 409 names the run that is going: {busy}"
    );
    let report = wait_run(&w, &s(&first["run_id"])).await;
    assert_eq!(report["scope"], "all");
    assert!(
        report["progress"]["pages_done"].as_u64().unwrap() >= 3,
        "{report:#}"
    );
    let (status, list) = w.admin(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == first["run_id"]),
        "{list:#}"
    );
    let (status, body) = w
        .admin(Method::POST, &path, Some(json!({"scope": "everything"})))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = w.admin(Method::GET, &format!("{path}/nope"), None).await;
    assert_eq!(status, 404);
    w.stop().await;
}

#[tokio::test]
async fn the_nightly_trigger_runs_all_and_repairs_silent_changes() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    w.mall.silent().tag_member(&member, &gold_m).unwrap();
    w.mall.silent().rename_tag(&gold_m, "黄金卡").unwrap();
    settle(&w).await;

    let report = tagsync::jobs::nightly::run(&w.app).await.unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    let run = wait_run(&w, &report.started[0]).await;
    assert_eq!(run["origin"], "system");
    assert_eq!(
        counts(&run, "drift"),
        pairs(&[("member_tags.added.mall", 1), ("tags.renamed.mall", 1)]),
        "{run:#}"
    );
    converged(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/黄金卡"]).await;
    w.stop().await;
}

#[tokio::test]
async fn a_run_ends_failed_with_the_reason_when_the_feature_is_switched_off_midway() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    w.wecom.inject(
        ApiOp::GetCorpTagList,
        Fault::next(1, FaultKind::Delay(Duration::from_secs(1))),
    );
    let (status, started) = w
        .admin(Method::POST, "/sync", Some(json!({"scope": "all"})))
        .await;
    assert_eq!(status, 202, "{started}");
    let (status, _) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(json!({"tags_enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let run = s(&started["run_id"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let (_, r) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
        if r["status"] != "running" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(report["status"], "failed", "{report:#}");
    assert!(
        report["error"].as_str().unwrap().contains("tags_enabled"),
        "{report:#}"
    );
    w.stop().await;
}

/// Polls `GET …/sync/{run}` until the run is no longer running.
async fn run_ended(w: &crate::support::world::World, run: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, r) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
        assert_eq!(status, 200, "{r}");
        if r["status"] != "running" {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "{r:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_sync(w: &crate::support::world::World, scope: &str) -> (u16, serde_json::Value) {
    w.admin(Method::POST, "/sync", Some(json!({ "scope": scope })))
        .await
}

async fn redrive(w: &crate::support::world::World) -> u64 {
    let (status, body) = w.admin(Method::POST, "/dead-letters:redrive", None).await;
    assert_eq!(status, 200, "{body}");
    body["redriven"].as_u64().unwrap_or(0)
}

/// The mall answers nothing but errors: the run's library page fails on every try and is
/// parked. The run shows `failed` with the reason at once — not `running` for ten minutes
/// until called stalled — and a new manual sync is accepted. The old page, redriven after that
/// newer run started, does not carry the old run on: it is superseded.
#[tokio::test]
async fn a_run_whose_page_is_parked_fails_at_once_and_a_new_manual_sync_is_accepted() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    w.mall.update_faults(|f| f.fail_rate = 1.0);
    let (status, started) = start_sync(&w, "library").await;
    assert_eq!(status, 202, "{started}");
    let first = s(&started["run_id"]);
    let report = run_ended(&w, &first).await;
    assert_eq!(report["status"], "failed", "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("parked") && error.contains("gave up after 5 tries"),
        "{report:#}"
    );

    w.mall.update_faults(|f| f.fail_rate = 0.0);
    let (status, second) = start_sync(&w, "library").await;
    assert_eq!(status, 202, "a new sync is not blocked: {second}");
    let second = s(&second["run_id"]);
    let report = run_ended(&w, &second).await;
    assert_eq!(report["status"], "done", "{report:#}");

    assert_eq!(redrive(&w).await, 1, "the first run's page goes back");
    settle(&w).await;
    let (_, report) = w.admin(Method::GET, &format!("/sync/{first}"), None).await;
    assert_eq!(report["status"], "failed", "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("superseded by a newer run ({second})")),
        "{report:#}"
    );
    w.stop().await;
}

/// Once the mall answers again, the run's parked page, redriven, carries its run on to `done`
/// (no newer run started meanwhile).
#[tokio::test]
async fn a_parked_page_redriven_after_the_fix_carries_its_run_to_done() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    w.mall.update_faults(|f| f.fail_rate = 1.0);
    let (status, started) = start_sync(&w, "library").await;
    assert_eq!(status, 202, "{started}");
    let run = s(&started["run_id"]);
    assert_eq!(run_ended(&w, &run).await["status"], "failed");

    w.mall.update_faults(|f| f.fail_rate = 0.0);
    assert_eq!(redrive(&w).await, 1);
    settle(&w).await;
    let (_, report) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
    assert_eq!(report["status"], "done", "{report:#}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report:#}");
    w.stop().await;
}
