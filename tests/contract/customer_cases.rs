//! The customer index (issue 15), on every store backend: each filter answers exactly the
//! matching customers, in external-userid order, in cursor pages, with the exact total on
//! every page; rewrites move a customer between filters; stale writes are refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use tagsync::domain::*;
use tagsync::ports::{Clock, Store, SystemClock};

fn t(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid tenant id")
}

/// `relations`: (staff userid, state, hub tag ids, personal tag names).
fn entry(
    tenant: &TenantId,
    id: &str,
    name: &str,
    member: Option<&str>,
    relations: &[(&str, Option<&str>, &[&str], &[&str])],
) -> CustomerEntry {
    let mut e = CustomerEntry::new(
        tenant.clone(),
        ExternalUserId::new_unchecked(id),
        SystemClock.now(),
    );
    e.name = name.into();
    e.member_id = member.map(MemberId::new_unchecked);
    for (userid, state, tags, personal) in relations {
        e.relations.insert(
            WecomUserId::new_unchecked(*userid),
            RelationEntry {
                state: state.map(str::to_string),
                added_at: Some(Timestamp::from_millis(1_700_000_000_000)),
                tag_ids: tags.iter().map(|x| HubTagId::new_unchecked(*x)).collect(),
                personal_tags: personal.iter().map(|x| x.to_string()).collect(),
            },
        );
    }
    e
}

/// Every page of `filter`, `limit` at a time: the ids in order, and each page's total.
async fn walk(
    store: &dyn Store,
    tenant: &TenantId,
    filter: &CustomerFilter,
    limit: usize,
) -> (Vec<String>, BTreeSet<u64>) {
    let (mut ids, mut totals, mut cursor) = (Vec::new(), BTreeSet::new(), None::<String>);
    for _ in 0..100 {
        let page = store
            .query_customers(tenant, filter, cursor.as_deref(), limit)
            .await
            .expect("query customers");
        assert!(page.customers.len() <= limit);
        totals.insert(page.total);
        ids.extend(page.customers.iter().map(|c| c.external_userid.to_string()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (ids, totals),
        }
    }
    panic!("more than 100 pages");
}

fn tags(ids: &[&str], mode: TagMode) -> CustomerFilter {
    CustomerFilter {
        tags: ids.iter().map(|x| HubTagId::new_unchecked(*x)).collect(),
        tag_mode: mode,
        ..Default::default()
    }
}

pub async fn customer_index_answers_each_filter_exactly_in_pages_with_the_total(
    store: Arc<dyn Store>,
) {
    let (a, b) = (t("acme"), t("globex"));
    let mut all = Vec::new();
    // 40 customers with a pattern of tags, states, staff, names and bindings.
    for i in 0..40 {
        let id = format!("wm_{i:03}");
        let name = if i % 5 == 0 {
            format!("VIP 张{i}")
        } else {
            format!("客户{i}")
        };
        let member = (i % 2 == 0).then(|| format!("m{i}"));
        let mut tags1: Vec<&str> = Vec::new();
        if i % 3 == 0 {
            tags1.push("gold");
        }
        if i % 4 == 0 {
            tags1.push("vip");
        }
        let state = if i % 6 == 0 { Some("门店") } else { None };
        let mut rels: Vec<(&str, Option<&str>, &[&str], &[&str])> =
            vec![("sales_li", state, &tags1, &["老朋友"])];
        let second: &[&str] = if i % 7 == 0 { &["silver"] } else { &[] };
        if i % 2 == 1 {
            rels.push(("sales_wang", None, second, &[]));
        }
        let e = entry(&a, &id, &name, member.as_deref(), &rels);
        all.push(e);
    }
    all.push(entry(
        &b,
        "wm_000",
        "other tenant",
        None,
        &[("sales_li", Some("门店"), &["gold"], &[])],
    ));
    for e in all.iter_mut() {
        store.put_customer_entry(e).await.expect("put entry");
    }
    let mine: Vec<&CustomerEntry> = all.iter().filter(|e| e.tenant == a).collect();

    // A few filters whose answers are written out by hand.
    let (ids, totals) = walk(store.as_ref(), &a, &tags(&["silver"], TagMode::Any), 2).await;
    assert_eq!(ids, vec!["wm_007", "wm_021", "wm_035"]);
    assert_eq!(totals, BTreeSet::from([3]));
    let f = CustomerFilter {
        state: Some("门店".into()),
        bound: Some(true),
        ..Default::default()
    };
    let (ids, _) = walk(store.as_ref(), &a, &f, 50).await;
    assert_eq!(
        ids,
        vec![
            "wm_000", "wm_006", "wm_012", "wm_018", "wm_024", "wm_030", "wm_036"
        ]
    );
    let f = CustomerFilter {
        q: Some("vip".into()),
        userid: Some(WecomUserId::new_unchecked("sales_wang")),
        ..Default::default()
    };
    let (ids, _) = walk(store.as_ref(), &a, &f, 50).await;
    assert_eq!(ids, vec!["wm_005", "wm_015", "wm_025", "wm_035"]);

    // Every kind of filter and some combinations, against the definition of a match.
    let mut filters = vec![
        CustomerFilter::default(),
        tags(&["gold"], TagMode::Any),
        tags(&["gold", "silver"], TagMode::Any),
        tags(&["gold", "vip"], TagMode::All),
        tags(&["gold", "vip"], TagMode::None),
        tags(&["nobody"], TagMode::Any),
        CustomerFilter {
            bound: Some(false),
            ..Default::default()
        },
        CustomerFilter {
            q: Some("客户1".into()),
            ..Default::default()
        },
        CustomerFilter {
            q: Some("WM_02".into()),
            ..Default::default()
        },
        CustomerFilter {
            userid: Some(WecomUserId::new_unchecked("sales_li")),
            ..Default::default()
        },
    ];
    let mut combined = tags(&["gold", "silver"], TagMode::Any);
    combined.bound = Some(false);
    combined.userid = Some(WecomUserId::new_unchecked("sales_wang"));
    filters.push(combined);
    let mut combined = tags(&["vip"], TagMode::None);
    combined.state = Some("门店".into());
    filters.push(combined);
    for f in &filters {
        let expected: Vec<String> = mine
            .iter()
            .filter(|e| f.matches(e))
            .map(|e| e.external_userid.to_string())
            .collect();
        for limit in [1, 7, 200] {
            let (ids, totals) = walk(store.as_ref(), &a, f, limit).await;
            assert_eq!(ids, expected, "filter {f:?}, limit {limit}");
            assert_eq!(
                totals,
                BTreeSet::from([expected.len() as u64]),
                "filter {f:?}"
            );
        }
    }

    // Entries come back whole: relations with their state, time, tags and personal tags.
    let page = store
        .query_customers(&a, &tags(&["silver"], TagMode::Any), None, 1)
        .await
        .unwrap();
    let got = &page.customers[0];
    let put = mine
        .iter()
        .find(|e| e.external_userid == got.external_userid)
        .unwrap();
    assert_eq!(got.relations, put.relations);
    assert_eq!(
        (got.name.as_str(), got.member_id.as_ref()),
        (put.name.as_str(), put.member_id.as_ref())
    );
}

pub async fn customer_index_rewrite_moves_a_customer_between_filters_and_stale_writes_are_refused(
    store: Arc<dyn Store>,
) {
    let a = t("acme");
    let mut e = entry(
        &a,
        "wm_1",
        "张三",
        None,
        &[("sales_li", Some("web"), &["gold"], &[])],
    );
    store.put_customer_entry(&mut e).await.unwrap();
    assert_eq!(e.version, 1);
    let mut stale = e.clone();
    e.member_id = Some(MemberId::new_unchecked("m1"));
    e.relations.clear();
    e.relations.insert(
        WecomUserId::new_unchecked("sales_wang"),
        RelationEntry {
            tag_ids: [HubTagId::new_unchecked("vip")].into(),
            ..Default::default()
        },
    );
    store.put_customer_entry(&mut e).await.unwrap();
    assert_eq!(e.version, 2);
    stale.name = "lost".into();
    let refused = store.put_customer_entry(&mut stale).await;
    assert!(matches!(&refused, Err(x) if x.is_conflict()), "{refused:?}");

    let count = |f: CustomerFilter| {
        let store = store.clone();
        let a = a.clone();
        async move { store.query_customers(&a, &f, None, 50).await.unwrap().total }
    };
    assert_eq!(count(tags(&["gold"], TagMode::Any)).await, 0);
    assert_eq!(count(tags(&["vip"], TagMode::Any)).await, 1);
    assert_eq!(
        count(CustomerFilter {
            state: Some("web".into()),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(CustomerFilter {
            userid: Some(WecomUserId::new_unchecked("sales_li")),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(CustomerFilter {
            bound: Some(false),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(CustomerFilter {
            bound: Some(true),
            ..Default::default()
        })
        .await,
        1
    );
    let read = store
        .get_customer_entry(&a, &ExternalUserId::new_unchecked("wm_1"))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!((read.version, read.name.as_str()), (2, "张三"));
}
