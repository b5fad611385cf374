//! Startup benchmark: how long `tagsync serve` takes, on an empty data directory, from
//! process spawn to its first `200` on `/healthz`. Target: under one second.
//!
//! Run: `cargo bench --bench startup` (release build of the binary; 30 cold starts).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Cold starts measured by `cargo bench`; `cargo test --all-targets` runs the binary
/// without `--bench` as a smoke test, with fewer.
fn runs() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        30
    } else {
        3
    }
}

fn healthz_ok(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_tagsync");
    let runs = runs();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile_dir();
        let start = Instant::now();
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--nightly",
                "off",
                "--data",
            ])
            .arg(&dir)
            .env("TAGSYNC_ADMIN_TOKEN", "bench-admin-token-0123456789")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tagsync");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .trim_start_matches("tagsync listening on http://")
            .to_string();
        while !healthz_ok(&addr) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "not ready after 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(start.elapsed());
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "startup to first /healthz 200 over {runs} cold starts: min {:.1} ms, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(samples[0]),
        ms(samples[runs / 2]),
        ms(samples[runs * 95 / 100]),
        ms(samples[runs - 1])
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tagsync-startup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
