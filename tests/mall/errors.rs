//! The mall's error answers, as the one classifier sees them.

use crate::helpers::*;
use std::time::Duration;
use tagsync::domain::{MallGroupId, MallTagId, MemberId, Secret};
use tagsync::mall::client::{Deleted, GroupPatch, MallEndpoint, Verdict};
use tagsync::sim::mall::NewMember;

#[tokio::test]
async fn name_taken_returns_the_existing_id_for_groups_and_tags() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.operator().create_group("Level", 0).unwrap();
    let other = m.sim.operator().create_group("Other", 0).unwrap();
    let vip = m.sim.operator().create_tag(&group.id, "VIP", 0).unwrap();

    let err = c
        .create_group(ep, &key("g"), "Level", None)
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(409));
    assert_eq!(err.code.as_deref(), Some("name_taken"));
    assert_eq!(
        err.verdict,
        Verdict::NameTaken {
            existing_id: group.id.to_string()
        }
    );
    assert!(!err.retryable());

    let err = c
        .create_tag(ep, &key("t"), &group.id, "VIP", None)
        .await
        .unwrap_err();
    assert_eq!(err.existing_id(), Some(vip.id.as_str()));
    // Renaming onto a sibling's name is the same conflict.
    let err = c
        .update_group(
            ep,
            &key("g-rename"),
            &other.id,
            &GroupPatch {
                name: Some("Level".into()),
                order: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.existing_id(), Some(group.id.as_str()));
    // The same name in another group is fine.
    c.create_tag(ep, &key("t2"), &other.id, "VIP", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rate_limit_is_surfaced_with_its_delay_and_a_loop_that_honours_it_succeeds() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    m.sim.set_rate_limit(Some(1));

    c.list_groups(ep).await.unwrap();
    let err = first_error(|| c.list_groups(ep)).await;
    assert_eq!(err.status, Some(429));
    assert_eq!(err.code.as_deref(), Some("rate_limited"));
    assert_eq!(err.verdict, Verdict::RetryAfter(Duration::from_secs(1)));
    assert!(err.retryable());
    assert_eq!(m.sim.requests().last().unwrap().retry_after, Some(1));

    // A caller that waits as told gets through, with the same key for the write.
    let k = key("create-group:rl");
    let mut tries = 0;
    let group = loop {
        tries += 1;
        match c.create_group(ep, &k, "Paced", None).await {
            Ok(group) => break group,
            Err(e) if e.retryable() && tries < 5 => {
                tokio::time::sleep(e.retry_after().unwrap()).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        m.sim.requests().iter().filter(|r| r.status == 429).count() >= 1,
        "the pacing was exercised"
    );
    assert_eq!(m.sim.library()[0].group, group);
}

#[tokio::test]
async fn a_server_error_then_success_succeeds_on_retry_without_a_stored_answer() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.silent().create_group("G", 0).unwrap();
    m.sim.update_faults(|f| f.fail_next = 1);
    let k = key("create-tag:500");

    let err = c
        .create_tag(ep, &k, &group.id, "VIP", None)
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(500));
    assert!(err.retryable(), "{err}");
    assert!(m.sim.library()[0].tags.is_empty(), "a 500 has no effect");

    let tag = c.create_tag(ep, &k, &group.id, "VIP", None).await.unwrap();
    assert_eq!(m.sim.library()[0].tags, vec![tag]);
    let log = m.sim.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 201]
    );
    assert!(!log[1].replayed, "the 500 was not stored");
}

#[tokio::test]
async fn deleting_something_already_gone_is_done() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.silent().create_group("G", 0).unwrap();
    let tag = m.sim.silent().create_tag(&group.id, "t", 0).unwrap();

    assert_eq!(
        c.delete_tag(ep, &key("d1"), &MallTagId::new_unchecked("t_999"))
            .await
            .unwrap(),
        Deleted::AlreadyGone
    );
    assert_eq!(
        c.delete_tag(ep, &key("d2"), &tag.id).await.unwrap(),
        Deleted::Deleted
    );
    assert_eq!(
        c.delete_tag(ep, &key("d3"), &tag.id).await.unwrap(),
        Deleted::AlreadyGone
    );
    assert_eq!(
        c.delete_group(ep, &key("d4"), &group.id).await.unwrap(),
        Deleted::Deleted
    );
    assert_eq!(
        c.delete_group(ep, &key("d5"), &MallGroupId::new_unchecked("g_999"))
            .await
            .unwrap(),
        Deleted::AlreadyGone
    );
}

#[tokio::test]
async fn unknown_tag_ids_are_permanent_and_named() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.silent().create_group("G", 0).unwrap();
    let known = m.sim.silent().create_tag(&group.id, "t", 0).unwrap();
    let member = m.sim.silent().create_member(NewMember::default()).unwrap();
    let ghost = MallTagId::new_unchecked("t_424242");

    let err = c
        .change_member_tags(
            ep,
            &key("m"),
            &member.id,
            &[known.id.clone(), ghost.clone()],
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(400));
    assert_eq!(err.code.as_deref(), Some("unknown_tag"));
    assert_eq!(&*err.unknown_ids, [ghost]);
    assert!(matches!(&err.verdict, Verdict::Permanent(r) if r.contains("t_424242")));
    assert!(!err.retryable());
    assert!(
        m.sim.member(&member.id).unwrap().tag_ids.is_empty(),
        "all or nothing"
    );
}

#[tokio::test]
async fn other_client_errors_are_permanent() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let bad = MallEndpoint {
        base_url: m.sim.base_url(),
        token: Secret::new("not-the-token"),
    };
    let err = c.list_groups(&bad).await.unwrap_err();
    assert_eq!(err.status, Some(401));
    assert_eq!(err.verdict, Verdict::Permanent("bad mall token".into()));
    assert!(!err.to_string().contains("not-the-token"));

    let too_long = "x".repeat(31);
    let err = c
        .create_group(ep, &key("long"), &too_long, None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.code.as_deref()),
        (Some(400), Some("invalid_request"))
    );
    assert!(!err.retryable());

    let err = c
        .create_tag(
            ep,
            &key("nogroup"),
            &MallGroupId::new_unchecked("g_999"),
            "t",
            None,
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found() && !err.retryable());

    let err = c
        .change_member_tags(
            ep,
            &key("nomember"),
            &MemberId::new_unchecked("m_999"),
            &[],
            &[],
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found());
}

#[tokio::test]
async fn the_tag_limit_is_a_permanent_limit_exceeded() {
    let mut config = test_config();
    config.max_tags = 2;
    let m = spawn_mall_with(config).await;
    let (c, ep) = (&m.client, &m.ep);
    let group = m.sim.silent().create_group("G", 0).unwrap();
    c.create_tag(ep, &key("1"), &group.id, "a", None)
        .await
        .unwrap();
    c.create_tag(ep, &key("2"), &group.id, "b", None)
        .await
        .unwrap();
    let err = c
        .create_tag(ep, &key("3"), &group.id, "c", None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.code.as_deref()),
        (Some(400), Some("limit_exceeded"))
    );
    assert!(!err.retryable());
}

#[tokio::test]
async fn no_answer_is_retryable() {
    let m = spawn_mall().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let ep = MallEndpoint {
        base_url: format!("http://{addr}"),
        token: m.ep.token.clone(),
    };
    let err = m.client.list_groups(&ep).await.unwrap_err();
    assert_eq!(err.status, None);
    assert!(err.retryable(), "{err}");
}

#[tokio::test]
async fn writes_without_a_key_are_refused_and_not_carried_out() {
    let m = spawn_mall().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/tag-groups", m.sim.base_url()))
        .bearer_auth(m.ep.token.expose())
        .json(&serde_json::json!({"name": "NoKey"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(m.sim.library().is_empty());
}

#[tokio::test]
async fn unknown_request_fields_are_refused() {
    let m = spawn_mall().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/tags", m.sim.base_url()))
        .bearer_auth(m.ep.token.expose())
        .header("Idempotency-Key", "k-typo")
        .json(&serde_json::json!({"groupId": "g_1", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
