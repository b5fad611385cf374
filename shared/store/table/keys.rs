//! The key schema of the single-table layout. It lives here and nowhere else, so both backends
//! lay entities out identically:
//!
//! | entity | pk | sk |
//! |---|---|---|
//! | tenant / its last accepted event | `TENANT#{t}` (GSI `TENANTS` / `{t}`) | `META` / `LAST_EVENT` |
//! | tag group / tag | `LIB#{t}` | `G#{hub id}` / `T#{hub id}` |
//! | id map entry | `LINK#{t}#{side}#{kind}#{side id}` | `MAP` |
//! | member binding / member tags | `MEMBER#{t}#{member}` | `BINDING` / `TAGS` |
//! | customer relations / customer→member marker | `CUST#{t}#{external userid}` | `RELATIONS` / `BINDING` |
//! | index of customers with relations | `CUSTS#{t}` | `{external userid}` |
//! | customer index entry (issue 15; DynamoDB only, SQLite has tables: `customers.rs`) | `CUST#{t}#{external userid}` | `INDEX` |
//! | its copy under each facet (tag, state, staff member, bound) and under `all` | `CIDX#{t}#{facet}` | `{external userid}` |
//! | audit entry | `AUDIT#{t}` | `{at ms, 15 digits}#{id}` |
//! | sync run | `RUN#{t}` | `{run id}` (time-ordered) |
//! | a run's part kept apart from it (a relations chain's member list) | `RUNPART#{t}#{run id}` | `{chain}` |
//! | idempotency record | `IDEMP#{key}` | `-` |
//! | lease | `LEASE#{name}` | `-` |
//! | counter (a rate budget's window, `wecom::budget`) | `COUNT#{name}` | `-` |
//! | access token | `TOKEN#{corp}#{secret fingerprint}` | `-` |
//! | the key record of sealed secrets (`sealing.rs`) | `SEALING` | `KEY` |
//! | queue mark (a tenant's queued job, counted on SQS) | `QUEUE#{t}` | `{job id}` |
//! | rule / channel code | `RULE#{t}` / `CHAN#{t}` | `{rule id}` / `{channel id}` |
//! | rule firing (expires after [`super::FIRING_TTL_SECS`]) | `FIRE#{t}#{rule id}` | `{firing id}` (time-ordered) |
//! | the corp's directory (departments and staff, one item) | `DIR#{t}` | `CURRENT` |
//! | operator role / session (by token hash, expiring) / sign-in state (expiring) | `OPER#{t}` / `SESSION#{hash}` / `LOGIN#{state}` | `{userid}` / `-` / `-` |
//!
//! The customer index's keys are `store::customers`' own (it is written apart from the
//! entities, by each backend its own way).

use crate::domain::*;

/// An item's address: partition key and sort key.
pub type Key = (String, String);

/// The sort-key prefixes of a tenant's library partition.
pub const GROUPS: &str = "G#";
pub const TAGS: &str = "T#";
/// The GSI partition listing every tenant.
pub const TENANTS: &str = "TENANTS";
/// Where the key record lives.
pub const KEY_RECORD: (&str, &str) = ("SEALING", "KEY");

pub fn tenant(t: &TenantId) -> Key {
    (format!("TENANT#{t}"), "META".into())
}
pub fn last_event(t: &TenantId) -> Key {
    (format!("TENANT#{t}"), "LAST_EVENT".into())
}
pub fn library(t: &TenantId) -> String {
    format!("LIB#{t}")
}
pub fn group(t: &TenantId, id: &HubGroupId) -> Key {
    (library(t), format!("{GROUPS}{id}"))
}
pub fn tag(t: &TenantId, id: &HubTagId) -> Key {
    (library(t), format!("{TAGS}{id}"))
}
pub fn link(t: &TenantId, side: Side, kind: EntityKind, side_id: &str) -> Key {
    (
        format!("LINK#{t}#{}#{}#{side_id}", side.as_str(), kind.as_str()),
        "MAP".into(),
    )
}
pub fn link_of(link: &IdLink) -> Key {
    self::link(&link.tenant, link.side, link.kind, &link.side_id)
}
fn member(t: &TenantId, m: &MemberId) -> String {
    format!("MEMBER#{t}#{m}")
}
pub fn binding(t: &TenantId, m: &MemberId) -> Key {
    (member(t, m), "BINDING".into())
}
pub fn member_tags(t: &TenantId, m: &MemberId) -> Key {
    (member(t, m), "TAGS".into())
}
fn customer(t: &TenantId, c: &ExternalUserId) -> String {
    format!("CUST#{t}#{c}")
}
pub fn relations(t: &TenantId, c: &ExternalUserId) -> Key {
    (customer(t, c), "RELATIONS".into())
}
/// The customer→member marker: the reverse lookup of a binding.
pub fn customer_marker(t: &TenantId, c: &ExternalUserId) -> Key {
    (customer(t, c), "BINDING".into())
}
pub fn customers(t: &TenantId) -> String {
    format!("CUSTS#{t}")
}
pub fn audit(t: &TenantId) -> String {
    format!("AUDIT#{t}")
}
pub fn runs(t: &TenantId) -> String {
    format!("RUN#{t}")
}
pub fn run(t: &TenantId, id: &RunId) -> Key {
    (runs(t), id.to_string())
}
/// A part of a run kept apart from its item (a chain's member list), by part name.
pub fn run_part(t: &TenantId, run: &RunId, part: &str) -> Key {
    (format!("RUNPART#{t}#{run}"), part.to_string())
}
pub fn idempotency(key: &str) -> Key {
    (format!("IDEMP#{key}"), "-".into())
}
pub fn lease(name: &str) -> Key {
    (format!("LEASE#{name}"), "-".into())
}
pub fn counter(name: &str) -> Key {
    (format!("COUNT#{name}"), "-".into())
}
pub fn token(corp: &CorpId, fp: &str) -> Key {
    (format!("TOKEN#{corp}#{fp}"), "-".into())
}
pub fn queue_marks(t: &TenantId) -> String {
    format!("QUEUE#{t}")
}
pub fn queue_mark(t: &TenantId, job: &JobId) -> Key {
    (queue_marks(t), job.to_string())
}
pub fn rules(t: &TenantId) -> String {
    format!("RULE#{t}")
}
pub fn rule(t: &TenantId, id: &RuleId) -> Key {
    (rules(t), id.to_string())
}
pub fn firings(t: &TenantId, rule: &RuleId) -> String {
    format!("FIRE#{t}#{rule}")
}
pub fn firing(f: &Firing) -> Key {
    (firings(&f.tenant, &f.rule_id), f.id.to_string())
}
pub fn channels(t: &TenantId) -> String {
    format!("CHAN#{t}")
}
pub fn channel(t: &TenantId, id: &ChannelId) -> Key {
    (channels(t), id.to_string())
}
pub fn directory(t: &TenantId) -> Key {
    (format!("DIR#{t}"), "CURRENT".into())
}
pub fn operators(t: &TenantId) -> String {
    format!("OPER#{t}")
}
pub fn operator(t: &TenantId, userid: &str) -> Key {
    (operators(t), userid.to_owned())
}
pub fn session(id_hash: &str) -> Key {
    (format!("SESSION#{id_hash}"), "-".into())
}
pub fn login(state: &str) -> Key {
    (format!("LOGIN#{state}"), "-".into())
}
