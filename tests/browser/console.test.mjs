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
          if ((m = line.match(/mall sim .*control: (\S+)/))) seen.mallControl = m[1];
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
