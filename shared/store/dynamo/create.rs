//! Creating the table as `template.yaml` does (tests and `tagsync serve --dynamodb` use it).

use super::{GSI1, GSI1PK, GSI1SK, PK, SK, TTL_ATTRIBUTE, build_error, sdk_error};
use crate::ports::{StoreError, StoreResult};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use std::time::Duration;

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
