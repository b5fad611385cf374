//! A first members run over a corp whose relations all need a `mark_tag`, with a rate budget
//! far below the run's need: the run plans its calls across the budget's hours and reports
//! when the last one goes, and the member jobs the budget holds back are rescheduled to each
//! window's end (never parked) and mark the rest there.

use crate::steps::*;
use crate::support::world::{World, WorldOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagsync::domain::Timestamp;
use tagsync::ports::{Clock, OffsetClock};
use tagsync::sim::mall::NewMember;
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::budget::BudgetConfig;

const HOUR: i64 = 3_600_000;
const RELATIONS: usize = 50;
/// `mark_tag` calls the budget allows an hour (the minute's limit is set out of the way).
const PER_HOUR: u32 = 20;

fn customer(i: usize) -> String {
    format!("wm_new{i:03}")
}
fn sales(i: usize) -> String {
    format!("sales_{}", i % 5)
}

/// Relations carrying the WeCom tag `tag`.
fn marked(w: &World, tag: &str) -> usize {
    (0..RELATIONS)
        .filter(|i| {
            w.wecom
                .relation_tags(&sales(*i), &customer(*i))
                .unwrap()
                .iter()
                .any(|t| t == tag)
        })
        .count()
}

/// Polls until `n` relations carry `tag` and no job runs (the rest wait for a later window).
async fn until_marked(w: &World, tag: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = w.app.queue.counts().await.unwrap();
        if marked(w, tag) >= n && c.in_flight == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} relations marked; queue {c:?}",
            marked(w, tag)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(marked(w, tag), n, "no more than the window allows");
}

async fn report(w: &World, run: &str) -> Value {
    let (status, body) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_run_needing_50_marks_at_20_an_hour_plans_its_finish_two_hours_on_and_its_jobs_wait_for_each_window()
 {
    let clock = OffsetClock::default();
    let w = World::start(WorldOptions {
        wecom: SimConfig {
            clock: Arc::new(clock.clone()),
            ..SimConfig::default()
        },
        wecom_budget: Some(BudgetConfig {
            per_minute: 1_000,
            per_hour: PER_HOUR,
        }),
        ..WorldOptions::default()
    })
    .await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 1)]).await;
    let gold_mall = mall_tag_id(&w, "会员等级", "金卡");
    let gold = w.wecom_tag("会员等级", "金卡").unwrap().id;
    // Five minutes into an hour (tagsync and WeCom read this clock): the run falls in one hour.
    // (After the library is carried: the mall simulator signs its webhooks by the wall clock.)
    let now = clock.now().millis();
    let hour = now.div_euclid(HOUR) + 1;
    clock.jump_to(Timestamp::from_millis(hour * HOUR + 5 * 60_000));
    // Customers tagsync has never heard of: a relation each in WeCom, a member each in the
    // mall carrying 金卡. Every relation needs one `mark_tag`.
    let (quiet, op) = (w.wecom.silent(), w.mall.silent());
    for i in 0..RELATIONS {
        quiet.add_relation(&sales(i), &customer(i), None).unwrap();
        let m = op.create_member(NewMember::external(&customer(i))).unwrap();
        op.change_member_tags(&m.id, std::slice::from_ref(&gold_mall), &[])
            .unwrap();
    }

    let (status, body) = w
        .admin(Method::POST, "/sync", Some(json!({"scope": "members"})))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = s(&body["run_id"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let r = report(&w, &run).await;
        if r["status"] != "running" {
            break r;
        }
        assert!(Instant::now() < deadline, "the walk never ended: {r:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "done", "{done:#}");
    until_marked(&w, &gold, PER_HOUR as usize).await;

    // 50 calls: this hour's 20 went; 20 go in the next hour, the last 10 as the one after
    // begins — about two hours from the start.
    let planned = &done["planned"];
    assert_eq!(planned["mark_tag_calls"], RELATIONS as u64, "{done:#}");
    assert_eq!(planned["limited_by"], "hour", "{done:#}");
    let finish = Timestamp::parse_rfc3339(planned["finish_at"].as_str().unwrap()).unwrap();
    assert!(
        finish.millis() >= (hour + 2) * HOUR && finish.millis() <= (hour + 3) * HOUR,
        "finishes at {finish}, started at {}",
        Timestamp::from_millis(hour * HOUR + 5 * 60_000)
    );
    let remaining = planned["remaining"].as_u64().unwrap();
    assert!(
        remaining >= (RELATIONS as u64 - PER_HOUR as u64),
        "{done:#}"
    );
    assert!(
        w.jobs_with_outcome(Some("rescheduled")) >= 1,
        "the held-back jobs wait for the window"
    );
    assert_eq!(w.jobs_with_outcome(Some("parked")), 0);

    // Each window's end lets the next 20 through, and the last 10 close the run's plan.
    clock.jump_to(Timestamp::from_millis((hour + 1) * HOUR + 1_000));
    until_marked(&w, &gold, 2 * PER_HOUR as usize).await;
    clock.jump_to(Timestamp::from_millis((hour + 2) * HOUR + 1_000));
    until_marked(&w, &gold, RELATIONS).await;
    let c = w.app.queue.counts().await.unwrap();
    assert_eq!((c.pending, c.dead), (0, 0), "{c:?}");
    assert_eq!(w.jobs_with_outcome(Some("parked")), 0);
    w.stop().await;
}
