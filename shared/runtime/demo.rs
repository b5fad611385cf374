//! `tagsync serve --demo`: tagsync together with both simulators on loopback, a demo tenant
//! wired to them and a small seeded world, so a newcomer sees WeCom callbacks and mall
//! webhooks arrive without a WeCom corp, a mall or any network.

use crate::app::App;
use crate::domain::*;
use crate::sim::mall::{MallSim, MallSimConfig, NewMember};
use crate::sim::wecom::{SimConfig, WecomSim};
use std::fmt::Write as _;

pub const TENANT: &str = "demo";
const CORP: &str = "wwdemocorp00000001";
const CALLBACK_TOKEN: &str = "demoCallbackToken";
// WeCom's own sample EncodingAESKey (wecom-api.md §4.5 Set A).
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const MALL_TOKEN: &str = "demo-mall-token";
const WEBHOOK_SECRET: &str = "demo-webhook-secret";

/// The running simulators; dropping them stops them.
pub struct Demo {
    pub wecom: WecomSim,
    pub mall: MallSim,
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
    Ok(Demo { wecom, mall })
}

/// Registers the demo tenant, seeds both simulators (before they are wired, so the seed sends
/// no events), then points their callbacks and webhooks at tagsync. Returns what to print.
pub async fn seed(
    app: &App,
    demo: &Demo,
    tagsync_base: &str,
    admin_token: &str,
) -> Result<String, String> {
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

    let err = |e: &dyn std::fmt::Display| e.to_string();
    let console = demo.wecom.console();
    let level = console
        .create_group("客户等级", 20, &[("VIP客户", 2), ("普通客户", 1)])
        .map_err(|e| err(&e))?;
    console
        .create_group("来源渠道", 10, &[("线下门店", 2), ("小程序", 1)])
        .map_err(|e| err(&e))?;
    for (userid, customer) in [
        ("sales_li", "wm_alice"),
        ("sales_wang", "wm_alice"),
        ("sales_li", "wm_bob"),
    ] {
        console
            .add_relation(userid, customer, Some("demo"))
            .map_err(|e| err(&e))?;
    }
    console
        .tag_relation("sales_li", "wm_alice", &[&level.tag_ids[0]], &[])
        .map_err(|e| err(&e))?;

    let operator = demo.mall.operator();
    let grades = operator.create_group("会员等级", 20).map_err(|e| err(&e))?;
    let gold = operator
        .create_tag(&grades.id, "金卡", 2)
        .map_err(|e| err(&e))?;
    operator
        .create_tag(&grades.id, "银卡", 1)
        .map_err(|e| err(&e))?;
    let alice = operator
        .create_member(NewMember::external("wm_alice"))
        .map_err(|e| err(&e))?;
    operator
        .create_member(NewMember::external("wm_bob"))
        .map_err(|e| err(&e))?;
    operator
        .tag_member(&alice.id, &gold.id)
        .map_err(|e| err(&e))?;

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

    let (w, m) = (
        demo.wecom.control_url(),
        format!("{}/control", demo.mall.base_url()),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tagsync demo: tenant `{TENANT}` wired to a WeCom simulator and a mall simulator (all on loopback)"
    );
    let _ = writeln!(
        out,
        "  tagsync     {tagsync_base}   admin token: {admin_token}"
    );
    let _ = writeln!(
        out,
        "  WeCom sim   {}   control: {w}",
        demo.wecom.base_url()
    );
    let _ = writeln!(out, "  mall sim    {}   control: {m}", demo.mall.base_url());
    let _ = writeln!(
        out,
        "\nTry these (each is a person acting on one side; that side tells tagsync):"
    );
    let _ = writeln!(
        out,
        "  # a mall operator renames the tag 金卡 (the mall sends a signed webhook)"
    );
    let _ = writeln!(
        out,
        "  curl -s -X PATCH {m}/tags/{} -H 'content-type: application/json' -d '{{\"name\":\"黑金卡\"}}'",
        gold.id
    );
    let _ = writeln!(
        out,
        "  # a salesperson tags customer wm_bob in the WeCom client (WeCom sends an encrypted callback)"
    );
    let _ = writeln!(
        out,
        "  curl -s -X POST {w}/relations/tags -H 'content-type: application/json' -d '{{\"userid\":\"sales_li\",\"external_userid\":\"wm_bob\",\"add\":[\"{}\"]}}'",
        level.tag_ids[1]
    );
    let _ = writeln!(out, "  # what tagsync received and did, newest first");
    let _ = writeln!(
        out,
        "  curl -s {tagsync_base}/admin/v1/tenants/{TENANT}/audit -H 'Authorization: Bearer {admin_token}'"
    );
    let _ = writeln!(out, "  # both sides as the simulators hold them");
    let _ = writeln!(out, "  curl -s {w}/library; curl -s {m}/state");
    let _ = writeln!(
        out,
        "\nEach change reaches the other side within a moment (the audit log shows what was applied where). The seeded objects were created before tagsync was wired, so tagsync learns each one when it is first changed; a manual sync that imports everything at once comes with reconciliation."
    );
    Ok(out)
}
