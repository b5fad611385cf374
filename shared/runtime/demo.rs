//! `tagsync serve --demo`: tagsync together with both simulators on loopback, a demo tenant
//! wired to them and a small seeded world, so a newcomer sees WeCom callbacks and mall
//! webhooks arrive without a WeCom corp, a mall or any network. It also seeds automatic
//! tagging (automation.md): a channel code and a keyword rule, with a simulated chat-archive
//! connector to "send" chat messages through.

use crate::app::App;
use crate::domain::*;
use crate::mall::client::MallMember;
use crate::mall::webhook::MallTag;
use crate::sim::feed::{ChatArchive, FeedConnector};
use crate::sim::mall::{MallSim, MallSimConfig, NewMember};
use crate::sim::wecom::{CreatedGroup, SimConfig, WecomSim};
use std::fmt::Write as _;

pub const TENANT: &str = "demo";
const CORP: &str = "wwdemocorp00000001";
const CALLBACK_TOKEN: &str = "demoCallbackToken";
// WeCom's own sample EncodingAESKey (wecom-api.md §4.5 Set A).
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const MALL_TOKEN: &str = "demo-mall-token";
const WEBHOOK_SECRET: &str = "demo-webhook-secret";
const FEED_SECRET: &str = "demo-message-feed-secret";
/// How long each seeding step may take to be carried everywhere (it takes well under a second).
const SEED_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The running simulators; dropping them stops them.
pub struct Demo {
    pub wecom: WecomSim,
    pub mall: MallSim,
    /// The chat-archive connector: posts chat messages to tagsync's message feed.
    pub chat: ChatArchive,
}

impl Demo {
    /// The WeCom simulator's API base, for tagsync's WeCom client.
    pub fn wecom_base(&self) -> String {
        self.wecom.base_url()
    }
}

/// The simulators, started before tagsync's app is built (its WeCom API base must point at the
/// WeCom simulator). They deliver to `tagsync_base` once [`seed`] has wired them.
pub async fn start_simulators() -> std::io::Result<Demo> {
    let wecom = WecomSim::start(SimConfig {
        corp_id: CorpId::new_unchecked(CORP),
        secret: Secret::new("demo-app-secret"),
        callback_token: CALLBACK_TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
        ..SimConfig::default()
    })
    .await;
    let mall = MallSim::start(MallSimConfig {
        tokens: vec![MALL_TOKEN.into()],
        webhook_secret: WEBHOOK_SECRET.into(),
        ..MallSimConfig::default()
    })
    .await?;
    let chat = ChatArchive::start().await?;
    Ok(Demo { wecom, mall, chat })
}

/// Registers the demo tenant, points both simulators' callbacks and webhooks at tagsync, then
/// seeds a small world through all three sides (a few groups and tags from each, customers with
/// relations, bound members, tags on them), waiting after each step until tagsync has carried
/// it everywhere. Returns what to print.
pub async fn seed(
    app: &App,
    demo: &Demo,
    tagsync_base: &str,
    admin_token: &str,
) -> Result<String, String> {
    let restarted = register_tenant(app, demo).await?;
    wire(demo, tagsync_base).await?;
    if restarted {
        return Ok(restart_notice(demo, tagsync_base, admin_token));
    }
    let seeder = Seeder {
        app,
        demo,
        http: std::sync::OnceLock::new(),
        tagsync_base,
        admin_token,
    };
    let library = seeder.library().await?;
    let people = seeder.people().await?;
    seeder.tags_on_people(&library, &people).await?;
    let automation = seeder.automation().await?;
    let seeded = Seeded {
        library,
        people,
        automation,
    };
    Ok(try_it(demo, tagsync_base, admin_token, &seeded))
}

/// Writes the demo tenant, wired to the simulators; whether it was there already (a data
/// directory of an earlier demo run: its hub keeps what it had, and the seed, which would find
/// its names taken, is skipped).
async fn register_tenant(app: &App, demo: &Demo) -> Result<bool, String> {
    let tenant_id = TenantId::parse(TENANT).map_err(|e| e.to_string())?;
    let now = app.clock.now();
    let existing = app
        .store
        .get_tenant(&tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut tenant = Tenant {
        id: tenant_id,
        corp_id: CorpId::new_unchecked(CORP),
        agent_id: "1000002".into(),
        mall_api_base: demo.mall.base_url(),
        secrets: TenantSecrets {
            corp_secret: Secret::new("demo-app-secret"),
            callback_token: Secret::new(CALLBACK_TOKEN),
            encoding_aes_key: Secret::new(AES_KEY),
            mall_api_token: Secret::new(MALL_TOKEN),
            mall_webhook_secret: Secret::new(WEBHOOK_SECRET),
            message_feed_secret: Some(Secret::new(FEED_SECRET)),
        },
        settings: Settings::default(),
        created_at: existing.as_ref().map_or(now, |t| t.created_at),
        updated_at: now,
        version: existing.as_ref().map_or(0, |t| t.version),
    };
    app.store
        .put_tenant(&mut tenant)
        .await
        .map_err(|e| e.to_string())?;
    app.tenants.forget(&tenant.id);
    Ok(existing.is_some())
}

/// Points the simulators at tagsync. Wired before anything is seeded, so every seeded change is
/// seen by tagsync the way a real one would be: WeCom's console sends callbacks, the mall sends
/// webhooks, the operator uses the admin API.
async fn wire(demo: &Demo, tagsync_base: &str) -> Result<(), String> {
    demo.wecom
        .set_callback_url(Some(format!("{tagsync_base}/wecom/callback/{TENANT}")));
    demo.mall.set_webhook(
        Some(format!("{tagsync_base}/mall/webhook/{TENANT}")),
        WEBHOOK_SECRET,
    );
    // Saving the callback URL in WeCom's console verifies it against tagsync (§4.2).
    demo.wecom
        .verify_url(&format!("{tagsync_base}/wecom/callback/{TENANT}"))
        .await?;
    demo.chat
        .connect(FeedConnector::new(tagsync_base, TENANT, FEED_SECRET));
    Ok(())
}

/// What seeding needs: tagsync's app and the simulators, and tagsync's admin API as the
/// operator uses it.
struct Seeder<'a> {
    app: &'a App,
    demo: &'a Demo,
    /// Built when step 1 first calls the admin API, after the sides' changes: building one
    /// takes a moment, which those changes get as a head start over the hub's (the mall ids
    /// the demo prints follow the order tagsync's jobs ran in).
    http: std::sync::OnceLock<reqwest::Client>,
    tagsync_base: &'a str,
    admin_token: &'a str,
}

/// What the later steps and the printed commands need of the seeded library.
struct Library {
    /// The WeCom console's group 客户等级 (VIP客户, 普通客户).
    level: CreatedGroup,
    /// The mall's tags 金卡 and 银卡.
    gold: MallTag,
    silver: MallTag,
}

/// The mall members bound to WeCom customers.
struct People {
    alice: MallMember,
    bob: MallMember,
}

/// The seeded automatic tagging: the tags it puts on, the channel code and the keyword rule
/// (as the admin API answered them).
struct Automation {
    in_store: HubTag,
    promo: HubTag,
    channel: serde_json::Value,
    coupon: serde_json::Value,
}

/// Everything the printed commands refer to.
struct Seeded {
    library: Library,
    people: People,
    automation: Automation,
}

impl Seeder<'_> {
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(reqwest::Client::new)
    }

    /// Waits until tagsync has carried `step` everywhere.
    async fn settled(&self, step: &str) -> Result<(), String> {
        let demo = self.demo;
        crate::sim::settle::settle_sides(self.app, &demo.wecom, &demo.mall, SEED_SETTLE)
            .await
            .map_err(|e| format!("demo seed, {step}: {e}"))
    }

    /// An admin API call on the demo tenant (`path` below it; a `null` body sends none):
    /// the JSON it answers.
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let (tagsync_base, admin_token) = (self.tagsync_base, self.admin_token);
        let req = self
            .http()
            .request(
                method.clone(),
                format!("{tagsync_base}/admin/v1/tenants/{TENANT}{path}"),
            )
            .bearer_auth(admin_token);
        let req = if body.is_null() { req } else { req.json(&body) };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("demo seed, {method} …{path}: {e}"))?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(answer)
        } else {
            Err(format!("demo seed, {method} …{path}: {status} {answer}"))
        }
    }

    /// 1. The tag library, a part from each side. Groups made in WeCom's admin console are
    ///    read-only for tagsync's app there (WeCom lets an app edit only its own tags).
    async fn library(&self) -> Result<Library, String> {
        let (demo, tagsync_base) = (self.demo, self.tagsync_base);
        let console = demo.wecom.console();
        let level = console
            .create_group("客户等级", 20, &[("VIP客户", 2), ("普通客户", 1)])
            .map_err(|e| e.to_string())?;
        console
            .create_group("来源渠道", 10, &[("线下门店", 2), ("小程序", 1)])
            .map_err(|e| e.to_string())?;
        let operator = demo.mall.operator();
        let grades = operator
            .create_group("会员等级", 30)
            .map_err(|e| e.to_string())?;
        let gold = operator
            .create_tag(&grades.id, "金卡", 2)
            .map_err(|e| e.to_string())?;
        let silver = operator
            .create_tag(&grades.id, "银卡", 1)
            .map_err(|e| e.to_string())?;
        let created = self
            .http()
            .post(format!(
                "{tagsync_base}/admin/v1/tenants/{TENANT}/tag-groups"
            ))
            .bearer_auth(self.admin_token)
            .json(&serde_json::json!({"name": "购买意向", "order": 5, "tags": [
                {"name": "高意向", "order": 3}, {"name": "中意向", "order": 2}, {"name": "低意向", "order": 1}]}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if created.status() != 201 {
            return Err(format!(
                "demo seed: creating a hub group answered {}",
                created.status()
            ));
        }
        self.settled("tag library").await?;
        // A mall operator renames 小程序, a tag made in WeCom's admin console. WeCom lets
        // tagsync's app edit only tags it created, so WeCom keeps its name and the console
        // shows the tag read-only there: the demo shows every state but `failed`.
        if let Some(t) = mall_tag(demo, "小程序") {
            operator
                .rename_tag(&t.id, "小程序商城")
                .map_err(|e| e.to_string())?;
            self.settled("a rename WeCom refuses").await?;
        }
        Ok(Library {
            level,
            gold,
            silver,
        })
    }

    /// 2. Customers and members: three WeCom customers followed by two salespeople; mall
    ///    members bound to two of them, and one member the mall knows only by phone.
    async fn people(&self) -> Result<People, String> {
        let demo = self.demo;
        for (external, name) in [
            ("wm_alice", "Alice 陈"),
            ("wm_bob", "Bob 王"),
            ("wm_carol", "Carol 李"),
        ] {
            demo.wecom.add_customer(external, name);
        }
        let console = demo.wecom.console();
        for (userid, customer) in [
            ("sales_li", "wm_alice"),
            ("sales_wang", "wm_alice"),
            ("sales_li", "wm_bob"),
            ("sales_wang", "wm_carol"),
        ] {
            console
                .add_relation(userid, customer, Some("demo"))
                .map_err(|e| e.to_string())?;
        }
        let operator = demo.mall.operator();
        let alice = operator
            .create_member(NewMember::external("wm_alice"))
            .map_err(|e| e.to_string())?;
        let bob = operator
            .create_member(NewMember::external("wm_bob"))
            .map_err(|e| e.to_string())?;
        operator
            .create_member(NewMember {
                mobile: Some("13800000000".into()),
                ..NewMember::default()
            })
            .map_err(|e| e.to_string())?;
        self.settled("customers and members").await?;
        Ok(People { alice, bob })
    }

    /// 3. Tags on people: a salesperson tags Alice in WeCom; the mall gives Alice and Bob a
    ///    membership grade. Each reaches the other side.
    async fn tags_on_people(&self, library: &Library, people: &People) -> Result<(), String> {
        let demo = self.demo;
        demo.wecom
            .console()
            .tag_relation("sales_li", "wm_alice", &[&library.level.tag_ids[0]], &[])
            .map_err(|e| e.to_string())?;
        let operator = demo.mall.operator();
        operator
            .tag_member(&people.alice.id, &library.gold.id)
            .map_err(|e| e.to_string())?;
        operator
            .tag_member(&people.bob.id, &library.silver.id)
            .map_err(|e| e.to_string())?;
        self.settled("member tags").await
    }

    /// 4. Automatic tagging: a channel code 线下门店 handed out by sales_wang whose rule tags
    ///    线下门店, and a keyword rule: a customer asking about 优惠券 becomes 促销敏感 unless
    ///    already 已成交.
    async fn automation(&self) -> Result<Automation, String> {
        use reqwest::Method;
        self.admin(
            Method::POST,
            "/tag-groups",
            serde_json::json!({"name": "营销", "order": 4, "tags": [
                {"name": "促销敏感", "order": 2}, {"name": "已成交", "order": 1}]}),
        )
        .await?;
        self.settled("the marketing tags").await?;
        let library = self
            .admin(Method::GET, "/tag-groups", serde_json::Value::Null)
            .await?;
        let tag = |name| hub_tag(&library, name);
        let (in_store, promo, closed) = (tag("线下门店")?, tag("促销敏感")?, tag("已成交")?);
        let channel = self
            .admin(
                Method::POST,
                "/channels",
                serde_json::json!({"name": "线下门店", "users": ["sales_wang"], "tag_ids": [in_store.id]}),
            )
            .await?;
        let coupon = self
            .admin(
                Method::POST,
                "/rules",
                serde_json::json!({
                    "name": "问优惠券的客户",
                    "trigger": {"kind": "keyword", "any": ["优惠券"], "from": "customer"},
                    "conditions": [{"has_none": [closed.id]}],
                    "actions": {"add": [promo.id]},
                    "mode": "on",
                }),
            )
            .await?;
        self.settled("the channel code and the keyword rule")
            .await?;
        Ok(Automation {
            in_store,
            promo,
            channel,
            coupon,
        })
    }
}

/// The mall's tag named `name`, as the mall simulator holds it.
fn mall_tag(demo: &Demo, name: &str) -> Option<MallTag> {
    demo.mall
        .library()
        .into_iter()
        .flat_map(|g| g.tags)
        .find(|t| t.name == name)
}

/// The hub's tag named `name` in `library` (the admin API's `GET …/tag-groups`).
fn hub_tag(library: &serde_json::Value, name: &str) -> Result<HubTag, String> {
    library["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["tags"].as_array().into_iter().flatten())
        .find(|t| t["name"] == name)
        .map(|t| HubTag {
            id: t["id"].as_str().unwrap_or_default().to_owned(),
            wecom_id: t["wecom_id"].as_str().unwrap_or_default().to_owned(),
            mall_id: t["mall_id"].as_str().unwrap_or_default().to_owned(),
        })
        .ok_or_else(|| format!("demo seed: the hub has no tag {name}"))
}

/// What the seeded demo prints: where everything runs, what to look at, and commands that
/// make a change on one side (each followed by one that shows it arrived on another).
fn try_it(demo: &Demo, tagsync_base: &str, admin_token: &str, seeded: &Seeded) -> String {
    let People { alice, bob } = &seeded.people;
    let wired = "wired to a WeCom simulator and a mall simulator (all on loopback)";
    let mut out = opening(wired, demo, tagsync_base, admin_token);
    let _ = writeln!(
        out,
        "\nOpen the console, paste the admin token, and pick tenant `{TENANT}`: the tag library shows\n\
         each group and tag on both sides. 小程序商城 is read-only in WeCom (it was made in WeCom's\n\
         admin console, and WeCom lets tagsync's app edit only its own tags), so WeCom keeps 小程序.\n\
         Members to look up: {} (Alice, bound to wm_alice), {} (Bob, bound to wm_bob).",
        alice.id, bob.id
    );
    let _ = writeln!(
        out,
        "\nThen make a change on one side and watch it arrive on the others (each command is a\n\
         person acting on one side; that side tells tagsync, which carries it):"
    );
    try_sync(&mut out, demo, seeded);
    try_automation(&mut out, demo, seeded);
    let _ = writeln!(
        out,
        "  #    the rule's firings (outcome, the message; a customer tagged 已成交 shows \"excluded\"):"
    );
    let _ = writeln!(
        out,
        "  curl -s {tagsync_base}/admin/v1/tenants/{TENANT}/rules/{}/firings -H 'Authorization: Bearer {admin_token}'",
        seeded.automation.coupon["id"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  # 5. what tagsync received and did, newest first (or the console's Audit page)"
    );
    let _ = writeln!(
        out,
        "  curl -s {tagsync_base}/admin/v1/tenants/{TENANT}/audit -H 'Authorization: Bearer {admin_token}'"
    );
    out
}

/// The demo's first lines: the tenant's `state`, where tagsync and the simulators listen, and
/// the admin token.
fn opening(state: &str, demo: &Demo, tagsync_base: &str, admin_token: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tagsync demo: tenant `{TENANT}` {state}");
    let _ = writeln!(out, "  console     {tagsync_base}/admin/");
    let _ = writeln!(
        out,
        "  tagsync     {tagsync_base}   admin token: {admin_token}"
    );
    let _ = writeln!(
        out,
        "  WeCom sim   {}   control: {}",
        demo.wecom.base_url(),
        demo.wecom.control_url()
    );
    let mall_api = demo.mall.base_url();
    let _ = writeln!(
        out,
        "  mall sim    {mall_api}   control: {mall_api}/control"
    );
    out
}

/// Commands 1 and 2: a tag renamed in the mall reaches WeCom; a tag put on a customer in
/// WeCom reaches the bound mall member.
fn try_sync(out: &mut String, demo: &Demo, seeded: &Seeded) {
    let (w, m) = (
        demo.wecom.control_url(),
        format!("{}/control", demo.mall.base_url()),
    );
    let mall_api = demo.mall.base_url();
    let Library { level, gold, .. } = &seeded.library;
    // Where 普通客户 lives in the mall, so the printed check can look for it on Bob.
    let ordinary_in_mall = mall_tag(demo, "普通客户")
        .map(|t| t.id.to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  # 1. a mall operator renames the tag 金卡 to 黑金卡 (the mall sends a signed webhook)"
    );
    let _ = writeln!(
        out,
        "  curl -s -X PATCH {m}/tags/{} -H 'content-type: application/json' -d '{{\"name\":\"黑金卡\"}}'",
        gold.id
    );
    let _ = writeln!(out, "  #    a moment later WeCom has it (prints 黑金卡):");
    let _ = writeln!(out, "  curl -s {w}/library | grep -o 黑金卡");
    let _ = writeln!(
        out,
        "  # 2. salesperson sales_li tags customer wm_bob 普通客户 in WeCom (an encrypted callback)"
    );
    let _ = writeln!(
        out,
        "  curl -s -X POST {w}/relations/tags -H 'content-type: application/json' -d '{{\"userid\":\"sales_li\",\"external_userid\":\"wm_bob\",\"add\":[\"{}\"]}}'",
        level.tag_ids[1]
    );
    let _ = writeln!(
        out,
        "  #    a moment later Bob carries it in the mall (prints its mall id, {ordinary_in_mall}):"
    );
    let _ = writeln!(
        out,
        "  curl -s {mall_api}/members/{} -H 'Authorization: Bearer {MALL_TOKEN}' | grep -o {ordinary_in_mall}",
        seeded.people.bob.id
    );
}

/// Commands 3 and 4: a scanned channel code and a chat message tag the customer in WeCom
/// and the bound mall member (the rule's firings follow in [`try_it`]).
fn try_automation(out: &mut String, demo: &Demo, seeded: &Seeded) {
    let w = demo.wecom.control_url();
    let People { alice, bob } = &seeded.people;
    let Automation {
        in_store,
        promo,
        channel,
        ..
    } = &seeded.automation;
    let config_id = channel["config_id"].as_str().unwrap_or_default();
    let _ = writeln!(
        out,
        "  # 3. customer wm_bob scans the channel code 线下门店 (its QR: {}); sales_wang adds him,",
        channel["qr_code"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  #    WeCom sends add_external_contact with the code's State, and the code's rule fires"
    );
    let _ = writeln!(
        out,
        "  curl -s -X POST {w}/contact-ways/{config_id}/scan -H 'content-type: application/json' -d '{{\"external_userid\":\"wm_bob\"}}'"
    );
    let bob = Customer {
        name: "Bob",
        his: "his",
        external: "wm_bob",
        member: &bob.id,
    };
    shows_tag(out, demo, &bob, "线下门店", in_store);
    for line in [
        "  # 4. customer wm_alice asks sales_li in chat 有优惠券吗? (the chat-archive connector signs",
        "  #    the message and posts it to tagsync's message feed); the keyword rule tags her",
        "  #    促销敏感, as she is not 已成交",
    ] {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "  curl -s -X POST {}/chat -H 'content-type: application/json' -d '{{\"from\":\"wm_alice\",\"to\":\"sales_li\",\"text\":\"有优惠券吗?\"}}'",
        demo.chat.url()
    );
    let alice = Customer {
        name: "Alice",
        his: "her",
        external: "wm_alice",
        member: &alice.id,
    };
    shows_tag(out, demo, &alice, "促销敏感", promo);
}

/// A seeded WeCom customer and their mall member, as the printed commands name them.
struct Customer<'a> {
    name: &'a str,
    /// "his" or "her".
    his: &'a str,
    external: &'a str,
    member: &'a MemberId,
}

/// The commands that show `tag` (named `tag_name`) arrived on both of customer `c`'s WeCom
/// relations and on their mall member.
fn shows_tag(out: &mut String, demo: &Demo, c: &Customer<'_>, tag_name: &str, tag: &HubTag) {
    let (w, mall_api) = (demo.wecom.control_url(), demo.mall.base_url());
    let Customer {
        name,
        his,
        external,
        member,
    } = c;
    let _ = writeln!(
        out,
        "  #    a moment later both of {name}'s WeCom relations carry {tag_name} (WeCom id {}):",
        tag.wecom_id
    );
    let _ = writeln!(
        out,
        "  curl -s {w}/relations | grep -o '\"external_userid\":\"{external}\"[^}}]*'"
    );
    let _ = writeln!(
        out,
        "  #    and so does {his} mall member (prints its mall id, {}):",
        tag.mall_id
    );
    let _ = writeln!(
        out,
        "  curl -s {mall_api}/members/{member} -H 'Authorization: Bearer {MALL_TOKEN}' | grep -o {}",
        tag.mall_id
    );
}

/// A hub tag and where it lives on each side.
struct HubTag {
    id: String,
    wecom_id: String,
    mall_id: String,
}

/// What a restart on an earlier demo's data directory prints instead of the seed's commands.
fn restart_notice(demo: &Demo, tagsync_base: &str, admin_token: &str) -> String {
    let restarted = "restarted on its earlier data, wired to new simulators";
    let mut out = opening(restarted, demo, tagsync_base, admin_token);
    let _ = writeln!(
        out,
        "\nThe hub keeps what the earlier run left, so the seed was skipped. The simulators keep\n\
         nothing between runs: they start empty, and the earlier run's ids are not theirs. For a\n\
         fresh seeded world with its try-it commands, start the demo without --data."
    );
    out
}
