//! DynamoDB backend of the item layer: one on-demand table with string keys `pk`/`sk`, one GSI
//! `gsi1` (`gsi1pk`/`gsi1sk`, projection ALL) and TTL on `expiration`. The item shape and the
//! meaning of each [`Condition`] and [`Query`] are defined in `item.rs`; this file only
//! translates them to DynamoDB's terms (`dynamo/expressions.rs`). [`create_table`] mirrors
//! `template.yaml`; [`Capacity`] counts what the calls cost.

mod capacity;
mod create;
mod expressions;

pub use capacity::{Capacity, CapacityUsed};
pub use create::create_table;

use super::item::{Condition, CountUp, Direction, Item, ItemBackend, ItemWrite, Query};
use super::table::TableStore;
use crate::aws_error;
use crate::ports::{StoreError, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnConsumedCapacity, TransactWriteItem};
use capacity::{kind_of, kinds_of};
use expressions::{
    SortRange, WithCondition, cancellation_reason, describe_failed_condition, from_attributes,
    is_expired, n, now_secs, s, to_attributes,
};
use std::collections::HashMap;
use std::sync::Arc;

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

/// DynamoDB's error codes after which the same request may succeed later (throttling aside:
/// [`aws_error::classify`] retries every code naming it).
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
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(to_attributes(item)))
                    .with_condition(&condition);
                TransactWriteItem::builder().put(put.build().map_err(|e| build_error(&key, e))?)
            }
            ItemWrite::Delete { pk, sk, condition } => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, s(pk))
                    .key(SK, s(sk))
                    .with_condition(&condition);
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(|e| build_error(&key, e))?)
            }
        };
        Ok(built.build())
    }

    /// A refused condition is a [`StoreError::Conflict`] (and billed: counted); any other
    /// failure as [`sdk_error`].
    fn write_error<E>(
        &self,
        op: &'static str,
        key: &str,
        condition: &Condition,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if err.code() == Some("ConditionalCheckFailedException") {
            self.capacity.refused(kind_of(key));
            return StoreError::Conflict {
                key: key.to_string(),
                reason: describe_failed_condition(condition),
            };
        }
        sdk_error(op, key, err)
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
        let consumed = match write {
            ItemWrite::Put { item, condition } => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_attributes(item)))
                .with_condition(&condition)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map(|out| out.consumed_capacity().cloned())
                .map_err(|e| self.write_error("PutItem", &key, &condition, e))?,
            ItemWrite::Delete { pk, sk, condition } => self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(pk))
                .key(SK, s(sk))
                .with_condition(&condition)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map(|out| out.consumed_capacity().cloned())
                .map_err(|e| self.write_error("DeleteItem", &key, &condition, e))?,
        };
        self.capacity.write(kind_of(&key), consumed.as_ref());
        Ok(())
    }

    async fn count_up(&self, step: CountUp) -> StoreResult<Option<u64>> {
        if step.limit == 0 {
            return Ok(None);
        }
        let key = format!("{}|{}", step.pk, step.sk);
        // One conditional UpdateItem: DynamoDB applies it atomically however many Lambda
        // instances count at once (no read-modify-write, no transaction conflicts).
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&step.pk))
            .key(SK, s(&step.sk))
            .update_expression(
                "SET #v = if_not_exists(#v, :zero) + :by, #d = if_not_exists(#d, :empty), #ttl = :exp",
            )
            .condition_expression("attribute_not_exists(#v) OR #v < :limit")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":by", n(step.by))
            .expression_attribute_values(":empty", s("{}"))
            .expression_attribute_values(":exp", n(step.expiration))
            .expression_attribute_values(":limit", n(step.limit))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match out {
            Ok(out) => {
                self.capacity
                    .write(kind_of(&step.pk), out.consumed_capacity());
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
                self.capacity.refused(kind_of(&step.pk));
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

/// A failure that may pass is `Unavailable` (retry later); any other means the request itself
/// is wrong (`Invalid`), so retrying will not help.
pub(super) fn sdk_error<E>(
    op: &'static str,
    key: &str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    aws_error::classify(op, key, &err, RETRYABLE_CODES)
}

pub(super) fn build_error(key: &str, err: BuildError) -> StoreError {
    StoreError::Invalid(format!("building a DynamoDB request for {key}: {err}"))
}

/// The customer index as items (layout and the partition each filter reads:
/// [`super::customers`]).
#[async_trait]
impl crate::ports::store::CustomerIndex for DynamoItems {
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
