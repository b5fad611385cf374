//! Department-scoped operators (issue 16), end to end: the corp directory read from the
//! WeCom simulator and kept in the hub; operators signing in with WeCom, their roles and
//! sessions; the one scope check every admin route goes through.

#[path = "../sync/steps.rs"]
#[allow(dead_code)] // shared with tests/sync; not every helper is used here
mod steps;
#[path = "../support/mod.rs"]
mod support;

mod directory;

use crate::support::world::World;
use serde_json::Value;
use steps::*;

/// Shanghai (2) and Beijing (3) under the root (1), Pudong (4) under Shanghai; four staff.
/// Made silently (no callbacks).
pub fn seed_directory(w: &World) {
    let a = w.wecom.silent();
    a.create_department(2, "上海分公司", 1, 10).unwrap();
    a.create_department(3, "北京分公司", 1, 20).unwrap();
    a.create_department(4, "浦东门店", 2, 10).unwrap();
    a.put_staff("hq_wang", "王总", &[1]).unwrap();
    a.put_staff("sh_li", "李上海", &[2]).unwrap();
    a.put_staff("pd_zhao", "赵浦东", &[4]).unwrap();
    a.put_staff("bj_chen", "陈北京", &[3]).unwrap();
}

/// `GET …/directory`.
pub async fn directory(w: &World) -> Value {
    let (status, body) = w.admin(Method::GET, "/directory", None).await;
    assert_eq!(status, 200, "GET directory: {body}");
    body
}

/// The departments of `userid` in the stored directory (None: not in it).
pub fn staff_departments(dir: &Value, userid: &str) -> Option<Vec<u64>> {
    dir["staff"]
        .as_array()?
        .iter()
        .find(|s| s["userid"] == userid)
        .map(|s| {
            s["departments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect()
        })
}
