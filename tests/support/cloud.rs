//! tagsync as it runs on AWS, on loopback: the DynamoDB store on DynamoDB Local, the SQS queue
//! on moto (both started by `infra/test.sh`), every HTTP route reached **through the Lambda
//! HTTP adapter** and the worker fed **the way the SQS event source mapping feeds it**.
//!
//! - [`Gateway`] plays API Gateway's HTTP API: each request that reaches its loopback port
//!   becomes a payload-v2 event (JSON, as API Gateway sends it), is parsed by `lambda_http`
//!   and handed to the function that owns the route in `template.yaml`
//!   (`runtime::lambda::http` with that function's [`Surface`]); the function's answer goes
//!   back as the HTTP response. Routes the template does not declare answer API Gateway's 404.
//! - [`EventSourceMapping`] plays the SQS event source mapping: pollers (Lambda's concurrency)
//!   receive batches of up to 10 messages from moto's queue, invoke the worker
//!   (`runtime::lambda::sqs`) with an `SqsEvent` of the shape Lambda sends, delete what the
//!   function did not report in `batchItemFailures` and leave those for the visibility
//!   timeout. An invocation that fails or outlives the function's timeout deletes nothing, and
//!   a response naming a message that was not in the batch fails the whole batch (as Lambda
//!   does). The queue's redrive policy (`maxReceiveCount` 5) moves what is received too often.
//!
//! Lives with the tests: [`super::world::World`] builds a cloud world with it when its
//! options say [`super::world::Backend::Cloud`].

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tagsync::api::Surface;
use tagsync::app::{App, MAX_RECEIVES};
use tagsync::config::Config;
use tagsync::ports::{Clock, Store};
use tagsync::queue::counted::TenantCounted;
use tagsync::queue::sqs::SqsRequests;
use tagsync::queue::sqs::{SqsQueue, create_queues};
use tagsync::store::dynamo::{Capacity, DynamoItems, DynamoStore, create_table};
use tagsync::store::sealing::{KeySource, SecretKey};
use tokio::sync::watch;

/// The sync worker's `Timeout` in `template.yaml`: an invocation still running then has failed.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// SQS's largest batch, the most an event source mapping hands one invocation.
pub const MAX_BATCH: usize = 10;
/// The pollers' long poll: short, so that they stop promptly.
const POLL_WAIT_SECS: i32 = 1;
/// The region every local stand-in is addressed in.
const REGION: &str = "us-east-1";

/// The AWS resources of one cloud world: its own table and its own queue pair.
#[derive(Clone)]
pub struct CloudResources {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub queue_arn: String,
    /// What the store's DynamoDB calls consumed (`ReturnConsumedCapacity`).
    pub capacity: Arc<Capacity>,
    /// The requests tagsync's own SQS adapter made, by action.
    pub sqs_requests: Arc<SqsRequests>,
    /// Invocations of the functions, and the event source mapping's own SQS requests.
    pub lambda: Arc<LambdaUsage>,
}

/// What the stand-ins saw of the functions: invocations and the time they ran, per function,
/// and the SQS requests the event source mapping makes itself (receives that returned
/// messages, deletes after an invocation). Counted for the cost table (BENCHMARKS.md).
#[derive(Debug, Default)]
pub struct LambdaUsage {
    pub http_invocations: AtomicU64,
    pub http_micros: AtomicU64,
    /// Of those, the admin API's (a test's or bench's own look at runs and settings, apart
    /// from the traffic it measures).
    pub admin_invocations: AtomicU64,
    pub admin_micros: AtomicU64,
    pub worker_invocations: AtomicU64,
    pub worker_micros: AtomicU64,
    /// ReceiveMessage calls that returned at least one message (empty polls are the
    /// mapping's idle cost, which does not depend on the load).
    pub esm_receives: AtomicU64,
    pub esm_empty_receives: AtomicU64,
    pub esm_deletes: AtomicU64,
}

impl LambdaUsage {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// SDK configuration for a local stand-in whose endpoint `infra/test.sh` exported. A missing
/// endpoint fails the test: the cloud path must never pass without having run.
pub async fn sdk_config(endpoint_var: &str) -> aws_config::SdkConfig {
    let endpoint = std::env::var(endpoint_var).unwrap_or_else(|_| {
        panic!(
            "{endpoint_var} is not set, so the cloud-path tests cannot reach DynamoDB Local and \
             moto. Run infra/test.sh, or by hand: `source infra/local-aws.sh && \
             local_aws_install && local_aws_start`, then `cargo test --test cloud`."
        )
    });
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "tagsync-cloud-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// The cloud app as `App::aws_from_env` builds it (DynamoDB store with sealed secrets, SQS
/// queue counted per tenant), on a fresh table and queue pair of its own. The queue's
/// visibility timeout is `visibility` (the template's is 6 × the worker's timeout; tests use
/// a short one so that a lost invocation's messages come back soon).
pub async fn cloud_app(
    config: Config,
    clock: Arc<dyn Clock>,
    key: SecretKey,
    visibility: Duration,
) -> (App, CloudResources) {
    let name = format!("tagsync-cloud-{}", uuid::Uuid::new_v4().simple());
    let dynamodb =
        aws_sdk_dynamodb::Client::new(&sdk_config("TAGSYNC_TEST_DYNAMODB_ENDPOINT").await);
    create_table(&dynamodb, &name)
        .await
        .unwrap_or_else(|e| panic!("create DynamoDB table {name}: {e}"));
    let sqs = aws_sdk_sqs::Client::new(&sdk_config("TAGSYNC_TEST_SQS_ENDPOINT").await);
    let (queue_url, dlq_url) = create_queues(&sqs, &name)
        .await
        .unwrap_or_else(|e| panic!("create SQS queues {name}: {e}"));
    let secs = visibility.as_secs().max(1).to_string();
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            secs,
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("set the visibility timeout of {queue_url}: {e}"));
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
                .cloned()
        })
        .unwrap_or_else(|| panic!("{queue_url} has no ARN"));

    let items = DynamoItems::new(dynamodb.clone(), name.clone());
    let capacity = items.capacity();
    let store = DynamoStore::new(items)
        .unlock(&KeySource::Local(key))
        .await
        .unwrap_or_else(|e| panic!("unlock the store in table {name}: {e}"));
    let store: Arc<dyn Store> = Arc::new(store);
    let sqs_queue = SqsQueue::new(
        sqs.clone(),
        queue_url.clone(),
        dlq_url.clone(),
        MAX_RECEIVES,
    );
    let sqs_requests = sqs_queue.requests();
    let queue = TenantCounted::new(sqs_queue, store.clone(), clock.clone());
    let app = App::new(store, Arc::new(queue), clock, config);
    let resources = CloudResources {
        dynamodb,
        table: name,
        sqs,
        queue_url,
        dlq_url,
        queue_arn,
        capacity,
        sqs_requests,
        lambda: Arc::default(),
    };
    (app, resources)
}

/// Serves `listener` as API Gateway in front of the HTTPS functions, and runs the event
/// source mapping with `concurrency` pollers, until `shutdown`; then lets the pollers finish
/// the batch in hand.
pub async fn serve_lambdas(
    app: App,
    resources: CloudResources,
    listener: tokio::net::TcpListener,
    concurrency: usize,
    worker_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let esm = EventSourceMapping {
        app: app.clone(),
        resources,
        batch_size: MAX_BATCH,
        worker_timeout,
    };
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        pollers.spawn(esm.clone().poll(stop_rx.clone()));
    }
    let router = axum::Router::new().fallback(gateway).with_state(Gateway {
        app,
        usage: esm.resources.lambda.clone(),
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    while pollers.join_next().await.is_some() {}
    served
}

// -----------------------------------------------------------------------------------------
// API Gateway (HTTP API, payload format 2.0).

#[derive(Clone)]
pub struct Gateway {
    app: App,
    usage: Arc<LambdaUsage>,
}

/// The function that owns a path, by `template.yaml`'s HttpApi events; `None`: no route.
pub fn surface_of(method: &http::Method, path: &str) -> Option<(Surface, String)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.as_str();
    match segments.as_slice() {
        ["wecom", "callback", _] if m == "GET" || m == "POST" => Some((
            Surface::WecomCallback,
            format!("{m} /wecom/callback/{{tenant}}"),
        )),
        ["mall", "webhook", _] if m == "POST" => Some((
            Surface::MallWebhook,
            "POST /mall/webhook/{tenant}".to_owned(),
        )),
        ["messages", _] if m == "POST" => {
            Some((Surface::MallWebhook, "POST /messages/{tenant}".to_owned()))
        }
        ["admin"] if m == "GET" => Some((Surface::Admin, "GET /admin".to_owned())),
        ["admin", _, ..] => Some((Surface::Admin, "ANY /admin/{proxy+}".to_owned())),
        ["healthz"] if m == "GET" => Some((Surface::Admin, "GET /healthz".to_owned())),
        _ => None,
    }
}

/// The payload-v2 event API Gateway sends for a request: headers lower-cased (repeated ones
/// joined with commas, cookies apart), the query string raw and parsed, a text body as is and
/// anything else base64-encoded.
pub fn apigw_v2_event(
    parts: &http::request::Parts,
    route_key: &str,
    body: &[u8],
    request_id: &str,
) -> Value {
    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split("; ").map(str::to_owned));
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    // API Gateway decodes the parameters once; repeated ones are joined with commas.
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in tagsync::http::HttpRequest::parse_query(raw_query) {
        query
            .entry(k)
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => {
            use base64::Engine as _;
            (base64::engine::general_purpose::STANDARD.encode(body), true)
        }
    };
    let now = chrono::Utc::now();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "tagsyncapi",
            "domainName": "tagsyncapi.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "tagsyncapi",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    event
}

async fn gateway(
    axum::extract::State(gw): axum::extract::State<Gateway>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let Some((surface, route_key)) = surface_of(&parts.method, parts.uri.path()) else {
        return (
            http::StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            "{\"message\":\"Not Found\"}",
        )
            .into_response();
    };
    // API Gateway's HTTP API takes payloads up to 10 MB.
    let body = match axum::body::to_bytes(body, 10 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return (
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "{\"message\":\"Request Entity Too Large\"}",
            )
                .into_response();
        }
    };
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let event = apigw_v2_event(&parts, &route_key, &body, &request_id);
    let request = lambda_http::request::from_str(&event.to_string())
        .unwrap_or_else(|e| panic!("lambda_http refuses the API Gateway v2 event {event}: {e}"));
    let started = Instant::now();
    let invoked = tagsync::runtime::lambda::http(&gw.app, surface, request).await;
    let micros = started.elapsed().as_micros() as u64;
    LambdaUsage::add(&gw.usage.http_invocations, 1);
    LambdaUsage::add(&gw.usage.http_micros, micros);
    if surface == Surface::Admin {
        LambdaUsage::add(&gw.usage.admin_invocations, 1);
        LambdaUsage::add(&gw.usage.admin_micros, micros);
    }
    let response = match invoked {
        Ok(r) => r,
        // A function error is API Gateway's 500.
        Err(e) => {
            tracing::error!(error = %e, "the HTTPS function failed");
            return (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "{\"message\":\"Internal Server Error\"}",
            )
                .into_response();
        }
    };
    let (parts, body) = response.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    let mut out = axum::response::Response::new(axum::body::Body::from(bytes));
    *out.status_mut() = parts.status;
    *out.headers_mut() = parts.headers;
    out
}

// -----------------------------------------------------------------------------------------
// The SQS event source mapping.

#[derive(Clone)]
pub struct EventSourceMapping {
    pub app: App,
    pub resources: CloudResources,
    pub batch_size: usize,
    /// An invocation still running after this has failed (the template's `Timeout`).
    pub worker_timeout: Duration,
}

/// What one invocation of the worker came to, as the mapping saw it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub received: usize,
    /// Deleted from the queue after the invocation.
    pub deleted: usize,
    /// Left for their visibility timeout (reported failures, or the whole batch).
    pub left: usize,
}

impl EventSourceMapping {
    /// One poller: receive, invoke, delete, until `stop`.
    pub async fn poll(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let received = tokio::select! {
                r = self.receive() => r,
                _ = stop.changed() => return,
            };
            match received {
                Ok(messages) if messages.is_empty() => {
                    LambdaUsage::add(&self.resources.lambda.esm_empty_receives, 1);
                }
                Ok(messages) => {
                    LambdaUsage::add(&self.resources.lambda.esm_receives, 1);
                    self.invoke(messages).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event source mapping: receive failed; pausing");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// One long-polled receive of up to a batch, with the system attributes Lambda passes on.
    pub async fn receive(&self) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
        self.resources
            .sqs
            .receive_message()
            .queue_url(&self.resources.queue_url)
            .max_number_of_messages(self.batch_size.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(POLL_WAIT_SECS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map(|o| o.messages().to_vec())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }

    /// Invokes the worker with `messages` as Lambda's `SqsEvent`, then deletes what succeeded.
    pub async fn invoke(&self, messages: Vec<aws_sdk_sqs::types::Message>) -> BatchOutcome {
        let event = sqs_event(&messages, &self.resources.queue_arn);
        let event: SqsEvent = serde_json::from_value(event.clone())
            .unwrap_or_else(|e| panic!("the SQS event does not parse as SqsEvent: {e}: {event}"));
        let mut context = Context::default();
        context.request_id = uuid::Uuid::new_v4().to_string();
        context.deadline =
            (chrono::Utc::now().timestamp_millis() as u64) + self.worker_timeout.as_millis() as u64;
        context.invoked_function_arn =
            "arn:aws:lambda:us-east-1:123456789012:function:sync-worker".to_owned();
        let started = Instant::now();
        let invocation = tokio::time::timeout(
            self.worker_timeout,
            tagsync::runtime::lambda::sqs(&self.app, LambdaEvent::new(event, context)),
        )
        .await;
        let usage = &self.resources.lambda;
        LambdaUsage::add(&usage.worker_invocations, 1);
        LambdaUsage::add(&usage.worker_micros, started.elapsed().as_micros() as u64);
        let mut outcome = BatchOutcome {
            received: messages.len(),
            ..BatchOutcome::default()
        };
        // The response as the runtime serialises it for Lambda.
        let failed: Option<HashSet<String>> = match invocation {
            Ok(Ok(response)) => {
                let wire = serde_json::to_value(&response).expect("SqsBatchResponse serialises");
                let ids: Option<HashSet<String>> = wire["batchItemFailures"].as_array().map(|fs| {
                    fs.iter()
                        .map(|f| f["itemIdentifier"].as_str().unwrap_or("").to_owned())
                        .collect()
                });
                let known: HashSet<&str> = messages.iter().filter_map(|m| m.message_id()).collect();
                // A failure that names no message of the batch fails the whole batch.
                ids.filter(|ids| ids.iter().all(|id| known.contains(id.as_str())))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the worker invocation failed: the whole batch stays");
                None
            }
            Err(_) => {
                tracing::warn!("the worker invocation timed out: the whole batch stays");
                None
            }
        };
        let Some(failed) = failed else {
            outcome.left = messages.len();
            return outcome;
        };
        let done: Vec<&aws_sdk_sqs::types::Message> = messages
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or("")))
            .collect();
        outcome.left = messages.len() - done.len();
        for chunk in done.chunks(MAX_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or(""))
                        .build()
                        .expect("a delete entry has its id and receipt")
                })
                .collect();
            LambdaUsage::add(&self.resources.lambda.esm_deletes, 1);
            match self
                .resources
                .sqs
                .delete_message_batch()
                .queue_url(&self.resources.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    outcome.deleted += chunk.len() - out.failed().len();
                    for f in out.failed() {
                        // The worker may have deleted it already (parked or rescheduled).
                        tracing::debug!(
                            id = f.id(),
                            code = f.code(),
                            "delete after invocation failed"
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    error = %aws_sdk_sqs::error::DisplayErrorContext(e),
                    "delete after invocation failed; the messages come back"
                ),
            }
        }
        outcome
    }
}

/// The `SqsEvent` Lambda sends for received messages (`Records`, camel-case fields, system
/// attributes as strings).
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: BTreeMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: BTreeMap<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.string_value(),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}
