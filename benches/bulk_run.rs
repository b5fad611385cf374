//! A bulk tagging run over 10,000 customers (issue 15): `POST …/customers:bulk-tags` with a
//! filter matching them all, timed until the run is `done` and again until the whole system
//! is quiet, with the WeCom and mall calls it made — **with the simulators' documented limits
//! on** (WeCom 10,000 calls a minute per API, wecom-api.md §3; the mall 50 requests a second,
//! mall-connector.md), or off (`--limits off`) to see what the limits cost.
//!
//! Not timed (a fresh [`World`], `tagsync serve` with 8 workers): a tag group `会员等级` with
//! `金卡` made through the admin API and carried to both sides; N customers who came through
//! contact way `展会`, each followed by one of 20 sales reps and every third by a second, and N
//! mall members bound to them, all seeded silently; a `members` sync, which binds them and
//! files them in the customer index. Timed: the POST (`{"filter": {"state": "展会"}, "add":
//! [金卡]}`) → the run's report says `done` → settled (the mall's webhooks of tagsync's own
//! writes delivered and dropped as echoes). The bench exits non-zero unless the report counts
//! N matched and N done, every relation and every mall member carries 金卡, there is exactly
//! one successful `mark_tag` per relation, and nothing is parked.
//!
//! Run: `cargo bench --bench bulk_run` (10,000 customers, limits on). Options: `--customers
//! N`, `--limits on|off`, `--workers N`. Under `cargo test --all-targets` it runs 40
//! customers as a smoke test (same checks).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::world::{World, WorldOptions};
use tagsync::sim::mall::{MallSimConfig, NewMember};
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::classify::ApiOp;

/// WeCom: per corp, per API, a minute (§3).
const WECOM_PER_MINUTE: u32 = 10_000;
const SALES: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(3_600);

struct Options {
    customers: usize,
    limits: bool,
    workers: usize,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut o = Options {
        customers: if bench { 10_000 } else { 40 },
        limits: true,
        workers: 8,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--customers" => {
                let v = it.next().ok_or("--customers needs a value")?;
                o.customers = v.parse().map_err(|_| format!("--customers: {v:?}"))?;
            }
            "--workers" => {
                let v = it.next().ok_or("--workers needs a value")?;
                o.workers = v.parse().map_err(|_| format!("--workers: {v:?}"))?;
            }
            "--limits" => match it.next().map(String::as_str) {
                Some("on") => o.limits = true,
                Some("off") => o.limits = false,
                other => return Err(format!("--limits: {other:?} is neither on nor off")),
            },
            _ => {}
        }
    }
    if o.customers == 0 || o.workers == 0 {
        return Err("--customers and --workers must be at least 1".into());
    }
    Ok(o)
}

fn followers(i: usize) -> Vec<String> {
    let mut out = vec![format!("sales_{:02}", i % SALES)];
    if i % 3 == 0 {
        out.push(format!("sales_{:02}", (i + 7) % SALES));
    }
    out
}

async fn wait_run(w: &World, run: &str) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, report) = w
            .admin(reqwest::Method::GET, &format!("/sync/{run}"), None)
            .await;
        match report["status"].as_str() {
            Some("running") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Some("running") => return Err(format!("run {run} still running: {report}")),
            _ => return Ok(report),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bulk_run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures: Vec<String> = Vec::new();
    let rate_limits = if o.limits {
        ApiOp::ALL
            .into_iter()
            .filter(|op| *op != ApiOp::GetToken)
            .map(|op| (op, WECOM_PER_MINUTE))
            .collect()
    } else {
        Default::default()
    };
    let w = World::start(WorldOptions {
        workers: o.workers,
        wecom: SimConfig {
            rate_limits,
            ..SimConfig::default()
        },
        mall: MallSimConfig {
            rate_limit_per_sec: if o.limits {
                MallSimConfig::default().rate_limit_per_sec
            } else {
                None
            },
            ..MallSimConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;

    // Setup, not timed.
    let setup = Instant::now();
    let (status, group) = w
        .admin(
            reqwest::Method::POST,
            "/tag-groups",
            Some(json!({"name": "会员等级", "tags": [{"name": "金卡"}]})),
        )
        .await;
    assert_eq!(status, 201, "POST …/tag-groups: {group}");
    let gold = group["tags"][0]["id"]
        .as_str()
        .expect("a tag id")
        .to_owned();
    if let Err(e) = w.settle(TIMEOUT).await {
        failures.push(format!("setup (library): {e}"));
    }
    let mut members = Vec::with_capacity(o.customers);
    for i in 0..o.customers {
        let c = format!("wm_{i:05}");
        for userid in followers(i) {
            w.wecom
                .silent()
                .add_relation(&userid, &c, Some("展会"))
                .expect("seed a relation");
        }
        let m = w
            .mall
            .silent()
            .create_member(NewMember::external(&c))
            .expect("seed a mall member");
        members.push((c, m.id));
    }
    let relations: usize = (0..o.customers).map(|i| followers(i).len()).sum();
    let (status, sync) = w
        .admin(
            reqwest::Method::POST,
            "/sync",
            Some(json!({"scope": "members"})),
        )
        .await;
    assert_eq!(status, 202, "POST …/sync: {sync}");
    match wait_run(&w, sync["run_id"].as_str().unwrap_or_default()).await {
        Ok(r) if r["status"] == "done" => {}
        Ok(r) => failures.push(format!("setup (members sync): {r}")),
        Err(e) => failures.push(format!("setup (members sync): {e}")),
    }
    if let Err(e) = w.settle(TIMEOUT).await {
        failures.push(format!("setup (settle): {e}"));
    }
    eprintln!(
        "bulk_run: {} customers, {relations} relations seeded and indexed in {:.1} s",
        o.customers,
        setup.elapsed().as_secs_f64()
    );
    let (_, preview) = w
        .admin(
            reqwest::Method::POST,
            "/customers:bulk-tags",
            Some(json!({"filter": {"state": "展会"}, "add": [gold], "preview": true})),
        )
        .await;
    if preview["matched"] != o.customers {
        failures.push(format!(
            "the index matches {} customers",
            preview["matched"]
        ));
    }

    // Timed.
    let calls_before = w.wecom.calls().len();
    let requests_before = w.mall.requests().len();
    let started = Instant::now();
    let (status, body) = w
        .admin(
            reqwest::Method::POST,
            "/customers:bulk-tags",
            Some(json!({"filter": {"state": "展会"}, "add": [gold]})),
        )
        .await;
    assert_eq!(status, 202, "POST …/customers:bulk-tags: {body}");
    let run = body["run_id"].as_str().unwrap_or_default().to_owned();
    let report = match wait_run(&w, &run).await {
        Ok(r) => r,
        Err(e) => {
            failures.push(e);
            json!({})
        }
    };
    let done_at = started.elapsed();
    if let Err(e) = w.settle(TIMEOUT).await {
        failures.push(format!("settle: {e}"));
    }
    let quiet_at = started.elapsed();

    // What it did.
    let mut wecom: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut marked = BTreeSet::new();
    let mut marks_ok = 0;
    for c in &w.wecom.calls()[calls_before..] {
        let e = wecom.entry(c.op.path().to_owned()).or_default();
        e.0 += 1;
        if c.errcode != Some(0) {
            e.1 += 1;
        }
        if c.op == ApiOp::MarkTag && c.errcode == Some(0) {
            marks_ok += 1;
            marked.insert((
                c.request["userid"].to_string(),
                c.request["external_userid"].to_string(),
            ));
        }
    }
    let mut mall: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for q in &w.mall.requests()[requests_before..] {
        let kind = if q.path.contains("/members/") && q.path.ends_with("/tags") {
            format!("{} /members/{{id}}/tags", q.method)
        } else if q.path.contains("/members/") {
            format!("{} /members/{{id}}", q.method)
        } else {
            format!("{} {}", q.method, q.path)
        };
        let e = mall.entry(kind).or_default();
        e.0 += 1;
        if q.status == 429 {
            e.1 += 1;
        }
    }

    // Correct?
    if report["status"] != "done"
        || report["counts"] != json!({"matched": o.customers, "done": o.customers, "failed": 0})
    {
        failures.push(format!("the run's report: {report}"));
    }
    if marks_ok != relations || marked.len() != relations {
        failures.push(format!(
            "{marks_ok} successful mark_tag on {} relations, for {relations} relations",
            marked.len()
        ));
    }
    let gold_w = w
        .wecom
        .library()
        .iter()
        .flat_map(|g| g.tags.clone())
        .find(|t| t.name == "金卡")
        .map(|t| t.id)
        .unwrap_or_default();
    let gold_m = w
        .mall
        .library()
        .iter()
        .flat_map(|g| g.tags.clone())
        .find(|t| t.name == "金卡")
        .map(|t| t.id);
    let mut untagged = 0;
    for (i, (c, m)) in members.iter().enumerate() {
        let on_relations = followers(i).iter().all(|u| {
            w.wecom
                .relation_tags(u, c)
                .is_some_and(|t| t.contains(&gold_w))
        });
        let in_mall = w
            .mall
            .member(m)
            .is_some_and(|x| gold_m.as_ref().is_some_and(|g| x.tag_ids.contains(g)));
        if !(on_relations && in_mall) {
            untagged += 1;
        }
    }
    if untagged > 0 {
        failures.push(format!("{untagged} customers lack 金卡 somewhere"));
    }
    for p in w.problems().await {
        failures.push(format!("problem: {p}"));
    }

    println!(
        "bulk_run: {} customers, {relations} relations, limits {}, {} workers",
        o.customers,
        if o.limits { "on" } else { "off" },
        o.workers
    );
    println!(
        "  POST → run done: {:.1} s; → quiet: {:.1} s",
        done_at.as_secs_f64(),
        quiet_at.as_secs_f64()
    );
    for (op, (n, failed)) in &wecom {
        println!("  WeCom {op}: {n} calls ({failed} not errcode 0)");
    }
    for (kind, (n, limited)) in &mall {
        println!("  mall {kind}: {n} requests ({limited} answered 429)");
    }
    w.stop().await;
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("bulk_run: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
