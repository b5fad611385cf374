//! Roles, given by an admin (docs/operators.md): `GET /admin/v1/tenants/{t}/operators`,
//! `PUT …/operators/{userid}` with `{"role": "admin" | "editor" | "viewer", "departments":
//! [ids]}`, `DELETE …/operators/{userid}`. A userid or department the corp's directory does
//! not have (read again from WeCom once if needed) is a 400 naming it.

use super::super::access;
use crate::api::json::Body;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use http::Method;
use serde_json::{Value, json};

pub async fn route(
    app: &App,
    t: &Tenant,
    req: &HttpRequest,
    rest: &[&str],
) -> Result<HttpResponse, ApiError> {
    match (&req.method, rest) {
        (&Method::GET, ["operators"]) => {
            let list: Vec<Value> = app
                .store
                .list_operators(&t.id)
                .await?
                .iter()
                .map(view)
                .collect();
            Ok(HttpResponse::json(200, &json!({ "operators": list })))
        }
        (&Method::PUT, ["operators", userid]) => put(app, t, userid, req).await,
        (&Method::DELETE, ["operators", userid]) => delete(app, t, userid).await,
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        ))),
    }
}

pub fn view(o: &OperatorRole) -> Value {
    json!({
        "userid": o.userid,
        "name": o.name,
        "role": o.role,
        "departments": o.departments,
        "assigned_at": o.assigned_at.to_rfc3339(),
        "assigned_by": o.assigned_by,
    })
}

/// The stored directory if it knows `userid`, else one read from WeCom now.
async fn directory_knowing(app: &App, t: &Tenant, userid: &str) -> Result<Directory, ApiError> {
    if let Some(d) = app.store.get_directory(&t.id).await?
        && d.staff_member(userid).is_some()
    {
        return Ok(d);
    }
    crate::jobs::directory::refresh(app, t).await.map_err(|e| {
        ApiError::Unavailable(format!("reading the directory from WeCom: {}", e.reason))
    })
}

async fn put(
    app: &App,
    t: &Tenant,
    userid: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = Body::parse(&req.body, &["role", "departments"])?;
    let raw_role = body.nonempty_str("role")?;
    let role = Role::parse(&raw_role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "field `role`: `{raw_role}` is not admin, editor or viewer"
        ))
    })?;
    let departments: Vec<u32> = match body.get("departments") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|d| {
                d.as_u64()
                    .and_then(|d| u32::try_from(d).ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "field `departments`: {d} is not a department id"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "field `departments` must be a list of department ids, not {other}"
            )));
        }
    };
    let dir = directory_knowing(app, t, userid).await?;
    let Some(member) = dir.staff_member(userid) else {
        return Err(ApiError::BadRequest(format!(
            "unknown userid `{userid}`: not a staff member of the corp"
        )));
    };
    let departments = match role {
        Role::Admin if !departments.is_empty() => {
            return Err(ApiError::BadRequest(
                "field `departments`: an admin sees every department; give none".into(),
            ));
        }
        Role::Admin => departments,
        _ if departments.is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "field `departments`: an {} needs at least one department",
                role.as_str()
            )));
        }
        _ => {
            if let Some(d) = departments.iter().find(|d| dir.department(**d).is_none()) {
                return Err(ApiError::BadRequest(format!(
                    "field `departments`: unknown department {d}"
                )));
            }
            let mut d = departments;
            d.sort_unstable();
            d.dedup();
            d
        }
    };
    let before = app.store.get_operator(&t.id, userid).await?;
    let mut next = OperatorRole {
        tenant: t.id.clone(),
        userid: userid.to_owned(),
        name: member.name.clone(),
        role,
        departments,
        assigned_at: app.clock.now(),
        assigned_by: access::current()
            .map_or_else(|| "admin-token".into(), |c| c.name().to_owned()),
        version: before.as_ref().map_or(0, |b| b.version),
    };
    app.store.put_operator(&mut next).await?;
    super::append_audit(
        app,
        &t.id,
        "operator.role_set",
        format!("operator:{userid}"),
        before.as_ref().map(view),
        Some(view(&next)),
    )
    .await;
    Ok(HttpResponse::json(
        if before.is_some() { 200 } else { 201 },
        &view(&next),
    ))
}

async fn delete(app: &App, t: &Tenant, userid: &str) -> Result<HttpResponse, ApiError> {
    let Some(before) = app.store.get_operator(&t.id, userid).await? else {
        return Err(ApiError::NotFound(format!("`{userid}` has no role")));
    };
    app.store
        .delete_operator(&t.id, userid, before.version)
        .await?;
    super::append_audit(
        app,
        &t.id,
        "operator.role_removed",
        format!("operator:{userid}"),
        Some(view(&before)),
        None,
    )
    .await;
    Ok(HttpResponse::empty(204))
}
