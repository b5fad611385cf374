//! `tagsync`: the single-machine binary. `tagsync serve` runs every handler in one process on
//! the embedded SQLite store and queue; the other subcommands are the operator's CLI on a
//! data directory.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tagsync::app::{App, MAX_RECEIVES};
use tagsync::config::{Config, KeyOrigin, SECRET_KEY_ENV, serve_secret_key};
use tagsync::domain::{Job, JobKind, TenantId};
use tagsync::ports::{Queue, SystemClock};
use tagsync::queue::sqlite::SqliteQueue;
use tagsync::runtime::serve::{Nightly, ServeOptions};
use tagsync::store::sqlite::{DB_FILE, SqliteDb};

#[derive(Parser)]
#[command(
    name = "tagsync",
    version,
    about = "Keeps customer tags the same across WeCom, a mall and the hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every handler in one process: HTTP routes, job workers, the nightly timer.
    Serve {
        /// Address to listen on (loopback by default; put a TLS proxy in front for WeCom).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory: the SQLite store and queue (created if missing). Default
        /// `./tagsync-data`; with `--demo`, a fresh temporary directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Start the WeCom and mall simulators too, with a demo tenant wired to them and a
        /// small seeded world, and print commands to try (no network needed).
        #[arg(long)]
        demo: bool,
        /// Concurrent jobs (1 to 256).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: u16,
        /// Nightly reconciliation: `off`, `HH:MM` (UTC) or `every:SECONDS`.
        #[arg(long, default_value = "19:00")]
        nightly: Nightly,
        /// Seconds a received job stays invisible to other workers; a job not finished by
        /// then (e.g. the process died) is delivered again (1 to 43200, SQS's own bounds).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=43_200))]
        job_timeout: u64,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TAGSYNC_LOG_FORMAT", ignore_case = true)]
        log_format: LogFormat,
        /// The file holding the key that seals tenant secrets in the store (base64 of 32
        /// bytes), made on first start if missing; it must not be inside the data directory.
        /// Default `$XDG_CONFIG_HOME/tagsync/secret-key` or `~/.config/tagsync/secret-key`.
        /// `TAGSYNC_SECRET_KEY` may hold the key itself instead.
        #[arg(long, env = "TAGSYNC_SECRET_KEY_FILE")]
        secret_key_file: Option<PathBuf>,
    },
    /// Inspect and operate the queue of a data directory.
    Queue {
        #[arg(long, default_value = "./tagsync-data", global = true)]
        data: PathBuf,
        #[command(subcommand)]
        action: QueueAction,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum QueueAction {
    /// Pending, in-flight and dead counts.
    Status,
    /// Enqueue diagnostic probe jobs: each records an audit entry when processed. `--fail`
    /// makes them fail on every try, to exercise retries, dead letters and redrive; `--panic`
    /// makes them panic, to show that a panicking job ends only itself.
    Probe {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long)]
        fail: bool,
        #[arg(long)]
        panic: bool,
        /// Simulated work per job, in milliseconds.
        #[arg(long, default_value_t = 0)]
        work_ms: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List dead letters with their errors.
    DeadLetters,
    /// Send every dead letter back to the queue.
    Redrive,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tagsync: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The admin token: `TAGSYNC_ADMIN_TOKEN`, or one generated on first start and kept in the
/// data directory (readable by its owner only), so a first run needs no setup.
fn admin_token(data: &Path) -> Result<String, Box<dyn std::error::Error>> {
    if let Ok(t) = std::env::var("TAGSYNC_ADMIN_TOKEN") {
        return Ok(t);
    }
    let path = data.join("admin-token");
    let in_file = |e: std::io::Error| format!("admin token file {}: {e}", path.display());
    match std::fs::read_to_string(&path) {
        Ok(t) => return Ok(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(in_file(e).into()),
    }
    tagsync::store::sqlite::create_private_dir(data)
        .map_err(|e| format!("data directory {}: {e}", data.display()))?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(&path)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .map_err(in_file)?;
    }
    eprintln!(
        "tagsync: generated an admin token in {} (set TAGSYNC_ADMIN_TOKEN to choose your own)",
        path.display()
    );
    Ok(token)
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve {
            listen,
            data,
            demo,
            workers,
            nightly,
            job_timeout,
            log_format,
            secret_key_file,
        } => {
            tagsync::runtime::logging::init(log_format == LogFormat::Json);
            let data = match data {
                Some(d) => d,
                None if demo => std::env::temp_dir()
                    .join(format!("tagsync-demo-{}", uuid::Uuid::new_v4().simple())),
                None => PathBuf::from("./tagsync-data"),
            };
            // Everything that can be refused is checked before anything is written: the
            // arguments (by clap), the address, the key (whose file, if made here, lies outside
            // the data directory).
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let env_key = std::env::var(SECRET_KEY_ENV).ok().filter(|k| !k.is_empty());
            let (key, origin) = serve_secret_key(&data, secret_key_file.as_deref(), env_key)?;
            if let KeyOrigin::Generated(path) = &origin {
                eprintln!(
                    "tagsync: generated the secret key that seals tenant secrets in {} — back it \
                     up apart from the data directory: without it the stored secrets cannot be read",
                    path.display()
                );
            }
            // The simulators come before the app: tagsync's WeCom API base points at the WeCom one.
            let sims = if demo {
                Some(tagsync::runtime::demo::start_simulators().await?)
            } else {
                None
            };
            let token = admin_token(&data)?;
            let base_url = sims
                .as_ref()
                .map(|d| d.wecom_base())
                .or_else(|| std::env::var("TAGSYNC_WECOM_API_BASE").ok());
            let mut config = Config::new(token.clone(), base_url)?
                .with_env_budget()?
                .with_env_mall_rate()?;
            config.worker.visibility = std::time::Duration::from_secs(job_timeout);
            let (app, _db) = App::sqlite(&data, config, Arc::new(SystemClock), key).await?;
            let base = format!("http://{}", listener.local_addr()?);
            // The first line on stdout says where to reach us (with `--listen 127.0.0.1:0` the
            // port is chosen by the OS; scripts and tests read it from here).
            tell(&format!("tagsync listening on {base}"));
            let opts = ServeOptions {
                workers: usize::from(workers),
                nightly,
                ..ServeOptions::default()
            };
            let server = tokio::spawn(tagsync::runtime::serve::serve(
                app.clone(),
                listener,
                opts,
                shutdown_signal(),
            ));
            if let Some(sims) = &sims {
                let instructions = tagsync::runtime::demo::seed(&app, sims, &base, &token).await?;
                tell(&format!(
                    "data directory: {}\n{instructions}",
                    data.display()
                ));
            }
            server.await??;
            drop(sims);
            Ok(())
        }
        Command::Queue { data, action } => {
            // The CLI works on an existing store only: a mistyped --data must not leave an
            // empty store behind (and a queue command never needs the tenants' secrets).
            if !SqliteDb::exists_in(&data) {
                return Err(format!(
                    "data directory {}: no tagsync store there ({DB_FILE} is missing); give the \
                     --data of a `tagsync serve`",
                    data.display()
                )
                .into());
            }
            let db = SqliteDb::open(&data.join(DB_FILE))
                .map_err(|e| format!("data directory {}: {e}", data.display()))?;
            let clock: Arc<dyn tagsync::ports::Clock> = Arc::new(SystemClock);
            let queue = SqliteQueue::new(db, clock.clone(), MAX_RECEIVES);
            match action {
                QueueAction::Status => {
                    println!("{}", serde_json::to_string(&queue.counts().await?)?)
                }
                QueueAction::Probe {
                    tenant,
                    count,
                    fail,
                    panic,
                    work_ms,
                    note,
                } => {
                    let tenant = TenantId::parse(tenant)?;
                    let now = clock.now();
                    let jobs: Vec<Job> = (0..count)
                        .map(|_| {
                            Job::new(
                                tenant.clone(),
                                JobKind::Probe {
                                    note: note.clone(),
                                    fail,
                                    work_ms,
                                    panic,
                                },
                                now,
                            )
                        })
                        .collect();
                    for chunk in jobs.chunks(500) {
                        queue.send(chunk).await?;
                    }
                    println!("enqueued {count} probe job(s)");
                }
                QueueAction::DeadLetters => {
                    for d in queue.dead_letters(1000).await? {
                        println!(
                            "{}\t{}\t{}\t{}",
                            d.message_id,
                            d.job.as_ref().map_or("?".into(), |j| j.tenant.to_string()),
                            d.receive_count,
                            d.reason
                        );
                    }
                }
                QueueAction::Redrive => println!("redriven {}", queue.redrive(None).await?),
            }
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
/// Writes a line for whoever started `serve` (a terminal, a script, a test) to stdout. The server
/// keeps running if nobody reads it any more: a closed pipe or a full disk behind stdout is
/// logged, never a reason to stop syncing (`println!` would panic the main task and kill it).
fn tell(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "could not write to stdout; serving on");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
