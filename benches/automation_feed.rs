//! The message feed against keyword rules, end to end: 10,000 chat messages (100 per signed
//! request) from 2,000 customers against 20 keyword rules, timed from the first POST until
//! every resulting tag is in both simulators (tagsync's queue, WeCom and the mall all quiet,
//! then every member checked on every side). Counted: messages per second, and WeCom
//! `mark_tag` calls against the relations that had to change and the firings that changed a
//! member.
//!
//! Limits on by default, as documented: the mall simulator's 50 requests a second (429 with
//! `Retry-After` beyond), the WeCom simulator's 10,000 calls per API per minute (45009
//! beyond; wecom-api.md §3), and tagsync's own WeCom rate budget at its default share.
//!
//! Setup (not timed): a fresh [`World`]; a group of 20 tags made through the admin API and
//! carried to both sides; 2,000 customers, each followed by one of 10 sales and bound to a
//! mall member, seeded silently, then a member sync so the hub knows them (as the nightly
//! would); 20 rules `kw00`…`kw19` → tag `t00`…`t19`. Message `i` comes from customer
//! `i % customers` (chat traffic is interleaved: a customer's messages arrive in different
//! requests) and says keyword `rng % 20` (seeded), so each customer says 5 keywords, some
//! twice, and ends with those tags.
//!
//! Checked, or the bench fails: every request answered 202; nothing parked or refused for
//! good; every member holds exactly its tags in the hub, on its WeCom relation and in the
//! mall; the firings are `applied` once per (customer, keyword) and `already_had` for the
//! repeats; and `relations that changed ≤ mark_tag ≤ firings applied` — at most one
//! `mark_tag` per change a relation needed, never one per message.
//!
//! Run: `cargo bench --bench automation_feed`. Options (after `--`, or environment):
//! `--messages N` (`FEED_BENCH_MESSAGES`, default 10000), `--customers N`
//! (`FEED_BENCH_CUSTOMERS`, 2000), `--workers N` (`FEED_BENCH_WORKERS`, 8),
//! `--mall-rate-limit N|off` (`FEED_BENCH_MALL_RATE_LIMIT`, 50), `--wecom-rate-limit on|off`
//! (`FEED_BENCH_WECOM_RATE_LIMIT`, on). Under `cargo test --all-targets` it runs a small
//! smoke round (200 messages, 40 customers, limits on) with the same checks.

#[path = "../tests/support/mod.rs"]
mod support;

use crate::support::world::{World, WorldOptions};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tagsync::sim::mall::{MallSimConfig, NewMember};
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::budget::{BudgetConfig, WECOM_PER_MINUTE};
use tagsync::wecom::classify::ApiOp;

const RULES: usize = 20;
const PER_REQUEST: usize = 100;
const SALES: usize = 10;
const GROUP: &str = "bench";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);
/// How often the member sync of the setup is looked at.
const POLL: Duration = Duration::from_millis(50);

struct Options {
    messages: usize,
    customers: usize,
    workers: usize,
    mall_rate_limit: Option<u32>,
    wecom_rate_limit: bool,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let get = |flag: &str, var: &str| -> Option<String> {
        args.iter()
            .position(|a| a == &format!("--{flag}"))
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| std::env::var(var).ok())
    };
    let num = |flag: &str, var: &str, default: usize| -> Result<usize, String> {
        get(flag, var).map_or(Ok(default), |v| {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("--{flag}: {v:?} is not a positive number"))
        })
    };
    let mall_rate_limit = match get("mall-rate-limit", "FEED_BENCH_MALL_RATE_LIMIT").as_deref() {
        Some("off") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| format!("--mall-rate-limit: {v:?} is neither a number nor off"))?,
        ),
        None => Some(50),
    };
    let wecom_rate_limit = match get("wecom-rate-limit", "FEED_BENCH_WECOM_RATE_LIMIT").as_deref() {
        Some("on") | None => true,
        Some("off") => false,
        Some(v) => return Err(format!("--wecom-rate-limit: {v:?} is neither on nor off")),
    };
    Ok(Options {
        messages: num(
            "messages",
            "FEED_BENCH_MESSAGES",
            if bench { 10_000 } else { 200 },
        )?,
        customers: num(
            "customers",
            "FEED_BENCH_CUSTOMERS",
            if bench { 2_000 } else { 40 },
        )?,
        workers: num("workers", "FEED_BENCH_WORKERS", 8)?,
        mall_rate_limit,
        wecom_rate_limit,
    })
}

/// SplitMix64, so a run means the same messages on every build.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// What one round measured.
struct Round {
    posting: Duration,
    wall: Duration,
    mark_tag_ok: usize,
    mark_tag_refused: usize,
    relations_changed: usize,
    applied: usize,
    already_had: usize,
    mall_requests: usize,
    mall_429: usize,
}

fn world_options(o: &Options) -> WorldOptions {
    let (wecom, budget) = if o.wecom_rate_limit {
        (
            SimConfig {
                rate_limits: ApiOp::ALL
                    .iter()
                    .map(|op| (*op, WECOM_PER_MINUTE))
                    .collect(),
                ..SimConfig::default()
            },
            BudgetConfig::default(),
        )
    } else {
        (
            SimConfig::default(),
            BudgetConfig {
                per_minute: u32::MAX,
                per_hour: u32::MAX,
            },
        )
    };
    WorldOptions {
        workers: o.workers,
        wecom,
        wecom_budget: Some(budget),
        mall: MallSimConfig {
            rate_limit_per_sec: o.mall_rate_limit,
            ..MallSimConfig::default()
        },
        ..WorldOptions::default()
    }
}

async fn admin_ok(
    w: &World,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    want: u16,
) -> Result<Value, String> {
    let (status, answer) = w.admin(method.clone(), path, body).await;
    if status == want {
        Ok(answer)
    } else {
        Err(format!("{method} …{path}: {status} {answer}"))
    }
}

/// The group of tags and the bound customers, known to the hub; answers the hub tag ids and
/// the members, in customer order.
async fn seed(w: &World, o: &Options) -> Result<(Vec<String>, Vec<String>), String> {
    let tags: Vec<Value> = (0..RULES)
        .map(|i| json!({"name": format!("t{i:02}"), "order": i + 1}))
        .collect();
    let group = admin_ok(
        w,
        reqwest::Method::POST,
        "/tag-groups",
        Some(json!({"name": GROUP, "tags": tags})),
        201,
    )
    .await?;
    // Rule i adds tag t{i}: found by name (the answer lists the tags in its own order).
    let listed = group["tags"].as_array().ok_or("the group lists its tags")?;
    let hub: Vec<String> = (0..RULES)
        .map(|i| {
            listed
                .iter()
                .find(|t| t["name"] == format!("t{i:02}"))
                .and_then(|t| t["id"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("the group has no tag t{i:02}: {group}"))
        })
        .collect::<Result<_, _>>()?;
    w.settle(SETTLE_TIMEOUT).await?;

    let mut members = Vec::new();
    for i in 0..o.customers {
        let c = customer(i);
        w.wecom
            .silent()
            .add_relation(&format!("sales_{}", i % SALES), &c, None)
            .map_err(|e| e.to_string())?;
        let m = w
            .mall
            .silent()
            .create_member(NewMember::external(&c))
            .map_err(|e| e.to_string())?;
        members.push(m.id.to_string());
    }
    let started = admin_ok(
        w,
        reqwest::Method::POST,
        "/sync",
        Some(json!({"scope": "members"})),
        202,
    )
    .await?;
    let run = started["run_id"].as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let report = admin_ok(w, reqwest::Method::GET, &format!("/sync/{run}"), None, 200).await?;
        match report["status"].as_str() {
            Some("done") => break,
            Some("running") if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            _ => return Err(format!("the setup's member sync: {report}")),
        }
    }
    w.settle(SETTLE_TIMEOUT).await?;
    for (i, tag) in hub.iter().enumerate() {
        admin_ok(
            w,
            reqwest::Method::POST,
            "/rules",
            Some(json!({
                "name": format!("kw{i:02}"),
                "trigger": {"kind": "keyword", "any": [format!("kw{i:02}")], "from": "customer"},
                "actions": {"add": [tag]},
                "mode": "on",
            })),
            201,
        )
        .await?;
    }
    Ok((hub, members))
}

fn customer(i: usize) -> String {
    format!("wm_{i:05}")
}

/// Every firing of every rule, counted by outcome.
async fn outcomes(w: &World) -> Result<BTreeMap<String, usize>, String> {
    let rules = admin_ok(w, reqwest::Method::GET, "/rules", None, 200).await?;
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for rule in rules["rules"].as_array().ok_or("the rules are listed")? {
        let id = rule["id"].as_str().unwrap_or_default();
        let mut cursor = String::new();
        loop {
            let page = admin_ok(
                w,
                reqwest::Method::GET,
                &format!("/rules/{id}/firings?limit=500&cursor={cursor}"),
                None,
                200,
            )
            .await?;
            for f in page["firings"].as_array().ok_or("a page of firings")? {
                *out.entry(f["outcome"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
    }
    Ok(out)
}

async fn run(o: &Options) -> Result<Round, String> {
    let w = World::start(world_options(o)).await;
    let (_hub, members) = seed(&w, o).await?;

    // The messages, and what each member must end with.
    let mut rng = Rng(20_261_203);
    let feed = w.feed();
    let mut want: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); o.customers];
    let messages: Vec<Value> = (0..o.messages)
        .map(|i| {
            let c = i % o.customers;
            let k = rng.below(RULES);
            want[c].insert(k);
            feed.text(
                &customer(c),
                &format!("sales_{}", c % SALES),
                &format!("想问一下 KW{k:02} 的活动"),
            )
        })
        .collect();
    let calls_before = w.wecom.calls().len();
    let mall_before = w.mall.requests().len();

    // Timed.
    let started = Instant::now();
    let mut posting = Duration::ZERO;
    for batch in messages.chunks(PER_REQUEST) {
        let (status, answer) = feed.post(batch).await.map_err(|e| e.to_string())?;
        if status != 202 {
            return Err(format!("the feed answered {status}: {answer}"));
        }
        posting = started.elapsed();
    }
    w.settle(SETTLE_TIMEOUT).await?;
    let wall = started.elapsed();

    let problems = w.problems().await;
    if !problems.is_empty() {
        return Err(format!("problems: {problems:?}"));
    }
    let calls = w.wecom.calls();
    let mark_tag: Vec<_> = calls[calls_before..]
        .iter()
        .filter(|c| c.op == ApiOp::MarkTag)
        .collect();
    let mark_tag_ok = mark_tag.iter().filter(|c| c.errcode == Some(0)).count();
    let mall = w.mall.requests();
    let mall = &mall[mall_before..];
    let mut wrong = Vec::new();
    for (c, member) in members.iter().enumerate() {
        let names: Vec<String> = want[c].iter().map(|k| format!("{GROUP}/t{k:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Err(e) = w.member_view(member).await.expect_everywhere(&refs) {
            wrong.push(format!("{member}: {e}"));
        }
    }
    if !wrong.is_empty() {
        return Err(format!(
            "{} members do not hold their tags, e.g. {}",
            wrong.len(),
            wrong[0]
        ));
    }
    let fired = outcomes(&w).await?;
    let pairs: usize = want.iter().map(BTreeSet::len).sum();
    let round = Round {
        posting,
        wall,
        mark_tag_ok,
        mark_tag_refused: mark_tag.len() - mark_tag_ok,
        relations_changed: want.iter().filter(|s| !s.is_empty()).count(),
        applied: fired.get("applied").copied().unwrap_or(0),
        already_had: fired.get("already_had").copied().unwrap_or(0),
        mall_requests: mall.len(),
        mall_429: mall.iter().filter(|r| r.status == 429).count(),
    };
    w.stop().await;
    if round.applied != pairs || round.already_had != o.messages - pairs {
        return Err(format!(
            "firings: {fired:?}; want {pairs} applied (one per customer and keyword) and {} already_had",
            o.messages - pairs
        ));
    }
    if round.mark_tag_ok < round.relations_changed || round.mark_tag_ok > round.applied {
        return Err(format!(
            "{} mark_tag calls for {} relations that changed and {} firings applied",
            round.mark_tag_ok, round.relations_changed, round.applied
        ));
    }
    Ok(round)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("automation_feed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(run(&o)) {
        Ok(r) => {
            println!(
                "| messages | customers | workers | mall limit | WeCom limits | POSTs done | first POST → all tags in both sims | messages/s | mark_tag calls (refused 45009) | relations that changed | firings applied / already_had | mall requests (429) |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
            println!(
                "| {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {:.0} | {} ({}) | {} | {} / {} | {} ({}) |",
                o.messages,
                o.customers,
                o.workers,
                o.mall_rate_limit
                    .map_or("off".to_owned(), |n| format!("{n}/s")),
                if o.wecom_rate_limit { "on" } else { "off" },
                r.posting.as_secs_f64(),
                r.wall.as_secs_f64(),
                o.messages as f64 / r.wall.as_secs_f64(),
                r.mark_tag_ok,
                r.mark_tag_refused,
                r.relations_changed,
                r.applied,
                r.already_had,
                r.mall_requests,
                r.mall_429,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("automation_feed failed: {e}");
            ExitCode::FAILURE
        }
    }
}
