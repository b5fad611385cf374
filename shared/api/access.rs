//! Who is calling the admin API, and what they may see and do — decided here and nowhere
//! else (issue 16; docs/operators.md).
//!
//! Every admin route is a row of [`ROUTES`] naming what it needs ([`Need`]); a request that
//! matches no row is answered 404/405 before any handler runs, so a route cannot be reached
//! without a row, and [`check`] is the one function that decides every row. Lists that show
//! only part of the data to a scoped operator (groups, customers, tenants) ask [`Scope`].
//!
//! Callers: the deployment's admin token (`Authorization: Bearer …`, an `admin`), or an
//! operator's session cookie (signed in with WeCom, `api::admin::login`) whose role is read
//! from the store on every request (a role changed or removed takes effect at once). A write
//! by a session must carry its CSRF token in `X-CSRF-Token`.

use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest};
use http::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use subtle::ConstantTimeEq;

/// The session cookie (HTTP-only, `SameSite=Strict`).
pub const SESSION_COOKIE: &str = "tagsync_session";
/// The header a session's writes carry their CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

tokio::task_local! {
    static CALLER: Caller;
}

/// Who made the request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The deployment's admin token: an `admin` of every tenant.
    AdminToken,
    Operator(Box<OperatorCaller>),
}

#[derive(Clone, Debug)]
pub struct OperatorCaller {
    pub session: Session,
    /// Read on this request.
    pub role: OperatorRole,
}

impl Caller {
    /// How the audit names them.
    pub fn name(&self) -> &str {
        match self {
            Caller::AdminToken => "admin-token",
            Caller::Operator(o) => &o.session.userid,
        }
    }

    /// The audit's `origin` for what they do: `operator:{userid}` or `operator:admin-token`.
    pub fn origin(&self) -> String {
        format!("operator:{}", self.name())
    }

    pub fn is_admin_of(&self, tenant: &TenantId) -> bool {
        match self {
            Caller::AdminToken => true,
            Caller::Operator(o) => o.session.tenant == *tenant && o.role.role == Role::Admin,
        }
    }

    /// Runs `f` with this caller as the current one (what [`current_origin`] reads).
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        CALLER.scope(self, f).await
    }
}

/// The audit origin of the request being answered (`operator` outside one).
pub fn current_origin() -> String {
    CALLER
        .try_with(Caller::origin)
        .unwrap_or_else(|_| "operator".into())
}

/// The caller of the request being answered, if any.
pub fn current() -> Option<Caller> {
    CALLER.try_with(Caller::clone).ok()
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A cookie's value from the `Cookie` header.
pub fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())))
}

/// The caller of `req`: the admin token, or a live session whose operator still has a role.
/// 401 when neither is presented (or the session is unknown or expired); 403 when a session's
/// write lacks its CSRF token or its operator's role is gone.
pub async fn authenticate(app: &App, req: &HttpRequest) -> Result<Caller, ApiError> {
    if req.header("authorization").is_some() {
        super::admin::authorize(app, req)?;
        return Ok(Caller::AdminToken);
    }
    let Some(token) = cookie(req, SESSION_COOKIE) else {
        return Err(ApiError::Unauthorized(
            "sign in with WeCom, or send the admin token as a bearer token".into(),
        ));
    };
    let session = app
        .store
        .get_session(&sha256_hex(token))
        .await?
        .filter(|s| s.expires_at > app.clock.now())
        .ok_or_else(|| ApiError::Unauthorized("the session expired; sign in again".into()))?;
    let writes = !matches!(req.method, Method::GET | Method::HEAD);
    if writes {
        let sent = req.header(CSRF_HEADER).unwrap_or("");
        if sent.is_empty() || !same(sent, &session.csrf_token) {
            return Err(ApiError::Forbidden(format!(
                "a write needs the session's CSRF token in `{CSRF_HEADER}`"
            )));
        }
    }
    let role = app
        .store
        .get_operator(&session.tenant, &session.userid)
        .await?
        .ok_or_else(|| {
            ApiError::Forbidden(format!(
                "`{}` no longer has a role in tagsync; ask an admin",
                session.userid
            ))
        })?;
    Ok(Caller::Operator(Box::new(OperatorCaller { session, role })))
}

// ---- the routes ------------------------------------------------------------------------

/// What a route needs of its caller. Path parameters: `{t}` the tenant, `{id}` the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing (signing in): the route reads no tenant data.
    Public,
    /// Anyone signed in (their own session).
    Signed,
    /// The tenant list: an operator sees only their tenant.
    Tenants,
    /// Anyone of the tenant may read it (it holds no department's data).
    Read,
    /// An admin of the tenant.
    Admin,
    /// The tag groups: unscoped ones and those in the caller's departments.
    Groups,
    /// Create a group (an editor: unscoped, or scoped within their departments).
    CreateGroup,
    /// Change group `{id}` (visible to the caller).
    WriteGroup,
    /// Create a tag in the body's `group_id` (visible to the caller).
    CreateTag,
    /// Change tag `{id}` (its group visible; a move's target group too).
    WriteTag,
    /// Read member `{id}` (a mall member bound to a customer of the caller's departments).
    ReadMember,
    /// Change member `{id}`'s tags.
    WriteMember,
    /// The customers: those with a relation to staff in the caller's departments.
    Customers,
}

impl Need {
    fn writes(self) -> bool {
        matches!(
            self,
            Need::CreateGroup
                | Need::WriteGroup
                | Need::CreateTag
                | Need::WriteTag
                | Need::WriteMember
        )
    }
}

pub struct RouteSpec {
    pub method: Method,
    /// After `/admin`, e.g. `/v1/tenants/{t}/tag-groups/{id}`. A segment `{id}:undo` matches
    /// a segment ending in `:undo`.
    pub path: &'static str,
    pub need: Need,
}

const fn r(method: Method, path: &'static str, need: Need) -> RouteSpec {
    RouteSpec { method, path, need }
}

/// Every admin route.
pub static ROUTES: &[RouteSpec] = &[
    r(Method::GET, "/v1/tenants/{t}/login", Need::Public),
    r(Method::GET, "/v1/tenants/{t}/login/callback", Need::Public),
    r(Method::GET, "/v1/me", Need::Signed),
    r(Method::POST, "/v1/logout", Need::Signed),
    r(Method::GET, "/v1/tenants", Need::Tenants),
    r(Method::GET, "/v1/tenants/{t}", Need::Read),
    r(Method::PUT, "/v1/tenants/{t}", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/settings", Need::Read),
    r(Method::PATCH, "/v1/tenants/{t}/settings", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/status", Need::Read),
    // The log names every department's objects.
    r(Method::GET, "/v1/tenants/{t}/audit", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/dead-letters", Need::Admin),
    r(
        Method::POST,
        "/v1/tenants/{t}/dead-letters:redrive",
        Need::Admin,
    ),
    r(Method::GET, "/v1/tenants/{t}/tag-groups", Need::Groups),
    r(
        Method::POST,
        "/v1/tenants/{t}/tag-groups",
        Need::CreateGroup,
    ),
    r(
        Method::PATCH,
        "/v1/tenants/{t}/tag-groups/{id}",
        Need::WriteGroup,
    ),
    r(
        Method::DELETE,
        "/v1/tenants/{t}/tag-groups/{id}",
        Need::WriteGroup,
    ),
    r(Method::POST, "/v1/tenants/{t}/tags", Need::CreateTag),
    r(Method::PATCH, "/v1/tenants/{t}/tags/{id}", Need::WriteTag),
    r(Method::DELETE, "/v1/tenants/{t}/tags/{id}", Need::WriteTag),
    r(
        Method::GET,
        "/v1/tenants/{t}/members/{id}",
        Need::ReadMember,
    ),
    r(
        Method::POST,
        "/v1/tenants/{t}/members/{id}/tags",
        Need::WriteMember,
    ),
    // A batch names members of any department.
    r(
        Method::POST,
        "/v1/tenants/{t}/member-tags:batch",
        Need::Admin,
    ),
    // Runs read and repair every department's objects.
    r(Method::GET, "/v1/tenants/{t}/sync", Need::Read),
    r(Method::POST, "/v1/tenants/{t}/sync", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/sync/{id}", Need::Read),
    r(
        Method::POST,
        "/v1/tenants/{t}/sync/{id}:cancel",
        Need::Admin,
    ),
    // Rules and channel codes name tags of any group.
    r(Method::GET, "/v1/tenants/{t}/rules", Need::Admin),
    r(Method::POST, "/v1/tenants/{t}/rules", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/rules/{id}", Need::Admin),
    r(Method::PATCH, "/v1/tenants/{t}/rules/{id}", Need::Admin),
    r(Method::DELETE, "/v1/tenants/{t}/rules/{id}", Need::Admin),
    r(Method::POST, "/v1/tenants/{t}/rules/{id}:undo", Need::Admin),
    r(
        Method::GET,
        "/v1/tenants/{t}/rules/{id}/firings",
        Need::Admin,
    ),
    r(Method::GET, "/v1/tenants/{t}/channels", Need::Admin),
    r(Method::POST, "/v1/tenants/{t}/channels", Need::Admin),
    r(Method::DELETE, "/v1/tenants/{t}/channels/{id}", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/customers", Need::Customers),
    // A bulk change acts on a filter over every department's customers.
    r(
        Method::POST,
        "/v1/tenants/{t}/customers:bulk-tags",
        Need::Admin,
    ),
    r(Method::GET, "/v1/tenants/{t}/transfers", Need::Admin),
    r(Method::POST, "/v1/tenants/{t}/transfers", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/transfers/{id}", Need::Admin),
    r(Method::GET, "/v1/tenants/{t}/directory", Need::Read),
    r(
        Method::POST,
        "/v1/tenants/{t}/directory:refresh",
        Need::Admin,
    ),
    r(Method::GET, "/v1/tenants/{t}/operators", Need::Admin),
    r(Method::PUT, "/v1/tenants/{t}/operators/{id}", Need::Admin),
    r(
        Method::DELETE,
        "/v1/tenants/{t}/operators/{id}",
        Need::Admin,
    ),
];

/// The path parameters of a matched route.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub tenant: Option<String>,
    pub id: Option<String>,
}

fn matches(pattern: &str, segments: &[&str]) -> Option<Params> {
    let parts: Vec<&str> = pattern.split('/').skip(1).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut p = Params::default();
    for (part, seg) in parts.iter().zip(segments) {
        match *part {
            "{t}" => p.tenant = Some((*seg).to_owned()),
            "{id}" => p.id = Some((*seg).to_owned()),
            _ if part.starts_with("{id}") => {
                let suffix = &part["{id}".len()..];
                let id = seg.strip_suffix(suffix).filter(|i| !i.is_empty())?;
                p.id = Some(id.to_owned());
            }
            literal if literal == *seg => {}
            _ => return None,
        }
    }
    Some(p)
}

/// The row `req` is for (`segments`: the path after `/admin`, split), or 404 / 405 naming
/// the methods the path has.
pub fn find(method: &Method, segments: &[&str]) -> Result<(&'static RouteSpec, Params), ApiError> {
    let mut methods = Vec::new();
    // A literal row wins over a parameter one (`sync/{id}:cancel` over `sync/{id}`).
    let mut best: Option<(&'static RouteSpec, Params, usize)> = None;
    for spec in ROUTES {
        if let Some(p) = matches(spec.path, segments) {
            if spec.method == *method {
                // Fewer parameters first; of two, the one with a suffix (`{id}:cancel`).
                let rank =
                    spec.path.matches('{').count() * 2 - usize::from(spec.path.contains("}:"));
                if best.as_ref().is_none_or(|(_, _, b)| rank < *b) {
                    best = Some((spec, p, rank));
                }
            } else if !methods.contains(&spec.method) {
                methods.push(spec.method.clone());
            }
        }
    }
    if let Some((spec, p, _)) = best {
        return Ok((spec, p));
    }
    let path = format!("/admin/{}", segments.join("/"));
    if methods.is_empty() {
        return Err(ApiError::NotFound(format!("no route for {method} {path}")));
    }
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    Err(ApiError::MethodNotAllowed(format!(
        "use {}",
        names.join(" or ")
    )))
}

// ---- scopes ----------------------------------------------------------------------------

/// What a department-scoped operator may see of one tenant.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Their departments and every department below them.
    pub departments: BTreeSet<u32>,
    /// The staff in those departments.
    pub staff: BTreeSet<String>,
    pub can_write: bool,
}

impl Scope {
    /// An unscoped group is everyone's; a scoped one is seen when its range names one of
    /// this scope's departments (theirs or one below) or one of their staff. A group scoped
    /// to a department above theirs is not theirs, even with "include sub-departments" on:
    /// it belongs to whoever runs that department (docs/operators.md).
    pub fn sees_group(&self, g: &TagGroup) -> bool {
        match &g.scope {
            None => true,
            Some(range) => {
                range
                    .departments
                    .iter()
                    .any(|d| self.departments.contains(d))
                    || range.users.iter().any(|u| self.staff.contains(u))
            }
        }
    }

    pub fn sees_customer(&self, c: &CustomerRelations) -> bool {
        c.relations.keys().any(|u| self.staff.contains(u.as_str()))
    }
}

/// The caller's scope in `tenant`: `None` when they see everything (an admin), 403 when
/// the tenant is not theirs.
pub async fn scope_of(
    app: &App,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<Option<Scope>, ApiError> {
    let Caller::Operator(o) = caller else {
        return Ok(None);
    };
    if o.session.tenant != *tenant {
        return Err(ApiError::Forbidden(format!(
            "`{}` signed in to tenant `{}`, not `{tenant}`",
            o.session.userid, o.session.tenant
        )));
    }
    if o.role.role == Role::Admin {
        return Ok(None);
    }
    let dir = app.store.get_directory(tenant).await?;
    let departments = match &dir {
        Some(d) => d.expand(o.role.departments.iter().copied()),
        None => o.role.departments.iter().copied().collect(),
    };
    let staff = dir
        .iter()
        .flat_map(|d| d.staff.iter())
        .filter(|s| s.departments.iter().any(|d| departments.contains(d)))
        .map(|s| s.userid.clone())
        .collect();
    Ok(Some(Scope {
        departments,
        staff,
        can_write: o.role.role == Role::Editor,
    }))
}

fn out_of_scope(what: &str) -> ApiError {
    ApiError::Forbidden(format!("{what} is outside your departments"))
}

async fn group_in_scope(
    app: &App,
    scope: &Scope,
    tenant: &TenantId,
    id: &str,
) -> Result<(), ApiError> {
    // An id that is not one (or an unknown group) is left to the route's own 404.
    let Ok(gid) = HubGroupId::parse(id.to_owned()) else {
        return Ok(());
    };
    match app.store.get_group(tenant, &gid).await? {
        Some(g) if !scope.sees_group(&g) => Err(out_of_scope(&format!("tag group `{id}`"))),
        _ => Ok(()),
    }
}

async fn member_in_scope(
    app: &App,
    scope: &Scope,
    tenant: &TenantId,
    id: &str,
) -> Result<(), ApiError> {
    let Ok(member) = MemberId::parse(id.to_owned()) else {
        return Ok(());
    };
    let binding = app.store.get_binding(tenant, &member).await?;
    let customer = match binding.and_then(|b| b.external_userid) {
        Some(c) => app.store.get_customer(tenant, &c).await?,
        None => None,
    };
    if customer.as_ref().is_some_and(|c| scope.sees_customer(c)) {
        Ok(())
    } else {
        Err(out_of_scope(&format!("member `{id}`")))
    }
}

fn body_str(req: &HttpRequest, key: &str) -> Option<String> {
    serde_json::from_slice::<Value>(&req.body)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_owned)
}

/// A group scope in the body (a create or a change) must lie within the caller's
/// departments and staff.
fn body_scope_within(scope: &Scope, req: &HttpRequest) -> Result<(), ApiError> {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let range = &body["scope"];
    for d in range["departments"].as_array().into_iter().flatten() {
        let inside = d
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .is_some_and(|d| scope.departments.contains(&d));
        if !inside {
            return Err(out_of_scope(&format!("department {d}")));
        }
    }
    for u in range["users"].as_array().into_iter().flatten() {
        if !u.as_str().is_some_and(|u| scope.staff.contains(u)) {
            return Err(out_of_scope(&format!("staff member {u}")));
        }
    }
    Ok(())
}

/// The one check: may `caller` do `spec` (with `params`, and `req`'s body for what a create
/// or a move names)? 403 naming why when not. Lists are filtered by their handlers through
/// [`scope_of`]; everything else is decided here.
pub async fn check(
    app: &App,
    caller: &Caller,
    spec: &RouteSpec,
    params: &Params,
    req: &HttpRequest,
) -> Result<(), ApiError> {
    let tenant = match (&spec.need, &params.tenant) {
        (Need::Public | Need::Signed | Need::Tenants, _) => return Ok(()),
        (_, None) => {
            return Err(ApiError::Internal(format!(
                "route {} has no tenant",
                spec.path
            )));
        }
        // A malformed tenant id is the route's 404.
        (_, Some(t)) => match TenantId::parse(t.clone()) {
            Ok(t) => t,
            Err(_) => return Ok(()),
        },
    };
    let Some(scope) = scope_of(app, caller, &tenant).await? else {
        return Ok(());
    };
    if spec.need == Need::Admin {
        return Err(ApiError::Forbidden(format!(
            "{} {} is for admins",
            spec.method,
            spec.path.replace("/v1/tenants/{t}", "…")
        )));
    }
    if spec.need.writes() && !scope.can_write {
        return Err(ApiError::Forbidden(
            "a viewer cannot change anything".into(),
        ));
    }
    let id = params.id.as_deref().unwrap_or("");
    match spec.need {
        Need::WriteGroup => {
            group_in_scope(app, &scope, &tenant, id).await?;
            body_scope_within(&scope, req)
        }
        Need::CreateTag => match body_str(req, "group_id") {
            Some(g) => group_in_scope(app, &scope, &tenant, &g).await,
            None => Ok(()),
        },
        Need::WriteTag => {
            if let Ok(tid) = HubTagId::parse(id.to_owned())
                && let Some(tag) = app.store.get_tag(&tenant, &tid).await?
            {
                group_in_scope(app, &scope, &tenant, tag.group_id.as_str()).await?;
            }
            match body_str(req, "group_id") {
                Some(g) => group_in_scope(app, &scope, &tenant, &g).await,
                None => Ok(()),
            }
        }
        Need::ReadMember | Need::WriteMember => member_in_scope(app, &scope, &tenant, id).await,
        Need::CreateGroup => body_scope_within(&scope, req),
        Need::Read | Need::Groups | Need::Customers => Ok(()),
        Need::Public | Need::Signed | Need::Tenants | Need::Admin => Ok(()),
    }
}

/// The groups `caller` sees of `groups` (all for an admin).
pub fn visible_groups(scope: Option<&Scope>, groups: Vec<TagGroup>) -> Vec<TagGroup> {
    match scope {
        None => groups,
        Some(s) => groups.into_iter().filter(|g| s.sees_group(g)).collect(),
    }
}

/// The current caller's scope in `tenant` (`None`: they see everything).
pub async fn current_scope(app: &App, tenant: &TenantId) -> Result<Option<Scope>, ApiError> {
    match current() {
        Some(c) => scope_of(app, &c, tenant).await,
        None => Ok(None),
    }
}

impl Scope {
    /// One page of the customers matching `filter` that this scope sees (those with a
    /// relation to one of its staff), in external-userid order after `cursor`.
    pub async fn customers_page(
        &self,
        app: &App,
        tenant: &TenantId,
        filter: &CustomerFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<CustomerPage, ApiError> {
        let mut seen: BTreeSet<ExternalUserId> = BTreeSet::new();
        for staff in &self.staff {
            if filter.userid.as_ref().is_some_and(|u| u.as_str() != staff) {
                continue;
            }
            let Ok(userid) = WecomUserId::parse(staff.clone()) else {
                continue;
            };
            let mut f = filter.clone();
            f.userid = Some(userid);
            seen.extend(app.store.matching_customers(tenant, &f).await?);
        }
        let total = seen.len() as u64;
        let after: Vec<&ExternalUserId> = seen
            .iter()
            .filter(|id| cursor.is_none_or(|c| id.as_str() > c))
            .collect();
        let mut customers = Vec::new();
        for id in after.iter().take(limit) {
            if let Some(e) = app.store.get_customer_entry(tenant, id).await? {
                customers.push(e);
            }
        }
        let next_cursor = (after.len() > limit).then(|| after[limit - 1].to_string());
        Ok(CustomerPage {
            customers,
            next_cursor,
            total,
        })
    }
}
