//! The backends under test, each built fresh for one test: SQLite in its own temp dir, and the
//! AWS adapters against the local stand-ins (DynamoDB Local, moto) with a table or queue of
//! their own, so tests never share state and can run in parallel.

use std::sync::Arc;
use tagsync::ports::{Queue, Store, SystemClock};
use tagsync::queue::counted::TenantCounted;
use tagsync::queue::sqlite::SqliteQueue;
use tagsync::queue::sqs::{SqsQueue, create_queues};
use tagsync::store::dynamo::{DynamoItems, DynamoStore, create_table};
use tagsync::store::item::ItemBackend;
use tagsync::store::sqlite::{SqliteDb, SqliteItems, SqliteStore};
use tempfile::TempDir;

/// The `max_receives` every queue under test is built with (the redrive policy's count).
pub const MAX_RECEIVES: u32 = 5;

/// A store and whatever must outlive it (the SQLite temp dir).
pub struct StoreUnderTest {
    pub store: Arc<dyn Store>,
    _dir: Option<TempDir>,
}

/// The raw item layer under the store, for the cases that pin its query semantics.
pub struct ItemsUnderTest {
    pub items: Arc<dyn ItemBackend>,
    _dir: Option<TempDir>,
}

pub struct QueueUnderTest {
    pub queue: Arc<dyn Queue>,
    _dir: Option<TempDir>,
}

fn temp_db() -> (TempDir, SqliteDb) {
    let dir = tempfile::tempdir().expect("create a temp dir for SQLite");
    let db = SqliteDb::open_in_dir(dir.path()).expect("open the SQLite database");
    (dir, db)
}

pub async fn sqlite_store() -> StoreUnderTest {
    let (dir, db) = temp_db();
    StoreUnderTest {
        store: Arc::new(SqliteStore::new(SqliteItems::new(db))),
        _dir: Some(dir),
    }
}

pub async fn dynamo_store() -> StoreUnderTest {
    StoreUnderTest {
        store: Arc::new(DynamoStore::new(dynamo_table().await)),
        _dir: None,
    }
}

pub async fn sqlite_items() -> ItemsUnderTest {
    let (dir, db) = temp_db();
    ItemsUnderTest {
        items: Arc::new(SqliteItems::new(db)),
        _dir: Some(dir),
    }
}

pub async fn dynamo_items() -> ItemsUnderTest {
    ItemsUnderTest {
        items: Arc::new(dynamo_table().await),
        _dir: None,
    }
}

/// A fresh table of this test's own.
async fn dynamo_table() -> DynamoItems {
    let (client, table) = dynamo_client_and_table().await;
    DynamoItems::new(client, table)
}

/// A fresh table of this test's own, by name, for cases that open it more than once.
pub async fn dynamo_client_and_table() -> (aws_sdk_dynamodb::Client, String) {
    let config = aws_config_for("TAGSYNC_TEST_DYNAMODB_ENDPOINT").await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = unique_name("tagsync-contract");
    create_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("create DynamoDB table {table}: {e}"));
    (client, table)
}

pub async fn sqlite_queue() -> QueueUnderTest {
    let (dir, db) = temp_db();
    QueueUnderTest {
        queue: Arc::new(SqliteQueue::new(db, Arc::new(SystemClock), MAX_RECEIVES)),
        _dir: Some(dir),
    }
}

pub async fn sqs_queue() -> QueueUnderTest {
    QueueUnderTest {
        queue: Arc::new(fresh_sqs().await),
        _dir: None,
    }
}

/// A fresh queue and DLQ of this test's own on moto.
async fn fresh_sqs() -> SqsQueue {
    let config = aws_config_for("TAGSYNC_TEST_SQS_ENDPOINT").await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = unique_name("tagsync-contract");
    let (queue_url, dlq_url) = create_queues(&client, &name)
        .await
        .unwrap_or_else(|e| panic!("create SQS queues {name}: {e}"));
    SqsQueue::new(client, queue_url, dlq_url, MAX_RECEIVES)
}

/// SQS (moto) counted per tenant through marks in a DynamoDB Local table, as the Lambdas run.
pub async fn sqs_counted_queue() -> QueueUnderTest {
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(dynamo_table().await));
    let queue = TenantCounted::new(fresh_sqs().await, store, Arc::new(SystemClock));
    QueueUnderTest {
        queue: Arc::new(queue),
        _dir: None,
    }
}

/// SDK configuration for a local stand-in whose endpoint the test script exported. A missing
/// endpoint fails the test: an AWS-backed case must never pass without having run.
pub async fn aws_config_for(endpoint_var: &str) -> aws_config::SdkConfig {
    let endpoint = std::env::var(endpoint_var).unwrap_or_else(|_| {
        panic!(
            "{endpoint_var} is not set, so the AWS-backed contract tests cannot reach their \
             local stand-ins. Run infra/test.sh, or by hand: \
             `source infra/local-aws.sh && local_aws_install && local_aws_start`, then \
             `cargo test --test contract`, then `local_aws_stop`."
        )
    });
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "tagsync-contract-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
