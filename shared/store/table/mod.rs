//! The typed store over the single-table item layout: every entity as items laid out by one
//! key schema ([`keys`]), so both backends store them identically.
//!
//! The [`Store`] implementation below is the map: each method names the key its entity lives
//! under and the one way it is read or written ([`encoding`]); what takes more than that lives
//! in the file of its seam — tenants and tokens with their sealed secrets (`tenants.rs`),
//! members and customers (`members.rs`), atomic writes (`writes.rs`), audit entries
//! (`audit.rs`), idempotency keys, leases, counters and sign-ins (`claims.rs`), firings and
//! queue marks (`marks.rs`).
//!
//! Tenant secrets and access tokens are sealed (see [`super::sealing`]) when the store has a
//! sealer; every other field is stored as it is.

mod audit;
mod claims;
mod encoding;
mod keys;
mod marks;
mod members;
mod tenants;
mod writes;

pub use marks::FIRING_TTL_SECS;

use super::item::{Condition, CountUp, ItemBackend, ItemWrite};
use super::sealing::Sealer;
use crate::domain::*;
use crate::ports::store::CustomerIndex;
use crate::ports::{Claim, Page, Store, StoreResult, Write};
use async_trait::async_trait;
use encoding::decode;

pub struct TableStore<B> {
    backend: B,
    /// When this process last wrote each tenant's last-event time: a burst of events writes
    /// it once per second (`tenants.rs`), not once per event.
    last_event_written: std::sync::Mutex<std::collections::HashMap<TenantId, Timestamp>>,
    /// Seals tenant secrets and access tokens; without one (tests of the layout) they are
    /// stored as they are.
    sealer: Option<Sealer>,
}

impl<B: ItemBackend> TableStore<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            last_event_written: Default::default(),
            sealer: None,
        }
    }
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

/// The backend answers: SQLite from its tables, DynamoDB from items (`store::customers`).
#[async_trait]
impl<B: ItemBackend> CustomerIndex for TableStore<B> {
    async fn get_customer_entry(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerEntry>> {
        self.backend.get_customer_entry(tenant, customer).await
    }

    async fn put_customer_entry(&self, entry: &mut CustomerEntry) -> StoreResult<()> {
        self.backend.put_customer_entry(entry).await
    }

    async fn query_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<CustomerPage> {
        self.backend
            .query_customers(tenant, filter, cursor, limit)
            .await
    }

    async fn matching_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
    ) -> StoreResult<Vec<ExternalUserId>> {
        self.backend.matching_customers(tenant, filter).await
    }
}

#[async_trait]
impl<B: ItemBackend> Store for TableStore<B> {
    async fn check(&self) -> StoreResult<()> {
        self.backend.get("HEALTH", "-").await.map(|_| ())
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        tenants::get(self, id).await
    }

    async fn put_tenant(&self, tenant: &mut Tenant) -> StoreResult<()> {
        tenants::put(self, tenant).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        tenants::list(self).await
    }

    async fn touch_last_event(&self, tenant: &TenantId, at: Timestamp) -> StoreResult<()> {
        tenants::touch_last_event(self, tenant, at).await
    }

    async fn last_event_at(&self, tenant: &TenantId) -> StoreResult<Option<Timestamp>> {
        self.get_decoded(keys::last_event(tenant)).await
    }

    async fn get_group(&self, tenant: &TenantId, id: &HubGroupId) -> StoreResult<Option<TagGroup>> {
        self.get_versioned(keys::group(tenant, id)).await
    }

    async fn list_groups(&self, tenant: &TenantId) -> StoreResult<Vec<TagGroup>> {
        self.list_versioned(keys::library(tenant), keys::GROUPS)
            .await
    }

    async fn put_group(&self, group: &mut TagGroup) -> StoreResult<()> {
        self.put_versioned(keys::group(&group.tenant, &group.id), group)
            .await
    }

    async fn get_tag(&self, tenant: &TenantId, id: &HubTagId) -> StoreResult<Option<Tag>> {
        self.get_versioned(keys::tag(tenant, id)).await
    }

    async fn list_tags(&self, tenant: &TenantId) -> StoreResult<Vec<Tag>> {
        self.list_versioned(keys::library(tenant), keys::TAGS).await
    }

    async fn put_tag(&self, tag: &mut Tag) -> StoreResult<()> {
        self.put_versioned(keys::tag(&tag.tenant, &tag.id), tag)
            .await
    }

    async fn lookup_link(
        &self,
        tenant: &TenantId,
        side: Side,
        kind: EntityKind,
        side_id: &str,
    ) -> StoreResult<Option<String>> {
        let key = keys::link(tenant, side, kind, side_id);
        let link: Option<IdLink> = self.get_decoded(key).await?;
        Ok(link.map(|l| l.hub_id))
    }

    async fn get_binding(
        &self,
        tenant: &TenantId,
        member: &MemberId,
    ) -> StoreResult<Option<MemberBinding>> {
        self.get_versioned(keys::binding(tenant, member)).await
    }

    async fn binding_by_customer(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<MemberBinding>> {
        members::binding_by_customer(self, tenant, customer).await
    }

    async fn get_member_tags(
        &self,
        tenant: &TenantId,
        member: &MemberId,
    ) -> StoreResult<Option<MemberTags>> {
        self.get_versioned(keys::member_tags(tenant, member)).await
    }

    async fn list_customers(&self, tenant: &TenantId) -> StoreResult<Vec<ExternalUserId>> {
        members::list_customers(self, tenant).await
    }

    async fn get_customer(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerRelations>> {
        self.get_versioned(keys::relations(tenant, customer)).await
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        writes::transact(self, writes).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.backend.write(audit::audit_put(entry)?).await
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<AuditEntry>> {
        self.newest_first(keys::audit(tenant), cursor, limit, decode)
            .await
    }

    async fn get_run(&self, tenant: &TenantId, id: &RunId) -> StoreResult<Option<SyncRun>> {
        self.get_versioned(keys::run(tenant, id)).await
    }

    async fn put_run(&self, run: &mut SyncRun) -> StoreResult<()> {
        self.put_versioned(keys::run(&run.tenant, &run.id), run)
            .await
    }

    async fn put_chain_users(
        &self,
        tenant: &TenantId,
        run: &RunId,
        chain: &str,
        users: &[String],
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        let item = encoding::expiring_item(keys::run_part(tenant, run, chain), &users, expires_at)?;
        let condition = Condition::Absent;
        match self.backend.write(ItemWrite::Put { item, condition }).await {
            // Written by an earlier copy of the page job: that one stands.
            Err(e) if e.is_conflict() => Ok(()),
            other => other,
        }
    }

    async fn get_chain_users(
        &self,
        tenant: &TenantId,
        run: &RunId,
        chain: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        self.get_decoded(keys::run_part(tenant, run, chain)).await
    }

    async fn list_runs(&self, tenant: &TenantId, limit: usize) -> StoreResult<Vec<SyncRun>> {
        let page = self
            .newest_first(keys::runs(tenant), None, limit, encoding::decode_versioned)
            .await?;
        Ok(page.items)
    }

    async fn claim(
        &self,
        key: &str,
        now: Timestamp,
        lock_until: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Claim> {
        claims::claim(self, key, now, lock_until, expires_at).await
    }

    async fn complete(&self, key: &str, expires_at: Timestamp) -> StoreResult<()> {
        claims::complete(self, key, expires_at).await
    }

    async fn release(&self, key: &str) -> StoreResult<()> {
        self.delete(keys::idempotency(key), Condition::None).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        claims::acquire_lease(self, name, holder, now, until).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        claims::release_lease(self, name, holder).await
    }

    async fn count_up(
        &self,
        name: &str,
        by: u64,
        limit: u64,
        expires_at: Timestamp,
    ) -> StoreResult<Option<u64>> {
        let (pk, sk) = keys::counter(name);
        let expiration = expires_at.secs();
        let step = CountUp {
            pk,
            sk,
            by,
            limit,
            expiration,
        };
        self.backend.count_up(step).await
    }

    async fn get_token(
        &self,
        corp: &CorpId,
        secret_fingerprint: &str,
    ) -> StoreResult<Option<AccessToken>> {
        tenants::get_token(self, corp, secret_fingerprint).await
    }

    async fn put_token(&self, token: &mut AccessToken) -> StoreResult<()> {
        tenants::put_token(self, token).await
    }

    async fn invalidate_token(
        &self,
        corp: &CorpId,
        secret_fingerprint: &str,
        token: &str,
    ) -> StoreResult<()> {
        tenants::invalidate_token(self, corp, secret_fingerprint, token).await
    }

    async fn get_rule(&self, tenant: &TenantId, id: &RuleId) -> StoreResult<Option<Rule>> {
        self.get_versioned(keys::rule(tenant, id)).await
    }

    async fn list_rules(&self, tenant: &TenantId) -> StoreResult<Vec<Rule>> {
        self.list_versioned(keys::rules(tenant), "").await
    }

    async fn put_rule(&self, rule: &mut Rule) -> StoreResult<()> {
        self.put_versioned(keys::rule(&rule.tenant, &rule.id), rule)
            .await
    }

    async fn delete_rule(&self, tenant: &TenantId, id: &RuleId, version: u64) -> StoreResult<()> {
        self.delete(keys::rule(tenant, id), Condition::Version(version))
            .await
    }

    async fn list_firings(
        &self,
        tenant: &TenantId,
        rule: &RuleId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Firing>> {
        let pk = keys::firings(tenant, rule);
        self.newest_first(pk, cursor, limit, encoding::decode_versioned)
            .await
    }

    async fn put_firing(&self, firing: &mut Firing) -> StoreResult<()> {
        let write = marks::firing_put(firing)?;
        self.put_bumping(write, firing).await
    }

    async fn get_channel(&self, tenant: &TenantId, id: &ChannelId) -> StoreResult<Option<Channel>> {
        self.get_versioned(keys::channel(tenant, id)).await
    }

    async fn list_channels(&self, tenant: &TenantId) -> StoreResult<Vec<Channel>> {
        self.list_versioned(keys::channels(tenant), "").await
    }

    async fn put_channel(&self, channel: &mut Channel) -> StoreResult<()> {
        self.put_versioned(keys::channel(&channel.tenant, &channel.id), channel)
            .await
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &ChannelId) -> StoreResult<()> {
        self.delete(keys::channel(tenant, id), Condition::None)
            .await
    }

    async fn get_directory(&self, tenant: &TenantId) -> StoreResult<Option<Directory>> {
        self.get_versioned(keys::directory(tenant)).await
    }

    async fn put_directory(&self, directory: &mut Directory) -> StoreResult<()> {
        self.put_versioned(keys::directory(&directory.tenant), directory)
            .await
    }

    async fn get_operator(
        &self,
        tenant: &TenantId,
        userid: &str,
    ) -> StoreResult<Option<OperatorRole>> {
        self.get_versioned(keys::operator(tenant, userid)).await
    }

    async fn list_operators(&self, tenant: &TenantId) -> StoreResult<Vec<OperatorRole>> {
        self.list_versioned(keys::operators(tenant), "").await
    }

    async fn put_operator(&self, role: &mut OperatorRole) -> StoreResult<()> {
        self.put_versioned(keys::operator(&role.tenant, &role.userid), role)
            .await
    }

    async fn delete_operator(
        &self,
        tenant: &TenantId,
        userid: &str,
        version: u64,
    ) -> StoreResult<()> {
        let key = keys::operator(tenant, userid);
        self.delete(key, Condition::Version(version)).await
    }

    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
        self.get_decoded(keys::session(id_hash)).await
    }

    async fn put_session(&self, session: &Session) -> StoreResult<()> {
        let key = keys::session(&session.id_hash);
        self.put_new_expiring(key, session, session.expires_at)
            .await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.delete(keys::session(id_hash), Condition::None).await
    }

    async fn put_login_state(&self, login: &LoginState) -> StoreResult<()> {
        let key = keys::login(&login.state);
        self.put_new_expiring(key, login, login.expires_at).await
    }

    async fn take_login_state(&self, state: &str) -> StoreResult<Option<LoginState>> {
        claims::take_login_state(self, state).await
    }

    async fn put_queue_marks(&self, marks: &[QueueMark]) -> StoreResult<()> {
        marks::put_queue_marks(self, marks).await
    }

    async fn update_queue_mark(&self, mark: &QueueMark) -> StoreResult<bool> {
        marks::update_queue_mark(self, mark).await
    }

    async fn delete_queue_mark(&self, tenant: &TenantId, job: &JobId) -> StoreResult<()> {
        self.delete(keys::queue_mark(tenant, job), Condition::None)
            .await
    }

    async fn list_queue_marks(&self, tenant: &TenantId) -> StoreResult<Vec<QueueMark>> {
        let items = self.query_all(keys::queue_marks(tenant), "", false).await?;
        items.iter().map(decode).collect()
    }
}
