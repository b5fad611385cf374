//! Operators: staff members who sign in to the console with WeCom (wecom-api.md §13), the
//! roles an admin gives them, and their sessions (issue 16; docs/operators.md).

use super::{TenantId, Timestamp};
use serde::{Deserialize, Serialize};

/// What an operator may do. `Editor` and `Viewer` are limited to departments (and the
/// departments below them); a viewer cannot write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Editor,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

/// The role an admin gave one staff member of a tenant's corp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRole {
    pub tenant: TenantId,
    /// The WeCom userid.
    pub userid: String,
    /// The name in the directory when the role was given (for lists).
    #[serde(default)]
    pub name: String,
    pub role: Role,
    /// For `editor`/`viewer`: the departments they may see (sub-departments included). Empty
    /// for `admin`.
    #[serde(default)]
    pub departments: Vec<u32>,
    pub assigned_at: Timestamp,
    /// Who gave it (`admin-token` or an admin's userid).
    pub assigned_by: String,
    #[serde(skip)]
    pub version: u64,
}

/// A signed-in operator. Stored under the hash of its cookie's token (the token itself is
/// only ever in the browser), expiring at `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the cookie's token.
    pub id_hash: String,
    pub tenant: TenantId,
    pub userid: String,
    pub name: String,
    /// Their WeCom departments when they signed in (`user/get`).
    pub wecom_departments: Vec<u32>,
    /// Sent by the console in `X-CSRF-Token` with every write; checked against this.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A sign-in under way: the `state` sent to WeCom, bound to the browser that started it (the
/// hash of its pre-login cookie). Works once, for [`LoginState::LIFETIME_SECS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub tenant: TenantId,
    /// Hex SHA-256 of the pre-login cookie's value.
    pub browser_hash: String,
    pub expires_at: Timestamp,
}

impl LoginState {
    /// WeCom's code lives five minutes; the whole sign-in gets ten.
    pub const LIFETIME_SECS: i64 = 600;
}

impl Session {
    /// How long a session lasts from sign-in (choice: one working day).
    pub const LIFETIME_SECS: i64 = 8 * 3600;
}
