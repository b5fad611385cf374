//! Item-layer cases: the query and expiry semantics `item.rs` defines, which every typed
//! listing relies on, pinned for each backend (see `main.rs`).

use std::sync::Arc;
use tagsync::store::item::{Condition, Direction, Item, ItemBackend, ItemWrite, Query};

async fn put(items: &dyn ItemBackend, item: Item) {
    let key = item.key();
    items
        .write(ItemWrite::Put {
            item,
            condition: Condition::None,
        })
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

fn query(pk: &str, prefix: &str, after: Option<&str>, direction: Direction, limit: usize) -> Query {
    Query {
        pk: pk.into(),
        sk_prefix: prefix.into(),
        start_after: after.map(str::to_string),
        limit,
        direction,
        on_gsi: false,
    }
}

/// The sort keys a query returns (the GSI's when it walks the GSI).
async fn sort_keys(items: &dyn ItemBackend, q: Query) -> Vec<String> {
    items
        .query(&q)
        .await
        .unwrap_or_else(|e| panic!("{q:?}: {e}"))
        .into_iter()
        .map(|i| {
            if q.on_gsi {
                i.gsi1sk.unwrap_or_default()
            } else {
                i.sk
            }
        })
        .collect()
}

pub async fn query_walks_a_prefix_from_a_cursor_in_both_directions(items: Arc<dyn ItemBackend>) {
    let items = &*items;
    for sk in ["A#1", "G#1", "G#2", "G#3", "T#1", "T#2", "Z"] {
        put(items, Item::new("LIB#t1", sk, 1, "{}".into())).await;
    }
    put(items, Item::new("LIB#t2", "G#9", 1, "{}".into())).await;
    use Direction::{Ascending as Asc, Descending as Desc};
    // (prefix, cursor, direction, limit, expected sort keys)
    type Case<'a> = (&'a str, Option<&'a str>, Direction, usize, &'a [&'a str]);
    let cases: &[Case] = &[
        ("G#", None, Asc, 10, &["G#1", "G#2", "G#3"]),
        ("G#", None, Desc, 10, &["G#3", "G#2", "G#1"]),
        ("G#", Some("G#1"), Asc, 10, &["G#2", "G#3"]),
        ("G#", Some("G#3"), Desc, 10, &["G#2", "G#1"]),
        ("G#", None, Asc, 2, &["G#1", "G#2"]),
        ("G#", Some("G#1"), Desc, 10, &[]),
        // A cursor outside the prefix: before it, or after it.
        ("G#", Some("A#9"), Asc, 10, &["G#1", "G#2", "G#3"]),
        ("G#", Some("A#9"), Desc, 10, &[]),
        ("G#", Some("H"), Asc, 10, &[]),
        ("G#", Some("H"), Desc, 10, &["G#3", "G#2", "G#1"]),
        ("", Some("G#3"), Asc, 10, &["T#1", "T#2", "Z"]),
        ("", Some("G#1"), Desc, 10, &["A#1"]),
        ("X#", None, Asc, 10, &[]),
    ];
    for (prefix, after, direction, limit, expected) in cases {
        let q = query("LIB#t1", prefix, *after, *direction, *limit);
        assert_eq!(sort_keys(items, q.clone()).await, *expected, "{q:?}");
    }

    // The GSI: its own partition and sort key, the same walking rules.
    for (pk, gsi1pk, gsi1sk) in [
        ("TENANT#b", "TENANTS", "b"),
        ("TENANT#a", "TENANTS", "a"),
        ("TENANT#c", "TENANTS", "c"),
        ("OTHER#x", "OTHERS", "a"),
    ] {
        let mut item = Item::new(pk, "META", 1, "{}".into());
        item.gsi1pk = Some(gsi1pk.into());
        item.gsi1sk = Some(gsi1sk.into());
        put(items, item).await;
    }
    let gsi = |after: Option<&str>, direction| Query {
        on_gsi: true,
        ..query("TENANTS", "", after, direction, 10)
    };
    // DynamoDB's GSI is eventually consistent; DynamoDB Local and SQLite update it at once.
    assert_eq!(sort_keys(items, gsi(None, Asc)).await, ["a", "b", "c"]);
    assert_eq!(sort_keys(items, gsi(Some("c"), Desc)).await, ["b", "a"]);
}

pub async fn query_fills_its_limit_across_backend_pages(items: Arc<dyn ItemBackend>) {
    let items = &*items;
    // DynamoDB answers at most 1 MB per call, so 12 items of 200 KB take three calls; the
    // backend must keep asking until the limit is met.
    let big = format!("\"{}\"", "x".repeat(200_000));
    for i in 0..12 {
        put(
            items,
            Item::new("AUDIT#t1", format!("{i:02}"), 1, big.clone()),
        )
        .await;
    }
    let first: Vec<String> = (0..10).map(|i| format!("{i:02}")).collect();
    let q = query("AUDIT#t1", "", None, Direction::Ascending, 10);
    assert_eq!(sort_keys(items, q).await, first);
    let q = query("AUDIT#t1", "", Some("09"), Direction::Ascending, 10);
    assert_eq!(sort_keys(items, q).await, ["10", "11"]);
    let q = query("AUDIT#t1", "", None, Direction::Descending, 500);
    assert_eq!(sort_keys(items, q).await.len(), 12);
}

pub async fn expired_item_reads_as_absent(items: Arc<dyn ItemBackend>) {
    let items = &*items;
    let now_secs = chrono::Utc::now().timestamp();
    // TTL deletion is lazy (and the stand-ins never run it): reads must re-check expiry.
    let mut expired = Item::new("IDEMP#old", "-", 1, "{}".into());
    expired.expiration = Some(now_secs - 60);
    put(items, expired).await;
    let mut live = Item::new("IDEMP#new", "-", 1, "{}".into());
    live.expiration = Some(now_secs + 3600);
    put(items, live.clone()).await;

    assert_eq!(items.get("IDEMP#old", "-").await.unwrap(), None);
    assert_eq!(items.get("IDEMP#new", "-").await.unwrap(), Some(live));
}
