//! The demo's automatic tagging, as a newcomer tries it: `tagsync serve --demo` prints a
//! command that scans the seeded channel code and one that sends a chat message, each followed
//! by commands that show the tag in WeCom and in the mall. The test runs those printed lines
//! with `sh`, as pasted, and checks what they print against the hub's own ids.

use crate::steps::*;
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_tagsync");

/// A started demo and everything it printed up to its last command (the audit log).
struct Demo {
    child: tokio::process::Child,
    out: String,
}

impl Demo {
    async fn start() -> Demo {
        let mut child = tokio::process::Command::new(BIN)
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
            .kill_on_drop(true)
            .spawn()
            .expect("start tagsync serve --demo");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut out = String::new();
        while !out.contains("/admin/v1/tenants/demo/audit") {
            let line = tokio::time::timeout(HELD_WITHIN * 6, lines.next_line())
                .await
                .expect("the demo prints its commands once seeded")
                .unwrap()
                .unwrap_or_else(|| panic!("demo output ended early: {out}"));
            out.push_str(&line);
            out.push('\n');
        }
        Demo { child, out }
    }

    /// The printed commands (`curl …` lines), in order.
    fn commands(&self) -> Vec<&str> {
        self.out
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("curl "))
            .collect()
    }

    /// The first printed command containing every one of `parts`.
    fn command(&self, parts: &[&str]) -> String {
        self.commands()
            .into_iter()
            .find(|c| parts.iter().all(|p| c.contains(p)))
            .unwrap_or_else(|| panic!("no printed command with {parts:?} in:\n{}", self.out))
            .to_owned()
    }

    /// The printed commands right after the one containing `marker`.
    fn after(&self, marker: &str, n: usize) -> Vec<String> {
        let all = self.commands();
        let at = all
            .iter()
            .position(|c| c.contains(marker))
            .unwrap_or_else(|| panic!("no printed command with {marker:?} in:\n{}", self.out));
        all[at + 1..at + 1 + n]
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    }

    fn after_label(&self, label: &str) -> String {
        self.out
            .split(label)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}

/// Runs a printed command line with `sh`, as a newcomer pasting it would; answers its stdout.
async fn sh(command: &str) -> String {
    let out = tokio::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .await
        .expect("sh runs");
    if !out.status.success() {
        eprintln!(
            "`{command}` exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hub tag's (WeCom id, mall id), read from tagsync's admin API.
async fn side_ids(base: &str, token: &str, name: &str) -> (String, String) {
    let library: Value = reqwest::Client::new()
        .get(format!("{base}/admin/v1/tenants/demo/tag-groups"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tag = library["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tags"].as_array().unwrap())
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("the hub has {name}: {library}"))
        .clone();
    (s(&tag["wecom_id"]), s(&tag["mall_id"]))
}

/// Polls the printed WeCom and mall checks until the customer's every relation (`relations`
/// of them) lists `wecom_id` and the mall check prints `mall_id`.
async fn shows_everywhere(checks: &[String], relations: usize, wecom_id: &str, mall_id: &str) {
    let (wecom, mall) = (&checks[0], &checks[1]);
    wait_until(
        "the printed WeCom check shows the tag on every relation",
        || async {
            let shown = sh(wecom).await;
            let lines: Vec<&str> = shown.lines().collect();
            lines.len() == relations && lines.iter().all(|l| l.contains(wecom_id))
        },
    )
    .await;
    wait_until("the printed mall check shows the tag", || async {
        sh(mall).await.trim() == mall_id
    })
    .await;
}

#[tokio::test]
async fn the_demos_printed_scan_and_chat_commands_tag_the_customer_in_wecom_and_the_mall() {
    let mut demo = Demo::start().await;
    let base = demo.after_label("tagsync     ");
    let token = demo.after_label("admin token: ");

    // The scan: wm_bob (followed by sales_li) scans sales_wang's code 线下门店.
    let scan = demo.command(&["/contact-ways/", "/scan"]);
    let (wecom_id, mall_id) = side_ids(&base, &token, "线下门店").await;
    assert!(!wecom_id.is_empty() && !mall_id.is_empty());
    let checks = demo.after("/scan", 2);
    assert!(
        sh(&checks[1]).await.trim().is_empty(),
        "Bob is not 线下门店 in the mall before the scan"
    );
    let answered: Value = serde_json::from_str(&sh(&scan).await).expect("the scan answers JSON");
    assert_eq!(answered["ok"], true, "{answered}");
    shows_everywhere(&checks, 2, &wecom_id, &mall_id).await;

    // The chat message: wm_alice asks sales_li about 优惠券.
    let chat = demo.command(&["/chat", "优惠券"]);
    let (wecom_id, mall_id) = side_ids(&base, &token, "促销敏感").await;
    let checks = demo.after("/chat", 3);
    assert!(
        sh(&checks[1]).await.trim().is_empty(),
        "Alice is not 促销敏感 in the mall before the message"
    );
    let answered: Value = serde_json::from_str(&sh(&chat).await).expect("the chat answers JSON");
    assert_eq!(answered["tagsync"]["status"], 202, "{answered}");
    shows_everywhere(&checks, 2, &wecom_id, &mall_id).await;
    let firings: Value = serde_json::from_str(&sh(&checks[2]).await).expect("firings as JSON");
    let outcomes: Vec<String> = firings["firings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| s(&f["outcome"]))
        .collect();
    assert_eq!(outcomes, ["applied"], "{firings}");
    assert_eq!(firings["firings"][0]["event"]["msgid"], answered["msgid"]);

    demo.child.kill().await.unwrap();
}
