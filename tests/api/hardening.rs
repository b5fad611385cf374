//! The hardening an outside probe of `tagsync serve` asked for (issue 12 §4), each finding
//! reproduced: secrets at rest, connection limits, argument checks, a damaged database, the
//! demo's restart, request ids, names, media types and headers. (Member existence is in
//! `members.rs`; the KMS key path is in the contract suite, against moto.)

use crate::helpers::*;
use crate::support::process::ServeProcess;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagsync::app::App;
use tagsync::domain::*;
use tagsync::ports::SystemClock;
use tagsync::runtime::serve::{Nightly, ServeOptions};
use tagsync::store::sealing::SecretKey;
use tagsync::store::sqlite::{SqliteDb, open_store};
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_tagsync");

/// The five secrets of [`tenant_body`].
const SECRETS: [&str; 5] = [
    "corp-secret-value-1",
    "QDG6eK",
    "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "mall-token-value-2",
    "webhook-secret-value-3",
];

/// `serve` in this process on `dir` with `opts`; stopped by [`Running::stop`].
struct Running {
    base: String,
    app: App,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_on(dir: &Path, key: SecretKey, opts: ServeOptions) -> Running {
    let (app, _db) = App::sqlite(dir, test_config(), Arc::new(SystemClock), key)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tagsync::runtime::serve::serve(
        app.clone(),
        listener,
        opts,
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        base,
        app,
        client: reqwest::Client::new(),
        stop,
        server,
    }
}

fn quiet() -> ServeOptions {
    ServeOptions {
        workers: 1,
        nightly: Nightly::Off,
        shutdown_grace: Duration::from_secs(5),
        ..ServeOptions::default()
    }
}

impl Running {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

/// Every file of the data directory, as bytes (the database, its WAL and shared memory).
fn raw_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The secrets (of [`SECRETS`]) that some file of `dir` holds in plain text.
fn plain_secrets_in(dir: &Path) -> Vec<String> {
    let files = raw_files(dir);
    SECRETS
        .iter()
        .filter(|s| files.iter().any(|(_, b)| contains(b, s)))
        .map(|s| s.to_string())
        .collect()
}

fn any_file_contains(dir: &Path, needle: &str) -> bool {
    raw_files(dir).iter().any(|(_, b)| contains(b, needle))
}

/// A mall webhook signed with `secret`, delivered to tenant `acme`; its status.
async fn signed_webhook(client: &reqwest::Client, base: &str, secret: &str) -> u16 {
    let body = serde_json::to_vec(&json!({
        "event_id": format!("e-{}", uuid::Uuid::new_v4().simple()),
        "type": "tag_group.created",
        "occurred_at": "2026-11-21T08:15:30.123Z",
        "origin_request_id": null,
        "data": {"group": {"id": "g1", "name": "VIP", "order": 10}},
    }))
    .unwrap();
    let ts = chrono::Utc::now().timestamp();
    client
        .post(format!("{base}/mall/webhook/acme"))
        .header("content-type", "application/json")
        .header("x-mall-timestamp", ts.to_string())
        .header(
            "x-mall-signature",
            tagsync::mall::webhook::sign(secret.as_bytes(), ts, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------------------
// Secrets at rest.

#[tokio::test]
async fn the_raw_database_files_hold_none_of_a_tenants_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = start_on(&data, SecretKey::generate(), quiet()).await;
    let (status, body) = s
        .admin(Method::PUT, "/admin/v1/tenants/acme", Some(tenant_body()))
        .await;
    assert_eq!(status, 201, "{body}");
    // Written, sealed: the tenant is in the files, its secrets are not.
    assert!(any_file_contains(&data, "ww5823bf96d3bd56c7"));
    assert!(any_file_contains(&data, "sealed:v1:"));
    assert_eq!(plain_secrets_in(&data), Vec::<String>::new());
    // And tagsync reads them back: a webhook signed with the stored secret is accepted, one
    // signed with another is not.
    assert!(signed_webhook(&s.client, &s.base, SECRETS[4]).await < 300);
    assert_eq!(
        signed_webhook(&s.client, &s.base, "another-secret").await,
        401
    );
    s.stop().await;
}

#[tokio::test]
async fn plain_tenant_records_of_an_older_version_are_sealed_on_first_start_and_still_usable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The old way: a store without a key writes the tenant as it is.
    {
        let db = SqliteDb::open_in_dir(&data).unwrap();
        let store = open_store(&db);
        let mut tenant = Tenant {
            id: TenantId::parse("acme").unwrap(),
            corp_id: CorpId::new_unchecked("ww5823bf96d3bd56c7"),
            agent_id: "1000002".into(),
            mall_api_base: "https://mall.example.com/api".into(),
            secrets: TenantSecrets {
                corp_secret: Secret::new(SECRETS[0]),
                callback_token: Secret::new(SECRETS[1]),
                encoding_aes_key: Secret::new(SECRETS[2]),
                mall_api_token: Secret::new(SECRETS[3]),
                mall_webhook_secret: Secret::new(SECRETS[4]),
                message_feed_secret: None,
            },
            settings: Settings::default(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            version: 0,
        };
        tagsync::ports::Store::put_tenant(&store, &mut tenant)
            .await
            .unwrap();
    }
    assert_eq!(
        plain_secrets_in(&data).len(),
        5,
        "the old way left them plain"
    );

    let s = start_on(&data, SecretKey::generate(), quiet()).await;
    assert_eq!(
        plain_secrets_in(&data),
        Vec::<String>::new(),
        "sealed on first start, and no plain copy left in the files"
    );
    let tenant = s
        .app
        .store
        .get_tenant(&TenantId::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.secrets.corp_secret.expose(), SECRETS[0]);
    assert_eq!(tenant.secrets.encoding_aes_key.expose(), SECRETS[2]);
    assert!(signed_webhook(&s.client, &s.base, SECRETS[4]).await < 300);
    s.stop().await;
}

#[tokio::test]
async fn a_store_started_with_another_key_is_refused_naming_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    let first = SecretKey::generate();
    let s = start_on(dir.path(), first.clone(), quiet()).await;
    assert_eq!(
        s.admin(Method::PUT, "/admin/v1/tenants/acme", Some(tenant_body()))
            .await
            .0,
        201
    );
    s.stop().await;
    let other = SecretKey::generate();
    let e = match App::sqlite(
        dir.path(),
        test_config(),
        Arc::new(SystemClock),
        other.clone(),
    )
    .await
    {
        Ok(_) => panic!("another key opened the store"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&first.id()) && e.contains(&other.id()), "{e}");
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    // The first key still opens it.
    App::sqlite(dir.path(), test_config(), Arc::new(SystemClock), first)
        .await
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_created_0700_and_its_files_0600_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new").join("data");
    let key = dir.path().join("keys").join("secret-key");
    // `sh` sets the umask the probe ran with (none at all) before it becomes tagsync.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000; exec "$0" serve --listen 127.0.0.1:0 --nightly off --data "$1""#)
        .arg(BIN)
        .arg(&data)
        .env_remove("TAGSYNC_ADMIN_TOKEN")
        .env_remove("TAGSYNC_SECRET_KEY")
        .env("TAGSYNC_SECRET_KEY_FILE", &key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("tagsync listening on"), "{line}");
    let modes = [
        (data.clone(), 0o700),
        (data.join("tagsync.db"), 0o600),
        (data.join("tagsync.db-wal"), 0o600),
        (data.join("tagsync.db-shm"), 0o600),
        (data.join("admin-token"), 0o600),
        (key.clone(), 0o600),
        (key.parent().unwrap().to_path_buf(), 0o700),
    ];
    let seen: Vec<(PathBuf, u32)> = modes.iter().map(|(p, _)| (p.clone(), mode(p))).collect();
    let _ = child.kill();
    let _ = child.wait();
    for ((path, want), (_, got)) in modes.iter().zip(seen) {
        assert_eq!(got, *want, "{} is {got:o}", path.display());
    }
}

#[tokio::test]
async fn serve_keeps_its_generated_key_outside_the_data_directory_and_restarts_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = dir.path().join("data");
    let env = [
        ("HOME", home.display().to_string()),
        ("XDG_CONFIG_HOME", String::new()),
        ("TAGSYNC_SECRET_KEY", String::new()),
        ("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let client = reqwest::Client::new();
    let serve = ServeProcess::start(BIN, &data, &[], &env);
    let put = client
        .put(format!("{}/admin/v1/tenants/acme", serve.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&tenant_body())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    serve.kill();
    let key = home.join(".config/tagsync/secret-key");
    assert!(key.is_file(), "the key is in the user's configuration");
    assert!(!key.starts_with(&data));
    assert!(
        raw_files(&data)
            .iter()
            .all(|(p, _)| !p.ends_with("secret-key")),
        "no key in the data directory"
    );
    assert_eq!(plain_secrets_in(&data), Vec::<String>::new());

    let serve = ServeProcess::start(BIN, &data, &[], &env);
    assert!(signed_webhook(&client, &serve.base, SECRETS[4]).await < 300);
    serve.kill();
}

#[tokio::test]
async fn a_secret_key_file_inside_the_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--secret-key-file")
        .arg(data.join("secret-key"))
        .env_remove("TAGSYNC_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inside the data directory"), "{err}");
    assert!(!data.exists(), "nothing was written");
}

// ---------------------------------------------------------------------------------------
// Connections.

/// Reads until the server closes the socket (or `limit` passes); how long that took.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let waited = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the server left the socket open past {limit:?}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_after_the_header_timeout_and_healthz_stays_fast_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(2);
    let s = start_on(
        dir.path(),
        SecretKey::generate(),
        ServeOptions {
            header_read_timeout: timeout,
            ..quiet()
        },
    )
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // One that sent half a request head is no better off.
    use tokio::io::AsyncWriteExt;
    idle[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let opened = Instant::now();

    let asked = Instant::now();
    let health = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(health.status(), 200);
    assert!(
        took < Duration::from_secs(1),
        "healthz took {took:?} beside 300 idle sockets"
    );

    for stream in &mut idle {
        closed_by_server(stream, timeout + Duration::from_secs(15)).await;
    }
    let all_closed = opened.elapsed();
    assert!(
        all_closed >= timeout - Duration::from_millis(200),
        "closed after {all_closed:?}, before the timeout"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_idle_after_its_answer_is_closed_after_the_timeout() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(1);
    let s = start_on(
        dir.path(),
        SecretKey::generate(),
        ServeOptions {
            header_read_timeout: timeout,
            ..quiet()
        },
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    let ended = tokio::time::timeout(timeout + Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the idle keep-alive connection stayed open");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= timeout - Duration::from_millis(200));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(2);
    let s = start_on(
        dir.path(),
        SecretKey::generate(),
        ServeOptions {
            header_read_timeout: timeout,
            max_connections: 4,
            ..quiet()
        },
    )
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // The fifth connection is not served while four are open: its answer comes only once the
    // idle ones are closed by their timeout.
    let health = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    let answered = opened.elapsed();
    assert_eq!(health.status(), 200);
    assert!(
        answered >= timeout - Duration::from_millis(200),
        "answered after {answered:?}, while the cap was full"
    );
    for stream in &mut idle {
        closed_by_server(stream, Duration::from_secs(15)).await;
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// Arguments and the data directory (the real binary).

fn run(args: &[&str], data: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .env("TAGSYNC_SECRET_KEY", SecretKey::generate().to_base64())
        .env_remove("TAGSYNC_LOG_FORMAT")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_serve_arguments_are_refused_before_the_data_directory_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = ["serve", "--listen", "127.0.0.1:0"];
    for (bad, names) in [
        (&["--workers", "0"][..], "--workers"),
        (&["--workers", "257"], "--workers"),
        (&["--workers", "many"], "--workers"),
        (&["--nightly", "every:0"], "every:0"),
        (&["--job-timeout", "0"], "--job-timeout"),
        (&["--log-format", "yaml"], "--log-format"),
    ] {
        let args: Vec<&str> = serve.iter().chain(bad).copied().collect();
        let (ok, err) = run(&args, &data);
        assert!(!ok, "{bad:?} was accepted");
        assert!(err.contains(names), "{bad:?}: {err}");
        assert!(!data.exists(), "{bad:?} wrote {}", data.display());
    }
    let (ok, err) = run(
        &["serve", "--listen", "127.0.0.1:0", "--workers", "0"],
        &data,
    );
    assert!(!ok && err.contains("1..=256"), "{err}");
    // An address that cannot be listened on is refused before anything is written, too.
    let (ok, err) = run(&["serve", "--listen", "256.0.0.1:1"], &data);
    assert!(!ok && err.contains("cannot listen"), "{err}");
    assert!(!data.exists());
}

#[test]
fn errors_about_the_data_directory_name_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let (ok, err) = run(&["serve", "--listen", "127.0.0.1:0"], &not_a_dir);
    assert!(!ok);
    assert!(err.contains(&not_a_dir.display().to_string()), "{err}");
}

#[test]
fn queue_commands_on_a_directory_without_a_store_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (i, action) in [
        &["status"][..],
        &["dead-letters"],
        &["redrive"],
        &["probe", "--tenant", "acme"],
    ]
    .iter()
    .enumerate()
    {
        let data = dir.path().join(format!("typo-{i}"));
        let args: Vec<&str> = ["queue"].iter().chain(action.iter()).copied().collect();
        let (ok, err) = run(&args, &data);
        assert!(!ok, "{action:?}");
        assert!(err.contains("no tagsync store"), "{action:?}: {err}");
        assert!(err.contains(&data.display().to_string()), "{err}");
        assert!(!data.exists(), "{action:?} created {}", data.display());
    }
}

// ---------------------------------------------------------------------------------------
// A damaged database.

#[test]
fn a_damaged_database_is_refused_at_start_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let data = dir.path().join("garbage");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tagsync.db"), vec![0x5au8; 64 * 1024]).unwrap();
    let (ok, err) = run(&["serve", "--listen", "127.0.0.1:0"], &data);
    assert!(!ok);
    assert!(
        err.contains("damaged") && err.contains("tagsync.db"),
        "{err}"
    );

    // A real store with a page scribbled over: `PRAGMA quick_check` finds it.
    let data = dir.path().join("scribbled");
    let db_path = data.join("tagsync.db");
    drop(SqliteDb::open_in_dir(&data).unwrap()); // tagsync's own schema
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..2000 {
            tx.execute(
                "INSERT INTO items (pk, sk, version, data) VALUES (?1, 'META', 1, ?2)",
                rusqlite::params![format!("TENANT#{i}"), "x".repeat(200)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&db_path).unwrap();
    let page = 4096;
    assert!(bytes.len() > 20 * page);
    for b in &mut bytes[10 * page..12 * page] {
        *b = 0xa5;
    }
    std::fs::write(&db_path, bytes).unwrap();
    let (ok, err) = run(&["serve", "--listen", "127.0.0.1:0"], &data);
    assert!(!ok, "a damaged store was opened");
    assert!(err.contains("damaged"), "{err}");
    assert!(err.contains(&db_path.display().to_string()), "{err}");
}

#[tokio::test]
async fn healthz_answers_503_when_the_store_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), SecretKey::generate(), quiet()).await;
    let health = |s: &Running| {
        let (client, url) = (s.client.clone(), format!("{}/healthz", s.base));
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(health(&s).await, 200);
    // Another hand breaks the store under the running server.
    let conn = rusqlite::Connection::open(dir.path().join("tagsync.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("DROP TABLE items").unwrap();
    assert_eq!(health(&s).await, 503);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// The demo restarted on its own data.

/// Starts the demo on `data` and reads its output until `until` shows (or it exits).
fn demo(data: &Path, key: &str, until: &str) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--nightly",
            "off",
            "--data",
        ])
        .arg(data)
        .env("TAGSYNC_SECRET_KEY", key)
        .env("TAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    while !out.contains(until) {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("the demo exited ({status}) before printing {until:?}: {out}");
        }
        out.push_str(&line);
    }
    (child, out)
}

#[tokio::test]
async fn the_demo_restarts_on_its_own_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let key = SecretKey::generate().to_base64();
    let (mut first, _) = demo(&data, &key, "/admin/v1/tenants/demo/audit");
    let _ = first.kill();
    let _ = first.wait();

    let (mut second, out) = demo(&data, &key, "seed was skipped");
    let base = out
        .lines()
        .find_map(|l| l.strip_prefix("tagsync listening on "))
        .unwrap()
        .trim()
        .to_string();
    let client = reqwest::Client::new();
    // The first run's library is still the hub's.
    let groups: Value = client
        .get(format!("{base}/admin/v1/tenants/demo/tag-groups"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(groups.to_string().contains("购买意向"), "{groups}");
    let alive = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200);
    let _ = second.kill();
    let _ = second.wait();
}

// ---------------------------------------------------------------------------------------
// Request ids, names, media types, headers.

#[tokio::test]
async fn the_request_id_is_taken_from_the_header_only_when_short_and_plain() {
    let t = spawn_app().await;
    let id_for = |offered: String| {
        let (client, url) = (t.client.clone(), t.url("/healthz"));
        async move {
            let resp = client
                .get(url)
                .header("x-request-id", offered)
                .send()
                .await
                .unwrap();
            resp.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(id_for("req-42.a_B".into()).await, "req-42.a_B");
    for forged in [
        "x\" level=error msg=\"forged".to_string(),
        "a b".to_string(),
        "a".repeat(65),
        "id=1,tenant=other".to_string(),
    ] {
        let id = id_for(forged.clone()).await;
        assert_ne!(id, forged);
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn names_of_only_invisible_characters_or_with_bidi_controls_are_refused_with_400() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let groups = "/admin/v1/tenants/acme/tag-groups";
    for name in [
        "\u{200B}",
        "\u{200B}\u{FEFF}\u{2060}",
        "VIP\u{202E}pij",
        "\u{2066}x\u{2069}",
    ] {
        let (status, body) = t
            .admin(Method::POST, groups, Some(json!({"name": name})))
            .await;
        assert_eq!(status, 400, "group {name:?}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`name`")
        );
        let (status, body) = t
            .admin(
                Method::POST,
                groups,
                Some(json!({"name": "ok", "tags": [{"name": name}]})),
            )
            .await;
        assert_eq!(status, 400, "tag {name:?}: {body}");
    }
    let (status, group) = t
        .admin(
            Method::POST,
            groups,
            Some(json!({"name": "客户等级", "tags": [{"name": "VIP"}]})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let tag = group["tags"][0]["id"].as_str().unwrap();
    let (status, _) = t
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/acme/tags/{tag}"),
            Some(json!({"name": "\u{200D}\u{200C}"})),
        )
        .await;
    assert_eq!(status, 400, "a rename onto nothing visible");
    let (status, _) = t
        .admin(
            Method::PATCH,
            &format!(
                "/admin/v1/tenants/acme/tag-groups/{}",
                group["id"].as_str().unwrap()
            ),
            Some(json!({"name": "a\u{200F}b"})),
        )
        .await;
    assert_eq!(status, 400, "a group rename with a bidi mark");
    t.shutdown().await;
}

#[tokio::test]
async fn json_routes_refuse_bodies_not_sent_as_json_with_415() {
    let t = spawn_app().await;
    let body = serde_json::to_string(&tenant_body()).unwrap();
    let put = |content_type: Option<&'static str>| {
        let (client, url, body) = (
            t.client.clone(),
            t.url("/admin/v1/tenants/acme"),
            body.clone(),
        );
        async move {
            let mut req = client.put(url).bearer_auth(ADMIN_TOKEN).body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, answer) = put(ct).await;
        assert_eq!(status, 415, "{ct:?}: {answer}");
        assert_eq!(answer["error"]["code"], "unsupported_media_type");
    }
    assert!(
        t.app
            .store
            .get_tenant(&TenantId::parse("acme").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing was written"
    );
    assert_eq!(put(Some("application/json; charset=utf-8")).await.0, 201);
    // The console sends its bodies as JSON.
    let js = t
        .client
        .get(t.url("/admin/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("headers['content-type'] = 'application/json'"));
    t.shutdown().await;
}

#[tokio::test]
async fn api_answers_carry_nosniff_and_no_store() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    for (method, path, auth) in [
        (Method::GET, "/admin/v1/tenants/acme", true),
        (Method::GET, "/admin/v1/tenants/acme/status", true),
        (Method::GET, "/admin/v1/tenants/acme", false),
        (Method::GET, "/admin/v1/nowhere", true),
        (Method::GET, "/healthz", false),
        (Method::GET, "/metrics", true),
        (Method::POST, "/mall/webhook/acme", false),
    ] {
        let mut req = t.client.request(method.clone(), t.url(path));
        if auth {
            req = req.bearer_auth(ADMIN_TOKEN);
        }
        let resp = req.send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{method} {path}");
        assert_eq!(h["cache-control"], "no-store", "{method} {path}");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn a_console_asset_asked_for_with_a_hash_not_its_own_is_not_cached_immutable() {
    let t = spawn_app().await;
    let page = t
        .client
        .get(t.url("/admin/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let own = page
        .split("app.js?v=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let cache = |v: String| {
        let (client, url) = (t.client.clone(), t.url(&format!("/admin/app.js?v={v}")));
        async move {
            let resp = client.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.headers()["cache-control"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert!(cache(own.clone()).await.contains("immutable"));
    for other in [
        "000000000000".to_string(),
        format!("{own}x"),
        "../../etc".to_string(),
    ] {
        assert_eq!(cache(other.clone()).await, "no-cache", "v={other}");
    }
    t.shutdown().await;
}
