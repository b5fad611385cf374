//! An inbound event is answered with success only once its job is durably queued: when the
//! queue cannot take it, the platform gets a 5xx (so it retries) and the retry is not
//! mistaken for a duplicate.

use crate::helpers::*;
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tagsync::api::{Surface, dispatch};
use tagsync::app::App;
use tagsync::domain::Job;
use tagsync::http::HttpRequest;
use tagsync::ports::{DeadLetter, Delivery, Queue, QueueCounts, QueueError};

/// The real SQLite queue with a switch that makes `send` fail as an unreachable queue would.
struct Switchable {
    inner: Arc<dyn Queue>,
    down: AtomicBool,
}

#[async_trait]
impl Queue for Switchable {
    async fn send(&self, jobs: &[Job]) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Unavailable {
                op: "send",
                message: "queue unreachable (test)".into(),
            });
        }
        self.inner.send(jobs).await
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(max, visibility, wait).await
    }
    async fn extend(&self, d: &Delivery, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(d, visibility).await
    }
    async fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.inner.ack(d).await
    }
    async fn retry(&self, d: &Delivery, delay: Duration, error: &str) -> Result<(), QueueError> {
        self.inner.retry(d, delay, error).await
    }
    async fn reschedule(
        &self,
        d: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.inner.reschedule(d, delay, reason).await
    }
    async fn park(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.inner.park(d, reason).await
    }
    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.inner.counts().await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(&self, ids: Option<&[String]>) -> Result<usize, QueueError> {
        self.inner.redrive(ids).await
    }
    fn max_receives(&self) -> u32 {
        self.inner.max_receives()
    }
}

fn signed_webhook(body: &[u8]) -> HttpRequest {
    let ts = chrono::Utc::now().timestamp();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-mall-timestamp", ts.to_string().parse().unwrap());
    headers.insert(
        "x-mall-signature",
        tagsync::mall::webhook::sign(b"webhook-secret-value-3", ts, body)
            .parse()
            .unwrap(),
    );
    HttpRequest {
        method: http::Method::POST,
        path: "/mall/webhook/acme".into(),
        query: vec![],
        headers,
        body: bytes::Bytes::copy_from_slice(body),
        request_id: "test".into(),
    }
}

#[tokio::test]
async fn an_event_the_queue_cannot_take_gets_a_5xx_and_its_retry_is_queued_once() {
    let dir = tempfile::tempdir().unwrap();
    let base = sqlite_app(dir.path()).await;
    let queue = Arc::new(Switchable {
        inner: base.queue.clone(),
        down: AtomicBool::new(true),
    });
    let app = App::new(
        base.store.clone(),
        queue.clone(),
        base.clock.clone(),
        test_config(),
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    let register = HttpRequest {
        method: http::Method::PUT,
        path: "/admin/v1/tenants/acme".into(),
        query: vec![],
        headers,
        body: serde_json::to_vec(&tenant_body()).unwrap().into(),
        request_id: "test".into(),
    };
    assert_eq!(dispatch(&app, Surface::All, register).await.status, 201);

    let body = br#"{"event_id":"evt_durable_1","type":"tag_group.created","occurred_at":"2026-11-21T08:15:30.123Z","origin_request_id":null,"data":{"group":{"id":"g1","name":"VIP","order":1}}}"#;
    let first = dispatch(&app, Surface::All, signed_webhook(body)).await;
    assert_eq!(first.status, 503, "not queued, so not acknowledged");
    assert_eq!(queue.counts().await.unwrap().pending, 0);

    queue.down.store(false, Ordering::SeqCst);
    let retried = dispatch(&app, Surface::All, signed_webhook(body)).await;
    assert_eq!(
        retried.status, 202,
        "the mall's retry goes through: the failed attempt left no dedupe record"
    );
    let again = dispatch(&app, Surface::All, signed_webhook(body)).await;
    assert_eq!(again.status, 202);
    assert_eq!(
        queue.counts().await.unwrap().pending,
        1,
        "queued exactly once"
    );
}
