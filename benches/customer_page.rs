//! A filtered page of the customer index at 10,000 and 100,000 customers on SQLite, through
//! `GET /admin/v1/tenants/{t}/customers` of a real `tagsync serve` (routes, auth, store, JSON).
//! Target (issue 15): under 100 ms a page at 100,000 customers.
//!
//! Per size, a fresh [`World`] (not timed): a 50-tag library (5 groups of 10) made through the
//! admin API and carried to both simulators; then N index entries written through the store
//! port (`put_customer_entry`, the path the jobs use), from a fixed generator: customer `i`
//! has 1–3 relations over 200 staff members, each relation one of 10 contact-way `state`s
//! and 1–2 of the 50 tags, 70 % bound to a mall member, a name from 8 family names. Timed:
//! each filter kind and a combination, the first page (`limit=50`) and a page from the middle
//! (`cursor` at customer N/2), `--repeat` times each; the median and the slowest are shown.
//! Every answer is checked: `total` must equal the matches counted over the generated entries
//! with the same definition of a match (`CustomerFilter::matches`), and the page must hold the
//! first 50 of them after the cursor; otherwise the bench exits non-zero. It also exits
//! non-zero when a median misses the target.
//!
//! Run: `cargo bench --bench customer_page` (sizes 10,000 and 100,000, 20 repeats). Options:
//! `--customers 10000,100000`, `--repeat N`. Under `cargo test --all-targets` it runs 2,000
//! customers and 3 repeats as a smoke test (same checks, no target).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::world::{World, WorldOptions};
use tagsync::domain::*;
use tagsync::ports::{Clock, SystemClock};

const TARGET: Duration = Duration::from_millis(100);
const PAGE: usize = 50;
const STAFF: usize = 200;
const STATES: [&str; 10] = [
    "门店",
    "展会",
    "官网",
    "直播",
    "朋友圈",
    "地推",
    "公众号",
    "小程序",
    "电话",
    "转介绍",
];
const FAMILY: [&str; 8] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"];

struct Options {
    sizes: Vec<usize>,
    repeat: usize,
    bench: bool,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut o = Options {
        sizes: if bench {
            vec![10_000, 100_000]
        } else {
            vec![2_000]
        },
        repeat: if bench { 20 } else { 3 },
        bench,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--customers" => {
                let v = it.next().ok_or("--customers needs a value")?;
                o.sizes = v
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("--customers: {s:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--repeat" => {
                let v = it.next().ok_or("--repeat needs a value")?;
                o.repeat = v.parse().map_err(|_| format!("--repeat: {v:?}"))?;
            }
            _ => {}
        }
    }
    if o.repeat == 0 || o.sizes.iter().any(|n| *n < 10) {
        return Err("--repeat ≥ 1 and every size ≥ 10".into());
    }
    Ok(o)
}

/// SplitMix64: a fixed generator, so the same index on every build.
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
}

fn customer_id(i: usize) -> String {
    format!("wm{i:07}")
}

fn entries(t: &TenantId, n: usize, tags: &[String]) -> Vec<CustomerEntry> {
    let mut rng = Rng(20_261_203);
    let now = SystemClock.now();
    (0..n)
        .map(|i| {
            let mut e = CustomerEntry::new(
                t.clone(),
                ExternalUserId::new_unchecked(customer_id(i)),
                now,
            );
            e.name = format!("{}{}", FAMILY[rng.below(FAMILY.len())], i);
            if rng.below(10) < 7 {
                e.member_id = Some(MemberId::new_unchecked(format!("m{i:07}")));
            }
            for _ in 0..1 + rng.below(3) {
                let userid = WecomUserId::new_unchecked(format!("sales_{:03}", rng.below(STAFF)));
                let mut tag_ids = std::collections::BTreeSet::new();
                for _ in 0..1 + rng.below(2) {
                    tag_ids.insert(HubTagId::new_unchecked(tags[rng.below(tags.len())].clone()));
                }
                e.relations.insert(
                    userid,
                    RelationEntry {
                        state: Some(STATES[rng.below(STATES.len())].to_owned()),
                        added_at: Some(now),
                        tag_ids,
                        personal_tags: vec![],
                    },
                );
            }
            e
        })
        .collect()
}

/// (name, query string, the filter it means).
fn filters(tags: &[String]) -> Vec<(&'static str, String, CustomerFilter)> {
    let tag = |i: usize| HubTagId::new_unchecked(tags[i].clone());
    let mut out = vec![("none", String::new(), CustomerFilter::default())];
    out.push((
        "tag (any)",
        format!("tag={}", tags[0]),
        CustomerFilter {
            tags: vec![tag(0)],
            ..Default::default()
        },
    ));
    out.push((
        "2 tags, all",
        format!("tag={}&tag={}&tag_mode=all", tags[0], tags[1]),
        CustomerFilter {
            tags: vec![tag(0), tag(1)],
            tag_mode: TagMode::All,
            ..Default::default()
        },
    ));
    out.push((
        "3 tags, any",
        format!(
            "tag={}&tag={}&tag={}&tag_mode=any",
            tags[0], tags[1], tags[2]
        ),
        CustomerFilter {
            tags: vec![tag(0), tag(1), tag(2)],
            ..Default::default()
        },
    ));
    out.push((
        "tag, none",
        format!("tag={}&tag_mode=none", tags[0]),
        CustomerFilter {
            tags: vec![tag(0)],
            tag_mode: TagMode::None,
            ..Default::default()
        },
    ));
    out.push((
        "state",
        format!("state={}", STATES[1]),
        CustomerFilter {
            state: Some(STATES[1].into()),
            ..Default::default()
        },
    ));
    out.push((
        "userid",
        "userid=sales_007".into(),
        CustomerFilter {
            userid: Some(WecomUserId::new_unchecked("sales_007")),
            ..Default::default()
        },
    ));
    out.push((
        "bound=false",
        "bound=false".into(),
        CustomerFilter {
            bound: Some(false),
            ..Default::default()
        },
    ));
    out.push((
        "q (name)",
        format!("q={}", FAMILY[2]),
        CustomerFilter {
            q: Some(FAMILY[2].into()),
            ..Default::default()
        },
    ));
    out.push((
        "tag+state+bound+q",
        format!(
            "tag={}&state={}&bound=true&q={}",
            tags[3], STATES[0], FAMILY[0]
        ),
        CustomerFilter {
            tags: vec![tag(3)],
            state: Some(STATES[0].into()),
            bound: Some(true),
            q: Some(FAMILY[0].into()),
            ..Default::default()
        },
    ));
    out
}

struct Row {
    filter: &'static str,
    page: &'static str,
    total: u64,
    median: Duration,
    max: Duration,
}

async fn size(o: &Options, n: usize, failures: &mut Vec<String>) -> Vec<Row> {
    let w = World::start(WorldOptions {
        workers: 2,
        ..WorldOptions::default()
    })
    .await;
    let mut tags = Vec::new();
    for g in 0..5 {
        let group_tags: Vec<Value> = (0..10)
            .map(|i| json!({"name": format!("标签{g}{i}")}))
            .collect();
        let (status, group) = w
            .admin(
                reqwest::Method::POST,
                "/tag-groups",
                Some(json!({"name": format!("分组{g}"), "tags": group_tags})),
            )
            .await;
        assert_eq!(status, 201, "POST …/tag-groups: {group}");
        for t in group["tags"].as_array().expect("tags") {
            tags.push(t["id"].as_str().expect("a tag id").to_owned());
        }
    }
    if let Err(e) = w.settle(Duration::from_secs(120)).await {
        failures.push(format!("{n}: setup: {e}"));
    }
    let all = entries(&w.tenant, n, &tags);
    let seeded = Instant::now();
    let store = w.app.store.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let shared = Arc::new(all.clone());
    for part in 0..16 {
        let (store, shared) = (store.clone(), shared.clone());
        tasks.spawn(async move {
            for e in shared.iter().skip(part).step_by(16) {
                let mut e = e.clone();
                store
                    .put_customer_entry(&mut e)
                    .await
                    .expect("seed an entry");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("a seeding task");
    }
    eprintln!(
        "customer_page: {n} customers seeded in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let middle = customer_id(n / 2);
    let mut rows = Vec::new();
    for (name, query, filter) in filters(&tags) {
        let matching: Vec<&CustomerEntry> = all.iter().filter(|e| filter.matches(e)).collect();
        for (page, cursor) in [("first", None), ("middle", Some(middle.as_str()))] {
            let expect: Vec<String> = matching
                .iter()
                .map(|e| e.external_userid.to_string())
                .filter(|id| cursor.is_none_or(|c| id.as_str() > c))
                .take(PAGE)
                .collect();
            let mut q = format!("limit={PAGE}");
            if !query.is_empty() {
                q = format!("{query}&{q}");
            }
            if let Some(c) = cursor {
                q = format!("{q}&cursor={c}");
            }
            let path = format!("/customers?{q}");
            let mut times = Vec::new();
            let mut total = 0;
            for _ in 0..o.repeat {
                let started = Instant::now();
                let (status, body) = w.admin(reqwest::Method::GET, &path, None).await;
                times.push(started.elapsed());
                if status != 200 {
                    failures.push(format!("{n} {name}: {status} {body}"));
                    break;
                }
                total = body["total"].as_u64().unwrap_or(u64::MAX);
                let got: Vec<String> = body["customers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c["external_userid"].as_str().unwrap_or("").to_owned())
                    .collect();
                if total != matching.len() as u64 || got != expect {
                    failures.push(format!(
                        "{n} {name} ({page} page): total {total}, expected {}; page {:?}…, expected {:?}…",
                        matching.len(),
                        got.first(),
                        expect.first()
                    ));
                    break;
                }
            }
            times.sort();
            let row = Row {
                filter: name,
                page,
                total,
                median: times[times.len() / 2],
                max: *times.last().expect("timed"),
            };
            if o.bench && row.median >= TARGET {
                failures.push(format!(
                    "{n} {name} ({page} page): median {:?} misses the {TARGET:?} target",
                    row.median
                ));
            }
            rows.push(row);
        }
    }
    w.stop().await;
    rows
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("customer_page: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = Vec::new();
    let mut results = BTreeMap::new();
    for &n in &o.sizes {
        results.insert(n, size(&o, n, &mut failures).await);
    }
    println!("| customers | filter | page | total | median | slowest |");
    println!("|---|---|---|---|---|---|");
    for (n, rows) in &results {
        for r in rows {
            println!(
                "| {n} | {} | {} | {} | {:.1} ms | {:.1} ms |",
                r.filter,
                r.page,
                r.total,
                r.median.as_secs_f64() * 1e3,
                r.max.as_secs_f64() * 1e3
            );
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("customer_page: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
