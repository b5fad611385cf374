//! Every call of contract §3 round-trips, and retried writes have one effect.

use crate::helpers::*;
use std::time::Duration;
use tagsync::domain::{ExternalUserId, MallTagId, MemberId};
use tagsync::mall::client::{Deleted, GroupPatch, MAX_IDS_PER_MEMBER_CALL, MemberLookup, TagPatch};
use tagsync::ports::{Clock, ManualClock, SystemClock};
use tagsync::sim::mall::NewMember;

#[tokio::test]
async fn library_calls_round_trip() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);

    let level = c
        .create_group(ep, &key("g1"), "客户等级", Some(3))
        .await
        .unwrap();
    assert_eq!((level.name.as_str(), level.order), ("客户等级", 3));
    let source = c
        .create_group(ep, &key("g2"), "Source", None)
        .await
        .unwrap();
    assert_eq!(source.order, 0, "order defaults to 0");

    let renamed = c
        .update_group(
            ep,
            &key("g1-rename"),
            &level.id,
            &GroupPatch {
                name: Some("Level".into()),
                order: Some(5),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.id.clone(), renamed.name.as_str(), renamed.order),
        (level.id.clone(), "Level", 5)
    );

    let vip = c
        .create_tag(ep, &key("t1"), &level.id, "VIP", Some(9))
        .await
        .unwrap();
    assert_eq!(vip.group_id, level.id);
    let moved = c
        .update_tag(
            ep,
            &key("t1-move"),
            &vip.id,
            &TagPatch {
                name: Some("VIP+".into()),
                group_id: Some(source.id.clone()),
                ..TagPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            moved.id.clone(),
            moved.group_id.clone(),
            moved.name.as_str(),
            moved.order
        ),
        (vip.id.clone(), source.id.clone(), "VIP+", 9)
    );

    let library = c.list_groups(ep).await.unwrap();
    assert_eq!(library, m.sim.library());
    // Larger order first.
    assert_eq!(library[0].group.id, level.id);
    assert!(library[0].tags.is_empty());
    assert_eq!(library[1].tags, vec![moved.clone()]);

    assert_eq!(
        c.delete_tag(ep, &key("t1-del"), &vip.id).await.unwrap(),
        Deleted::Deleted
    );
    assert_eq!(
        c.delete_group(ep, &key("g1-del"), &level.id).await.unwrap(),
        Deleted::Deleted
    );
    let library = c.list_groups(ep).await.unwrap();
    assert_eq!(library.len(), 1);
    assert!(library[0].tags.is_empty());
}

#[tokio::test]
async fn member_calls_round_trip() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.operator().create_group("G", 0).unwrap();
    let a = m.sim.operator().create_tag(&group.id, "a", 0).unwrap();
    let b = m.sim.operator().create_tag(&group.id, "b", 0).unwrap();
    let member = m
        .sim
        .operator()
        .create_member(NewMember {
            unionid: Some("union-1".into()),
            external_userid: Some("wm-ext-1".into()),
            mobile: Some("13800000000".into()),
        })
        .unwrap();

    let got = c.get_member(ep, &member.id).await.unwrap().unwrap();
    assert_eq!(got, member);
    assert_eq!(
        c.get_member(ep, &MemberId::new_unchecked("m_999"))
            .await
            .unwrap(),
        None
    );
    let ext = ExternalUserId::new_unchecked("wm-ext-1");
    for by in [
        MemberLookup::Unionid("union-1"),
        MemberLookup::ExternalUserid(&ext),
        MemberLookup::Mobile("13800000000"),
    ] {
        assert_eq!(
            c.lookup_member(ep, by).await.unwrap().as_ref(),
            Some(&member),
            "{by:?}"
        );
    }
    assert_eq!(
        c.lookup_member(ep, MemberLookup::Unionid("nobody"))
            .await
            .unwrap(),
        None
    );

    let after = c
        .change_member_tags(
            ep,
            &key("m1"),
            &member.id,
            &[a.id.clone(), b.id.clone()],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(after.tag_ids, vec![a.id.clone(), b.id.clone()]);
    let after = c
        .change_member_tags(
            ep,
            &key("m1-b"),
            &member.id,
            &[],
            std::slice::from_ref(&a.id),
        )
        .await
        .unwrap();
    assert_eq!(after.tag_ids, vec![b.id.clone()]);
    assert_eq!(m.sim.member(&member.id).unwrap(), after);
}

#[tokio::test]
async fn a_retried_create_with_the_same_key_has_one_effect() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.silent().create_group("G", 0).unwrap();
    let k = key("create-tag:hub-1");

    let first = c.create_tag(ep, &k, &group.id, "VIP", None).await.unwrap();
    let again = c.create_tag(ep, &k, &group.id, "VIP", None).await.unwrap();
    assert_eq!(first, again, "the replay is the stored answer");
    assert_eq!(m.sim.library()[0].tags.len(), 1);

    let log = m.sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].status, log[0].replayed), (201, false));
    assert_eq!((log[1].status, log[1].replayed), (201, true));
    assert_eq!(log[1].response, log[0].response);
    m.settle().await;
    let created = m
        .sim
        .events()
        .iter()
        .filter(|e| e["type"] == "tag.created")
        .count();
    assert_eq!(created, 1, "one effect, one webhook");
}

#[tokio::test]
async fn a_replayed_key_returns_the_stored_error_too() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let taken = m.sim.silent().create_group("Level", 0).unwrap();
    let k = key("create-group:hub-1");
    let err = c.create_group(ep, &k, "Level", None).await.unwrap_err();
    assert_eq!(err.existing_id(), Some(taken.id.as_str()));

    // The name is free now, but the key's first final answer (409) is what a retry gets.
    m.sim.silent().delete_group(&taken.id).unwrap();
    let err = c.create_group(ep, &k, "Level", None).await.unwrap_err();
    assert_eq!(err.existing_id(), Some(taken.id.as_str()));
    assert!(m.sim.library().is_empty());
    assert!(m.sim.requests()[1].replayed);

    // A new key is a new intent.
    c.create_group(ep, &key("create-group:hub-2"), "Level", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_timed_out_write_is_replayed_on_retry() {
    let m = spawn_mall().await;
    let ep = &m.ep;
    let impatient = m.client.clone().with_timeout(Duration::from_millis(300));
    let k = key("create-group:slow");

    m.sim.update_faults(|f| f.delay_ms = 1500);
    let err = impatient
        .create_group(ep, &k, "Slow", None)
        .await
        .unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(err.status, None);
    // The mall did it anyway.
    wait_for("the slow create to land", || m.sim.library().len() == 1).await;

    m.sim.update_faults(|f| f.delay_ms = 0);
    let group = m.client.create_group(ep, &k, "Slow", None).await.unwrap();
    assert_eq!(group.id, m.sim.library()[0].group.id);
    assert_eq!(m.sim.library().len(), 1);
    assert!(m.sim.requests().last().unwrap().replayed);
}

#[tokio::test]
async fn large_member_tag_changes_are_split_and_retried_idempotently() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.silent().create_group("Many", 0).unwrap();
    let tags: Vec<MallTagId> = (0..150)
        .map(|i| {
            m.sim
                .silent()
                .create_tag(&group.id, &format!("t{i}"), 0)
                .unwrap()
                .id
        })
        .collect();
    let member = m.sim.silent().create_member(NewMember::default()).unwrap();
    let k = key("member-tags:m");

    let after = c
        .change_member_tags(ep, &k, &member.id, &tags, &[])
        .await
        .unwrap();
    assert_eq!(after.tag_ids.len(), 150);
    let calls = m.sim.requests();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let body = call.request.as_ref().unwrap();
        let ids = body["add"].as_array().unwrap().len() + body["remove"].as_array().unwrap().len();
        assert!(ids <= MAX_IDS_PER_MEMBER_CALL, "{ids} ids in one call");
    }
    assert_ne!(calls[0].idempotency_key, calls[1].idempotency_key);

    // The same job retried sends the same keys and changes nothing.
    c.change_member_tags(ep, &k, &member.id, &tags, &[])
        .await
        .unwrap();
    let calls = m.sim.requests();
    assert_eq!(calls.len(), 4);
    assert!(calls[2].replayed && calls[3].replayed);
    assert_eq!(calls[2].idempotency_key, calls[0].idempotency_key);
    m.settle().await;
    assert_eq!(
        m.sim.events().len(),
        2,
        "one member.tags_changed per effective call"
    );
}

#[tokio::test]
async fn idempotency_records_expire_after_24_hours_of_simulator_time() {
    let clock = ManualClock::starting_at(SystemClock.now());
    let mut config = test_config();
    config.clock = std::sync::Arc::new(clock.clone());
    let m = spawn_mall_with(config).await;
    let (c, ep) = (&m.client, &m.ep);
    let k = key("create-group:x");

    let first = c.create_group(ep, &k, "X", None).await.unwrap();
    m.sim.silent().delete_group(&first.id).unwrap();
    clock.advance_millis(24 * 3600 * 1000 - 1);
    assert_eq!(c.create_group(ep, &k, "X", None).await.unwrap(), first);
    assert!(m.sim.library().is_empty(), "still a replay");

    clock.advance_millis(1);
    let second = c.create_group(ep, &k, "X", None).await.unwrap();
    assert_ne!(
        second.id, first.id,
        "carried out afresh; ids are never reused"
    );
    assert_eq!(m.sim.library().len(), 1);
}
