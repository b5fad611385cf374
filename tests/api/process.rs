//! The `tagsync` binary as an operator runs it: crash safety and graceful shutdown.

use crate::helpers::*;
use crate::support::process::ServeProcess;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tagsync");

/// Starts `tagsync serve` on a free port (2 workers, 2 s job timeout).
fn start(data: &Path) -> ServeProcess {
    ServeProcess::start(
        BIN,
        data,
        &["--workers", "2", "--job-timeout", "2"],
        &[
            ("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("RUST_LOG", "warn".into()),
        ],
    )
}

fn cli(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["queue", "--data"])
        .arg(data)
        .args(args)
        .env("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tagsync queue {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An admin API answer as JSON; `None` while the server does not answer (or not with JSON).
async fn admin_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    client
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

fn counts(data: &Path) -> Value {
    serde_json::from_str(&cli(data, &["status"])).unwrap()
}

async fn processed(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let body: Value = client
            .get(format!(
                "{base}/admin/v1/tenants/{tenant}/audit?limit=500&cursor={cursor}"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in body["entries"].as_array().unwrap() {
            if e["action"] == "probe.processed" {
                *seen
                    .entry(e["entity"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn sigkill_with_jobs_queued_loses_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let serve = start(dir.path());
    let resp = client
        .put(format!("{}/admin/v1/tenants/acme", serve.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&tenant_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // 200 jobs of 25 ms each on 2 workers: about 2.5 s of work, enqueued by another process.
    cli(
        dir.path(),
        &[
            "probe",
            "--tenant",
            "acme",
            "--count",
            "200",
            "--work-ms",
            "25",
        ],
    );
    let base = serve.base.clone();
    wait_for("some jobs to be processed", Duration::from_secs(20), || {
        let (client, base) = (client.clone(), base.clone());
        async move { (processed(&client, &base, "acme").await.len() >= 20).then_some(()) }
    })
    .await;
    serve.kill(); // SIGKILL: no chance to clean up.

    let left = counts(dir.path());
    let remaining = left["pending"].as_u64().unwrap() + left["in_flight"].as_u64().unwrap();
    assert!(remaining > 0, "the kill should leave work behind: {left}");

    let serve = start(dir.path());
    let base = serve.base.clone();
    wait_for(
        "the restarted server to drain the queue",
        Duration::from_secs(60),
        || {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let s =
                    admin_json(&client, &format!("{base}/admin/v1/tenants/acme/status")).await?;
                (s["queue"]["pending"] == 0 && s["queue"]["in_flight"] == 0).then_some(())
            }
        },
    )
    .await;
    let seen = processed(&client, &base, "acme").await;
    assert_eq!(seen.len(), 200, "every job was processed");
    assert!(
        seen.values().all(|&n| n == 1),
        "no job was processed twice: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert_eq!(counts(dir.path())["dead"], 0);
    serve.kill();
}

#[tokio::test]
async fn sigterm_lets_the_job_in_flight_finish_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let serve = start(dir.path());
    client
        .put(format!("{}/admin/v1/tenants/acme", serve.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&tenant_body())
        .send()
        .await
        .unwrap();
    cli(
        dir.path(),
        &[
            "probe",
            "--tenant",
            "acme",
            "--count",
            "1",
            "--work-ms",
            "1500",
        ],
    );
    wait_for("the job to be taken", Duration::from_secs(10), || async {
        (counts(dir.path())["in_flight"] == 1).then_some(())
    })
    .await;

    let status = serve.stop();
    assert!(status.success(), "graceful exit: {status}");
    assert_eq!(
        counts(dir.path()),
        serde_json::json!({"pending": 0, "in_flight": 0, "dead": 0}),
        "the in-flight job finished and was acked"
    );

    // Nothing was lost: the audit (read through a fresh server) shows the job.
    let serve = start(dir.path());
    assert_eq!(processed(&client, &serve.base, "acme").await.len(), 1);
    serve.kill();
}

/// `serve --demo` whose stdout cannot be written (here `/dev/full`; in the wild a terminal
/// closed or a pipe whose reader stopped reading) keeps serving and seeds the demo: both the
/// "listening" line and the demo's commands fail to print, and neither stops the server.
/// (Before, `println!` panicked the main task: the process died at its first line, or, when the
/// reader had stopped after the commands, at their final newline.)
#[tokio::test]
async fn serve_keeps_serving_when_its_stdout_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    // A free port chosen here, because the line that would name it cannot be read.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full (Linux)");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--demo", "--nightly", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .env("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN)
        .env(
            "TAGSYNC_SECRET_KEY",
            crate::support::process::test_key(dir.path()),
        )
        .stdout(Stdio::from(full))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start tagsync serve --demo");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // The demo's seed ends with the channel code's tag carried to the mall; its commands are
    // printed right after.
    wait_for(
        "the demo seeded and carried 线下门店 to the mall",
        Duration::from_secs(60),
        || {
            let (client, base) = (&client, &base);
            async move {
                let library =
                    admin_json(client, &format!("{base}/admin/v1/tenants/demo/tag-groups")).await?;
                let tags = library["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["tags"].as_array().into_iter().flatten());
                tags.into_iter()
                    .any(|t| {
                        t["name"] == "线下门店"
                            && t["mall_id"].as_str().is_some_and(|m| !m.is_empty())
                    })
                    .then_some(())
            }
        },
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "tagsync serve exited although only its stdout failed"
    );
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "still serving");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn demo_wires_both_simulators_and_its_printed_commands_carry_changes_both_ways() {
    let child = Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--nightly",
            "off",
        ])
        .env("RUST_LOG", "warn")
        .env_remove("TAGSYNC_ADMIN_TOKEN")
        // A key of its own rather than the user's key file.
        .env(
            "TAGSYNC_SECRET_KEY",
            tagsync::store::sealing::SecretKey::generate().to_base64(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tagsync serve --demo");
    // Killed however the test ends (a failed assertion must not leave the demo running).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let child_stdout = child.0.stdout.take().unwrap();
    // Read what the demo prints, up to its last command (the audit log): it prints once the
    // seeded world has been carried everywhere.
    let mut out = String::new();
    let mut lines = BufReader::new(child_stdout);
    while !out.contains("/admin/v1/tenants/demo/audit") {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "demo output ended early: {out}"
        );
        out.push_str(&line);
    }
    let base = out
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("tagsync listening on ")
        .to_string();
    let token = out
        .split("admin token: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // The printed command a newcomer copies: rename 金卡 in the mall simulator.
    let patch = out.lines().find(|l| l.contains("-X PATCH")).unwrap();
    let url = patch.split_whitespace().nth(4).unwrap();
    let client = reqwest::Client::new();
    let renamed = client
        .patch(url)
        .json(&serde_json::json!({"name": "黑金卡"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);

    let audit_url = format!("{base}/admin/v1/tenants/demo/audit");
    let entry = wait_for(
        "the mall's webhook to reach tagsync",
        Duration::from_secs(20),
        || {
            let (client, audit_url, token) = (client.clone(), audit_url.clone(), token.clone());
            async move {
                let body: Value = client
                    .get(&audit_url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                body["entries"]
                    .as_array()?
                    .iter()
                    // The demo's seeding renames tags too; this is the printed command's.
                    .find(|e| {
                        e["after"]["event_type"] == "tag.updated"
                            && e["after"]["body"]["data"]["tag"]["name"] == "黑金卡"
                    })
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(entry["after"]["body"]["data"]["tag"]["name"], "黑金卡");
    // And the engine carries it on to WeCom (the simulator's control surface lists its library).
    let control = out
        .split("control: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    wait_for(
        "the renamed tag to reach WeCom",
        Duration::from_secs(20),
        || {
            let (client, url) = (client.clone(), format!("{control}/library"));
            async move {
                let text = client.get(&url).send().await.ok()?.text().await.ok()?;
                text.contains("黑金卡").then_some(())
            }
        },
    )
    .await;

    // The second printed command: a salesperson tags wm_bob in WeCom; the printed check finds
    // the tag's mall id on Bob's mall member.
    let tag_cmd = out
        .lines()
        .find(|l| l.contains("-X POST") && l.contains("/relations/tags"))
        .unwrap();
    let url = tag_cmd.split_whitespace().nth(4).unwrap();
    let body: Value =
        serde_json::from_str(tag_cmd.split("-d '").nth(1).unwrap().trim_end_matches('\'')).unwrap();
    let tagged = client.post(url).json(&body).send().await.unwrap();
    assert_eq!(tagged.status(), 200);
    let check = out
        .lines()
        .find(|l| l.contains("/members/") && l.contains("grep -o"))
        .unwrap();
    let member_url = check.split_whitespace().nth(2).unwrap().to_string();
    let mall_token = check
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let mall_tag = check.split("grep -o ").nth(1).unwrap().trim().to_string();
    assert!(
        !mall_tag.is_empty(),
        "the check names the mall tag id: {check}"
    );
    wait_for(
        "the WeCom tag to reach Bob's mall member",
        Duration::from_secs(20),
        || {
            let (client, url, token) = (client.clone(), member_url.clone(), mall_token.clone());
            let tag = mall_tag.clone();
            async move {
                let text = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                text.contains(&format!("\"{tag}\"")).then_some(())
            }
        },
    )
    .await;
    drop(child);
}

/// Two `tagsync serve` processes on one store (the in-process world and a `tagsync` binary
/// on its data directory, pulling from the same queue) spend one WeCom rate budget: each may
/// spend 15 `mark_tag` a minute (`TAGSYNC_WECOM_RATE_SHARE=0.0015`), WeCom allows 20, and 30
/// relations are marked by jobs both processes run. Budgets of their own would let up to 30
/// through in one minute and meet 45009; one shared budget keeps WeCom from ever refusing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_serve_processes_on_one_store_share_one_wecom_rate_budget() {
    use crate::support::world::{ADMIN_TOKEN as WORLD_TOKEN, World, WorldOptions};
    use tagsync::sim::hold::Phase;
    use tagsync::sim::mall::NewMember;
    use tagsync::sim::wecom::SimConfig;
    use tagsync::wecom::budget::BudgetConfig;
    use tagsync::wecom::classify::ApiOp;

    const SHARE: &str = "0.0015";
    // One worker here (woken at once by its own sends), two there (polling the file).
    let w = World::start(WorldOptions {
        workers: 1,
        wecom: SimConfig {
            rate_limits: [(ApiOp::MarkTag, 20)].into(),
            ..SimConfig::default()
        },
        wecom_budget: Some(BudgetConfig::share(SHARE.parse().unwrap())),
        ..WorldOptions::default()
    })
    .await;
    assert_eq!(BudgetConfig::share(SHARE.parse().unwrap()).per_minute, 15);
    let (status, group) = w
        .admin(
            reqwest::Method::POST,
            "/tag-groups",
            Some(serde_json::json!({"name": "等级", "tags": [{"name": "金卡", "order": 1}]})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gold = group["tags"][0]["id"].as_str().unwrap().to_owned();
    let mut members = Vec::new();
    for i in 0..15 {
        let customer = format!("wm_{i:03}");
        for s in [i % 5, i % 5 + 5] {
            w.wecom
                .silent()
                .add_relation(&format!("sales_{s}"), &customer, None)
                .unwrap();
        }
        let m = w
            .mall
            .silent()
            .create_member(NewMember::external(&customer))
            .unwrap();
        members.push(m.id.as_str().to_owned());
    }
    let (status, run) = w
        .admin(
            reqwest::Method::POST,
            "/sync",
            Some(serde_json::json!({"scope": "members"})),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    w.settle(Duration::from_secs(60)).await.unwrap();

    let other = ServeProcess::start(
        BIN,
        w.data_dir(),
        &["--workers", "2"],
        &[
            ("TAGSYNC_ADMIN_TOKEN", WORLD_TOKEN.into()),
            ("TAGSYNC_WECOM_API_BASE", w.wecom.base_url()),
            ("TAGSYNC_WECOM_RATE_SHARE", SHARE.into()),
            ("RUST_LOG", "error".into()),
        ],
    );
    let calls_before = w.wecom.calls().len();
    // Three workers in all (one here, two there): hold the first three `mark_tag` calls until
    // all three are in flight. A job marks one member's two relations, so three held calls
    // cannot all be this process's one worker: the other process must have taken a job,
    // however the two processes' polling happens to fall.
    let mut holds: Vec<_> = (0..3)
        .map(|_| w.wecom.hold(ApiOp::MarkTag, Phase::Before, Value::Null))
        .collect();
    // One change per member, so each is a job of its own the two processes share out (a
    // batch would be one job of them all: `jobs::member_batch`).
    for m in &members {
        let (status, body) = w
            .admin(
                reqwest::Method::POST,
                &format!("/members/{m}/tags"),
                Some(serde_json::json!({"add": [gold], "remove": []})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let mut held = Vec::new();
    for h in &mut holds {
        held.push(h.held(Duration::from_secs(30)).await.unwrap());
    }
    held.into_iter().for_each(|h| h.release());
    // Up to a minute and a half: the relations beyond the budget wait for the next minute.
    w.settle(Duration::from_secs(150)).await.unwrap();
    assert!(w.problems().await.is_empty(), "{:?}", w.problems().await);

    for m in &members {
        w.member_view(m)
            .await
            .expect_everywhere(&["等级/金卡"])
            .unwrap_or_else(|e| panic!("member {m}: {e}"));
    }
    let marks: Vec<_> = w.wecom.calls()[calls_before..]
        .iter()
        .filter(|c| c.op == ApiOp::MarkTag)
        .cloned()
        .collect();
    assert_eq!(
        marks.iter().filter(|c| c.errcode == Some(45009)).count(),
        0,
        "WeCom never refused: the two processes together stayed under its 20 a minute"
    );
    assert_eq!(marks.iter().filter(|c| c.errcode == Some(0)).count(), 30);
    // The other process ran member jobs too (its own counters).
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", other.base))
        .bearer_auth(WORLD_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("kind=\"sync_member\"") && !l.ends_with(" 0")),
        "the second process ran member jobs:\n{metrics}"
    );
    other.stop();
    w.stop().await;
}
