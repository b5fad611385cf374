//! WeCom's rate window met by many jobs at once: with the WeCom simulator enforcing
//! `--limit` `mark_tag` calls per clock minute (default 100), `--members` bound members with two
//! relations each (default 75: 150 relations) are tagged by one `POST …/member-tags:batch`,
//! timed until the whole system is quiet again. The window's floor is the time from the POST
//! until the last window the calls need opens (150 calls at 100 a minute: the next minute);
//! target: converged within 1.15× that floor, with at most as many 45009 answers as workers,
//! one successful `mark_tag` per relation and nothing parked.
//!
//! The POST is sent `--lead` seconds before a minute boundary of the clock tagsync and the
//! WeCom simulator share (an `OffsetClock` jumped forward, so the bench does not wait for the
//! wall clock's boundary); default 60, i.e. at the very start of a minute, so the floor is a
//! whole minute.
//!
//! Run: `cargo bench --bench rate_window` (1 round). Options (after `--`): `--workers N`
//! (8), `--limit N` (100), `--members N` (75), `--lead SECONDS` (60), `--rounds N` (1).
//! Under `cargo test --all-targets` it runs a smoke round: limit 20, 15 members, lead 5 s.

#[path = "../tests/support/mod.rs"]
mod support;

use crate::support::world::{ADMIN_TOKEN, World, WorldOptions};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagsync::domain::Timestamp;
use tagsync::ports::{Clock, OffsetClock};
use tagsync::sim::mall::NewMember;
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::classify::ApiOp;

const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

struct Options {
    workers: usize,
    limit: u32,
    members: usize,
    lead: u64,
    rounds: usize,
    bench: bool,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut o = if bench {
        Options {
            workers: 8,
            limit: 100,
            members: 75,
            lead: 60,
            rounds: 1,
            bench,
        }
    } else {
        Options {
            workers: 4,
            limit: 20,
            members: 15,
            lead: 5,
            rounds: 1,
            bench,
        }
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--") else {
            continue;
        };
        if flag == "bench" {
            continue;
        }
        let v = it.next().ok_or(format!("--{flag} needs a value"))?;
        let n: u64 = v
            .parse()
            .map_err(|_| format!("--{flag}: {v:?} is not a number"))?;
        match flag {
            "workers" => o.workers = n.max(1) as usize,
            "limit" => o.limit = n.max(1) as u32,
            "members" => o.members = n.max(1) as usize,
            "lead" => o.lead = n.clamp(1, 60),
            "rounds" => o.rounds = n.max(1) as usize,
            _ => eprintln!("rate_window: ignoring --{flag}"),
        }
    }
    Ok(o)
}

struct Round {
    wall: Duration,
    floor: Duration,
    ok_marks: usize,
    refused: usize,
    other_failures: usize,
    rescheduled: u64,
    retried: u64,
    parked: u64,
    failures: Vec<String>,
}

async fn round(o: &Options) -> Round {
    let clock = OffsetClock::default();
    let w = World::start(WorldOptions {
        workers: o.workers,
        wecom: SimConfig {
            clock: Arc::new(clock.clone()),
            rate_limits: [(ApiOp::MarkTag, o.limit)].into(),
            ..SimConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;
    let mut failures = Vec::new();
    let (status, group) = w
        .admin(
            reqwest::Method::POST,
            "/tag-groups",
            Some(json!({"name": "会员等级", "tags": [{"name": "金卡", "order": 1}]})),
        )
        .await;
    assert_eq!(status, 201, "POST …/tag-groups: {group}");
    let gold = group["tags"][0]["id"]
        .as_str()
        .expect("a tag id")
        .to_owned();
    let mut members = Vec::new();
    for i in 0..o.members {
        let customer = format!("wm_{i:05}");
        for s in [i % 10, i % 10 + 10] {
            w.wecom
                .silent()
                .add_relation(&format!("sales_{s}"), &customer, None)
                .expect("seed a relation");
        }
        let m = w
            .mall
            .silent()
            .create_member(NewMember::external(&customer))
            .expect("seed a mall member");
        members.push(m.id.as_str().to_owned());
    }
    // A member sync, as the nightly one would, so the hub knows (and has bound) every member.
    let (status, run) = w
        .admin(
            reqwest::Method::POST,
            "/sync",
            Some(json!({"scope": "members"})),
        )
        .await;
    assert_eq!(status, 202, "POST …/sync: {run}");
    if let Err(e) = w.settle(SETTLE_TIMEOUT).await {
        failures.push(format!("setup: {e}"));
    }
    let calls_before = w.wecom.calls().len();
    let (rescheduled0, retried0, parked0) = (
        w.jobs_with_outcome(Some("rescheduled")),
        w.jobs_with_outcome(Some("retried")),
        w.jobs_with_outcome(Some("parked")),
    );

    // `lead` seconds before a minute boundary.
    let now = clock.now().millis();
    let boundary = now - now.rem_euclid(60_000) + 60_000 + 60_000;
    let start_at = boundary - o.lead as i64 * 1000;
    clock.jump_to(Timestamp::from_millis(start_at));
    let relations = 2 * o.members as u64;
    // The last window the calls need opens this many minutes after the first boundary.
    let windows_after = relations.div_ceil(u64::from(o.limit)).saturating_sub(1);
    let floor_ms = if windows_after == 0 {
        0
    } else {
        (boundary - start_at) as u64 + (windows_after - 1) * 60_000
    };

    let body = json!({
        "items": members.iter().map(|m| json!({"member_id": m, "add": [gold], "remove": []})).collect::<Vec<_>>()
    });
    let http = reqwest::Client::new();
    let started = Instant::now();
    let resp = http
        .post(format!(
            "{}/admin/v1/tenants/{}/member-tags:batch",
            w.base, w.tenant
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the batch POST");
    if resp.status() != 202 {
        failures.push(format!("the batch answered {}", resp.status()));
    }
    if let Err(e) = w.settle(SETTLE_TIMEOUT).await {
        failures.push(e);
    }
    let wall = started.elapsed();

    let marks: Vec<_> = w.wecom.calls()[calls_before..]
        .iter()
        .filter(|c| c.op == ApiOp::MarkTag)
        .cloned()
        .collect();
    let ok_marks = marks.iter().filter(|c| c.errcode == Some(0)).count();
    let refused = marks.iter().filter(|c| c.errcode == Some(45009)).count();
    let other_failures = marks.len() - ok_marks - refused;
    for p in w.problems().await {
        failures.push(format!("problem: {p}"));
    }
    for m in &members {
        if let Err(e) = w.member_view(m).await.expect_everywhere(&["会员等级/金卡"]) {
            failures.push(format!("member {m}: {e}"));
            break;
        }
    }
    if ok_marks as u64 != relations {
        failures.push(format!(
            "{ok_marks} successful mark_tag for {relations} relations"
        ));
    }
    if refused > o.workers {
        failures.push(format!("{refused} answers 45009 for {} workers", o.workers));
    }
    let r = Round {
        wall,
        floor: Duration::from_millis(floor_ms),
        ok_marks,
        refused,
        other_failures,
        rescheduled: w.jobs_with_outcome(Some("rescheduled")) - rescheduled0,
        retried: w.jobs_with_outcome(Some("retried")) - retried0,
        parked: w.jobs_with_outcome(Some("parked")) - parked0,
        failures,
    };
    w.stop().await;
    r
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rate_window: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "rate_window: WeCom allows {} mark_tag a minute; {} members × 2 relations; {} workers; \
         POST {} s before a minute boundary",
        o.limit, o.members, o.workers, o.lead
    );
    println!(
        "| round | POST→settled ms | window floor ms | ratio | mark_tag ok | 45009 | other failures | jobs rescheduled | retried | parked | ok |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for n in 1..=o.rounds {
        let r = rt.block_on(round(&o));
        let ratio = if r.floor.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.3}", r.wall.as_secs_f64() / r.floor.as_secs_f64())
        };
        println!(
            "| {n} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} | {} |",
            r.wall.as_millis(),
            r.floor.as_millis(),
            r.ok_marks,
            r.refused,
            r.other_failures,
            r.rescheduled,
            r.retried,
            r.parked,
            if r.failures.is_empty() { "yes" } else { "NO" }
        );
        if o.bench && !r.floor.is_zero() {
            let within = r.wall.as_secs_f64() <= 1.15 * r.floor.as_secs_f64();
            println!(
                "target (≤ 1.15 × floor): {}",
                if within { "met" } else { "MISSED" }
            );
        }
        for f in &r.failures {
            eprintln!("  - {f}");
        }
        failed |= !r.failures.is_empty();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
