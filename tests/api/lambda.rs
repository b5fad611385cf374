//! The Lambda entry points, each called with a fixture event of the shape AWS sends.

use crate::helpers::*;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::sync::Arc;
use tagsync::api::Surface;
use tagsync::app::App;
use tagsync::domain::{Job, JobKind, TenantId, Timestamp};
use tagsync::ports::Queue;
use tagsync::runtime::lambda;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/lambda/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The fixtures' admin token (what the deployment would configure).
const FIXTURE_TOKEN: &str = "fixture-admin-token-0123456789";

async fn app_with_fixture_token(dir: &std::path::Path) -> App {
    let mut config = test_config();
    config.admin_token = tagsync::domain::Secret::new(FIXTURE_TOKEN);
    let key = tagsync::store::sealing::SecretKey::generate();
    App::sqlite(dir, config, Arc::new(tagsync::ports::SystemClock), key)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn admin_function_answers_an_api_gateway_v2_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_fixture_token(dir.path()).await;
    let req = lambda_http::request::from_str(&fixture("apigw-v2-put-tenant.json")).unwrap();
    let resp = lambda::http(&app, Surface::Admin, req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["agent_id"], "1000002");
    let stored = app
        .store
        .get_tenant(&TenantId::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.corp_id.as_str(), "wwacme0001");

    let health = lambda_http::request::from_str(&fixture("apigw-v2-healthz.json")).unwrap();
    let resp = lambda::http(&app, Surface::Admin, health).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        serde_json::from_slice::<Value>(resp.body().as_ref()).unwrap(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn admin_function_serves_the_console_page_and_its_assets() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_fixture_token(dir.path()).await;
    let req = lambda_http::request::from_str(&fixture("apigw-v2-console.json")).unwrap();
    let resp = lambda::http(&app, Surface::Admin, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
    assert!(page.contains("tagsync console"), "{page}");
    // The page links its script with a version; the Lambda serves that too, as text.
    let js = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let mut asset: Value = serde_json::from_str(&fixture("apigw-v2-console.json")).unwrap();
    let (path, query) = js.split_once('?').unwrap();
    asset["rawPath"] = json!(format!("/admin/{path}"));
    asset["rawQueryString"] = json!(query);
    asset["requestContext"]["http"]["path"] = json!(format!("/admin/{path}"));
    let req = lambda_http::request::from_str(&asset.to_string()).unwrap();
    let resp = lambda::http(&app, Surface::Admin, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(matches!(resp.body(), lambda_http::Body::Text(_)));
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
}

#[tokio::test]
async fn wecom_callback_function_answers_the_url_verification_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_fixture_token(dir.path()).await;
    let mut tenant = tagsync_tenant("sample");
    // WeCom's official sample app (wecom-api.md §4.5 Set A).
    tenant.corp_id = tagsync::domain::CorpId::parse("wx5823bf96d3bd56c7").unwrap();
    tenant.secrets.callback_token = tagsync::domain::Secret::new("QDG6eK");
    tenant.secrets.encoding_aes_key =
        tagsync::domain::Secret::new("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C");
    app.store.put_tenant(&mut tenant).await.unwrap();
    let req = lambda_http::request::from_str(&fixture("apigw-v2-wecom-verify.json")).unwrap();
    let resp = lambda::http(&app, Surface::WecomCallback, req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.body().as_ref(),
        b"1616140317555161061",
        "the echostr is percent-decoded once, then decrypted"
    );
}

#[tokio::test]
async fn mall_webhook_function_accepts_a_signed_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_fixture_token(dir.path()).await;
    let mut tenant = tagsync_tenant("acme");
    app.store.put_tenant(&mut tenant).await.unwrap();
    // The signature covers the current time (300 s replay window): sign the fixture's body now.
    let mut event: Value = serde_json::from_str(&fixture("apigw-v2-mall-webhook.json")).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let body = event["body"].as_str().unwrap().to_string();
    event["headers"]["x-mall-timestamp"] = json!(ts.to_string());
    event["headers"]["x-mall-signature"] =
        json!(tagsync::mall::webhook::sign(b"w", ts, body.as_bytes()));
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    let resp = lambda::http(&app, Surface::MallWebhook, req).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        app.queue.counts().await.unwrap().pending,
        1,
        "one job queued"
    );
}

#[tokio::test]
async fn each_https_function_serves_only_its_own_routes() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_fixture_token(dir.path()).await;
    let req = lambda_http::request::from_str(&fixture("apigw-v2-put-tenant.json")).unwrap();
    let resp = lambda::http(&app, Surface::MallWebhook, req).await.unwrap();
    assert_eq!(
        resp.status(),
        404,
        "the mall webhook function does not serve the admin API"
    );
}

#[tokio::test]
async fn reconcile_function_handles_the_scheduled_event() {
    let dir = tempfile::tempdir().unwrap();
    let t_app = app_with_fixture_token(dir.path()).await;
    for (name, enabled) in [("on1", true), ("off1", false), ("on2", true)] {
        let mut tenant = tagsync_tenant(name);
        tenant.settings.tags_enabled = enabled;
        t_app.store.put_tenant(&mut tenant).await.unwrap();
    }
    let payload = serde_json::from_str(&fixture("eventbridge-schedule.json")).unwrap();
    let report = lambda::schedule(&t_app, LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap();
    let due: Vec<_> = report.due.iter().map(|t| t.to_string()).collect();
    let skipped: Vec<_> = report.skipped.iter().map(|t| t.to_string()).collect();
    assert_eq!(due, ["on1", "on2"]);
    assert_eq!(skipped, ["off1"]);
}

/// The worker with the SQS queue it runs on in AWS (moto in server mode here): a batch of
/// three real messages — one that succeeds, one that fails retryably, one that is not a job —
/// reports exactly the failing one; the undecodable one goes to the DLQ with its reason.
#[tokio::test]
async fn sync_worker_reports_exactly_the_failing_message_of_an_sqs_batch() {
    let endpoint = std::env::var("TAGSYNC_TEST_SQS_ENDPOINT")
        .expect("TAGSYNC_TEST_SQS_ENDPOINT is not set: run infra/test.sh (it starts moto), or `source infra/local-aws.sh && local_aws_start`");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let name = format!("lambda-batch-{}", uuid::Uuid::new_v4().simple());
    let (queue_url, dlq_url) = tagsync::queue::sqs::create_queues(&client, &name)
        .await
        .unwrap();
    let queue = Arc::new(tagsync::queue::sqs::SqsQueue::new(
        client.clone(),
        queue_url.clone(),
        dlq_url,
        5,
    ));

    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_app(dir.path()).await;
    let app = App::new(
        sqlite.store.clone(),
        queue.clone(),
        sqlite.clock.clone(),
        test_config(),
    );
    let mut tenant = tagsync_tenant("acme");
    app.store.put_tenant(&mut tenant).await.unwrap();

    let ok = Job::new(
        tenant.id.clone(),
        JobKind::Probe {
            note: "ok".into(),
            fail: false,
            work_ms: 0,
            panic: false,
        },
        Timestamp::from_millis(0),
    );
    let failing = Job::new(
        tenant.id.clone(),
        JobKind::Probe {
            note: "fail".into(),
            fail: true,
            work_ms: 0,
            panic: false,
        },
        Timestamp::from_millis(0),
    );
    let bodies = [
        serde_json::to_string(&ok).unwrap(),
        serde_json::to_string(&failing).unwrap(),
        "{\"kind\":\"from_the_future\"}".to_string(),
    ];
    for body in &bodies {
        client
            .send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // Receive them for real so the receipts are valid, then present them as Lambda would.
    let mut received = Vec::new();
    while received.len() < 3 {
        let out = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .visibility_timeout(30)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        received.extend(out.messages.unwrap_or_default());
    }
    let mut event: Value = serde_json::from_str(&fixture("sqs-batch.json")).unwrap();
    let mut ids = std::collections::HashMap::new();
    for record in event["Records"].as_array_mut().unwrap() {
        let placeholder = record["body"].as_str().unwrap().to_string();
        let wanted = match placeholder.as_str() {
            "__BODY_OK__" => &bodies[0],
            "__BODY_FAIL__" => &bodies[1],
            _ => &bodies[2],
        };
        let m = received
            .iter()
            .find(|m| m.body() == Some(wanted.as_str()))
            .unwrap();
        record["body"] = json!(wanted);
        record["messageId"] = json!(m.message_id().unwrap());
        record["receiptHandle"] = json!(m.receipt_handle().unwrap());
        ids.insert(placeholder, m.message_id().unwrap().to_string());
    }
    let payload = serde_json::from_value(event).unwrap();
    let response = lambda::sqs(&app, LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [ids["__BODY_FAIL__"].clone()]);

    let audit = app
        .store
        .list_audit(&tenant.id, None, 50)
        .await
        .unwrap()
        .items;
    assert!(
        audit.iter().any(|e| e.entity == format!("job:{}", ok.id)),
        "the good job ran"
    );
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "only the undecodable message is parked: {dead:?}"
    );
    assert!(dead[0].reason.contains("not a job"), "{}", dead[0].reason);
    let jobs = tagsync::metrics::JOBS;
    assert_eq!(
        app.metrics
            .get(jobs, &[("kind", "probe"), ("outcome", "done")]),
        1
    );
    assert_eq!(
        app.metrics
            .get(jobs, &[("kind", "probe"), ("outcome", "retried")]),
        1
    );
    assert_eq!(
        app.metrics
            .get(jobs, &[("kind", "undecodable"), ("outcome", "parked")]),
        1
    );
    assert!(
        app.metrics.take_emf(0).is_empty(),
        "the invocation wrote its counts as embedded metrics"
    );
}

/// An SQS client for moto (`TAGSYNC_TEST_SQS_ENDPOINT`) or DynamoDB Local
/// (`TAGSYNC_TEST_DYNAMODB_ENDPOINT`), as `infra/test.sh` starts them.
async fn local_aws(endpoint_var: &str) -> aws_config::SdkConfig {
    let endpoint = std::env::var(endpoint_var).unwrap_or_else(|_| {
        panic!("{endpoint_var} is not set: run infra/test.sh, or `source infra/local-aws.sh && local_aws_start`")
    });
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A fresh queue and its DLQ on moto.
async fn sqs_queue(client: &aws_sdk_sqs::Client) -> tagsync::queue::sqs::SqsQueue {
    let name = format!("lambda-{}", uuid::Uuid::new_v4().simple());
    let (queue_url, dlq_url) = tagsync::queue::sqs::create_queues(client, &name)
        .await
        .unwrap();
    tagsync::queue::sqs::SqsQueue::new(client.clone(), queue_url, dlq_url, 5)
}

/// Receives `jobs` for real (so their receipts are valid) and presents them as the event
/// source mapping would, each with the receive count `receives` gives its job (SQS's own
/// count is 1). Returns the event and each job's message id.
async fn lambda_batch(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    jobs: &[Job],
    receives: impl Fn(&Job) -> u32,
) -> (
    aws_lambda_events::event::sqs::SqsEvent,
    std::collections::HashMap<String, String>,
) {
    let mut received = Vec::new();
    while received.len() < jobs.len() {
        let out = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        received.extend(out.messages.unwrap_or_default());
    }
    let template: Value = serde_json::from_str(&fixture("sqs-batch.json")).unwrap();
    let mut records = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for m in &received {
        let job: Job = serde_json::from_str(m.body().unwrap()).unwrap();
        let mut record = template["Records"][0].clone();
        record["body"] = json!(m.body().unwrap());
        record["messageId"] = json!(m.message_id().unwrap());
        record["receiptHandle"] = json!(m.receipt_handle().unwrap());
        record["attributes"]["ApproximateReceiveCount"] = json!(receives(&job).to_string());
        ids.insert(job.id.to_string(), m.message_id().unwrap().to_string());
        records.push(record);
    }
    let event = serde_json::from_value(json!({ "Records": records })).unwrap();
    (event, ids)
}

fn probe_job(tenant: &str, fail: bool, panic: bool) -> Job {
    Job::new(
        TenantId::parse(tenant).unwrap(),
        JobKind::Probe {
            note: String::new(),
            fail,
            work_ms: 0,
            panic,
        },
        Timestamp::from_millis(0),
    )
}

/// A batch in which one message's job panics: only that message is reported for retry, the
/// others run; a message whose job panics on its last allowed receive is parked (not
/// reported) with the panic's message as its reason.
#[tokio::test]
async fn sync_worker_reports_only_the_panicking_message_and_parks_one_on_its_last_try() {
    let client = aws_sdk_sqs::Client::new(&local_aws("TAGSYNC_TEST_SQS_ENDPOINT").await);
    let queue = Arc::new(sqs_queue(&client).await);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_app(dir.path()).await;
    let app = App::new(
        sqlite.store.clone(),
        queue.clone(),
        sqlite.clock.clone(),
        test_config(),
    );
    let mut tenant = tagsync_tenant("acme");
    app.store.put_tenant(&mut tenant).await.unwrap();

    let ok = probe_job("acme", false, false);
    let panics = probe_job("acme", false, true);
    let ok2 = probe_job("acme", false, false);
    let panics_last = probe_job("acme", false, true);
    let jobs = [ok.clone(), panics.clone(), ok2.clone(), panics_last.clone()];
    queue.send(&jobs).await.unwrap();
    let last = panics_last.id.clone();
    let (event, ids) = lambda_batch(&client, queue.queue_url(), &jobs, |j| {
        if j.id == last { 5 } else { 1 }
    })
    .await;

    let response = lambda::sqs(&app, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [ids[panics.id.as_str()].clone()]);
    let audit = app
        .store
        .list_audit(&tenant.id, None, 50)
        .await
        .unwrap()
        .items;
    for job in [&ok, &ok2] {
        assert!(
            audit.iter().any(|e| e.entity == format!("job:{}", job.id)),
            "job {} ran after the panic before it",
            job.id
        );
    }
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].job.as_ref().map(|j| &j.id), Some(&panics_last.id));
    assert!(
        dead[0]
            .reason
            .contains("the job panicked: probe asked to panic")
            && dead[0].reason.contains("gave up after 5 tries"),
        "{}",
        dead[0].reason
    );
}

/// A full batch of slow jobs runs side by side: ten jobs of 1.5 s each are all done in about
/// the time of one, not the 15 s they take one after another. Run in turn, a batch of
/// reconciliation pages outlasted the worker's 60 s timeout, and Lambda then failed the whole
/// batch on every receive until the redrive policy parked it (the cloud cost bench's
/// onboarding run).
#[tokio::test]
async fn sync_worker_runs_a_batchs_jobs_side_by_side_so_ten_slow_jobs_take_about_as_long_as_one() {
    const WORK_MS: u64 = 1_500;
    let client = aws_sdk_sqs::Client::new(&local_aws("TAGSYNC_TEST_SQS_ENDPOINT").await);
    let queue = Arc::new(sqs_queue(&client).await);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_app(dir.path()).await;
    let app = App::new(
        sqlite.store.clone(),
        queue.clone(),
        sqlite.clock.clone(),
        test_config(),
    );
    let mut tenant = tagsync_tenant("acme");
    app.store.put_tenant(&mut tenant).await.unwrap();
    let jobs: Vec<Job> = (0..10)
        .map(|i| {
            Job::new(
                tenant.id.clone(),
                JobKind::Probe {
                    note: format!("slow {i}"),
                    fail: false,
                    work_ms: WORK_MS,
                    panic: false,
                },
                Timestamp::from_millis(0),
            )
        })
        .collect();
    queue.send(&jobs).await.unwrap();
    let (event, _) = lambda_batch(&client, queue.queue_url(), &jobs, |_| 1).await;

    let started = std::time::Instant::now();
    let response = lambda::sqs(&app, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let audit = app
        .store
        .list_audit(&tenant.id, None, 50)
        .await
        .unwrap()
        .items;
    for job in &jobs {
        assert!(
            audit.iter().any(|e| e.entity == format!("job:{}", job.id)),
            "job {} ran",
            job.id
        );
    }
    // One after another: 15 s. Side by side: 1.5 s plus the store's and queue's calls.
    assert!(
        took < std::time::Duration::from_millis(WORK_MS * 4),
        "ten jobs of {WORK_MS} ms took {took:?}: run one after another"
    );
}

/// `GET …/status` on the AWS path (SQS on moto, the store on DynamoDB Local): each tenant's
/// jobs are counted through their marks in the store as the Lambda worker runs, retries and
/// parks them — waiting, then done, waiting for a retry, or dead — never another tenant's.
#[tokio::test]
async fn status_counts_each_tenant_on_sqs_through_queue_marks_in_dynamodb() {
    let client = aws_sdk_sqs::Client::new(&local_aws("TAGSYNC_TEST_SQS_ENDPOINT").await);
    let sqs = sqs_queue(&client).await;
    let queue_url = sqs.queue_url().to_owned();
    let dynamo = aws_sdk_dynamodb::Client::new(&local_aws("TAGSYNC_TEST_DYNAMODB_ENDPOINT").await);
    let table = format!("lambda-{}", uuid::Uuid::new_v4().simple());
    tagsync::store::dynamo::create_table(&dynamo, &table)
        .await
        .unwrap();
    let store: Arc<dyn tagsync::ports::Store> = Arc::new(tagsync::store::dynamo::DynamoStore::new(
        tagsync::store::dynamo::DynamoItems::new(dynamo, table),
    ));
    let clock: Arc<dyn tagsync::ports::Clock> = Arc::new(tagsync::ports::SystemClock);
    let queue = Arc::new(tagsync::queue::counted::TenantCounted::new(
        sqs,
        store.clone(),
        clock.clone(),
    ));
    let app = App::new(store, queue.clone(), clock, test_config());
    for id in ["acme", "beta"] {
        app.store.put_tenant(&mut tagsync_tenant(id)).await.unwrap();
    }
    let status = |tenant: &'static str| {
        let app = app.clone();
        async move { status_of(&app, tenant).await["queue"].clone() }
    };

    let acme = [
        probe_job("acme", false, false),
        probe_job("acme", false, false),
    ];
    let fails = probe_job("beta", true, false);
    let panics = probe_job("beta", false, true);
    let beta = [
        fails.clone(),
        panics.clone(),
        probe_job("beta", false, false),
    ];
    queue.send(&acme).await.unwrap();
    queue.send(&beta).await.unwrap();
    assert_eq!(
        status("acme").await,
        json!({"pending": 2, "in_flight": 0, "dead": 0, "scope": "tenant"})
    );
    assert_eq!(
        status("beta").await,
        json!({"pending": 3, "in_flight": 0, "dead": 0, "scope": "tenant"})
    );

    // One batch: acme's jobs are done; beta's failing job waits for its retry, its panicking
    // job is on its last receive (parked), its third is done.
    let all: Vec<Job> = acme.iter().chain(beta.iter()).cloned().collect();
    let last = panics.id.clone();
    let (event, ids) = lambda_batch(
        &client,
        &queue_url,
        &all,
        |j| {
            if j.id == last { 5 } else { 1 }
        },
    )
    .await;
    let response = lambda::sqs(&app, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [ids[fails.id.as_str()].clone()]);
    assert_eq!(
        status("acme").await,
        json!({"pending": 0, "in_flight": 0, "dead": 0, "scope": "tenant"})
    );
    assert_eq!(
        status("beta").await,
        json!({"pending": 1, "in_flight": 0, "dead": 1, "scope": "tenant"})
    );
}

/// The chat-message feed is served by the mall webhook function (template.yaml routes
/// `POST /messages/{tenant}` to it): a signed batch is queued as one rules job.
#[tokio::test]
async fn mall_webhook_function_accepts_a_signed_message_feed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_fixture_token(dir.path()).await;
    let mut tenant = tagsync_tenant("acme");
    tenant.secrets.message_feed_secret = Some(tagsync::domain::Secret::new("feed-secret"));
    app.store.put_tenant(&mut tenant).await.unwrap();
    let mut event: Value = serde_json::from_str(&fixture("apigw-v2-mall-webhook.json")).unwrap();
    let body = json!({"messages": [tagsync::sim::feed::text("m1", "wm_a", "li", "有优惠券吗")]})
        .to_string();
    let ts = chrono::Utc::now().timestamp();
    event["rawPath"] = json!("/messages/acme");
    event["requestContext"]["http"]["path"] = json!("/messages/acme");
    event["routeKey"] = json!("POST /messages/{tenant}");
    event["requestContext"]["routeKey"] = json!("POST /messages/{tenant}");
    event["body"] = json!(body);
    event["headers"] = json!({
        "content-type": "application/json",
        "x-feed-timestamp": ts.to_string(),
        "x-feed-signature": tagsync::mall::webhook::sign(b"feed-secret", ts, body.as_bytes()),
    });
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    let resp = lambda::http(&app, Surface::MallWebhook, req).await.unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app
        .queue
        .receive(
            10,
            std::time::Duration::from_secs(30),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job.as_ref().unwrap().kind.name(), "rules_messages");
}

/// The deployed routes: `template.yaml` sends `POST /messages/{tenant}` to the function whose
/// binary serves the mall webhook surface (the one the test above drives), on the HTTP API.
#[test]
fn the_template_routes_the_message_feed_to_the_mall_webhook_function() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("the template is YAML");
    let mut routed = Vec::new();
    for (name, resource) in doc["Resources"].as_mapping().unwrap() {
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str();
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values() {
            let p = &event["Properties"];
            if event["Type"].as_str() == Some("HttpApi")
                && p["Path"].as_str() == Some("/messages/{tenant}")
            {
                routed.push((
                    name.as_str().unwrap().to_owned(),
                    binary.map(str::to_owned),
                    p["Method"].as_str().map(str::to_owned),
                ));
            }
        }
    }
    assert_eq!(routed.len(), 1, "one route for the feed: {routed:?}");
    assert_eq!(routed[0].1.as_deref(), Some("mall_webhook"), "{routed:?}");
    assert_eq!(routed[0].2.as_deref(), Some("POST"), "{routed:?}");
    let main = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/functions/mall_webhook.rs"
    ))
    .unwrap();
    assert!(
        main.contains("Surface::MallWebhook"),
        "the binary serves that surface"
    );
}
