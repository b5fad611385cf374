//! WeCom's rate limits (wecom-api.md §3) met by many jobs at once: the API is paused for the
//! corp until WeCom's window ends, every job that needs it is rescheduled to that moment
//! (`wecom::budget`, `Outcome::Reschedule`), and nothing is parked or lost.

use crate::steps::*;
use crate::support::world::{World, WorldOptions};
use std::sync::Arc;
use tagsync::domain::Timestamp;
use tagsync::ports::{Clock, OffsetClock};
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::classify::ApiOp;

/// WeCom's `mark_tag` limit in this test (its real one is 10,000; the budget's default share
/// stays far above this, so it is WeCom's 45009 that tagsync meets).
const LIMIT: u32 = 20;
const WORKERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relations_beyond_wecoms_minute_wait_for_the_next_minute_with_at_most_one_45009_per_worker()
{
    let clock = OffsetClock::default();
    let w = World::start(WorldOptions {
        workers: WORKERS,
        wecom: SimConfig {
            clock: Arc::new(clock.clone()),
            rate_limits: [(ApiOp::MarkTag, LIMIT)].into(),
            ..SimConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 1)]).await;
    let gold = mall_tag_id(&w, "会员等级", "金卡");
    // 15 members, two relations each: 30 relations to mark, half again WeCom's minute.
    let mut members = Vec::new();
    for i in 0..15 {
        let sales = [format!("sales_{}", i % 5), format!("sales_{}", i % 5 + 5)];
        let sales: Vec<&str> = sales.iter().map(String::as_str).collect();
        members.push(bound_member(&w, &format!("wm_{i:03}"), &sales).await);
    }
    let calls_before = w.wecom.calls().len();
    let retried_before = w.jobs_with_outcome(Some("retried"));

    // Ten seconds before WeCom's minute ends (both sides read this clock): the first 20 go
    // through, the 21st meets 45009, the rest wait for the next minute.
    let now = clock.now().millis();
    clock.jump_to(Timestamp::from_millis(
        now - now.rem_euclid(60_000) + 50_000,
    ));
    let op = w.mall.operator();
    for m in &members {
        op.tag_member(m, &gold).unwrap();
    }
    settle(&w).await;

    for m in &members {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    let marks: Vec<_> = w.wecom.calls()[calls_before..]
        .iter()
        .filter(|c| c.op == ApiOp::MarkTag)
        .cloned()
        .collect();
    let refused = marks.iter().filter(|c| c.errcode == Some(45009)).count();
    let done = marks.iter().filter(|c| c.errcode == Some(0)).count();
    assert_eq!(done, 30, "one successful mark_tag per relation");
    assert!(refused >= 1, "WeCom's limit was met (the test's premise)");
    assert!(
        refused <= WORKERS,
        "{refused} answers 45009: after the first, the API is paused for every worker"
    );
    assert_eq!(marks.len(), done + refused, "no other failures");
    assert!(
        w.jobs_with_outcome(Some("rescheduled")) >= 1,
        "jobs waited for the window by being rescheduled"
    );
    assert_eq!(
        w.jobs_with_outcome(Some("retried")) - retried_before,
        0,
        "no job failed and backed off"
    );
    assert_eq!(w.jobs_with_outcome(Some("parked")), 0);
    w.stop().await;
}

/// The mall's rate limit (mall-connector.md §3: 429 `rate_limited` with `Retry-After`) met
/// more often than a job may fail: the job waits for the `Retry-After` by being rescheduled,
/// which is no failure, so it is not parked however often the mall says "slow down" (found
/// by `benches/automation_feed.rs`: with the mall's 50 requests a second, a member job among
/// thousands met 429 on five receives in a row and was parked).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_job_meeting_the_malls_rate_limit_more_often_than_it_may_fail_waits_and_is_not_parked()
 {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 1)]).await;
    let gold = hub_tag(&w, "会员等级", "金卡").await;
    let member = bound_member(&w, "wm_busy", &["sales_li"]).await;
    let retried_before = w.jobs_with_outcome(Some("retried"));
    let requests_before = w.mall.requests().len();
    // More 429s than the job's receives allowed (5) times the client's tries in a job (3).
    w.mall.update_faults(|f| f.rate_limited_next = 16);

    let (status, body) = w
        .admin(
            Method::POST,
            &format!("/members/{member}/tags"),
            Some(serde_json::json!({"add": [gold["id"]]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    settle(&w).await;

    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;
    let limited = w.mall.requests()[requests_before..]
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(limited, 16, "the mall said 429 sixteen times");
    assert!(
        w.jobs_with_outcome(Some("rescheduled")) >= 5,
        "rescheduled past the receive limit"
    );
    assert_eq!(
        w.jobs_with_outcome(Some("retried")) - retried_before,
        0,
        "no receive counted as a failure"
    );
    assert_eq!(w.jobs_with_outcome(Some("parked")), 0);
    w.stop().await;
}
