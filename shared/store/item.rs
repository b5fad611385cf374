//! The single-table shape both store backends speak: items addressed by `pk`/`sk`, a
//! `version` for optimistic concurrency, the entity as JSON in `data`, an optional TTL
//! (`expiration`, epoch seconds, DynamoDB's TTL attribute), an optional GSI key pair for
//! list queries, and `lock_until`/`owner` for claims and leases.
//!
//! Only `store::table` builds items; only the backends (`sqlite`, `dynamo`) store them.

use super::super::ports::StoreResult;
use async_trait::async_trait;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    pub data: String,
    /// Epoch seconds after which reads treat the item as absent (re-checked on read: TTL
    /// deletion is lazy in DynamoDB). Conditions see an expired item until it is deleted,
    /// except `Claimable`, which checks expiry itself.
    pub expiration: Option<i64>,
    pub gsi1pk: Option<String>,
    pub gsi1sk: Option<String>,
    /// Epoch milliseconds until which a claim or lease is held.
    pub lock_until: Option<i64>,
    pub owner: Option<String>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, version: u64, data: String) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
            version,
            data,
            expiration: None,
            gsi1pk: None,
            gsi1sk: None,
            lock_until: None,
            owner: None,
        }
    }
    pub fn key(&self) -> String {
        format!("{}|{}", self.pk, self.sk)
    }
}

/// The condition a write is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    None,
    /// No item at this key.
    Absent,
    /// An item whose `version` equals this.
    Version(u64),
    /// Absent, or expired (`expiration < now_secs`), or its lock lapsed
    /// (`lock_until < now_millis`), or — when `owner` is given — held by that owner.
    Claimable {
        now_millis: i64,
        owner: Option<String>,
    },
    /// An item whose `owner` equals this.
    OwnedBy(String),
}

#[derive(Clone, Debug)]
pub enum ItemWrite {
    Put {
        item: Item,
        condition: Condition,
    },
    Delete {
        pk: String,
        sk: String,
        condition: Condition,
    },
}

impl ItemWrite {
    pub fn key(&self) -> String {
        match self {
            ItemWrite::Put { item, .. } => item.key(),
            ItemWrite::Delete { pk, sk, .. } => format!("{pk}|{sk}"),
        }
    }
}

/// Which way a query walks the sort keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

/// A query: items of one partition (or one GSI partition) whose sort key starts with
/// `sk_prefix`, strictly after `start_after` in the walking direction.
#[derive(Clone, Debug)]
pub struct Query {
    pub pk: String,
    pub sk_prefix: String,
    pub start_after: Option<String>,
    pub limit: usize,
    pub direction: Direction,
    /// Query the GSI (`gsi1pk`/`gsi1sk`) instead of the table.
    pub on_gsi: bool,
}

/// A conditional counter's step: the count is kept in the `pk`/`sk` item's `version` (absent
/// counts as 0); `by` is added unless the count already reached `limit`. `expiration` is the
/// item's TTL. Counter items are never read as entities (their `data` is `{}`).
#[derive(Clone, Debug)]
pub struct CountUp {
    pub pk: String,
    pub sk: String,
    pub by: u64,
    pub limit: u64,
    pub expiration: i64,
}

/// Raw item storage. Conditions failing give `StoreError::Conflict` (single writes) or
/// `StoreError::TransactionConflict` (transactions).
#[async_trait]
pub trait ItemBackend: crate::ports::store::CustomerIndex + Send + Sync + 'static {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>>;
    async fn query(&self, query: &Query) -> StoreResult<Vec<Item>>;
    async fn write(&self, write: ItemWrite) -> StoreResult<()>;
    /// All or nothing; at most 100 writes, no two on the same item.
    async fn transact(&self, writes: Vec<ItemWrite>) -> StoreResult<()>;
    /// Steps a counter atomically and answers the new count, or `None` when it was full.
    async fn count_up(&self, step: CountUp) -> StoreResult<Option<u64>>;
}
