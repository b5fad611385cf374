//! Items, conditions and queries in DynamoDB's terms: attribute maps, condition expressions,
//! key conditions, and a refused condition or cancelled transaction in words.

use super::{DATA, GSI1PK, GSI1SK, LOCK_UNTIL, OWNER, PK, SK, TTL_ATTRIBUTE, VERSION};
use crate::ports::{StoreError, StoreResult};
use crate::store::item::{Condition, Direction, Item};
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which sort keys a query walks, as one DynamoDB key condition. A key condition allows a
/// single sort-key clause, so "starts with P and after S" is reduced to one clause using the
/// fact that the keys starting with P form one contiguous run in (byte-wise) sort order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SortRange<'a> {
    All,
    Prefix,
    After(&'a str),
    Before(&'a str),
    Empty,
}

impl<'a> SortRange<'a> {
    pub(super) fn plan(prefix: &str, start_after: Option<&'a str>, direction: Direction) -> Self {
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
pub(super) struct ConditionExpr {
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
pub(super) fn describe_failed_condition(condition: &Condition) -> String {
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

pub(super) fn cancellation_reason(
    reason: &CancellationReason,
    condition: Option<&Condition>,
) -> String {
    let code = reason.code().unwrap_or("Unknown");
    match (code, condition) {
        ("ConditionalCheckFailed", Some(c)) => describe_failed_condition(c),
        _ => format!("{code}: {}", reason.message().unwrap_or("no message")),
    }
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn is_expired(item: &Item, now_secs: i64) -> bool {
    item.expiration.is_some_and(|e| e < now_secs)
}

pub(super) fn to_attributes(item: Item) -> HashMap<String, AttributeValue> {
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

pub(super) fn from_attributes(map: &HashMap<String, AttributeValue>) -> StoreResult<Item> {
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

/// The request builders that carry a condition: single writes and a transaction's parts.
pub(super) trait WithCondition: Sized {
    fn condition(self, c: ConditionExpr) -> Self;

    /// The builder with `condition` as its condition expression (none for `Condition::None`).
    fn with_condition(self, condition: &Condition) -> Self {
        match ConditionExpr::of(condition) {
            Some(c) => self.condition(c),
            None => self,
        }
    }
}

macro_rules! with_condition {
    ($($builder:ty),* $(,)?) => {$(
        impl WithCondition for $builder {
            fn condition(self, c: ConditionExpr) -> Self {
                self.condition_expression(c.text)
                    .set_expression_attribute_names(c.names)
                    .set_expression_attribute_values(c.values)
            }
        }
    )*};
}

with_condition!(
    aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
    aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder,
    aws_sdk_dynamodb::types::builders::PutBuilder,
    aws_sdk_dynamodb::types::builders::DeleteBuilder,
);
