//! The store port: typed access to every entity tagsync keeps, with optimistic concurrency.
//!
//! Versions: every mutable entity carries `version` (0 = not stored yet). A write succeeds only
//! if the stored version still equals the entity's (or, for 0, if nothing is stored), and then
//! bumps it; otherwise it fails with [`StoreError::Conflict`] and the caller re-reads.

use crate::domain::*;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition failed: a stale version, an item that already exists, a lease held by
    /// someone else. Re-read and decide again.
    #[error("conflict on {key}: {reason}")]
    Conflict { key: String, reason: String },
    /// A transaction was cancelled; `failed` lists (position, key, reason) of the writes whose
    /// conditions failed (DynamoDB's cancellation reasons, positional).
    #[error("transaction cancelled: {}", describe_failed(.failed))]
    TransactionConflict {
        failed: Vec<(usize, String, String)>,
    },
    /// The backend could not be reached or was throttled; safe to retry.
    #[error("store unavailable during {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    /// Stored data could not be decoded: a bug or a manual edit; retrying will not help.
    #[error("stored item {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    /// The request itself is invalid for the backend (e.g. too many items in a transaction).
    #[error("invalid store request: {0}")]
    Invalid(String),
}

fn describe_failed(failed: &[(usize, String, String)]) -> String {
    failed
        .iter()
        .map(|(i, k, r)| format!("#{i} {k}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl StoreError {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. }
                | StoreError::Conflict { .. }
                | StoreError::TransactionConflict { .. }
        )
    }
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. } | StoreError::TransactionConflict { .. }
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One write of an atomic multi-item write ([`Store::transact`]): all apply or none does.
#[derive(Clone, Debug)]
pub enum Write {
    Group(TagGroup),
    Tag(Tag),
    /// Delete if the stored version still equals `version`.
    DeleteGroup {
        tenant: TenantId,
        id: HubGroupId,
        version: u64,
    },
    DeleteTag {
        tenant: TenantId,
        id: HubTagId,
        version: u64,
    },
    /// Add an id-map entry; fails if the side id is already mapped.
    Link(IdLink),
    /// Remove an id-map entry (no condition).
    Unlink(IdLink),
    /// Point an id-map entry at `hub_id`, whatever it pointed at (no condition): a side
    /// object passing from one hub object to another under the tenant's library lock.
    Relink(IdLink),
    Binding(MemberBinding),
    MemberTags(MemberTags),
    Customer(CustomerRelations),
    Run(SyncRun),
    Audit(AuditEntry),
    /// A rule, versioned (a canary's customers are counted on it).
    Rule(Rule),
    /// A rule firing, versioned (an undo marks it undone).
    Firing(Firing),
    /// Marks an idempotency key completed unless it already is (or is claimed and its lock
    /// has not lapsed): written in one transaction with the effect it guards, the effect
    /// happens once — a second run's transaction fails as a whole with a conflict.
    CompleteOnce {
        key: String,
        now: Timestamp,
        expires_at: Timestamp,
    },
}

/// The answer to an idempotency claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody has this key (or its record expired): go ahead, then `complete` or `release`.
    Acquired,
    /// Someone completed this key: it is a duplicate.
    Completed,
    /// Someone is working on this key right now; try again after their lock lapses.
    InProgress,
}

/// A page of a listing, with the cursor of the next page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The customer index (issue 15): customers found by their tags, states, staff and text. A
/// part of every [`Store`]; each backend answers filters its own way (`store::customers`).
#[async_trait]
pub trait CustomerIndex: Send + Sync {
    async fn get_customer_entry(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerEntry>>;
    /// Writes the entry if its stored version is still `entry.version` (0: none stored);
    /// on success `entry.version` is the new version; otherwise [`StoreError::Conflict`].
    async fn put_customer_entry(&self, entry: &mut CustomerEntry) -> StoreResult<()>;
    /// Customers matching `filter` in external-userid order after `cursor`, at most `limit`
    /// (clamped to 1..=200), with the exact number of matches.
    async fn query_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<CustomerPage>;
    /// Every customer matching `filter`, in external-userid order (a bulk run's snapshot).
    async fn matching_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
    ) -> StoreResult<Vec<ExternalUserId>>;
}

/// Everything tagsync keeps, the customer index included.
#[async_trait]
pub trait Store: CustomerIndex + Send + Sync + 'static {
    /// A cheap read that fails when the store cannot be used (`/healthz`).
    async fn check(&self) -> StoreResult<()>;

    // Tenants.
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    /// Creates (version 0) or updates a tenant; on success `tenant.version` is the new version.
    async fn put_tenant(&self, tenant: &mut Tenant) -> StoreResult<()>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Notes that an inbound event of the tenant was accepted at `at` (for the status route);
    /// kept apart from the tenant item so events never contend with operator writes.
    async fn touch_last_event(&self, tenant: &TenantId, at: Timestamp) -> StoreResult<()>;
    async fn last_event_at(&self, tenant: &TenantId) -> StoreResult<Option<Timestamp>>;

    // The tag library.
    async fn get_group(&self, tenant: &TenantId, id: &HubGroupId) -> StoreResult<Option<TagGroup>>;
    async fn list_groups(&self, tenant: &TenantId) -> StoreResult<Vec<TagGroup>>;
    async fn put_group(&self, group: &mut TagGroup) -> StoreResult<()>;
    async fn get_tag(&self, tenant: &TenantId, id: &HubTagId) -> StoreResult<Option<Tag>>;
    async fn list_tags(&self, tenant: &TenantId) -> StoreResult<Vec<Tag>>;
    async fn put_tag(&self, tag: &mut Tag) -> StoreResult<()>;
    /// The hub id a side's id maps to (strongly consistent in both backends).
    async fn lookup_link(
        &self,
        tenant: &TenantId,
        side: Side,
        kind: EntityKind,
        side_id: &str,
    ) -> StoreResult<Option<String>>;

    // Members and customers.
    async fn get_binding(
        &self,
        tenant: &TenantId,
        member: &MemberId,
    ) -> StoreResult<Option<MemberBinding>>;
    async fn binding_by_customer(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<MemberBinding>>;
    async fn get_member_tags(
        &self,
        tenant: &TenantId,
        member: &MemberId,
    ) -> StoreResult<Option<MemberTags>>;
    /// Every customer whose relations were ever stored.
    async fn list_customers(&self, tenant: &TenantId) -> StoreResult<Vec<ExternalUserId>>;
    async fn get_customer(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerRelations>>;

    /// Applies every write or none. Versions are checked as for single puts.
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()>;

    // Audit and runs.
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first.
    async fn list_audit(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<AuditEntry>>;
    async fn get_run(&self, tenant: &TenantId, id: &RunId) -> StoreResult<Option<SyncRun>>;
    async fn put_run(&self, run: &mut SyncRun) -> StoreResult<()>;
    /// Newest first.
    async fn list_runs(&self, tenant: &TenantId, limit: usize) -> StoreResult<Vec<SyncRun>>;
    /// The member list of a run's WeCom relations chain, in an item of its own: in the run
    /// item, 50,000 staff would take megabytes where DynamoDB holds 400 KB an item. Written
    /// once, before the chain is recorded; the first write wins, so a duplicate page job
    /// cannot change a chain's members under its walk. Expires at `expires_at`.
    async fn put_chain_users(
        &self,
        tenant: &TenantId,
        run: &RunId,
        chain: &str,
        users: &[String],
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    async fn get_chain_users(
        &self,
        tenant: &TenantId,
        run: &RunId,
        chain: &str,
    ) -> StoreResult<Option<Vec<String>>>;

    // Idempotency (dedupe of callbacks, webhooks and job side effects).
    /// Put-if-absent with expiry: the first caller gets `Acquired` and holds the key until
    /// `lock_until`; a record past `expires_at` counts as absent.
    async fn claim(
        &self,
        key: &str,
        now: Timestamp,
        lock_until: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Claim>;
    /// Marks a claimed key done until `expires_at`.
    async fn complete(&self, key: &str, expires_at: Timestamp) -> StoreResult<()>;
    /// Gives a claimed key back (the work failed and must be retried).
    async fn release(&self, key: &str) -> StoreResult<()>;

    // Leases (e.g. one token refresher at a time).
    /// Takes or renews the lease `name` for `holder` until `until`; false if someone else
    /// holds an unexpired lease.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;

    // Counters shared by every process (the WeCom rate budget's windows).
    /// Adds `by` to the counter `name` unless it already reached `limit`, atomically across
    /// processes; answers the new count, or `None` when the counter was full (nothing added).
    /// The counter is kept at least until `expires_at`.
    async fn count_up(
        &self,
        name: &str,
        by: u64,
        limit: u64,
        expires_at: Timestamp,
    ) -> StoreResult<Option<u64>>;

    // Access tokens.
    async fn get_token(
        &self,
        corp: &CorpId,
        secret_fingerprint: &str,
    ) -> StoreResult<Option<AccessToken>>;
    async fn put_token(&self, token: &mut AccessToken) -> StoreResult<()>;
    /// Deletes the cached token only if it is still `token` (a newer one is left alone).
    async fn invalidate_token(
        &self,
        corp: &CorpId,
        secret_fingerprint: &str,
        token: &str,
    ) -> StoreResult<()>;

    // Automatic tagging: rules, their firings (kept at least 30 days), channel codes.
    async fn get_rule(&self, tenant: &TenantId, id: &RuleId) -> StoreResult<Option<Rule>>;
    /// Oldest first.
    async fn list_rules(&self, tenant: &TenantId) -> StoreResult<Vec<Rule>>;
    async fn put_rule(&self, rule: &mut Rule) -> StoreResult<()>;
    /// Deletes the rule if its stored version still equals `version`; its firings stay until
    /// they expire.
    async fn delete_rule(&self, tenant: &TenantId, id: &RuleId, version: u64) -> StoreResult<()>;
    /// One rule's firings, newest first.
    async fn list_firings(
        &self,
        tenant: &TenantId,
        rule: &RuleId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Firing>>;
    async fn put_firing(&self, firing: &mut Firing) -> StoreResult<()>;
    async fn get_channel(&self, tenant: &TenantId, id: &ChannelId) -> StoreResult<Option<Channel>>;
    /// Oldest first.
    async fn list_channels(&self, tenant: &TenantId) -> StoreResult<Vec<Channel>>;
    async fn put_channel(&self, channel: &mut Channel) -> StoreResult<()>;
    async fn delete_channel(&self, tenant: &TenantId, id: &ChannelId) -> StoreResult<()>;

    // The corp's directory (departments and staff, `domain::directory`), one per tenant.
    async fn get_directory(&self, tenant: &TenantId) -> StoreResult<Option<Directory>>;
    /// Writes the directory if its stored version is still `directory.version` (0: none
    /// stored); on success `directory.version` is the new version.
    async fn put_directory(&self, directory: &mut Directory) -> StoreResult<()>;

    // Operators (issue 16): their roles, sessions, and sign-ins under way.
    async fn get_operator(
        &self,
        tenant: &TenantId,
        userid: &str,
    ) -> StoreResult<Option<OperatorRole>>;
    /// By userid.
    async fn list_operators(&self, tenant: &TenantId) -> StoreResult<Vec<OperatorRole>>;
    /// Versioned like every entity; on success `role.version` is the new version.
    async fn put_operator(&self, role: &mut OperatorRole) -> StoreResult<()>;
    async fn delete_operator(
        &self,
        tenant: &TenantId,
        userid: &str,
        version: u64,
    ) -> StoreResult<()>;
    /// The session stored under `id_hash`, unless it expired.
    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<Session>>;
    /// Stores a new session until its `expires_at`; an id already stored is a conflict.
    async fn put_session(&self, session: &Session) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    /// Stores a sign-in under way until its `expires_at`.
    async fn put_login_state(&self, login: &LoginState) -> StoreResult<()>;
    /// Removes the sign-in `state` and answers it: once (a second take, or one racing it,
    /// gets `None`), and never after it expired.
    async fn take_login_state(&self, state: &str) -> StoreResult<Option<LoginState>>;

    // Queue marks: one tenant's queued jobs, for a queue that cannot count them (SQS).
    /// Writes each mark, replacing its job's mark if there is one.
    async fn put_queue_marks(&self, marks: &[QueueMark]) -> StoreResult<()>;
    /// Replaces the mark of `mark.job` only if the job has one: a job done meanwhile (its
    /// mark deleted) stays done. Returns whether a mark was replaced.
    async fn update_queue_mark(&self, mark: &QueueMark) -> StoreResult<bool>;
    async fn delete_queue_mark(&self, tenant: &TenantId, job: &JobId) -> StoreResult<()>;
    /// The tenant's marks that have not expired.
    async fn list_queue_marks(&self, tenant: &TenantId) -> StoreResult<Vec<QueueMark>>;
}
