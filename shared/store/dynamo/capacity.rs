//! What this process's DynamoDB calls cost, as DynamoDB reports it.

use aws_sdk_dynamodb::types::ConsumedCapacity;
use std::sync::atomic::{AtomicU64, Ordering};

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
pub(super) fn kind_of(pk: &str) -> &str {
    pk.split(['#', '|']).next().unwrap_or(pk)
}

/// A transaction's kinds: its items' kinds, sorted, joined by `+`.
pub(super) fn kinds_of(keys: &[String]) -> String {
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

    pub(super) fn read(&self, kind: &str, consumed: Option<&ConsumedCapacity>) {
        self.add(kind, false, consumed);
    }

    pub(super) fn write<'a>(
        &self,
        kind: &str,
        consumed: impl IntoIterator<Item = &'a ConsumedCapacity>,
    ) {
        self.add(kind, true, consumed);
    }

    pub(super) fn refused(&self, kind: &str) {
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
