//! A member-tag batch carried to both simulators: 2,000 changes over 500 bound customers (two
//! follow relations each) submitted in one `POST …/member-tags:batch`, timed until the whole
//! system (tagsync's queue, the WeCom and mall simulators, their callbacks and webhooks) is
//! quiet again. Target (issue #17): under 2 s with the mall simulator's default 50 requests a
//! second on, with exactly one `mark_tag` per relation whose tags had to change.
//!
//! Each round starts a fresh [`World`] (not timed): a 10-tag library created through the admin
//! API and carried to both sides, then 500 customers with two relations each seeded in WeCom
//! and 500 mall members bound to them, all silently (no callback, no webhook), then a member
//! sync, as the nightly one would, so the hub knows the members (the batch route acts only on
//! members the hub or the mall knows, and asks the mall about at most 50 it has never seen). The 2,000 items (4 per member,
//! random adds and removes of hub tag ids from a seeded generator, shuffled) are the same in
//! every round. Timed: the POST, then `World::settle`. After each round every member must hold
//! its expected tags in the hub, the mall and on both relations, nothing may be parked or
//! refused, and the `mark_tag` calls must equal the relations touched; otherwise the bench
//! exits non-zero.
//!
//! Run: `cargo bench --bench member_batch` (5 rounds at the default worker count). Options
//! (after `--`, or as environment variables):
//!
//! | option | variable | default |
//! |---|---|---|
//! | `--workers 4,8,16` (one or more) | `MEMBER_BATCH_WORKERS` | 8 |
//! | `--rounds N` | `MEMBER_BATCH_ROUNDS` | 5 (1 under `cargo test`) |
//! | `--members N` | `MEMBER_BATCH_MEMBERS` | 500 (50 under `cargo test`) |
//! | `--items-per-member N` | `MEMBER_BATCH_ITEMS_PER_MEMBER` | 4 |
//! | `--tags N` (1..=99) | `MEMBER_BATCH_TAGS` | 10 |
//! | `--seed N` | `MEMBER_BATCH_SEED` | 20261121 |
//! | `--mall-rate-limit N\|off` (requests/s) | `MEMBER_BATCH_MALL_RATE_LIMIT` | 50 (the contract's default) |
//! | `--no-batch` | `MEMBER_BATCH_NO_BATCH=1` | the mall offers `POST /members:batch-tags` |
//!
//! The WeCom simulator has no rate limits by default; the mall simulator keeps its default
//! limit, 50 requests a second (tagsync paces its mall requests at that rate,
//! `TAGSYNC_MALL_RATE`'s default): the member-tag batch's mall writes go in
//! `POST /members:batch-tags`, 100 members a request, and its jobs read no member.
//! `--mall-rate-limit off` turns the limit off (a figure to label as such). `--no-batch` plays
//! a mall of contract 1.0 (404 for the batch path): the target is then 1.15× the write-only
//! floor, the member writes ÷ the rate limit.
//! `RUST_LOG` (e.g. `tagsync=debug`) prints tagsync's log lines to stderr.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs one small round as a smoke
//! test: the same checks, no target.

#[path = "../tests/support/mod.rs"]
mod support;

use crate::support::world::{ADMIN_TOKEN, World, WorldOptions};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tagsync::metrics::JOBS;
use tagsync::sim::mall::{BatchEndpoint, MallSimConfig, NewMember};
use tagsync::wecom::classify::ApiOp;

const TARGET: Duration = Duration::from_secs(2);
/// The mall simulator's default limit (mall-connector.md §3: 50 requests a second per token).
const DEFAULT_MALL_RATE: u32 = 50;
/// How long setup and the timed part may take to go quiet before the round fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
const SALES: usize = 10;
const GROUP: &str = "bench";

// ---------------------------------------------------------------------------------------------
// Options.

#[derive(Clone, Debug)]
struct Options {
    workers: Vec<usize>,
    rounds: usize,
    members: usize,
    items_per_member: usize,
    tags: usize,
    seed: u64,
    mall_rate_limit: Option<u32>,
    no_batch: bool,
    bench: bool,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let no_batch = args.iter().any(|a| a == "--no-batch")
        || std::env::var("MEMBER_BATCH_NO_BATCH").is_ok_and(|v| v == "1");
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for (flag, var) in [
        ("workers", "MEMBER_BATCH_WORKERS"),
        ("rounds", "MEMBER_BATCH_ROUNDS"),
        ("members", "MEMBER_BATCH_MEMBERS"),
        ("items-per-member", "MEMBER_BATCH_ITEMS_PER_MEMBER"),
        ("tags", "MEMBER_BATCH_TAGS"),
        ("seed", "MEMBER_BATCH_SEED"),
        ("mall-rate-limit", "MEMBER_BATCH_MALL_RATE_LIMIT"),
    ] {
        if let Ok(v) = std::env::var(var) {
            given.insert(flag.to_owned(), v);
        }
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--") else {
            eprintln!("member_batch: ignoring argument {a:?}");
            continue;
        };
        match flag.split_once('=') {
            Some((k, v)) => {
                given.insert(k.to_owned(), v.to_owned());
            }
            None if flag == "bench" || flag == "no-batch" => {}
            None if [
                "workers",
                "rounds",
                "members",
                "items-per-member",
                "tags",
                "seed",
                "mall-rate-limit",
            ]
            .contains(&flag) =>
            {
                let v = it.next().ok_or(format!("--{flag} needs a value"))?;
                given.insert(flag.to_owned(), v.clone());
            }
            None => eprintln!("member_batch: ignoring argument {a:?}"),
        }
    }
    fn num<T: std::str::FromStr>(
        given: &BTreeMap<String, String>,
        k: &str,
        d: T,
    ) -> Result<T, String> {
        match given.get(k) {
            None => Ok(d),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("--{k}: {v:?} is not a number")),
        }
    }
    let workers = match given.get("workers") {
        None => vec![8],
        Some(v) => v
            .split(',')
            .map(|w| match w.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("--workers: {w:?} is not a positive number")),
            })
            .collect::<Result<_, _>>()?,
    };
    let mall_rate_limit = match given.get("mall-rate-limit").map(|s| s.trim()) {
        None => Some(DEFAULT_MALL_RATE),
        Some("off") | Some("0") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| format!("--mall-rate-limit: {v:?} is neither a number nor off"))?,
        ),
    };
    let o = Options {
        workers,
        rounds: num(&given, "rounds", if bench { 5 } else { 1 })?,
        members: num(&given, "members", if bench { 500 } else { 50 })?,
        items_per_member: num(&given, "items-per-member", 4)?,
        tags: num(&given, "tags", 10)?,
        seed: num(&given, "seed", 20_261_121)?,
        mall_rate_limit,
        no_batch,
        bench,
    };
    if o.rounds == 0 || o.members == 0 || o.items_per_member == 0 {
        return Err("rounds, members and items per member must be at least 1".into());
    }
    if !(2..=99).contains(&o.tags) {
        return Err("--tags must be 2..=99 (one POST …/tag-groups)".into());
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// The batch.

/// SplitMix64: a fixed generator, so a seed means the same batch on every build.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One batch item by member index and tag indexes.
struct Item {
    member: usize,
    add: Vec<usize>,
    remove: Vec<usize>,
}

/// `per_member` items for each of `members` members, shuffled: each adds one or two tags
/// (70 %) and/or removes one (40 %; never one it adds), at least one of the two.
fn items(o: &Options) -> Vec<Item> {
    let mut rng = Rng(o.seed);
    let mut out = Vec::with_capacity(o.members * o.items_per_member);
    for member in 0..o.members {
        for _ in 0..o.items_per_member {
            let mut add = Vec::new();
            if rng.chance(70) {
                add.push(rng.below(o.tags));
                if rng.chance(30) {
                    let t = rng.below(o.tags);
                    if !add.contains(&t) {
                        add.push(t);
                    }
                }
            }
            let mut remove = Vec::new();
            if add.is_empty() || rng.chance(40) {
                let t = rng.below(o.tags);
                if !add.contains(&t) {
                    remove.push(t);
                }
            }
            if add.is_empty() && remove.is_empty() {
                add.push(rng.below(o.tags));
            }
            out.push(Item {
                member,
                add,
                remove,
            });
        }
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

/// Each member's tags after the batch, starting from none: items in order, a later mark of a
/// tag overriding an earlier one (as the route applies them).
fn expected(o: &Options, items: &[Item]) -> Vec<BTreeSet<usize>> {
    let mut marks: Vec<BTreeMap<usize, bool>> = vec![BTreeMap::new(); o.members];
    for it in items {
        for &t in &it.add {
            marks[it.member].insert(t, true);
        }
        for &t in &it.remove {
            marks[it.member].insert(t, false);
        }
    }
    marks
        .into_iter()
        .map(|m| {
            m.into_iter()
                .filter(|(_, on)| *on)
                .map(|(t, _)| t)
                .collect()
        })
        .collect()
}

/// The two WeCom userids following customer `i`.
fn sales_of(i: usize) -> [String; 2] {
    [
        format!("sales_{}", i % SALES + 1),
        format!("sales_{}", (i + 3) % SALES + 1),
    ]
}

// ---------------------------------------------------------------------------------------------
// One round.

/// What one round measured.
#[derive(Clone, Debug, Default)]
struct Round {
    workers: usize,
    post: Duration,
    wall: Duration,
    /// POST sent → the last `POST /members/{id}/tags` the mall answered.
    last_mall_write: Option<Duration>,
    mark_tag: usize,
    mark_tag_failed: usize,
    mark_tag_relations: usize,
    relations_touched: usize,
    get_contact: usize,
    mall_tag_writes: usize,
    /// `POST /members:batch-tags` answered 200, and the items they carried.
    mall_batches: usize,
    mall_batch_items: usize,
    mall_member_reads: usize,
    mall_429: usize,
    members_changed: usize,
    mall_webhooks: usize,
    jobs: BTreeMap<String, u64>,
    failures: Vec<String>,
}

fn jobs_by_label(w: &World) -> BTreeMap<String, u64> {
    let prefix = format!("{}{{", JOBS.name);
    w.app
        .metrics
        .prometheus()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (labels, n) = l.rsplit_once(' ')?;
            let labels = labels.trim_end_matches('}');
            let get = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            Some((
                format!("{} {}", get("kind"), get("outcome")),
                n.parse().ok()?,
            ))
        })
        .collect()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn is_member_tags_write(method: &str, path: &str) -> bool {
    method == "POST" && path.contains("/members/") && path.ends_with("/tags")
}

fn is_batch_write(method: &str, path: &str) -> bool {
    method == "POST" && path == "/members:batch-tags"
}

fn is_member_read(method: &str, path: &str) -> bool {
    method == "GET" && path.contains("/members/") && !path.ends_with("/tags")
}

/// Runs a member sync and waits for it to be done and carried everywhere.
async fn member_sync(w: &World) -> Result<(), String> {
    let (status, started) = w
        .admin(
            reqwest::Method::POST,
            "/sync",
            Some(json!({"scope": "members"})),
        )
        .await;
    if status != 202 {
        return Err(format!("POST …/sync answered {status}: {started}"));
    }
    let run = started["run_id"].as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let (_, report) = w
            .admin(reqwest::Method::GET, &format!("/sync/{run}"), None)
            .await;
        match report["status"].as_str() {
            Some("done") => break,
            Some("failed") => return Err(format!("the member sync failed: {report}")),
            _ if Instant::now() > deadline => {
                return Err(format!("the member sync is not done: {report}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    w.settle(SETTLE_TIMEOUT).await
}

async fn round(o: &Options, workers: usize, batch: &[Item], want: &[BTreeSet<usize>]) -> Round {
    let mut r = Round {
        workers,
        ..Round::default()
    };
    let w = World::start(WorldOptions {
        workers,
        mall: MallSimConfig {
            rate_limit_per_sec: o.mall_rate_limit,
            batch_endpoint: if o.no_batch {
                BatchEndpoint::NotFound
            } else {
                BatchEndpoint::Offered
            },
            ..MallSimConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;

    // The library, carried to both sides.
    let tags: Vec<Value> = (0..o.tags)
        .map(|i| json!({"name": format!("t{i:02}"), "order": i + 1}))
        .collect();
    let (status, group) = w
        .admin(
            reqwest::Method::POST,
            "/tag-groups",
            Some(json!({"name": GROUP, "tags": tags})),
        )
        .await;
    assert_eq!(status, 201, "POST …/tag-groups: {group}");
    let hub_tags: Vec<(String, String)> = group["tags"]
        .as_array()
        .expect("the created group lists its tags")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("a tag id").to_owned(),
                format!("{GROUP}/{}", t["name"].as_str().expect("a tag name")),
            )
        })
        .collect();
    if let Err(e) = w.settle(SETTLE_TIMEOUT).await {
        r.failures.push(format!("setup (library): {e}"));
        w.stop().await;
        return r;
    }
    if let Err(e) = w.assert_converged().await {
        r.failures.push(format!("setup (library): {e}"));
    }
    let mapped = w.hub_groups().await["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["tags"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["wecom_id"].is_string() && t["mall_id"].is_string())
        .count();
    if mapped != o.tags {
        r.failures.push(format!(
            "setup: {mapped} of {} hub tags have both side ids",
            o.tags
        ));
    }

    // Customers and members, silently.
    let mut members = Vec::with_capacity(o.members);
    for i in 0..o.members {
        let customer = format!("wm_{i:05}");
        for userid in sales_of(i) {
            w.wecom
                .silent()
                .add_relation(&userid, &customer, None)
                .expect("seed a relation");
        }
        let m = w
            .mall
            .silent()
            .create_member(NewMember::external(&customer))
            .expect("seed a mall member");
        members.push(m.id.as_str().to_owned());
    }
    if let Err(e) = w.settle(SETTLE_TIMEOUT).await {
        r.failures.push(format!("setup (seeding): {e}"));
    }
    if let Err(e) = member_sync(&w).await {
        r.failures.push(format!("setup (member sync): {e}"));
    }
    if !r.failures.is_empty() {
        w.stop().await;
        return r;
    }

    let body = serde_json::to_vec(&json!({
        "items": batch
            .iter()
            .map(|it| json!({
                "member_id": members[it.member],
                "add": it.add.iter().map(|&t| &hub_tags[t].0).collect::<Vec<_>>(),
                "remove": it.remove.iter().map(|&t| &hub_tags[t].0).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()
    }))
    .expect("the batch as JSON");
    let url = format!("{}/admin/v1/tenants/{}/member-tags:batch", w.base, w.tenant);
    let http = reqwest::Client::new();
    // One request first so the timed one finds a pooled connection, as an operator's would.
    let _ = http.get(format!("{}/healthz", w.base)).send().await;

    let calls_before = w.wecom.calls().len();
    let requests_before = w.mall.requests().len();
    let events_before = w.mall.events().len();
    let jobs_before = jobs_by_label(&w);

    // Timed.
    let started_ms = unix_ms();
    let started = Instant::now();
    let resp = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    r.post = started.elapsed();
    match resp {
        Ok(resp) if resp.status() == 202 => {}
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            r.failures
                .push(format!("the batch answered {status}: {text}"));
            w.stop().await;
            return r;
        }
        Err(e) => {
            r.failures.push(format!("the batch failed: {e}"));
            w.stop().await;
            return r;
        }
    }
    let settled = w.settle(SETTLE_TIMEOUT).await;
    r.wall = started.elapsed();
    if let Err(e) = settled {
        r.failures.push(e);
    }

    // What the timed part did.
    let calls = w.wecom.calls();
    let mut relations = BTreeSet::new();
    for c in &calls[calls_before..] {
        match c.op {
            ApiOp::MarkTag => {
                r.mark_tag += 1;
                if c.errcode != Some(0) {
                    r.mark_tag_failed += 1;
                }
                relations.insert((
                    c.request["userid"].as_str().unwrap_or_default().to_owned(),
                    c.request["external_userid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
            ApiOp::GetExternalContact => r.get_contact += 1,
            _ => {}
        }
    }
    r.mark_tag_relations = relations.len();
    let mut last_write_ms = None;
    for q in &w.mall.requests()[requests_before..] {
        if is_member_tags_write(&q.method, &q.path) {
            r.mall_tag_writes += 1;
            last_write_ms = last_write_ms.max(Some(q.at.millis()));
        } else if is_batch_write(&q.method, &q.path) && q.status == 200 {
            r.mall_batches += 1;
            r.mall_batch_items += q
                .request
                .as_ref()
                .map_or(0, |b| b["items"].as_array().map_or(0, Vec::len));
            last_write_ms = last_write_ms.max(Some(q.at.millis()));
        } else if is_member_read(&q.method, &q.path) {
            r.mall_member_reads += 1;
        }
        if q.status == 429 {
            r.mall_429 += 1;
        }
    }
    r.last_mall_write =
        last_write_ms.map(|ms| Duration::from_millis(ms.saturating_sub(started_ms) as u64));
    r.mall_webhooks = w.mall.events().len() - events_before;
    let jobs_after = jobs_by_label(&w);
    r.jobs = jobs_after
        .iter()
        .map(|(k, n)| (k.clone(), n - jobs_before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();

    // Correctness.
    r.members_changed = want.iter().filter(|s| !s.is_empty()).count();
    r.relations_touched = 2 * r.members_changed;
    for p in w.problems().await {
        r.failures.push(format!("problem: {p}"));
    }
    if r.mark_tag != r.relations_touched {
        r.failures.push(format!(
            "{} mark_tag calls, but {} relations had to change",
            r.mark_tag, r.relations_touched
        ));
    }
    if r.mark_tag_failed > 0 {
        r.failures
            .push(format!("{} mark_tag calls failed", r.mark_tag_failed));
    }
    let mut wrong = 0;
    for (i, id) in members.iter().enumerate() {
        let names: Vec<&str> = want[i].iter().map(|&t| hub_tags[t].1.as_str()).collect();
        let view = w.member_view(id).await;
        let customer = format!("wm_{i:05}");
        let mut problem = view.expect_everywhere(&names).err();
        if problem.is_none() && view.relations.len() != 2 {
            problem = Some(format!("{} relations instead of 2", view.relations.len()));
        }
        if problem.is_none() && view.external_userid.as_deref() != Some(customer.as_str()) {
            problem = Some(format!("bound to {:?}", view.external_userid));
        }
        if let Some(p) = problem {
            wrong += 1;
            if wrong <= 5 {
                r.failures.push(format!("member {id} ({customer}): {p}"));
            }
        }
    }
    if wrong > 5 {
        r.failures
            .push(format!("… {wrong} members in all do not hold their tags"));
    }
    w.stop().await;
    r
}

// ---------------------------------------------------------------------------------------------
// Report.

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("member_batch: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let batch = items(&o);
    let want = expected(&o, &batch);
    let changed = want.iter().filter(|s| !s.is_empty()).count();
    println!(
        "member_batch: {} items over {} members ({} tags, seed {}); {} members end with tags \
         ({} relations to mark), {} end with none; mall rate limit {}; batch endpoint {}; {} round(s) per worker count",
        batch.len(),
        o.members,
        o.tags,
        o.seed,
        changed,
        2 * changed,
        o.members - changed,
        o.mall_rate_limit
            .map_or("off".to_owned(), |n| format!("{n}/s")),
        if o.no_batch {
            "absent (404)"
        } else {
            "offered"
        },
        o.rounds,
    );
    // A mall without the batch endpoint needs one write per member that changes: at the rate
    // limit, that many requests take this long at least.
    let floor = o
        .mall_rate_limit
        .filter(|_| o.no_batch)
        .map(|rate| Duration::from_secs_f64(changed as f64 / f64::from(rate)));
    if let Some(floor) = floor {
        println!(
            "write-only floor: {changed} member writes at {}/s = {} ms; target 1.15× = {} ms",
            o.mall_rate_limit.unwrap_or(1),
            ms(floor),
            ms(floor.mul_f64(1.15))
        );
    }
    println!();
    println!(
        "| workers | round | POST ms | POST→settled ms | last mall write ms | mark_tag (want) | relations marked | get_contact | mall batch requests (items) | mall member writes | mall member reads | mall 429 | webhooks | jobs | ok |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");

    let mut all: Vec<Round> = Vec::new();
    for &workers in &o.workers {
        for n in 1..=o.rounds {
            let r = rt.block_on(round(&o, workers, &batch, &want));
            let jobs = r
                .jobs
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {workers} | {n} | {} | {} | {} | {} ({}) | {} | {} | {} ({}) | {} | {} | {} | {} | {jobs} | {} |",
                ms(r.post),
                ms(r.wall),
                r.last_mall_write.map_or("-".into(), ms),
                r.mark_tag,
                r.relations_touched,
                r.mark_tag_relations,
                r.get_contact,
                r.mall_batches,
                r.mall_batch_items,
                r.mall_tag_writes,
                r.mall_member_reads,
                r.mall_429,
                r.mall_webhooks,
                if r.failures.is_empty() { "yes" } else { "NO" },
            );
            all.push(r);
        }
    }

    println!();
    for &workers in &o.workers {
        let rs: Vec<&Round> = all
            .iter()
            .filter(|r| r.workers == workers && r.failures.is_empty())
            .collect();
        if rs.is_empty() {
            println!("{workers} workers: no correct round");
            continue;
        }
        let (wm, wmin, wmax) = stats(rs.iter().map(|r| r.wall).collect());
        let (pm, pmin, pmax) = stats(rs.iter().map(|r| r.post).collect());
        let verdict = match floor {
            _ if !o.bench => "(smoke test: no target)".to_owned(),
            Some(floor) => format!(
                "median {:.2}× the write-only floor ({}: target 1.15×)",
                wm.as_secs_f64() / floor.as_secs_f64(),
                if wm.as_secs_f64() <= 1.15 * floor.as_secs_f64() {
                    "within"
                } else {
                    "OVER"
                }
            ),
            None if wm < TARGET => "median under the 2 s target".to_owned(),
            None => "median OVER the 2 s target".to_owned(),
        };
        println!(
            "{workers} workers, {} correct round(s): POST→settled median {} ms (min {}, max {}); \
             POST alone median {} ms (min {}, max {}); {verdict}",
            rs.len(),
            ms(wm),
            ms(wmin),
            ms(wmax),
            ms(pm),
            ms(pmin),
            ms(pmax),
        );
    }

    let failed: Vec<&Round> = all.iter().filter(|r| !r.failures.is_empty()).collect();
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!();
    for r in &failed {
        eprintln!("FAILED round ({} workers):", r.workers);
        for f in &r.failures {
            eprintln!("  - {f}");
        }
    }
    ExitCode::FAILURE
}
