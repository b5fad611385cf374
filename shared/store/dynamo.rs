//! DynamoDB backend of the item layer: one on-demand table with string keys `pk`/`sk`, one GSI
//! `gsi1` (`gsi1pk`/`gsi1sk`, projection ALL) and TTL on `expiration`. The item shape and the
//! meaning of each [`Condition`] and [`Query`] are defined in `item.rs`; this file only
//! translates them to DynamoDB expressions. [`create_table`] mirrors `template.yaml`.

use super::item::{Condition, Direction, Item, ItemBackend, ItemWrite, Query};
use super::table::TableStore;
use crate::ports::{StoreError, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, ConsumedCapacity, Delete,
    GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType, Put,
    ReturnConsumedCapacity, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TransactWriteItem,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The one global secondary index (list queries, e.g. all tenants).
pub const GSI1: &str = "gsi1";
/// DynamoDB's TTL attribute: epoch seconds.
pub const TTL_ATTRIBUTE: &str = "expiration";

const PK: &str = "pk";
const SK: &str = "sk";
const VERSION: &str = "version";
const DATA: &str = "data";
const GSI1PK: &str = "gsi1pk";
const GSI1SK: &str = "gsi1sk";
const LOCK_UNTIL: &str = "lock_until";
const OWNER: &str = "owner";

/// Error codes after which the same request may succeed later.
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
];

pub struct DynamoItems {
    client: Client,
    table: String,
    capacity: Arc<Capacity>,
}

/// The capacity this process's DynamoDB calls consumed, as DynamoDB reports it: every call
/// asks for `ReturnConsumedCapacity=TOTAL` (free of charge; DynamoDB Local answers it too).
/// On an on-demand table each read or write capacity unit reported is a read or write
/// request unit billed. A write refused by its condition reports nothing but is billed (at
/// least one write unit): counted apart.
#[derive(Debug, Default)]
pub struct Capacity {
    read_milli: AtomicU64,
    write_milli: AtomicU64,
    requests: AtomicU64,
    refused_writes: AtomicU64,
    /// The same by kind of item (the partition key's prefix: `MEMBER`, `QUEUE`, `COUNT`, …;
    /// a transaction's kinds joined by `+`), to tell where a cost comes from.
    by_kind: std::sync::Mutex<std::collections::BTreeMap<String, CapacityUsed>>,
}

/// What a key's item is, for [`Capacity::by_kind`]: its partition key's prefix.
fn kind_of(pk: &str) -> &str {
    pk.split(['#', '|']).next().unwrap_or(pk)
}

/// A transaction's kinds: its items' kinds, sorted, joined by `+`.
fn kinds_of(keys: &[String]) -> String {
    let kinds: std::collections::BTreeSet<&str> = keys.iter().map(|k| kind_of(k)).collect();
    kinds.into_iter().collect::<Vec<_>>().join("+")
}

/// A snapshot of [`Capacity`]; subtract two to get what happened in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CapacityUsed {
    pub read_units: f64,
    pub write_units: f64,
    pub requests: u64,
    pub refused_writes: u64,
}

impl std::ops::Sub for CapacityUsed {
    type Output = CapacityUsed;
    fn sub(self, before: CapacityUsed) -> CapacityUsed {
        CapacityUsed {
            read_units: self.read_units - before.read_units,
            write_units: self.write_units - before.write_units,
            requests: self.requests - before.requests,
            refused_writes: self.refused_writes - before.refused_writes,
        }
    }
}

impl Capacity {
    pub fn used(&self) -> CapacityUsed {
        CapacityUsed {
            read_units: self.read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            requests: self.requests.load(Ordering::Relaxed),
            refused_writes: self.refused_writes.load(Ordering::Relaxed),
        }
    }

    /// Per kind of item, since this process started.
    pub fn by_kind(&self) -> std::collections::BTreeMap<String, CapacityUsed> {
        self.by_kind.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn add_kind(&self, kind: &str, add: CapacityUsed) {
        if let Ok(mut m) = self.by_kind.lock() {
            let e = m.entry(kind.to_owned()).or_default();
            e.read_units += add.read_units;
            e.write_units += add.write_units;
            e.requests += add.requests;
            e.refused_writes += add.refused_writes;
        }
    }

    fn add<'a>(
        &self,
        kind: &str,
        write: bool,
        consumed: impl IntoIterator<Item = &'a ConsumedCapacity>,
    ) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let total: f64 = consumed
            .into_iter()
            .filter_map(|c| c.capacity_units())
            .sum();
        let units = if write {
            &self.write_milli
        } else {
            &self.read_milli
        };
        units.fetch_add((total * 1000.0).round() as u64, Ordering::Relaxed);
        self.add_kind(
            kind,
            CapacityUsed {
                read_units: if write { 0.0 } else { total },
                write_units: if write { total } else { 0.0 },
                requests: 1,
                refused_writes: 0,
            },
        );
    }

    fn read(&self, kind: &str, consumed: Option<&ConsumedCapacity>) {
        self.add(kind, false, consumed);
    }

    fn write<'a>(&self, kind: &str, consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        self.add(kind, true, consumed);
    }

    fn refused(&self, kind: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.refused_writes.fetch_add(1, Ordering::Relaxed);
        self.add_kind(
            kind,
            CapacityUsed {
                requests: 1,
                refused_writes: 1,
                ..CapacityUsed::default()
            },
        );
    }
}

/// The typed store over DynamoDB.
pub type DynamoStore = TableStore<DynamoItems>;

impl DynamoItems {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            capacity: Arc::default(),
        }
    }

    /// What this table's calls consumed so far (see [`Capacity`]).
    pub fn capacity(&self) -> Arc<Capacity> {
        self.capacity.clone()
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn transact_item(&self, write: ItemWrite) -> StoreResult<TransactWriteItem> {
        let key = write.key();
        let built = match write {
            ItemWrite::Put { item, condition } => {
                let mut put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(to_attributes(item)));
                if let Some(c) = ConditionExpr::of(&condition) {
                    put = put
                        .condition_expression(c.text)
                        .set_expression_attribute_names(c.names)
                        .set_expression_attribute_values(c.values);
                }
                TransactWriteItem::builder().put(put.build().map_err(|e| build_error(&key, e))?)
            }
            ItemWrite::Delete { pk, sk, condition } => {
                let mut delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, s(pk))
                    .key(SK, s(sk));
                if let Some(c) = ConditionExpr::of(&condition) {
                    delete = delete
                        .condition_expression(c.text)
                        .set_expression_attribute_names(c.names)
                        .set_expression_attribute_values(c.values);
                }
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(|e| build_error(&key, e))?)
            }
        };
        Ok(built.build())
    }
}

#[async_trait]
impl ItemBackend for DynamoItems {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let key = format!("{pk}|{sk}");
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &key, e))?;
        self.capacity.read(kind_of(pk), out.consumed_capacity());
        let Some(attributes) = out.item() else {
            return Ok(None);
        };
        let item = from_attributes(attributes)?;
        // TTL deletion is lazy (up to days), so an expired item may still be returned.
        Ok((!is_expired(&item, now_secs())).then_some(item))
    }

    async fn query(&self, query: &Query) -> StoreResult<Vec<Item>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let (pk_attr, sk_attr) = if query.on_gsi {
            (GSI1PK, GSI1SK)
        } else {
            (PK, SK)
        };
        let mut names = HashMap::from([("#pk".to_string(), pk_attr.to_string())]);
        let mut values = HashMap::from([(":pk".to_string(), s(&query.pk))]);
        let mut text = "#pk = :pk".to_string();
        match SortRange::plan(
            &query.sk_prefix,
            query.start_after.as_deref(),
            query.direction,
        ) {
            SortRange::Empty => return Ok(Vec::new()),
            SortRange::All => {}
            SortRange::Prefix => {
                text.push_str(" AND begins_with(#sk, :bound)");
                names.insert("#sk".into(), sk_attr.into());
                values.insert(":bound".into(), s(&query.sk_prefix));
            }
            SortRange::After(after) => {
                text.push_str(" AND #sk > :bound");
                names.insert("#sk".into(), sk_attr.into());
                values.insert(":bound".into(), s(after));
            }
            SortRange::Before(before) => {
                text.push_str(" AND #sk < :bound");
                names.insert("#sk".into(), sk_attr.into());
                values.insert(":bound".into(), s(before));
            }
        }

        let now = now_secs();
        let mut out = Vec::new();
        let mut start_key = None;
        loop {
            let remaining = i32::try_from(query.limit - out.len()).unwrap_or(i32::MAX);
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&text)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(query.direction == Direction::Ascending)
                .limit(remaining)
                .set_exclusive_start_key(start_key.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            // A GSI cannot be read consistently; the table can, and is.
            request = if query.on_gsi {
                request.index_name(GSI1)
            } else {
                request.consistent_read(true)
            };
            let page = request
                .send()
                .await
                .map_err(|e| sdk_error("Query", &query.pk, e))?;
            self.capacity
                .read(kind_of(&query.pk), page.consumed_capacity());
            for attributes in page.items() {
                let item = from_attributes(attributes)?;
                let sort_key = if query.on_gsi {
                    item.gsi1sk.as_deref().unwrap_or_default()
                } else {
                    item.sk.as_str()
                };
                // The prefix's keys are one contiguous run in sort order, and the key condition
                // starts the walk inside or before it: the first key outside ends the run.
                if !sort_key.starts_with(&query.sk_prefix) {
                    return Ok(out);
                }
                if is_expired(&item, now) {
                    continue;
                }
                out.push(item);
                if out.len() == query.limit {
                    return Ok(out);
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start_key = Some(key.clone()),
                None => return Ok(out),
            }
        }
    }

    async fn write(&self, write: ItemWrite) -> StoreResult<()> {
        let key = write.key();
        match write {
            ItemWrite::Put { item, condition } => {
                let mut request = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(to_attributes(item)))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total);
                if let Some(c) = ConditionExpr::of(&condition) {
                    request = request
                        .condition_expression(c.text)
                        .set_expression_attribute_names(c.names)
                        .set_expression_attribute_values(c.values);
                }
                match request.send().await {
                    Ok(out) => self.capacity.write(kind_of(&key), out.consumed_capacity()),
                    Err(e) => {
                        if e.code() == Some("ConditionalCheckFailedException") {
                            self.capacity.refused(kind_of(&key));
                        }
                        return Err(write_error("PutItem", &key, &condition, e));
                    }
                }
            }
            ItemWrite::Delete { pk, sk, condition } => {
                let mut request = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key(PK, s(pk))
                    .key(SK, s(sk))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total);
                if let Some(c) = ConditionExpr::of(&condition) {
                    request = request
                        .condition_expression(c.text)
                        .set_expression_attribute_names(c.names)
                        .set_expression_attribute_values(c.values);
                }
                match request.send().await {
                    Ok(out) => self.capacity.write(kind_of(&key), out.consumed_capacity()),
                    Err(e) => {
                        if e.code() == Some("ConditionalCheckFailedException") {
                            self.capacity.refused(kind_of(&key));
                        }
                        return Err(write_error("DeleteItem", &key, &condition, e));
                    }
                }
            }
        }
        Ok(())
    }

    async fn count_up(
        &self,
        pk: &str,
        sk: &str,
        by: u64,
        limit: u64,
        expiration: i64,
    ) -> StoreResult<Option<u64>> {
        if limit == 0 {
            return Ok(None);
        }
        let key = format!("{pk}|{sk}");
        // One conditional UpdateItem: DynamoDB applies it atomically however many Lambda
        // instances count at once (no read-modify-write, no transaction conflicts).
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression(
                "SET #v = if_not_exists(#v, :zero) + :by, #d = if_not_exists(#d, :empty), #ttl = :exp",
            )
            .condition_expression("attribute_not_exists(#v) OR #v < :limit")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":by", n(by))
            .expression_attribute_values(":empty", s("{}"))
            .expression_attribute_values(":exp", n(expiration))
            .expression_attribute_values(":limit", n(limit))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match out {
            Ok(out) => {
                self.capacity.write(kind_of(pk), out.consumed_capacity());
                let count = out
                    .attributes()
                    .and_then(|a| a.get(VERSION))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        key: key.clone(),
                        message: "the counter's new value is not a number".into(),
                    })?;
                Ok(Some(count))
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                self.capacity.refused(kind_of(pk));
                Ok(None)
            }
            Err(e) => Err(sdk_error("UpdateItem", &key, e)),
        }
    }

    async fn transact(&self, writes: Vec<ItemWrite>) -> StoreResult<()> {
        if writes.is_empty() {
            // DynamoDB rejects an empty transaction; nothing to do is trivially all-or-nothing.
            return Ok(());
        }
        if writes.len() > 100 {
            return Err(StoreError::Invalid(format!(
                "{} writes in one DynamoDB transaction (at most 100)",
                writes.len()
            )));
        }
        let keys: Vec<String> = writes.iter().map(ItemWrite::key).collect();
        let conditions: Vec<Condition> = writes
            .iter()
            .map(|w| match w {
                ItemWrite::Put { condition, .. } | ItemWrite::Delete { condition, .. } => {
                    condition.clone()
                }
            })
            .collect();
        let items = writes
            .into_iter()
            .map(|w| self.transact_item(w))
            .collect::<StoreResult<Vec<_>>>()?;
        let err = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
        {
            Ok(out) => {
                self.capacity
                    .write(&kinds_of(&keys), out.consumed_capacity());
                return Ok(());
            }
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        {
            self.capacity.refused(&kinds_of(&keys));
            // Reasons are positional, one per write; "None" marks a write that was fine.
            let failed = cancelled
                .cancellation_reasons()
                .iter()
                .enumerate()
                .filter(|(_, r)| r.code().is_some_and(|c| c != "None"))
                .map(|(i, r)| {
                    let key = keys.get(i).cloned().unwrap_or_default();
                    (i, key, cancellation_reason(r, conditions.get(i)))
                })
                .collect();
            return Err(StoreError::TransactionConflict { failed });
        }
        let first = keys.first().map_or("-", String::as_str);
        let what = format!("transaction of {} writes (first {first})", keys.len());
        Err(sdk_error("TransactWriteItems", &what, err))
    }
}

/// Creates the table as `template.yaml` does (on-demand; `pk`/`sk`; GSI `gsi1` on
/// `gsi1pk`/`gsi1sk`, projection ALL), waits until it is active, then enables TTL on
/// `expiration`. An existing table is accepted as is. A backend that cannot update TTL is
/// logged, not fatal: reads re-check expiry anyway.
pub async fn create_table(client: &Client, table: &str) -> StoreResult<()> {
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(|e| build_error(table, e))
    };
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| build_error(table, e))
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1PK, KeyType::Hash)?)
        .key_schema(key(GSI1SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| build_error(table, e))?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(PK)?)
        .attribute_definitions(string_attribute(SK)?)
        .attribute_definitions(string_attribute(GSI1PK)?)
        .attribute_definitions(string_attribute(GSI1SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {
            tracing::info!(table, "table already exists; using it as is");
        }
        Err(e) => return Err(sdk_error("CreateTable", table, e)),
    }
    wait_until_active(client, table).await?;

    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL_ATTRIBUTE)
        .build()
        .map_err(|e| build_error(table, e))?;
    if let Err(e) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        tracing::warn!(
            table,
            error = %DisplayErrorContext(&e),
            "could not enable TTL on `{TTL_ATTRIBUTE}`; expired items stay stored (reads ignore them)"
        );
    }
    Ok(())
}

/// TTL cannot be enabled, nor the table used, while it (or its index) is still being created.
async fn wait_until_active(client: &Client, table: &str) -> StoreResult<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", table, e))?;
        if let Some(t) = described.table() {
            let indexes_active = t
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status() == Some(&IndexStatus::Active));
            if t.table_status() == Some(&TableStatus::Active) && indexes_active {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable {
                op: "DescribeTable",
                message: format!("table {table} did not become active within 120 s"),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Which sort keys a query walks, as one DynamoDB key condition. A key condition allows a
/// single sort-key clause, so "starts with P and after S" is reduced to one clause using the
/// fact that the keys starting with P form one contiguous run in (byte-wise) sort order.
#[derive(Debug, PartialEq, Eq)]
enum SortRange<'a> {
    All,
    Prefix,
    After(&'a str),
    Before(&'a str),
    Empty,
}

impl<'a> SortRange<'a> {
    fn plan(prefix: &str, start_after: Option<&'a str>, direction: Direction) -> Self {
        let ascending = direction == Direction::Ascending;
        match start_after {
            None if prefix.is_empty() => SortRange::All,
            None => SortRange::Prefix,
            // Inside the run: walk on from the cursor; the run's end is found while reading.
            Some(s) if s.starts_with(prefix) => {
                if ascending {
                    SortRange::After(s)
                } else {
                    SortRange::Before(s)
                }
            }
            // Before the whole run.
            Some(s) if s < prefix => {
                if ascending {
                    SortRange::Prefix
                } else {
                    SortRange::Empty
                }
            }
            // After the whole run.
            Some(_) => {
                if ascending {
                    SortRange::Empty
                } else {
                    SortRange::Prefix
                }
            }
        }
    }
}

/// A condition as a DynamoDB condition expression. Every attribute goes through a `#name`
/// placeholder because `data`, `owner` and others are DynamoDB reserved words.
struct ConditionExpr {
    text: String,
    names: Option<HashMap<String, String>>,
    /// `None` when empty: DynamoDB rejects an empty value map.
    values: Option<HashMap<String, AttributeValue>>,
}

impl ConditionExpr {
    fn of(condition: &Condition) -> Option<Self> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let text = match condition {
            Condition::None => return None,
            Condition::Absent => {
                names.insert("#pk".to_string(), PK.to_string());
                "attribute_not_exists(#pk)".to_string()
            }
            Condition::Version(v) => {
                names.insert("#version".to_string(), VERSION.to_string());
                values.insert(":v".to_string(), n(*v));
                "#version = :v".to_string()
            }
            Condition::Claimable { now_millis, owner } => {
                names.insert("#pk".to_string(), PK.to_string());
                names.insert("#exp".to_string(), TTL_ATTRIBUTE.to_string());
                names.insert("#lock".to_string(), LOCK_UNTIL.to_string());
                values.insert(":now_s".to_string(), n(now_millis.div_euclid(1000)));
                values.insert(":now_ms".to_string(), n(*now_millis));
                let mut text =
                    "attribute_not_exists(#pk) OR #exp < :now_s OR #lock < :now_ms".to_string();
                if let Some(owner) = owner {
                    names.insert("#owner".to_string(), OWNER.to_string());
                    values.insert(":owner".to_string(), s(owner));
                    text.push_str(" OR #owner = :owner");
                }
                text
            }
            Condition::OwnedBy(owner) => {
                names.insert("#owner".to_string(), OWNER.to_string());
                values.insert(":owner".to_string(), s(owner));
                "#owner = :owner".to_string()
            }
        };
        Some(Self {
            text,
            names: Some(names),
            values: (!values.is_empty()).then_some(values),
        })
    }
}

/// Why a write's condition failed, in words.
fn describe_failed_condition(condition: &Condition) -> String {
    match condition {
        Condition::None => "condition failed".into(),
        Condition::Absent => "an item already exists".into(),
        Condition::Version(v) => format!("stored version is not {v}"),
        Condition::Claimable { owner: None, .. } => "held by someone else, not expired".into(),
        Condition::Claimable {
            owner: Some(owner), ..
        } => format!("held by someone other than {owner}, not expired"),
        Condition::OwnedBy(owner) => format!("not owned by {owner}"),
    }
}

fn cancellation_reason(reason: &CancellationReason, condition: Option<&Condition>) -> String {
    let code = reason.code().unwrap_or("Unknown");
    match (code, condition) {
        ("ConditionalCheckFailed", Some(c)) => describe_failed_condition(c),
        _ => format!("{code}: {}", reason.message().unwrap_or("no message")),
    }
}

fn write_error<E>(
    op: &'static str,
    key: &str,
    condition: &Condition,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code() == Some("ConditionalCheckFailedException") {
        return StoreError::Conflict {
            key: key.to_string(),
            reason: describe_failed_condition(condition),
        };
    }
    sdk_error(op, key, err)
}

/// Throttling, server-side and transport errors are `Unavailable` (retry later); any other
/// service error means the request itself is wrong (`Invalid`), so retrying will not help.
fn sdk_error<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let server_side = err
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    match err.as_service_error() {
        Some(service) => {
            let code = service.code().unwrap_or("Unknown");
            let message = format!(
                "{op} on {key}: {code}: {}",
                service.message().unwrap_or("no message")
            );
            if server_side || RETRYABLE_CODES.contains(&code) {
                StoreError::Unavailable { op, message }
            } else {
                StoreError::Invalid(message)
            }
        }
        None => StoreError::Unavailable {
            op,
            message: format!("{key}: {}", DisplayErrorContext(&err)),
        },
    }
}

fn build_error(key: &str, err: BuildError) -> StoreError {
    StoreError::Invalid(format!("building a DynamoDB request for {key}: {err}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn is_expired(item: &Item, now_secs: i64) -> bool {
    item.expiration.is_some_and(|e| e < now_secs)
}

fn to_attributes(item: Item) -> HashMap<String, AttributeValue> {
    let mut map = HashMap::from([
        (PK.to_string(), s(item.pk)),
        (SK.to_string(), s(item.sk)),
        (VERSION.to_string(), n(item.version)),
        (DATA.to_string(), s(item.data)),
    ]);
    // Absent optional attributes are left out: a GSI key must be absent (not empty) for the
    // item to stay out of the index, and conditions test for absence.
    if let Some(e) = item.expiration {
        map.insert(TTL_ATTRIBUTE.into(), n(e));
    }
    if let Some(v) = item.gsi1pk {
        map.insert(GSI1PK.into(), s(v));
    }
    if let Some(v) = item.gsi1sk {
        map.insert(GSI1SK.into(), s(v));
    }
    if let Some(v) = item.lock_until {
        map.insert(LOCK_UNTIL.into(), n(v));
    }
    if let Some(v) = item.owner {
        map.insert(OWNER.into(), s(v));
    }
    map
}

fn from_attributes(map: &HashMap<String, AttributeValue>) -> StoreResult<Item> {
    let key = format!(
        "{}|{}",
        map.get(PK)
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str),
        map.get(SK)
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str)
    );
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.clone(),
        message,
    };
    let string = |name: &str| -> StoreResult<Option<String>> {
        match map.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(other) => Err(corrupt(format!("`{name}` is not a string: {other:?}"))),
        }
    };
    let number = |name: &str| -> StoreResult<Option<i64>> {
        match map.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| corrupt(format!("`{name}` is not an integer: {v}"))),
            Some(other) => Err(corrupt(format!("`{name}` is not a number: {other:?}"))),
        }
    };
    let required = |name: &str| string(name)?.ok_or_else(|| corrupt(format!("`{name}` missing")));
    let version = number(VERSION)?.ok_or_else(|| corrupt(format!("`{VERSION}` missing")))?;
    Ok(Item {
        pk: required(PK)?,
        sk: required(SK)?,
        version: u64::try_from(version)
            .map_err(|_| corrupt(format!("negative version {version}")))?,
        data: required(DATA)?,
        expiration: number(TTL_ATTRIBUTE)?,
        gsi1pk: string(GSI1PK)?,
        gsi1sk: string(GSI1SK)?,
        lock_until: number(LOCK_UNTIL)?,
        owner: string(OWNER)?,
    })
}

/// The customer index as items (layout and the partition each filter reads:
/// [`super::customers`]).
#[async_trait]
impl super::customers::CustomerIndex for DynamoItems {
    async fn get_customer_entry(
        &self,
        tenant: &crate::domain::TenantId,
        customer: &crate::domain::ExternalUserId,
    ) -> StoreResult<Option<crate::domain::CustomerEntry>> {
        super::customers::items_get(self, tenant, customer).await
    }
    async fn put_customer_entry(
        &self,
        entry: &mut crate::domain::CustomerEntry,
    ) -> StoreResult<()> {
        super::customers::items_put(self, entry).await
    }
    async fn query_customers(
        &self,
        tenant: &crate::domain::TenantId,
        filter: &crate::domain::CustomerFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<crate::domain::CustomerPage> {
        super::customers::items_query(self, tenant, filter, cursor, limit).await
    }
    async fn matching_customers(
        &self,
        tenant: &crate::domain::TenantId,
        filter: &crate::domain::CustomerFilter,
    ) -> StoreResult<Vec<crate::domain::ExternalUserId>> {
        super::customers::items_matching(self, tenant, filter).await
    }
}

#[cfg(test)]
mod tests;
