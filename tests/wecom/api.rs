//! Every API round-trips, with WeCom's quirks (§1, §9 P4, P5, §12).

use serde_json::{Value, json};
use tagsync::domain::{ExternalUserId, WecomGroupId, WecomTagId, WecomUserId};
use tagsync::sim::wecom::RangeNode;
use tagsync::sim::wecom::{Quirks, SimConfig};
use tagsync::wecom::classify::{ApiOp, Verdict};
use tagsync::wecom::client::{AddTarget, DeleteOutcome, EditTarget, NewTag, WecomError};

use crate::helpers::{harness, harness_with};

fn tag(id: &str) -> WecomTagId {
    WecomTagId::parse(id).unwrap()
}
fn group(id: &str) -> WecomGroupId {
    WecomGroupId::parse(id).unwrap()
}
fn user(id: &str) -> WecomUserId {
    WecomUserId::parse(id).unwrap()
}
fn ext(id: &str) -> ExternalUserId {
    ExternalUserId::parse(id).unwrap()
}

fn reason(e: &WecomError) -> &str {
    match &e.verdict {
        Verdict::Permanent(r) => r,
        other => panic!("expected a permanent error, got {other:?} ({e})"),
    }
}

#[tokio::test]
async fn corp_tags_round_trip_through_add_list_edit_and_delete() {
    let h = harness().await;
    let added = h
        .client
        .add_corp_tag(
            &h.creds,
            AddTarget::Named {
                name: "Level",
                order: Some(5),
            },
            &[
                NewTag {
                    name: "Gold".into(),
                    order: Some(2),
                },
                NewTag::named("Silver"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(added.group_name, "Level");
    assert_eq!(added.order, 5);
    assert!(added.group_id.as_str().starts_with("et"));
    let names: Vec<&str> = added.tag.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Gold", "Silver"]);
    let (gold, silver) = (added.tag[0].id.clone(), added.tag[1].id.clone());

    let all = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tag.len(), 2);
    let by_tag = h
        .client
        .get_corp_tag_list(&h.creds, std::slice::from_ref(&silver), &[])
        .await
        .unwrap();
    assert_eq!(by_tag[0].tag.len(), 1);
    assert_eq!(by_tag[0].tag[0].id, silver);

    h.client
        .edit_corp_tag(&h.creds, EditTarget::Tag(&gold), Some("Platinum"), Some(9))
        .await
        .unwrap();
    h.client
        .edit_corp_tag(
            &h.creds,
            EditTarget::Group(&added.group_id),
            Some("Tier"),
            None,
        )
        .await
        .unwrap();
    let listed = h
        .client
        .get_corp_tag_list(&h.creds, &[], std::slice::from_ref(&added.group_id))
        .await
        .unwrap();
    assert_eq!(listed[0].group_name, "Tier");
    assert_eq!(listed[0].tag[0].name, "Platinum");
    assert_eq!(listed[0].tag[0].order, 9);

    let out = h.client.del_corp_tag(&h.creds, &[gold], &[]).await.unwrap();
    assert_eq!(out, DeleteOutcome::Deleted);
    let out = h
        .client
        .del_corp_tag(&h.creds, &[], std::slice::from_ref(&added.group_id))
        .await
        .unwrap();
    assert_eq!(out, DeleteOutcome::Deleted);
    assert!(
        h.client
            .get_corp_tag_list(&h.creds, &[], &[])
            .await
            .unwrap()
            .is_empty()
    );
    // A retried delete finds nothing: 40068, which on a delete means "already done" (§12).
    let again = h
        .client
        .del_corp_tag(&h.creds, &[], &[added.group_id])
        .await
        .unwrap();
    assert_eq!(again, DeleteOutcome::AlreadyGone);
}

#[tokio::test]
async fn same_name_groups_merge_and_duplicate_names_create_one_tag() {
    let h = harness().await;
    let named = AddTarget::Named {
        name: "Source",
        order: None,
    };
    let first = h
        .client
        .add_corp_tag(
            &h.creds,
            named,
            &[NewTag::named("Ads"), NewTag::named("Ads")],
        )
        .await
        .unwrap();
    assert_eq!(first.tag.len(), 1, "one tag for a name given twice (§1.2)");
    let second = h
        .client
        .add_corp_tag(
            &h.creds,
            named,
            &[NewTag::named("Shop"), NewTag::named("Ads")],
        )
        .await
        .unwrap();
    assert_eq!(
        second.group_id, first.group_id,
        "same-name group merges (§1.2)"
    );
    assert_eq!(
        second.tag[1].id, first.tag[0].id,
        "an existing name answers its tag"
    );
    let lib = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert_eq!(lib.len(), 1);
    assert_eq!(lib[0].tag.len(), 2);
    // Adding into the group by id ignores name and order.
    let third = h
        .client
        .add_corp_tag(
            &h.creds,
            AddTarget::Group(&first.group_id),
            &[NewTag::named("Fair")],
        )
        .await
        .unwrap();
    assert_eq!(third.group_id, first.group_id);
}

#[tokio::test]
async fn deleting_a_groups_last_tag_deletes_the_group() {
    let h = harness().await;
    let g = h
        .client
        .add_corp_tag(
            &h.creds,
            AddTarget::Named {
                name: "Solo",
                order: None,
            },
            &[NewTag::named("Only")],
        )
        .await
        .unwrap();
    h.client
        .del_corp_tag(&h.creds, &[g.tag[0].id.clone()], &[])
        .await
        .unwrap();
    assert!(h.sim.library().is_empty());
    // Queried by tag id, the deleted tag answers `deleted: true` (§1.1).
    let gone = h
        .client
        .get_corp_tag_list(&h.creds, &[g.tag[0].id.clone()], &[])
        .await
        .unwrap();
    assert!(gone[0].deleted && gone[0].tag[0].deleted);
}

#[tokio::test]
async fn group_id_is_omitted_and_an_empty_one_is_refused_by_wecom() {
    let h = harness().await;
    h.client
        .add_corp_tag(
            &h.creds,
            AddTarget::Named {
                name: "G",
                order: None,
            },
            &[NewTag::named("t")],
        )
        .await
        .unwrap();
    let call = h
        .sim
        .calls()
        .into_iter()
        .find(|c| c.op == ApiOp::AddCorpTag)
        .unwrap();
    assert!(call.request.get("group_id").is_none(), "{}", call.request);
    assert!(
        call.request.get("order").is_none(),
        "absent options are omitted too"
    );

    // What WeCom answers to `"group_id": ""` (§9 P4).
    let token = h.sim.current_token().unwrap();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/externalcontact/add_corp_tag", h.sim.base_url()))
        .query(&[("access_token", token)])
        .json(&json!({"group_id": "", "group_name": "G", "tag": [{"name": "t"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errcode"], 40058);
    assert_eq!(answer["errmsg"], "field group_id unexpected empty string");
}

#[tokio::test]
async fn names_over_30_characters_are_refused() {
    let h = harness().await;
    let e = h
        .client
        .add_corp_tag(
            &h.creds,
            AddTarget::Named {
                name: "G",
                order: None,
            },
            &[NewTag::named("字".repeat(31))],
        )
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40058));
    assert!(reason(&e).contains("30 characters"), "{e}");
    let ok = h
        .client
        .add_corp_tag(
            &h.creds,
            AddTarget::Named {
                name: "G",
                order: None,
            },
            &[NewTag::named("字".repeat(30))],
        )
        .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn renames_onto_a_sibling_and_unknown_ids_are_permanent() {
    let h = harness().await;
    let g = h
        .client
        .add_corp_tag(
            &h.creds,
            AddTarget::Named {
                name: "G",
                order: None,
            },
            &[NewTag::named("a"), NewTag::named("b")],
        )
        .await
        .unwrap();
    let e = h
        .client
        .edit_corp_tag(&h.creds, EditTarget::Tag(&g.tag[0].id), Some("b"), None)
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40071));
    assert!(!e.retryable());
    let e = h
        .client
        .edit_corp_tag(
            &h.creds,
            EditTarget::Tag(&tag("etNoSuchTag")),
            Some("x"),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40068));
    assert!(reason(&e).contains("unknown"), "{e}");
}

#[tokio::test]
async fn groups_and_tags_are_listed_larger_order_first() {
    let h = harness().await;
    for (name, order) in [("low", 1), ("high", 9), ("mid", 5)] {
        h.client
            .add_corp_tag(
                &h.creds,
                AddTarget::Named {
                    name,
                    order: Some(order),
                },
                &[
                    NewTag {
                        name: "x".into(),
                        order: Some(1),
                    },
                    NewTag {
                        name: "y".into(),
                        order: Some(3),
                    },
                ],
            )
            .await
            .unwrap();
    }
    let lib = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    let names: Vec<&str> = lib.iter().map(|g| g.group_name.as_str()).collect();
    assert_eq!(names, ["high", "mid", "low"]);
    assert_eq!(lib[0].tag[0].name, "y");
}

#[tokio::test]
async fn console_created_tags_are_read_only_for_the_app() {
    let h = harness().await;
    let g = h
        .sim
        .console()
        .create_group("Console", 1, &[("vip", 1)])
        .unwrap();
    let tag_id = tag(&g.tag_ids[0]);
    let e = h
        .client
        .edit_corp_tag(&h.creds, EditTarget::Tag(&tag_id), Some("VIP"), None)
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(301002));
    assert!(reason(&e).contains("read-only"), "{e}");
    let e = h
        .client
        .del_corp_tag(&h.creds, &[], &[group(&g.group_id)])
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(301002));
    assert_eq!(h.sim.library().len(), 1, "nothing was deleted");
    // Another app's tags (silent API writes) are read-only too, but usable in mark_tag.
    let other = h
        .sim
        .silent()
        .create_group("Other", 0, &[("o", 0)])
        .unwrap();
    let e = h
        .client
        .edit_corp_tag(
            &h.creds,
            EditTarget::Group(&group(&other.group_id)),
            None,
            Some(3),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(301002));
    h.sim.silent().add_relation("alice", "wmC1", None).unwrap();
    h.client
        .mark_tag(&h.creds, &user("alice"), &ext("wmC1"), &[tag_id], &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn mark_tag_on_a_missing_relation_is_84061_permanent() {
    let h = harness().await;
    let g = h.sim.console().create_group("G", 0, &[("t", 0)]).unwrap();
    let e = h
        .client
        .mark_tag(
            &h.creds,
            &user("bob"),
            &ext("wmNobody"),
            &[tag(&g.tag_ids[0])],
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(84061));
    assert!(!e.retryable());
    assert!(reason(&e).contains("follow relation"), "{e}");
}

#[tokio::test]
async fn mark_tag_and_the_contact_reads_agree() {
    let h = harness().await;
    let g = h
        .sim
        .console()
        .create_group("Level", 0, &[("gold", 2), ("silver", 1)])
        .unwrap();
    let (gold, silver) = (tag(&g.tag_ids[0]), tag(&g.tag_ids[1]));
    h.sim.add_customer("wmC1", "Customer One");
    h.sim
        .silent()
        .add_relation("alice", "wmC1", Some("mall:ch42"))
        .unwrap();
    h.sim.silent().add_relation("bob", "wmC1", None).unwrap();
    h.sim.silent().add_relation("alice", "wmC2", None).unwrap();
    h.sim.add_member("carol");

    h.client
        .mark_tag(
            &h.creds,
            &user("alice"),
            &ext("wmC1"),
            &[gold.clone(), silver.clone()],
            &[],
        )
        .await
        .unwrap();
    h.client
        .mark_tag(
            &h.creds,
            &user("alice"),
            &ext("wmC1"),
            &[],
            std::slice::from_ref(&silver),
        )
        .await
        .unwrap();
    assert_eq!(
        h.sim.relation_tags("alice", "wmC1").unwrap(),
        [gold.as_str()]
    );

    let c = h
        .client
        .get_external_contact(&h.creds, &ext("wmC1"))
        .await
        .unwrap();
    assert_eq!(c.external_contact.name, "Customer One");
    assert_eq!(c.follow_user.len(), 2);
    let alice = c
        .follow_user
        .iter()
        .find(|f| f.userid.as_str() == "alice")
        .unwrap();
    assert_eq!(alice.state.as_deref(), Some("mall:ch42"));
    assert_eq!(alice.tags.len(), 1);
    assert_eq!(alice.tags[0].tag_id.as_ref(), Some(&gold));
    assert_eq!(
        (alice.tags[0].kind, alice.tags[0].group_name.as_str()),
        (1, "Level")
    );

    let page = h
        .client
        .batch_get_by_user(&h.creds, &[user("alice")], None, 100)
        .await
        .unwrap();
    assert_eq!(page.external_contact_list.len(), 2);
    assert_eq!(page.next_cursor, None);
    let c1 = &page.external_contact_list[0];
    assert_eq!(c1.follow_info.tag_id, [gold]);

    let users = h.client.get_follow_user_list(&h.creds).await.unwrap();
    let users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
    assert_eq!(users, ["alice", "bob", "carol"]);
    let customers = h
        .client
        .list_external_contacts(&h.creds, &user("alice"))
        .await
        .unwrap();
    assert_eq!(customers, [ext("wmC1"), ext("wmC2")]);

    let e = h
        .client
        .get_external_contact(&h.creds, &ext("wmUnknown"))
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40096));
}

#[tokio::test]
async fn batch_get_by_user_pages_with_its_cursor() {
    let h = harness().await;
    for i in 0..5 {
        h.sim
            .silent()
            .add_relation("alice", &format!("wmC{i}"), None)
            .unwrap();
    }
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let page = h
            .client
            .batch_get_by_user(&h.creds, &[user("alice")], cursor.as_deref(), 2)
            .await
            .unwrap();
        seen.extend(
            page.external_contact_list
                .into_iter()
                .map(|c| c.external_contact.external_userid),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(h.sim.call_count(ApiOp::BatchGetByUser), 3);
    // Limits are checked before calling (§1.5).
    let many: Vec<WecomUserId> = (0..101).map(|i| user(&format!("u{i}"))).collect();
    let e = h
        .client
        .batch_get_by_user(&h.creds, &many, None, 10)
        .await
        .unwrap_err();
    assert!(!e.retryable());
    assert_eq!(h.sim.call_count(ApiOp::BatchGetByUser), 3);
}

#[tokio::test]
async fn get_external_contact_follows_next_cursor() {
    let config = SimConfig {
        follow_user_page_size: 2,
        ..SimConfig::default()
    };
    let h = harness_with(config, std::sync::Arc::new(tagsync::ports::SystemClock)).await;
    for i in 0..5 {
        h.sim
            .silent()
            .add_relation(&format!("u{i}"), "wmMany", None)
            .unwrap();
    }
    let c = h
        .client
        .get_external_contact(&h.creds, &ext("wmMany"))
        .await
        .unwrap();
    let users: Vec<&str> = c.follow_user.iter().map(|f| f.userid.as_str()).collect();
    assert_eq!(users, ["u0", "u1", "u2", "u3", "u4"]);
    assert_eq!(h.sim.call_count(ApiOp::GetExternalContact), 3);
}

#[tokio::test]
async fn strategy_tags_round_trip_separately_from_corp_tags() {
    let h = harness().await;
    let (s1, s2) = (
        h.sim.create_strategy(0, "华东", vec![RangeNode::Party(2)]),
        h.sim.create_strategy(0, "华北", vec![RangeNode::Party(3)]),
    );
    let g = h
        .client
        .add_strategy_tag(
            &h.creds,
            s1,
            AddTarget::Named {
                name: "Region",
                order: None,
            },
            &[NewTag::named("North"), NewTag::named("South")],
        )
        .await
        .unwrap();
    assert_eq!(g.strategy_id, Some(s1));
    assert!(
        h.client
            .get_corp_tag_list(&h.creds, &[], &[])
            .await
            .unwrap()
            .is_empty()
    );
    let listed = h
        .client
        .get_strategy_tag_list(&h.creds, Some(s1), &[], &[])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        h.client
            .get_strategy_tag_list(&h.creds, Some(s2), &[], &[])
            .await
            .unwrap()
            .is_empty()
    );
    h.client
        .edit_strategy_tag(&h.creds, EditTarget::Tag(&g.tag[0].id), Some("N"), None)
        .await
        .unwrap();
    // A strategy tag is not in the corp library's reach.
    let e = h
        .client
        .edit_corp_tag(&h.creds, EditTarget::Tag(&g.tag[0].id), Some("x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40068));
    // Strategy tags can be marked and read back as type 3.
    h.sim.silent().add_relation("alice", "wmC1", None).unwrap();
    h.client
        .mark_tag(
            &h.creds,
            &user("alice"),
            &ext("wmC1"),
            &[g.tag[1].id.clone()],
            &[],
        )
        .await
        .unwrap();
    let c = h
        .client
        .get_external_contact(&h.creds, &ext("wmC1"))
        .await
        .unwrap();
    assert_eq!(c.follow_user[0].tags[0].kind, 3);
    let out = h
        .client
        .del_strategy_tag(&h.creds, &[], std::slice::from_ref(&g.group_id))
        .await
        .unwrap();
    assert_eq!(out, DeleteOutcome::Deleted);
    assert!(h.sim.relation_tags("alice", "wmC1").unwrap().is_empty());
}

#[tokio::test]
async fn answers_with_numbers_as_strings_and_unknown_fields_decode() {
    let h = harness().await;
    h.sim
        .console()
        .create_group("Level", 4_000_000_000, &[("gold", 12)])
        .unwrap();
    h.sim
        .silent()
        .add_relation("alice", "wmC1", Some("s"))
        .unwrap();
    h.sim.set_quirks(Quirks {
        numbers_as_strings: true,
        extra_fields: true,
    });
    let lib = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert_eq!(lib[0].order, 4_000_000_000);
    assert_eq!(lib[0].tag[0].order, 12);
    assert!(lib[0].create_time > 1_600_000_000);
    let c = h
        .client
        .get_external_contact(&h.creds, &ext("wmC1"))
        .await
        .unwrap();
    assert_eq!(c.external_contact.kind, 1);
    assert!(c.follow_user[0].createtime > 1_600_000_000);
    let page = h
        .client
        .batch_get_by_user(&h.creds, &[user("alice")], None, 10)
        .await
        .unwrap();
    assert_eq!(page.external_contact_list.len(), 1);
    // The strings really were on the wire.
    let token = h.sim.current_token().unwrap();
    let raw: Value = reqwest::Client::new()
        .post(format!(
            "{}/externalcontact/get_corp_tag_list",
            h.sim.base_url()
        ))
        .query(&[("access_token", token)])
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["tag_group"][0]["order"], "4000000000");
    assert!(raw["sim_unknown_field"].is_object());
}
