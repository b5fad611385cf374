//! `POST /members:batch-tags` (contract 1.1, §3.1) between the client and the simulator: one
//! result per item applied on its own, one key and one webhook per changed member, the
//! request's own limits, and a 1.0 mall's 404/405 remembered by the client.

use crate::helpers::*;
use serde_json::json;
use tagsync::domain::{MallTagId, MemberId};
use tagsync::mall::client::MemberTagItem;
use tagsync::mall::webhook::MallEvent;
use tagsync::sim::mall::{BatchEndpoint, NewMember};

fn item(member: &MemberId, add: &[&MallTagId]) -> MemberTagItem {
    MemberTagItem {
        member_id: member.clone(),
        add: add.iter().map(|t| (*t).clone()).collect(),
        remove: vec![],
    }
}

#[tokio::test]
async fn each_item_of_a_batch_is_applied_on_its_own_with_one_webhook_per_changed_member() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let op = m.sim.operator();
    let g = op.create_group("Level", 1).unwrap();
    let gold = op.create_tag(&g.id, "Gold", 1).unwrap().id;
    let alice = op.create_member(NewMember::unionid("u-a")).unwrap().id;
    let bob = op.create_member(NewMember::unionid("u-b")).unwrap().id;
    op.tag_member(&bob, &gold).unwrap();
    m.settle().await;
    let hooks_before = m.hooks.accepted().len();
    let ghost = MemberId::new_unchecked("m_999");
    let unknown = MallTagId::new_unchecked("t_999");

    let k = key("batch-1");
    let items = [
        item(&alice, &[&gold]),
        item(&ghost, &[&gold]),
        item(&bob, &[&gold]),
        MemberTagItem {
            member_id: MemberId::new_unchecked("m_998"),
            ..item(&alice, &[&unknown])
        },
    ];
    let results = c
        .batch_member_tags(ep, &k, &items)
        .await
        .unwrap()
        .expect("the simulator offers the batch endpoint");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().tag_ids, vec![gold.clone()]);
    assert_eq!(results[1].as_ref().unwrap_err().status, Some(404));
    assert_eq!(
        results[2].as_ref().unwrap().tag_ids,
        vec![gold.clone()],
        "adding a present tag is a no-op"
    );
    assert_eq!(results[3].as_ref().unwrap_err().status, Some(404));
    assert_eq!(m.sim.member(&alice).unwrap().tag_ids, vec![gold.clone()]);
    m.settle().await;
    let hooks = m.hooks.accepted()[hooks_before..].to_vec();
    assert_eq!(hooks.len(), 1, "only alice changed: {hooks:?}");
    assert_eq!(
        hooks[0].hook.event,
        MallEvent::MemberTagsChanged {
            member_id: alice.clone(),
            added: vec![gold.clone()],
            removed: vec![],
        }
    );
    assert_eq!(hooks[0].hook.origin_request_id.as_deref(), Some(k.as_str()));

    // A replay answers the stored results and changes nothing.
    op.untag_member(&alice, &gold).unwrap();
    let again = c.batch_member_tags(ep, &k, &items).await.unwrap().unwrap();
    assert_eq!(again[0].as_ref().unwrap().tag_ids, vec![gold.clone()]);
    assert_eq!(m.sim.member(&alice).unwrap().tag_ids, vec![]);
    assert!(m.sim.requests().last().unwrap().replayed);

    // An unknown tag fails its own item only.
    let results = c
        .batch_member_tags(
            ep,
            &key("batch-2"),
            &[item(&alice, &[&unknown]), item(&bob, &[])],
        )
        .await
        .unwrap()
        .unwrap();
    let e = results[0].as_ref().unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref(), e.unknown_ids.to_vec()),
        (Some(400), Some("unknown_tag"), vec![unknown.clone()])
    );
    assert!(results[1].is_ok());
}

#[tokio::test]
async fn a_batch_counts_once_against_the_rate_limit_and_refuses_what_the_contract_forbids() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let op = m.sim.operator();
    let members: Vec<MemberId> = (0..100)
        .map(|i| {
            op.create_member(NewMember::unionid(&format!("u-{i}")))
                .unwrap()
                .id
        })
        .collect();
    let items: Vec<MemberTagItem> = members.iter().map(|m| item(m, &[])).collect();
    m.sim.set_rate_limit(Some(1));
    let requests_before = m.sim.requests().len();
    c.batch_member_tags(ep, &key("hundred"), &items)
        .await
        .unwrap()
        .unwrap();
    let e = first_error(|| c.list_groups(ep)).await;
    assert_eq!(e.status, Some(429), "one request's worth spent: {e}");
    assert_eq!(m.sim.requests().len() - requests_before, 2);
    m.sim.set_rate_limit(None);

    let post = |body: serde_json::Value| {
        let m = &m;
        async move {
            reqwest::Client::new()
                .post(format!("{}/members:batch-tags", m.sim.base_url()))
                .bearer_auth(m.ep.token.expose())
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let one = json!({"member_id": members[0], "add": []});
    assert_eq!(post(json!({"items": []})).await, 400, "no items");
    assert_eq!(
        post(json!({"items": vec![one.clone(); 2]})).await,
        400,
        "a member twice"
    );
    let many: Vec<_> = (0..101)
        .map(|i| json!({"member_id": format!("m_{}", i + 1000), "add": []}))
        .collect();
    assert_eq!(post(json!({ "items": many })).await, 400, "101 items");
    assert_eq!(
        c.batch_member_tags(ep, &key("none"), &[])
            .await
            .unwrap_err()
            .status,
        None
    );
}

#[tokio::test]
async fn a_mall_without_the_batch_endpoint_is_remembered_and_not_asked_again() {
    for missing in [BatchEndpoint::NotFound, BatchEndpoint::MethodNotAllowed] {
        let m = spawn_mall().await;
        let (c, ep) = (&m.client, &m.ep);
        let alice = m
            .sim
            .operator()
            .create_member(NewMember::unionid("u-a"))
            .unwrap()
            .id;
        m.sim.set_batch_endpoint(missing);
        let items = [item(&alice, &[])];
        assert!(
            c.batch_member_tags(ep, &key("b1"), &items)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!c.offers_batch(ep));
        let asked = m.sim.requests().len();
        assert!(
            c.batch_member_tags(ep, &key("b2"), &items)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            m.sim.requests().len(),
            asked,
            "{missing:?}: not asked again"
        );
    }
}
