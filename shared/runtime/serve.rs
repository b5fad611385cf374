//! `tagsync serve`: every handler in one process — an HTTP/1 listener (hyper, axum's router)
//! routing to [`api::dispatch`], a pool of workers draining the SQLite queue, and the
//! nightly timer. Dependencies come in as arguments (the listener, the app, a shutdown
//! future), so tests start a real server on port 0.
//!
//! Connections are bounded: at most [`ServeOptions::max_connections`] are served at once
//! (more wait in the kernel's listen backlog), and one that sends no complete request head
//! within [`ServeOptions::header_read_timeout`] — on opening or between keep-alive requests —
//! is closed, so idle or slow sockets cannot pile up.

use crate::api::{self, Surface};
use crate::app::App;
use crate::http::{ApiError, HttpRequest, HttpResponse, MAX_BODY};
use crate::jobs::heartbeat::Heartbeat;
use crate::jobs::{nightly, worker};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Concurrent jobs.
    pub workers: usize,
    pub nightly: Nightly,
    /// How long in-flight jobs may take to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A request head must be complete this long after the connection opened or its previous
    /// answer was sent; otherwise the connection is closed (this is also the keep-alive idle
    /// timeout).
    pub header_read_timeout: Duration,
    /// A request body must be complete this long after its head (else 408).
    pub body_read_timeout: Duration,
}

/// Default [`ServeOptions::max_connections`]: far above what a WeCom corp, a mall and a few
/// operators need at once, far below the process's file limit.
pub const MAX_CONNECTIONS: usize = 512;
/// Default [`ServeOptions::header_read_timeout`]: WeCom and malls send a whole request at once,
/// and a proxy in front re-opens a closed keep-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServeOptions::body_read_timeout`]: the largest body (4 MiB) over a slow link.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            nightly: Nightly::DailyAt {
                hour: 19,
                minute: 0,
            },
            shutdown_grace: Duration::from_secs(20),
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
        }
    }
}

/// When the nightly reconciliation is triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nightly {
    Off,
    /// Every day at this UTC time (default 19:00 UTC = 03:00 in China).
    DailyAt {
        hour: u32,
        minute: u32,
    },
    /// Every so often (demos and tests).
    Every(Duration),
}

impl std::str::FromStr for Nightly {
    type Err = String;
    /// `off`, `HH:MM` (UTC) or `every:SECONDS`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Nightly::Off);
        }
        if let Some(secs) = s.strip_prefix("every:") {
            let secs: u64 = secs
                .parse()
                .map_err(|_| format!("`{s}`: expected every:SECONDS"))?;
            if secs == 0 {
                return Err(format!("`{s}`: the interval must be at least 1 second"));
            }
            return Ok(Nightly::Every(Duration::from_secs(secs)));
        }
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected off, HH:MM or every:SECONDS"))?;
        let (hour, minute) = (
            h.parse::<u32>().map_err(|_| format!("`{s}`: bad hour"))?,
            m.parse::<u32>().map_err(|_| format!("`{s}`: bad minute"))?,
        );
        if hour > 23 || minute > 59 {
            return Err(format!("`{s}`: not a time of day"));
        }
        Ok(Nightly::DailyAt { hour, minute })
    }
}

/// Serves until `shutdown` resolves: then stops accepting, lets requests in progress
/// finish, and gives in-flight jobs `shutdown_grace` to finish. A job still running after
/// that is abandoned to its visibility timeout (it is redelivered, never lost).
pub async fn serve(
    app: App,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    app.wecom.limit_in_flight(opts.workers.max(1));
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..opts.workers.max(1) {
        workers.spawn(worker_loop(app.clone(), n, stop_rx.clone()));
    }
    let timer = tokio::spawn(nightly_loop(app.clone(), opts.nightly, stop_rx.clone()));

    let router = axum::Router::new().fallback(route).with_state(Routed {
        app: app.clone(),
        body_read_timeout: opts.body_read_timeout,
    });
    tracing::info!(addr = %listener.local_addr()?, workers = opts.workers, nightly = ?opts.nightly, max_connections = opts.max_connections, "tagsync serve ready");
    accept_loop(listener, router, &opts, shutdown).await;

    tracing::info!("shutting down: finishing in-flight jobs");
    let _ = stop_tx.send(true);
    timer.abort();
    let drained = tokio::time::timeout(opts.shutdown_grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?opts.shutdown_grace, "jobs still running after the grace period; they will be redelivered");
        workers.abort_all();
    }
    Ok(())
}

/// Accepts connections until `shutdown`, each holding one of `max_connections` permits while
/// it lives; then stops accepting and gives the open ones `shutdown_grace` to finish their
/// requests (idle ones are closed at once).
async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    let service = hyper_util::service::TowerToHyperService::new(router);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accepting: at the cap, new connections wait in the
        // backlog rather than being accepted and left unserved.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

#[derive(Clone)]
struct Routed {
    app: App,
    body_read_timeout: Duration,
}

/// A request id from the caller is kept only when it is short and plain, so it cannot forge
/// log fields or flood a log line; anything else gets a fresh one.
pub fn request_id(offered: Option<&str>) -> String {
    offered
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

async fn route(State(routed): State<Routed>, req: axum::extract::Request) -> Response {
    let Routed {
        app,
        body_read_timeout,
    } = routed;
    let request_id = request_id(
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    let (parts, body) = req.into_parts();
    let span = tracing::info_span!("request", request_id = %request_id, method = %parts.method, path = %parts.uri.path());
    async move {
        let body = tokio::time::timeout(body_read_timeout, axum::body::to_bytes(body, MAX_BODY));
        let response = match body.await {
            Err(_) => ApiError::Timeout(format!(
                "the request body did not arrive within {} s",
                body_read_timeout.as_secs()
            ))
            .into_response(),
            Ok(Err(_)) => ApiError::PayloadTooLarge(MAX_BODY).into_response(),
            Ok(Ok(body)) => {
                let req = HttpRequest {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    query: parts
                        .uri
                        .query()
                        .map(HttpRequest::parse_query)
                        .unwrap_or_default(),
                    headers: parts.headers,
                    body,
                    request_id: request_id.clone(),
                };
                api::dispatch(&app, Surface::All, req).await
            }
        };
        tracing::debug!(status = response.status, "answered");
        into_axum(response, &request_id)
    }
    .instrument(span)
    .await
}

fn into_axum(r: HttpResponse, request_id: &str) -> Response {
    let mut builder = Response::builder()
        .status(r.status)
        .header("x-request-id", request_id);
    if let Some(ct) = r.content_type {
        builder = builder.header("content-type", ct);
    }
    for (name, value) in r.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(r.body)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "response could not be built");
        let mut fallback = Response::new(Body::empty());
        *fallback.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

/// Jobs one worker takes per receive: fewer queue round trips under load, small enough that
/// one worker does not sit on work the others could do.
const RECEIVE_BATCH: usize = 4;

/// One worker: receive jobs, run and settle each; until told to stop. The job being run when
/// the stop comes is finished first; jobs received but not started are released at once.
async fn worker_loop(app: App, n: usize, mut stop: watch::Receiver<bool>) {
    let visibility = app.config.worker.visibility;
    loop {
        if *stop.borrow() {
            return;
        }
        let received = tokio::select! {
            r = app.queue.receive(RECEIVE_BATCH, visibility, Duration::from_secs(1)) => r,
            _ = stop.changed() => return,
        };
        match received {
            Ok(deliveries) => {
                // The batch stays invisible while this worker holds it: the job running and
                // the ones waiting their turn behind it.
                let heartbeat = Heartbeat::start(app.queue.clone(), &deliveries, visibility);
                for d in deliveries {
                    if *stop.borrow() {
                        heartbeat.release(&d).await;
                        if let Err(e) = app
                            .queue
                            .retry(&d, Duration::ZERO, "released at shutdown before it started")
                            .await
                        {
                            tracing::warn!(worker = n, message_id = %d.message_id, error = %e, "could not release job");
                        }
                        continue;
                    }
                    if let Err(e) = worker::process(&app, &d, &heartbeat).await {
                        // The job's visibility will lapse and it will be redelivered.
                        tracing::warn!(worker = n, message_id = %d.message_id, error = %e, "could not settle job");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(worker = n, error = %e, "queue receive failed; pausing");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

async fn nightly_loop(app: App, schedule: Nightly, mut stop: watch::Receiver<bool>) {
    loop {
        let wait = match schedule {
            Nightly::Off => return,
            Nightly::Every(d) => d,
            Nightly::DailyAt { hour, minute } => until_next(app.clock.now().millis(), hour, minute),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = nightly::run(&app).await {
            tracing::error!(error = %e, "nightly trigger failed");
        }
    }
}

/// Time from `now_ms` to the next `hour:minute` UTC.
fn until_next(now_ms: i64, hour: u32, minute: u32) -> Duration {
    const DAY: i64 = 86_400_000;
    let target = (hour as i64 * 3600 + minute as i64 * 60) * 1000;
    let today = now_ms.rem_euclid(DAY);
    let ms = if target > today {
        target - today
    } else {
        DAY - today + target
    };
    Duration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_only_when_short_and_plain() {
        assert_eq!(request_id(Some("req-1.a_B")), "req-1.a_B");
        let long = "a".repeat(64);
        assert_eq!(request_id(Some(&long)), long);
        for forged in [
            "",
            "a b",
            "x\" level=error msg=\"forged",
            "id\nnext",
            "ключ",
            &"a".repeat(65),
        ] {
            let id = request_id(Some(forged));
            assert_ne!(id, forged);
            assert_eq!(id.len(), 32, "a fresh uuid: {id}");
        }
        assert_eq!(request_id(None).len(), 32);
    }

    #[test]
    fn nightly_schedule_parses_and_finds_the_next_time() {
        assert_eq!("off".parse::<Nightly>(), Ok(Nightly::Off));
        assert_eq!(
            "03:30".parse::<Nightly>(),
            Ok(Nightly::DailyAt {
                hour: 3,
                minute: 30
            })
        );
        assert_eq!(
            "every:5".parse::<Nightly>(),
            Ok(Nightly::Every(Duration::from_secs(5)))
        );
        assert!("25:00".parse::<Nightly>().is_err());
        assert!("every:0".parse::<Nightly>().is_err());
        // 2026-11-21T18:00:00Z → 19:00 is one hour away; at 19:00 exactly, a day away.
        let six_pm = 1_763_748_000_000 - 1_763_748_000_000 % 86_400_000 + 18 * 3_600_000;
        assert_eq!(until_next(six_pm, 19, 0), Duration::from_secs(3600));
        assert_eq!(
            until_next(six_pm + 3_600_000, 19, 0),
            Duration::from_secs(86_400)
        );
    }
}
