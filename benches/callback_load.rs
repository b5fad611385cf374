//! Latency of `tagsync serve` answering WeCom callbacks under load: 200 concurrent encrypted,
//! signed `change_external_contact` callbacks (distinct events) against the release binary on
//! this machine, each answered only after its job is durably queued. Reports p50/p99/max of
//! the per-request latency as the client sees it. Target: p99 under 20 ms.
//!
//! Run: `cargo bench --bench callback_load` (5 rounds of 200; the first round warms up).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tagsync::wecom::crypto::{CallbackCrypto, build_envelope};

const CONCURRENT: usize = 200;
const CORP: &str = "ww5823bf96d3bd56c7";
const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const ADMIN: &str = "bench-admin-token-0123456789";

fn event(n: usize) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[edit_external_contact]]></ChangeType>\
         <UserID><![CDATA[sales{}]]></UserID><ExternalUserID><![CDATA[wmCustomer{n:06}]]></ExternalUserID></xml>",
        1_700_000_000 + n,
        n % 7
    )
}

#[tokio::main]
async fn main() {
    let rounds = if std::env::args().any(|a| a == "--bench") {
        5
    } else {
        1
    };
    let dir = std::env::temp_dir().join(format!(
        "tagsync-callback-load-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tagsync"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--nightly",
            "off",
            "--data",
        ])
        .arg(&dir)
        .env("TAGSYNC_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tagsync");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .trim_start_matches("tagsync listening on ")
        .to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENT)
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        let put = client
            .put(format!("{base}/admin/v1/tenants/bench"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({
                "corp_id": CORP, "agent_id": "1000002", "corp_secret": "s", "callback_token": TOKEN,
                "encoding_aes_key": AES_KEY, "mall_api_base": "http://127.0.0.1:9", "mall_api_token": "m",
                "mall_webhook_secret": "w"}))
            .send()
            .await;
        if put.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server not ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let crypto = CallbackCrypto::new(TOKEN, AES_KEY, CORP).unwrap();
    let mut all = Vec::new();
    for round in 0..rounds {
        // Prepare every request first so only the exchange with the server is timed.
        let requests: Vec<(String, String)> = (0..CONCURRENT)
            .map(|i| {
                let n = round * CONCURRENT + i;
                let encrypt = crypto.encrypt(&event(n));
                let (ts, nonce) = (format!("{}", 1_700_000_000 + n), format!("n{n}"));
                let sig = crypto.signature(&ts, &nonce, &encrypt);
                (format!("{base}/wecom/callback/bench?msg_signature={sig}&timestamp={ts}&nonce={nonce}"), build_envelope(CORP, "1000002", &encrypt))
            })
            .collect();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CONCURRENT));
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(url, body)| {
                let (client, barrier) = (client.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let t = Instant::now();
                    let resp = client.post(url).body(body).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    t.elapsed()
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.push(t.await.unwrap());
        }
        if round > 0 || rounds == 1 {
            all.extend(lat);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)];
    println!(
        "{} callbacks, {CONCURRENT} concurrent: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        ms(pct(50)),
        ms(pct(99)),
        ms(all[all.len() - 1])
    );
}
