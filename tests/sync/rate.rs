//! WeCom's rate limits (wecom-api.md §3) met by many jobs at once: the API is paused for the
//! corp until WeCom's window ends, every job that needs it is rescheduled to that moment
//! (`wecom::budget`, `Outcome::Reschedule`), and nothing is parked or lost.

use crate::steps::*;
use crate::support::world::{World, WorldOptions};
use std::sync::Arc;
use tagsync::domain::Timestamp;
use tagsync::metrics::JOBS;
use tagsync::ports::{Clock, OffsetClock};
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::classify::ApiOp;

/// WeCom's `mark_tag` limit in this test (its real one is 10,000; the budget's default share
/// stays far above this, so it is WeCom's 45009 that tagsync meets).
const LIMIT: u32 = 20;
const WORKERS: usize = 4;

fn jobs_with_outcome(w: &World, outcome: &str) -> u64 {
    let prefix = format!("{}{{", JOBS.name);
    w.app
        .metrics
        .prometheus()
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

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
    let retried_before = jobs_with_outcome(&w, "retried");

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
        jobs_with_outcome(&w, "rescheduled") >= 1,
        "jobs waited for the window by being rescheduled"
    );
    assert_eq!(
        jobs_with_outcome(&w, "retried") - retried_before,
        0,
        "no job failed and backed off"
    );
    assert_eq!(jobs_with_outcome(&w, "parked"), 0);
    w.stop().await;
}
