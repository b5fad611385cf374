//! A members reconciliation run at scale: `tagsync serve` (its own process, so its memory is
//! its own) against the WeCom and mall simulators (in this process), with N customers, 5 tags
//! each, 1 to 3 relations (2 on average), a 200-tag library, no rate limits.
//!
//! Setup (not timed): the library made in the mall and carried by a `library` run; members and
//! relations seeded silently on both sides with the same tags; a first `members` run links
//! them all (timed and reported as "first run", the onboarding case); `tagsync serve` is then
//! restarted so its peak memory covers the measured run alone. Then 1 % of the customers drift
//! silently: half gain a tag in the mall, half lose one on one WeCom relation.
//!
//! Measured: `POST …/sync {"scope": "members"}` until the report says done and the queue is
//! empty — wall time, peak RSS of `tagsync serve` (VmHWM), the run's pages, and the WeCom
//! calls it made by kind. Checked (the bench exits non-zero otherwise): the run found exactly
//! the drift made, every drifted customer holds its tags on all sides, and the WeCom calls are
//! the pages (follow-user list + relation pages) plus one `mark_tag` per relation that had to
//! change.
//!
//! Run: `cargo bench --bench reconcile_members -- --customers 10000,100000`. Options (after
//! `--`): `--customers N[,N…]` (default 100000; 300 under `cargo test`), `--workers N` (8),
//! `--sales N` (WeCom members with customer contact, 200), `--drift-permille N` (10).
//! Under `cargo test --all-targets` (no `--bench` argument) it runs once small as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use crate::support::process::ServeProcess;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tagsync::domain::{MallTagId, MemberId};
use tagsync::sim::mall::{MallSim, MallSimConfig, NewMember};
use tagsync::sim::wecom::{SimConfig, WecomSim};
use tagsync::wecom::classify::ApiOp;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const TENANT: &str = "bench";
const GROUPS: usize = 20;
const TAGS_PER_GROUP: usize = 10;
const TAGS_PER_CUSTOMER: usize = 5;
const TARGET: Duration = Duration::from_secs(60);
const RSS_TARGET_MB: f64 = 150.0;

struct Options {
    customers: Vec<usize>,
    workers: usize,
    sales: usize,
    drift_permille: usize,
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let num = |name: &str, default: usize| {
        value(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
        })
    };
    let customers = value("--customers").map_or_else(
        || vec![if smoke { 300 } else { 100_000 }],
        |v| {
            v.split(',')
                .map(|n| n.parse().expect("--customers takes numbers"))
                .collect()
        },
    );
    Options {
        customers,
        workers: num("--workers", 8),
        sales: num("--sales", if smoke { 10 } else { 200 }),
        drift_permille: num("--drift-permille", if smoke { 100 } else { 10 }),
        smoke,
    }
}

/// `tagsync serve` as an operator runs it, pointed at the WeCom simulator.
fn serve(data: &std::path::Path, wecom: &WecomSim, workers: usize) -> ServeProcess {
    ServeProcess::start(
        env!("CARGO_BIN_EXE_tagsync"),
        data,
        &["--workers", &workers.to_string()],
        &[
            ("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("TAGSYNC_WECOM_API_BASE", wecom.base_url()),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            ),
        ],
    )
}

async fn admin(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{base}/admin/v1/tenants/{TENANT}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("tagsync reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Starts a run and waits until its report says done and the queue is empty.
async fn run(http: &reqwest::Client, base: &str, scope: &str) -> Value {
    let (status, body) = admin(
        http,
        base,
        reqwest::Method::POST,
        "/sync",
        Some(json!({"scope": scope})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["run_id"].as_str().expect("run id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (_, report) = admin(
            http,
            base,
            reqwest::Method::GET,
            &format!("/sync/{id}"),
            None,
        )
        .await;
        if report["status"] != "running" {
            assert_eq!(report["status"], "done", "{report:#}");
            loop {
                let (_, st) = admin(http, base, reqwest::Method::GET, "/status", None).await;
                if st["queue"]["pending"] == 0 && st["queue"]["in_flight"] == 0 {
                    assert_eq!(st["queue"]["dead"], 0, "nothing parked: {st}");
                    return report;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert!(Instant::now() < deadline, "run still going: {report:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn customer(i: usize) -> String {
    format!("wm_c{i:06}")
}

/// Deterministic spread: customer `i`'s tags, relations and sales reps.
fn tags_of(i: usize, all: usize) -> Vec<usize> {
    (0..TAGS_PER_CUSTOMER)
        .map(|k| (i * 7 + k * 37) % all)
        .collect()
}
fn relations_of(i: usize) -> usize {
    1 + i % 3
}
fn sales_of(i: usize, r: usize, sales: usize) -> String {
    format!("sales_{:03}", (i + r * 61) % sales)
}

struct Measured {
    customers: usize,
    first_run: Duration,
    first_rss: f64,
    wall: Duration,
    rss: f64,
    pages: u64,
    calls: BTreeMap<String, usize>,
    marks_expected: usize,
}

async fn round(o: &Options, n: usize) -> Result<Measured, String> {
    let wecom = WecomSim::start(SimConfig::default()).await;
    let mall = MallSim::start(MallSimConfig {
        rate_limit_per_sec: None,
        ..MallSimConfig::default()
    })
    .await
    .expect("mall simulator");
    let data = std::env::temp_dir().join(format!(
        "tagsync-bench-rec-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&data).expect("data dir");
    let http = reqwest::Client::new();
    let mut serve = serve(&data, &wecom, o.workers);
    let sim = wecom.config();
    let (status, body) = admin(&http, &serve.base, reqwest::Method::PUT, "", Some(json!({
        "corp_id": sim.corp_id.as_str(), "agent_id": sim.agent_id,
        "corp_secret": sim.secret.expose(), "callback_token": sim.callback_token,
        "encoding_aes_key": sim.encoding_aes_key, "mall_api_base": mall.base_url(),
        "mall_api_token": MallSimConfig::default().tokens[0], "mall_webhook_secret": MallSimConfig::default().webhook_secret,
    }))).await;
    assert!(status == 200 || status == 201, "tenant: {status} {body}");

    // The library, made in the mall and carried to WeCom by a library run.
    let op = mall.silent();
    for g in 0..GROUPS {
        let group = op
            .create_group(&format!("G{g:02}"), g as u32)
            .map_err(|e| e.to_string())?;
        for t in 0..TAGS_PER_GROUP {
            op.create_tag(&group.id, &format!("T{g:02}-{t}"), t as u32)
                .map_err(|e| e.to_string())?;
        }
    }
    run(&http, &serve.base, "library").await;
    let mall_ids: Vec<MallTagId> = mall
        .library()
        .iter()
        .flat_map(|g| g.tags.iter().map(|t| t.id.clone()))
        .collect();
    let names: Vec<(String, String)> = mall
        .library()
        .iter()
        .flat_map(|g| {
            g.tags
                .iter()
                .map(|t| (g.group.name.clone(), t.name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let wlib = wecom.library();
    let wecom_ids: Vec<String> = names
        .iter()
        .map(|(g, t)| {
            wlib.iter()
                .find(|x| &x.name == g)
                .and_then(|x| x.tags.iter().find(|y| &y.name == t))
                .map(|y| y.id.clone())
                .unwrap_or_else(|| panic!("WeCom lacks {g}/{t} after the library run"))
        })
        .collect();
    let all = mall_ids.len();

    // Members and relations, silently, with the same tags on both sides.
    let seeding = Instant::now();
    let quiet = wecom.silent();
    for s in 0..o.sales {
        wecom.add_member(&format!("sales_{s:03}"));
    }
    let mut members: Vec<MemberId> = Vec::with_capacity(n);
    for i in 0..n {
        let c = customer(i);
        let tags = tags_of(i, all);
        let w: Vec<&str> = tags.iter().map(|k| wecom_ids[*k].as_str()).collect();
        for r in 0..relations_of(i) {
            let u = sales_of(i, r, o.sales);
            quiet
                .add_relation(&u, &c, None)
                .map_err(|e| e.to_string())?;
            quiet
                .tag_relation(&u, &c, &w, &[])
                .map_err(|e| e.to_string())?;
        }
        let m = op
            .create_member(NewMember::external(&c))
            .map_err(|e| e.to_string())?;
        let add: Vec<MallTagId> = tags.iter().map(|k| mall_ids[*k].clone()).collect();
        op.change_member_tags(&m.id, &add, &[])
            .map_err(|e| e.to_string())?;
        members.push(m.id);
    }
    eprintln!(
        "  seeded {n} customers in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let first = run(&http, &serve.base, "members").await;
    let first_run = started.elapsed();
    let first_rss = serve.peak_rss_mb();
    eprintln!(
        "  first run {:.1} s, peak RSS {first_rss:.0} MB: {}",
        first_run.as_secs_f64(),
        first["repaired"]
    );
    // Restart: the measured run's peak memory is its own.
    let _ = serve.stop();
    serve = self::serve(&data, &wecom, o.workers);

    // Drift: every `1000 / permille`-th customer; even ones gain a tag in the mall, odd ones
    // lose their first tag on their first WeCom relation.
    let step = (1000 / o.drift_permille.max(1)).max(1);
    let mut drifted = Vec::new();
    let mut marks_expected = 0;
    let (mut mall_adds, mut wecom_removes) = (0u64, 0u64);
    for (j, i) in (0..n).step_by(step).enumerate() {
        let tags = tags_of(i, all);
        if j % 2 == 0 {
            let extra = (0..all)
                .find(|k| !tags.contains(k))
                .expect("a tag the customer lacks");
            op.change_member_tags(&members[i], &[mall_ids[extra].clone()], &[])
                .map_err(|e| e.to_string())?;
            marks_expected += relations_of(i);
            mall_adds += 1;
        } else {
            quiet
                .tag_relation(
                    &sales_of(i, 0, o.sales),
                    &customer(i),
                    &[],
                    &[wecom_ids[tags[0]].as_str()],
                )
                .map_err(|e| e.to_string())?;
            marks_expected += relations_of(i) - 1;
            wecom_removes += 1;
        }
        drifted.push(i);
    }
    let calls_before: BTreeMap<ApiOp, usize> = ApiOp::ALL
        .iter()
        .map(|op| (*op, wecom.call_count(*op)))
        .collect();

    let started = Instant::now();
    let report = run(&http, &serve.base, "members").await;
    let wall = started.elapsed();
    let rss = serve.peak_rss_mb();

    let calls: BTreeMap<String, usize> = ApiOp::ALL
        .iter()
        .map(|op| (format!("{op:?}"), wecom.call_count(*op) - calls_before[op]))
        .filter(|(_, n)| *n > 0)
        .collect();
    // Checks.
    let drift = &report["drift"];
    if drift["member_tags.added.mall"] != json!(mall_adds)
        || drift["member_tags.removed.wecom"] != json!(wecom_removes)
    {
        return Err(format!(
            "drift found {drift} != made ({mall_adds} mall adds, {wecom_removes} WeCom removes)"
        ));
    }
    let get = |k: &str| calls.get(k).copied().unwrap_or(0);
    if get("MarkTag") != marks_expected {
        return Err(format!(
            "mark_tag calls {} != relations that drifted {marks_expected}",
            get("MarkTag")
        ));
    }
    let pages = get("GetFollowUserList") + get("BatchGetByUser");
    let extra: usize = calls
        .iter()
        .filter(|(k, _)| {
            !["MarkTag", "GetFollowUserList", "BatchGetByUser", "GetToken"].contains(&k.as_str())
        })
        .map(|(_, n)| n)
        .sum();
    if extra > 0 {
        return Err(format!("WeCom calls beyond pages and mark_tag: {calls:?}"));
    }
    for i in drifted {
        let want: BTreeSet<String> = mall
            .member(&members[i])
            .expect("member")
            .tag_ids
            .iter()
            .map(|t| t.to_string())
            .collect();
        let want_w: BTreeSet<String> = want
            .iter()
            .map(|m| {
                wecom_ids[mall_ids
                    .iter()
                    .position(|x| x.as_str() == m)
                    .expect("mapped")]
                .clone()
            })
            .collect();
        for r in 0..relations_of(i) {
            let got: BTreeSet<String> = wecom
                .relation_tags(&sales_of(i, r, o.sales), &customer(i))
                .unwrap_or_default()
                .into_iter()
                .collect();
            if got != want_w {
                return Err(format!("customer {i} relation {r}: {got:?} != {want_w:?}"));
            }
        }
    }
    let pages_done = report["progress"]["pages_done"].as_u64().unwrap_or(0);
    eprintln!("  run: {report}");
    let _ = serve.stop();
    wecom.stop().await;
    mall.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    let _ = pages;
    Ok(Measured {
        customers: n,
        first_run,
        first_rss,
        wall,
        rss,
        pages: pages_done,
        calls,
        marks_expected,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = options();
    let mut failed = false;
    let mut rows = Vec::new();
    for &n in &o.customers {
        eprintln!("members run over {n} customers ({} workers):", o.workers);
        match round(&o, n).await {
            Ok(m) => rows.push(m),
            Err(e) => {
                eprintln!("FAILED: {e}");
                failed = true;
            }
        }
    }
    println!(
        "| customers | first run (onboarding) | its peak RSS | drift run | peak RSS | run pages | WeCom calls | mark_tag = drifted relations |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in &rows {
        println!(
            "| {} | {:.1} s | {:.0} MB | {:.2} s | {:.0} MB | {} | {:?} | {} |",
            m.customers,
            m.first_run.as_secs_f64(),
            m.first_rss,
            m.wall.as_secs_f64(),
            m.rss,
            m.pages,
            m.calls,
            m.marks_expected
        );
        if !o.smoke && (m.wall > TARGET || m.rss > RSS_TARGET_MB) {
            eprintln!(
                "over target ({} s, {RSS_TARGET_MB} MB) at {} customers",
                TARGET.as_secs(),
                m.customers
            );
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
