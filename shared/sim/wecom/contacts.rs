//! The corp's directory and staff web sign-in in the WeCom simulator (wecom-api.md §13): the
//! department tree and the staff's departments, `department/list`, `user/get`,
//! `user/simplelist` and `user/list`, the `change_contact` party/user callbacks a change in
//! the admin console sends, and the web login (`/wwlogin/sso/login` → `redirect_uri?code&state`,
//! `auth/getuserinfo` answering the userid once per code within five minutes).
//!
//! Choices where the reference is silent:
//! - The simulator starts with the root department (id 1, parent 0) and no staff.
//! - Errcodes: 60111 an unknown userid, 60123 an unknown department, 40029 a code that is
//!   unknown or already used, 42003 a code past its five minutes; the console refuses to
//!   delete a department that still has sub-departments (60006) or staff (60005).
//! - The login page lists the staff as links (the simulated "scan"); following
//!   `sim_user={userid}` signs in as that member at once. `sim_user` naming someone not on
//!   the staff gets a code whose `getuserinfo` answers an `openid` (a non-member).
//! - `create_user`/`update_user` callbacks carry `Department` as WeCom does, comma-joined.

use super::{
    Actions, ApiErr, ApiResult, Core, EventChange, SimError, SimState, err, invalid_param,
    random_alnum,
};
use crate::domain::{Department, StaffMember, Timestamp};
use axum::Router;
use axum::extract::{Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A web-login code works this long (§13).
pub const CODE_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// The root department every corp has.
const ROOT: u32 = 1;

pub(super) struct Contacts {
    departments: BTreeMap<u32, Department>,
    staff: BTreeMap<String, StaffMember>,
    codes: HashMap<String, LoginCode>,
}

struct LoginCode {
    /// `None`: someone outside the corp.
    userid: Option<String>,
    issued_at: Timestamp,
    used: bool,
}

impl Default for Contacts {
    fn default() -> Self {
        let root = Department {
            id: ROOT,
            name: "总部".into(),
            parent_id: 0,
            order: 100_000_000,
        };
        Self {
            departments: BTreeMap::from([(ROOT, root)]),
            staff: BTreeMap::new(),
            codes: HashMap::new(),
        }
    }
}

impl Contacts {
    /// `id` and every department below it.
    fn subtree(&self, id: u32) -> Vec<u32> {
        let mut out = vec![];
        let mut todo = vec![id];
        while let Some(d) = todo.pop() {
            if out.contains(&d) {
                continue;
            }
            out.push(d);
            todo.extend(
                self.departments
                    .values()
                    .filter(|c| c.parent_id == d && c.id != d)
                    .map(|c| c.id),
            );
        }
        out
    }
}

fn query_u32(query: &HashMap<String, String>, field: &str) -> Result<Option<u32>, ApiErr> {
    match query.get(field).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| invalid_param(format!("{field} must be a number"))),
    }
}

fn unknown_department(id: u32) -> ApiErr {
    err(60123, format!("invalid party id {id}"))
}

fn department_json(d: &Department) -> Value {
    json!({ "id": d.id, "name": d.name, "parentid": d.parent_id, "order": d.order })
}

fn staff_json(s: &StaffMember) -> Value {
    json!({
        "userid": s.userid,
        "name": s.name,
        "department": s.departments,
        "main_department": s.departments.first().copied().unwrap_or(ROOT),
    })
}

/// `department/list`: `id` and everything below it, or the whole tree.
pub(super) fn department_list(s: &SimState, query: &HashMap<String, String>) -> ApiResult {
    let c = &s.contacts;
    let ids = match query_u32(query, "id")? {
        None => c.departments.keys().copied().collect(),
        Some(id) if !c.departments.contains_key(&id) => return Err(unknown_department(id)),
        Some(id) => c.subtree(id),
    };
    let mut list: Vec<&Department> = ids.iter().filter_map(|i| c.departments.get(i)).collect();
    list.sort_by_key(|d| d.id);
    Ok(json!({ "department": list.into_iter().map(department_json).collect::<Vec<_>>() }))
}

/// `user/get`.
pub(super) fn user_get(s: &SimState, query: &HashMap<String, String>) -> ApiResult {
    let userid = query
        .get("userid")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid_param("userid is required"))?;
    let member = s
        .contacts
        .staff
        .get(userid)
        .ok_or_else(|| err(60111, format!("userid not found: {userid}")))?;
    Ok(staff_json(member))
}

/// `user/simplelist` and `user/list`: the staff of `department_id` (and below it with
/// `fetch_child=1`).
pub(super) fn user_list(s: &SimState, query: &HashMap<String, String>) -> ApiResult {
    let c = &s.contacts;
    let dept = query_u32(query, "department_id")?
        .ok_or_else(|| invalid_param("department_id is required"))?;
    if !c.departments.contains_key(&dept) {
        return Err(unknown_department(dept));
    }
    let depts = if query.get("fetch_child").map(String::as_str) == Some("1") {
        c.subtree(dept)
    } else {
        vec![dept]
    };
    let users: Vec<Value> = c
        .staff
        .values()
        .filter(|m| m.departments.iter().any(|d| depts.contains(d)))
        .map(staff_json)
        .collect();
    Ok(json!({ "userlist": users }))
}

/// `auth/getuserinfo`: the code's userid, once, within five minutes.
pub(super) fn getuserinfo(
    s: &mut SimState,
    query: &HashMap<String, String>,
    now: Timestamp,
) -> ApiResult {
    let code = query
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid_param("code is required"))?;
    let issued = s
        .contacts
        .codes
        .get_mut(code)
        .filter(|c| !c.used)
        .ok_or_else(|| err(40029, "invalid code"))?;
    if now.millis() - issued.issued_at.millis() >= CODE_LIFETIME_MS {
        return Err(err(42003, "code expired"));
    }
    issued.used = true;
    Ok(match &issued.userid {
        Some(u) => json!({ "userid": u }),
        None => json!({ "openid": format!("o{}", random_alnum(20)) }),
    })
}

fn department_fields(change: &'static str, d: &Department) -> EventChange {
    EventChange::Directory {
        change,
        fields: vec![
            ("Id", d.id.to_string()),
            ("Name", d.name.clone()),
            ("ParentId", d.parent_id.to_string()),
            ("Order", d.order.to_string()),
        ],
    }
}

fn user_fields(change: &'static str, m: &StaffMember) -> EventChange {
    let joined: Vec<String> = m.departments.iter().map(u32::to_string).collect();
    EventChange::Directory {
        change,
        fields: vec![
            ("UserID", m.userid.clone()),
            ("Name", m.name.clone()),
            ("Department", joined.join(",")),
        ],
    }
}

/// Changes to the directory made in the admin console (`console()`: with their
/// `change_contact` callbacks) or by another app (`silent()`: none).
impl Actions<'_> {
    /// Adds department `id` under `parent_id` (`create_party`).
    pub fn create_department(
        &self,
        id: u32,
        name: &str,
        parent_id: u32,
        order: u32,
    ) -> Result<(), SimError> {
        let mut s = self.core.lock();
        if id == 0 || s.contacts.departments.contains_key(&id) {
            return Err(SimError::Conflict(format!("department {id} exists")));
        }
        if !s.contacts.departments.contains_key(&parent_id) {
            return Err(SimError::NotFound(format!("parent department {parent_id}")));
        }
        let d = Department {
            id,
            name: name.to_owned(),
            parent_id,
            order,
        };
        s.contacts.departments.insert(id, d.clone());
        self.emit(&mut s, department_fields("create_party", &d));
        Ok(())
    }

    /// Renames or moves department `id` (`update_party`).
    pub fn update_department(&self, id: u32, name: &str, parent_id: u32) -> Result<(), SimError> {
        let mut s = self.core.lock();
        if !s.contacts.departments.contains_key(&parent_id)
            || s.contacts.subtree(id).contains(&parent_id)
        {
            return Err(SimError::Invalid(format!(
                "{parent_id} cannot be the parent of {id}"
            )));
        }
        let d = s
            .contacts
            .departments
            .get_mut(&id)
            .ok_or_else(|| SimError::NotFound(format!("department {id}")))?;
        d.name = name.to_owned();
        d.parent_id = parent_id;
        let d = d.clone();
        self.emit(&mut s, department_fields("update_party", &d));
        Ok(())
    }

    /// Deletes an empty department (`delete_party`).
    pub fn delete_department(&self, id: u32) -> Result<(), SimError> {
        let mut s = self.core.lock();
        if !s.contacts.departments.contains_key(&id) {
            return Err(SimError::NotFound(format!("department {id}")));
        }
        if s.contacts.departments.values().any(|d| d.parent_id == id) {
            return Err(SimError::Conflict(format!(
                "60006: department {id} has sub-departments"
            )));
        }
        if s.contacts
            .staff
            .values()
            .any(|m| m.departments.contains(&id))
        {
            return Err(SimError::Conflict(format!(
                "60005: department {id} has staff"
            )));
        }
        s.contacts.departments.remove(&id);
        self.emit(
            &mut s,
            EventChange::Directory {
                change: "delete_party",
                fields: vec![("Id", id.to_string())],
            },
        );
        Ok(())
    }

    /// Adds a staff member, or changes their name and departments (`create_user` /
    /// `update_user`).
    pub fn put_staff(&self, userid: &str, name: &str, departments: &[u32]) -> Result<(), SimError> {
        let mut s = self.core.lock();
        if userid.is_empty() || departments.is_empty() {
            return Err(SimError::Invalid(
                "a staff member needs a userid and a department".into(),
            ));
        }
        if let Some(d) = departments
            .iter()
            .find(|d| !s.contacts.departments.contains_key(d))
        {
            return Err(SimError::NotFound(format!("department {d}")));
        }
        let m = StaffMember {
            userid: userid.to_owned(),
            name: name.to_owned(),
            departments: departments.to_vec(),
        };
        let change = if s
            .contacts
            .staff
            .insert(userid.to_owned(), m.clone())
            .is_some()
        {
            "update_user"
        } else {
            "create_user"
        };
        self.emit(&mut s, user_fields(change, &m));
        Ok(())
    }

    /// Removes a staff member from the directory (`delete_user`).
    pub fn delete_staff(&self, userid: &str) -> Result<(), SimError> {
        let mut s = self.core.lock();
        if s.contacts.staff.remove(userid).is_none() {
            return Err(SimError::NotFound(format!("staff member {userid}")));
        }
        self.emit(
            &mut s,
            EventChange::Directory {
                change: "delete_user",
                fields: vec![("UserID", userid.to_owned())],
            },
        );
        Ok(())
    }
}

impl super::WecomSim {
    /// The department tree, by id.
    pub fn departments(&self) -> Vec<Department> {
        self.core
            .lock()
            .contacts
            .departments
            .values()
            .cloned()
            .collect()
    }

    /// The staff, by userid.
    pub fn staff(&self) -> Vec<StaffMember> {
        self.core.lock().contacts.staff.values().cloned().collect()
    }

    /// A web-login code for `userid`, as the redirect after a scan carries it (a test that
    /// does not drive the login page). `userid` outside the staff: a non-member's code.
    pub fn login_code(&self, userid: &str) -> String {
        issue_code(&self.core, userid)
    }

    /// The web-login page's address (`/wwlogin/sso/login`).
    pub fn login_url(&self) -> String {
        format!("http://{}/wwlogin/sso/login", self.addr)
    }
}

fn issue_code(core: &Core, userid: &str) -> String {
    let now = core.now();
    let mut s = core.lock();
    let code = random_alnum(32);
    let userid = s
        .contacts
        .staff
        .contains_key(userid)
        .then(|| userid.to_owned());
    s.contacts.codes.insert(
        code.clone(),
        LoginCode {
            userid,
            issued_at: now,
            used: false,
        },
    );
    code
}

pub(super) fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/wwlogin/sso/login", get(sso_login))
        .route("/control/departments", post(ctl_department))
        .route("/control/departments/delete", post(ctl_delete_department))
        .route("/control/staff", post(ctl_staff))
        .route("/control/staff/delete", post(ctl_delete_staff))
        .route("/control/directory", get(ctl_directory))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
             <title>企业微信登录（模拟）</title></head><body>{body}</body></html>"
        )),
    )
        .into_response()
}

/// The web-login page (§13): checks the app, then either lists the staff to sign in as, or
/// (with `sim_user`) "scans" as that member and redirects back with `code` and `state`.
async fn sso_login(
    AxumState(core): AxumState<Arc<Core>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if arg("appid") != core.config.corp_id.as_str() || arg("agentid") != core.config.agent_id {
        return page(
            StatusCode::BAD_REQUEST,
            "<p id=\"error\">appid 或 agentid 错误 (wrong appid or agentid)</p>".into(),
        );
    }
    let redirect = arg("redirect_uri");
    let Ok(target) = reqwest::Url::parse(redirect) else {
        return page(
            StatusCode::BAD_REQUEST,
            "<p id=\"error\">redirect_uri 无效 (invalid redirect_uri)</p>".into(),
        );
    };
    if let Some(user) = q.get("sim_user").filter(|u| !u.is_empty()) {
        let code = issue_code(&core, user);
        let mut target = target;
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", arg("state"));
        return (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response();
    }
    let staff: Vec<StaffMember> = core.lock().contacts.staff.values().cloned().collect();
    let mut items = String::new();
    for m in &staff {
        let mut link =
            reqwest::Url::parse(&format!("http://{}/wwlogin/sso/login", core_addr(&core)))
                .expect("the simulator's own address parses");
        link.query_pairs_mut()
            .extend_pairs(q.iter().filter(|(k, _)| k.as_str() != "sim_user"))
            .append_pair("sim_user", &m.userid);
        items.push_str(&format!(
            "<li><a class=\"sim-user\" data-userid=\"{}\" href=\"{}\">{} ({})</a></li>",
            escape(&m.userid),
            escape(link.as_str()),
            escape(&m.name),
            escape(&m.userid)
        ));
    }
    page(
        StatusCode::OK,
        format!("<h1>企业微信扫码登录（模拟）</h1><p>选择扫码的成员：</p><ul>{items}</ul>"),
    )
}

fn core_addr(core: &Core) -> String {
    core.lock()
        .base_url
        .trim_start_matches("http://")
        .to_owned()
}

#[derive(Deserialize)]
struct CtlDepartment {
    id: u32,
    name: String,
    parent_id: u32,
    #[serde(default)]
    order: u32,
    /// Update an existing department instead of creating one.
    #[serde(default)]
    update: bool,
    #[serde(default)]
    silent: bool,
}

async fn ctl_department(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlDepartment>,
) -> Response {
    let a = super::actions(&core, b.silent);
    super::ctl_result(if b.update {
        a.update_department(b.id, &b.name, b.parent_id)
    } else {
        a.create_department(b.id, &b.name, b.parent_id, b.order)
    })
}

#[derive(Deserialize)]
struct CtlDepartmentId {
    id: u32,
    #[serde(default)]
    silent: bool,
}

async fn ctl_delete_department(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlDepartmentId>,
) -> Response {
    super::ctl_result(super::actions(&core, b.silent).delete_department(b.id))
}

#[derive(Deserialize)]
struct CtlStaff {
    userid: String,
    name: String,
    departments: Vec<u32>,
    #[serde(default)]
    silent: bool,
}

async fn ctl_staff(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlStaff>,
) -> Response {
    super::ctl_result(super::actions(&core, b.silent).put_staff(&b.userid, &b.name, &b.departments))
}

#[derive(Deserialize)]
struct CtlUserId {
    userid: String,
    #[serde(default)]
    silent: bool,
}

async fn ctl_delete_staff(
    AxumState(core): AxumState<Arc<Core>>,
    axum::Json(b): axum::Json<CtlUserId>,
) -> Response {
    super::ctl_result(super::actions(&core, b.silent).delete_staff(&b.userid))
}

async fn ctl_directory(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let s = core.lock();
    axum::Json(json!({
        "departments": s.contacts.departments.values().collect::<Vec<_>>(),
        "staff": s.contacts.staff.values().collect::<Vec<_>>(),
    }))
    .into_response()
}
