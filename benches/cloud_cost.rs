//! What the cloud path costs: tagsync as the Lambdas run it (`tests/support/cloud.rs`: the
//! DynamoDB store on DynamoDB Local, the SQS queue on moto, the routes behind the API Gateway
//! v2 stand-in, the worker fed by the event source mapping stand-in), counting what AWS bills:
//!
//! - DynamoDB read and write request units, as DynamoDB Local reports them
//!   (`ReturnConsumedCapacity=TOTAL` on every call: `store::dynamo::Capacity`), plus writes
//!   refused by their condition (billed, not reported: one unit each);
//! - SQS requests: tagsync's adapter (`queue::sqs::SqsRequests`) and the event source
//!   mapping's receives that returned messages and its deletes;
//! - Lambda invocations per function and the time they ran (wall time on this machine);
//! - API Gateway HTTP API requests (each HTTPS invocation is one).
//!
//! Two measurements on one world: (1) accepted changes — member tags changed in the mall
//! (webhooks) and in the WeCom client (callbacks), alternately, one at a time (10,000 a day is
//! one every 8.6 s: the event source mapping hands the worker what has arrived, so batching
//! them would flatter the invocation count), each until the system is quiet;
//! (2) a nightly run (the `reconcile` function's scheduled event) over N customers bound to
//! mall members, 1 % of them drifted silently. The per-customer figures of (2) are scaled to
//! 100,000 customers (a run's work is pages of 500 mall members and 100 WeCom relations, so
//! it grows linearly; the first page of each walk and the library page do not, and are
//! counted once — the scaling overstates them, never understates).
//!
//! The mall simulator keeps its default 50 requests a second on (it changes wall time and
//! the worker's measured durations, not what is billed per request).
//!
//! Run: `cargo bench --bench cloud_cost -- --customers 2000 --changes 200` (needs DynamoDB
//! Local and moto: `source infra/local-aws.sh && local_aws_install && local_aws_start`).
//! Under `cargo test --all-targets` (no `--bench`) it runs once small as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use crate::support::cloud::LambdaUsage;
use crate::support::world::{Backend, World, WorldOptions};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tagsync::domain::{MallTagId, MemberId};
use tagsync::sim::mall::NewMember;
use tagsync::store::dynamo::CapacityUsed;

const GROUPS: usize = 20;
const TAGS_PER_GROUP: usize = 10;
const TAGS_PER_CUSTOMER: usize = 5;
const SALES: usize = 50;
/// The worker's memory (`template.yaml`, `Globals.Function.MemorySize`), for GB-seconds.
const MEMORY_GB: f64 = 0.25;
const SETTLE: Duration = Duration::from_secs(600);

/// Prices used: US East (N. Virginia), on-demand / pay per request, free tiers left out, as
/// listed on 2026-12-03 (BENCHMARKS.md names the sources): DynamoDB on-demand after its
/// November 2024 cut; SQS standard queue (first 100 billion requests a month); Lambda on
/// arm64 (`template.yaml`'s `Architectures`); API Gateway HTTP API (first 300 million).
const PRICE_WRU: f64 = 0.625 / 1e6;
const PRICE_RRU: f64 = 0.125 / 1e6;
const PRICE_SQS: f64 = 0.40 / 1e6;
const PRICE_LAMBDA_REQUEST: f64 = 0.20 / 1e6;
const PRICE_LAMBDA_GB_S_ARM: f64 = 0.000_013_333_4;
const PRICE_HTTP_API: f64 = 1.00 / 1e6;
const PRICE_STORAGE_GB_MONTH: f64 = 0.25;
/// An idle SQS event source mapping still long-polls: Lambda's pollers (5 at least for a
/// standard queue) each make a 20-second receive, so about 5 × 3 a minute around the clock.
/// Not measured (the stand-in polls every second); counted as this estimate, per month.
const IDLE_POLLS_PER_MONTH: f64 = 5.0 * 3.0 * 60.0 * 24.0 * 30.0;

struct Options {
    customers: usize,
    changes: usize,
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let num = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} {v}: not a number"))
            })
            .unwrap_or(default)
    };
    Options {
        customers: num("--customers", if smoke { 40 } else { 2000 }),
        changes: num("--changes", if smoke { 10 } else { 200 }),
        smoke,
    }
}

/// Everything billed, as counted so far.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    rru: f64,
    wru: f64,
    ddb_requests: u64,
    refused_writes: u64,
    sqs_adapter: u64,
    esm_receives: u64,
    esm_deletes: u64,
    http: u64,
    http_s: f64,
    worker: u64,
    worker_s: f64,
}

impl Usage {
    fn of(w: &World) -> Usage {
        let cloud = w.cloud.as_ref().expect("a cloud world");
        let c = cloud.capacity.used();
        let l = &cloud.lambda;
        Usage {
            rru: c.read_units,
            wru: c.write_units,
            ddb_requests: c.requests,
            refused_writes: c.refused_writes,
            // `GetQueueAttributes` is the settle loop's look at the queue (`Queue::counts`,
            // which tagsync itself calls only for the admin status page): not the load.
            sqs_adapter: cloud
                .sqs_requests
                .by_action()
                .iter()
                .filter(|(action, _)| **action != "GetQueueAttributes")
                .map(|(_, n)| n)
                .sum(),
            esm_receives: LambdaUsage::get(&l.esm_receives),
            esm_deletes: LambdaUsage::get(&l.esm_deletes),
            // The admin API is the bench's own look at its runs, not the load.
            http: LambdaUsage::get(&l.http_invocations) - LambdaUsage::get(&l.admin_invocations),
            http_s: (LambdaUsage::get(&l.http_micros) - LambdaUsage::get(&l.admin_micros)) as f64
                / 1e6,
            worker: LambdaUsage::get(&l.worker_invocations),
            worker_s: LambdaUsage::get(&l.worker_micros) as f64 / 1e6,
        }
    }

    fn since(self, b: Usage) -> Usage {
        Usage {
            rru: self.rru - b.rru,
            wru: self.wru - b.wru,
            ddb_requests: self.ddb_requests - b.ddb_requests,
            refused_writes: self.refused_writes - b.refused_writes,
            sqs_adapter: self.sqs_adapter - b.sqs_adapter,
            esm_receives: self.esm_receives - b.esm_receives,
            esm_deletes: self.esm_deletes - b.esm_deletes,
            http: self.http - b.http,
            http_s: self.http_s - b.http_s,
            worker: self.worker - b.worker,
            worker_s: self.worker_s - b.worker_s,
        }
    }

    fn scaled(self, k: f64) -> Scaled {
        Scaled {
            rru: self.rru * k,
            // A refused conditional write is billed at least one write unit.
            wru: (self.wru + self.refused_writes as f64) * k,
            sqs: (self.sqs_adapter + self.esm_receives + self.esm_deletes) as f64 * k,
            lambda_requests: (self.http + self.worker) as f64 * k,
            gb_s: (self.http_s + self.worker_s) * MEMORY_GB * k,
            http_api: self.http as f64 * k,
        }
    }
}

/// Billed quantities of some unit of work.
#[derive(Clone, Copy, Debug, Default)]
struct Scaled {
    rru: f64,
    wru: f64,
    sqs: f64,
    lambda_requests: f64,
    gb_s: f64,
    http_api: f64,
}

impl Scaled {
    fn times(self, k: f64) -> Scaled {
        Scaled {
            rru: self.rru * k,
            wru: self.wru * k,
            sqs: self.sqs * k,
            lambda_requests: self.lambda_requests * k,
            gb_s: self.gb_s * k,
            http_api: self.http_api * k,
        }
    }
    fn plus(self, o: Scaled) -> Scaled {
        Scaled {
            rru: self.rru + o.rru,
            wru: self.wru + o.wru,
            sqs: self.sqs + o.sqs,
            lambda_requests: self.lambda_requests + o.lambda_requests,
            gb_s: self.gb_s + o.gb_s,
            http_api: self.http_api + o.http_api,
        }
    }
    fn json(self) -> Value {
        json!({
            "dynamodb_read_units": round(self.rru),
            "dynamodb_write_units": round(self.wru),
            "sqs_requests": round(self.sqs),
            "lambda_requests": round(self.lambda_requests),
            "lambda_gb_s": round(self.gb_s),
            "http_api_requests": round(self.http_api),
        })
    }
    /// Dollars per service: DynamoDB, SQS, Lambda, API Gateway.
    fn dollars(self) -> [f64; 4] {
        [
            self.rru * PRICE_RRU + self.wru * PRICE_WRU,
            self.sqs * PRICE_SQS,
            self.lambda_requests * PRICE_LAMBDA_REQUEST + self.gb_s * PRICE_LAMBDA_GB_S_ARM,
            self.http_api * PRICE_HTTP_API,
        ]
    }
}

/// Four significant digits (per-customer figures are small, monthly ones large).
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// DynamoDB use per kind of item between two snapshots, per `per` units of work, largest
/// first: where the units go.
fn kinds_since(
    before: &BTreeMap<String, CapacityUsed>,
    after: &BTreeMap<String, CapacityUsed>,
    per: f64,
) -> Value {
    let mut rows: Vec<(String, CapacityUsed)> = after
        .iter()
        .map(|(k, a)| (k.clone(), *a - before.get(k).copied().unwrap_or_default()))
        .filter(|(_, d)| d.requests > 0)
        .collect();
    rows.sort_by(|a, b| {
        let units = |d: &CapacityUsed| d.read_units + d.write_units + d.refused_writes as f64;
        units(&b.1).total_cmp(&units(&a.1))
    });
    Value::Array(
        rows.into_iter()
            .map(|(kind, d)| {
                json!({
                    "kind": kind,
                    "requests": round(d.requests as f64 / per),
                    "read_units": round(d.read_units / per),
                    "write_units": round((d.write_units + d.refused_writes as f64) / per),
                })
            })
            .collect(),
    )
}

fn kinds(w: &World) -> BTreeMap<String, CapacityUsed> {
    w.cloud
        .as_ref()
        .map(|c| c.capacity.by_kind())
        .unwrap_or_default()
}

fn customer(i: usize) -> String {
    format!("wm_c{i:06}")
}
fn tags_of(i: usize, all: usize) -> Vec<usize> {
    (0..TAGS_PER_CUSTOMER)
        .map(|k| (i * 7 + k * 37) % all)
        .collect()
}
fn relations_of(i: usize) -> usize {
    1 + i % 3
}
fn sales_of(i: usize, r: usize) -> String {
    format!("sales_{:03}", (i + r * 17) % SALES)
}

async fn settle(w: &World, what: &str) -> Result<(), String> {
    w.settle(SETTLE).await.map_err(|e| format!("{what}: {e}"))?;
    let problems = w.problems().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: {}", problems.join("; ")))
    }
}

/// Starts a run of `scope` through the admin API and waits until it is done and all is quiet.
async fn run(w: &World, scope: &str) -> Result<Value, String> {
    let (status, body) = w
        .admin(Method::POST, "/sync", Some(json!({ "scope": scope })))
        .await;
    if status != 202 {
        return Err(format!("POST …/sync {scope}: {status} {body}"));
    }
    let id = body["run_id"].as_str().unwrap_or_default().to_owned();
    wait_run(w, &id).await
}

/// Waits until run `id` is done and all is quiet. It looks at the run only when the queue is
/// quiet (a running run always has a page job queued or in flight), so that its own reads
/// through the admin API stay out of what is measured.
async fn wait_run(w: &World, id: &str) -> Result<Value, String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        settle(w, "the run").await?;
        let (status, report) = w.admin(Method::GET, &format!("/sync/{id}"), None).await;
        if status != 200 {
            return Err(format!("GET …/sync/{id}: {status} {report}"));
        }
        if report["status"] != "running" {
            if report["status"] != "done" {
                return Err(format!("run {id}: {report}"));
            }
            return Ok(report);
        }
        if Instant::now() > deadline {
            return Err(format!("run {id} still going: {report}"));
        }
    }
}

async fn measure(o: &Options) -> Result<Value, String> {
    let w = World::start(WorldOptions {
        backend: Backend::Cloud,
        // The template's (6 × the worker's 60 s timeout), not the test world's 10 s: a page
        // of 500 members in this debug build on two loaded cores can take longer than 10 s,
        // and its message then comes back to a second invocation while the first still runs
        // (five times over, the redrive policy parked the onboarding run's page).
        visibility: Duration::from_secs(360),
        // Lambda's longest timeout, not the template's 60 s: in this debug build on two
        // loaded cores against DynamoDB Local, a page of the onboarding run (every customer
        // new to the hub) took over a minute, and a cut invocation's work is redone after the
        // visibility timeout; the onboarding is setup here, not what is measured.
        lambda_timeout: Duration::from_secs(900),
        ..WorldOptions::default()
    })
    .await;
    let n = o.customers;

    // The library, made in the mall and carried to WeCom by a library run.
    let op = w.mall.silent();
    for g in 0..GROUPS {
        let group = op
            .create_group(&format!("G{g:02}"), g as u32)
            .map_err(|e| e.to_string())?;
        for t in 0..TAGS_PER_GROUP {
            op.create_tag(&group.id, &format!("T{g:02}-{t}"), t as u32)
                .map_err(|e| e.to_string())?;
        }
    }
    run(&w, "library").await?;
    let mut mall_ids: Vec<MallTagId> = Vec::new();
    let mut wecom_ids: Vec<String> = Vec::new();
    let wlib = w.wecom.library();
    for g in w.mall.library() {
        for t in &g.tags {
            let in_wecom = wlib
                .iter()
                .find(|x| x.name == g.group.name)
                .and_then(|x| x.tags.iter().find(|y| y.name == t.name))
                .ok_or_else(|| format!("WeCom lacks {}/{}", g.group.name, t.name))?;
            mall_ids.push(t.id.clone());
            wecom_ids.push(in_wecom.id.clone());
        }
    }
    let all = mall_ids.len();

    // Customers and members, silently, with the same tags on both sides; a members run binds
    // them (the onboarding, not measured).
    let quiet = w.wecom.silent();
    for s in 0..SALES {
        w.wecom.add_member(&format!("sales_{s:03}"));
    }
    let mut members: Vec<MemberId> = Vec::with_capacity(n);
    for i in 0..n {
        let c = customer(i);
        let tags = tags_of(i, all);
        let wt: Vec<&str> = tags.iter().map(|k| wecom_ids[*k].as_str()).collect();
        for r in 0..relations_of(i) {
            let u = sales_of(i, r);
            quiet
                .add_relation(&u, &c, None)
                .map_err(|e| e.to_string())?;
            quiet
                .tag_relation(&u, &c, &wt, &[])
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
    let onboarding = Instant::now();
    run(&w, "members").await?;
    eprintln!(
        "  {n} customers seeded and bound ({:.1} s)",
        onboarding.elapsed().as_secs_f64()
    );

    // (1) Accepted changes: a member tag added in the mall, then one added in the WeCom
    // client, alternately, each on another customer, one at a time.
    let before = Usage::of(&w);
    let traffic_before = w.activity();
    let kinds_before = kinds(&w);
    let changes_started = Instant::now();
    let seller = w.mall.operator();
    let client = w.wecom.console();
    for k in 0..o.changes {
        let i = (k * 13) % n;
        // A tag the customer does not hold.
        let tag = (0..all)
            .map(|d| (i * 3 + 100 + d) % all)
            .find(|t| !tags_of(i, all).contains(t))
            .unwrap_or(0);
        if k % 2 == 0 {
            seller
                .tag_member(&members[i], &mall_ids[tag])
                .map_err(|e| e.to_string())?;
        } else {
            client
                .tag_relation(
                    &sales_of(i, 0),
                    &customer(i),
                    &[wecom_ids[tag].as_str()],
                    &[],
                )
                .map_err(|e| e.to_string())?;
        }
        settle(&w, "changes").await?;
    }
    let changes = Usage::of(&w).since(before);
    let change_kinds = kinds_since(&kinds_before, &kinds(&w), o.changes as f64);
    let changes_started_elapsed = changes_started.elapsed().as_secs_f64();
    let traffic = w.activity();
    let per_change_traffic = json!({
        "jobs": (traffic.jobs - traffic_before.jobs) as f64 / o.changes as f64,
        "wecom_calls": (traffic.wecom_calls - traffic_before.wecom_calls) as f64 / o.changes as f64,
        "mall_requests": (traffic.mall_requests - traffic_before.mall_requests) as f64 / o.changes as f64,
    });
    eprintln!(
        "  {} changes in {:.1} s: {changes:?}",
        o.changes,
        changes_started.elapsed().as_secs_f64()
    );

    // (2) The nightly run: 1 % drift, then the scheduled event.
    let drifted = (n / 100).max(1);
    for j in 0..drifted {
        let i = (j * 97) % n;
        let extra = (0..all)
            .map(|d| (i * 5 + 50 + d) % all)
            .find(|t| !tags_of(i, all).contains(t))
            .unwrap_or(0);
        op.tag_member(&members[i], &mall_ids[extra])
            .map_err(|e| e.to_string())?;
    }
    let before = Usage::of(&w);
    let traffic_before = w.activity();
    let kinds_before = kinds(&w);
    let nightly_started = Instant::now();
    let event = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/lambda/eventbridge-schedule.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let report = tagsync::runtime::lambda::schedule(
        &w.app,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .map_err(|e| format!("the reconcile function: {e}"))?;
    let schedule_s = t0.elapsed().as_secs_f64();
    if report.due.len() != 1 {
        return Err(format!("the schedule started {:?}", report.due));
    }
    let (_, runs) = w.admin(Method::GET, "/sync", None).await;
    let id = runs["runs"][0]["id"]
        .as_str()
        .or_else(|| runs["runs"][0]["run_id"].as_str())
        .ok_or_else(|| format!("no run listed: {runs}"))?
        .to_owned();
    let report = wait_run(&w, &id).await?;
    let nightly = Usage::of(&w).since(before);
    let nightly_kinds = kinds_since(&kinds_before, &kinds(&w), n as f64);
    let nightly_wall = nightly_started.elapsed().as_secs_f64();
    eprintln!("  nightly run over {n} customers in {nightly_wall:.1} s: {nightly:?}");
    let found = report["drift"].clone();
    let traffic = w.activity();
    let per_customer_traffic = json!({
        "jobs": (traffic.jobs - traffic_before.jobs) as f64 / n as f64,
        "wecom_calls": (traffic.wecom_calls - traffic_before.wecom_calls) as f64 / n as f64,
        "mall_requests": (traffic.mall_requests - traffic_before.mall_requests) as f64 / n as f64,
    });
    let table_bytes = table_size(&w).await?;

    // Per unit, and the month of a merchant with 100,000 customers and 10,000 changes a day.
    let per_change = changes.scaled(1.0 / o.changes as f64);
    let per_customer = nightly.scaled(1.0 / n as f64);
    let mut per_night = nightly.scaled(100_000.0 / n as f64);
    // The reconcile function's own invocation (it records the run and queues its first page).
    per_night.lambda_requests += 1.0;
    per_night.gb_s += schedule_s * MEMORY_GB;
    let month_changes = per_change.times(10_000.0 * 30.0);
    let month_nights = per_night.times(30.0);
    let month = month_changes.plus(month_nights);
    let [ddb, sqs, lambda, api] = month.dollars();
    let idle_sqs = IDLE_POLLS_PER_MONTH * PRICE_SQS;
    // What the table holds per customer, as DynamoDB Local reports it, scaled.
    let storage_gb = table_bytes as f64 / n as f64 * 100_000.0 / 1e9;
    let storage = storage_gb * PRICE_STORAGE_GB_MONTH;
    let total = ddb + sqs + lambda + api + idle_sqs + storage;
    let out = json!({
        "customers_measured": n,
        "changes_measured": o.changes,
        "changes_wall_s": round(changes_started_elapsed),
        "nightly_wall_s": round(nightly_wall),
        "nightly_drift_found": found,
        "per_accepted_change": per_change.json(),
        "per_accepted_change_traffic": per_change_traffic,
        "per_accepted_change_dynamodb_by_kind": change_kinds,
        "nightly_per_customer": per_customer.json(),
        "nightly_per_customer_traffic": per_customer_traffic,
        "nightly_per_customer_dynamodb_by_kind": nightly_kinds,
        "per_nightly_run_at_100000_customers": per_night.json(),
        "table_bytes_measured": table_bytes,
        "month": {
            "changes": month_changes.json(),
            "nightly_runs": month_nights.json(),
            "idle_event_source_polls": IDLE_POLLS_PER_MONTH,
            "storage_gb_at_100000_customers": round(storage_gb),
            "usd": {
                "dynamodb_requests": round(ddb), "dynamodb_storage": round(storage),
                "sqs": round(sqs), "sqs_idle_polls": round(idle_sqs),
                "lambda": round(lambda), "http_api": round(api),
                "total": round(total),
            },
        },
        "sqs_by_action_total": w.cloud.as_ref().map(|c| c.sqs_requests.by_action()).unwrap_or_default()
            .into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<BTreeMap<String, u64>>(),
    });
    w.stop().await;
    Ok(out)
}

/// The table's size as DynamoDB reports it (`DescribeTable`'s `TableSizeBytes`).
async fn table_size(w: &World) -> Result<i64, String> {
    let cloud = w.cloud.as_ref().ok_or("not a cloud world")?;
    let t = cloud
        .dynamodb
        .describe_table()
        .table_name(&cloud.table)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeTable: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    Ok(t.table().and_then(|t| t.table_size_bytes()).unwrap_or(0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let o = options();
    eprintln!(
        "cloud_cost: {} customers, {} changes{}",
        o.customers,
        o.changes,
        if o.smoke { " (smoke)" } else { "" }
    );
    match measure(&o).await {
        Ok(out) => {
            let text = serde_json::to_string_pretty(&out).unwrap_or_default();
            // The functions' CloudWatch metric lines share stdout: the result also goes to a
            // file of its own.
            let file = format!("{}/cloud-cost.json", env!("CARGO_TARGET_TMPDIR"));
            if let Err(e) = std::fs::write(&file, &text) {
                eprintln!("cloud_cost: cannot write {file}: {e}");
            }
            println!("{text}");
            eprintln!("cloud_cost: result in {file}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cloud_cost failed: {e}");
            ExitCode::FAILURE
        }
    }
}
