//! Concurrent and interrupted work on one object: however many jobs race for it, and wherever
//! an earlier try stopped, each side ends up with the object once.

use crate::steps::*;
use serde_json::json;
use tagsync::domain::{Actor, Hint, HubTagId, Job, JobKind};
use tagsync::wecom::classify::ApiOp;

/// Eight copies of the job for one new tag, queued at once and run by four workers, create it
/// once in WeCom and once in the mall: every library job holds the tenant's library lock, and
/// the copies that run after the first find it linked and have nothing to do.
#[tokio::test]
async fn concurrent_jobs_for_one_new_tag_create_it_once_on_each_side() {
    let w = start().await;
    let (status, group) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "等级", "tags": [{"name": "金"}]})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    converged(&w).await;
    let creates_before = w.wecom.call_count(ApiOp::AddCorpTag);

    // Switched off, the admin route writes the hub only; the copies below are the only jobs.
    let (status, _) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, tag) = w
        .admin(
            Method::POST,
            "/tags",
            Some(json!({"group_id": group["id"], "name": "银"})),
        )
        .await;
    assert_eq!(status, 201, "{tag}");
    let (status, _) = w
        .admin(Method::PATCH, "/settings", Some(json!({"auto_sync": true})))
        .await;
    assert_eq!(status, 200);
    let id = HubTagId::new_unchecked(s(&tag["id"]));
    let now = w.app.clock.now();
    let copies: Vec<Job> = (0..8)
        .map(|_| {
            Job::new(
                w.tenant.clone(),
                JobKind::SyncTag {
                    tag: id.clone(),
                    hint: Hint::from(Actor::Operator),
                },
                now,
            )
        })
        .collect();
    w.app.queue.send(&copies).await.unwrap();
    converged(&w).await;

    let wecom = wecom_group(&w, "等级");
    assert_eq!(
        wecom.tags.iter().filter(|t| t.name == "银").count(),
        1,
        "{wecom:?}"
    );
    let mall = mall_group(&w, "等级");
    assert_eq!(
        mall.tags.iter().filter(|t| t.name == "银").count(),
        1,
        "{mall:?}"
    );
    assert_eq!(
        w.wecom.call_count(ApiOp::AddCorpTag),
        creates_before + 1,
        "one create in WeCom"
    );
    let hub = hub_tag(&w, "等级", "银").await;
    assert_eq!(s(&hub["wecom_id"]), wecom_tag(&w, "等级", "银").id);
    assert_eq!(s(&hub["mall_id"]), mall_tag(&w, "等级", "银").id.as_str());
    w.stop().await;
}

/// A create that reached both sides but stopped before tagsync recorded the new ids (a crash):
/// the next job finds a same-name tag in the same group that nobody maps and adopts it, so no
/// side gets a second one.
#[tokio::test]
async fn a_create_interrupted_before_its_ids_were_recorded_adopts_the_same_name_tags() {
    let w = start().await;
    let (status, group) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "来源", "tags": [{"name": "门店"}]})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    converged(&w).await;

    let (status, _) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, tag) = w
        .admin(
            Method::POST,
            "/tags",
            Some(json!({"group_id": group["id"], "name": "小程序", "order": 3})),
        )
        .await;
    assert_eq!(status, 201, "{tag}");
    // What the interrupted try left behind: the tag on both sides, unknown to tagsync.
    let wecom_id = w
        .wecom
        .silent()
        .create_tag(&wecom_group(&w, "来源").id, "小程序", 3)
        .unwrap();
    let mall_id = w
        .mall
        .silent()
        .create_tag(&mall_group(&w, "来源").group.id, "小程序", 3)
        .unwrap()
        .id;

    let (status, _) = w
        .admin(Method::PATCH, "/settings", Some(json!({"auto_sync": true})))
        .await;
    assert_eq!(status, 200);
    // The operator's retry of the change queues the job again.
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{}", s(&tag["id"])),
            Some(json!({"order": 3})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    converged(&w).await;

    let wecom = wecom_group(&w, "来源");
    assert_eq!(
        wecom.tags.iter().filter(|t| t.name == "小程序").count(),
        1,
        "{wecom:?}"
    );
    let mall = mall_group(&w, "来源");
    assert_eq!(
        mall.tags.iter().filter(|t| t.name == "小程序").count(),
        1,
        "{mall:?}"
    );
    let hub = hub_tag(&w, "来源", "小程序").await;
    assert_eq!(hub["id"], tag["id"], "the hub object stays the same");
    assert_eq!(s(&hub["wecom_id"]), wecom_id, "WeCom's tag adopted");
    assert_eq!(
        s(&hub["mall_id"]),
        mall_id.as_str(),
        "the mall's tag adopted"
    );
    w.stop().await;
}
