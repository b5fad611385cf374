//! Lambda adapters: API Gateway HTTP API (payload v2) requests, SQS batches with partial
//! batch failures, and the EventBridge schedule — each converted to the transport-neutral
//! handlers. The binaries in `functions/` only build the [`App`] and call these.

use crate::api::{self, Surface};
use crate::app::App;
use crate::http::{ApiError, HttpRequest, HttpResponse, MAX_BODY};
use crate::jobs::{nightly, worker};
use crate::ports::Delivery;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_http::{RequestExt, lambda_runtime::LambdaEvent};
use tracing::Instrument;

/// An HTTPS function: one API Gateway request → one response.
pub async fn http(
    app: &App,
    surface: Surface,
    req: lambda_http::Request,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // `raw_http_path` is the path as the client sent it, without an API Gateway stage prefix.
    let path = Some(req.raw_http_path())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| req.uri().path().to_string());
    let query = req
        .uri()
        .query()
        .map(HttpRequest::parse_query)
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let body = bytes::Bytes::copy_from_slice(body.as_ref());
    let span = tracing::info_span!("request", request_id = %request_id, method = %parts.method, path = %path);
    let response = async {
        if body.len() > MAX_BODY {
            return ApiError::PayloadTooLarge(MAX_BODY).into_response();
        }
        let req = HttpRequest {
            method: parts.method,
            path,
            query,
            headers: parts.headers,
            body,
            request_id,
        };
        api::dispatch(app, surface, req).await
    }
    .instrument(span)
    .await;
    flush_metrics(app);
    Ok(into_lambda(response)?)
}

fn into_lambda(
    r: HttpResponse,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::http::Error> {
    let mut builder = lambda_http::Response::builder().status(r.status);
    if let Some(ct) = r.content_type {
        builder = builder.header("content-type", ct);
    }
    for (name, value) in r.headers {
        builder = builder.header(name, value);
    }
    let body = if r.body.is_empty() {
        lambda_http::Body::Empty
    } else if r
        .content_type
        .is_some_and(|c| c.starts_with("text/") || c.starts_with("application/json"))
    {
        lambda_http::Body::Text(String::from_utf8_lossy(&r.body).into_owned())
    } else {
        lambda_http::Body::Binary(r.body.to_vec())
    };
    builder.body(body)
}

fn delivery_of(m: &SqsMessage) -> Delivery {
    let body = m.body.clone().unwrap_or_default();
    Delivery {
        job: serde_json::from_str(&body).map_err(|_| body),
        message_id: m.message_id.clone().unwrap_or_default(),
        receipt: m.receipt_handle.clone().unwrap_or_default(),
        receive_count: m
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
    }
}

/// The SQS worker: runs every message of the batch and reports only the ones to retry in
/// `batchItemFailures` (the event source mapping has `ReportBatchItemFailures`). Lambda
/// deletes the rest: done ones, and parked ones (already copied to the DLQ with their reason).
/// Each job runs isolated (`worker::outcome_of`): one that panics is reported for retry like
/// any failure, and the rest of the batch runs on.
///
/// The batch's jobs run side by side, not one after another: a batch of reconciliation pages
/// (each up to tens of seconds: 500 mall members, the mall's 50 requests a second) run in turn
/// outlasted the function's timeout, Lambda then failed the whole batch — its done jobs with
/// it — and the same batch overran again on every receive until the redrive policy parked it.
/// Side by side, a batch takes as long as its longest job.
pub async fn sqs(
    app: &App,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut running = tokio::task::JoinSet::new();
    let mut message_of = std::collections::HashMap::new();
    for (i, m) in event.payload.records.iter().enumerate() {
        let d = delivery_of(m);
        let message_id = (i, d.message_id.clone());
        let span = worker::job_span(&d);
        let app = app.clone();
        let task = running.spawn(
            async move {
                app.queue.started(&d, app.config.worker.visibility).await;
                let settlement = worker::settle(&app, &d, worker::outcome_of(&app, &d).await);
                worker::count(&app, &d, &settlement);
                match settlement {
                    // Lambda deletes the message; the queue hears that it is done (if it
                    // cannot record that, the message comes back as a duplicate of a done job).
                    worker::Settlement::Ack => match app.queue.finished(&d).await {
                        Ok(()) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "a done job could not be recorded; it comes back");
                            true
                        }
                    },
                    worker::Settlement::Retry { delay, error } => {
                        tracing::warn!(?delay, error, "job will be retried");
                        // Best effort: if the visibility change fails, the message still comes
                        // back after the queue's visibility timeout.
                        if let Err(e) = app.queue.retry(&d, delay, &error).await {
                            tracing::warn!(error = %e, "could not set the retry delay");
                        }
                        true
                    }
                    // A fresh copy waits on the queue (the receive count starts again); Lambda
                    // deletes this one. If the copy could not be sent, this one comes back.
                    worker::Settlement::Reschedule { delay, reason } => {
                        tracing::info!(?delay, reason, "job rescheduled to the end of a rate window");
                        match app.queue.reschedule(&d, delay, &reason).await {
                            Ok(()) => false,
                            Err(e) => {
                                tracing::warn!(error = %e, "could not reschedule; the job comes back");
                                true
                            }
                        }
                    }
                    worker::Settlement::Park { reason, side } => {
                        match worker::park(&app, &d, &reason, side).await {
                            Ok(()) => false,
                            Err(e) => {
                                tracing::error!(error = %e, reason, "could not park the job; it will be retried");
                                true
                            }
                        }
                    }
                }
            }
            .instrument(span),
        );
        message_of.insert(task.id(), message_id);
    }
    let mut failed_messages = Vec::new();
    while let Some(joined) = running.join_next_with_id().await {
        let (id, failed) = match joined {
            Ok((id, failed)) => (id, failed),
            // Outside the job's own isolation (settling, recording): retried like a failure.
            Err(e) => {
                tracing::error!(error = %e, "a job's task failed; it will be retried");
                (e.id(), true)
            }
        };
        if failed && let Some(message) = message_of.remove(&id) {
            failed_messages.push(message);
        }
    }
    // In the batch's order.
    failed_messages.sort();
    let failures = failed_messages
        .into_iter()
        .map(|(_, message_id)| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = message_id;
            f
        })
        .collect();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    flush_metrics(app);
    Ok(response)
}

/// The nightly EventBridge rule (`Scheduled Event` envelope).
pub async fn schedule(
    app: &App,
    event: LambdaEvent<EventBridgeEvent<serde_json::Value>>,
) -> Result<nightly::NightlyReport, lambda_runtime::Error> {
    tracing::info!(source = ?event.payload.source, detail_type = ?event.payload.detail_type, "schedule fired");
    let report = nightly::run(app).await;
    flush_metrics(app);
    Ok(report?)
}

/// Writes this invocation's counts as CloudWatch embedded-metric lines: Lambda sends stdout to
/// CloudWatch Logs, which extracts them as metrics (namespace `tagsync`).
/// `println!` rather than a locked `stdout()`: the same bytes on Lambda, and the test harness
/// captures them (the cloud-path suite invokes the handlers thousands of times).
fn flush_metrics(app: &App) {
    for line in app.metrics.take_emf(app.clock.now().millis()) {
        println!("{line}");
    }
}
