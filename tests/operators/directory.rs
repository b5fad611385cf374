//! The corp directory (departments and staff, wecom-api.md §13): the simulator's API, the
//! admin route that reads it, and the two ways it is kept fresh (callbacks, nightly).

use crate::*;
use tagsync::domain::Directory;
use tagsync::wecom::classify::ApiOp;

#[tokio::test]
async fn the_simulated_wecom_answers_department_list_user_get_and_simplelist() {
    let w = start().await;
    seed_directory(&w);
    let creds = w.wecom.credentials();
    let depts = w.app.wecom.department_list(&creds, None).await.unwrap();
    let ids: Vec<(u32, u32)> = depts.iter().map(|d| (d.id, d.parent_id)).collect();
    assert_eq!(ids, vec![(1, 0), (2, 1), (3, 1), (4, 2)]);
    let shanghai = w.app.wecom.department_list(&creds, Some(2)).await.unwrap();
    let ids: Vec<u32> = shanghai.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![2, 4], "a department with everything below it");

    let li = w.app.wecom.user_get(&creds, "sh_li").await.unwrap();
    assert_eq!(
        (li.name.as_str(), li.departments.as_slice()),
        ("李上海", &[2][..])
    );
    let missing = w.app.wecom.user_get(&creds, "nobody").await.unwrap_err();
    assert_eq!(missing.errcode, Some(60111), "{missing}");
    assert!(!missing.retryable());

    let only = w.app.wecom.user_simplelist(&creds, 2, false).await.unwrap();
    let with_children = w.app.wecom.user_simplelist(&creds, 2, true).await.unwrap();
    let names = |v: &[tagsync::domain::StaffMember]| -> Vec<String> {
        v.iter().map(|s| s.userid.clone()).collect()
    };
    assert_eq!(names(&only), ["sh_li"]);
    assert_eq!(names(&with_children), ["pd_zhao", "sh_li"]);
    let unknown = w
        .app
        .wecom
        .department_list(&creds, Some(99))
        .await
        .unwrap_err();
    assert_eq!(unknown.errcode, Some(60123), "{unknown}");
}

#[tokio::test]
async fn the_refresh_route_stores_the_department_tree_and_each_staff_members_departments() {
    let w = start().await;
    seed_directory(&w);
    let before = directory(&w).await;
    assert_eq!(before["refreshed_at"], Value::Null, "{before}");
    assert_eq!(before["staff"], serde_json::json!([]));

    let (status, body) = w.admin(Method::POST, "/directory:refresh", None).await;
    assert_eq!(status, 200, "{body}");
    let dir = directory(&w).await;
    assert_eq!(dir["departments"].as_array().unwrap().len(), 4, "{dir}");
    assert_eq!(dir["departments"][3]["name"], "浦东门店");
    assert_eq!(dir["departments"][3]["parent_id"], 2);
    assert_eq!(staff_departments(&dir, "pd_zhao"), Some(vec![4]));
    assert_eq!(staff_departments(&dir, "hq_wang"), Some(vec![1]));

    let stored: Directory = w.app.store.get_directory(&w.tenant).await.unwrap().unwrap();
    assert_eq!(
        stored.descendants(2).into_iter().collect::<Vec<_>>(),
        vec![2, 4]
    );
    let audit = w.app.store.list_audit(&w.tenant, None, 10).await.unwrap();
    assert!(
        audit
            .items
            .iter()
            .any(|e| e.action == "directory.refreshed"),
        "{:?}",
        audit.items
    );
}

#[tokio::test]
async fn a_refresh_wecom_refuses_is_a_503_naming_the_errcode_and_keeps_the_stored_directory() {
    let w = start().await;
    seed_directory(&w);
    let (status, _) = w.admin(Method::POST, "/directory:refresh", None).await;
    assert_eq!(status, 200);
    w.wecom.inject(
        ApiOp::DepartmentList,
        tagsync::sim::wecom::Fault::next(1, tagsync::sim::wecom::FaultKind::Errcode(60011)),
    );
    let (status, body) = w.admin(Method::POST, "/directory:refresh", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("60011"), "{body}");
    let dir = directory(&w).await;
    assert_eq!(dir["departments"].as_array().unwrap().len(), 4, "{dir}");
}

#[tokio::test]
async fn a_create_party_callback_adds_the_new_department_to_the_stored_directory() {
    let w = start().await;
    seed_directory(&w);
    let (status, _) = w.admin(Method::POST, "/directory:refresh", None).await;
    assert_eq!(status, 200);
    w.wecom
        .console()
        .create_department(5, "徐汇门店", 2, 20)
        .unwrap();
    wait_until("the new department is stored", || async {
        let d = w.app.store.get_directory(&w.tenant).await.unwrap().unwrap();
        d.department(5).is_some_and(|d| d.parent_id == 2)
    })
    .await;
    settle(&w).await;
    let cb = w.wecom.callbacks();
    let last = cb.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.change_type.as_str()),
        ("change_contact", "create_party")
    );
    assert!(last.delivered);
}

#[tokio::test]
async fn user_callbacks_move_and_remove_staff_in_the_stored_directory() {
    let w = start().await;
    seed_directory(&w);
    let (status, _) = w.admin(Method::POST, "/directory:refresh", None).await;
    assert_eq!(status, 200);
    w.wecom
        .console()
        .put_staff("sh_li", "李上海", &[3])
        .unwrap();
    w.wecom
        .console()
        .put_staff("new_sun", "孙新人", &[4])
        .unwrap();
    w.wecom.console().delete_staff("bj_chen").unwrap();
    wait_until("the staff changes are stored", || async {
        let d = w.app.store.get_directory(&w.tenant).await.unwrap().unwrap();
        d.departments_of("sh_li") == [3]
            && d.departments_of("new_sun") == [4]
            && d.staff_member("bj_chen").is_none()
    })
    .await;
    settle(&w).await;
}

#[tokio::test]
async fn the_nightly_run_reads_the_directory_again() {
    let w = start().await;
    seed_directory(&w);
    // A change whose callback never came (another app made it).
    w.wecom
        .silent()
        .create_department(6, "杭州分公司", 1, 30)
        .unwrap();
    let report = tagsync::jobs::nightly::run(&w.app).await.unwrap();
    assert_eq!(report.directories, vec![w.tenant.clone()], "{report:?}");
    let d = w.app.store.get_directory(&w.tenant).await.unwrap().unwrap();
    assert_eq!(d.department(6).map(|d| d.name.as_str()), Some("杭州分公司"));
    assert_eq!(d.staff.len(), 4);
    settle(&w).await;
}
