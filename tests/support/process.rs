//! `tagsync serve` as its own process, for the tests and benches that kill it, restart it on
//! the same data or measure its memory: started on a free loopback port, its first line
//! ("tagsync listening on …") read for the address. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:P`.
    pub base: String,
}

impl ServeProcess {
    /// Runs `{bin} serve --listen 127.0.0.1:0 --nightly off --data {data} {args…}` with `env`
    /// (stderr inherited, so its log lines show with the test's).
    ///
    /// # Panics
    /// If it cannot start or its first line is not the "listening" line.
    pub fn start(bin: &str, data: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--nightly",
            "off",
            "--data",
        ])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        // A key of its own per data directory, the same on every start (so restarts open the
        // store), unless the caller gives one: tests must not share the user's key file.
        if !env
            .iter()
            .any(|(k, _)| k.starts_with("TAGSYNC_SECRET_KEY") || *k == "HOME")
        {
            cmd.env("TAGSYNC_SECRET_KEY", test_key(data));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start tagsync serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("tagsync's first line");
        let base = line
            .trim()
            .strip_prefix("tagsync listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self { child, base }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc status of tagsync serve");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status");
        kb / 1024.0
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the graceful stop; the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.child.wait().expect("wait for tagsync serve")
    }
}

/// A secret key derived from the data directory's path (for test processes only: anyone who
/// knows the path knows the key).
pub fn test_key(data: &Path) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("tagsync test key {}", data.display()));
    base64::engine::general_purpose::STANDARD.encode(digest)
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
