//! A members run survives its process: `tagsync serve` killed (SIGKILL) in the middle of the
//! walk and started again on the same data finishes the run, with the same report of drift
//! and the same sides as a run nobody interrupted.

use crate::support::process::ServeProcess;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tagsync::domain::{MallTagId, MemberId};
use tagsync::sim::mall::{MallSim, MallSimConfig, NewMember};
use tagsync::sim::wecom::{Fault, FaultKind, SimConfig, Trigger, WecomSim};
use tagsync::wecom::classify::ApiOp;

const ADMIN_TOKEN: &str = "restart-test-admin-token-0123456789";
const TENANT: &str = "acme";
const CUSTOMERS: usize = 400;
const SALES: usize = 10;
const TAGS: usize = 6;

struct Serve(ServeProcess);

impl Serve {
    fn start(data: &Path, wecom: &WecomSim) -> Serve {
        Serve(ServeProcess::start(
            env!("CARGO_BIN_EXE_tagsync"),
            data,
            &["--workers", "4", "--job-timeout", "2"],
            &[
                ("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN.into()),
                ("TAGSYNC_WECOM_API_BASE", wecom.base_url()),
                ("RUST_LOG", "warn".into()),
                // tagsync's mall pacing is on (50 requests a second per tenant, its default),
                // so repairs are cut off mid-way by the kill: the killed process's member
                // locks lapse within their lease term (the 2-second job timeout, at least
                // 5 s: `jobs::lease`), and the relations it was marking are settled by the
                // marking it wrote first (`sync::members::relation_base`), not counted as
                // drift.
            ],
        ))
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = reqwest::Client::new()
            .request(
                method,
                format!("{}/admin/v1/tenants/{TENANT}{path}", self.0.base),
            )
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("tagsync answers");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status < 300, "{path}: {status} {body}");
        body
    }

    fn kill(self) {
        self.0.kill();
    }
}

struct Side {
    wecom: WecomSim,
    mall: MallSim,
    data: PathBuf,
    members: Vec<MemberId>,
}

fn customer(i: usize) -> String {
    format!("wm_c{i:04}")
}
fn sales(i: usize, r: usize) -> String {
    format!("sales_{}", (i + r * 3) % SALES)
}
fn tags_of(i: usize) -> Vec<usize> {
    (0..2).map(|k| (i + k * 2) % TAGS).collect()
}

/// Both simulators with a library carried to WeCom and CUSTOMERS members and relations that
/// a first members run has linked; then the same silent drift every time.
async fn world() -> (Side, Serve) {
    let wecom = WecomSim::start(SimConfig::default()).await;
    let mall = MallSim::start(MallSimConfig {
        rate_limit_per_sec: None,
        ..MallSimConfig::default()
    })
    .await
    .unwrap();
    let data =
        std::env::temp_dir().join(format!("tagsync-restart-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data).unwrap();
    let serve = Serve::start(&data, &wecom);
    let sim = wecom.config();
    serve
        .admin(
            reqwest::Method::PUT,
            "",
            Some(json!({
                "corp_id": sim.corp_id.as_str(), "agent_id": sim.agent_id,
                "corp_secret": sim.secret.expose(), "callback_token": sim.callback_token,
                "encoding_aes_key": sim.encoding_aes_key, "mall_api_base": mall.base_url(),
                "mall_api_token": MallSimConfig::default().tokens[0],
                "mall_webhook_secret": MallSimConfig::default().webhook_secret,
            })),
        )
        .await;
    let op = mall.silent();
    let g = op.create_group("等级", 1).unwrap();
    for t in 0..TAGS {
        op.create_tag(&g.id, &format!("L{t}"), t as u32).unwrap();
    }
    finish(&serve, &start_run(&serve, "library").await).await;
    let lib = &mall.library()[0];
    let mall_ids: Vec<MallTagId> = (0..TAGS)
        .map(|t| {
            lib.tags
                .iter()
                .find(|x| x.name == format!("L{t}"))
                .unwrap()
                .id
                .clone()
        })
        .collect();
    let wlib = &wecom.library()[0];
    let wecom_ids: Vec<String> = (0..TAGS)
        .map(|t| {
            wlib.tags
                .iter()
                .find(|x| x.name == format!("L{t}"))
                .unwrap()
                .id
                .clone()
        })
        .collect();
    let quiet = wecom.silent();
    let mut members = Vec::new();
    for i in 0..CUSTOMERS {
        let tags = tags_of(i);
        let w: Vec<&str> = tags.iter().map(|k| wecom_ids[*k].as_str()).collect();
        for r in 0..(1 + i % 3) {
            quiet
                .add_relation(&sales(i, r), &customer(i), None)
                .unwrap();
            quiet
                .tag_relation(&sales(i, r), &customer(i), &w, &[])
                .unwrap();
        }
        let m = op.create_member(NewMember::external(&customer(i))).unwrap();
        let add: Vec<MallTagId> = tags.iter().map(|k| mall_ids[*k].clone()).collect();
        op.change_member_tags(&m.id, &add, &[]).unwrap();
        members.push(m.id);
    }
    finish(&serve, &start_run(&serve, "members").await).await;
    // The drift: every 10th customer; even ones gain a tag in the mall, odd ones lose their
    // first tag on their first relation.
    for (j, i) in (0..CUSTOMERS).step_by(10).enumerate() {
        let tags = tags_of(i);
        if j % 2 == 0 {
            let extra = (0..TAGS).find(|k| !tags.contains(k)).unwrap();
            op.tag_member(&members[i], &mall_ids[extra]).unwrap();
        } else {
            let first = wecom_ids[tags[0]].as_str();
            quiet
                .tag_relation(&sales(i, 0), &customer(i), &[], &[first])
                .unwrap();
        }
    }
    // Slow relation pages, so the walk takes long enough to be interrupted.
    wecom.inject(
        ApiOp::BatchGetByUser,
        Fault {
            kind: FaultKind::Delay(Duration::from_millis(150)),
            trigger: Trigger::Probability(1.0),
        },
    );
    (
        Side {
            wecom,
            mall,
            data,
            members,
        },
        serve,
    )
}

async fn start_run(serve: &Serve, scope: &str) -> String {
    let body = serve
        .admin(
            reqwest::Method::POST,
            "/sync",
            Some(json!({"scope": scope})),
        )
        .await;
    body["run_id"].as_str().unwrap().to_owned()
}

async fn report(serve: &Serve, run: &str) -> Value {
    serve
        .admin(reqwest::Method::GET, &format!("/sync/{run}"), None)
        .await
}

/// Waits for the run to be done and the queue empty; the final report.
async fn finish(serve: &Serve, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = report(serve, run).await;
        if r["status"] != "running" {
            assert_eq!(r["status"], "done", "{r:#}");
            loop {
                let st = serve.admin(reqwest::Method::GET, "/status", None).await;
                if st["queue"]["pending"] == 0 && st["queue"]["in_flight"] == 0 {
                    assert_eq!(st["queue"]["dead"], 0, "{st}");
                    return r;
                }
                assert!(Instant::now() < deadline, "queue never emptied: {st}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert!(Instant::now() < deadline, "run never finished: {r:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every customer's tags, by tag name: in the mall, and on each relation in WeCom.
fn sides(s: &Side) -> BTreeMap<String, (Vec<String>, BTreeMap<String, Vec<String>>)> {
    let names: BTreeMap<String, String> = s.mall.library()[0]
        .tags
        .iter()
        .map(|t| (t.id.to_string(), t.name.clone()))
        .collect();
    let wnames: BTreeMap<String, String> = s.wecom.library()[0]
        .tags
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let mut out = BTreeMap::new();
    for (i, m) in s.members.iter().enumerate() {
        let mut mall: Vec<String> = s
            .mall
            .member(m)
            .unwrap()
            .tag_ids
            .iter()
            .map(|t| names[t.as_str()].clone())
            .collect();
        mall.sort();
        let mut rel = BTreeMap::new();
        for r in 0..(1 + i % 3) {
            let mut t: Vec<String> = s
                .wecom
                .relation_tags(&sales(i, r), &customer(i))
                .unwrap()
                .iter()
                .map(|t| wnames[t].clone())
                .collect();
            t.sort();
            rel.insert(sales(i, r), t);
        }
        out.insert(customer(i), (mall, rel));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_run_killed_midway_finishes_after_restart_as_an_uninterrupted_one() {
    // Uninterrupted.
    let (a, serve) = world().await;
    let run = start_run(&serve, "members").await;
    let whole = finish(&serve, &run).await;
    let sides_a = sides(&a);
    drop(serve);

    // Killed once the walk is under way, then started again on the same data.
    let (b, serve) = world().await;
    let run = start_run(&serve, "members").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let at_kill = loop {
        let r = report(&serve, &run).await;
        assert_eq!(
            r["status"], "running",
            "the run ended before it could be killed: {r:#}"
        );
        if r["progress"]["pages_done"].as_u64().unwrap() >= 4 {
            break r;
        }
        assert!(Instant::now() < deadline, "the walk never got going: {r:#}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    serve.kill();
    let serve = Serve::start(&b.data, &b.wecom);
    let resumed = finish(&serve, &run).await;
    assert!(
        at_kill["progress"]["pages_done"].as_u64() < resumed["progress"]["pages_done"].as_u64(),
        "killed midway: {at_kill:#}"
    );

    assert_eq!(resumed["drift"], whole["drift"], "{resumed:#}\n{whole:#}");
    assert_eq!(
        resumed["progress"]["pages_done"], whole["progress"]["pages_done"],
        "every page once"
    );
    assert_eq!(
        sides(&b),
        sides_a,
        "the same sides as the uninterrupted run"
    );
    // And those sides agree: each customer's relations hold the member's tags.
    for (c, (mall, rels)) in sides_a {
        for (u, tags) in rels {
            assert_eq!(tags, mall, "{c} on {u}");
        }
    }
    drop(serve);
    for s in [a, b] {
        s.wecom.stop().await;
        s.mall.stop().await;
        let _ = std::fs::remove_dir_all(&s.data);
    }
}
