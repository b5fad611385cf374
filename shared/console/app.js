// tagsync console: a small single-page app over the admin API (/admin/v1/…). Plain JS, no
// build step. Every element is built with textContent (never innerHTML from data), because
// the page holds the admin token and names come from three systems.
//
// Every word it shows comes from messages.json, in the operator's language: `t('key')` for a
// string, `tn('key', {name: node})` when a value is an element, `label('group', code)` for a
// code the server sends (a state, a side, an audit action) that has a message
// `group.code` or is shown as it is. Keys are literals (tests/browser/i18n.test.mjs checks
// them against the table and looks for English left in this file). Values that come from the
// systems (names, ids, codes, the server's own error text) are marked translate="no".
'use strict';

(() => {
  const TOKEN_KEY = 'tagsync.adminToken';
  const LANG_KEY = 'tagsync.lang';
  // The tenant last signed in to with WeCom, offered again.
  const TENANT_KEY = 'tagsync.wecomTenant';
  // The console's languages, the first is the default.
  const LANGUAGES = ['zh-CN', 'en'];
  // How often the visible page re-reads the API (states change as jobs run).
  const REFRESH_MS = 3000;
  // How often a running sync is polled for its progress.
  const RUN_POLL_MS = 700;

  const state = {
    token: null,
    // An operator signed in with WeCom (what `GET /admin/v1/me` said); the session itself is an
    // HTTP-only cookie the page never sees, writes carry its CSRF token.
    session: null,
    tenants: [],
    tenant: null,
    page: 'overview',
    arg: null,
    gen: 0, // bumped on every navigation: late answers for an old page are dropped
    refresh: null, // the current page's refresh function, called by the timer
    refreshing: false,
    collapsed: new Set(), // library groups the operator folded
    editing: false, // a form on the page is being edited: do not re-render under the user
    loginError: null, // the sign-in card's error, re-rendered when the language changes
  };

  // ---- language -------------------------------------------------------------------------

  const i18n = { lang: LANGUAGES[0], messages: null, plural: null, dates: null };

  // The saved choice wins; else the first of the browser's languages that is Chinese (any
  // zh-*: the table is Simplified Chinese) or English decides; else Chinese.
  function pickLanguage(saved, browser) {
    if (LANGUAGES.includes(saved)) return saved;
    for (const tag of browser || []) {
      const primary = String(tag).toLowerCase().split('-')[0];
      if (primary === 'zh') return 'zh-CN';
      if (primary === 'en') return 'en';
    }
    return LANGUAGES[0];
  }

  function browserLanguages() {
    return navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  }

  function useLanguage(lang) {
    i18n.lang = lang;
    i18n.plural = new Intl.PluralRules(lang);
    // Dates in the browser's own locale (its regional format) when it speaks the console's
    // language, else in the console's language: never one language's dates in the other's page.
    const primary = lang.split('-')[0];
    const locales = browserLanguages().filter((l) => String(l).toLowerCase().split('-')[0] === primary).concat([lang]);
    i18n.dates = new Intl.DateTimeFormat(locales, {
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    document.documentElement.lang = lang;
  }

  const has = (key) => Object.prototype.hasOwnProperty.call(i18n.messages[i18n.lang], key);

  function message(key, vars) {
    if (!has(key)) {
      // tests/browser/i18n.test.mjs keeps this from happening; the browser tests fail on it.
      console.error(`tagsync console: no message ${key} in ${i18n.lang}`);
      return key;
    }
    const m = i18n.messages[i18n.lang][key];
    // Counted messages are {one, other, …} by the language's plural rules (Chinese: other).
    if (typeof m === 'object') return m[i18n.plural.select(Number(vars && vars.count))] ?? m.other;
    return m;
  }

  // A message as parts: `{name}` takes vars.name (a string, a number or a node); `…` in a
  // message is code, shown as such and never interpolated.
  function tn(key, vars) {
    const out = [];
    message(key, vars).split(/(`[^`]*`)/).forEach((piece) => {
      if (piece.startsWith('`') && piece.endsWith('`') && piece.length > 1) {
        out.push(h('code', { translate: 'no' }, piece.slice(1, -1)));
        return;
      }
      for (const part of piece.split(/(\{\w+\})/)) {
        const name = part.startsWith('{') && part.endsWith('}') ? part.slice(1, -1) : null;
        if (name !== null && vars && name in vars) out.push(vars[name] instanceof Node ? vars[name] : String(vars[name]));
        else if (part) out.push(part);
      }
    });
    return out;
  }

  // A message as one string (for attributes, titles, toasts).
  function t(key, vars) {
    return tn(key, vars).map((p) => (p instanceof Node ? p.textContent : p)).join('');
  }

  // A code the server sends, in words when the table knows it, else as it is.
  function label(group, code) {
    const key = `${group}.${code}`;
    return has(key) ? t(key) : String(code);
  }

  // The same as an element: a code the table does not know is shown as code, untranslated.
  function labelNode(group, code) {
    return has(`${group}.${code}`) ? label(group, code) : data('code', null, String(code));
  }

  // The parts of the page that are not built by a page function.
  function translateStatic() {
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const attr of ['title', 'placeholder', 'aria-label']) {
      for (const el of document.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
    }
    document.title = t('app.title');
    append(clear($('#login-hint')), tn('login.hint'));
    const err = $('#login-error');
    clear(err);
    if (state.loginError) append(err, state.loginError());
    for (const slot of document.querySelectorAll('.lang-slot')) {
      clear(slot).append(h('div', { class: 'lang-switch', role: 'group', 'aria-label': t('lang.switch') },
        LANGUAGES.map((l) => h('button', {
          type: 'button', lang: l, translate: 'no', dataset: { lang: l }, 'aria-pressed': String(l === i18n.lang),
          onclick: () => switchLanguage(l),
        }, label('lang', l)))));
    }
  }

  // localStorage may be refused (a locked-down browser): the choice then lasts for this page.
  function savedLanguage() {
    try { return localStorage.getItem(LANG_KEY); } catch { return null; }
  }

  // The operator's choice, kept in this browser; the page is drawn again in it.
  function switchLanguage(lang) {
    if (lang === i18n.lang) return;
    try { localStorage.setItem(LANG_KEY, lang); } catch { /* see savedLanguage */ }
    useLanguage(lang);
    translateStatic();
    if ($('#dialog').open) $('#dialog').close();
    // Notes already shown stay in the language they were written in: they go.
    clear($('#toasts'));
    if (signedIn() && !$('#shell').hidden) route();
  }

  async function loadMessages() {
    const res = await fetch($('#messages').href);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    i18n.messages = await res.json();
  }

  // ---- DOM ------------------------------------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      // Through the CSSOM: the page's CSP forbids style attributes.
      else if (k === 'style') el.style.cssText = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = !!v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  // `children`: a node, a string, or (nested) arrays of them.
  function append(el, children) {
    for (const c of [children].flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  // A value from one of the systems (a name, an id, a code): shown as it is, never translated.
  const data = (tag, cls, value) => h(tag, { class: cls, translate: 'no' }, value);

  function toast(content, kind) {
    const el = h('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), role: 'status', dataset: { at: Date.now() } }, content);
    $('#toasts').append(el);
    // Two at a time: older notes make room.
    const all = document.querySelectorAll('.toast');
    for (let i = 0; i < all.length - 2; i++) all[i].remove();
    setTimeout(() => el.remove(), kind === 'error' ? 7000 : 3500);
  }

  // ---- formatting -----------------------------------------------------------------------

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return i18n.dates.format(d);
  }
  function ago(iso) {
    if (!iso) return t('time.never');
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 5) return t('time.just_now');
    if (s < 60) return t('time.seconds_ago', { count: s });
    if (s < 3600) return t('time.minutes_ago', { count: Math.round(s / 60) });
    if (s < 86400) return t('time.hours_ago', { count: Math.round(s / 3600) });
    return fmtTime(iso);
  }
  function duration(from, to) {
    if (!from) return '—';
    const ms = (to ? new Date(to) : new Date()) - new Date(from);
    if (ms < 1000) return t('time.ms', { count: ms });
    if (ms < 60000) return t('time.seconds', { count: (ms / 1000).toFixed(1) });
    return t('time.minutes_seconds', { minutes: Math.floor(ms / 60000), seconds: Math.round((ms % 60000) / 1000) });
  }

  const STATES = ['synced', 'pending', 'failed', 'read_only'];
  function stateBadge(s) {
    return h('span', { class: 'badge ' + s, title: label('state_help', s) }, label('state', s));
  }

  // ---- API ------------------------------------------------------------------------------

  // `code` is the server's error code (or `network`), `detail` its own words (English: the
  // API's messages are for logs and scripts as much as for this page).
  class ApiError extends Error {
    constructor(status, code, detail) {
      super(detail);
      this.status = status;
      this.code = code;
      this.detail = detail;
    }
  }

  // What went wrong, for the operator: the kind of error in their language, then the detail.
  function problem(e) {
    let what;
    if (e instanceof ApiError) what = has('error.' + e.code) ? label('error', e.code) : t('error.http', { status: e.status });
    else what = t('error.unexpected');
    return e.detail || e.message ? tn('error.with_detail', { what, detail: data('span', null, e.detail || e.message) }) : what;
  }

  const signedIn = () => !!(state.token || state.session);
  // What the caller may do: the admin token and `admin` operators everything; an editor
  // writes within their departments; a viewer only reads (the server decides; the page only
  // leaves out what would be refused).
  const isAdmin = () => !state.session || state.session.role === 'admin';
  const canWrite = () => !state.session || state.session.role !== 'viewer';

  async function api(method, path, body) {
    const headers = {};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    else if (state.session && method !== 'GET') headers['X-CSRF-Token'] = state.session.csrf_token;
    // Every write says it is JSON (the API requires it), even with an empty object for a body.
    if (method !== 'GET') headers['content-type'] = 'application/json';
    if (body === undefined && (method === 'POST' || method === 'PATCH')) body = {};
    let res;
    try {
      res = await fetch('v1' + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'network', e.message);
    }
    const text = await res.text();
    let json = null;
    if (text) {
      try { json = JSON.parse(text); } catch { json = text; }
    }
    if (res.status === 401 && signedIn()) {
      signOut(() => t(state.session ? 'login.session_ended' : 'login.token_refused_again'));
      throw new ApiError(401, 'unauthorized', json && json.error ? json.error.message : '');
    }
    if (!res.ok) {
      const err = json && json.error;
      throw new ApiError(res.status, err ? err.code : 'http_' + res.status, err ? err.message : '');
    }
    return json;
  }
  const tpath = (rest) => `/tenants/${encodeURIComponent(state.tenant)}${rest}`;

  // ---- sign-in and shell ----------------------------------------------------------------

  // `error`: a function giving the message, so it follows a change of language.
  function showLogin(error) {
    $('#shell').hidden = true;
    $('#login').hidden = false;
    state.loginError = error || null;
    const err = clear($('#login-error'));
    err.hidden = !error;
    if (error) append(err, error());
    $('#token').focus();
  }

  function signOut(error) {
    // The session ends on the server too (its cookie is HTTP-only: only the server can drop it).
    if (state.session) {
      fetch('v1/logout', { method: 'POST', headers: { 'content-type': 'application/json', 'X-CSRF-Token': state.session.csrf_token }, body: '{}' })
        .catch(() => { /* it expires by itself */ });
    }
    state.token = null;
    state.session = null;
    showWho();
    sessionStorage.removeItem(TOKEN_KEY);
    state.refresh = null;
    state.gen++;
    showLogin(error);
  }

  async function signIn(token) {
    state.token = token;
    const { tenants } = await api('GET', '/tenants');
    sessionStorage.setItem(TOKEN_KEY, token);
    openShell(tenants);
  }

  // The WeCom sign-in ends on a page of tagsync that comes back here with the session cookie:
  // `me` says who it is (null when no session is open).
  async function resumeSession() {
    const res = await fetch('v1/me', { cache: 'no-store' });
    if (!res.ok) return false;
    const me = await res.json();
    if (me.kind !== 'operator') return false;
    state.session = me;
    const { tenants } = await api('GET', '/tenants');
    openShell(tenants);
    return true;
  }

  function openShell(tenants) {
    state.tenants = tenants;
    state.loginError = null;
    $('#login').hidden = true;
    $('#shell').hidden = false;
    fillTenants();
    showWho();
    route();
  }

  // The scoped view: who is signed in, their role and departments; admin-only pages are left
  // out of the menu for everyone else.
  async function showWho() {
    const who = clear($('#who'));
    const s = state.session;
    who.hidden = !s;
    for (const a of document.querySelectorAll('.sidebar a[data-admin]')) a.hidden = !isAdmin();
    if (!s) return;
    who.append(data('b', null, s.name || s.userid), ' ', h('span', { class: 'badge plain', dataset: { role: s.role } }, label('role', s.role)));
    if (!s.departments.length) return;
    let names = s.departments.map(String);
    try {
      const dir = await api('GET', `/tenants/${encodeURIComponent(s.tenant)}/directory`);
      names = s.departments.map((d) => departmentName(dir, d));
    } catch { /* the ids stand in */ }
    if (state.session === s) who.append(' ', h('span', { class: 'who-scope' }, tn('who.departments', { names: data('span', null, names.join(t('common.list_separator'))) })));
  }
  const departmentName = (dir, id) => (dir.departments.find((d) => d.id === id) || { name: String(id) }).name;

  function fillTenants() {
    const sel = clear($('#tenant-select'));
    for (const x of state.tenants) sel.append(h('option', { value: x.tenant }, x.tenant));
    sel.disabled = state.tenants.length === 0;
  }

  // #/{tenant}/{page}/{arg}
  function parseHash() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    return { tenant: parts[0] || null, page: parts[1] || 'overview', arg: parts.slice(2).join('/') || null };
  }
  function link(page, arg, tenant) {
    const parts = [tenant || state.tenant, page].concat(arg ? [arg] : []);
    return '#/' + parts.map(encodeURIComponent).join('/');
  }
  function go(page, arg) {
    const target = link(page, arg);
    if (location.hash === target) route();
    else location.hash = target;
  }

  const PAGES = {
    overview: pageOverview,
    library: pageLibrary,
    members: pageMembers,
    customers: pageCustomers,
    transfers: pageTransfers,
    rules: pageRules,
    channels: pageChannels,
    sync: pageSync,
    audit: pageAudit,
    'dead-letters': pageDeadLetters,
    operators: pageOperators,
  };
  // Pages of what only an admin may see or do (docs/operators.md); the menu marks them too.
  const ADMIN_PAGES = ['transfers', 'rules', 'channels', 'sync', 'audit', 'dead-letters', 'operators'];

  function route() {
    if (!signedIn()) return;
    const { tenant, page, arg } = parseHash();
    const known = state.tenants.map((x) => x.tenant);
    if (!tenant || !known.includes(tenant) || !PAGES[page] || (ADMIN_PAGES.includes(page) && !isAdmin())) {
      if (known.length) {
        const allowed = PAGES[page] && (isAdmin() || !ADMIN_PAGES.includes(page));
        location.replace(link(allowed ? page : 'overview', null, known.includes(tenant) ? tenant : known[0]));
        return;
      }
    }
    state.tenant = tenant;
    state.page = page;
    state.arg = arg;
    state.refresh = null;
    state.editing = false;
    const gen = ++state.gen;
    $('#tenant-select').value = tenant || '';
    for (const a of document.querySelectorAll('.sidebar a')) {
      a.href = link(a.dataset.page);
      a.classList.toggle('active', a.dataset.page === page);
    }
    // Notes about an earlier page go when the operator moves on (fresh ones stay).
    for (const el of document.querySelectorAll('.toast')) if (Date.now() - Number(el.dataset.at) > 1500) el.remove();
    const main = clear($('#main'));
    if (!known.length) {
      main.append(h('div', { class: 'card empty' }, h('b', {}, t('shell.no_tenants')), tn('shell.no_tenants_help')));
      return;
    }
    PAGES[page](main, arg, gen).catch((e) => showError(main, e, gen));
    refreshDeadCount();
  }

  function showError(main, e, gen) {
    if (gen !== state.gen || e.status === 401) return;
    main.append(h('div', { class: 'form-error', role: 'alert' }, tn('page.load_failed', { problem: h('span', {}, problem(e)) })));
  }

  const current = (gen) => gen === state.gen;

  // The timer: re-reads the visible page unless the operator is in the middle of something.
  async function tick() {
    if (!signedIn() || document.hidden || state.refreshing) return;
    if ($('#dialog').open || state.editing || !state.refresh) return;
    state.refreshing = true;
    const live = $('#live');
    try {
      await state.refresh();
      await refreshDeadCount();
      live.classList.remove('stale');
      live.dataset.i18n = 'live.live';
    } catch (e) {
      live.classList.add('stale');
      live.dataset.i18n = e.status === 0 ? 'live.offline' : 'live.failed';
    } finally {
      live.textContent = t(live.dataset.i18n);
      state.refreshing = false;
    }
  }

  async function refreshDeadCount() {
    if (!state.tenant || !isAdmin()) return;
    try {
      const { dead_letters } = await api('GET', tpath('/dead-letters'));
      const c = $('#dead-count');
      c.hidden = dead_letters.length === 0;
      c.textContent = String(dead_letters.length);
    } catch { /* shown by the page itself */ }
  }

  // ---- shared: the library, names of tags --------------------------------------------------

  async function loadLibrary() {
    const { groups } = await api('GET', tpath('/tag-groups'));
    return groups;
  }
  function tagIndex(groups) {
    const byId = new Map();
    // Side ids too: the audit log shows what each side holds in its own ids.
    const add = (ids, v) => { for (const id of ids) if (id) byId.set(id, v); };
    for (const g of groups) {
      add([g.id, g.wecom_id, g.mall_id], { kind: 'group', name: g.name });
      for (const x of g.tags) add([x.id, x.wecom_id, x.mall_id], { kind: 'tag', name: x.name, group: g.name, groupId: g.id });
    }
    return byId;
  }

  // ---- shared: tag chips and pickers, people, tracked runs ---------------------------------

  // Hub tags as chips (`group / name`), each with its id in the tooltip; an id the library no
  // longer knows is shown as it is.
  function tagChips(ids, idx, empty) {
    if (!ids || !ids.length) return empty === undefined ? h('span', { class: 'muted' }, t('common.none')) : empty;
    return ids.map((id) => {
      const x = idx.get(id);
      return h('span', { class: 'chip' + (x ? '' : ' broken'), translate: 'no', title: t('common.hub_id', { id }), dataset: { tag: id } },
        x ? [h('small', {}, x.group + ' /'), x.name] : id);
    });
  }

  // A compact picker of hub tags: the chosen ones as chips (× takes one off) and a list of the
  // others by group. `value()` gives the chosen ids in the order they were picked; `single`
  // keeps at most one.
  function tagPicker(groups, chosen, { testid, single = false, onChange } = {}) {
    const picked = [...(chosen || [])];
    const idx = tagIndex(groups);
    const el = h('div', { class: 'tag-input', dataset: { testid } });
    function render() {
      clear(el);
      for (const id of picked) {
        const x = idx.get(id);
        el.append(h('span', { class: 'chip', translate: 'no', dataset: { tag: id } }, x ? [h('small', {}, x.group + ' /'), x.name] : id,
          h('button', {
            type: 'button', class: 'chip-x', title: t('picker.remove'), 'aria-label': t('picker.remove'),
            onclick: () => { picked.splice(picked.indexOf(id), 1); render(); if (onChange) onChange(); },
          }, '×')));
      }
      const select = h('select', {
        class: 'picker-add', 'aria-label': t('picker.add'),
        onchange: () => {
          if (!select.value) return;
          if (single) picked.length = 0;
          picked.push(select.value);
          render();
          if (onChange) onChange();
        },
      },
      h('option', { value: '' }, t(single && picked.length ? 'picker.replace' : 'picker.add')),
      groups.map((g) => h('optgroup', { label: g.name, translate: 'no' },
        g.tags.filter((x) => !picked.includes(x.id)).map((x) => h('option', { value: x.id, translate: 'no' }, x.name)))));
      el.append(select);
    }
    render();
    return { el, value: () => [...picked] };
  }

  // The tenant's staff (WeCom userids) as far as the hub knows them: those following a
  // customer in the customer index (its first 200 customers). There is no staff route; an
  // operator can type other userids.
  async function knownStaff() {
    try {
      const { customers } = await api('GET', tpath('/customers?limit=200'));
      return [...new Set(customers.flatMap((c) => c.relations.map((r) => r.userid)))].sort();
    } catch {
      return [];
    }
  }

  // Follows a tracked run (an undo, a bulk run) until it ends: `show(run)` after every read.
  async function followRun(runId, gen, show) {
    for (;;) {
      const run = await api('GET', tpath('/sync/' + encodeURIComponent(runId)));
      if (!current(gen)) return null;
      show(run);
      if (run.status !== 'running') return run;
      await new Promise((r) => setTimeout(r, RUN_POLL_MS));
    }
  }

  // A tracked run as a card: its status, a progress bar (`done` of `total`, indeterminate
  // while the total is unknown), the counts as `[testid, message parts]`, and what follows.
  function trackedRunCard(run, { title, done, total, counts, extra, onCancel }) {
    const running = run.status === 'running';
    // A finished run fills the bar; one stopped early (cancelled, failed) shows how far it got.
    const pct = run.status === 'done' || (!running && !total) ? 100 : (total ? Math.min(100, Math.round((done / total) * 100)) : 0);
    const bar = h('div', {
      class: 'progress' + (running && !total ? ' indeterminate' : '') + (run.status === 'done' ? ' done' : '') +
        (run.status === 'failed' || run.status === 'cancelled' ? ' failed' : ''),
      role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
    }, h('div', { class: 'bar', style: `width:${pct}%` }));
    return h('div', { class: 'card', dataset: { testid: 'tracked-run', status: run.status, run: run.run_id } },
      h('div', { class: 'card-head' },
        h('h2', {}, title),
        h('span', { class: 'badge ' + run.status }, labelNode('run_status', run.status)),
        h('span', { class: 'spacer' }),
        running && onCancel ? h('button', { class: 'btn btn-sm', dataset: { action: 'cancel-run' }, onclick: onCancel }, t('run.cancel')) : null,
        data('span', 'id', run.run_id)),
      bar,
      h('div', { class: 'run-meta' },
        counts.map(([testid, parts]) => h('span', { dataset: { testid } }, parts)),
        h('span', {}, tn('sync.started', { at: h('b', {}, fmtTime(run.started_at)) })),
        h('span', {}, tn(running ? 'sync.running_for' : 'sync.took', { time: h('b', {}, duration(run.started_at, run.finished_at)) }))),
      run.error ? h('p', { class: 'form-error' }, data('span', null, run.error)) : null,
      extra || null);
  }

  // ---- dialogs --------------------------------------------------------------------------

  // A form in the modal dialog. `fields`: {name, label, type: text|number|textarea|select,
  // value, hint, options: [{value, label}], required}. `onSubmit(values)` may throw: the
  // problem is shown in the dialog and it stays open.
  function openDialog({ title, fields = [], note, message, submit, danger = false, onSubmit }) {
    const dlg = $('#dialog');
    clear(dlg);
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const inputs = {};
    const form = h('form', { method: 'dialog', novalidate: true },
      h('h2', {}, title),
      message ? h('p', {}, message) : null,
      fields.map((f) => {
        const id = 'f-' + f.name;
        let input;
        if (f.type === 'textarea') {
          input = h('textarea', { id, name: f.name, rows: 4, placeholder: f.placeholder || '' });
          input.value = f.value || '';
        } else if (f.type === 'select' || f.type === 'multiselect') {
          const multiple = f.type === 'multiselect';
          const picked = (v) => (multiple ? (f.value || []).includes(v) : v === f.value);
          input = h('select', { id, name: f.name, translate: 'no', multiple, size: multiple ? Math.min(6, Math.max(3, f.options.length)) : null },
            f.options.map((o) => h('option', { value: o.value, selected: picked(o.value) }, o.label)));
        } else {
          input = h('input', {
            id, name: f.name, type: f.type || 'text', value: f.value ?? '', required: !!f.required,
            maxlength: f.type === 'number' ? null : 30, min: f.type === 'number' ? 0 : null,
            placeholder: f.placeholder || '', autocomplete: 'off', spellcheck: 'false',
          });
        }
        inputs[f.name] = input;
        return [h('label', { for: id }, f.label), input, f.hint ? h('div', { class: 'field-hint' }, f.hint) : null];
      }),
      note ? h('div', { class: 'note' }, note) : null,
      error,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'btn', onclick: () => dlg.close() }, t('common.cancel')),
        h('button', { type: 'submit', class: 'btn ' + (danger ? 'btn-danger' : 'btn-primary') }, submit || t('common.save'))));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.multiple ? Array.from(el.selectedOptions, (o) => o.value) : el.value;
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      error.hidden = true;
      try {
        await onSubmit(values);
        dlg.close();
      } catch (e) {
        append(clear(error), problem(e));
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    dlg.append(form);
    dlg.showModal();
    const first = form.querySelector('input, textarea, select');
    if (first) first.focus();
  }

  function confirmDialog(opts) {
    openDialog({ ...opts, fields: [] });
  }

  // ---- page: overview -------------------------------------------------------------------

  const SWITCHES = [
    ['tags_enabled', () => t('switch.tags_enabled'), () => t('switch.tags_enabled_help')],
    ['auto_sync', () => t('switch.auto_sync'), () => t('switch.auto_sync_help')],
    ['member_sync', () => t('switch.member_sync'), () => t('switch.member_sync_help')],
  ];

  async function pageOverview(main, _arg, gen) {
    const [tenant, status] = await Promise.all([api('GET', tpath('')), api('GET', tpath('/status'))]);
    if (!current(gen)) return;
    const switches = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, t('overview.switches'))),
      SWITCHES.map(([key, name, help]) => {
        const input = h('input', { type: 'checkbox', role: 'switch', 'aria-label': name(), checked: tenant.settings[key], dataset: { setting: key }, disabled: !isAdmin() });
        input.addEventListener('change', async () => {
          input.disabled = true;
          try {
            const after = await api('PATCH', tpath('/settings'), { [key]: input.checked });
            input.checked = after[key];
            toast(t(after[key] ? 'overview.switch_on' : 'overview.switch_off', { name: name() }));
          } catch (e) {
            input.checked = !input.checked;
            toast(problem(e), 'error');
          } finally {
            input.disabled = false;
          }
        });
        return h('div', { class: 'switch-row' },
          h('div', { class: 'label' }, h('b', {}, name()), h('span', {}, help())),
          h('label', { class: 'toggle' }, input, h('span', { class: 'track' })));
      }));

    const queue = h('div', { class: 'card' });
    const renderQueue = (s) => {
      clear(queue).append(
        h('div', { class: 'card-head' }, h('h2', {}, t('overview.queue')), h('span', { class: 'spacer' }),
          h('span', { class: 'muted' }, t(s.queue.scope === 'deployment' ? 'overview.queue_scope' : 'overview.queue_scope_tenant'))),
        h('div', { class: 'stats' },
          h('div', { class: 'stat' }, h('b', {}, s.queue.pending), h('span', {}, t('overview.pending'))),
          h('div', { class: 'stat' }, h('b', {}, s.queue.in_flight), h('span', {}, t('overview.in_flight'))),
          h('div', { class: 'stat' + (s.queue.dead ? ' alert' : '') }, h('b', {}, s.queue.dead),
            h('span', {}, s.queue.dead ? h('a', { href: link('dead-letters') }, t('overview.dead')) : t('overview.dead')))),
        h('dl', { class: 'facts', style: 'margin-top:14px' },
          h('dt', {}, t('overview.last_event')), h('dd', { title: fmtTime(s.last_event_at) }, ago(s.last_event_at)),
          h('dt', {}, t('overview.last_run')),
          h('dd', {}, s.last_run
            ? [h('a', { href: link('sync', s.last_run.run_id) }, labelNode('scope', s.last_run.scope)), ' ',
              h('span', { class: 'badge ' + s.last_run.status }, labelNode('run_status', s.last_run.status)), ' ',
              h('span', { class: 'muted' }, ago(s.last_run.started_at))]
            : h('span', { class: 'muted' }, t('overview.no_run')))));
    };
    renderQueue(status);

    const connection = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, t('overview.connection'))),
      h('dl', { class: 'facts' },
        h('dt', {}, t('overview.corp')), h('dd', {}, data('span', 'mono', tenant.corp_id)),
        h('dt', {}, t('overview.app')), h('dd', {}, tn('overview.agent_id', { id: data('span', 'mono', tenant.agent_id) })),
        h('dt', {}, t('overview.mall_api')), h('dd', {}, data('span', 'mono', tenant.mall_api_base)),
        h('dt', {}, t('overview.registered')), h('dd', { dataset: { testid: 'registered' } }, fmtTime(tenant.created_at)),
        h('dt', {}, t('overview.secrets')), h('dd', { class: 'muted' }, t('overview.secrets_hidden'))));

    const actions = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, t('nav.sync'))),
      h('p', { class: 'muted' }, t('overview.sync_lead')),
      h('div', { class: 'inline-form' },
        h('button', { class: 'btn btn-primary', onclick: () => startRun('library') }, label('scope', 'library')),
        h('button', { class: 'btn', onclick: () => startRun('members') }, label('scope', 'members')),
        h('a', { href: link('sync'), style: 'margin-left:8px' }, t('overview.runs_link'))));

    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.overview')),
        h('span', { class: 'muted' }, tn('overview.tenant', { tenant: data('b', null, state.tenant) }))),
      h('div', { class: 'grid-2' }, switches, queue, actions, connection),
    ]);
    state.refresh = async () => {
      const s = await api('GET', tpath('/status'));
      if (current(gen)) renderQueue(s);
    };
  }

  // ---- page: tag library ----------------------------------------------------------------

  async function pageLibrary(main, _arg, gen) {
    // The directory names the departments of scoped groups (ids stand in when it cannot be read).
    let [groups, dir] = await Promise.all([loadLibrary(), api('GET', tpath('/directory')).catch(() => null)]);
    if (!current(gen)) return;
    const departments = dir ? dir.departments : [];
    let filter = '';
    const summary = h('span', { class: 'summary' });
    const tbody = h('tbody');
    const search = h('input', {
      type: 'search', class: 'search', placeholder: t('library.filter'), 'aria-label': t('library.filter'),
      oninput: () => { filter = search.value.trim().toLowerCase(); render(); },
    });
    append(main, [
      h('div', { class: 'page-head' },
        h('h1', {}, t('nav.library')), summary, h('span', { class: 'spacer' }), search,
        canWrite() ? h('button', { class: 'btn btn-primary', dataset: { action: 'new-group' }, onclick: () => newGroup() }, t('library.new_group')) : null),
      h('p', { class: 'page-sub' }, t('library.lead')),
      h('div', { class: 'legend' }, t('library.states'), STATES.map(stateBadge)),
      h('div', { class: 'card flush', style: 'margin-top:10px' },
        h('table', { class: 'tree' },
          h('thead', {}, h('tr', {},
            h('th', { class: 'col-name' }, t('library.name')), h('th', { class: 'num col-order' }, t('library.order')),
            h('th', { class: 'col-side' }, label('side', 'wecom')), h('th', { class: 'col-side' }, label('side', 'mall')),
            h('th', { class: 'col-actions' }, ''))),
          tbody)),
    ]);

    const sideCell = (obj, side) => {
      const s = obj.sync[side];
      const id = obj[side + '_id'];
      const err = obj.errors && obj.errors[side];
      return h('td', { dataset: { side } },
        h('div', { class: 'state' },
          h('div', { class: 'line' }, stateBadge(s),
            id
              ? h('span', { class: 'id', translate: 'no', title: t('library.side_id', { side: label('side', side), id }) }, id)
              : h('span', { class: 'id', title: t('library.no_id_help', { side: label('side', side) }) }, t('library.no_id'))),
          err ? data('span', 'error-text', err) : null));
    };

    function render() {
      let objects = 0;
      const counts = { synced: 0, pending: 0, failed: 0, read_only: 0 };
      const rows = [];
      const visible = groups.filter((g) => !filter || g.name.toLowerCase().includes(filter) ||
        g.tags.some((x) => x.name.toLowerCase().includes(filter)));
      groups.forEach((g, gi) => {
        for (const o of [g, ...g.tags]) {
          objects++;
          counts[o.sync.wecom] = (counts[o.sync.wecom] || 0) + 1;
          counts[o.sync.mall] = (counts[o.sync.mall] || 0) + 1;
        }
        if (!visible.includes(g)) return;
        const open = !state.collapsed.has(g.id) || !!filter;
        rows.push(h('tr', { class: 'group-row', dataset: { kind: 'group', id: g.id, name: g.name } },
          h('td', { class: 'name', title: t('common.hub_id', { id: g.id }) },
            h('button', {
              class: 'caret', 'aria-label': t(open ? 'library.fold' : 'library.unfold'), 'aria-expanded': String(open),
              onclick: () => { if (open) state.collapsed.add(g.id); else state.collapsed.delete(g.id); render(); },
            }, open ? '▼' : '▶'),
            data('span', null, g.name), h('span', { class: 'tag-count' }, t('count.tags', { count: g.tags.length })),
            g.scope ? h('span', { class: 'chip scope', dataset: { testid: 'scope' }, title: t('library.scope_help') }, tn('library.scope_chip', { range: data('span', null, rangeText(g.scope)) })) : null,
            g.scope && !g.carry_to_mall ? h('span', { class: 'chip', dataset: { testid: 'not-carried' }, title: t('library.not_carried_help') }, t('library.not_carried')) : null),
          h('td', { class: 'num' }, g.order),
          sideCell(g, 'wecom'), sideCell(g, 'mall'),
          !canWrite() ? h('td', {}) : h('td', { class: 'actions' },
            h('button', { class: 'icon-btn', dataset: { action: 'new-tag' }, title: t('library.new_tag_help'), onclick: () => newTag(g) }, t('library.new_tag')),
            h('button', { class: 'icon-btn', title: t('library.up'), 'aria-label': t('library.group_up'), disabled: gi === 0, onclick: () => swap(groups, gi, gi - 1, 'tag-groups') }, '↑'),
            h('button', { class: 'icon-btn', title: t('library.down'), 'aria-label': t('library.group_down'), disabled: gi === groups.length - 1, onclick: () => swap(groups, gi, gi + 1, 'tag-groups') }, '↓'),
            h('button', { class: 'icon-btn', dataset: { action: 'edit' }, onclick: () => editGroup(g) }, t('common.edit')),
            h('button', { class: 'icon-btn danger', dataset: { action: 'delete' }, onclick: () => deleteGroup(g) }, t('common.delete')))));
        if (!open) return;
        g.tags.forEach((x, ti) => {
          if (filter && !g.name.toLowerCase().includes(filter) && !x.name.toLowerCase().includes(filter)) return;
          rows.push(h('tr', { class: 'tag-row', dataset: { kind: 'tag', id: x.id, name: x.name, group: g.name } },
            h('td', { class: 'name', title: t('common.hub_id', { id: x.id }) }, data('span', null, x.name)),
            h('td', { class: 'num' }, x.order),
            sideCell(x, 'wecom'), sideCell(x, 'mall'),
            !canWrite() ? h('td', {}) : h('td', { class: 'actions' },
              h('button', { class: 'icon-btn', title: t('library.up'), 'aria-label': t('library.tag_up'), disabled: ti === 0, onclick: () => swap(g.tags, ti, ti - 1, 'tags') }, '↑'),
              h('button', { class: 'icon-btn', title: t('library.down'), 'aria-label': t('library.tag_down'), disabled: ti === g.tags.length - 1, onclick: () => swap(g.tags, ti, ti + 1, 'tags') }, '↓'),
              h('button', { class: 'icon-btn', dataset: { action: 'edit' }, onclick: () => editTag(g, x) }, t('common.edit')),
              h('button', { class: 'icon-btn danger', dataset: { action: 'delete' }, onclick: () => deleteTag(x) }, t('common.delete')))));
        });
      });
      clear(tbody).append(...rows);
      if (!groups.length) {
        tbody.append(h('tr', {}, h('td', { colspan: 5 },
          h('div', { class: 'empty' }, h('b', {}, t('library.empty')), t('library.empty_help')))));
      }
      const tags = groups.reduce((n, g) => n + g.tags.length, 0);
      const problems = [];
      if (counts.pending) problems.push(h('span', {}, tn('library.summary_pending', { count: h('b', {}, counts.pending) })));
      if (counts.failed) problems.push(h('span', {}, tn('library.summary_failed', { count: h('b', {}, counts.failed) })));
      append(clear(summary), [
        t('count.groups', { count: groups.length }), ' · ', t('count.tags', { count: tags }),
        objects === 0 ? '' : [' · ', problems.length ? problems.flatMap((p, i) => (i ? [t('common.list_separator'), p] : [p])) : t('library.summary_ok')],
      ]);
    }

    async function reload() {
      const fresh = await loadLibrary();
      if (!current(gen)) return;
      groups = fresh;
      render();
    }
    function flash(id) {
      const row = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
      if (row) { row.classList.add('flash'); row.scrollIntoView({ block: 'nearest' }); }
    }
    const optOrder = (v) => (v === '' || v === undefined ? undefined : Number(v));
    const orderField = (value) => ({ name: 'order', label: t('library.order'), type: 'number', value, hint: value === undefined ? t('library.order_hint') : null });
    const quoted = (name) => data('span', null, name);
    // A scoped group's range in words: its departments (by name) and staff.
    function rangeText(scope) {
      const parts = scope.departments.map((d) => (departments.find((x) => x.id === d) || { name: String(d) }).name).concat(scope.users);
      return parts.join(t('common.list_separator')) + (scope.include_sub ? t('library.with_sub') : '');
    }
    // The scope fields of the group dialogs: departments (none: unscoped, everyone's), whether
    // sub-departments are included, and whether the group is carried to the mall.
    function scopeFields(g) {
      const sc = g && g.scope;
      return [
        { name: 'departments', label: t('library.scope'), type: 'multiselect', value: sc ? sc.departments.map(String) : [],
          options: departments.map((d) => ({ value: String(d.id), label: d.name })), hint: t(g ? 'library.scope_edit_hint' : 'library.scope_hint') },
        { name: 'include_sub', label: t('library.include_sub'), type: 'select', value: sc && sc.include_sub ? 'yes' : 'no',
          options: [{ value: 'no', label: t('common.no') }, { value: 'yes', label: t('common.yes') }] },
        { name: 'carry_to_mall', label: t('library.carry_to_mall'), type: 'select', value: !g || g.carry_to_mall ? 'yes' : 'no',
          options: [{ value: 'yes', label: t('library.carried') }, { value: 'no', label: t('library.not_carried') }], hint: t('library.carry_hint') },
      ];
    }

    function newGroup() {
      openDialog({
        title: t('library.new_group_title'),
        fields: [
          { name: 'name', label: t('library.name'), required: true, placeholder: t('library.group_name_example') },
          orderField(),
          { name: 'tags', label: t('library.tags'), type: 'textarea', placeholder: t('library.tags_placeholder'), hint: t('library.tags_hint') },
          ...(departments.length ? scopeFields(null) : []),
        ],
        submit: t('library.create_group'),
        onSubmit: async (v) => {
          const tags = v.tags.split('\n').map((s) => s.trim()).filter(Boolean).map((name) => ({ name }));
          const body = { name: v.name.trim(), order: optOrder(v.order), tags };
          if (v.departments && v.departments.length) {
            body.scope = { departments: v.departments.map(Number), include_sub: v.include_sub === 'yes' };
            body.carry_to_mall = v.carry_to_mall === 'yes';
          }
          const g = await api('POST', tpath('/tag-groups'), body);
          toast(tn('library.group_created', { name: quoted(g.name) }));
          await reload();
          flash(g.id);
        },
      });
    }
    function newTag(g) {
      openDialog({
        title: tn('library.new_tag_title', { group: quoted(g.name) }),
        fields: [
          { name: 'name', label: t('library.name'), required: true },
          orderField(),
        ],
        submit: t('library.create_tag'),
        onSubmit: async (v) => {
          const x = await api('POST', tpath('/tags'), { group_id: g.id, name: v.name.trim(), order: optOrder(v.order) });
          toast(tn('library.tag_created', { name: quoted(x.name) }));
          state.collapsed.delete(g.id);
          await reload();
          flash(x.id);
        },
      });
    }
    function changed(v, obj) {
      const patch = {};
      if (v.name.trim() !== obj.name) patch.name = v.name.trim();
      if (v.order !== '' && Number(v.order) !== obj.order) patch.order = Number(v.order);
      return patch;
    }
    const readOnlyNote = (obj) => (obj.sync.wecom === 'read_only' ? t('library.read_only_note') : null);
    function editGroup(g) {
      openDialog({
        title: t('library.edit_group'),
        fields: [
          { name: 'name', label: t('library.name'), value: g.name, required: true },
          orderField(g.order),
          // Only a scoped group has a range and a mall switch (an unscoped one cannot become scoped).
          ...(g.scope ? scopeFields(g) : []),
        ],
        note: readOnlyNote(g),
        onSubmit: async (v) => {
          const patch = changed(v, g);
          if (g.scope) {
            const ids = v.departments.map(Number);
            const sub = v.include_sub === 'yes';
            if (ids.join() !== g.scope.departments.join() || sub !== g.scope.include_sub) patch.scope = { departments: ids, include_sub: sub };
            if ((v.carry_to_mall === 'yes') !== g.carry_to_mall) patch.carry_to_mall = v.carry_to_mall === 'yes';
          }
          if (!Object.keys(patch).length) return;
          await api('PATCH', tpath('/tag-groups/' + encodeURIComponent(g.id)), patch);
          toast(t('library.group_saved'));
          await reload();
          flash(g.id);
        },
      });
    }
    function editTag(g, x) {
      openDialog({
        title: t('library.edit_tag'),
        fields: [
          { name: 'name', label: t('library.name'), value: x.name, required: true },
          orderField(x.order),
          { name: 'group_id', label: t('library.group'), type: 'select', value: g.id, options: groups.map((o) => ({ value: o.id, label: o.name })),
            hint: t('library.move_hint') },
        ],
        note: readOnlyNote(x),
        onSubmit: async (v) => {
          const patch = changed(v, x);
          if (v.group_id !== g.id) patch.group_id = v.group_id;
          if (!Object.keys(patch).length) return;
          await api('PATCH', tpath('/tags/' + encodeURIComponent(x.id)), patch);
          toast(t(patch.group_id ? 'library.tag_moved' : 'library.tag_saved'));
          if (patch.group_id) state.collapsed.delete(patch.group_id);
          await reload();
          flash(x.id);
        },
      });
    }
    function deleteGroup(g) {
      confirmDialog({
        title: tn('library.delete_group_title', { name: quoted(g.name) }),
        message: t('library.delete_group_message', { count: g.tags.length }),
        submit: t('library.delete_group'), danger: true,
        onSubmit: async () => {
          await api('DELETE', tpath('/tag-groups/' + encodeURIComponent(g.id)));
          toast(tn('library.group_deleted', { name: quoted(g.name) }));
          await reload();
        },
      });
    }
    function deleteTag(x) {
      confirmDialog({
        title: tn('library.delete_tag_title', { name: quoted(x.name) }),
        message: t('library.delete_tag_message'),
        submit: t('library.delete_tag'), danger: true,
        onSubmit: async () => {
          await api('DELETE', tpath('/tags/' + encodeURIComponent(x.id)));
          toast(tn('library.tag_deleted', { name: quoted(x.name) }));
          await reload();
        },
      });
    }
    // Up and down swap orders with the neighbour (equal orders are pulled apart by one).
    async function swap(list, i, j, kind) {
      const a = list[i];
      const b = list[j];
      const path = (o) => tpath(`/${kind}/${encodeURIComponent(o.id)}`);
      try {
        if (a.order === b.order) {
          await api('PATCH', path(a), { order: j < i ? b.order + 1 : Math.max(0, b.order - 1) });
        } else {
          await api('PATCH', path(a), { order: b.order });
          await api('PATCH', path(b), { order: a.order });
        }
        await reload();
        flash(a.id);
      } catch (e) {
        toast(problem(e), 'error');
      }
    }

    render();
    state.refresh = reload;
  }

  // ---- page: operators (roles) ---------------------------------------------------------------

  // The staff an admin gave a role: admin, or editor / viewer of departments (docs/operators.md).
  async function pageOperators(main, _arg, gen) {
    let [{ operators }, dir] = await Promise.all([api('GET', tpath('/operators')), api('GET', tpath('/directory'))]);
    if (!current(gen)) return;
    const tbody = h('tbody');
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.operators')), h('span', { class: 'spacer' }),
        h('button', { class: 'btn btn-primary', dataset: { action: 'assign-role' }, onclick: () => assign(null) }, t('operators.assign'))),
      h('p', { class: 'page-sub' }, t('operators.lead')),
      h('div', { class: 'card flush' },
        h('table', { dataset: { testid: 'operators' } },
          h('thead', {}, h('tr', {}, h('th', {}, t('operators.staff')), h('th', {}, t('operators.role')),
            h('th', {}, t('operators.departments')), h('th', {}, t('operators.assigned')), h('th', {}, ''))),
          tbody)),
    ]);
    const deptNames = (ids) => ids.map((d) => departmentName(dir, d)).join(t('common.list_separator'));

    function render() {
      clear(tbody).append(...operators.map((o) => h('tr', { dataset: { userid: o.userid, role: o.role } },
        h('td', {}, data('b', null, o.name || o.userid), ' ', data('code', null, o.userid)),
        h('td', {}, h('span', { class: 'badge plain' }, label('role', o.role))),
        h('td', {}, o.departments.length ? data('span', null, deptNames(o.departments)) : t('operators.all_departments')),
        h('td', {}, fmtTime(o.assigned_at), ' ', data('span', 'muted', o.assigned_by)),
        h('td', { class: 'actions' },
          h('button', { class: 'icon-btn', dataset: { action: 'edit' }, onclick: () => assign(o) }, t('common.edit')),
          h('button', { class: 'icon-btn danger', dataset: { action: 'delete' }, onclick: () => remove(o) }, t('common.delete'))))));
      if (!operators.length) tbody.append(h('tr', {}, h('td', { colspan: 5 }, h('div', { class: 'empty' }, h('b', {}, t('operators.empty')), t('operators.empty_help')))));
    }
    async function reload() {
      const [fresh, d] = await Promise.all([api('GET', tpath('/operators')), api('GET', tpath('/directory'))]);
      if (!current(gen)) return;
      operators = fresh.operators;
      dir = d;
      render();
    }
    function assign(o) {
      openDialog({
        title: o ? tn('operators.edit_title', { name: data('span', null, o.name || o.userid) }) : t('operators.assign'),
        fields: [
          o ? null : { name: 'userid', label: t('operators.staff'), type: 'select', value: '',
            options: dir.staff.map((m) => ({ value: m.userid, label: `${m.name} (${m.userid})` })) },
          { name: 'role', label: t('operators.role'), type: 'select', value: o ? o.role : 'editor',
            options: ['admin', 'editor', 'viewer'].map((r) => ({ value: r, label: label('role', r) })), hint: t('operators.role_hint') },
          { name: 'departments', label: t('operators.departments'), type: 'multiselect', value: o ? o.departments.map(String) : [],
            options: dir.departments.map((d) => ({ value: String(d.id), label: d.name })), hint: t('operators.departments_hint') },
        ].filter(Boolean),
        submit: t('operators.save'),
        onSubmit: async (v) => {
          const userid = o ? o.userid : v.userid;
          const departments = v.role === 'admin' ? [] : v.departments.map(Number);
          await api('PUT', tpath('/operators/' + encodeURIComponent(userid)), { role: v.role, departments });
          toast(tn('operators.saved', { name: data('span', null, userid) }));
          await reload();
        },
      });
    }
    function remove(o) {
      confirmDialog({
        title: tn('operators.remove_title', { name: data('span', null, o.name || o.userid) }),
        message: t('operators.remove_message'),
        submit: t('operators.remove'), danger: true,
        onSubmit: async () => {
          await api('DELETE', tpath('/operators/' + encodeURIComponent(o.userid)));
          toast(tn('operators.removed', { name: data('span', null, o.userid) }));
          await reload();
        },
      });
    }

    render();
    state.refresh = reload;
  }

  // ---- page: members --------------------------------------------------------------------

  async function pageMembers(main, arg, gen) {
    const input = h('input', { type: 'text', name: 'member', placeholder: t('members.placeholder'), value: arg || '', 'aria-label': t('members.id'), spellcheck: 'false' });
    const result = h('div', { class: 'stack' });
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.members'))),
      h('p', { class: 'page-sub' }, t('members.lead')),
      h('form', {
        class: 'card inline-form', onsubmit: (ev) => {
          ev.preventDefault();
          const id = input.value.trim();
          if (id) go('members', id);
        },
      }, input, h('button', { class: 'btn btn-primary', type: 'submit', dataset: { action: 'look-up' } }, t('members.look_up'))),
      result,
    ]);
    if (!arg) {
      input.focus();
      return;
    }
    let groups = await loadLibrary();
    let member;
    try {
      member = await api('GET', tpath('/members/' + encodeURIComponent(arg)));
    } catch (e) {
      if (e.status !== 404) throw e;
      if (current(gen)) {
        result.append(h('div', { class: 'card empty' },
          h('b', {}, tn('members.not_found', { id: data('span', null, arg) })), t('members.not_found_help')));
      }
      return;
    }
    if (!current(gen)) return;

    const names = () => tagIndex(groups);
    const chips = (ids) => {
      const idx = names();
      if (!ids.length) return h('span', { class: 'muted' }, t('members.no_tags'));
      return ids.map((id) => {
        const x = idx.get(id);
        return h('span', { class: 'chip', translate: 'no', title: t('common.hub_id', { id }) }, x ? [h('small', {}, x.group + ' /'), x.name] : id);
      });
    };

    function render() {
      clear(result);
      const view = h('div', { class: 'card' },
        h('div', { class: 'member-head' },
          h('h2', {}, tn('members.member', { id: data('span', 'mono member-id', member.member_id) })),
          member.external_userid
            ? h('span', { class: 'badge plain' }, tn('members.bound', { id: data('span', 'mono', member.external_userid) }))
            : h('span', { class: 'badge plain' }, t('members.unbound')),
          h('span', { class: 'spacer', style: 'flex:1' }),
          h('button', { class: 'btn btn-primary', dataset: { action: 'edit-tags' }, onclick: edit }, t('members.edit_tags'))),
        h('h3', { style: 'margin-top:16px' }, t('members.tags')),
        h('div', { dataset: { testid: 'member-tags' } }, chips(member.tag_ids)));
      const relations = h('div', { class: 'card flush' },
        h('div', { style: 'padding:14px 20px 6px' }, h('h2', {}, t('members.relations'))),
        member.relations.length
          ? h('table', { dataset: { testid: 'relations' } },
            h('thead', {}, h('tr', {}, h('th', {}, t('members.salesperson')), h('th', {}, t('members.customer_tags')))),
            h('tbody', {}, member.relations.map((r) => h('tr', {}, data('td', 'mono', r.userid), h('td', {}, chips(r.tag_ids))))))
          : h('div', { class: 'empty' }, t(member.external_userid ? 'members.no_relations' : 'members.no_relations_unbound')));
      result.append(view, relations);
    }

    function edit() {
      state.editing = true;
      const had = new Set(member.tag_ids);
      const form = h('form', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, tn('members.edit_title', { id: data('span', 'mono', member.member_id) }))),
        h('div', { class: 'tag-picker' },
          groups.map((g) => h('fieldset', {}, data('legend', null, g.name),
            g.tags.length ? g.tags.map((x) => h('label', { translate: 'no' },
              h('input', { type: 'checkbox', value: x.id, checked: had.has(x.id) }), x.name)) : h('span', { class: 'muted' }, t('members.no_tags'))))),
        h('div', { class: 'buttons', style: 'display:flex;gap:8px;justify-content:flex-end;margin-top:16px' },
          h('button', { type: 'button', class: 'btn', onclick: () => { state.editing = false; render(); } }, t('common.cancel')),
          h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'save-tags' } }, t('members.save_tags'))));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const checked = new Set([...form.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value));
        const add = [...checked].filter((id) => !had.has(id));
        const remove = [...had].filter((id) => !checked.has(id));
        state.editing = false;
        if (!add.length && !remove.length) return render();
        try {
          await api('POST', tpath(`/members/${encodeURIComponent(member.member_id)}/tags`), { add, remove });
          toast(t('members.saved', { added: add.length, removed: remove.length }));
          await reload();
        } catch (e) {
          toast(problem(e), 'error');
          render();
        }
      });
      clear(result).append(form);
    }

    async function reload() {
      const [g, m] = await Promise.all([loadLibrary(), api('GET', tpath('/members/' + encodeURIComponent(arg)))]);
      if (!current(gen) || state.editing) return;
      groups = g;
      member = m;
      render();
    }

    render();
    state.refresh = reload;
  }

  // ---- page: manual sync ----------------------------------------------------------------

  // Starts a run and shows it; 409 (a run is going) shows the running one instead.
  async function startRun(scope) {
    try {
      const { run_id } = await api('POST', tpath('/sync'), { scope });
      go('sync', run_id);
    } catch (e) {
      if (e.status === 409) {
        toast(t('sync.already_running'));
        const running = await runningRun();
        go('sync', running ? running.run_id : null);
      } else if (e.status === 501) {
        toast(t('sync.not_offered_short'), 'error');
      } else {
        toast(problem(e), 'error');
      }
    }
  }

  async function listRuns() {
    try {
      const body = await api('GET', tpath('/sync'));
      return body.runs || [];
    } catch (e) {
      if ([404, 405, 501].includes(e.status)) return null; // a server without the run list
      throw e;
    }
  }
  async function runningRun() {
    const runs = await listRuns();
    return runs && runs.find((r) => r.status === 'running');
  }

  // Counter names are `{what}.{how}.{side}` (e.g. `tags.renamed.wecom`), `{what}.{how}`, or a
  // name of their own (`firings_undone`, worded under `counter.key.`). A name the table does
  // not fully know is still readable: the parts it knows in words, the others as the code
  // they are (untranslated), the whole name in the row's title.
  function counterLabel(key) {
    if (has('counter.key.' + key)) return t('counter.key.' + key);
    const [what, how, side, ...rest] = String(key).split('.');
    const known = has('counter.what.' + what) && has('counter.how.' + how) && !rest.length &&
      (side === undefined || has('counter.side.' + side));
    if (known) {
      const words = { what: t('counter.what.' + what), how: t('counter.how.' + how) };
      if (side === undefined) return t('counter.phrase', words);
      return t('counter.phrase_side', { ...words, side: t('counter.side.' + side) });
    }
    const part = (word, code) => (word === null ? data('span', 'mono', code) : word);
    const parts = [
      part(has('counter.what.' + what) ? t('counter.what.' + what) : null, what),
      how === undefined ? null : part(has('counter.how.' + how) ? t('counter.how.' + how) : null, how),
      side === undefined ? null : part(has('counter.side.' + side) ? t('counter.side.' + side) : null, side),
      ...rest.map((r) => data('span', 'mono', r)),
    ].filter((p) => p !== null);
    return parts.flatMap((p, i) => (i ? [' · ', p] : [p]));
  }

  // The report: what differed, by side, and what the run changed, by side (a rename found in
  // the mall is repaired in WeCom and the hub), as two tables.
  function reportTable(run) {
    const num = (v) => Number(v) || 0;
    const table = (title, counts, testid) => {
      const keys = Object.keys(counts || {}).sort();
      const total = keys.reduce((n, k) => n + num(counts[k]), 0);
      return h('div', {},
        h('table', { class: 'report', dataset: { testid } },
          h('thead', {}, h('tr', {}, h('th', {}, title), h('th', { class: 'num' }, String(total)))),
          h('tbody', {}, keys.length
            ? keys.map((k) => h('tr', { dataset: { counter: k } }, h('td', { title: k }, counterLabel(k)), h('td', { class: 'num' }, num(counts[k]))))
            : h('tr', {}, h('td', { class: 'muted', colspan: 2 }, t('common.none'))))));
    };
    const found = Object.keys(run.drift || {}).length;
    const repaired = Object.keys(run.repaired || {}).length;
    if (!found && !repaired) {
      return h('div', { class: 'empty', dataset: { testid: 'run-report' } }, run.status === 'running'
        ? t('sync.nothing_yet')
        : [h('b', {}, t('sync.no_drift')), t('sync.no_drift_help')]);
    }
    return h('div', { class: 'report-grid', dataset: { testid: 'run-report' } },
      table(t('sync.drift'), run.drift, 'drift'),
      table(t('sync.repaired'), run.repaired, 'repaired'));
  }

  // What the run left alone and why: counts of skips, and matches it would not guess (the
  // server's own words).
  function skippedList(run) {
    const skipped = Object.entries(run.skipped || {});
    const ambiguous = run.ambiguous || [];
    if (!skipped.length && !ambiguous.length) return null;
    return h('div', { style: 'margin-top:16px' },
      h('h3', {}, t('sync.left_alone')),
      skipped.length ? h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, t('sync.skipped')), h('th', { class: 'num' }, t('sync.count')))),
        h('tbody', {}, skipped.map(([k, v]) => h('tr', { dataset: { counter: k } }, h('td', { title: k }, counterLabel(k)), h('td', { class: 'num' }, v))))) : null,
      ambiguous.length ? h('ul', { class: 'ambiguous' }, ambiguous.map((a) => data('li', null, a))) : null);
  }

  // A run that marks WeCom relations: how many calls it needs and when the rate budget lets
  // the last one go (the server's plan, kept current as pages are done).
  function plannedLine(plan) {
    if (!plan) return null;
    const by = plan.limited_by === 'hour' ? t('sync.planned_by_hour')
      : plan.limited_by === 'minute' ? t('sync.planned_by_minute') : '';
    return h('p', { class: 'run-meta', dataset: { testid: 'run-planned' } },
      h('span', {}, tn('sync.planned', {
        calls: h('b', {}, plan.mark_tag_calls),
        remaining: h('b', {}, plan.remaining),
        finish: h('b', {}, fmtTime(plan.finish_at)),
      })),
      by ? h('span', {}, by) : null);
  }

  function runPanel(run) {
    const p = run.progress || {};
    const known = Number(p.pages_known) || 0;
    const done = Number(p.pages_done) || 0;
    const pct = run.status === 'running' ? (known ? Math.min(100, Math.round((done / known) * 100)) : 0) : 100;
    const bar = h('div', {
      class: 'progress' + (run.status === 'running' && !done ? ' indeterminate' : '') + (run.status === 'done' ? ' done' : '') + (run.status === 'failed' ? ' failed' : ''),
      role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
    }, h('div', { class: 'bar', style: `width:${pct}%` }));
    return h('div', { class: 'card', dataset: { testid: 'run', status: run.status } },
      h('div', { class: 'card-head' },
        h('h2', {}, labelNode('scope', run.scope)),
        h('span', { class: 'badge ' + run.status }, labelNode('run_status', run.status)),
        h('span', { class: 'spacer' }),
        data('span', 'id', run.run_id)),
      bar,
      h('div', { class: 'run-meta' },
        h('span', {}, tn('sync.pages', { pages: h('b', {}, known ? `${done} / ${known}` : done) })),
        h('span', {}, tn('sync.compared', { count: h('b', {}, p.entities_compared ?? 0) })),
        h('span', {}, tn('sync.started', { at: h('b', {}, fmtTime(run.started_at)) })),
        h('span', {}, tn(run.status === 'running' ? 'sync.running_for' : 'sync.took', { time: h('b', {}, duration(run.started_at, run.finished_at)) }))),
      run.error ? h('p', { class: 'form-error' }, data('span', null, run.error)) : null,
      plannedLine(run.planned),
      h('h3', { style: 'margin-top:18px' }, t('sync.report')),
      reportTable(run),
      skippedList(run));
  }

  async function pageSync(main, arg, gen) {
    const panel = h('div');
    const history = h('div');
    const notice = h('div');
    const button = (scope, primary) => h('button', {
      class: 'btn ' + (primary ? 'btn-primary' : ''), dataset: { scope },
      onclick: async (ev) => {
        const b = ev.currentTarget;
        b.disabled = true;
        await startRun(scope);
        b.disabled = false;
      },
    }, label('scope', scope));
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.sync'))),
      h('p', { class: 'page-sub' }, t('sync.lead')),
      notice,
      h('div', { class: 'actions-row' },
        h('div', { class: 'card action-card' },
          h('div', { class: 'text' }, h('b', {}, label('scope', 'library')), h('span', {}, t('sync.library_help'))),
          button('library', true)),
        h('div', { class: 'card action-card' },
          h('div', { class: 'text' }, h('b', {}, label('scope', 'members')), h('span', {}, t('sync.members_help'))),
          button('members', true))),
      panel,
      history,
    ]);

    async function renderHistory() {
      const runs = await listRuns();
      if (!current(gen)) return;
      clear(history);
      if (runs === null) return;
      history.append(h('div', { class: 'card flush' },
        h('div', { style: 'padding:14px 20px 6px' }, h('h2', {}, t('sync.recent'))),
        runs.length
          ? h('table', {},
            h('thead', {}, h('tr', {}, h('th', {}, t('sync.col_started')), h('th', {}, t('sync.col_what')), h('th', {}, t('sync.col_status')),
              h('th', { class: 'num' }, t('sync.col_found')), h('th', { class: 'num' }, t('sync.col_repaired')), h('th', {}, t('sync.col_took')))),
            h('tbody', {}, runs.map((r) => {
              const sum = (m) => Object.values(m || {}).reduce((n, v) => n + (Number(v) || 0), 0);
              const origin = r.origin || 'operator';
              return h('tr', {},
                h('td', { class: 'nowrap' }, h('a', { href: link('sync', r.run_id) }, fmtTime(r.started_at))),
                h('td', {}, labelNode('scope', r.scope), ' ', h('span', { class: 'side ' + (origin === 'system' ? 'nightly' : origin) }, labelNode('run_origin', origin))),
                h('td', {}, h('span', { class: 'badge ' + r.status }, labelNode('run_status', r.status))),
                h('td', { class: 'num' }, sum(r.drift)), h('td', { class: 'num' }, sum(r.repaired)),
                h('td', { class: 'nowrap' }, r.status === 'running' ? '…' : duration(r.started_at, r.finished_at)));
            })))
          : h('div', { class: 'empty' }, t('sync.no_runs'))));
    }

    // A run being watched is polled quickly until it ends; the page timer does the rest.
    async function watch(runId) {
      for (;;) {
        let run;
        try {
          run = await api('GET', tpath('/sync/' + encodeURIComponent(runId)));
        } catch (e) {
          if (!current(gen)) return;
          clear(panel).append(h('p', { class: 'form-error' }, e.status === 404 ? tn('sync.no_such_run', { id: data('span', 'mono', runId) }) : problem(e)));
          return;
        }
        if (!current(gen)) return;
        clear(panel).append(runPanel(run));
        for (const b of main.querySelectorAll('button[data-scope]')) b.disabled = run.status === 'running';
        if (run.status !== 'running') {
          await renderHistory();
          return;
        }
        await new Promise((r) => setTimeout(r, RUN_POLL_MS));
      }
    }

    // Is the server able to sync at all? A 501 from the run list or the run itself says no.
    try {
      await api('GET', tpath('/sync'));
    } catch (e) {
      if (e.status === 501) {
        notice.append(h('p', { class: 'notice', dataset: { testid: 'sync-not-offered' } }, t('sync.not_offered')));
        for (const b of main.querySelectorAll('button[data-scope]')) b.disabled = true;
        return;
      }
    }
    await renderHistory();
    if (arg) await watch(arg);
    state.refresh = () => renderHistory();
  }

  // ---- page: audit log ------------------------------------------------------------------

  // Values in the audit log, short: hub ids become names where the library knows them, other
  // long ids are cut (the full id is in the tooltip), lists are joined.
  const LONG_ID = /^[0-9a-z_-]{20,}$/i;
  function fmtValue(v, idx) {
    if (v === null || v === undefined) return '—';
    if (Array.isArray(v)) {
      if (!v.length) return t('common.none');
      const items = v.slice(0, 8).map((x) => fmtValue(x, idx));
      return [items.flatMap((x, i) => (i ? [t('common.list_separator'), x] : [x])), v.length > 8 ? ` … (${v.length})` : ''];
    }
    if (typeof v === 'object') return Object.keys(v).length ? '{…}' : '—';
    // Epoch milliseconds (the mall's `occurred_at` in recorded events).
    if (typeof v === 'number' && v > 1e12 && v < 1e13) return fmtTime(new Date(v).toISOString());
    if (typeof v === 'boolean') return t(v ? 'common.yes' : 'common.no');
    const str = String(v);
    const known = idx.get(str);
    if (known) return h('span', { title: str, translate: 'no' }, known.name);
    if (LONG_ID.test(str)) return h('span', { class: 'mono', title: str, translate: 'no' }, str.slice(0, 8) + '…');
    return data('span', null, str);
  }
  // Fields that are bookkeeping rather than the change itself.
  // (An event's whole body is in the cell's tooltip.)
  const QUIET_KEYS = new Set(['id', 'errors', 'sync', 'version', 'created_at', 'updated_at', 'body', 'side']);
  // A field in words, or its own name when the table does not know it.
  const keyLabel = (k) => h('span', { class: 'muted', translate: has('field.' + k) ? null : 'no' }, label('field', k), ' ');

  // A field's value; fields that hold a code the table knows (a run's scope) in words.
  const fieldValue = (k, v, idx) => (k === 'scope' && typeof v === 'string' ? labelNode('scope', v) : fmtValue(v, idx));

  function pairs(obj, idx) {
    const keys = Object.keys(obj).filter((k) => !QUIET_KEYS.has(k) && obj[k] !== null && obj[k] !== undefined);
    return keys.map((k) => h('span', { class: 'pair' }, keyLabel(k), fieldValue(k, obj[k], idx)));
  }

  function describeChange(before, after, idx) {
    const isObj = (x) => x && typeof x === 'object' && !Array.isArray(x);
    if (isObj(before) && isObj(after)) {
      const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
        .filter((k) => !QUIET_KEYS.has(k) && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
      if (!keys.length) return h('span', { class: 'faint' }, t('audit.no_change'));
      return keys.map((k) => h('span', { class: 'pair' }, keyLabel(k),
        h('s', { class: 'faint' }, fieldValue(k, before[k], idx)), ' → ', fieldValue(k, after[k], idx)));
    }
    if (isObj(after)) return pairs(after, idx);
    if (after !== null && after !== undefined) return fmtValue(after, idx);
    if (isObj(before)) return [h('span', { class: 'muted' }, t('audit.was') + ' '), pairs(before, idx)];
    if (before !== null && before !== undefined) return [h('span', { class: 'muted' }, t('audit.was') + ' '), fmtValue(before, idx)];
    return '';
  }

  function describeEntity(entity, idx) {
    const [kind, ...rest] = String(entity).split(':');
    const id = rest.join(':');
    const known = idx.get(id);
    if (known) return [labelNode('entity', kind), ' ', data('b', null, known.name)];
    return [labelNode('entity', kind), ' ', data('span', 'mono', id || entity)];
  }

  // Who caused an entry: `kind` or `kind:id` (e.g. a bulk run's `bulk:{run_id}`).
  function originBadge(origin) {
    const [kind, ...rest] = String(origin).split(':');
    return h('span', { class: 'side ' + kind, title: rest.length ? origin : null }, labelNode('origin', kind), rest.length ? data('span', 'id', ' ' + rest.join(':')) : null);
  }

  async function pageAudit(main, _arg, gen) {
    let entries = [];
    let cursor = null;
    let pages = 1;
    let filter = '';
    const idx = tagIndex(await loadLibrary());
    const tbody = h('tbody');
    const more = h('button', { class: 'btn', dataset: { action: 'older' }, onclick: () => loadMore() }, t('audit.older'));
    const search = h('input', { type: 'search', class: 'search', placeholder: t('audit.filter'), 'aria-label': t('audit.filter_help'), oninput: () => { filter = search.value.trim().toLowerCase(); render(); } });
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.audit')), h('span', { class: 'spacer' }), search),
      h('p', { class: 'page-sub' }, t('audit.lead')),
      h('div', { class: 'card flush' },
        h('table', { class: 'audit' },
          h('colgroup', {}, h('col', { style: 'width:196px' }), h('col', { style: 'width:92px' }), h('col', { style: 'width:200px' }),
            h('col', { style: 'width:22%' }), h('col'), h('col', { style: 'width:110px' })),
          h('thead', {}, h('tr', {}, h('th', {}, t('audit.col_when')), h('th', {}, t('audit.col_side')), h('th', {}, t('audit.col_action')),
            h('th', {}, t('audit.col_entity')), h('th', {}, t('audit.col_change')), h('th', {}, t('audit.col_origin')))),
          tbody)),
      h('div', { style: 'margin-top:12px' }, more),
    ]);

    function render() {
      const shown = entries.filter((e) => !filter || [e.action, label('action', e.action), e.entity, e.side, e.origin, JSON.stringify(e.after), JSON.stringify(e.before)]
        .some((s) => String(s).toLowerCase().includes(filter)));
      clear(tbody).append(...shown.map((e) => h('tr', {},
        h('td', { class: 'nowrap', title: e.at }, fmtTime(e.at)),
        h('td', {}, h('span', { class: 'side ' + e.side }, labelNode('side', e.side))),
        // The action in words, and its code (the API's and the docs' name for it).
        h('td', { class: 'action' }, has('action.' + e.action) ? h('div', {}, label('action', e.action)) : null, data('code', null, e.action)),
        h('td', { class: 'entity', title: e.entity }, describeEntity(e.entity, idx)),
        h('td', { class: 'change', title: e.after && e.after.body ? JSON.stringify(e.after.body, null, 1) : null }, describeChange(e.before, e.after, idx)),
        h('td', {}, originBadge(e.origin)))));
      if (!shown.length) tbody.append(h('tr', {}, h('td', { colspan: 6 }, h('div', { class: 'empty' }, t(entries.length ? 'audit.no_match' : 'audit.empty')))));
      more.hidden = !cursor;
    }
    async function loadMore() {
      const page = await api('GET', tpath('/audit?limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '')));
      if (!current(gen)) return;
      entries = entries.concat(page.entries);
      cursor = page.next_cursor;
      pages++;
      render();
    }
    const first = await api('GET', tpath('/audit?limit=100'));
    if (!current(gen)) return;
    entries = first.entries;
    cursor = first.next_cursor;
    render();
    // Only the first page refreshes itself: older pages stay as loaded. Looked at again once
    // the answer is in: "older" clicked while a refresh was on its way must not be undone by it.
    state.refresh = async () => {
      if (pages > 1) return;
      const page = await api('GET', tpath('/audit?limit=100'));
      if (!current(gen) || pages > 1) return;
      entries = page.entries;
      cursor = page.next_cursor;
      render();
    };
  }

  // ---- page: dead letters ---------------------------------------------------------------

  function describeJob(d, idx) {
    const job = d.job || {};
    const name = (id) => data('b', null, idx.get(id) ? idx.get(id).name : id);
    switch (d.kind) {
      case 'sync_tag': return tn('job.sync_tag', { name: name(job.tag) });
      case 'sync_group': return tn('job.sync_group', { name: name(job.group) });
      case 'sync_member': return tn('job.sync_member', { id: data('b', 'mono', job.member) });
      case 'inbound': {
        const ev = job.event || {};
        if (ev.side === 'mall') return tn('job.mall_event', { type: data('code', null, ev.event_type) });
        if (ev.side === 'wecom_tag') return tn('job.wecom_tag_event', { type: data('code', null, ev.change) });
        if (ev.side === 'wecom_contact') return tn('job.wecom_contact_event', { type: data('code', null, ev.change) });
        return t('job.inbound');
      }
      case 'probe': return job.note ? tn('job.probe_note', { note: data('span', null, job.note) }) : t('job.probe');
      default: return d.kind ? data('code', null, d.kind) : t('job.unreadable');
    }
  }

  async function pageDeadLetters(main, _arg, gen) {
    let letters = [];
    let idx = tagIndex(await loadLibrary());
    const selected = new Set();
    const tbody = h('tbody');
    const body = h('div');
    const redriveSel = h('button', { class: 'btn', dataset: { action: 'redrive-selected' }, onclick: () => redrive([...selected]) }, t('dead.redrive_selected'));
    const redriveAll = h('button', { class: 'btn btn-primary', dataset: { action: 'redrive-all' }, onclick: () => redrive(null) }, t('dead.redrive_all'));
    const all = h('input', {
      type: 'checkbox', 'aria-label': t('dead.select_all'),
      onchange: () => { for (const d of letters) (all.checked ? selected.add(d.message_id) : selected.delete(d.message_id)); render(); },
    });
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.dead_letters')), h('span', { class: 'spacer' }), redriveSel, redriveAll),
      h('p', { class: 'page-sub' }, t('dead.lead')),
      body,
    ]);
    const table = h('div', { class: 'card flush' },
      h('table', {},
        h('thead', {}, h('tr', {}, h('th', { style: 'width:1%' }, all), h('th', {}, t('dead.col_parked')), h('th', {}, t('dead.col_job')),
          h('th', {}, t('dead.col_error')), h('th', { class: 'num' }, t('dead.col_tries')))),
        tbody));

    function render() {
      for (const id of [...selected]) if (!letters.some((d) => d.message_id === id)) selected.delete(id);
      clear(body);
      redriveAll.disabled = !letters.length;
      redriveSel.disabled = !selected.size;
      redriveSel.textContent = selected.size ? t('dead.redrive_selected_n', { count: selected.size }) : t('dead.redrive_selected');
      if (!letters.length) {
        body.append(h('div', { class: 'card empty', dataset: { testid: 'no-dead-letters' } }, h('b', {}, t('dead.empty')), t('dead.empty_help')));
        return;
      }
      all.checked = selected.size === letters.length;
      clear(tbody).append(...letters.map((d) => {
        const box = h('input', {
          type: 'checkbox', 'aria-label': t('dead.select'), checked: selected.has(d.message_id),
          onchange: () => { if (box.checked) selected.add(d.message_id); else selected.delete(d.message_id); render(); },
        });
        return h('tr', { dataset: { kind: d.kind || '' } },
          h('td', {}, box),
          h('td', { class: 'nowrap', title: d.parked_at || '' }, d.parked_at ? fmtTime(d.parked_at) : '—'),
          h('td', {}, describeJob(d, idx), h('div', { class: 'id' }, tn('dead.job_id', { id: data('span', null, d.job_id || d.message_id) }))),
          h('td', { class: 'error-text', style: 'font-size:13px', translate: 'no' }, d.error),
          h('td', { class: 'num' }, d.receive_count));
      }));
      body.append(table);
    }
    async function reload() {
      const [lib, res] = await Promise.all([loadLibrary(), api('GET', tpath('/dead-letters'))]);
      if (!current(gen)) return;
      idx = tagIndex(lib);
      letters = res.dead_letters;
      render();
    }
    async function redrive(ids) {
      try {
        const res = await api('POST', tpath('/dead-letters:redrive'), ids ? { message_ids: ids } : {});
        toast(t('dead.redriven', { count: res.redriven }));
        selected.clear();
        await reload();
        await refreshDeadCount();
      } catch (e) {
        toast(problem(e), 'error');
      }
    }
    await reload();
    state.refresh = reload;
  }

  // ---- page: customers ------------------------------------------------------------------------

  // The filter the operator last applied, per tenant: kept while moving between pages, so the
  // list (and a bulk action over it) is still the one they were looking at.
  const customerFilters = new Map();
  const TAG_MODES = ['any', 'all', 'none'];
  const CUSTOMER_PAGE = 50;

  // The filter as the API's query string (`tag` repeated) and as a bulk request's body.
  function filterQuery(f) {
    const pairs = f.tag.map((id) => ['tag', id]);
    if (f.tag.length) pairs.push(['tag_mode', f.tag_mode]);
    for (const k of ['state', 'userid', 'bound', 'q']) if (f[k]) pairs.push([k, f[k]]);
    return new URLSearchParams(pairs);
  }
  function filterBody(f) {
    const b = {};
    if (f.tag.length) { b.tag = f.tag; b.tag_mode = f.tag_mode; }
    for (const k of ['state', 'userid', 'q']) if (f[k]) b[k] = f[k];
    if (f.bound) b.bound = f.bound === 'true';
    return b;
  }
  const emptyFilter = () => ({ tag: [], tag_mode: 'any', state: '', userid: '', bound: '', q: '' });

  async function pageCustomers(main, _arg, gen) {
    let [groups, staff] = await Promise.all([loadLibrary(), knownStaff()]);
    if (!current(gen)) return;
    const filter = customerFilters.get(state.tenant) || emptyFilter();
    let cursors = [null]; // the cursor of each page shown so far: back is one step down
    let page = null;
    let open = new Set(); // customers whose relations are unfolded
    const summary = h('span', { class: 'summary', dataset: { testid: 'customer-total' } });
    const tbody = h('tbody');
    const pager = h('div', { class: 'pager' });
    const bulkBox = h('div');

    // ---- the filter bar
    const tags = tagPicker(groups, filter.tag, { testid: 'filter-tags' });
    const tagMode = h('select', { name: 'tag_mode', 'aria-label': t('customers.tag_mode') },
      TAG_MODES.map((m) => h('option', { value: m, selected: filter.tag_mode === m }, label('tag_mode', m))));
    const stateInput = h('input', { type: 'text', name: 'state', value: filter.state, placeholder: t('customers.state_placeholder'), autocomplete: 'off', spellcheck: 'false' });
    const userid = h('select', { name: 'userid', translate: 'no' },
      h('option', { value: '' }, t('customers.any_staff')),
      [...new Set(staff.concat(filter.userid ? [filter.userid] : []))].map((u) => h('option', { value: u, selected: filter.userid === u }, u)));
    const bound = h('select', { name: 'bound' },
      [['', t('customers.bound_any')], ['true', t('customers.bound_true')], ['false', t('customers.bound_false')]]
        .map(([v, text]) => h('option', { value: v, selected: filter.bound === v }, text)));
    const q = h('input', { type: 'search', name: 'q', value: filter.q, placeholder: t('customers.q_placeholder'), autocomplete: 'off', spellcheck: 'false' });
    const bar = h('form', { class: 'card filter-bar', dataset: { testid: 'customer-filter' } },
      h('div', { class: 'field filter-tags' }, h('label', {}, t('customers.tags')), h('div', { class: 'tag-mode' }, tagMode, tags.el)),
      h('div', { class: 'field' }, h('label', {}, t('customers.state')), stateInput),
      h('div', { class: 'field' }, h('label', {}, t('customers.staff')), userid),
      h('div', { class: 'field' }, h('label', {}, t('customers.bound')), bound),
      h('div', { class: 'field' }, h('label', {}, t('customers.search')), q),
      h('div', { class: 'filter-buttons' },
        h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'apply-filter' } }, t('customers.apply')),
        h('button', { type: 'button', class: 'btn', dataset: { action: 'clear-filter' }, onclick: () => { customerFilters.delete(state.tenant); go('customers'); } }, t('customers.clear'))));
    bar.addEventListener('submit', (ev) => {
      ev.preventDefault();
      Object.assign(filter, { tag: tags.value(), tag_mode: tagMode.value, state: stateInput.value.trim(), userid: userid.value, bound: bound.value, q: q.value.trim() });
      customerFilters.set(state.tenant, filter);
      cursors = [null];
      load().catch((e) => toast(problem(e), 'error'));
    });

    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.customers')), summary, h('span', { class: 'spacer' }),
        // A bulk change acts on every department's customers: an admin's.
        isAdmin() ? h('button', { class: 'btn btn-primary', dataset: { action: 'bulk' }, onclick: () => bulkForm() }, t('customers.bulk')) : null),
      h('p', { class: 'page-sub' }, t('customers.lead')),
      bar,
      bulkBox,
      h('div', { class: 'card flush' },
        h('table', { class: 'customers', dataset: { testid: 'customers' } },
          h('thead', {}, h('tr', {},
            h('th', {}, t('customers.col_customer')), h('th', {}, t('customers.col_member')), h('th', {}, t('customers.col_tags')),
            h('th', {}, t('customers.col_staff')), h('th', {}, ''))),
          tbody)),
      pager,
    ]);

    function render() {
      const idx = tagIndex(groups);
      append(clear(summary), tn('customers.total', { count: h('b', {}, page.total) }));
      clear(tbody);
      for (const c of page.customers) {
        const unfolded = open.has(c.external_userid);
        const personal = c.relations.flatMap((r) => r.personal_tags || []);
        tbody.append(h('tr', { class: 'customer-row', dataset: { customer: c.external_userid } },
          h('td', {}, data('div', 'customer-name', c.name || c.external_userid), data('div', 'id', c.external_userid)),
          h('td', {}, c.member_id
            ? h('a', { href: link('members', c.member_id), class: 'mono', translate: 'no', title: t('customers.edit_tags_help'), dataset: { action: 'member' } }, c.member_id)
            : h('span', { class: 'muted' }, t('customers.unbound'))),
          h('td', { dataset: { testid: 'customer-tags' } }, tagChips(c.tag_ids, idx),
            personal.length ? h('div', { class: 'personal', title: t('customers.personal_help') }, [...new Set(personal)].map((n) => data('span', 'chip personal', n))) : null),
          h('td', {}, c.relations.map((r) => data('span', 'chip mono', r.userid))),
          h('td', { class: 'actions nowrap' },
            h('button', {
              class: 'icon-btn', 'aria-expanded': String(unfolded), dataset: { action: 'relations' },
              onclick: () => { if (unfolded) open.delete(c.external_userid); else open.add(c.external_userid); render(); },
            }, t(unfolded ? 'customers.hide_relations' : 'customers.show_relations')))));
        if (unfolded) {
          tbody.append(h('tr', { class: 'relations-row', dataset: { relationsOf: c.external_userid } }, h('td', { colspan: 5 },
            h('table', { class: 'relations', dataset: { testid: 'relations' } },
              h('thead', {}, h('tr', {},
                h('th', {}, t('members.salesperson')), h('th', {}, t('customers.col_state')), h('th', {}, t('customers.col_added')),
                h('th', {}, t('customers.col_relation_tags')), h('th', {}, t('customers.col_personal')))),
              h('tbody', {}, c.relations.map((r) => h('tr', { dataset: { userid: r.userid } },
                data('td', 'mono', r.userid),
                h('td', {}, r.state ? data('code', null, r.state) : h('span', { class: 'muted' }, '—')),
                h('td', { class: 'nowrap' }, fmtTime(r.added_at)),
                h('td', {}, tagChips(r.tag_ids, idx)),
                h('td', { dataset: { testid: 'personal' } }, (r.personal_tags || []).length
                  ? r.personal_tags.map((n) => data('span', 'chip personal', n))
                  : h('span', { class: 'muted' }, t('common.none'))))))))));
        }
      }
      if (!page.customers.length) {
        tbody.append(h('tr', {}, h('td', { colspan: 5 }, h('div', { class: 'empty' }, h('b', {}, t('customers.empty')), t('customers.empty_help')))));
      }
      clear(pager).append(
        h('button', { class: 'btn', disabled: cursors.length < 2, dataset: { action: 'prev' }, onclick: () => { cursors.pop(); load(); } }, t('customers.prev')),
        h('span', { class: 'muted' }, t('customers.page', { page: cursors.length })),
        h('button', { class: 'btn', disabled: !page.next_cursor, dataset: { action: 'next' }, onclick: () => { cursors.push(page.next_cursor); load(); } }, t('customers.next')));
    }

    async function load() {
      const qs = filterQuery(filter);
      qs.set('limit', String(CUSTOMER_PAGE));
      const cursor = cursors[cursors.length - 1];
      if (cursor) qs.set('cursor', cursor);
      const res = await api('GET', tpath('/customers?' + qs.toString()));
      if (!current(gen)) return;
      page = res;
      render();
    }

    // The bulk action over the filter as applied (not as typed but not yet applied).
    function bulkForm() {
      state.editing = true;
      const applied = { ...filter, tag: [...filter.tag] };
      const add = tagPicker(groups, [], { testid: 'bulk-add' });
      const remove = tagPicker(groups, [], { testid: 'bulk-remove' });
      const result = h('div');
      const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
      const close = () => { state.editing = false; clear(bulkBox); };
      const change = () => ({ filter: filterBody(applied), add: add.value(), remove: remove.value() });
      const form = h('form', { class: 'card', novalidate: true, dataset: { testid: 'bulk-form' } },
        h('div', { class: 'card-head' }, h('h2', {}, t('customers.bulk_title'))),
        h('p', { class: 'muted' }, t('customers.bulk_lead')),
        h('div', { class: 'field-grid' },
          h('div', { class: 'field' }, h('label', {}, t('rules.add_tags')), add.el),
          h('div', { class: 'field' }, h('label', {}, t('rules.remove_tags')), remove.el)),
        result,
        error,
        h('div', { class: 'buttons' },
          h('button', { type: 'button', class: 'btn', onclick: close }, t('common.cancel')),
          h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'preview' } }, t('customers.preview'))));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        try {
          const body = change();
          const preview = await api('POST', tpath('/customers:bulk-tags'), { ...body, preview: true });
          showPreview(preview, body);
        } catch (e) {
          append(clear(error), problem(e));
          error.hidden = false;
        }
      });
      function showPreview(preview, body) {
        clear(result).append(h('div', { class: 'preview', dataset: { testid: 'bulk-preview', matched: preview.matched } },
          h('p', {}, tn('customers.preview_matched', { count: h('b', {}, preview.matched) })),
          preview.sample.length ? h('div', {}, preview.sample.map((c) => data('span', 'chip', c.name || c.external_userid)),
            preview.matched > preview.sample.length ? h('span', { class: 'muted' }, ' …') : null) : null,
          h('div', { class: 'buttons' },
            h('button', {
              type: 'button', class: 'btn btn-danger', dataset: { action: 'run-bulk' }, disabled: !preview.matched,
              onclick: () => confirmDialog({
                title: t('customers.confirm_title'),
                message: t('customers.confirm_message', { count: preview.matched }),
                submit: t('customers.confirm_run'), danger: true,
                onSubmit: async () => {
                  const { run_id } = await api('POST', tpath('/customers:bulk-tags'), { ...body, preview: false });
                  state.editing = false;
                  watchBulk(run_id);
                },
              }),
            }, t('customers.run', { count: preview.matched })))));
      }
      clear(bulkBox).append(form);
    }

    function showBulk(run) {
      const c = run.counts || {};
      const matched = Number(c.matched) || 0;
      const done = (Number(c.done) || 0) + (Number(c.failed) || 0);
      clear(bulkBox).append(trackedRunCard(run, {
        title: label('scope', 'bulk'),
        done, total: matched,
        counts: [
          ['matched', tn('customers.bulk_matched', { count: h('b', {}, c.matched ?? '…') })],
          ['done', tn('customers.bulk_done', { count: h('b', {}, c.done ?? 0) })],
          ['failed', tn('customers.bulk_failed', { count: h('b', {}, c.failed ?? 0) })],
        ],
        onCancel: async () => {
          try {
            showBulk(await api('POST', tpath('/sync/' + encodeURIComponent(run.run_id) + ':cancel')));
          } catch (e) {
            toast(problem(e), 'error');
          }
        },
        extra: run.failures && run.failures.length
          ? h('table', { dataset: { testid: 'failures' }, style: 'margin-top:14px' },
            h('thead', {}, h('tr', {}, h('th', {}, t('customers.col_customer')), h('th', {}, t('rules.col_reason')))),
            h('tbody', {}, run.failures.map((f) => h('tr', {}, data('td', 'mono', f.external_userid), data('td', 'error-text', f.reason)))))
          : (run.status === 'cancelled' ? h('p', { class: 'muted', style: 'margin-top:10px', dataset: { testid: 'cancelled-note' } }, t('customers.cancelled_note', { done: c.done ?? 0, matched })) : null),
      }));
    }

    async function watchBulk(runId) {
      try {
        const run = await followRun(runId, gen, showBulk);
        if (run) await load();
      } catch (e) {
        if (current(gen)) append(clear(bulkBox), h('p', { class: 'form-error' }, problem(e)));
      }
    }

    await load();
    state.refresh = async () => {
      const lib = await loadLibrary();
      if (!current(gen)) return;
      groups = lib;
      await load();
    };
  }

  // ---- page: transfers ------------------------------------------------------------------------

  const TRANSFER_STATES = ['waiting', 'done', 'refused', 'limit', 'failed'];

  function transferCounts(x) {
    const c = x.counts || {};
    return h('span', { class: 'transfer-counts' }, TRANSFER_STATES.filter((s) => c[s]).map((s) =>
      h('span', { class: 'badge transfer-' + s, dataset: { count: s } }, label('transfer_state', s), ' ', h('b', {}, c[s]))));
  }

  async function pageTransfers(main, arg, gen) {
    if (arg === 'new') return transferForm(main, gen);
    if (arg) return pageTransfer(main, arg, gen);
    const body = h('div');
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.transfers')), h('span', { class: 'spacer' }),
        h('a', { class: 'btn btn-primary', href: link('transfers', 'new'), dataset: { action: 'new-transfer' } }, t('transfers.new'))),
      h('p', { class: 'page-sub' }, t('transfers.lead')),
      body,
    ]);
    async function reload() {
      const { transfers } = await api('GET', tpath('/transfers'));
      if (!current(gen)) return;
      clear(body);
      if (!transfers.length) {
        body.append(h('div', { class: 'card empty' }, h('b', {}, t('transfers.empty')), t('transfers.empty_help')));
        return;
      }
      body.append(h('div', { class: 'card flush' }, h('table', { dataset: { testid: 'transfers' } },
        h('thead', {}, h('tr', {}, h('th', {}, t('transfers.col_started')), h('th', {}, t('transfers.col_who')),
          h('th', {}, t('transfers.col_kind')), h('th', {}, t('transfers.col_status')), h('th', {}, t('transfers.col_customers')))),
        h('tbody', {}, transfers.map((x) => h('tr', { dataset: { transfer: x.transfer_id } },
          h('td', { class: 'nowrap' }, h('a', { href: link('transfers', x.transfer_id) }, fmtTime(x.started_at))),
          h('td', {}, tn('transfers.from_to', { from: data('b', 'mono', x.handover_userid), to: data('b', 'mono', x.takeover_userid) })),
          h('td', {}, t(x.resigned ? 'transfers.resigned' : 'transfers.in_service')),
          h('td', {}, h('span', { class: 'badge ' + x.status }, labelNode('run_status', x.status))),
          h('td', {}, transferCounts(x))))))));
    }
    await reload();
    state.refresh = reload;
  }

  // Starting a transfer: who leaves, who takes over, which of the leaver's customers.
  async function transferForm(main, gen) {
    const staff = await knownStaff();
    if (!current(gen)) return;
    state.editing = true;
    const handover = h('select', { name: 'handover_userid', translate: 'no', onchange: () => loadCustomers() },
      h('option', { value: '' }, t('transfers.pick_staff')), staff.map((u) => h('option', { value: u }, u)));
    const takeover = h('select', { name: 'takeover_userid', translate: 'no' },
      h('option', { value: '' }, t('transfers.pick_staff')), staff.map((u) => h('option', { value: u }, u)));
    const resigned = h('input', { type: 'checkbox', name: 'resigned' });
    const picker = h('div', { class: 'customer-picker', dataset: { testid: 'customer-picker' } }, h('p', { class: 'muted' }, t('transfers.pick_handover_first')));
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    let listed = [];
    let complete = true;

    async function loadCustomers() {
      clear(picker);
      listed = [];
      if (!handover.value) return;
      const res = await api('GET', tpath('/customers?limit=200&userid=' + encodeURIComponent(handover.value)));
      listed = res.customers;
      complete = !res.next_cursor;
      const all = h('input', { type: 'checkbox', checked: true, 'aria-label': t('transfers.select_all'),
        onchange: () => { for (const b of boxes()) b.checked = all.checked; } });
      const boxes = () => [...picker.querySelectorAll('input[name=customer]')];
      const follow = () => { all.checked = boxes().every((b) => b.checked); };
      append(picker, [
        h('label', { class: 'check select-all' }, all, t('transfers.all_customers', { count: res.total })),
        listed.length
          ? h('div', { class: 'checks' }, listed.map((c) => h('label', { class: 'check', translate: 'no', dataset: { customer: c.external_userid } },
            h('input', { type: 'checkbox', name: 'customer', value: c.external_userid, checked: true, onchange: follow }),
            c.name || c.external_userid, ' ', h('span', { class: 'id' }, c.external_userid))))
          : h('p', { class: 'muted' }, t('transfers.no_customers')),
        complete ? null : h('p', { class: 'field-hint' }, t('transfers.first_200'))]);
    }

    const form = h('form', { class: 'card', novalidate: true, dataset: { testid: 'transfer-form' } },
      h('div', { class: 'card-head' }, h('h2', {}, t('transfers.new_title'))),
      h('div', { class: 'field-row' },
        h('div', { class: 'field' }, h('label', {}, t('transfers.handover')), handover),
        h('div', { class: 'field' }, h('label', {}, t('transfers.takeover')), takeover)),
      h('div', { class: 'field' }, h('div', {}, h('label', { class: 'check' }, resigned, t('transfers.resigned_label'))), h('div', { class: 'field-hint' }, t('transfers.resigned_hint'))),
      h('div', { class: 'field' }, h('label', {}, t('transfers.customers')), picker),
      error,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'btn', onclick: () => { state.editing = false; go('transfers'); } }, t('common.cancel')),
        h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'start-transfer' } }, t('transfers.start'))));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const chosen = [...picker.querySelectorAll('input[name=customer]:checked')].map((b) => b.value);
      const body = { handover_userid: handover.value, takeover_userid: takeover.value, resigned: resigned.checked };
      // Every customer listed and the list complete: "all of the handover's customers".
      if (!(complete && listed.length && chosen.length === listed.length)) body.external_userids = chosen;
      error.hidden = true;
      try {
        const { transfer_id } = await api('POST', tpath('/transfers'), body);
        state.editing = false;
        toast(t('transfers.started'));
        go('transfers', transfer_id);
      } catch (e) {
        append(clear(error), problem(e));
        error.hidden = false;
      }
    });
    append(main, [
      h('div', { class: 'page-head' }, h('a', { href: link('transfers') }, t('transfers.back')), h('span', { class: 'spacer' })),
      h('p', { class: 'page-sub' }, t('transfers.lead')),
      form,
    ]);
  }

  // One transfer: where each customer stands, read again while it runs.
  async function pageTransfer(main, id, gen) {
    const path = tpath('/transfers/' + encodeURIComponent(id));
    const box = h('div');
    append(main, [h('div', { class: 'page-head' }, h('a', { href: link('transfers') }, t('transfers.back')), h('span', { class: 'spacer' })), box]);
    async function reload() {
      let x;
      try {
        x = await api('GET', path);
      } catch (e) {
        if (e.status !== 404) throw e;
        if (current(gen)) clear(box).append(h('div', { class: 'card empty' }, h('b', {}, tn('transfers.not_found', { id: data('span', 'mono', id) }))));
        return;
      }
      if (!current(gen)) return;
      const c = x.counts || {};
      const total = TRANSFER_STATES.reduce((n, s) => n + (Number(c[s]) || 0), 0);
      const settled = total - (Number(c.waiting) || 0);
      const running = x.status === 'running';
      const pct = total ? Math.round((settled / total) * 100) : 0;
      clear(box).append(
        h('div', { class: 'card', dataset: { testid: 'transfer', status: x.status } },
          h('div', { class: 'card-head' },
            h('h2', {}, tn('transfers.from_to', { from: data('span', 'mono', x.handover_userid), to: data('span', 'mono', x.takeover_userid) })),
            h('span', { class: 'badge plain' }, t(x.resigned ? 'transfers.resigned' : 'transfers.in_service')),
            h('span', { class: 'badge ' + x.status }, labelNode('run_status', x.status)),
            h('span', { class: 'spacer' }), data('span', 'id', x.transfer_id)),
          h('div', { class: 'progress' + (x.status === 'done' ? ' done' : '') + (x.status === 'failed' ? ' failed' : ''), role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct },
            h('div', { class: 'bar', style: `width:${pct}%` })),
          h('div', { class: 'run-meta' },
            transferCounts(x),
            h('span', {}, tn('sync.started', { at: h('b', {}, fmtTime(x.started_at)) })),
            running && x.next_look_at ? h('span', {}, tn('transfers.next_look', { at: h('b', {}, fmtTime(x.next_look_at)) })) : null),
          x.error ? h('p', { class: 'form-error' }, data('span', null, x.error)) : null,
          h('p', { class: 'muted', style: 'margin-top:10px' }, t(x.resigned ? 'transfers.resigned_help' : 'transfers.in_service_help'))),
        h('div', { class: 'card flush' }, h('table', { dataset: { testid: 'transfer-customers' } },
          h('thead', {}, h('tr', {}, h('th', {}, t('customers.col_customer')), h('th', {}, t('transfers.col_status')), h('th', {}, t('rules.col_reason')))),
          h('tbody', {}, (x.customers || []).map((cu) => h('tr', { dataset: { customer: cu.external_userid, status: cu.status } },
            data('td', 'mono', cu.external_userid),
            h('td', {}, h('span', { class: 'badge transfer-' + cu.status, title: label('transfer_help', cu.status) }, labelNode('transfer_state', cu.status))),
            h('td', {}, cu.errcode ? data('code', null, String(cu.errcode)) : null, ' ', cu.reason ? data('span', 'muted', cu.reason) : null)))))));
    }
    await reload();
    state.refresh = reload;
  }

  // ---- page: rules (automatic tagging) ------------------------------------------------------

  const MODES = ['off', 'dry_run', 'canary', 'on'];
  const TRIGGERS = ['keyword', 'channel', 'tag_added'];
  const SPEAKERS = ['customer', 'staff', 'any'];
  const TAG_CONDITIONS = ['has_none', 'has_any', 'has_all'];

  function modeBadge(rule) {
    const canary = rule.mode === 'canary';
    return h('span', { class: 'badge mode-' + rule.mode, dataset: { testid: 'mode', mode: rule.mode } },
      labelNode('mode', rule.mode),
      canary ? h('span', { class: 'mono' }, ` ${rule.canary_acted ?? 0}/${rule.canary_limit ?? '?'}`) : null);
  }

  // The trigger in words: the channel's name where the tenant has one with that state.
  function describeTrigger(tr, idx, channels) {
    if (tr.kind === 'keyword') {
      return tn('rules.trigger_keyword', {
        words: h('span', {}, tr.any.map((w) => data('span', 'chip word', w))),
        from: label('speaker', tr.from || 'customer'),
      });
    }
    if (tr.kind === 'channel') {
      const ch = (channels || []).find((c) => c.state === tr.state);
      return tn('rules.trigger_channel', {
        channel: ch ? data('b', null, ch.name) : data('code', null, tr.state),
      });
    }
    if (tr.kind === 'tag_added') return tn('rules.trigger_tag_added', { tag: h('span', {}, tagChips([tr.tag_id], idx)) });
    return data('code', null, JSON.stringify(tr));
  }

  // One condition (`{"has_none": [...]}`) in words.
  function describeCondition(c, idx) {
    const [kind, value] = Object.entries(c || {})[0] || [];
    if (TAG_CONDITIONS.includes(kind)) return [label('condition', kind), ' ', tagChips(value, idx)];
    if (kind === 'staff_in') return [label('condition', kind), ' ', value.map((u) => data('span', 'chip mono', u))];
    if (kind === 'added_within_days') return t('rules.added_within_days', { count: value });
    return data('code', null, JSON.stringify(c));
  }

  function describeConditions(list, idx) {
    if (!list || !list.length) return h('span', { class: 'muted' }, t('rules.always'));
    return list.map((c) => h('div', { class: 'cond' }, describeCondition(c, idx)));
  }

  function describeActions(a, idx) {
    return [
      a.add && a.add.length ? h('div', { class: 'act add' }, h('span', { class: 'sign' }, '+'), tagChips(a.add, idx)) : null,
      a.remove && a.remove.length ? h('div', { class: 'act remove' }, h('span', { class: 'sign' }, '−'), tagChips(a.remove, idx)) : null,
    ];
  }

  async function loadChannels() {
    try {
      return (await api('GET', tpath('/channels'))).channels;
    } catch (e) {
      if ([404, 501].includes(e.status)) return [];
      throw e;
    }
  }

  async function pageRules(main, arg, gen) {
    if (arg === 'new') return ruleEditor(main, null, gen);
    if (arg) return pageRule(main, arg, gen);
    const [groups, rules, channels] = await Promise.all([loadLibrary(), api('GET', tpath('/rules')), loadChannels()]);
    if (!current(gen)) return;
    const body = h('div');
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.rules')), h('span', { class: 'spacer' }),
        h('a', { class: 'btn btn-primary', href: link('rules', 'new'), dataset: { action: 'new-rule' } }, t('rules.new'))),
      h('p', { class: 'page-sub' }, t('rules.lead')),
      h('div', { class: 'legend' }, t('rules.modes'), MODES.map((m) => h('span', { class: 'badge mode-' + m, title: label('mode_help', m) }, label('mode', m)))),
      body,
    ]);
    function render(list, lib, chans) {
      const idx = tagIndex(lib);
      clear(body);
      if (!list.length) {
        body.append(h('div', { class: 'card empty', style: 'margin-top:10px' }, h('b', {}, t('rules.empty')), t('rules.empty_help')));
        return;
      }
      body.append(h('div', { class: 'card flush', style: 'margin-top:10px' },
        h('table', { class: 'rules', dataset: { testid: 'rules' } },
          h('thead', {}, h('tr', {},
            h('th', {}, t('rules.col_name')), h('th', {}, t('rules.col_trigger')), h('th', {}, t('rules.col_conditions')),
            h('th', {}, t('rules.col_actions')), h('th', {}, t('rules.col_mode')), h('th', {}, ''))),
          h('tbody', {}, list.map((r) => h('tr', { dataset: { rule: r.id, name: r.name } },
            h('td', {},
              h('a', { href: link('rules', r.id), translate: 'no', dataset: { action: 'open' } }, r.name),
              r.status === 'broken'
                ? h('div', {}, h('span', { class: 'badge failed', title: r.problems.join('\n'), dataset: { testid: 'broken' } }, t('rules.broken')),
                  r.problems.map((p) => data('div', 'error-text', p)))
                : null),
            h('td', {}, describeTrigger(r.trigger, idx, chans)),
            h('td', {}, describeConditions(r.conditions, idx)),
            h('td', {}, describeActions(r.actions, idx)),
            h('td', {}, modeBadge(r)),
            h('td', { class: 'actions nowrap' },
              h('a', { class: 'icon-btn', href: link('rules', r.id) }, t('rules.firings')))))))));
    }
    render(rules.rules, groups, channels);
    state.refresh = async () => {
      const [lib, fresh, chans] = await Promise.all([loadLibrary(), api('GET', tpath('/rules')), loadChannels()]);
      if (current(gen)) render(fresh.rules, lib, chans);
    };
  }

  // A rule's page: what it does, its mode (switched here), its firings, and undo.
  async function pageRule(main, id, gen) {
    const path = tpath('/rules/' + encodeURIComponent(id));
    let rule;
    try {
      rule = await api('GET', path);
    } catch (e) {
      if (e.status !== 404) throw e;
      if (current(gen)) main.append(h('div', { class: 'card empty' }, h('b', {}, tn('rules.not_found', { id: data('span', 'mono', id) }))));
      return;
    }
    let [groups, channels] = await Promise.all([loadLibrary(), loadChannels()]);
    if (!current(gen)) return;
    let firings = [];
    let cursor = null;
    let pages = 1;
    const head = h('div');
    const undoPanel = h('div');
    const tbody = h('tbody');
    const more = h('button', { class: 'btn', onclick: () => loadMore() }, t('rules.older_firings'));

    append(main, [
      h('div', { class: 'page-head' },
        h('a', { href: link('rules') }, t('rules.back')), h('span', { class: 'spacer' })),
      head,
      undoPanel,
      h('div', { class: 'card flush' },
        h('div', { style: 'padding:14px 20px 6px' }, h('h2', {}, t('rules.firings_title'))),
        h('table', { class: 'firings', dataset: { testid: 'firings' } },
          h('thead', {}, h('tr', {},
            h('th', {}, t('rules.col_when')), h('th', {}, t('rules.col_customer')), h('th', {}, t('rules.col_event')),
            h('th', {}, t('rules.col_outcome')), h('th', {}, t('rules.col_changes')))),
          tbody)),
      h('div', { style: 'margin-top:12px' }, more),
    ]);

    function renderHead() {
      const idx = tagIndex(groups);
      const modeSwitch = h('div', { class: 'segmented', role: 'group', 'aria-label': t('rules.switch_mode'), dataset: { testid: 'mode-switch' } },
        MODES.map((m) => h('button', {
          type: 'button', 'aria-pressed': String(rule.mode === m), dataset: { mode: m }, title: label('mode_help', m),
          onclick: () => switchMode(m),
        }, label('mode', m))));
      clear(head).append(h('div', { class: 'card', dataset: { testid: 'rule' } },
        h('div', { class: 'card-head' },
          data('h2', null, rule.name), modeBadge(rule),
          rule.status === 'broken' ? h('span', { class: 'badge failed', dataset: { testid: 'broken' } }, t('rules.broken')) : null,
          h('span', { class: 'spacer' }),
          h('button', { class: 'btn', dataset: { action: 'edit-rule' }, onclick: () => { state.editing = true; clear(main); ruleEditor(main, rule, gen); } }, t('common.edit')),
          h('button', { class: 'btn', dataset: { action: 'undo' }, onclick: undo }, t('rules.undo')),
          h('button', { class: 'btn btn-danger', dataset: { action: 'delete-rule' }, onclick: remove }, t('common.delete'))),
        rule.problems.length ? rule.problems.map((p) => data('p', 'error-text', p)) : null,
        h('dl', { class: 'facts' },
          h('dt', {}, t('rules.col_trigger')), h('dd', {}, describeTrigger(rule.trigger, idx, channels)),
          h('dt', {}, t('rules.col_conditions')), h('dd', {}, describeConditions(rule.conditions, idx)),
          h('dt', {}, t('rules.col_actions')), h('dd', {}, describeActions(rule.actions, idx)),
          h('dt', {}, t('rules.col_mode')), h('dd', {}, modeSwitch,
            h('div', { class: 'field-hint' }, label('mode_help', rule.mode))))));
    }

    // The event that triggered a firing, as the operator would recognise it.
    function describeEvent(ev, idx) {
      if (ev.kind === 'message') {
        return [h('div', {}, label('event', 'message'), ' ', data('span', 'muted', ev.from)),
          h('q', { class: 'message-text', translate: 'no', dataset: { testid: 'message' } }, ev.text)];
      }
      if (ev.kind === 'channel') {
        const ch = channels.find((c) => c.state === ev.state);
        return [h('div', {}, label('event', 'channel'), ' ', ch ? data('b', null, ch.name) : data('code', null, ev.state)),
          h('div', { class: 'muted' }, tn('rules.event_staff', { userid: data('span', 'mono', ev.userid) }))];
      }
      if (ev.kind === 'tag_added') {
        const [kind, ...rest] = String(ev.by).split(':');
        return [h('div', {}, label('event', 'tag_added'), ' ', tagChips([ev.tag_id], idx)),
          h('div', { class: 'muted' }, tn('rules.event_by', { by: h('span', {}, labelNode('origin', kind), rest.length ? data('span', 'id', ' ' + rest.join(':')) : null) }))];
      }
      return data('code', null, JSON.stringify(ev));
    }

    function renderFirings() {
      const idx = tagIndex(groups);
      clear(tbody).append(...firings.map((f) => h('tr', { dataset: { firing: f.id, outcome: f.outcome, customer: f.customer || '' } },
        h('td', { class: 'nowrap', title: f.at }, fmtTime(f.at)),
        h('td', {}, f.customer ? data('div', 'mono', f.customer) : h('span', { class: 'muted' }, '—'),
          f.member_id ? h('div', { class: 'muted' }, tn('rules.member', { id: h('a', { href: link('members', f.member_id), translate: 'no', class: 'mono' }, f.member_id) })) : null),
        h('td', { class: 'event' }, describeEvent(f.event, idx)),
        h('td', {},
          h('span', { class: 'badge outcome-' + f.outcome, title: label('outcome_help', f.outcome) }, labelNode('outcome', f.outcome)),
          f.excluded_by ? h('div', { class: 'muted', dataset: { testid: 'excluded-by' } }, tn('rules.excluded_by', { condition: h('span', {}, describeCondition(f.excluded_by, idx)) })) : null,
          f.depth > 1 ? h('div', { class: 'muted' }, t('rules.depth', { depth: f.depth })) : null,
          f.chain_stopped ? h('div', { class: 'muted' }, tn('rules.chain_stopped', { why: data('span', null, f.chain_stopped) })) : null,
          f.undone_by ? h('div', { class: 'muted' }, tn('rules.undone_by', { run: h('span', { class: 'id', translate: 'no' }, f.undone_by) })) : null),
        h('td', {}, describeActions(f.changes || {}, idx)))));
      if (!firings.length) tbody.append(h('tr', {}, h('td', { colspan: 5 }, h('div', { class: 'empty' }, t('rules.no_firings')))));
      more.hidden = !cursor;
    }

    async function loadMore() {
      const page = await api('GET', `${path}/firings?limit=50&cursor=${encodeURIComponent(cursor)}`);
      if (!current(gen)) return;
      firings = firings.concat(page.firings);
      cursor = page.next_cursor;
      pages++;
      renderFirings();
    }

    async function reload() {
      const [r, lib, chans, page] = await Promise.all([api('GET', path), loadLibrary(), loadChannels(), api('GET', `${path}/firings?limit=50`)]);
      if (!current(gen) || state.editing) return;
      rule = r;
      groups = lib;
      channels = chans;
      renderHead();
      // Older pages stay as loaded: only the first page is read again.
      if (pages === 1) {
        firings = page.firings;
        cursor = page.next_cursor;
        renderFirings();
      }
    }

    function switchMode(mode) {
      if (mode === rule.mode) return;
      const save = async (patch) => {
        rule = await api('PATCH', path, { mode, ...patch });
        toast(t('rules.mode_switched', { mode: label('mode', mode) }));
        renderHead();
      };
      if (mode === 'canary') {
        openDialog({
          title: t('rules.canary_title'),
          message: t('mode_help.canary'),
          fields: [{ name: 'limit', label: t('rules.canary_limit'), type: 'number', value: rule.canary_limit || 5, required: true }],
          submit: label('mode', 'canary'),
          onSubmit: (v) => save({ canary_limit: Number(v.limit) }),
        });
        return;
      }
      save({}).catch((e) => toast(problem(e), 'error'));
    }

    function showUndo(run) {
      const repaired = run.repaired || {};
      const skipped = run.skipped || {};
      const idx = tagIndex(groups);
      const p = run.progress || {};
      clear(undoPanel).append(trackedRunCard(run, {
        title: label('scope', 'undo'),
        done: Number(p.pages_done) || 0,
        total: Number(p.pages_known) || 0,
        counts: [
          ['undone', tn('rules.undo_undone', { count: h('b', {}, repaired.firings_undone || 0) })],
          ['kept', tn('rules.undo_kept', { count: h('b', {}, skipped.tags_kept || 0) })],
        ],
        extra: run.kept && run.kept.length
          ? h('div', { style: 'margin-top:14px' },
            h('h3', {}, t('rules.undo_kept_title')),
            h('p', { class: 'muted' }, t('rules.undo_kept_help')),
            h('table', { dataset: { testid: 'kept' } },
              h('thead', {}, h('tr', {}, h('th', {}, t('rules.col_customer')), h('th', {}, t('rules.col_tag')), h('th', {}, t('rules.col_reason')))),
              h('tbody', {}, run.kept.map((k) => h('tr', { dataset: { customer: k.customer } },
                data('td', 'mono', k.customer), h('td', {}, tagChips([k.tag_id], idx)), data('td', 'muted', k.reason))))))
          : null,
      }));
    }

    async function watchUndo(runId) {
      try {
        const run = await followRun(runId, gen, showUndo);
        if (run) await reload();
      } catch (e) {
        if (current(gen)) append(clear(undoPanel), h('p', { class: 'form-error' }, problem(e)));
      }
    }

    function undo() {
      confirmDialog({
        title: tn('rules.undo_title', { name: data('span', null, rule.name) }),
        message: t('rules.undo_message'),
        submit: t('rules.undo'), danger: true,
        onSubmit: async () => {
          const { run_id } = await api('POST', `${path}:undo`);
          toast(t('rules.undo_started'));
          watchUndo(run_id);
        },
      });
    }

    function remove() {
      confirmDialog({
        title: tn('rules.delete_title', { name: data('span', null, rule.name) }),
        message: t('rules.delete_message'),
        submit: t('common.delete'), danger: true,
        onSubmit: async () => {
          await api('DELETE', path);
          toast(tn('rules.deleted', { name: data('span', null, rule.name) }));
          go('rules');
        },
      });
    }

    const first = await api('GET', `${path}/firings?limit=50`);
    if (!current(gen)) return;
    firings = first.firings;
    cursor = first.next_cursor;
    renderHead();
    renderFirings();
    state.refresh = reload;
  }

  // Creating a rule (`rule` null) or changing one: a form over the whole rule.
  async function ruleEditor(main, rule, gen) {
    const groups = await loadLibrary();
    if (!current(gen)) return;
    state.editing = true;
    const r = rule || { name: '', trigger: { kind: 'keyword', any: [], from: 'customer' }, conditions: [], actions: { add: [], remove: [] }, mode: 'dry_run' };
    const condOf = (kind) => (r.conditions.find((c) => kind in c) || {})[kind];
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const field = (labelText, input, hint, testid) => h('div', { class: 'field', dataset: { testid } }, h('label', {}, labelText), input, hint ? h('div', { class: 'field-hint' }, hint) : null);

    const name = h('input', { type: 'text', name: 'name', value: r.name, required: true, maxlength: 100, autocomplete: 'off' });
    const kind = h('select', { name: 'trigger_kind', onchange: () => showTrigger() },
      TRIGGERS.map((k) => h('option', { value: k, selected: r.trigger.kind === k }, label('trigger', k))));
    const words = h('textarea', { name: 'keywords', rows: 3, placeholder: t('rules.keywords_placeholder'), translate: 'no' });
    words.value = r.trigger.kind === 'keyword' ? r.trigger.any.join('\n') : '';
    const from = h('select', { name: 'from' }, SPEAKERS.map((s) => h('option', { value: s, selected: (r.trigger.from || 'customer') === s }, label('speaker', s))));
    const stateInput = h('input', { type: 'text', name: 'state', maxlength: 30, value: r.trigger.kind === 'channel' ? r.trigger.state : '', autocomplete: 'off', spellcheck: 'false' });
    const trigTag = tagPicker(groups, r.trigger.kind === 'tag_added' ? [r.trigger.tag_id] : [], { testid: 'trigger-tag', single: true });
    const triggerParts = {
      keyword: h('div', { class: 'field-row' }, field(t('rules.keywords'), words, t('rules.keywords_hint')), field(t('rules.from'), from)),
      channel: field(t('rules.state'), stateInput, t('rules.state_hint')),
      tag_added: field(t('rules.trigger_tag'), trigTag.el),
    };
    const triggerBox = h('div');
    function showTrigger() { clear(triggerBox).append(triggerParts[kind.value]); }
    showTrigger();

    const pickers = Object.fromEntries(TAG_CONDITIONS.map((c) => [c, tagPicker(groups, condOf(c) || [], { testid: 'cond-' + c })]));
    const staff = h('input', { type: 'text', name: 'staff_in', value: (condOf('staff_in') || []).join(', '), autocomplete: 'off', spellcheck: 'false', translate: 'no' });
    const days = h('input', { type: 'number', name: 'added_within_days', min: 1, value: condOf('added_within_days') ?? '' });
    const add = tagPicker(groups, r.actions.add, { testid: 'action-add' });
    const remove = tagPicker(groups, r.actions.remove, { testid: 'action-remove' });
    const mode = h('select', { name: 'mode', onchange: () => { limit.disabled = mode.value !== 'canary'; } },
      MODES.map((m) => h('option', { value: m, selected: r.mode === m }, label('mode', m))));
    const limit = h('input', { type: 'number', name: 'canary_limit', min: 1, value: r.canary_limit ?? 5, disabled: r.mode !== 'canary' });

    const form = h('form', { class: 'card rule-form', novalidate: true, dataset: { testid: 'rule-form' } },
      h('div', { class: 'card-head' }, h('h2', {}, rule ? tn('rules.edit_title', { name: data('span', null, rule.name) }) : t('rules.new_title'))),
      field(t('rules.name'), name, null),
      h('h3', {}, t('rules.when')),
      field(t('rules.trigger_kind'), kind),
      triggerBox,
      h('h3', {}, t('rules.only_if')),
      h('p', { class: 'field-hint' }, t('rules.conditions_hint')),
      h('div', { class: 'field-grid' },
        TAG_CONDITIONS.map((c) => field(label('condition', c), pickers[c].el, label('condition_help', c))),
        field(label('condition', 'staff_in'), staff, t('rules.staff_hint')),
        field(t('rules.added_within'), days, t('rules.added_within_hint'))),
      h('h3', {}, t('rules.then')),
      h('div', { class: 'field-grid' },
        field(t('rules.add_tags'), add.el), field(t('rules.remove_tags'), remove.el)),
      h('h3', {}, t('rules.col_mode')),
      h('div', { class: 'field-row' }, field(t('rules.col_mode'), mode, t('rules.mode_hint')), field(t('rules.canary_limit'), limit)),
      error,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'btn', onclick: () => { state.editing = false; go('rules', rule ? rule.id : null); } }, t('common.cancel')),
        h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'save-rule' } }, rule ? t('common.save') : t('rules.create'))));

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let trigger;
      if (kind.value === 'keyword') trigger = { kind: 'keyword', any: words.value.split(/[\n,，]/).map((s) => s.trim()).filter(Boolean), from: from.value };
      else if (kind.value === 'channel') trigger = { kind: 'channel', state: stateInput.value.trim() };
      else trigger = { kind: 'tag_added', tag_id: trigTag.value()[0] || '' };
      const conditions = [];
      for (const c of TAG_CONDITIONS) if (pickers[c].value().length) conditions.push({ [c]: pickers[c].value() });
      const userids = staff.value.split(/[\s,，]+/).filter(Boolean);
      if (userids.length) conditions.push({ staff_in: userids });
      if (days.value !== '') conditions.push({ added_within_days: Number(days.value) });
      const body = { name: name.value.trim(), trigger, conditions, actions: { add: add.value(), remove: remove.value() }, mode: mode.value };
      if (mode.value === 'canary') body.canary_limit = Number(limit.value);
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      error.hidden = true;
      try {
        const saved = rule
          ? await api('PATCH', tpath('/rules/' + encodeURIComponent(rule.id)), body)
          : await api('POST', tpath('/rules'), body);
        state.editing = false;
        toast(tn(rule ? 'rules.saved' : 'rules.created', { name: data('span', null, saved.name) }));
        go('rules', saved.id);
      } catch (e) {
        append(clear(error), problem(e));
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    append(main, [
      h('div', { class: 'page-head' }, h('a', { href: link('rules', rule ? rule.id : null) }, t('rules.back')), h('span', { class: 'spacer' })),
      form,
    ]);
    name.focus();
  }

  // ---- page: channel codes --------------------------------------------------------------------

  async function pageChannels(main, _arg, gen) {
    let [groups, channels, rules, staff] = await Promise.all([loadLibrary(), loadChannels(), api('GET', tpath('/rules')).then((b) => b.rules), knownStaff()]);
    if (!current(gen)) return;
    const body = h('div');
    const formBox = h('div');
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, t('nav.channels')), h('span', { class: 'spacer' }),
        h('button', { class: 'btn btn-primary', dataset: { action: 'new-channel' }, onclick: () => showForm() }, t('channels.new'))),
      h('p', { class: 'page-sub' }, t('channels.lead')),
      formBox,
      body,
    ]);

    function render() {
      const idx = tagIndex(groups);
      clear(body);
      if (!channels.length) {
        body.append(h('div', { class: 'card empty' }, h('b', {}, t('channels.empty')), t('channels.empty_help')));
        return;
      }
      body.append(h('div', { class: 'channel-grid', dataset: { testid: 'channels' } }, channels.map((c) => {
        const own = rules.filter((r) => c.rule_ids.includes(r.id));
        return h('div', { class: 'card channel', dataset: { channel: c.id, name: c.name } },
          h('div', { class: 'channel-body' },
            h('a', { href: c.qr_code, target: '_blank', rel: 'noopener', class: 'qr', title: t('channels.qr_open') },
              h('img', { src: c.qr_code, alt: t('channels.qr_alt', { name: c.name }), width: 132, height: 132, dataset: { testid: 'qr' } })),
            h('div', { class: 'channel-facts' },
              data('h2', null, c.name),
              h('dl', { class: 'facts' },
                h('dt', {}, t('channels.state')), h('dd', {}, data('code', null, c.state)),
                h('dt', {}, t('channels.staff')), h('dd', {}, c.users.map((u) => data('span', 'chip mono', u))),
                h('dt', {}, t('channels.tags')), h('dd', { dataset: { testid: 'channel-tags' } },
                  own.length ? own.map((r) => h('div', {}, describeActions(r.actions, idx), ' ', modeBadge(r), ' ',
                    h('a', { href: link('rules', r.id), class: 'muted' }, t('channels.rule_link'))))
                    : h('span', { class: 'muted' }, t('channels.no_rule'))),
                h('dt', {}, t('channels.created')), h('dd', {}, fmtTime(c.created_at)),
                h('dt', {}, t('channels.config_id')), h('dd', {}, data('span', 'id', c.config_id))))),
          h('div', { class: 'buttons' },
            h('button', { class: 'btn btn-sm btn-danger', dataset: { action: 'delete-channel' }, onclick: () => remove(c) }, t('common.delete'))));
      })));
    }

    function showForm() {
      state.editing = true;
      const name = h('input', { type: 'text', name: 'name', maxlength: 30, required: true, autocomplete: 'off' });
      const stateInput = h('input', { type: 'text', name: 'state', maxlength: 30, autocomplete: 'off', spellcheck: 'false', placeholder: t('channels.state_placeholder') });
      const boxes = staff.map((u) => h('label', { class: 'check', translate: 'no' }, h('input', { type: 'checkbox', name: 'user', value: u }), u));
      const other = h('input', { type: 'text', name: 'other_users', autocomplete: 'off', spellcheck: 'false', translate: 'no', placeholder: t('channels.other_staff_placeholder') });
      const tags = tagPicker(groups, [], { testid: 'channel-tags-picker' });
      const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
      const close = () => { state.editing = false; clear(formBox); };
      const form = h('form', { class: 'card', novalidate: true, dataset: { testid: 'channel-form' } },
        h('div', { class: 'card-head' }, h('h2', {}, t('channels.new_title'))),
        h('div', { class: 'field-row' },
          h('div', { class: 'field' }, h('label', {}, t('channels.name')), name, h('div', { class: 'field-hint' }, t('channels.name_hint'))),
          h('div', { class: 'field' }, h('label', {}, t('channels.state')), stateInput, h('div', { class: 'field-hint' }, t('channels.state_hint')))),
        h('div', { class: 'field' }, h('label', {}, t('channels.staff')),
          boxes.length ? h('div', { class: 'checks' }, boxes) : h('div', { class: 'muted' }, t('channels.no_known_staff')),
          other, h('div', { class: 'field-hint' }, t('channels.staff_hint'))),
        h('div', { class: 'field' }, h('label', {}, t('channels.tags')), tags.el, h('div', { class: 'field-hint' }, t('channels.tags_hint'))),
        error,
        h('div', { class: 'buttons' },
          h('button', { type: 'button', class: 'btn', onclick: close }, t('common.cancel')),
          h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'create-channel' } }, t('channels.create'))));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const users = [...form.querySelectorAll('input[name=user]:checked')].map((b) => b.value)
          .concat(other.value.split(/[\s,，]+/).filter(Boolean));
        const req = { name: name.value.trim(), users: [...new Set(users)], tag_ids: tags.value() };
        if (stateInput.value.trim()) req.state = stateInput.value.trim();
        const button = form.querySelector('button[type=submit]');
        button.disabled = true;
        error.hidden = true;
        try {
          const c = await api('POST', tpath('/channels'), req);
          toast(tn('channels.created_toast', { name: data('span', null, c.name) }));
          close();
          await reload();
        } catch (e) {
          append(clear(error), problem(e));
          error.hidden = false;
        } finally {
          button.disabled = false;
        }
      });
      clear(formBox).append(form);
      name.focus();
    }

    function remove(c) {
      confirmDialog({
        title: tn('channels.delete_title', { name: data('span', null, c.name) }),
        message: t('channels.delete_message'),
        submit: t('common.delete'), danger: true,
        onSubmit: async () => {
          await api('DELETE', tpath('/channels/' + encodeURIComponent(c.id)));
          toast(tn('channels.deleted', { name: data('span', null, c.name) }));
          await reload();
        },
      });
    }

    async function reload() {
      const [lib, chans, r] = await Promise.all([loadLibrary(), loadChannels(), api('GET', tpath('/rules'))]);
      if (!current(gen)) return;
      groups = lib;
      channels = chans;
      rules = r.rules;
      render();
    }

    render();
    state.refresh = async () => { if (!state.editing) await reload(); };
  }

  // ---- start ----------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', async () => {
    try {
      await loadMessages();
    } catch {
      $('#boot-error').hidden = false;
      return;
    }
    useLanguage(pickLanguage(savedLanguage(), browserLanguages()));
    translateStatic();

    $('#login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = $('#token').value.trim();
      const button = ev.target.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        await signIn(token);
        $('#token').value = '';
      } catch (e) {
        state.token = null;
        showLogin(e.status === 401 ? () => t('login.token_refused') : () => problem(e));
      } finally {
        button.disabled = false;
      }
    });
    $('#logout').addEventListener('click', () => signOut());
    $('#tenant-select').addEventListener('change', (ev) => {
      state.tenant = ev.target.value;
      go(state.page);
    });
    window.addEventListener('hashchange', route);
    setInterval(tick, REFRESH_MS);

    $('#wecom-login').addEventListener('click', () => {
      const tenant = $('#wecom-tenant').value.trim();
      if (!tenant) return $('#wecom-tenant').focus();
      try { localStorage.setItem(TENANT_KEY, tenant); } catch { /* see savedLanguage */ }
      // tagsync sends the browser on to WeCom's login page, which sends it back signed in.
      location.href = `v1/tenants/${encodeURIComponent(tenant)}/login`;
    });
    try { $('#wecom-tenant').value = localStorage.getItem(TENANT_KEY) || ''; } catch { /* see savedLanguage */ }

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (!saved) {
      try {
        if (await resumeSession()) return;
      } catch { /* no session: the sign-in card */ }
      state.session = null;
      return showLogin();
    }
    signIn(saved).catch((e) => {
      state.token = null;
      showLogin(e.status === 401 ? () => t('login.saved_token_refused') : () => problem(e));
    });
  });
})();
