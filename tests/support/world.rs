//! The whole system on loopback, for end-to-end tests, the property test and benchmarks: the
//! WeCom simulator, the mall simulator, and tagsync itself run in-process exactly as
//! `tagsync serve` runs (routes, worker pool, SQLite store and queue in a temporary
//! directory), with one tenant registered through the admin API and both simulators wired to
//! it the way `serve --demo` wires them.
//!
//! Besides starting and stopping it, [`World`] knows when the system has gone quiet
//! ([`World::settle`]) and shows each side's tag library and a member's tags in one normalized
//! form ([`World::library_view`], [`World::member_view`]), so a test compares the three sides
//! by name and [`World::assert_converged`] explains any difference.
//!
//! Lives with the tests (`tests/support/`), not in the product: each test binary and bench
//! that needs it includes it with `#[path]`.
//!
//! This is a test harness: where it cannot do its job (a port, the admin API unreachable) it
//! panics with the reason rather than returning an error every caller would unwrap.

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use tagsync::app::App;
use tagsync::config::Config;
use tagsync::domain::{MemberId, TenantId};
use tagsync::mall::client::{MallGroupWithTags, MallMember};
use tagsync::mall::webhook::MallTag;
use tagsync::metrics::JOBS;
use tagsync::runtime::serve::{Nightly, ServeOptions, serve};
use tagsync::sim::mall::{MallSim, MallSimConfig};
use tagsync::sim::settle::settle_sides;
use tagsync::sim::wecom::{SimConfig, SimGroup, SimTag, WecomSim};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bearer token of the admin API of every world (at least 16 characters).
pub const ADMIN_TOKEN: &str = "world-admin-token-0123456789abcdef";
/// The tenant's `message_feed_secret` in every world (the feed connector signs with it).
pub const FEED_SECRET: &str = "world-feed-secret-0123456789";

/// How a [`World`] is set up. [`Default`]: four workers, tenant `acme`, worker backoff 20 ms
/// doubling to 200 ms, the simulators' defaults, callbacks and webhooks wired.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// Concurrent jobs (`tagsync serve --workers`).
    pub workers: usize,
    pub tenant: String,
    /// First retry delay of a failed job; doubles per receive up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a received job stays invisible to other workers.
    pub visibility: Duration,
    /// Point the WeCom simulator's callbacks and the mall simulator's webhooks at tagsync.
    /// Off, both sides record their events and deliver none.
    pub wire: bool,
    /// The WeCom simulator. Its corp id, secret, agent id, callback token and AES key become
    /// the tenant's; its `callback_url` is ignored (see `wire`).
    pub wecom: SimConfig,
    /// The mall simulator. Its first token and its webhook secret become the tenant's; its
    /// `webhook_url` is ignored (see `wire`).
    pub mall: MallSimConfig,
    /// tagsync's WeCom rate budget (`TAGSYNC_WECOM_RATE_SHARE`); the default share when `None`.
    pub wecom_budget: Option<tagsync::wecom::budget::BudgetConfig>,
    /// Where tagsync runs: as `tagsync serve` or as the Lambdas. Default: [`Backend::of_this_binary`].
    pub backend: Backend,
    /// On the cloud backend, how long a worker invocation may run before the event source
    /// mapping stand-in counts it failed (the template's `Timeout`, 60 s, unless a bench
    /// needs its setup to outlast a slow machine).
    pub lambda_timeout: Duration,
}

/// How tagsync runs in a [`World`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `tagsync serve`: SQLite store and queue, its own routes and worker pool.
    Sqlite,
    /// The Lambdas (`super::cloud`): DynamoDB store on DynamoDB Local, SQS queue on moto, the
    /// routes behind an API Gateway v2 stand-in, the worker fed by an event source mapping
    /// stand-in (`workers` pollers).
    Cloud,
}

impl Backend {
    /// The cloud-path test binary (`tests/cloud/`) runs the very scenario files of the other
    /// end-to-end binaries (`#[path]`), so its worlds default to the cloud; every other test
    /// binary and bench runs `tagsync serve`.
    pub fn of_this_binary() -> Self {
        if env!("CARGO_CRATE_NAME") == "cloud" {
            Backend::Cloud
        } else {
            Backend::Sqlite
        }
    }
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            tenant: "acme".into(),
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            visibility: Duration::from_secs(10),
            wire: true,
            wecom: SimConfig::default(),
            mall: MallSimConfig::default(),
            wecom_budget: None,
            backend: Backend::of_this_binary(),
            lambda_timeout: super::cloud::WORKER_TIMEOUT,
        }
    }
}

/// The running system. Dropping it stops tagsync (without waiting) and both simulators;
/// [`World::stop`] waits for them.
pub struct World {
    pub wecom: WecomSim,
    pub mall: MallSim,
    /// tagsync's app: its store, queue, metrics and clients.
    pub app: App,
    /// `http://127.0.0.1:P`, where tagsync listens.
    pub base: String,
    /// The cloud world's AWS resources and usage counters (`None` on SQLite).
    pub cloud: Option<super::cloud::CloudResources>,
    pub tenant: TenantId,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    data: DataDir,
}

/// tagsync's data directory, removed when the world goes.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One tag library, by name: groups sorted by name, each group's tags sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupView {
    pub name: String,
    pub order: u32,
    pub tags: Vec<TagView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TagView {
    pub name: String,
    pub order: u32,
}

/// The three sides' libraries: the hub's (admin API), WeCom's (corp and rule-group tags: a
/// scoped hub group lives in a rule group) and the mall's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LibraryView {
    pub hub: Vec<GroupView>,
    pub wecom: Vec<GroupView>,
    pub mall: Vec<GroupView>,
}

/// One member's tags on every side, as `"group/tag"` names (so equal tag names in different
/// groups stay apart). An id a side's library does not know shows as `"?{id}"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// The WeCom customer the member is bound to (the mall's, else the hub's answer).
    pub external_userid: Option<String>,
    /// From `GET …/members/{id}`; empty while that route answers 404 or 501.
    pub hub: BTreeSet<String>,
    pub mall: BTreeSet<String>,
    /// Per follow relation (member userid) of the bound customer.
    pub relations: BTreeMap<String, BTreeSet<String>>,
}

impl MemberView {
    /// `Ok` when the hub, the mall and every relation hold exactly `expected`; otherwise
    /// which side holds what.
    pub fn expect_everywhere(&self, expected: &[&str]) -> Result<(), String> {
        let want: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        let mut out = String::new();
        if self.hub != want {
            let _ = writeln!(out, "  hub holds {:?}", self.hub);
        }
        if self.mall != want {
            let _ = writeln!(out, "  mall holds {:?}", self.mall);
        }
        if self.relations.is_empty() {
            let _ = writeln!(out, "  the customer has no WeCom relation");
        }
        for (userid, tags) in &self.relations {
            if *tags != want {
                let _ = writeln!(out, "  relation {userid} holds {tags:?}");
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(format!("member tags should be {want:?} everywhere:\n{out}"))
        }
    }
}

/// Counters of everything that happens between the sides, to show that a quiet system stays
/// quiet (no echo loop): compare two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Jobs settled (done, retried or parked), from tagsync's metrics.
    pub jobs: u64,
    /// WeCom API calls tagsync made, reads included.
    pub wecom_calls: usize,
    /// Callbacks WeCom sent.
    pub wecom_callbacks: usize,
    /// Mall API requests tagsync made, reads included.
    pub mall_requests: usize,
    /// Webhooks the mall emitted.
    pub mall_events: usize,
}

impl World {
    /// Starts both simulators, then tagsync on a fresh data directory, registers the tenant
    /// through `PUT /admin/v1/tenants/{t}` with the simulators' credentials and (with `wire`)
    /// points WeCom's callbacks (verifying the URL as WeCom's console does) and the mall's
    /// webhooks at tagsync. Everything listens on 127.0.0.1.
    ///
    /// # Panics
    /// If a server cannot start, the options are invalid, or tagsync refuses the tenant or
    /// the URL check.
    pub async fn start(opts: WorldOptions) -> World {
        let tenant = TenantId::parse(opts.tenant.clone())
            .unwrap_or_else(|e| panic!("tenant id {:?}: {e}", opts.tenant));
        let wecom = WecomSim::start(SimConfig {
            callback_url: None,
            ..opts.wecom.clone()
        })
        .await;
        let mall_token = opts
            .mall
            .tokens
            .first()
            .cloned()
            .expect("the mall simulator needs at least one token");
        let webhook_secret = opts.mall.webhook_secret.clone();
        let mall = MallSim::start(MallSimConfig {
            webhook_url: None,
            ..opts.mall.clone()
        })
        .await
        .expect("start the mall simulator on loopback");

        let data = DataDir(
            std::env::temp_dir().join(format!("tagsync-world-{}", uuid::Uuid::new_v4().simple())),
        );
        std::fs::create_dir_all(&data.0)
            .unwrap_or_else(|e| panic!("data directory {}: {e}", data.0.display()));
        let mut config =
            Config::new(ADMIN_TOKEN.into(), Some(wecom.base_url())).expect("a valid configuration");
        config.worker.base_backoff = opts.base_backoff;
        config.worker.max_backoff = opts.max_backoff;
        config.worker.visibility = opts.visibility;
        // tagsync paces its mall requests at the limit the mall simulator enforces.
        config.mall_rate_per_sec = opts.mall.rate_limit_per_sec;
        if let Some(budget) = opts.wecom_budget {
            config.wecom_budget = budget;
        }
        // The key `support::process::ServeProcess` gives a `tagsync serve` on this directory,
        // so a test can start a second process on the world's store.
        let key =
            tagsync::store::sealing::SecretKey::from_base64(&super::process::test_key(&data.0))
                .expect("a valid test key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tagsync on loopback");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let (stop, stopped) = oneshot::channel::<()>();
        // A dropped sender (a dropped world) stops the server too.
        let stopped = async {
            let _ = stopped.await;
        };
        // tagsync reads the WeCom simulator's clock (the wall clock unless a test moves it), so
        // both agree on rate windows.
        let clock = opts.wecom.clock.clone();
        let mut cloud = None;
        let (app, server) = match opts.backend {
            Backend::Sqlite => {
                let (app, _db) = App::sqlite(&data.0, config, clock, key)
                    .await
                    .unwrap_or_else(|e| panic!("tagsync's store: {e}"));
                let server = tokio::spawn(serve(
                    app.clone(),
                    listener,
                    ServeOptions {
                        workers: opts.workers.max(1),
                        nightly: Nightly::Off,
                        shutdown_grace: Duration::from_secs(5),
                        ..ServeOptions::default()
                    },
                    stopped,
                ));
                (app, server)
            }
            Backend::Cloud => {
                let (app, resources) =
                    super::cloud::cloud_app(config, clock, key, opts.visibility).await;
                cloud = Some(resources.clone());
                let server = tokio::spawn(super::cloud::serve_lambdas(
                    app.clone(),
                    resources,
                    listener,
                    opts.workers.max(1),
                    opts.lambda_timeout,
                    stopped,
                ));
                (app, server)
            }
        };

        let world = World {
            wecom,
            mall,
            app,
            base,
            cloud,
            tenant,
            http: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            data,
        };

        let sim = world.wecom.config();
        let registration = json!({
            "corp_id": sim.corp_id.as_str(),
            "agent_id": sim.agent_id,
            "corp_secret": sim.secret.expose(),
            "callback_token": sim.callback_token,
            "encoding_aes_key": sim.encoding_aes_key,
            "mall_api_base": world.mall.base_url(),
            "mall_api_token": mall_token,
            "mall_webhook_secret": webhook_secret,
            "message_feed_secret": FEED_SECRET,
        });
        let (status, body) = world
            .request(
                Method::PUT,
                &format!("/admin/v1/tenants/{}", world.tenant),
                Some(registration),
            )
            .await;
        assert!(
            status == 200 || status == 201,
            "registering tenant {}: {status} {body}",
            world.tenant
        );

        if opts.wire {
            let callback = format!("{}/wecom/callback/{}", world.base, world.tenant);
            world.wecom.set_callback_url(Some(callback.clone()));
            world
                .wecom
                .verify_url(&callback)
                .await
                .unwrap_or_else(|e| panic!("WeCom's check of {callback}: {e}"));
            world.mall.set_webhook(
                Some(format!("{}/mall/webhook/{}", world.base, world.tenant)),
                webhook_secret,
            );
        }
        world
    }

    /// Stops tagsync as SIGTERM would (in-flight jobs finish within the grace period), then
    /// both simulators, and removes the data directory.
    pub async fn stop(self) {
        let World {
            wecom,
            mall,
            stop,
            server,
            data,
            ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(server) = server {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "tagsync stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "tagsync's server task failed"),
            }
        }
        wecom.stop().await;
        mall.stop().await;
        drop(data);
    }

    /// The chat-archive feed connector of the tenant, posting to this world's tagsync.
    pub fn feed(&self) -> tagsync::sim::feed::FeedConnector {
        tagsync::sim::feed::FeedConnector::new(&self.base, self.tenant.as_str(), FEED_SECRET)
    }

    /// Where tagsync keeps its data.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data.0
    }

    /// Calls `{base}/admin/v1/tenants/{tenant}{path}` with the admin token; the status and the
    /// body (JSON, or the text as a JSON string).
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request(
            method,
            &format!("/admin/v1/tenants/{}{path}", self.tenant),
            body,
        )
        .await
    }

    /// Any tagsync route (`path` from the root), with the admin token.
    ///
    /// # Panics
    /// If tagsync cannot be reached.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    // -------------------------------------------------------------------------------------
    // Quiet.

    /// Waits until nothing is moving: see [`settle_sides`].
    pub async fn settle(&self, timeout: Duration) -> Result<(), String> {
        settle_sides(&self.app, &self.wecom, &self.mall, timeout).await
    }

    /// What went wrong so far and stays wrong: parked jobs (with their errors), WeCom
    /// callbacks tagsync never accepted, mall webhooks given up on. Empty when all is well.
    pub async fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.app.queue.counts().await {
            Ok(c) if c.dead > 0 => {
                let (_, parked) = self.admin(Method::GET, "/dead-letters", None).await;
                out.push(format!("{} parked job(s): {parked}", c.dead));
            }
            Ok(_) => {}
            Err(e) => out.push(format!("tagsync's queue cannot be counted: {e}")),
        }
        for c in self.wecom.callbacks() {
            if c.done && !c.delivered && !c.answers.is_empty() {
                out.push(format!(
                    "WeCom callback #{} {}/{} not accepted: answers {:?}",
                    c.seq, c.event, c.change_type, c.answers
                ));
            }
        }
        let mut webhooks: BTreeMap<String, (String, bool, Vec<String>)> = BTreeMap::new();
        for d in self.mall.deliveries() {
            let e = webhooks
                .entry(d.event_id.clone())
                .or_insert_with(|| (d.event_type.clone(), false, Vec::new()));
            let ok = d.dropped || d.status.is_some_and(|s| (200..300).contains(&s));
            e.1 |= ok;
            e.2.push(match (d.status, &d.error) {
                (Some(s), _) => s.to_string(),
                (None, Some(err)) => err.clone(),
                (None, None) => "?".into(),
            });
        }
        if self.mall.webhooks_settled(Duration::ZERO).await {
            for (id, (kind, ok, answers)) in webhooks {
                if !ok {
                    out.push(format!(
                        "mall webhook {id} ({kind}) not accepted: {}",
                        answers.join(", ")
                    ));
                }
            }
        }
        out
    }

    /// Jobs finished so far with `outcome` (`done`, `retried`, `rescheduled`, `parked`, …),
    /// or with any outcome (`None`), from the jobs counter.
    pub fn jobs_with_outcome(&self, outcome: Option<&str>) -> u64 {
        let prefix = format!("{}{{", JOBS.name);
        let label = outcome.map(|o| format!("outcome=\"{o}\""));
        self.app
            .metrics
            .prometheus()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter(|l| label.as_ref().is_none_or(|o| l.contains(o.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// A snapshot of the traffic between the sides so far.
    pub fn activity(&self) -> Activity {
        Activity {
            jobs: self.jobs_with_outcome(None),
            wecom_calls: self.wecom.calls().len(),
            wecom_callbacks: self.wecom.callbacks().len(),
            mall_requests: self.mall.requests().len(),
            mall_events: self.mall.events().len(),
        }
    }

    // -------------------------------------------------------------------------------------
    // The library on each side.

    /// The hub's library as `GET …/tag-groups` answers it (ids, `wecom_id`, `mall_id`, `sync`).
    ///
    /// # Panics
    /// If the route does not answer 200.
    pub async fn hub_groups(&self) -> Value {
        let (status, body) = self.admin(Method::GET, "/tag-groups", None).await;
        assert_eq!(status, 200, "GET …/tag-groups: {body}");
        body
    }

    /// WeCom's library, corp and rule-group (strategy) groups, in answer order.
    pub fn wecom_library(&self) -> Vec<SimGroup> {
        self.wecom.library()
    }

    /// The hub group named `name` (JSON as listed).
    pub async fn hub_group(&self, name: &str) -> Option<Value> {
        hub_group_list(&self.hub_groups().await)
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
    }

    /// The hub tag `tag` of the group named `group`.
    pub async fn hub_tag(&self, group: &str, tag: &str) -> Option<Value> {
        self.hub_group(group).await.and_then(|g| {
            g["tags"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["name"] == tag).cloned())
        })
    }

    pub fn wecom_group(&self, name: &str) -> Option<SimGroup> {
        self.wecom_library().into_iter().find(|g| g.name == name)
    }

    pub fn wecom_tag(&self, group: &str, tag: &str) -> Option<SimTag> {
        self.wecom_group(group)
            .and_then(|g| g.tags.into_iter().find(|t| t.name == tag))
    }

    pub fn mall_group(&self, name: &str) -> Option<MallGroupWithTags> {
        self.mall
            .library()
            .into_iter()
            .find(|g| g.group.name == name)
    }

    pub fn mall_tag(&self, group: &str, tag: &str) -> Option<MallTag> {
        self.mall_group(group)
            .and_then(|g| g.tags.into_iter().find(|t| t.name == tag))
    }

    /// The three libraries by name.
    pub async fn library_view(&self) -> LibraryView {
        let hub = self.hub_groups().await;
        LibraryView {
            hub: hub_view(&hub),
            wecom: wecom_view(&self.wecom_library()),
            mall: mall_view(&self.mall.library()),
        }
    }

    /// `Ok` when the three sides hold the same library — the same groups and tags, names,
    /// orders and membership, no side holding two groups of one name or two tags of one name
    /// in a group — and the hub's ids point at those objects. Where the sides' rules differ
    /// the hub's view is adjusted before comparing: WeCom holds no empty groups, and keeps
    /// its own name and order for objects it lets tagsync read only (`sync.wecom` is
    /// `read_only`). `Err` is a readable list of the differences and the three views.
    pub async fn assert_converged(&self) -> Result<(), String> {
        let hub = self.hub_groups().await;
        let wecom = self.wecom_library();
        let mall = self.mall.library();
        let views = LibraryView {
            hub: hub_view(&hub),
            wecom: wecom_view(&wecom),
            mall: mall_view(&mall),
        };
        let mut problems = Vec::new();
        for (side, view) in [
            ("hub", &views.hub),
            ("WeCom", &views.wecom),
            ("mall", &views.mall),
        ] {
            problems.extend(duplicates(view).into_iter().map(|d| format!("{side}: {d}")));
        }
        // A scoped group kept from the mall (`carry_to_mall` off) is not the mall's to show.
        let carried = json!({"groups": hub_group_list(&hub)
            .into_iter()
            .filter(|g| g["carry_to_mall"] != json!(false))
            .collect::<Vec<_>>()});
        problems.extend(diff("hub", &hub_view(&carried), "mall", &views.mall));
        let (as_wecom, id_problems) = hub_as_wecom_shows_it(&hub, &wecom, &mall);
        problems.extend(diff("hub", &as_wecom, "WeCom", &views.wecom));
        problems.extend(id_problems);
        if problems.is_empty() {
            return Ok(());
        }
        let mut out = String::from("the three sides differ:\n");
        for p in &problems {
            let _ = writeln!(out, "  - {p}");
        }
        let _ = writeln!(out, "hub:   {}", render(&views.hub));
        let _ = writeln!(out, "WeCom: {}", render(&views.wecom));
        let _ = write!(out, "mall:  {}", render(&views.mall));
        Err(out)
    }

    // -------------------------------------------------------------------------------------
    // Members.

    /// Mall member `member_id`'s tags in the hub, in the mall, and on every WeCom relation of
    /// the customer it is bound to.
    ///
    /// # Panics
    /// If `GET …/members/{id}` answers other than 200, 404 or 501.
    pub async fn member_view(&self, member_id: &str) -> MemberView {
        let hub_lib = self.hub_groups().await;
        let hub_names: HashMap<String, String> = hub_group_list(&hub_lib)
            .iter()
            .flat_map(|g| {
                let group = str_of(&g["name"]);
                g["tags"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |t| (str_of(&t["id"]), format!("{group}/{}", str_of(&t["name"]))))
            })
            .collect();
        let (status, hub_member) = self
            .admin(Method::GET, &format!("/members/{member_id}"), None)
            .await;
        let hub_member = match status {
            200 => Some(hub_member),
            404 | 501 => None,
            _ => panic!("GET …/members/{member_id}: {status} {hub_member}"),
        };
        let hub: BTreeSet<String> = hub_member
            .as_ref()
            .and_then(|m| m["tag_ids"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|id| name_or_unknown(&hub_names, &str_of(id)))
            .collect();

        let mall_lib = self.mall.library();
        let mall_names: HashMap<String, String> = mall_lib
            .iter()
            .flat_map(|g| {
                g.tags.iter().map(move |t| {
                    (
                        t.id.as_str().to_owned(),
                        format!("{}/{}", g.group.name, t.name),
                    )
                })
            })
            .collect();
        let member: Option<MallMember> = self.mall.member(&MemberId::new_unchecked(member_id));
        let mall: BTreeSet<String> = member
            .as_ref()
            .map(|m| {
                m.tag_ids
                    .iter()
                    .map(|id| name_or_unknown(&mall_names, id.as_str()))
                    .collect()
            })
            .unwrap_or_default();

        let external_userid = member
            .as_ref()
            .and_then(|m| m.external_userid.as_ref().map(|e| e.as_str().to_owned()))
            .or_else(|| {
                hub_member
                    .as_ref()
                    .and_then(|m| m["external_userid"].as_str().map(str::to_owned))
            });
        let wecom_names: HashMap<String, String> = self
            .wecom_library()
            .iter()
            .flat_map(|g| {
                g.tags
                    .iter()
                    .map(move |t| (t.id.clone(), format!("{}/{}", g.name, t.name)))
            })
            .collect();
        let relations = match &external_userid {
            None => BTreeMap::new(),
            Some(customer) => self
                .wecom
                .relations()
                .into_iter()
                .filter(|r| &r.external_userid == customer)
                .map(|r| {
                    let tags = r
                        .tags
                        .iter()
                        .map(|id| name_or_unknown(&wecom_names, id))
                        .collect();
                    (r.userid, tags)
                })
                .collect(),
        };
        MemberView {
            external_userid,
            hub,
            mall,
            relations,
        }
    }
}

// -----------------------------------------------------------------------------------------
// Views and comparison.

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn u32_of(v: &Value) -> u32 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn name_or_unknown(names: &HashMap<String, String>, id: &str) -> String {
    names.get(id).cloned().unwrap_or_else(|| format!("?{id}"))
}

fn hub_group_list(hub: &Value) -> Vec<Value> {
    hub["groups"].as_array().cloned().unwrap_or_default()
}

fn sorted(mut groups: Vec<GroupView>) -> Vec<GroupView> {
    for g in &mut groups {
        g.tags.sort();
    }
    groups.sort();
    groups
}

fn hub_view(hub: &Value) -> Vec<GroupView> {
    sorted(
        hub_group_list(hub)
            .iter()
            .map(|g| GroupView {
                name: str_of(&g["name"]),
                order: u32_of(&g["order"]),
                tags: g["tags"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|t| TagView {
                        name: str_of(&t["name"]),
                        order: u32_of(&t["order"]),
                    })
                    .collect(),
            })
            .collect(),
    )
}

fn wecom_view(lib: &[SimGroup]) -> Vec<GroupView> {
    sorted(
        lib.iter()
            .map(|g| GroupView {
                name: g.name.clone(),
                order: g.order,
                tags: g
                    .tags
                    .iter()
                    .map(|t| TagView {
                        name: t.name.clone(),
                        order: t.order,
                    })
                    .collect(),
            })
            .collect(),
    )
}

fn mall_view(lib: &[MallGroupWithTags]) -> Vec<GroupView> {
    sorted(
        lib.iter()
            .map(|g| GroupView {
                name: g.group.name.clone(),
                order: g.group.order,
                tags: g
                    .tags
                    .iter()
                    .map(|t| TagView {
                        name: t.name.clone(),
                        order: t.order,
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// Two groups of one name, or two tags of one name in a group.
fn duplicates(view: &[GroupView]) -> Vec<String> {
    let mut out = Vec::new();
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for g in view {
        *groups.entry(&g.name).or_default() += 1;
        let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &g.tags {
            *tags.entry(&t.name).or_default() += 1;
        }
        for (t, n) in tags.into_iter().filter(|(_, n)| *n > 1) {
            out.push(format!("{n} tags named {t:?} in group {:?}", g.name));
        }
    }
    for (g, n) in groups.into_iter().filter(|(_, n)| *n > 1) {
        out.push(format!("{n} groups named {g:?}"));
    }
    out
}

/// A library as lines, one per group and one per tag.
fn lines(view: &[GroupView]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for g in view {
        out.insert(format!("group {:?} (order {})", g.name, g.order));
        for t in &g.tags {
            out.insert(format!("tag {:?}/{:?} (order {})", g.name, t.name, t.order));
        }
    }
    out
}

fn diff(a_name: &str, a: &[GroupView], b_name: &str, b: &[GroupView]) -> Vec<String> {
    let (a, b) = (lines(a), lines(b));
    let mut out: Vec<String> = a
        .difference(&b)
        .map(|l| format!("{a_name} has {l}, {b_name} does not"))
        .collect();
    out.extend(
        b.difference(&a)
            .map(|l| format!("{b_name} has {l}, {a_name} does not")),
    );
    out
}

/// `G(order)[t(order), …]; …`
fn render(view: &[GroupView]) -> String {
    if view.is_empty() {
        return "(empty)".into();
    }
    view.iter()
        .map(|g| {
            let tags: Vec<String> = g
                .tags
                .iter()
                .map(|t| format!("{}({})", t.name, t.order))
                .collect();
            format!("{}({})[{}]", g.name, g.order, tags.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The library WeCom should show given the hub's, and what is wrong with the hub's ids.
/// Empty hub groups are left out (WeCom drops a group with its last tag); objects read-only on
/// the WeCom leg take WeCom's own name and order (found by the hub's `wecom_id`).
fn hub_as_wecom_shows_it(
    hub: &Value,
    wecom: &[SimGroup],
    mall: &[MallGroupWithTags],
) -> (Vec<GroupView>, Vec<String>) {
    let wecom_groups: HashMap<&str, &SimGroup> = wecom.iter().map(|g| (g.id.as_str(), g)).collect();
    let wecom_tags: HashMap<&str, (&SimGroup, &SimTag)> = wecom
        .iter()
        .flat_map(|g| g.tags.iter().map(move |t| (t.id.as_str(), (g, t))))
        .collect();
    let mall_groups: HashMap<&str, &MallGroupWithTags> =
        mall.iter().map(|g| (g.group.id.as_str(), g)).collect();
    let mall_tags: HashMap<&str, &MallTag> = mall
        .iter()
        .flat_map(|g| g.tags.iter().map(|t| (t.id.as_str(), t)))
        .collect();
    let read_only = |v: &Value| v["sync"]["wecom"] == "read_only";

    let mut view = Vec::new();
    let mut problems = Vec::new();
    for g in hub_group_list(hub) {
        let name = str_of(&g["name"]);
        let tags = g["tags"].as_array().cloned().unwrap_or_default();
        let wecom_id = g["wecom_id"].as_str();
        let mall_id = g["mall_id"].as_str();
        let in_wecom = wecom_id.and_then(|id| wecom_groups.get(id).copied());
        // A scoped group kept from the mall must have no mall id, nor any of its tags.
        let kept = g["carry_to_mall"] == json!(false);

        match mall_id.map(|id| (id, mall_groups.get(id))) {
            None if kept => {}
            Some((id, _)) if kept => problems.push(format!(
                "hub group {name:?} is kept from the mall but has mall id {id}"
            )),
            None => problems.push(format!("hub group {name:?} has no mall id")),
            Some((id, None)) => problems.push(format!(
                "hub group {name:?} has mall id {id}, which the mall does not have"
            )),
            Some((id, Some(m))) if m.group.name != name => problems.push(format!(
                "hub group {name:?} has mall id {id}, which the mall names {:?}",
                m.group.name
            )),
            Some(_) => {}
        }
        if tags.is_empty() {
            if let (Some(id), None) = (wecom_id, in_wecom) {
                problems.push(format!(
                    "empty hub group {name:?} keeps WeCom id {id}, which WeCom no longer has"
                ));
            }
            continue;
        }
        match (wecom_id, in_wecom) {
            (None, _) => problems.push(format!("hub group {name:?} has no WeCom id")),
            (Some(id), None) => problems.push(format!(
                "hub group {name:?} has WeCom id {id}, which WeCom does not have"
            )),
            (Some(id), Some(w)) if w.name != name && !read_only(&g) => problems.push(format!(
                "hub group {name:?} has WeCom id {id}, which WeCom names {:?}",
                w.name
            )),
            _ => {}
        }
        let (group_name, group_order) = match in_wecom {
            Some(w) if read_only(&g) => (w.name.clone(), w.order),
            _ => (name.clone(), u32_of(&g["order"])),
        };
        let mut out = GroupView {
            name: group_name,
            order: group_order,
            tags: Vec::new(),
        };
        for t in &tags {
            let tag = str_of(&t["name"]);
            let full = format!("{name}/{tag}");
            match t["mall_id"].as_str().map(|id| (id, mall_tags.get(id))) {
                None if kept => {}
                Some((id, _)) if kept => problems.push(format!(
                    "hub tag {full:?} is kept from the mall but has mall id {id}"
                )),
                None => problems.push(format!("hub tag {full:?} has no mall id")),
                Some((id, None)) => problems.push(format!(
                    "hub tag {full:?} has mall id {id}, which the mall does not have"
                )),
                Some((id, Some(m))) if m.name != tag || Some(m.group_id.as_str()) != mall_id => {
                    problems.push(format!(
                        "hub tag {full:?} has mall id {id}, which the mall has as {:?} in group {}",
                        m.name, m.group_id
                    ))
                }
                Some(_) => {}
            }
            let found = t["wecom_id"]
                .as_str()
                .map(|id| (id, wecom_tags.get(id).copied()));
            match found {
                None => problems.push(format!("hub tag {full:?} has no WeCom id")),
                Some((id, None)) => problems.push(format!(
                    "hub tag {full:?} has WeCom id {id}, which WeCom does not have"
                )),
                Some((id, Some((wg, wt)))) => {
                    if Some(wg.id.as_str()) != wecom_id {
                        problems.push(format!(
                            "hub tag {full:?} has WeCom id {id}, which WeCom has in group {:?}",
                            wg.name
                        ));
                    }
                    if wt.name != tag && !read_only(t) {
                        problems.push(format!(
                            "hub tag {full:?} has WeCom id {id}, which WeCom names {:?}",
                            wt.name
                        ));
                    }
                }
            }
            let (tag_name, tag_order) = match found {
                Some((_, Some((_, wt)))) if read_only(t) => (wt.name.clone(), wt.order),
                _ => (tag, u32_of(&t["order"])),
            };
            out.tags.push(TagView {
                name: tag_name,
                order: tag_order,
            });
        }
        view.push(out);
    }
    (sorted(view), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str, order: u32, tags: &[(&str, u32)]) -> GroupView {
        GroupView {
            name: name.into(),
            order,
            tags: tags
                .iter()
                .map(|(n, o)| TagView {
                    name: (*n).into(),
                    order: *o,
                })
                .collect(),
        }
    }

    #[test]
    fn duplicates_name_the_group_and_the_tag() {
        let view = vec![
            g("A", 1, &[("x", 1), ("x", 2)]),
            g("A", 2, &[]),
            g("B", 1, &[("x", 1)]),
        ];
        assert_eq!(
            duplicates(&view),
            vec![
                "2 tags named \"x\" in group \"A\"".to_string(),
                "2 groups named \"A\"".to_string()
            ]
        );
    }

    #[test]
    fn diff_shows_what_only_one_side_has() {
        let a = vec![g("A", 1, &[("x", 1)])];
        let b = vec![g("A", 1, &[("y", 1)])];
        assert_eq!(
            diff("hub", &a, "mall", &b),
            vec![
                "hub has tag \"A\"/\"x\" (order 1), mall does not".to_string(),
                "mall has tag \"A\"/\"y\" (order 1), hub does not".to_string()
            ]
        );
        assert!(diff("hub", &a, "mall", &a).is_empty());
    }

    #[test]
    fn wecom_comparison_leaves_out_empty_groups_and_keeps_read_only_names() {
        let hub = json!({"groups": [
            {"id": "h1", "name": "Empty", "order": 1, "wecom_id": null, "mall_id": "g_1",
             "sync": {"wecom": "pending", "mall": "synced"}, "tags": []},
            {"id": "h2", "name": "Level", "order": 2, "wecom_id": "etG", "mall_id": "g_2",
             "sync": {"wecom": "read_only", "mall": "synced"}, "tags": [
                {"id": "h3", "name": "Gold", "order": 5, "wecom_id": "etT", "mall_id": "t_3",
                 "sync": {"wecom": "read_only", "mall": "synced"}}]}
        ]});
        let tag = SimTag {
            id: "etT".into(),
            name: "VIP".into(),
            order: 4,
            create_time: 0,
            owner: tagsync::sim::wecom::Owner::Console,
        };
        let wecom = vec![SimGroup {
            id: "etG".into(),
            name: "Grade".into(),
            order: 3,
            create_time: 0,
            owner: tagsync::sim::wecom::Owner::Console,
            strategy_id: None,
            tags: vec![tag],
        }];
        let mall: Vec<MallGroupWithTags> = serde_json::from_value(json!([
            {"id": "g_1", "name": "Empty", "order": 1, "tags": []},
            {"id": "g_2", "name": "Level", "order": 2, "tags": [
                {"id": "t_3", "group_id": "g_2", "name": "Gold", "order": 5}]}
        ]))
        .unwrap();
        let (view, problems) = hub_as_wecom_shows_it(&hub, &wecom, &mall);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(view, vec![g("Grade", 3, &[("VIP", 4)])]);
        assert!(diff("hub", &view, "WeCom", &wecom_view(&wecom)).is_empty());
    }
}
