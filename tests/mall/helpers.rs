//! `spawn_mall()`: a mall simulator, a client pointed at it, and a tiny webhook receiver that
//! checks every delivery the way tagsync must (signature, replay window, schema); `wait_for`
//! polls a condition with a deadline.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tagsync::domain::JobId;
use tagsync::mall::client::{IdempotencyKey, MallClient, MallEndpoint, MallError};
use tagsync::mall::webhook::{self, MallWebhook};
use tagsync::ports::{Clock, SystemClock};
use tagsync::sim::mall::{MallSim, MallSimConfig, WebhookRetry};

pub const WEBHOOK_SECRET: &str = "whsec_mall_test_0123456789";
pub const TENANT: &str = "acme";

/// One delivery the receiver accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub hook: MallWebhook,
    pub header_event_id: String,
}

#[derive(Default)]
struct ReceiverState {
    accepted: Vec<Received>,
    /// Answer this many deliveries with 503 before accepting again.
    fail_next: u32,
    rejected: Vec<u16>,
}

/// A webhook endpoint like tagsync's: verifies with `webhook::verify` (tagsync's clock =
/// the system clock), parses with `webhook::parse_event`, answers 202.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = Router::new()
            .route("/mall/webhook/{tenant}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/mall/webhook/{TENANT}",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            state,
            _server: server,
        }
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// The statuses of deliveries the receiver refused (401 bad signature, 400 bad schema).
    pub fn rejected(&self) -> Vec<u16> {
        self.state.lock().unwrap().rejected.clone()
    }

    pub fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().fail_next = n;
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut st = state.lock().unwrap();
    if st.fail_next > 0 {
        st.fail_next -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let now = SystemClock.now().secs();
    let verified = webhook::verify(
        WEBHOOK_SECRET.as_bytes(),
        header("x-mall-timestamp"),
        header("x-mall-signature"),
        &body,
        now,
    );
    if header("content-type") != Some("application/json") {
        st.rejected.push(415);
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let outcome = verified.and_then(|_| webhook::parse_event(&body));
    match outcome {
        Ok(hook) => {
            st.accepted.push(Received {
                header_event_id: header("x-mall-event-id").unwrap_or_default().to_owned(),
                hook,
            });
            StatusCode::ACCEPTED
        }
        Err(e) => {
            st.rejected.push(e.status());
            StatusCode::from_u16(e.status()).unwrap()
        }
    }
}

pub struct TestMall {
    pub sim: MallSim,
    pub client: MallClient,
    pub ep: MallEndpoint,
    pub hooks: Receiver,
}

/// Test defaults: no rate limit (tests that need one turn it on) and fast webhook retries.
pub fn test_config() -> MallSimConfig {
    MallSimConfig {
        rate_limit_per_sec: None,
        webhook_secret: WEBHOOK_SECRET.to_owned(),
        webhook_retry: WebhookRetry {
            max_attempts: 4,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        },
        ..MallSimConfig::default()
    }
}

pub async fn spawn_mall() -> TestMall {
    spawn_mall_with(test_config()).await
}

pub async fn spawn_mall_with(mut config: MallSimConfig) -> TestMall {
    let hooks = Receiver::start().await;
    config.webhook_url = Some(hooks.url.clone());
    let sim = MallSim::start(config).await.unwrap();
    let ep = sim.endpoint();
    TestMall {
        sim,
        client: MallClient::new(reqwest::Client::new()).with_timeout(Duration::from_secs(5)),
        ep,
        hooks,
    }
}

impl TestMall {
    /// Waits until every webhook has gone out (delivered, given up on or dropped).
    pub async fn settle(&self) {
        assert!(
            self.sim.webhooks_settled(Duration::from_secs(10)).await,
            "webhooks did not settle within 10 s"
        );
    }
}

/// A key as a job would derive it.
pub fn key(step: &str) -> IdempotencyKey {
    IdempotencyKey::for_step(&JobId::new_unchecked("job-1"), step)
}

/// Repeats `call` until it fails (at most 20 times): a rate limit of 1/s answers the second
/// of two back-to-back calls with 429, unless the machine stalled for a second in between.
pub async fn first_error<T: std::fmt::Debug, F: Future<Output = Result<T, MallError>>>(
    mut call: impl FnMut() -> F,
) -> MallError {
    for _ in 0..20 {
        if let Err(e) = call().await {
            return e;
        }
    }
    panic!("20 calls in a row succeeded")
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after 10 s.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
