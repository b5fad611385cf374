//! The `App`: everything a handler needs, built once per process (a Lambda sandbox or
//! `tagsync serve`) and shared by reference.

use crate::config::{Config, ConfigError};
use crate::domain::{Tenant, TenantId, Timestamp};
use crate::mall::client::{MallClient, MallEndpoint};
use crate::metrics::Metrics;
use crate::ports::{Clock, MallPort, Queue, Store, StoreResult, SystemClock, WecomPort};
use crate::queue::sqlite::SqliteQueue;
use crate::store::sealing::{KeySource, KmsKey, SecretKey};
use crate::store::sqlite::{SqliteDb, open_store};
use crate::wecom::client::{WecomClient, WecomCredentials};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

/// Parked after this many receives (SQS: the redrive policy's `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;

#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    /// Tenants as the inbound endpoints read them.
    pub tenants: Arc<TenantCache>,
    pub metrics: Arc<Metrics>,
    /// The platforms, through their ports: the HTTP clients, built once per process (they
    /// hold connection pools, the token cache and the rate budget) with their knobs set in
    /// [`App::new`].
    pub wecom: Arc<dyn WecomPort>,
    pub mall: Arc<dyn MallPort>,
    /// Locks of the entities sync jobs bring up to date, within this process.
    pub locks: Arc<crate::concurrency::Locks>,
}

/// Tenants cached for a moment per process, for the inbound endpoints: every callback and
/// webhook needs its tenant's secrets and switches, and a burst of them should not each read
/// the store. Operator routes read the store and drop the entry when they change a tenant, so
/// only another process's change can take up to [`TenantCache::TTL_MS`] to be seen here.
#[derive(Default)]
pub struct TenantCache {
    entries: Mutex<HashMap<TenantId, (Timestamp, Tenant)>>,
}

impl TenantCache {
    pub const TTL_MS: i64 = 1000;

    /// The tenant, from the cache if read less than a TTL ago. Unknown tenants are not cached
    /// (a tenant registered a moment later must be found).
    pub async fn get(
        &self,
        store: &dyn Store,
        now: Timestamp,
        id: &TenantId,
    ) -> StoreResult<Option<Tenant>> {
        if let Some((at, t)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            if now.millis() - at.millis() < Self::TTL_MS {
                return Ok(Some(t.clone()));
            }
        }
        let tenant = store.get_tenant(id).await?;
        if let Some(t) = &tenant {
            self.entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), (now, t.clone()));
        }
        Ok(tenant)
    }

    pub fn forget(&self, id: &TenantId) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let http = reqwest::Client::new();
        let wecom = WecomClient::new(
            http.clone(),
            config.wecom_api_base.clone(),
            store.clone(),
            clock.clone(),
            config.wecom_budget,
        )
        .with_metrics(metrics.clone())
        .with_retries(crate::retry::RetryPolicy::IN_JOB);
        let mall = MallClient::new(http)
            .with_pace(config.mall_rate_per_sec)
            .with_metrics(metrics.clone())
            .with_retries(crate::retry::RetryPolicy::IN_JOB);
        Self {
            store,
            queue,
            clock,
            config: Arc::new(config),
            tenants: Arc::new(TenantCache::default()),
            metrics,
            wecom: Arc::new(wecom),
            mall: Arc::new(mall),
            locks: Arc::default(),
        }
    }

    /// The credentials tagsync calls WeCom with for `tenant`.
    pub fn wecom_credentials(tenant: &Tenant) -> WecomCredentials {
        WecomCredentials {
            corp_id: tenant.corp_id.clone(),
            secret: tenant.secrets.corp_secret.clone(),
        }
    }

    /// Where and how tagsync calls `tenant`'s mall.
    pub fn mall_endpoint(tenant: &Tenant) -> MallEndpoint {
        MallEndpoint {
            base_url: tenant.mall_api_base.clone(),
            token: tenant.secrets.mall_api_token.clone(),
        }
    }

    /// The single-machine app: store and queue in `data_dir/tagsync.db`, tenant secrets sealed
    /// with `key` (kept apart from the data directory: see `config::serve_secret_key`). Refuses
    /// a damaged database and a key that is not the store's; seals what an older version
    /// stored plain.
    pub async fn sqlite(
        data_dir: &Path,
        config: Config,
        clock: Arc<dyn Clock>,
        key: SecretKey,
    ) -> Result<(Self, SqliteDb), ConfigError> {
        let in_dir = |e: &dyn std::fmt::Display| {
            ConfigError(format!("data directory {}: {e}", data_dir.display()))
        };
        let db = SqliteDb::open_in_dir(data_dir).map_err(|e| in_dir(&e))?;
        let store = open_store(&db)
            .unlock(&KeySource::Local(key))
            .await
            .map_err(|e| in_dir(&e))?;
        let sealed = store.seal_plain_records().await.map_err(|e| in_dir(&e))?;
        if sealed > 0 {
            // The plain versions must not stay behind in the WAL's older page images.
            db.checkpoint().await.map_err(|e| in_dir(&e))?;
            tracing::info!(
                tenants = sealed,
                "sealed tenant secrets stored plain by an older version"
            );
        }
        let queue = Arc::new(SqliteQueue::new(db.clone(), clock.clone(), MAX_RECEIVES));
        Ok((Self::new(Arc::new(store), queue, clock, config), db))
    }

    /// The cloud app of a Lambda: DynamoDB table `TAGSYNC_TABLE`, SQS queue
    /// `TAGSYNC_QUEUE_URL` with its dead-letter queue `TAGSYNC_DLQ_URL`, tenant secrets sealed
    /// by a data key of the KMS key `TAGSYNC_KMS_KEY_ID` (one `Decrypt` per sandbox). SDK
    /// clients are built here, once per sandbox.
    pub async fn aws_from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let var =
            |name: &str| std::env::var(name).map_err(|_| ConfigError(format!("{name} is not set")));
        let table = var("TAGSYNC_TABLE")?;
        let queue_url = var("TAGSYNC_QUEUE_URL")?;
        let dlq_url = var("TAGSYNC_DLQ_URL")?;
        let kms_key_id = var("TAGSYNC_KMS_KEY_ID")?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let store = crate::store::dynamo::DynamoStore::new(crate::store::dynamo::DynamoItems::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
        ))
        .unlock(&KeySource::Kms(KmsKey {
            client: aws_sdk_kms::Client::new(&sdk),
            key_id: kms_key_id,
        }))
        .await
        .map_err(|e| ConfigError(format!("tenant secrets: {e}")))?;
        // Idempotent, and a handful of reads where nothing is left to seal.
        store
            .seal_plain_records()
            .await
            .map_err(|e| ConfigError(format!("sealing tenant secrets: {e}")))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let sqs = crate::queue::sqs::SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            dlq_url,
            MAX_RECEIVES,
        );
        // SQS counts per queue; the status route counts per tenant through marks in the store.
        let queue = crate::queue::counted::TenantCounted::new(sqs, store.clone(), clock.clone());
        Ok(Self::new(store, Arc::new(queue), clock, config))
    }
}
