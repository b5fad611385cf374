//! Items that grow with the tenant, at the sizes a large tenant brings, against DynamoDB's
//! 400 KB item limit (DynamoDB Local enforces it as AWS does: the last case shows it).

use std::collections::BTreeMap;
use std::sync::Arc;
use tagsync::domain::*;
use tagsync::jobs::reconcile::relation_chains;
use tagsync::ports::{Clock, Store, SystemClock};
use tagsync::store::item::{Condition, Item, ItemBackend, ItemWrite};

/// DynamoDB's item limit (names and values together).
pub const ITEM_LIMIT: usize = 400 * 1024;
/// Staff with customer contact in the large corp of the case.
pub const STAFF: usize = 50_000;

fn now() -> Timestamp {
    SystemClock.now()
}

/// A WeCom userid of 32 characters (WeCom allows up to 64; most are pinyin names).
fn userid(i: usize) -> String {
    format!("zhangwei{i:06}.sales-east.cn0001")[..32].to_owned()
}

/// A members run over 50,000 staff with customer contact: its 500 relations chains — each
/// with a 64-character cursor and a page's findings — are one run item far below 400 KB,
/// because each chain's 100 userids are kept in an item of their own; every chain's list
/// reads back whole, and the run is rewritten at its version as pages record. The same run
/// with the lists inline (as before) would be over 1.6 MB.
pub async fn a_members_run_over_50000_staff_keeps_every_item_under_400_kb(store: Arc<dyn Store>) {
    let t = TenantId::parse(format!("large-{}", &new_ordered_id()[..12])).unwrap();
    let mut run = SyncRun::new(
        t.clone(),
        RunId::new_unchecked(new_ordered_id()),
        RunScope::Members,
        Actor::System,
        now(),
    );
    let users: Vec<String> = (0..STAFF).map(userid).collect();
    let chains = relation_chains(&users);
    assert_eq!(chains.len(), STAFF / 100, "chains of 100 members");
    let expires = now().plus_secs(3600);
    let mut inline_size = 0;
    for (name, chain, members) in &chains {
        store
            .put_chain_users(&t, &run.id, name, members, expires)
            .await
            .unwrap_or_else(|e| panic!("the member list of {name}: {e}"));
        let mut chain = chain.clone();
        chain.page = 7;
        chain.cursor = Some("c".repeat(64));
        chain.found = Some(Found {
            page: 7,
            drift: BTreeMap::from([("member_tags.added.wecom".to_owned(), 12)]),
            skipped: BTreeMap::from([("customers.unbound.wecom".to_owned(), 3)]),
            compared: 100,
            ambiguous: Vec::new(),
            marks: 0,
        });
        let mut inline = chain.clone();
        inline.walk = Walk::WecomRelations {
            users: members.to_vec(),
            users_apart: false,
        };
        inline_size += serde_json::to_string(&inline).unwrap().len();
        run.chains.insert(name.clone(), chain);
    }
    run.recount();
    let size = serde_json::to_string(&run).unwrap().len();
    eprintln!(
        "members run over {STAFF} staff: run item {size} bytes, {} chains; inline lists would be {inline_size} bytes",
        run.chains.len()
    );
    assert!(
        size < ITEM_LIMIT / 2,
        "the run item is {size} bytes, too near DynamoDB's {ITEM_LIMIT}"
    );
    assert!(
        inline_size > ITEM_LIMIT,
        "inline lists ({inline_size} bytes) would not have hit the limit: the case shows nothing"
    );
    store
        .put_run(&mut run)
        .await
        .expect("the run item of a 50,000-staff members run is stored");
    // Pages record one by one: the item is rewritten at its version.
    run.chains.get_mut("wecom_relations_0000").unwrap().done = true;
    store
        .put_run(&mut run)
        .await
        .expect("rewritten at its version");
    let read = store.get_run(&t, &run.id).await.unwrap().expect("stored");
    assert_eq!(read, run);
    for (name, _, members) in &chains {
        let back = store.get_chain_users(&t, &run.id, name).await.unwrap();
        assert_eq!(back.as_deref(), Some(*members), "chain {name}");
    }
    // The first list written stands (a duplicate page job cannot change a chain's members).
    let (first, _, members) = &chains[0];
    store
        .put_chain_users(&t, &run.id, first, &users[..3], expires)
        .await
        .expect("a second write is no error");
    let back = store.get_chain_users(&t, &run.id, first).await.unwrap();
    assert_eq!(back.as_deref(), Some(*members));
}

/// The stand-in enforces the limit the cases above are measured against: DynamoDB Local
/// refuses an item of 401 KB, as AWS does.
pub async fn an_item_over_400_kb_is_refused(items: Arc<dyn ItemBackend>) {
    let data = format!("\"{}\"", "x".repeat(ITEM_LIMIT + 1024));
    let put = ItemWrite::Put {
        item: Item::new("SIZE#case", "-", 1, data),
        condition: Condition::None,
    };
    let err = items.write(put).await.expect_err("an item over 400 KB");
    eprintln!("refused: {err}");
}
