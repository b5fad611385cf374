//! The simulator's webhooks: signed, one per change, carrying `origin_request_id` for API
//! changes only, and the delivery faults.

use crate::helpers::*;
use tagsync::domain::{ExternalUserId, MallTagId, MemberId};
use tagsync::mall::client::GroupPatch;
use tagsync::mall::webhook::{MallEvent, MallTag, MallTagGroup};
use tagsync::sim::mall::NewMember;

fn events(m: &TestMall) -> Vec<MallEvent> {
    m.hooks
        .accepted()
        .into_iter()
        .map(|r| r.hook.event)
        .collect()
}

#[tokio::test]
async fn api_changes_send_signed_webhooks_carrying_the_request_key() {
    let m = spawn_mall().await;
    let (c, ep) = (&m.client, &m.ep);
    let k1 = key("create-group:h1");
    let k2 = key("rename-group:h1");
    let group = c.create_group(ep, &k1, "Level", Some(1)).await.unwrap();
    let renamed = c
        .update_group(
            ep,
            &k2,
            &group.id,
            &GroupPatch {
                name: Some("Tier".into()),
                order: None,
            },
        )
        .await
        .unwrap();
    m.settle().await;

    let got = m.hooks.accepted();
    assert_eq!(
        m.hooks.rejected(),
        Vec::<u16>::new(),
        "every signature verified"
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].hook.event, MallEvent::TagGroupCreated { group });
    assert_eq!(got[0].hook.origin_request_id.as_deref(), Some(k1.as_str()));
    assert_eq!(
        got[1].hook.event,
        MallEvent::TagGroupUpdated { group: renamed }
    );
    assert_eq!(got[1].hook.origin_request_id.as_deref(), Some(k2.as_str()));
    for r in &got {
        assert_eq!(r.header_event_id, r.hook.event_id);
        assert!(r.hook.event_id.starts_with("evt_"));
    }
    assert_ne!(got[0].hook.event_id, got[1].hook.event_id);
    // A replay changes nothing, so it sends nothing.
    c.create_group(ep, &k1, "Level", Some(1)).await.unwrap();
    m.settle().await;
    assert_eq!(m.hooks.accepted().len(), 2);
}

#[tokio::test]
async fn operator_changes_send_webhooks_with_a_null_origin() {
    let m = spawn_mall().await;
    let op = m.sim.operator();
    let g1 = op.create_group("A", 0).unwrap();
    let g2 = op.create_group("B", 0).unwrap();
    let tag = op.create_tag(&g1.id, "VIP", 2).unwrap();
    let renamed = op.rename_tag(&tag.id, "VIP!").unwrap();
    let moved = op.move_tag(&tag.id, &g2.id).unwrap();
    let reordered = op.reorder_group(&g2.id, 7).unwrap();
    let member = op.create_member(NewMember::external("wm-1")).unwrap();
    op.tag_member(&member.id, &tag.id).unwrap();
    op.untag_member(&member.id, &tag.id).unwrap();
    op.delete_tag(&tag.id).unwrap();
    m.settle().await;

    let got = m.hooks.accepted();
    assert!(got.iter().all(|r| r.hook.origin_request_id.is_none()));
    let tag_of = |t: &MallTag| t.clone();
    let group_of = |g: &MallTagGroup| g.clone();
    assert_eq!(
        events(&m),
        vec![
            MallEvent::TagGroupCreated {
                group: group_of(&g1)
            },
            MallEvent::TagGroupCreated {
                group: group_of(&g2)
            },
            MallEvent::TagCreated { tag: tag_of(&tag) },
            MallEvent::TagUpdated { tag: renamed },
            MallEvent::TagUpdated { tag: moved.clone() },
            MallEvent::TagGroupUpdated { group: reordered },
            MallEvent::MemberBound {
                member_id: member.id.clone(),
                unionid: None,
                external_userid: Some(ExternalUserId::new_unchecked("wm-1")),
                mobile: None,
            },
            MallEvent::MemberTagsChanged {
                member_id: member.id.clone(),
                added: vec![tag.id.clone()],
                removed: vec![],
            },
            MallEvent::MemberTagsChanged {
                member_id: member.id.clone(),
                added: vec![],
                removed: vec![tag.id.clone()],
            },
            MallEvent::TagDeleted {
                tag_id: tag.id.clone(),
                group_id: moved.group_id,
            },
        ]
    );
    // occurred_at is millisecond RFC 3339 and in order.
    let times: Vec<_> = got.iter().map(|r| r.hook.occurred_at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn deletions_cascade_without_events_of_their_own() {
    let m = spawn_mall().await;
    let s = m.sim.silent();
    let g = s.create_group("G", 0).unwrap();
    let t1 = s.create_tag(&g.id, "a", 0).unwrap();
    let t2 = s.create_tag(&g.id, "b", 0).unwrap();
    let member = s.create_member(NewMember::default()).unwrap();
    s.change_member_tags(&member.id, &[t1.id.clone(), t2.id.clone()], &[])
        .unwrap();

    m.sim.operator().delete_tag(&t1.id).unwrap();
    m.sim.operator().delete_group(&g.id).unwrap();
    m.settle().await;
    assert_eq!(
        events(&m),
        vec![
            MallEvent::TagDeleted {
                tag_id: t1.id,
                group_id: g.id.clone()
            },
            MallEvent::TagGroupDeleted { group_id: g.id },
        ]
    );
    assert!(m.sim.member(&member.id).unwrap().tag_ids.is_empty());
    assert!(m.sim.library().is_empty());
}

#[tokio::test]
async fn silent_changes_send_nothing() {
    let m = spawn_mall().await;
    let s = m.sim.silent();
    let g = s.create_group("G", 0).unwrap();
    let t = s.create_tag(&g.id, "t", 0).unwrap();
    s.rename_group(&g.id, "H").unwrap();
    let member = s.create_member(NewMember::unionid("u1")).unwrap();
    s.bind_member(&member.id, NewMember::external("wm9"))
        .unwrap();
    s.tag_member(&member.id, &t.id).unwrap();
    s.delete_group(&g.id).unwrap();
    m.settle().await;
    assert!(m.sim.events().is_empty());
    assert!(m.sim.deliveries().is_empty());
    assert!(m.hooks.accepted().is_empty());
    // The changes themselves happened.
    let member = m.sim.member(&member.id).unwrap();
    assert_eq!(member.unionid.as_deref(), Some("u1"));
    assert_eq!(member.external_userid.unwrap().as_str(), "wm9");
}

#[tokio::test]
async fn a_dropped_webhook_is_never_sent() {
    let m = spawn_mall().await;
    m.sim.update_faults(|f| f.drop_webhooks_next = 1);
    let op = m.sim.operator();
    op.create_group("lost", 0).unwrap();
    let kept = op.create_group("kept", 0).unwrap();
    m.settle().await;
    assert_eq!(events(&m), vec![MallEvent::TagGroupCreated { group: kept }]);
    let log = m.sim.deliveries();
    assert_eq!(log.len(), 2);
    assert!(log[0].dropped && log[0].status.is_none());
    assert_eq!((log[1].dropped, log[1].status), (false, Some(202)));
    assert_eq!(
        m.sim.events().len(),
        2,
        "the event happened, only its delivery was lost"
    );
}

#[tokio::test]
async fn a_duplicated_webhook_arrives_twice_with_the_same_event_id() {
    let m = spawn_mall().await;
    m.sim.update_faults(|f| f.duplicate_webhooks_next = 1);
    m.sim.operator().create_group("twice", 0).unwrap();
    m.sim.operator().create_group("once", 0).unwrap();
    m.settle().await;
    let got = m.hooks.accepted();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].hook, got[1].hook);
    assert_ne!(got[1].hook.event_id, got[2].hook.event_id);
}

#[tokio::test]
async fn a_reordered_webhook_arrives_after_its_successor() {
    let m = spawn_mall().await;
    m.sim.update_faults(|f| f.reorder_webhooks_next = 1);
    let first = m.sim.operator().create_group("first", 0).unwrap();
    let second = m.sim.operator().create_group("second", 0).unwrap();
    m.settle().await;
    assert_eq!(
        events(&m),
        vec![
            MallEvent::TagGroupCreated { group: second },
            MallEvent::TagGroupCreated { group: first },
        ]
    );
}

#[tokio::test]
async fn a_held_back_webhook_without_successor_still_goes_out() {
    let m = spawn_mall().await;
    m.sim.update_faults(|f| f.reorder_webhooks_next = 1);
    let only = m.sim.operator().create_group("only", 0).unwrap();
    m.settle().await;
    assert_eq!(events(&m), vec![MallEvent::TagGroupCreated { group: only }]);
}

#[tokio::test]
async fn failed_deliveries_are_retried_until_accepted() {
    let m = spawn_mall().await;
    m.hooks.fail_next(2);
    m.sim.operator().create_group("G", 0).unwrap();
    m.settle().await;
    let statuses: Vec<_> = m.sim.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, vec![Some(503), Some(503), Some(202)]);
    let attempts: Vec<_> = m.sim.deliveries().iter().map(|d| d.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(m.hooks.accepted().len(), 1);
}

#[tokio::test]
async fn a_wrong_secret_fails_verification_and_delivery_gives_up_after_the_bounded_retries() {
    let m = spawn_mall().await;
    m.sim
        .set_webhook(Some(m.hooks.url.clone()), "not-the-secret");
    m.sim.operator().create_group("G", 0).unwrap();
    m.settle().await;
    assert!(m.hooks.accepted().is_empty());
    assert_eq!(m.hooks.rejected(), vec![401; 4], "4 attempts, all refused");

    // Fixing the secret at runtime fixes later deliveries.
    m.sim.set_webhook(Some(m.hooks.url.clone()), WEBHOOK_SECRET);
    m.sim.operator().create_group("H", 0).unwrap();
    m.settle().await;
    assert_eq!(m.hooks.accepted().len(), 1);
}

#[tokio::test]
async fn api_member_tag_changes_report_only_real_changes() {
    let m = spawn_mall().await;
    let g = m.sim.silent().create_group("G", 0).unwrap();
    let a = m.sim.silent().create_tag(&g.id, "a", 0).unwrap();
    let member = m.sim.silent().create_member(NewMember::default()).unwrap();
    let k = key("member:a");
    m.client
        .change_member_tags(&m.ep, &k, &member.id, std::slice::from_ref(&a.id), &[])
        .await
        .unwrap();
    // Adding it again (a new intent, so a new key) is a no-op: no webhook.
    m.client
        .change_member_tags(
            &m.ep,
            &key("member:a-again"),
            &member.id,
            std::slice::from_ref(&a.id),
            &[],
        )
        .await
        .unwrap();
    m.settle().await;
    let got = m.hooks.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].hook.event,
        MallEvent::MemberTagsChanged {
            member_id: MemberId::new_unchecked(member.id.as_str()),
            added: vec![MallTagId::new_unchecked(a.id.as_str())],
            removed: vec![],
        }
    );
    // Batch keys are derived from the caller's key.
    let sent = got[0].hook.origin_request_id.clone().unwrap();
    assert!(sent.starts_with(k.as_str()), "{sent}");
}
