// Browser tests of the console: `tagsync serve --demo` on loopback (both simulators, the seeded
// demo tenant), driven in Debian's headless chromium through playwright-core. What the page
// shows is checked against what the simulators hold, through their control surfaces.
//
// The whole suite runs once per browser locale (zh-CN, then en-US), each against its own demo:
// the console picks its language from the browser's, and every flow must work in both. In
// Chinese, every screenshot is also a check that the page shows no English outside the
// values that come from the systems (marked translate="no"). Then the language switch.
//
//   cd tests/browser && npm ci && node --test        (infra/test.sh runs it after cargo test)
//
// Environment: TAGSYNC_BIN (default target/debug/tagsync), CHROMIUM (default /usr/bin/chromium),
// TAGSYNC_SCREENSHOTS (default target/browser-screenshots; one folder per locale),
// TAGSYNC_LOCALES (default "zh-CN,en-US").

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac, randomUUID } from 'node:crypto';
import { chromium } from 'playwright-core';
import { LATIN_OK } from './latin.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TAGSYNC_BIN || path.join(ROOT, 'target/debug/tagsync');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.TAGSYNC_SCREENSHOTS || path.join(ROOT, 'target/browser-screenshots');
// infra/test.sh kills this PID on exit, should this process die before its own cleanup.
const PID_FILE = path.join(SHOTS, 'serve.pid');
const TOKEN = 'browser-test-admin-token-0123456789';
// Long enough for a debug build on two busy cores; every wait ends as soon as its condition holds.
const WAIT = 30_000;
const LOCALES = (process.env.TAGSYNC_LOCALES || 'zh-CN,en-US').split(',').map((s) => s.trim()).filter(Boolean);

// What each language must show, written here rather than read from messages.json, so a test
// fails if the page shows the wrong language (or the table loses a translation).
const EXPECT = {
  'zh-CN': {
    lang: 'zh-CN', other: 'en', otherOverview: 'Overview',
    signIn: '登录', overview: '概览', library: '标签库', refused: '令牌无效',
    synced: '已同步', readOnly: '只读', failed: '失败',
    renamedInMall: '在商城重命名的标签', renamedInWecom: '在企业微信重命名的标签',
    redriven: '重新投递失败任务',
    // 2026/12/03 10:04:05
    date: /^\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}$/,
  },
  'en-US': {
    lang: 'en', other: 'zh-CN', otherOverview: '概览',
    signIn: 'Sign in', overview: 'Overview', library: 'Tag library', refused: 'refused',
    synced: 'synced', readOnly: 'read-only', failed: 'failed',
    renamedInMall: 'Tags renamed in the mall', renamedInWecom: 'Tags renamed in WeCom',
    redriven: 'Dead letters redriven',
    // 12/03/2026, 10:04:05 AM
    date: /^\d{2}\/\d{2}\/\d{4}, \d{2}:\d{2}:\d{2}\s(AM|PM)$/,
  },
};

// ---- helpers --------------------------------------------------------------------------

// Polls `check` until it returns a truthy value (which is returned) or the time is up.
async function until(what, check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function getJson(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// Runs in the page: visible English outside translate="no" (and code), as "word in text".
// Attribute values (titles hold raw codes too) count only words of letters standing alone.
function englishOnPage(allowed) {
  const ok = new Set(allowed);
  const found = [];
  const skip = (el) => el.closest('[translate="no"], code, script, style, noscript');
  const shown = (el) => el.checkVisibility({ checkOpacity: false, checkVisibilityCSS: true });
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || skip(el) || !shown(el)) continue;
    for (const w of n.textContent.match(/[A-Za-z]{2,}/g) || []) if (!ok.has(w)) found.push(`${w} in “${n.textContent.trim()}”`);
  }
  for (const el of document.querySelectorAll('[title], [placeholder], [aria-label]')) {
    if (skip(el) || !shown(el)) continue;
    for (const attr of ['title', 'placeholder', 'aria-label']) {
      const v = el.getAttribute(attr);
      // A JSON document in a tooltip is data (an event's body).
      if (!v || /^\s*[[{]/.test(v)) continue;
      for (const tok of v.split(/\s+/)) {
        const m = tok.match(/^[("'“]*([A-Za-z]{2,})[.,:;!?)"'”]*$/);
        if (m && !ok.has(m[1])) found.push(`${m[1]} in ${attr}=“${v}”`);
      }
    }
  }
  return found;
}

// ---- the suite, once per locale -------------------------------------------------------------

for (const locale of LOCALES) {
  const X = EXPECT[locale];
  assert.ok(X, `no expectations for locale ${locale}`);

  describe(`console in ${locale}`, () => {
    let serve; // the tagsync child process
    let demo; // what it printed: { base, wecomControl, mallControl, members: {alice, bob} }
    let context;
    let page;
    let userDataDir;
    const pageErrors = [];
    const shots = [];
    const dir = path.join(SHOTS, locale);

    const admin = (p, init = {}) => getJson(`${demo.base}/admin/v1/tenants/demo${p}`, {
      ...init,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers || {}) },
    });

    // The WeCom simulator's corp library: [{id, name, tags: [{id, name}]}].
    async function wecomLibrary() {
      const { body } = await getJson(`${demo.wecomControl}/library`);
      return body.result;
    }
    async function wecomHas(groupName, tagName) {
      const groups = await wecomLibrary();
      const g = groups.find((x) => x.name === groupName);
      return !!g && g.tags.some((tg) => tg.name === tagName);
    }
    async function mallState() {
      return (await getJson(`${demo.mallControl}/state`)).body;
    }
    async function mallTag(groupName, tagName) {
      const { groups } = await mallState();
      const g = groups.find((x) => x.name === groupName);
      return g && (g.tags || []).find((tg) => tg.name === tagName);
    }

    // A screenshot; in Chinese also the check that nothing on the page is left in English.
    async function shot(name) {
      const file = path.join(dir, name + '.png');
      await page.screenshot({ path: file });
      shots.push(file);
      console.log(`screenshot: ${file}`);
      if ((await page.evaluate(() => document.documentElement.lang)) === 'zh-CN') {
        const english = await page.evaluate(englishOnPage, [...LATIN_OK]);
        assert.deepEqual(english, [], `English on the Chinese page ${name}`);
      }
    }

    // ---- automatic tagging: the chat feed, hub tags, what each side holds ---------------------

    // The demo's tenant as demo.rs registers it, now with a feed secret (PUT keeps the settings).
    const FEED_SECRET = 'browser-test-feed-secret';
    async function enableFeed() {
      const res = await admin('', {
        method: 'PUT',
        body: JSON.stringify({
          corp_id: 'wwdemocorp00000001', agent_id: '1000002', corp_secret: 'demo-app-secret',
          callback_token: 'demoCallbackToken', encoding_aes_key: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C',
          mall_api_base: demo.mallApi, mall_api_token: 'demo-mall-token', mall_webhook_secret: 'demo-webhook-secret',
          message_feed_secret: FEED_SECRET,
        }),
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.message_feed, true);
    }

    // The chat-archive connector: one text message, signed as automation.md §3 says
    // (HMAC-SHA256 over `timestamp.body` with the tenant's message_feed_secret).
    async function postChat(from, to, content) {
      const body = JSON.stringify({
        messages: [{
          msgid: 'browser-' + randomUUID(), action: 'send', from, tolist: [to], roomid: '',
          msgtime: Date.now(), msgtype: 'text', text: { content },
        }],
      });
      const ts = Math.floor(Date.now() / 1000);
      const sig = createHmac('sha256', FEED_SECRET).update(`${ts}.${body}`).digest('hex');
      const res = await getJson(`${demo.base}/messages/demo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-feed-timestamp': String(ts), 'x-feed-signature': `v1=${sig}` },
        body,
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(res.body.queued, 1);
    }

    // A hub tag by its group and name: {id, wecom_id, mall_id}.
    async function hubTag(groupName, tagName) {
      const { body } = await admin('/tag-groups');
      const g = body.groups.find((x) => x.name === groupName);
      return g && g.tags.find((x) => x.name === tagName);
    }
    async function mallMemberHas(memberId, mallTagId) {
      const { members } = await mallState();
      return !!members.find((m) => m.id === memberId)?.tag_ids.includes(mallTagId);
    }
    // Whether every WeCom relation of the customer carries the tag (`want` true) or none does.
    async function wecomRelationsAre(externalUserid, wecomTagId, want) {
      const { body } = await getJson(`${demo.wecomControl}/relations`);
      const rels = body.result.filter((r) => r.external_userid === externalUserid);
      return rels.length > 0 && rels.every((r) => r.tags.includes(wecomTagId) === want);
    }

    const tagRow = (name) => page.locator(`tr[data-kind="tag"][data-name="${name}"]`);
    const sideBadge = (name, side, st) => tagRow(name).locator(`td[data-side="${side}"] .badge.${st}`);
    const nav = (p) => page.locator(`.sidebar a[data-page="${p}"]`).click();

    // Starts `tagsync serve --demo` on free loopback ports and reads what it prints: the demo
    // is ready once the seeded world has been carried everywhere and the instructions are printed.
    function startDemo() {
      return new Promise((resolve, reject) => {
        const data = fs.mkdtempSync(path.join(os.tmpdir(), 'tagsync-browser-'));
        serve = spawn(BIN, ['serve', '--demo', '--listen', '127.0.0.1:0', '--nightly', 'off', '--data', data], {
          env: { ...process.env, TAGSYNC_ADMIN_TOKEN: TOKEN, RUST_LOG: process.env.RUST_LOG || 'warn' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        fs.writeFileSync(PID_FILE, String(serve.pid));
        serve.on('exit', (code, signal) => reject(new Error(`tagsync serve --demo exited early (${code ?? signal})`)));
        serve.on('error', reject);
        const seen = { members: {} };
        const lines = createInterface({ input: serve.stdout });
        const timer = setTimeout(() => reject(new Error('tagsync serve --demo printed no instructions in time')), 120_000);
        lines.on('line', (line) => {
          let m;
          if ((m = line.match(/^tagsync listening on (\S+)/))) seen.base = m[1];
          if ((m = line.match(/WeCom sim .*control: (\S+)/))) seen.wecomControl = m[1];
          if ((m = line.match(/mall sim\s+(\S+)\s+control: (\S+)/))) {
            seen.mallApi = m[1];
            seen.mallControl = m[2];
          }
          if ((m = line.match(/Members to look up: (\S+) \(Alice.*?(\S+) \(Bob/))) {
            seen.members = { alice: m[1], bob: m[2] };
          }
          // The last instruction: everything above it has been read.
          if (line.includes('/admin/v1/tenants/demo/audit')) {
            clearTimeout(timer);
            resolve({ ...seen, data });
          }
        });
      });
    }

    before(async () => {
      fs.mkdirSync(dir, { recursive: true });
      for (const f of fs.readdirSync(dir)) if (f.endsWith('.png')) fs.rmSync(path.join(dir, f));
      assert.ok(fs.existsSync(BIN), `${BIN} is missing: cargo build --bin tagsync first`);
      assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
      demo = await startDemo();
      await until('tagsync /healthz', async () => (await fetch(`${demo.base}/healthz`)).ok);

      userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tagsync-chromium-'));
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync',
          `--lang=${locale}`,
        ],
        viewport: { width: 1366, height: 860 },
        locale,
        timezoneId: 'Asia/Shanghai',
      });
      page = context.pages()[0] || (await context.newPage());
      page.setDefaultTimeout(WAIT);
      page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
      page.on('console', (m) => {
        // Refused requests (the wrong token, a 501) are checked by the tests themselves; anything
        // else the browser reports as an error (a script error, a CSP violation, a missing
        // message) fails the run.
        if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
          pageErrors.push(`console error: ${m.text()}`);
        }
      });
    });

    after(async () => {
      if (context) await context.close().catch(() => {});
      if (serve && serve.exitCode === null) {
        serve.removeAllListeners('exit');
        const exited = new Promise((r) => serve.once('exit', r));
        serve.kill('SIGTERM');
        const killer = setTimeout(() => serve.kill('SIGKILL'), 25_000);
        await exited;
        clearTimeout(killer);
      }
      fs.rmSync(PID_FILE, { force: true });
      for (const d of [userDataDir, demo && demo.data]) if (d) fs.rmSync(d, { recursive: true, force: true });
      if (shots.length) console.log(`screenshots in ${dir}:\n  ${shots.join('\n  ')}`);
    });

    // ---- the tests (in order: each builds on what the previous one did) ---------------------

    test(`the console opens in ${X.lang} from the browser's language; a wrong token is refused; the admin token opens the demo tenant`, async () => {
      await page.goto(`${demo.base}/admin/`);
      await page.locator('#login-form button[type=submit]', { hasText: X.signIn }).waitFor();
      assert.equal(await page.evaluate(() => document.documentElement.lang), X.lang);
      assert.equal(await page.locator(`#login .lang-switch button[data-lang="${X.lang}"]`).getAttribute('aria-pressed'), 'true');
      await page.locator('#token').fill('not-the-admin-token-at-all');
      await page.locator('#login-form button[type=submit]').click();
      await page.locator('#login-error', { hasText: X.refused }).waitFor();
      await page.locator('#token').fill(TOKEN);
      await shot('01-sign-in');
      await page.locator('#login-form button[type=submit]').click();
      await page.locator('h1', { hasText: X.overview }).waitFor();
      assert.equal(await page.locator('#tenant-select').inputValue(), 'demo');
      await page.locator('input[data-setting="auto_sync"]').waitFor({ state: 'attached' });
      assert.equal(await page.locator('input[data-setting="auto_sync"]').isChecked(), true);
      await shot('02-overview');
    });

    test('dates are shown in the browser\'s locale', async () => {
      const registered = page.locator('[data-testid="registered"]');
      assert.match((await registered.textContent()).trim(), X.date);
    });

    test('the tag library shows the seeded groups and tags on both sides, with their states and ids', async () => {
      await nav('library');
      await sideBadge('金卡', 'wecom', 'synced').waitFor();
      await sideBadge('金卡', 'mall', 'synced').waitFor();
      assert.equal(await sideBadge('金卡', 'wecom', 'synced').textContent(), X.synced);
      const mallId = await tagRow('金卡').locator('td[data-side="mall"] .id').textContent();
      const gold = await mallTag('会员等级', '金卡');
      assert.equal(mallId, gold.id, 'the mall id shown is the mall simulator\'s');
      // Renamed in the mall, refused by WeCom (made in WeCom's admin console): read-only there.
      await sideBadge('小程序商城', 'wecom', 'read_only').waitFor();
      await sideBadge('小程序商城', 'mall', 'synced').waitFor();
      assert.equal(await sideBadge('小程序商城', 'wecom', 'read_only').textContent(), X.readOnly);
      await shot('03-library');
    });

    test('a tag created in the console reaches both simulators and shows synced', async () => {
      const group = page.locator('tr[data-kind="group"][data-name="会员等级"]');
      await group.locator('button[data-action="new-tag"]').click();
      await page.locator('#dialog input[name="name"]').fill('钻石卡');
      await page.locator('#dialog input[name="order"]').fill('3');
      await shot('04-create-tag-dialog');
      await page.locator('#dialog button[type=submit]').click();
      await tagRow('钻石卡').waitFor();
      await sideBadge('钻石卡', 'wecom', 'synced').waitFor();
      await sideBadge('钻石卡', 'mall', 'synced').waitFor();
      assert.ok(await until('WeCom simulator to hold 会员等级/钻石卡', () => wecomHas('会员等级', '钻石卡')));
      assert.ok(await until('mall simulator to hold 会员等级/钻石卡', () => mallTag('会员等级', '钻石卡')));
      await shot('05-tag-created');
    });

    test('a member looked up in the console gets a tag, and the mall member carries it', async () => {
      await nav('members');
      await page.locator('input[name="member"]').fill(demo.members.alice);
      await page.locator('button[data-action="look-up"]').click();
      await page.locator('[data-testid="member-tags"] .chip', { hasText: '金卡' }).waitFor();
      await page.locator('button[data-action="edit-tags"]').click();
      await page.locator('.tag-picker label', { hasText: '钻石卡' }).locator('input').check();
      await shot('06-member-edit');
      await page.locator('button[data-action="save-tags"]').click();
      await page.locator('[data-testid="member-tags"] .chip', { hasText: '钻石卡' }).waitFor();
      const diamond = await mallTag('会员等级', '钻石卡');
      await until('the mall member to carry 钻石卡', async () => {
        const { members } = await mallState();
        return members.find((m) => m.id === demo.members.alice)?.tag_ids.includes(diamond.id);
      });
      // Both of Alice's salespeople see it in WeCom too.
      await until('every WeCom relation of Alice to show 钻石卡', async () => {
        const rows = page.locator('[data-testid="relations"] tbody tr');
        const n = await rows.count();
        if (n < 2) return false;
        for (let i = 0; i < n; i++) if (!(await rows.nth(i).textContent()).includes('钻石卡')) return false;
        return true;
      });
      await shot('07-member');
    });

    test('a permanent WeCom failure shows failed, is parked as a dead letter, and goes through when redriven', async () => {
      // WeCom refuses the next tag creation as it does for a server outside the app's trusted IPs.
      const fault = await getJson(`${demo.wecomControl}/faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ op: 'externalcontact/add_corp_tag', errcode: 60020, next: 1 }),
      });
      assert.equal(fault.status, 200, JSON.stringify(fault.body));

      await nav('library');
      const group = page.locator('tr[data-kind="group"][data-name="会员等级"]');
      await group.locator('button[data-action="new-tag"]').click();
      await page.locator('#dialog input[name="name"]').fill('白金卡');
      await page.locator('#dialog button[type=submit]').click();
      await sideBadge('白金卡', 'wecom', 'failed').waitFor();
      assert.equal(await sideBadge('白金卡', 'wecom', 'failed').textContent(), X.failed);
      // The server's reason, as it gave it.
      await tagRow('白金卡').locator('td[data-side="wecom"] .error-text', { hasText: 'trusted IP' }).waitFor();
      await shot('08-failed-in-wecom');

      await nav('dead-letters');
      const row = page.locator('tbody tr', { hasText: '白金卡' });
      await row.locator('.error-text', { hasText: 'trusted IP' }).waitFor();
      assert.equal(await page.locator('#dead-count').textContent(), '1');
      await shot('09-dead-letters');

      await page.locator('button[data-action="redrive-all"]').click();
      await page.locator('[data-testid="no-dead-letters"]').waitFor();
      assert.ok(await until('WeCom simulator to hold 会员等级/白金卡', () => wecomHas('会员等级', '白金卡')));
      await nav('library');
      await sideBadge('白金卡', 'wecom', 'synced').waitFor();
      await sideBadge('白金卡', 'mall', 'synced').waitFor();
      await shot('10-redriven');
    });

    test('a manual sync shows its progress, then a report of the drift it found and repaired', async (tc) => {
      const probe = await admin('/sync');
      if (probe.status === 501) {
        const reason = 'the server answers 501 for the sync routes (full reconciliation is not in this build)';
        console.log(`SKIPPED manual sync: ${reason}`);
        await nav('sync');
        await page.locator('[data-testid="sync-not-offered"]').waitFor();
        await shot('11-sync-not-available');
        tc.skip(reason);
        return;
      }
      // Drift events never told tagsync about: the mall renames 银卡 without sending a webhook.
      const silver = await mallTag('会员等级', '银卡');
      const renamed = await getJson(`${demo.mallControl}/tags/${silver.id}?silent=true`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: '银卡会员' }),
      });
      assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
      // A slow mall (every answer held back 1.5 s) keeps the run going long enough to watch it.
      const slow = (delay_ms) => getJson(`${demo.mallControl}/faults`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ delay_ms }),
      });
      assert.equal((await slow(1500)).status, 200);
      try {
        await nav('sync');
        await page.locator('button[data-scope="library"]').click();
        await page.locator('[data-testid="run"][data-status="running"] .progress').waitFor();
        assert.equal(await page.locator('button[data-scope="library"]').isDisabled(), true, 'no second run while one is going');
        await shot('11-sync-running');
        await page.locator('[data-testid="run"][data-status="done"]').waitFor({ timeout: 60_000 });
      } finally {
        await slow(0);
      }
      const report = page.locator('[data-testid="run-report"]');
      await report.waitFor();
      // Found in the mall, repaired in WeCom (the hub takes the name as well), said in words.
      const drift = report.locator('[data-testid="drift"] tr[data-counter="tags.renamed.mall"] td').first();
      const repaired = report.locator('[data-testid="repaired"] tr[data-counter="tags.renamed.wecom"] td').first();
      assert.equal(await drift.textContent(), X.renamedInMall);
      assert.equal(await repaired.textContent(), X.renamedInWecom);
      const runId = await page.locator('[data-testid="run"] .id').textContent();
      const run = await admin(`/sync/${runId}`);
      assert.equal(run.status, 200);
      assert.equal(run.body.status, 'done');
      await shot('12-sync-report');
      // The mall's rename was carried: WeCom has the new name too.
      assert.ok(await until('WeCom to hold 银卡会员', () => wecomHas('会员等级', '银卡会员')));
    });

    test('the audit log lists what happened as a table, each action in words with its code', async () => {
      await nav('audit');
      await page.locator('tbody tr code').first().waitFor();
      const actions = await page.locator('tbody tr code').allTextContents();
      assert.ok(actions.some((a) => a.startsWith('dead_letters.redriven')), actions.join(', '));
      const redriven = page.locator('tbody tr td.action', { has: page.locator('code', { hasText: 'dead_letters.redriven' }) }).first();
      assert.equal(await redriven.locator('div').textContent(), X.redriven);
      await shot('13-audit');
    });

    test('switches are toggles that change the tenant settings', async () => {
      await nav('overview');
      const toggle = page.locator('input[data-setting="member_sync"]');
      await toggle.uncheck();
      await until('member_sync off', async () => (await admin('/settings')).body.member_sync === false);
      await toggle.check();
      await until('member_sync on', async () => (await admin('/settings')).body.member_sync === true);
    });

    test('a keyword rule made in the console tags the customer who says the word everywhere, excludes the one it should, and one undo takes the tag off again', async () => {
      await enableFeed();
      const made = await admin('/tag-groups', {
        method: 'POST',
        body: JSON.stringify({ name: '咨询行为', tags: [{ name: '问过优惠券' }, { name: '已下单' }] }),
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const asked = await until('问过优惠券 in WeCom and the mall', async () => {
        const x = await hubTag('咨询行为', '问过优惠券');
        return x && x.wecom_id && x.mall_id && x;
      });
      const ordered = await hubTag('咨询行为', '已下单');
      // Bob has already ordered: the rule's exclusion keeps him out.
      const bobTagged = await admin(`/members/${demo.members.bob}/tags`, { method: 'POST', body: JSON.stringify({ add: [ordered.id], remove: [] }) });
      assert.ok(bobTagged.status < 300, JSON.stringify(bobTagged.body));

      await nav('rules');
      await page.locator('[data-action="new-rule"]').click();
      const form = page.locator('[data-testid="rule-form"]');
      await form.locator('input[name="name"]').fill('优惠券咨询');
      await form.locator('select[name="trigger_kind"]').selectOption('keyword');
      await form.locator('textarea[name="keywords"]').fill('优惠券');
      await form.locator('[data-testid="cond-has_none"] select').selectOption({ label: '已下单' });
      await form.locator('[data-testid="action-add"] select').selectOption({ label: '问过优惠券' });
      await form.locator('select[name="mode"]').selectOption('on');
      await form.locator('[data-testid="cond-has_none"] .chip', { hasText: '已下单' }).waitFor();
      await shot('15-rule-form');
      await form.locator('[data-action="save-rule"]').click();
      const ruleCard = page.locator('[data-testid="rule"]');
      await ruleCard.locator('[data-testid="mode"][data-mode="on"]').waitFor();
      const ruleId = decodeURIComponent(new URL(page.url()).hash.split('/').pop());
      const stored = await admin(`/rules/${ruleId}`);
      assert.equal(stored.status, 200);
      assert.deepEqual(stored.body.trigger, { kind: 'keyword', any: ['优惠券'], from: 'customer' });
      assert.deepEqual(stored.body.conditions, [{ has_none: [ordered.id] }]);
      assert.deepEqual(stored.body.actions, { add: [asked.id], remove: [] });

      // Alice and Bob ask in chat, each to a salesperson following them.
      await postChat('wm_alice', 'sales_li', '请问有优惠券吗？');
      await postChat('wm_bob', 'sales_li', '这周有优惠券吗');
      const alice = page.locator('[data-testid="firings"] tr[data-customer="wm_alice"][data-outcome="applied"]');
      await alice.waitFor();
      assert.equal(await alice.locator('[data-testid="message"]').textContent(), '请问有优惠券吗？');
      const bob = page.locator('[data-testid="firings"] tr[data-customer="wm_bob"][data-outcome="excluded"]');
      await bob.waitFor();
      assert.match(await bob.locator('[data-testid="excluded-by"]').textContent(), /已下单/);
      await until('the mall member Alice to carry 问过优惠券', () => mallMemberHas(demo.members.alice, asked.mall_id));
      await until('every WeCom relation of Alice to carry 问过优惠券', () => wecomRelationsAre('wm_alice', asked.wecom_id, true));
      assert.equal(await mallMemberHas(demo.members.bob, asked.mall_id), false, 'Bob was excluded');
      await shot('16-rule-firings');

      // The console's member page shows the tag too.
      await nav('members');
      await page.locator('input[name="member"]').fill(demo.members.alice);
      await page.locator('button[data-action="look-up"]').click();
      await page.locator('[data-testid="member-tags"] .chip', { hasText: '问过优惠券' }).waitFor();

      // Undo: a tracked run; the tag leaves the hub, the mall and every WeCom relation.
      await page.evaluate((hash) => { location.hash = hash; }, `#/demo/rules/${encodeURIComponent(ruleId)}`);
      await page.locator('[data-action="undo"]').click();
      await page.locator('#dialog button[type=submit]').click();
      const run = page.locator('[data-testid="tracked-run"][data-status="done"]');
      await run.waitFor();
      assert.match(await run.locator('[data-testid="undone"]').textContent(), /1/);
      await page.locator('[data-testid="firings"] tr[data-customer="wm_alice"][data-outcome="undone"]').waitFor();
      await until('the mall member Alice to lose 问过优惠券', async () => !(await mallMemberHas(demo.members.alice, asked.mall_id)));
      await until('no WeCom relation of Alice to carry 问过优惠券', () => wecomRelationsAre('wm_alice', asked.wecom_id, false));
      await shot('17-rule-undone');
    });

    test('a channel code made in the console shows its QR image, tags the customer who scans it, and is deleted', async () => {
      const made = await admin('/tag-groups', { method: 'POST', body: JSON.stringify({ name: '到店渠道', tags: [{ name: '门店海报' }] }) });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const shop = await until('门店海报 in WeCom and the mall', async () => {
        const x = await hubTag('到店渠道', '门店海报');
        return x && x.wecom_id && x.mall_id && x;
      });
      await nav('channels');
      await page.locator('[data-action="new-channel"]').click();
      const form = page.locator('[data-testid="channel-form"]');
      await form.locator('input[name="name"]').fill('门店海报码');
      // sales_wang does not follow Bob yet: Bob's scan adds a relation.
      await form.locator('input[name="user"][value="sales_wang"]').check();
      await form.locator('[data-testid="channel-tags-picker"] select').selectOption({ label: '门店海报' });
      await shot('18-channel-form');
      await form.locator('[data-action="create-channel"]').click();
      const card = page.locator('.channel[data-name="门店海报码"]');
      await card.waitFor();
      // The QR image is WeCom's (here the simulator's): it loads under the page's CSP.
      const qr = card.locator('img[data-testid="qr"]');
      await until('the QR image to load', () => qr.evaluate((img) => img.complete && img.naturalWidth > 0));
      await card.locator('[data-testid="channel-tags"] .chip', { hasText: '门店海报' }).waitFor();
      await card.locator('[data-testid="mode"][data-mode="on"]').waitFor();
      await shot('19-channels');

      // Bob scans the code: the new relation, his other one and his mall member get the tag.
      const { body } = await admin('/channels');
      const channel = body.channels.find((c) => c.name === '门店海报码');
      const scan = await getJson(`${demo.wecomControl}/contact-ways/${encodeURIComponent(channel.config_id)}/scan`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ external_userid: 'wm_bob' }),
      });
      assert.equal(scan.status, 200, JSON.stringify(scan.body));
      assert.equal(scan.body.result.userid, 'sales_wang');
      await until('the mall member Bob to carry 门店海报', () => mallMemberHas(demo.members.bob, shop.mall_id));
      await until('both WeCom relations of Bob to carry 门店海报', async () => {
        const { body: rels } = await getJson(`${demo.wecomControl}/relations`);
        return rels.result.filter((r) => r.external_userid === 'wm_bob').length === 2 && wecomRelationsAre('wm_bob', shop.wecom_id, true);
      });

      await card.locator('[data-action="delete-channel"]').click();
      await page.locator('#dialog button[type=submit]').click();
      await card.waitFor({ state: 'detached' });
      // Gone from the hub (the demo's own channel 线下门店 stays).
      const left = (await admin('/channels')).body.channels.map((c) => c.name);
      assert.ok(!left.includes('门店海报码'), left.join(', '));
    });

    test('the customer list filters by tag, binding and name, shows personal tags in a quieter style per relation, and a bulk tagging over the filter reaches every relation and the mall', async () => {
      // Salesperson sales_wang gives Carol a personal tag in the WeCom client (never synced).
      const personal = await getJson(`${demo.wecomControl}/relations/personal-tags`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userid: 'sales_wang', external_userid: 'wm_carol', tags: [['我的标签', '老同学']] }),
      });
      assert.equal(personal.status, 200, JSON.stringify(personal.body));
      await until('the index to show Carol\'s personal tag', async () => {
        const { body } = await admin('/customers?q=carol');
        return body.customers[0]?.relations.some((r) => r.personal_tags.includes('老同学'));
      });

      await nav('customers');
      const rows = page.locator('[data-testid="customers"] tr.customer-row');
      const shown = async () => (await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.customer))).sort();
      await until('all three customers listed', async () => JSON.stringify(await shown()) === JSON.stringify(['wm_alice', 'wm_bob', 'wm_carol']));
      const filterBar = page.locator('[data-testid="customer-filter"]');
      const apply = () => filterBar.locator('[data-action="apply-filter"]').click();

      // A tag: only Alice carries 金卡.
      await filterBar.locator('[data-testid="filter-tags"] select').selectOption({ label: '金卡' });
      await apply();
      await until('only Alice with 金卡', async () => JSON.stringify(await shown()) === '["wm_alice"]');
      assert.match(await page.locator('[data-testid="customer-total"]').textContent(), /1/);
      // The same tag with "none of": everyone else.
      await filterBar.locator('select[name="tag_mode"]').selectOption('none');
      await apply();
      await until('Bob and Carol without 金卡', async () => JSON.stringify(await shown()) === '["wm_bob","wm_carol"]');
      await filterBar.locator('[data-action="clear-filter"]').click();
      await until('the filter cleared', async () => (await shown()).length === 3);

      // Not bound to a member: Carol, with her personal tag shown apart from the corp tags.
      await filterBar.locator('select[name="bound"]').selectOption('false');
      await apply();
      await until('only Carol unbound', async () => JSON.stringify(await shown()) === '["wm_carol"]');
      const carol = page.locator('tr.customer-row[data-customer="wm_carol"]');
      await carol.locator('.chip.personal', { hasText: '老同学' }).waitFor();
      await carol.locator('[data-action="relations"]').click();
      const rel = page.locator('[data-testid="relations"] tr[data-userid="sales_wang"]');
      await rel.locator('[data-testid="personal"] .chip.personal', { hasText: '老同学' }).waitFor();
      await shot('20-customers');
      // A name: q matches the name or the id.
      await filterBar.locator('select[name="bound"]').selectOption('');
      await filterBar.locator('input[name="q"]').fill('bob');
      await apply();
      await until('only Bob by name', async () => JSON.stringify(await shown()) === '["wm_bob"]');

      // Bulk tagging over "bound to a member" (Alice and Bob): preview, confirm, progress, report.
      const high = await hubTag('购买意向', '高意向');
      await filterBar.locator('input[name="q"]').fill('');
      await filterBar.locator('select[name="bound"]').selectOption('true');
      await apply();
      await until('Alice and Bob bound', async () => JSON.stringify(await shown()) === '["wm_alice","wm_bob"]');
      await page.locator('[data-action="bulk"]').click();
      const bulk = page.locator('[data-testid="bulk-form"]');
      await bulk.locator('[data-testid="bulk-add"] select').selectOption({ label: '高意向' });
      await bulk.locator('[data-action="preview"]').click();
      const preview = page.locator('[data-testid="bulk-preview"]');
      await preview.waitFor();
      assert.equal(await preview.getAttribute('data-matched'), '2');
      await shot('21-bulk-preview');
      await preview.locator('[data-action="run-bulk"]').click();
      await page.locator('#dialog button[type=submit]').click();
      const run = page.locator('[data-testid="tracked-run"][data-status="done"]');
      await run.waitFor();
      assert.match(await run.locator('[data-testid="done"]').textContent(), /2/);
      for (const [member, customer] of [[demo.members.alice, 'wm_alice'], [demo.members.bob, 'wm_bob']]) {
        await until(`the mall member of ${customer} to carry 高意向`, () => mallMemberHas(member, high.mall_id));
        await until(`every WeCom relation of ${customer} to carry 高意向`, () => wecomRelationsAre(customer, high.wecom_id, true));
      }
      assert.equal(await wecomRelationsAre('wm_carol', high.wecom_id, false), true, 'Carol was not in the filter');
      await shot('22-bulk-done');
    });

    test('a bulk tagging can be cancelled from its progress card, and the report says how far it got', async () => {
      // A slow mall (every answer held back 1.5 s) keeps the run going long enough to stop it.
      const slow = (delay_ms) => getJson(`${demo.mallControl}/faults`, {
        method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ delay_ms }),
      });
      assert.equal((await slow(1500)).status, 200);
      let runId;
      try {
        await page.locator('[data-action="bulk"]').click();
        const bulk = page.locator('[data-testid="bulk-form"]');
        await bulk.locator('[data-testid="bulk-remove"] select').selectOption({ label: '高意向' });
        await bulk.locator('[data-action="preview"]').click();
        await page.locator('[data-testid="bulk-preview"][data-matched="2"] [data-action="run-bulk"]').click();
        await page.locator('#dialog button[type=submit]').click();
        const running = page.locator('[data-testid="tracked-run"][data-status="running"]');
        await running.waitFor();
        runId = await running.getAttribute('data-run');
        await running.locator('[data-action="cancel-run"]').click();
        const cancelled = page.locator('[data-testid="tracked-run"][data-status="cancelled"]');
        await cancelled.waitFor();
        // The report: how many of how many were done when it stopped.
        assert.match(await cancelled.locator('[data-testid="cancelled-note"]').textContent(), /2/);
        await shot('23-bulk-cancelled');
      } finally {
        await slow(0);
      }
      const { body } = await admin(`/sync/${runId}`);
      assert.equal(body.status, 'cancelled');
      assert.ok(body.counts.done < body.counts.matched, JSON.stringify(body.counts));
    });

    test('a transfer started in the console for a salesperson with a customer picker shows each customer\'s status', async () => {
      await nav('transfers');
      await page.locator('[data-action="new-transfer"]').click();
      const form = page.locator('[data-testid="transfer-form"]');
      await form.locator('select[name="handover_userid"]').selectOption('sales_wang');
      const picker = form.locator('[data-testid="customer-picker"]');
      // sales_wang follows Alice, Carol and (since the channel code) Bob: hand over only Carol.
      for (const c of ['wm_alice', 'wm_bob', 'wm_carol']) await picker.locator(`label[data-customer="${c}"]`).waitFor();
      await picker.locator('label[data-customer="wm_alice"] input').uncheck();
      await picker.locator('label[data-customer="wm_bob"] input').uncheck();
      await form.locator('select[name="takeover_userid"]').selectOption('sales_li');
      await shot('24-transfer-form');
      await form.locator('[data-action="start-transfer"]').click();
      const transfer = page.locator('[data-testid="transfer"]');
      await transfer.waitFor();
      const row = page.locator('[data-testid="transfer-customers"] tr[data-customer="wm_carol"]');
      await row.waitFor();
      assert.equal(await page.locator('[data-testid="transfer-customers"] tbody tr').count(), 1, 'only the customer picked');
      const id = decodeURIComponent(new URL(page.url()).hash.split('/').pop());
      const { body } = await admin(`/transfers/${id}`);
      assert.deepEqual(body.customers.map((c) => c.external_userid), ['wm_carol']);
      assert.equal(body.handover_userid, 'sales_wang');
      assert.equal(body.resigned, false);
      // WeCom accepted it: Carol waits for the takeover 24 hours later, as the page says.
      await until('WeCom to accept the transfer', async () => (await admin(`/transfers/${id}`)).body.customers[0].status === 'waiting' &&
        (await getJson(`${demo.wecomControl}/calls`)).body.result.some((c) => c.op.endsWith('transfer_customer') && c.errcode === 0));
      await page.locator('[data-testid="transfer-customers"] tr[data-customer="wm_carol"][data-status="waiting"]').waitFor();
      await shot('25-transfer');
      await nav('transfers');
      await page.locator(`[data-testid="transfers"] tr[data-transfer="${id}"]`).waitFor();
    });

    test('every run counter and every audit action (rules, channel codes, bulk runs, transfers) is shown in words, never as its raw key', async () => {
      // Each run of the tests above (the manual sync, the undo, the bulk runs) on its own page:
      // every counter of its report and of what it left alone is in words, with no part of its
      // name left as code.
      const { body: listed } = await admin('/sync');
      const runs = listed.runs || [];
      assert.ok(runs.some((r) => r.scope === 'undo'), JSON.stringify(runs.map((r) => r.scope)));
      let counters = 0;
      for (const run of runs) {
        await page.evaluate((hash) => { location.hash = hash; }, `#/demo/sync/${encodeURIComponent(run.run_id)}`);
        await page.locator(`[data-testid="run"]`).waitFor();
        await until(`run ${run.run_id} shown`, async () => (await page.locator('[data-testid="run"] .id').textContent()) === run.run_id);
        const rows = await page.locator('tr[data-counter]').evaluateAll((trs) => trs.map((tr) => ({
          key: tr.dataset.counter,
          text: tr.cells[0].textContent.trim(),
          code: tr.cells[0].querySelector('[translate="no"]')?.textContent ?? null,
        })));
        for (const r of rows) {
          assert.notEqual(r.text, r.key, `run ${run.run_id} (${run.scope}) shows the counter ${r.key} as its key`);
          assert.equal(r.code, null, `run ${run.run_id} (${run.scope}): ${r.key} shown as “${r.text}”, ${r.code} not in words`);
        }
        counters += rows.length;
        if (run.scope === 'undo') await shot('26-undo-run-counters');
      }
      assert.ok(counters > 0, 'some run showed counters');

      // The whole audit trail, every action in words (the code beside it).
      await nav('audit');
      await page.locator('tbody tr code').first().waitFor();
      const older = page.locator('[data-action="older"]');
      while (await older.isVisible()) {
        const n = await page.locator('tbody tr').count();
        await older.click();
        await until('older entries', async () => (await page.locator('tbody tr').count()) > n || !(await older.isVisible()));
      }
      const actions = await page.locator('tbody tr td.action').evaluateAll((tds) => tds.map((td) => ({
        code: td.querySelector('code')?.textContent ?? '',
        words: td.querySelector('div')?.textContent ?? '',
      })));
      const codes = new Set(actions.map((a) => a.code));
      for (const want of ['rule.created', 'rule.undo_started', 'channel.created', 'channel.deleted', 'bulk.started', 'bulk.cancelled', 'transfer.started']) {
        assert.ok(codes.has(want), `the audit trail shows ${want}: ${[...codes].join(', ')}`);
      }
      const raw = actions.filter((a) => !a.words || a.words === a.code).map((a) => a.code);
      assert.deepEqual([...new Set(raw)], [], 'audit actions shown only as their code');
      await page.locator('[data-testid="search"], input.search').first().fill('transfer.started');
      await shot('27-audit-rules-bulk-transfer');
    });

    // ---- operators: roles, scoped groups, signing in with WeCom (issue 16) ---------------------

    // The corp's directory in the WeCom simulator (the demo's has only the root, 1): Shanghai (2)
    // with Pudong (4) below it, Beijing (3); the demo's salespeople in Shanghai and Beijing.
    const CORP = {
      departments: [[2, '上海分公司', 1], [3, '北京分公司', 1], [4, '浦东门店', 2]],
      staff: [['sales_li', '李销售', [2]], ['sales_wang', '王销售', [3]]],
    };
    async function wecomControl(p, body) {
      const res = await getJson(`${demo.wecomControl}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 200, `${p}: ${JSON.stringify(res.body)}`);
    }
    const operatorRow = (userid) => page.locator(`tr[data-userid="${userid}"]`);

    test('an admin gives roles on the roles page, and a scoped group with its mall switch off shows its range in the library', async () => {
      for (const [id, name, parent_id] of CORP.departments) await wecomControl('/departments', { id, name, parent_id, order: id, silent: true });
      for (const [userid, name, departments] of CORP.staff) await wecomControl('/staff', { userid, name, departments, silent: true });
      assert.equal((await admin('/directory:refresh', { method: 'POST', body: '{}' })).status, 200);

      await nav('operators');
      await page.locator('button[data-action="assign-role"]').click();
      await page.locator('#f-userid').selectOption('sales_li');
      await page.locator('#f-role').selectOption('editor');
      await page.locator('#f-departments').selectOption(['2']);
      await shot('15-assign-role');
      await page.locator('#dialog button[type=submit]').click();
      await operatorRow('sales_li').waitFor();
      assert.match(await operatorRow('sales_li').textContent(), /上海分公司/);
      const { body } = await admin('/operators');
      assert.deepEqual(body.operators.map((o) => [o.userid, o.role, o.departments]), [['sales_li', 'editor', [2]]]);
      await shot('16-roles');

      // A Shanghai group made in the console, kept from the mall; a Beijing one by the API.
      await nav('library');
      await page.locator('button[data-action="new-group"]').click();
      await page.locator('#f-name').fill('上海内部评级');
      await page.locator('#f-tags').fill('A类');
      await page.locator('#f-departments').selectOption(['2']);
      await page.locator('#f-include_sub').selectOption('yes');
      await page.locator('#f-carry_to_mall').selectOption('no');
      await page.locator('#dialog button[type=submit]').click();
      const row = page.locator('tr[data-kind="group"][data-name="上海内部评级"]');
      await row.locator('[data-testid="scope"]').waitFor();
      assert.match(await row.locator('[data-testid="scope"]').textContent(), /上海分公司/);
      await row.locator('[data-testid="not-carried"]').waitFor();
      const { body: lib } = await admin('/tag-groups');
      const sh = lib.groups.find((g) => g.name === '上海内部评级');
      assert.deepEqual([sh.scope.departments, sh.scope.include_sub, sh.carry_to_mall], [[2], true, false]);
      const res = await admin('/tag-groups', { method: 'POST', body: JSON.stringify({ name: '北京内部评级', tags: [{ name: 'B类' }], scope: { departments: [3] } }) });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      await page.locator('tr[data-kind="group"][data-name="北京内部评级"]').waitFor();
      await shot('17-scoped-groups');

      // The switch turned on from the group's dialog.
      await row.locator('button[data-action="edit"]').click();
      await page.locator('#f-carry_to_mall').selectOption('yes');
      await page.locator('#dialog button[type=submit]').click();
      await row.locator('[data-testid="not-carried"]').waitFor({ state: 'detached' });
      const { body: after } = await admin('/tag-groups');
      assert.equal(after.groups.find((g) => g.name === '上海内部评级').carry_to_mall, true);
    });

    test('a Shanghai editor signs in with WeCom (simulated) and sees only the unscoped and Shanghai groups and Shanghai customers, without admin pages', async () => {
      const p = await context.newPage();
      const errors = [];
      p.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
      try {
        await p.goto(`${demo.base}/admin/`);
        // The admin's token is in the other tab only (sessionStorage): this one shows the card.
        await p.locator('#wecom-login').waitFor();
        await p.locator('#wecom-tenant').fill('demo');
        await p.locator('#wecom-login').click();
        // WeCom's (simulated) login page: scanning is picking who signs in.
        await p.locator('a', { hasText: '李销售' }).click();
        await p.locator('#who', { hasText: '李销售' }).waitFor();
        // The departments by name, once the directory has been read.
        await p.locator('#who', { hasText: '上海分公司' }).waitFor();
        for (const admin of ['audit', 'rules', 'operators', 'dead-letters']) {
          assert.equal(await p.locator(`.sidebar a[data-page="${admin}"]`).isVisible(), false, `${admin} is an admin's page`);
        }
        await p.locator('.sidebar a[data-page="library"]').click();
        await p.locator('tr[data-kind="group"][data-name="上海内部评级"]').waitFor();
        await p.locator('tr[data-kind="group"][data-name="会员等级"]').waitFor();
        assert.equal(await p.locator('tr[data-kind="group"][data-name="北京内部评级"]').count(), 0);
        const file = path.join(dir, '18-scoped-view.png');
        await p.screenshot({ path: file });
        shots.push(file);
        if (locale === 'zh-CN') assert.deepEqual(await p.evaluate(englishOnPage, [...LATIN_OK]), [], 'English on the scoped view');

        // Shanghai's customers: those with a relation to sales_li (Alice and Bob, not Carol).
        await p.locator('.sidebar a[data-page="customers"]').click();
        const rows = p.locator('[data-testid="customers"] tbody tr.customer-row');
        await until('the scoped customer list', async () => (await rows.count()) > 0);
        const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.customer).sort());
        assert.ok(ids.includes('wm_alice') && ids.includes('wm_bob') && !ids.includes('wm_carol'), ids.join());
        assert.equal(await p.locator('button[data-action="bulk"]').count(), 0);

        await p.locator('#logout').click();
        await p.locator('#wecom-login').waitFor();
        // Signed out on the server too: the cookie opens nothing any more.
        await until('the session ended', async () => (await p.evaluate(() => fetch('v1/me').then((r) => r.status))) === 401);
        assert.deepEqual(errors, []);
      } finally {
        await p.close();
      }
    });

    test('the language switch changes the whole page at once and is remembered after a reload and a sign-out', async () => {
      await nav('library');
      await page.locator('h1', { hasText: X.library }).waitFor();
      await page.locator(`.topbar .lang-switch button[data-lang="${X.other}"]`).click();
      await page.locator('h1', { hasText: X.other === 'en' ? 'Tag library' : '标签库' }).waitFor();
      assert.equal(await page.evaluate(() => document.documentElement.lang), X.other);
      assert.equal(await page.locator('.sidebar a[data-page="overview"]').textContent(), X.otherOverview);
      assert.equal(await page.evaluate(() => localStorage.getItem('tagsync.lang')), X.other);
      // The page itself is drawn again: a badge speaks the new language too.
      await sideBadge('金卡', 'wecom', 'synced').waitFor();
      assert.equal(await sideBadge('金卡', 'wecom', 'synced').textContent(), EXPECT[X.other === 'en' ? 'en-US' : 'zh-CN'].synced);
      await shot('14-switched-language');

      await page.reload();
      await page.locator('.sidebar a[data-page="overview"]', { hasText: X.otherOverview }).waitFor();
      assert.equal(await page.evaluate(() => document.documentElement.lang), X.other);

      await page.locator('#logout').click();
      await page.locator('#login-form button[type=submit]', { hasText: EXPECT[X.other === 'en' ? 'en-US' : 'zh-CN'].signIn }).waitFor();
      // Back to the browser's language, from the sign-in card.
      await page.locator(`#login .lang-switch button[data-lang="${X.lang}"]`).click();
      await page.locator('#login-form button[type=submit]', { hasText: X.signIn }).waitFor();
      assert.equal(await page.evaluate(() => localStorage.getItem('tagsync.lang')), X.lang);
      await page.locator('#token').fill(TOKEN);
      await page.locator('#login-form button[type=submit]').click();
      // Signed in again on the page it was on.
      await page.locator('h1', { hasText: X.library }).waitFor();
    });

    test('without a saved choice, the first Chinese or English browser language decides, and Chinese is the default', async () => {
      const cases = [
        [['fr-FR', 'en-GB', 'zh-CN'], 'en'],
        [['ja-JP', 'zh-TW', 'en-US'], 'zh-CN'],
        [['fr-FR', 'de-DE'], 'zh-CN'],
        [[], 'zh-CN'],
      ];
      for (const [languages, expected] of cases) {
        const p = await context.newPage();
        try {
          await p.addInitScript((langs) => {
            localStorage.removeItem('tagsync.lang');
            Object.defineProperty(navigator, 'languages', { get: () => langs });
            Object.defineProperty(navigator, 'language', { get: () => langs[0] });
          }, languages);
          await p.goto(`${demo.base}/admin/`);
          await p.locator('.lang-switch button[aria-pressed="true"]').first().waitFor({ state: 'attached' });
          assert.equal(await p.evaluate(() => document.documentElement.lang), expected, `navigator.languages ${JSON.stringify(languages)}`);
        } finally {
          await p.close();
        }
      }
    });

    test('the page logged no errors (scripts, styles, the CSP and the message table all agree)', () => {
      assert.deepEqual(pageErrors, []);
    });
  });
}
