//! Store cases: written once against `dyn Store`, run on every backend (see `main.rs`).

use std::sync::Arc;
use std::time::Duration;
use tagsync::domain::*;
use tagsync::ports::{Claim, Clock, Store, StoreError, SystemClock, Write};
use tokio::time::Instant;

pub use crate::size_cases::a_members_run_over_50000_staff_keeps_every_item_under_400_kb;

fn now() -> Timestamp {
    SystemClock.now()
}

fn tenant_id(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid tenant id")
}

fn group(tenant: &TenantId, name: &str) -> TagGroup {
    let at = now();
    TagGroup {
        tenant: tenant.clone(),
        id: HubGroupId::new_unchecked(new_ordered_id()),
        name: name.into(),
        order: 0,
        name_at: at,
        order_at: at,
        deleted_at: None,
        wecom: Default::default(),
        mall: Default::default(),
        scope: None,
        carry_to_mall: true,
        version: 0,
    }
}

fn tag(tenant: &TenantId, group: &HubGroupId, name: &str) -> Tag {
    let at = now();
    Tag {
        tenant: tenant.clone(),
        id: HubTagId::new_unchecked(new_ordered_id()),
        group_id: group.clone(),
        name: name.into(),
        order: 0,
        name_at: at,
        order_at: at,
        group_at: at,
        deleted_at: None,
        wecom: Default::default(),
        mall: Default::default(),
        version: 0,
    }
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: tenant_id(id),
        corp_id: CorpId::new_unchecked(format!("ww-{id}")),
        agent_id: "1000002".into(),
        mall_api_base: "http://127.0.0.1:1/mall".into(),
        secrets: TenantSecrets {
            corp_secret: Secret::new("corp-secret"),
            callback_token: Secret::new("callback-token"),
            encoding_aes_key: Secret::new("a".repeat(43)),
            mall_api_token: Secret::new("mall-token"),
            mall_webhook_secret: Secret::new("webhook-secret"),
            message_feed_secret: None,
        },
        settings: Settings::default(),
        created_at: now(),
        updated_at: now(),
        version: 0,
    }
}

fn token(corp: &CorpId, fingerprint: &str, value: &str) -> AccessToken {
    AccessToken {
        corp_id: corp.clone(),
        secret_fingerprint: fingerprint.into(),
        token: Secret::new(value),
        expires_at: now().plus_secs(7200),
        version: 0,
    }
}

fn audit(tenant: &TenantId, at: Timestamp, action: &str) -> AuditEntry {
    AuditEntry {
        tenant: tenant.clone(),
        at,
        side: Actor::Wecom,
        action: action.into(),
        entity: "tag:1".into(),
        before: None,
        after: Some(serde_json::json!({ "name": action })),
        origin: "mall".into(),
    }
}

pub async fn stale_version_write_is_rejected_and_fresh_write_bumps_version(store: Arc<dyn Store>) {
    let t = tenant_id("t1");
    let mut g = group(&t, "VIP");
    store.put_group(&mut g).await.expect("create group");
    assert_eq!(g.version, 1, "a created entity is at version 1");
    let mut stale = g.clone();

    g.name = "VIP+".into();
    store
        .put_group(&mut g)
        .await
        .expect("update from the stored version");
    assert_eq!(g.version, 2, "a successful write bumps the version");

    stale.name = "Gold".into();
    let err = store
        .put_group(&mut stale)
        .await
        .expect_err("a write from version 1 after version 2 was stored must be rejected");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(
        stale.version, 1,
        "a rejected write leaves the caller's version alone"
    );

    let mut stored = store.get_group(&t, &g.id).await.unwrap().expect("stored");
    assert_eq!((stored.name.as_str(), stored.version), ("VIP+", 2));

    // Re-read, decide again, write: that is the way through a conflict.
    stored.name = "Gold".into();
    store
        .put_group(&mut stored)
        .await
        .expect("write from the fresh read");
    assert_eq!(stored.version, 3);
    let stored = store.get_group(&t, &g.id).await.unwrap().expect("stored");
    assert_eq!((stored.name.as_str(), stored.version), ("Gold", 3));

    // Creating (version 0) over an existing entity is a conflict too.
    let mut duplicate = g.clone();
    duplicate.version = 0;
    let err = store
        .put_group(&mut duplicate)
        .await
        .expect_err("create over existing");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}

pub async fn transaction_with_one_failing_condition_writes_nothing(store: Arc<dyn Store>) {
    let t = tenant_id("t1");
    let mut existing = group(&t, "Existing");
    store.put_group(&mut existing).await.unwrap();
    let mut stale = existing.clone();
    existing.name = "Existing v2".into();
    store.put_group(&mut existing).await.unwrap();

    let new_group = group(&t, "New");
    let new_tag = tag(&t, &new_group.id, "New tag");
    stale.name = "lost update".into();
    let err = store
        .transact(vec![
            Write::Group(new_group.clone()),
            Write::Tag(new_tag.clone()),
            Write::Group(stale),
        ])
        .await
        .expect_err("one stale write must cancel the transaction");
    match &err {
        StoreError::TransactionConflict { failed } => {
            assert_eq!(failed.len(), 1, "only the stale write failed: {failed:?}");
            let (position, key, _reason) = &failed[0];
            assert_eq!(
                *position, 2,
                "the failing write is named by position: {failed:?}"
            );
            assert!(
                key.contains(existing.id.as_str()),
                "the failing write's key names the group: {key}"
            );
        }
        other => panic!("expected TransactionConflict, got {other:?}"),
    }
    assert!(err.is_conflict());
    assert!(
        store.get_group(&t, &new_group.id).await.unwrap().is_none(),
        "nothing written"
    );
    assert!(
        store.get_tag(&t, &new_tag.id).await.unwrap().is_none(),
        "nothing written"
    );
    let unchanged = store.get_group(&t, &existing.id).await.unwrap().unwrap();
    assert_eq!(
        (unchanged.name.as_str(), unchanged.version),
        ("Existing v2", 2)
    );

    // The same writes with a current version all apply, each bumped.
    let mut fresh = unchanged;
    fresh.name = "Existing v3".into();
    store
        .transact(vec![
            Write::Group(new_group.clone()),
            Write::Tag(new_tag.clone()),
            Write::Group(fresh),
        ])
        .await
        .expect("all conditions hold");
    assert_eq!(
        store
            .get_group(&t, &new_group.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        store
            .get_tag(&t, &new_tag.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    let updated = store.get_group(&t, &existing.id).await.unwrap().unwrap();
    assert_eq!((updated.name.as_str(), updated.version), ("Existing v3", 3));
}

pub async fn concurrent_claims_admit_exactly_one_of_16(store: Arc<dyn Store>) {
    let key = format!("wecom-callback:{}", new_ordered_id());
    let now = now();
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let claimers: Vec<_> = (0..16)
        .map(|_| {
            let (store, key, start) = (store.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store
                    .claim(&key, now, now.plus_secs(30), now.plus_secs(3600))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for claimer in claimers {
        outcomes.push(claimer.await.expect("claimer task").expect("claim"));
    }
    let acquired = outcomes.iter().filter(|c| **c == Claim::Acquired).count();
    assert_eq!(acquired, 1, "exactly one claimer wins: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|c| matches!(c, Claim::Acquired | Claim::InProgress)),
        "the others see the key in progress: {outcomes:?}"
    );
}

pub async fn completed_claim_reports_completed_and_released_claim_is_free_again(
    store: Arc<dyn Store>,
) {
    let now = now();
    let (lock, expiry) = (now.plus_secs(30), now.plus_secs(3600));

    let done = format!("done:{}", new_ordered_id());
    assert_eq!(
        store.claim(&done, now, lock, expiry).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&done, now, lock, expiry).await.unwrap(),
        Claim::InProgress
    );
    store.complete(&done, expiry).await.expect("complete");
    assert_eq!(
        store.claim(&done, now, lock, expiry).await.unwrap(),
        Claim::Completed
    );
    // Still a duplicate after the working lock would have lapsed, until the record expires.
    let later = now.plus_secs(60);
    assert_eq!(
        store
            .claim(&done, later, later.plus_secs(30), expiry)
            .await
            .unwrap(),
        Claim::Completed
    );

    let failed = format!("failed:{}", new_ordered_id());
    assert_eq!(
        store.claim(&failed, now, lock, expiry).await.unwrap(),
        Claim::Acquired
    );
    store.release(&failed).await.expect("release");
    assert_eq!(
        store.claim(&failed, now, lock, expiry).await.unwrap(),
        Claim::Acquired,
        "a released key can be claimed again"
    );

    // A holder that crashed: once its lock lapses, the key is claimable again.
    let crashed = format!("crashed:{}", new_ordered_id());
    let short_lock = now.plus_secs(1);
    assert_eq!(
        store
            .claim(&crashed, now, short_lock, expiry)
            .await
            .unwrap(),
        Claim::Acquired
    );
    let after_lock = short_lock.plus_millis(1);
    assert_eq!(
        store
            .claim(&crashed, after_lock, after_lock.plus_secs(30), expiry)
            .await
            .unwrap(),
        Claim::Acquired
    );
}

pub async fn lease_excludes_other_holders_until_expiry_and_renews_for_its_holder(
    store: Arc<dyn Store>,
) {
    let lease = format!("token-refresh:{}", new_ordered_id());
    let t0 = now();
    let at = |secs: i64| t0.plus_secs(secs);

    assert!(
        store.acquire_lease(&lease, "a", t0, at(10)).await.unwrap(),
        "free lease"
    );
    assert!(
        !store
            .acquire_lease(&lease, "b", at(1), at(11))
            .await
            .unwrap(),
        "b is excluded while a holds the lease"
    );
    assert!(
        store
            .acquire_lease(&lease, "a", at(2), at(20))
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .acquire_lease(&lease, "b", at(15), at(25))
            .await
            .unwrap(),
        "the renewal extended a's lease to 20 s"
    );
    let expired = at(20).plus_millis(1);
    assert!(
        store
            .acquire_lease(&lease, "b", expired, at(40))
            .await
            .unwrap(),
        "after it expires, b takes it"
    );
    assert!(
        !store
            .acquire_lease(&lease, "a", at(21), at(41))
            .await
            .unwrap(),
        "a lost it"
    );

    store
        .release_lease(&lease, "a")
        .await
        .expect("releasing a lease one does not hold is a no-op");
    assert!(
        !store
            .acquire_lease(&lease, "c", at(22), at(42))
            .await
            .unwrap(),
        "b still holds it"
    );
    store.release_lease(&lease, "b").await.expect("release");
    assert!(
        store
            .acquire_lease(&lease, "c", at(22), at(42))
            .await
            .unwrap(),
        "released lease is free"
    );
}

pub async fn invalidate_token_deletes_only_the_named_token(store: Arc<dyn Store>) {
    let corp = CorpId::new_unchecked("ww-corp");
    let mut a = token(&corp, "fp-a", "token-a1");
    store.put_token(&mut a).await.unwrap();
    let mut b = token(&corp, "fp-b", "token-b1");
    store.put_token(&mut b).await.unwrap();
    let current = |fp: &'static str| {
        let (store, corp) = (store.clone(), corp.clone());
        async move {
            store
                .get_token(&corp, fp)
                .await
                .unwrap()
                .map(|t| t.token.expose().to_string())
        }
    };

    store
        .invalidate_token(&corp, "fp-a", "token-unknown")
        .await
        .unwrap();
    assert_eq!(
        current("fp-a").await.as_deref(),
        Some("token-a1"),
        "another token is kept"
    );

    // A refresher replaced a1 with a2; a caller whose call failed with a1 must not drop a2.
    a.token = Secret::new("token-a2");
    store.put_token(&mut a).await.unwrap();
    store
        .invalidate_token(&corp, "fp-a", "token-a1")
        .await
        .unwrap();
    assert_eq!(
        current("fp-a").await.as_deref(),
        Some("token-a2"),
        "the newer token stays"
    );

    store
        .invalidate_token(&corp, "fp-a", "token-a2")
        .await
        .unwrap();
    assert_eq!(current("fp-a").await, None, "the named token is deleted");
    assert_eq!(
        current("fp-b").await.as_deref(),
        Some("token-b1"),
        "another secret's token is untouched"
    );
    // Invalidating what is already gone is fine.
    store
        .invalidate_token(&corp, "fp-a", "token-a2")
        .await
        .unwrap();
}

pub async fn id_link_of_an_already_linked_side_id_is_rejected(store: Arc<dyn Store>) {
    let t = tenant_id("t1");
    let link = IdLink {
        tenant: t.clone(),
        side: Side::Wecom,
        kind: EntityKind::Tag,
        side_id: "etWeComTag1".into(),
        hub_id: "hub-1".into(),
    };
    let lookup = || store.lookup_link(&t, Side::Wecom, EntityKind::Tag, "etWeComTag1");

    store
        .transact(vec![Write::Link(link.clone())])
        .await
        .expect("first link");
    assert_eq!(lookup().await.unwrap().as_deref(), Some("hub-1"));

    let second = IdLink {
        hub_id: "hub-2".into(),
        ..link.clone()
    };
    let err = store
        .transact(vec![Write::Link(second.clone())])
        .await
        .expect_err("a side id maps to at most one hub object");
    match &err {
        StoreError::TransactionConflict { failed } => {
            assert_eq!(
                failed.iter().map(|f| f.0).collect::<Vec<_>>(),
                [0],
                "{failed:?}"
            );
        }
        other => panic!("expected TransactionConflict, got {other:?}"),
    }
    assert_eq!(
        lookup().await.unwrap().as_deref(),
        Some("hub-1"),
        "first link kept"
    );

    // The same id on the other side, or of the other kind, is another link.
    for (side, kind) in [
        (Side::Mall, EntityKind::Tag),
        (Side::Wecom, EntityKind::Group),
    ] {
        let other = IdLink {
            side,
            kind,
            ..second.clone()
        };
        store
            .transact(vec![Write::Link(other)])
            .await
            .expect("distinct link");
    }

    // Unlinking frees the side id.
    store
        .transact(vec![Write::Unlink(link)])
        .await
        .expect("unlink");
    assert_eq!(lookup().await.unwrap(), None);
    store
        .transact(vec![Write::Link(second.clone())])
        .await
        .expect("relink");
    assert_eq!(lookup().await.unwrap().as_deref(), Some("hub-2"));

    // A relink points a mapped side id at another hub object without a condition.
    store
        .transact(vec![Write::Relink(IdLink {
            hub_id: "hub-3".into(),
            ..second
        })])
        .await
        .expect("relink over an existing entry");
    assert_eq!(lookup().await.unwrap().as_deref(), Some("hub-3"));
}

pub async fn audit_lists_newest_first_in_cursor_pages(store: Arc<dyn Store>) {
    let t = tenant_id("t1");
    let base = now();
    for i in 0..5 {
        store
            .append_audit(&audit(&t, base.plus_secs(i), &format!("a{i}")))
            .await
            .unwrap();
    }
    // Another tenant's entries stay out of this tenant's listing.
    store
        .append_audit(&audit(&tenant_id("t2"), base.plus_secs(9), "other"))
        .await
        .unwrap();

    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_audit(&t, cursor.as_deref(), 2).await.unwrap();
        pages.push(
            page.items
                .iter()
                .map(|e| e.action.clone())
                .collect::<Vec<_>>(),
        );
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        assert!(pages.len() < 10, "the cursor must make progress: {pages:?}");
    }
    assert_eq!(
        pages,
        [vec!["a4", "a3"], vec!["a2", "a1"], vec!["a0"]],
        "newest first, two per page"
    );
    let first = store.list_audit(&t, None, 1).await.unwrap();
    assert_eq!(
        first.items[0],
        audit(&t, base.plus_secs(4), "a4"),
        "entries round-trip"
    );
}

pub async fn tenants_are_listed(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for id in ["acme", "globex", "initech"] {
        let mut t = tenant(id);
        store.put_tenant(&mut t).await.expect("create tenant");
        assert_eq!(t.version, 1);
        created.push(t);
    }
    let mut renamed = created[1].clone();
    renamed.agent_id = "1000003".into();
    store.put_tenant(&mut renamed).await.expect("update tenant");
    assert_eq!(renamed.version, 2);
    created[1] = renamed;
    assert_eq!(
        store.get_tenant(&created[1].id).await.unwrap().as_ref(),
        Some(&created[1])
    );

    // The listing reads the GSI, which DynamoDB keeps only eventually consistent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut listed = store.list_tenants().await.expect("list tenants");
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        if listed == created {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "listed {listed:?}, expected {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tag move must find every relation that carried the tag: customers with stored relations
/// are listed per tenant (each once, however often their relations were rewritten).
pub async fn customers_with_relations_are_listed_per_tenant(store: Arc<dyn Store>) {
    let (a, b) = (tenant_id("acme"), tenant_id("globex"));
    let customer = |t: &TenantId, c: &str, tags: &[&str]| CustomerRelations {
        tenant: t.clone(),
        external_userid: ExternalUserId::new_unchecked(c),
        relations: [(
            WecomUserId::new_unchecked("sales_li"),
            tags.iter().map(|x| WecomTagId::new_unchecked(*x)).collect(),
        )]
        .into_iter()
        .collect(),
        marking: Default::default(),
        updated_at: now(),
        version: 0,
    };
    for c in [
        customer(&a, "wm_2", &["et1"]),
        customer(&a, "wm_1", &[]),
        customer(&b, "wm_9", &["et2"]),
    ] {
        store
            .transact(vec![Write::Customer(c)])
            .await
            .expect("write customer");
    }
    let mut again = store
        .get_customer(&a, &ExternalUserId::new_unchecked("wm_2"))
        .await
        .unwrap()
        .expect("stored");
    again.relations.clear();
    store
        .transact(vec![Write::Customer(again.clone())])
        .await
        .expect("rewrite customer");

    let mut listed = store.list_customers(&a).await.expect("list customers");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ExternalUserId::new_unchecked("wm_1"),
            ExternalUserId::new_unchecked("wm_2")
        ]
    );
    assert_eq!(
        store.list_customers(&b).await.unwrap(),
        vec![ExternalUserId::new_unchecked("wm_9")]
    );
    let read = store
        .get_customer(&a, &ExternalUserId::new_unchecked("wm_2"))
        .await
        .unwrap()
        .unwrap();
    assert!(read.relations.is_empty());
    assert_eq!(read.version, 2);
}

/// A reconciliation run item: written with optimistic versions (two page jobs recording at
/// once: one wins, the other re-reads), read back whole with its chains, listed newest first.
pub async fn runs_are_versioned_and_listed_newest_first(store: Arc<dyn Store>) {
    let t = tenant_id(&format!("runs-{}", new_ordered_id()));
    let mut first = SyncRun::new(
        t.clone(),
        RunId::new_unchecked(new_ordered_id()),
        RunScope::All,
        Actor::Operator,
        now(),
    );
    store.put_run(&mut first).await.expect("create run");
    assert_eq!(first.version, 1);
    let mut mine = first.clone();
    let mut theirs = first.clone();
    mine.chains.get_mut("library").unwrap().page = 1;
    mine.drift.insert("tags.renamed.wecom".into(), 2);
    store.put_run(&mut mine).await.expect("first writer wins");
    theirs.chains.get_mut("library").unwrap().done = true;
    let err = store.put_run(&mut theirs).await.expect_err("stale writer");
    assert!(err.is_conflict(), "{err}");
    let read = store.get_run(&t, &first.id).await.unwrap().expect("stored");
    assert_eq!(read, mine, "the run round-trips with its chains and counts");

    let mut second = SyncRun::new(
        t.clone(),
        RunId::new_unchecked(new_ordered_id()),
        RunScope::Members,
        Actor::System,
        now(),
    );
    store.put_run(&mut second).await.expect("second run");
    let listed: Vec<RunId> = store
        .list_runs(&t, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![second.id.clone(), first.id.clone()]);
    assert_eq!(store.list_runs(&t, 1).await.unwrap()[0].id, second.id);
}

/// A transfer (issue 15) is a run holding every customer's state: the largest one allowed,
/// with WeCom ids, a reason and tags on every customer, is stored, versioned and read back
/// whole, and listed with the tenant's runs.
pub async fn transfer_runs_of_the_largest_size_round_trip(store: Arc<dyn Store>) {
    let t = tenant_id(&format!("transfers-{}", new_ordered_id()));
    let mut run = SyncRun::new(
        t.clone(),
        RunId::new_unchecked(new_ordered_id()),
        RunScope::Transfer,
        Actor::Operator,
        now(),
    );
    run.chains.clear();
    let customers = (0..MAX_TRANSFER_CUSTOMERS)
        .map(|i| {
            let tags = (0..5)
                .map(|k| HubTagId::new_unchecked(format!("tg_{}{k}", &new_ordered_id()[..20])))
                .collect();
            let mut c = TransferCustomer::new(
                ExternalUserId::new_unchecked(format!("wmAJ2GCAAAXtWyujaWJHDDGi0mAC{i:05}")),
                tags,
            );
            c.sent(TransferSent::Refused, 40128, || "the customer was transferred too often (once per 90 days, at most twice) (errcode 40128)".into(), now());
            c
        })
        .collect();
    run.transfer = Some(Box::new(TransferState {
        handover_userid: WecomUserId::new_unchecked("sales_li"),
        takeover_userid: WecomUserId::new_unchecked("sales_zhao"),
        resigned: true,
        customers,
        follow_at: Some(now()),
    }));
    store
        .put_run(&mut run)
        .await
        .expect("the largest transfer is stored");
    let mut stale = run.clone();
    run.transfer.as_mut().unwrap().customers[0].status = CustomerTransfer::Done;
    store
        .put_run(&mut run)
        .await
        .expect("rewritten at its version");
    let err = store.put_run(&mut stale).await.expect_err("stale writer");
    assert!(err.is_conflict(), "{err}");
    let read = store.get_run(&t, &run.id).await.unwrap().expect("stored");
    assert_eq!(read, run, "every customer's state round-trips");
    let listed = store.list_runs(&t, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scope, RunScope::Transfer);
}

fn mark(tenant: &str, job: &JobId, state: MarkState) -> QueueMark {
    QueueMark {
        tenant: tenant_id(tenant),
        job: job.clone(),
        state,
        expires_at: now().plus_secs(3600),
    }
}

/// Queue marks (a tenant's queued jobs, counted for SQS): one per job, however often it is
/// written; an update after the job was done does not bring its mark back; an expired mark
/// is gone; each tenant lists only its own.
pub async fn queue_marks_are_replaced_updated_only_while_present_and_listed_per_tenant(
    store: Arc<dyn Store>,
) {
    let jobs: Vec<JobId> = (0..3)
        .map(|_| JobId::new_unchecked(new_ordered_id()))
        .collect();
    let waiting = [
        mark("qa", &jobs[0], MarkState::Waiting),
        mark("qa", &jobs[1], MarkState::Waiting),
        mark("qb", &jobs[2], MarkState::Waiting),
    ];
    store.put_queue_marks(&waiting).await.expect("put");
    // A duplicate send of the same job: still one mark.
    store
        .put_queue_marks(&waiting[..1])
        .await
        .expect("put again");
    let listed = store
        .list_queue_marks(&tenant_id("qa"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        store
            .list_queue_marks(&tenant_id("qb"))
            .await
            .expect("list"),
        waiting[2..].to_vec()
    );

    let running = mark(
        "qa",
        &jobs[0],
        MarkState::Running {
            receive: 2,
            until: now().plus_secs(60),
        },
    );
    assert!(store.update_queue_mark(&running).await.expect("update"));
    store
        .delete_queue_mark(&tenant_id("qa"), &jobs[1])
        .await
        .expect("delete");
    // A late copy of the job just done: its mark stays deleted.
    let late = mark("qa", &jobs[1], MarkState::Waiting);
    assert!(!store.update_queue_mark(&late).await.expect("update"));
    assert_eq!(
        store
            .list_queue_marks(&tenant_id("qa"))
            .await
            .expect("list"),
        vec![running]
    );

    let mut expired = mark("qb", &jobs[2], MarkState::Dead);
    expired.expires_at = now().plus_secs(-10);
    store.put_queue_marks(&[expired]).await.expect("put");
    assert!(
        store
            .list_queue_marks(&tenant_id("qb"))
            .await
            .expect("list")
            .is_empty(),
        "an expired mark is not listed"
    );
}

fn rule(tenant: &TenantId, name: &str) -> Rule {
    Rule {
        tenant: tenant.clone(),
        id: RuleId::new_unchecked(new_ordered_id()),
        name: name.into(),
        trigger: Trigger::Keyword {
            any: vec!["优惠券".into()],
            from: Speaker::Customer,
        },
        conditions: vec![Condition::HasNone(vec![HubTagId::new_unchecked("done")])],
        actions: Actions {
            add: vec![HubTagId::new_unchecked("promo")],
            remove: vec![],
        },
        mode: Mode::Canary,
        canary_limit: Some(5),
        canary_customers: Default::default(),
        created_at: now(),
        updated_at: now(),
        version: 0,
    }
}

fn firing(tenant: &TenantId, rule: &RuleId, n: usize) -> Firing {
    Firing {
        tenant: tenant.clone(),
        id: FiringId::new_unchecked(new_ordered_id()),
        rule_id: rule.clone(),
        at: now(),
        customer: Some(ExternalUserId::new_unchecked(format!("wm{n}"))),
        member_id: Some(MemberId::new_unchecked(format!("m{n}"))),
        event: FiringEvent::Message {
            msgid: format!("msg{n}"),
            from: format!("wm{n}"),
            roomid: String::new(),
            text: "有优惠券吗".into(),
            msgtime: 0,
        },
        outcome: FiringOutcome::Applied,
        excluded_by: None,
        changes: Actions {
            add: vec![HubTagId::new_unchecked("promo")],
            remove: vec![],
        },
        written: vec![WrittenMark {
            tag_id: HubTagId::new_unchecked("promo"),
            present: true,
            at: now(),
        }],
        depth: 1,
        chain_stopped: None,
        undone_by: None,
        version: 0,
    }
}

/// Rules: versioned (a stale writer loses, as a canary's count and an operator's edit race),
/// listed per tenant, deleted only at the version read.
pub async fn rules_are_versioned_listed_per_tenant_and_deleted_at_their_version(
    store: Arc<dyn Store>,
) {
    let t = tenant_id(&format!("rules-{}", new_ordered_id()));
    let other = tenant_id(&format!("rules-{}", new_ordered_id()));
    let mut a = rule(&t, "a");
    store.put_rule(&mut a).await.expect("create");
    assert_eq!(a.version, 1);
    let mut mine = a.clone();
    let mut theirs = a.clone();
    mine.canary_customers.insert("c:wm1".into());
    store.put_rule(&mut mine).await.expect("first writer");
    theirs.mode = Mode::On;
    let err = store.put_rule(&mut theirs).await.expect_err("stale writer");
    assert!(err.is_conflict(), "{err}");
    let read = store.get_rule(&t, &a.id).await.unwrap().expect("stored");
    assert_eq!(
        read, mine,
        "the rule round-trips with its trigger and conditions"
    );

    let mut b = rule(&t, "b");
    store.put_rule(&mut b).await.unwrap();
    let mut c = rule(&other, "c");
    store.put_rule(&mut c).await.unwrap();
    let names: Vec<String> = store
        .list_rules(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b"], "oldest first, only this tenant's");

    let err = store
        .delete_rule(&t, &a.id, 1)
        .await
        .expect_err("a stale delete");
    assert!(err.is_conflict(), "{err}");
    store.delete_rule(&t, &a.id, 2).await.expect("delete");
    assert!(store.get_rule(&t, &a.id).await.unwrap().is_none());
}

/// Firings: written in the transaction of the change they record, paged newest first per
/// rule, versioned (an undo marks one undone once).
pub async fn firings_page_newest_first_per_rule_and_are_versioned(store: Arc<dyn Store>) {
    let t = tenant_id(&format!("firings-{}", new_ordered_id()));
    let r1 = RuleId::new_unchecked(new_ordered_id());
    let r2 = RuleId::new_unchecked(new_ordered_id());
    let mut ids = Vec::new();
    for n in 0..5 {
        let f = firing(&t, &r1, n);
        ids.push(f.id.clone());
        store.transact(vec![Write::Firing(f)]).await.expect("write");
    }
    store
        .transact(vec![Write::Firing(firing(&t, &r2, 9))])
        .await
        .unwrap();
    let first = store.list_firings(&t, &r1, None, 2).await.unwrap();
    let second = store
        .list_firings(&t, &r1, first.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    let third = store
        .list_firings(&t, &r1, second.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    let paged: Vec<FiringId> = [first.items, second.items, third.items.clone()]
        .concat()
        .into_iter()
        .map(|f| f.id)
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(paged, newest_first);
    assert!(third.next_cursor.is_none(), "the last page says so");

    let mut f = third.items[0].clone();
    assert_eq!(f.version, 1);
    let mut stale = f.clone();
    f.outcome = FiringOutcome::Undone;
    store.put_firing(&mut f).await.expect("undo it");
    stale.outcome = FiringOutcome::Undone;
    let err = store
        .put_firing(&mut stale)
        .await
        .expect_err("a second undo");
    assert!(err.is_conflict(), "{err}");
    let page = store.list_firings(&t, &r1, None, 10).await.unwrap();
    let read = page.items.iter().find(|x| x.id == f.id).unwrap();
    assert_eq!(read.outcome, FiringOutcome::Undone);
    assert_eq!(read.written, f.written, "what undo needs round-trips");
}

/// Channels: stored, listed per tenant, deleted.
pub async fn channels_are_stored_listed_and_deleted(store: Arc<dyn Store>) {
    let t = tenant_id(&format!("chan-{}", new_ordered_id()));
    let mut ch = Channel {
        tenant: t.clone(),
        id: ChannelId::new_unchecked(new_ordered_id()),
        name: "线下门店".into(),
        state: "store-1".into(),
        config_id: "cfg1".into(),
        qr_code: "https://wework.example/qr/1".into(),
        users: vec![WecomUserId::new_unchecked("li")],
        rule_ids: vec![RuleId::new_unchecked("r1")],
        created_at: now(),
        version: 0,
    };
    store.put_channel(&mut ch).await.expect("create");
    let listed = store.list_channels(&t).await.unwrap();
    assert_eq!(listed, vec![ch.clone()]);
    assert_eq!(
        store.get_channel(&t, &ch.id).await.unwrap(),
        Some(ch.clone())
    );
    store.delete_channel(&t, &ch.id).await.unwrap();
    assert!(store.list_channels(&t).await.unwrap().is_empty());
}

/// The rate budget's window (`wecom::budget`): callers from every process count in one
/// counter; exactly `limit` of them are admitted, the rest told it is full, and a fill (a
/// 45009) leaves nothing for anyone.
pub async fn counter_admits_exactly_its_limit_of_16_concurrent_callers_and_fills_at_once(
    store: Arc<dyn Store>,
) {
    let name = format!("budget-case#{}", new_ordered_id());
    let expires = now().plus_secs(3600);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, name) = (store.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            store
                .count_up(&name, 1, 10, expires)
                .await
                .expect("count_up")
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.extend(t.await.expect("task"));
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=10).collect::<Vec<u64>>(),
        "each admitted caller sees its own count"
    );
    assert_eq!(store.count_up(&name, 1, 10, expires).await.unwrap(), None);

    let other = format!("budget-case#{}", new_ordered_id());
    assert_eq!(
        store.count_up(&other, 1, 5, expires).await.unwrap(),
        Some(1)
    );
    // A fill adds the whole limit whatever was counted (no limit on the fill itself).
    assert_eq!(
        store.count_up(&other, 5, u64::MAX, expires).await.unwrap(),
        Some(6)
    );
    assert_eq!(store.count_up(&other, 1, 5, expires).await.unwrap(), None);
    assert_eq!(
        store.count_up(&other, 1, 0, expires).await.unwrap(),
        None,
        "a limit of 0 admits nobody"
    );
}

pub async fn scoped_group_round_trips_with_its_rule_group_range_and_mall_switch(
    store: Arc<dyn Store>,
) {
    let t = tenant_id(&format!("scope-{}", new_ordered_id().to_lowercase()));
    let mut plain = group(&t, "会员等级");
    store.put_group(&mut plain).await.expect("unscoped group");
    let mut scoped = group(&t, "售后服务");
    scoped.scope = Some(GroupScope {
        strategy_id: Some(42),
        name: "售后部".into(),
        departments: vec![3, 7],
        users: vec!["zhang_san".into()],
        include_sub: true,
    });
    scoped.carry_to_mall = false;
    store.put_group(&mut scoped).await.expect("scoped group");

    let read = store
        .get_group(&t, &scoped.id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(read, scoped, "scope and switch read back as written");
    let read = store
        .get_group(&t, &plain.id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!((read.scope, read.carry_to_mall), (None, true));

    // The range is edited like any field: a versioned write.
    let mut edited = scoped.clone();
    edited.scope.as_mut().unwrap().departments.push(9);
    store.put_group(&mut edited).await.expect("range edit");
    let listed = store.list_groups(&t).await.unwrap();
    let got = listed.iter().find(|g| g.id == scoped.id).expect("listed");
    assert_eq!(got.scope.as_ref().unwrap().departments, [3, 7, 9]);
    assert!(!got.carry_to_mall);
}

/// The corp's directory: one per tenant, versioned like every entity, and a corp of 2,000
/// staff in 200 departments (one stored item) round-trips whole.
pub async fn directory_of_2000_staff_round_trips_versioned_per_tenant(store: Arc<dyn Store>) {
    let t = tenant_id(&format!("dir-{}", new_ordered_id()));
    let other = tenant_id(&format!("dir-{}", new_ordered_id()));
    assert_eq!(store.get_directory(&t).await.unwrap(), None);
    let departments: Vec<Department> = (1..=200)
        .map(|id| Department {
            id,
            name: format!("门店{id}"),
            parent_id: if id == 1 { 0 } else { id / 2 },
            order: 100_000 - id,
        })
        .collect();
    let staff: Vec<StaffMember> = (0..2000)
        .map(|i| StaffMember {
            userid: format!("staff{i:05}"),
            name: format!("员工{i}"),
            departments: vec![1 + i % 200, 1 + (i * 7) % 200],
        })
        .collect();
    let mut dir = Directory::new(t.clone(), departments, staff, now());
    store.put_directory(&mut dir).await.expect("first write");
    assert_eq!(dir.version, 1);
    assert_eq!(store.get_directory(&t).await.unwrap(), Some(dir.clone()));
    assert_eq!(store.get_directory(&other).await.unwrap(), None);

    let mut stale = dir.clone();
    dir.departments.pop();
    store.put_directory(&mut dir).await.expect("fresh write");
    assert_eq!(dir.version, 2);
    let err = store
        .put_directory(&mut stale)
        .await
        .expect_err("a stale write is refused");
    assert!(err.is_conflict(), "{err}");
    let stored = store.get_directory(&t).await.unwrap().unwrap();
    assert_eq!(stored.departments.len(), 199);
    assert_eq!(stored.descendants(2).len(), dir.descendants(2).len());
}
