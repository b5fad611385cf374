// tagsync console: a small single-page app over the admin API (/admin/v1/…). Plain JS, no
// build step. Every element is built with textContent (never innerHTML from data), because
// the page holds the admin token and names come from three systems.
'use strict';

(() => {
  const TOKEN_KEY = 'tagsync.adminToken';
  // How often the visible page re-reads the API (states change as jobs run).
  const REFRESH_MS = 3000;
  // How often a running sync is polled for its progress.
  const RUN_POLL_MS = 700;

  const state = {
    token: null,
    tenants: [],
    tenant: null,
    page: 'overview',
    arg: null,
    gen: 0, // bumped on every navigation: late answers for an old page are dropped
    refresh: null, // the current page's refresh function, called by the timer
    refreshing: false,
    collapsed: new Set(), // library groups the operator folded
    editing: false, // a form on the page is being edited: do not re-render under the user
  };

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

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function toast(message, kind) {
    const t = h('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), role: 'status', dataset: { at: Date.now() } }, message);
    $('#toasts').append(t);
    // Two at a time: older notes make room.
    const all = document.querySelectorAll('.toast');
    for (let i = 0; i < all.length - 2; i++) all[i].remove();
    setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
  }

  // ---- formatting -----------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, '0');
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function ago(iso) {
    if (!iso) return 'never';
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return fmtTime(iso);
  }
  function duration(from, to) {
    if (!from) return '—';
    const ms = (to ? new Date(to) : new Date()) - new Date(from);
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }
  const humanize = (key) => String(key).replace(/[_.]+/g, ' ').replace(/^\w/, (c) => c.toUpperCase());
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + 's'}`;

  const STATE_LABEL = { synced: 'synced', pending: 'pending', failed: 'failed', read_only: 'read-only' };
  const STATE_HELP = {
    synced: 'The same on this side as in the hub',
    pending: 'On its way to this side',
    failed: 'Could not be carried to this side',
    read_only: "WeCom lets tagsync's app edit only tags it created: this one is used as it is",
  };
  function stateBadge(s) {
    return h('span', { class: 'badge ' + s, title: STATE_HELP[s] || s }, STATE_LABEL[s] || s);
  }

  // ---- API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + state.token };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res;
    try {
      res = await fetch('v1' + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'tagsync cannot be reached (' + e.message + ')');
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (res.status === 401 && state.token) {
      signOut('The admin token was refused. Sign in again.');
      throw new ApiError(401, 'unauthorized', 'the admin token was refused');
    }
    if (!res.ok) {
      const err = data && data.error;
      throw new ApiError(res.status, err ? err.code : 'http_' + res.status, err ? err.message : `HTTP ${res.status}`);
    }
    return data;
  }
  const tpath = (rest) => `/tenants/${encodeURIComponent(state.tenant)}${rest}`;

  // ---- sign-in and shell ----------------------------------------------------------------

  function showLogin(message) {
    $('#shell').hidden = true;
    $('#login').hidden = false;
    const err = $('#login-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('#token').focus();
  }

  function signOut(message) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    state.refresh = null;
    state.gen++;
    showLogin(message);
  }

  async function signIn(token) {
    state.token = token;
    const { tenants } = await api('GET', '/tenants');
    sessionStorage.setItem(TOKEN_KEY, token);
    state.tenants = tenants;
    $('#login').hidden = true;
    $('#shell').hidden = false;
    fillTenants();
    route();
  }

  function fillTenants() {
    const sel = clear($('#tenant-select'));
    for (const t of state.tenants) sel.append(h('option', { value: t.tenant }, t.tenant));
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
    sync: pageSync,
    audit: pageAudit,
    'dead-letters': pageDeadLetters,
  };

  function route() {
    if (!state.token) return;
    const { tenant, page, arg } = parseHash();
    const known = state.tenants.map((t) => t.tenant);
    if (!tenant || !known.includes(tenant) || !PAGES[page]) {
      if (known.length) {
        location.replace(link(PAGES[page] ? page : 'overview', null, known.includes(tenant) ? tenant : known[0]));
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
    for (const t of document.querySelectorAll('.toast')) if (Date.now() - Number(t.dataset.at) > 1500) t.remove();
    const main = clear($('#main'));
    if (!known.length) {
      main.append(
        h('div', { class: 'card empty' },
          h('b', {}, 'No tenants yet'),
          'Register one with ', h('code', {}, 'PUT /admin/v1/tenants/{tenant}'),
          ' (see the README), or start ', h('code', {}, 'tagsync serve --demo'), '.'));
      return;
    }
    PAGES[page](main, arg, gen).catch((e) => showError(main, e, gen));
    refreshDeadCount();
  }

  function showError(main, e, gen) {
    if (gen !== state.gen || e.status === 401) return;
    main.append(h('div', { class: 'form-error', role: 'alert' }, 'Could not load this page: ' + e.message));
  }

  const current = (gen) => gen === state.gen;

  // The timer: re-reads the visible page unless the operator is in the middle of something.
  async function tick() {
    if (!state.token || document.hidden || state.refreshing) return;
    if ($('#dialog').open || state.editing || !state.refresh) return;
    state.refreshing = true;
    const live = $('#live');
    try {
      await state.refresh();
      await refreshDeadCount();
      live.classList.remove('stale');
      live.textContent = 'live';
    } catch (e) {
      live.classList.add('stale');
      live.textContent = e.status === 0 ? 'offline' : 'refresh failed';
    } finally {
      state.refreshing = false;
    }
  }

  async function refreshDeadCount() {
    if (!state.tenant) return;
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
      for (const t of g.tags) add([t.id, t.wecom_id, t.mall_id], { kind: 'tag', name: t.name, group: g.name, groupId: g.id });
    }
    return byId;
  }

  // ---- dialogs --------------------------------------------------------------------------

  // A form in the modal dialog. `fields`: {name, label, type: text|number|textarea|select,
  // value, hint, options: [{value, label}], required}. `onSubmit(values)` may throw: the
  // message is shown in the dialog and it stays open.
  function openDialog({ title, fields = [], note, message, submit = 'Save', danger = false, onSubmit }) {
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
        } else if (f.type === 'select') {
          input = h('select', { id, name: f.name },
            f.options.map((o) => h('option', { value: o.value, selected: o.value === f.value }, o.label)));
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
        h('button', { type: 'button', class: 'btn', onclick: () => dlg.close() }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn ' + (danger ? 'btn-danger' : 'btn-primary') }, submit)));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.value;
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      error.hidden = true;
      try {
        await onSubmit(values);
        dlg.close();
      } catch (e) {
        error.textContent = e.message;
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
    ['tags_enabled', 'Customer-tag sync', 'The master switch. Off: tagsync still answers WeCom and the mall, but records and carries nothing.'],
    ['auto_sync', 'Automatic tag-library sync', 'Carry tag groups and tags created, renamed, reordered, moved or deleted on any side.'],
    ['member_sync', 'Automatic member-tag sync', 'Carry tags put on or taken off customers and members.'],
  ];

  async function pageOverview(main, _arg, gen) {
    const [tenant, status] = await Promise.all([api('GET', tpath('')), api('GET', tpath('/status'))]);
    if (!current(gen)) return;
    const switches = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Switches')),
      SWITCHES.map(([key, label, help]) => {
        const input = h('input', { type: 'checkbox', role: 'switch', 'aria-label': label, checked: tenant.settings[key], dataset: { setting: key } });
        input.addEventListener('change', async () => {
          input.disabled = true;
          try {
            const after = await api('PATCH', tpath('/settings'), { [key]: input.checked });
            input.checked = after[key];
            toast(`${label} turned ${after[key] ? 'on' : 'off'}`);
          } catch (e) {
            input.checked = !input.checked;
            toast(e.message, 'error');
          } finally {
            input.disabled = false;
          }
        });
        return h('div', { class: 'switch-row' },
          h('div', { class: 'label' }, h('b', {}, label), h('span', {}, help)),
          h('label', { class: 'toggle' }, input, h('span', { class: 'track' })));
      }));

    const queue = h('div', { class: 'card' });
    const renderQueue = (s) => {
      clear(queue).append(
        h('div', { class: 'card-head' }, h('h2', {}, 'Queue'), h('span', { class: 'spacer' }),
          h('span', { class: 'muted' }, s.queue.scope === 'deployment' ? 'whole deployment' : 'this tenant')),
        h('div', { class: 'stats' },
          h('div', { class: 'stat' }, h('b', {}, s.queue.pending), h('span', {}, 'pending')),
          h('div', { class: 'stat' }, h('b', {}, s.queue.in_flight), h('span', {}, 'in flight')),
          h('div', { class: 'stat' + (s.queue.dead ? ' alert' : '') }, h('b', {}, s.queue.dead),
            h('span', {}, s.queue.dead ? h('a', { href: link('dead-letters') }, 'dead letters') : 'dead letters'))),
        h('dl', { class: 'facts', style: 'margin-top:14px' },
          h('dt', {}, 'Last event'), h('dd', { title: fmtTime(s.last_event_at) }, ago(s.last_event_at)),
          h('dt', {}, 'Last manual or nightly run'),
          h('dd', {}, s.last_run
            ? [h('a', { href: link('sync', s.last_run.run_id) }, scopeLabel(s.last_run.scope)), ' ',
              h('span', { class: 'badge ' + s.last_run.status }, s.last_run.status), ' ',
              h('span', { class: 'muted' }, ago(s.last_run.started_at))]
            : h('span', { class: 'muted' }, 'none yet'))));
    };
    renderQueue(status);

    const connection = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Connection')),
      h('dl', { class: 'facts' },
        h('dt', {}, 'WeCom corp'), h('dd', {}, h('span', { class: 'mono' }, tenant.corp_id)),
        h('dt', {}, 'WeCom app'), h('dd', {}, 'AgentId ', h('span', { class: 'mono' }, tenant.agent_id)),
        h('dt', {}, 'Mall API'), h('dd', {}, h('span', { class: 'mono' }, tenant.mall_api_base)),
        h('dt', {}, 'Registered'), h('dd', {}, fmtTime(tenant.created_at)),
        h('dt', {}, 'Secrets'), h('dd', { class: 'muted' }, 'write-only: never shown')));

    const actions = h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Manual sync')),
      h('p', { class: 'muted' }, 'Compare all three sides now and repair whatever events missed.'),
      h('div', { class: 'inline-form' },
        h('button', { class: 'btn btn-primary', onclick: () => startRun('library') }, 'Sync tags'),
        h('button', { class: 'btn', onclick: () => startRun('members') }, 'Sync member tags'),
        h('a', { href: link('sync'), style: 'margin-left:8px' }, 'Runs and reports →')));

    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), h('span', { class: 'muted' }, 'tenant ', h('b', {}, state.tenant))),
      h('div', { class: 'grid-2' }, switches, queue, actions, connection),
    ]);
    state.refresh = async () => {
      const s = await api('GET', tpath('/status'));
      if (current(gen)) renderQueue(s);
    };
  }

  // ---- page: tag library ----------------------------------------------------------------

  async function pageLibrary(main, _arg, gen) {
    let groups = await loadLibrary();
    if (!current(gen)) return;
    let filter = '';
    const summary = h('span', { class: 'summary' });
    const tbody = h('tbody');
    const search = h('input', {
      type: 'search', class: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter by name',
      oninput: () => { filter = search.value.trim().toLowerCase(); render(); },
    });
    append(main, [
      h('div', { class: 'page-head' },
        h('h1', {}, 'Tag library'), summary, h('span', { class: 'spacer' }), search,
        h('button', { class: 'btn btn-primary', onclick: () => newGroup() }, '+ New group')),
      h('p', { class: 'page-sub' },
        'Every tag group and tag, and where each stands in WeCom and the mall. Changes made here reach both; changes made there show up here. Larger order comes first.'),
      h('div', { class: 'legend' }, 'States:', ['synced', 'pending', 'failed', 'read_only'].map(stateBadge)),
      h('div', { class: 'card flush', style: 'margin-top:10px' },
        h('table', { class: 'tree' },
          h('thead', {}, h('tr', {},
            h('th', { class: 'col-name' }, 'Name'), h('th', { class: 'num col-order' }, 'Order'),
            h('th', { class: 'col-side' }, 'WeCom'), h('th', { class: 'col-side' }, 'Mall'), h('th', { class: 'col-actions' }, ''))),
          tbody)),
    ]);

    const sideCell = (obj, side) => {
      const s = obj.sync[side];
      const id = obj[side + '_id'];
      const err = obj.errors && obj.errors[side];
      const label = side === 'wecom' ? 'WeCom' : 'mall';
      return h('td', { dataset: { side } },
        h('div', { class: 'state' },
          h('div', { class: 'line' }, stateBadge(s),
            id ? h('span', { class: 'id', title: `${label} id ${id}` }, id) : h('span', { class: 'id', title: `not created in ${label === 'mall' ? 'the mall' : label} yet` }, 'no id yet')),
          err ? h('span', { class: 'error-text' }, err) : null));
    };

    function render() {
      let objects = 0;
      const counts = { synced: 0, pending: 0, failed: 0, read_only: 0 };
      const rows = [];
      const visible = groups.filter((g) => !filter || g.name.toLowerCase().includes(filter) ||
        g.tags.some((t) => t.name.toLowerCase().includes(filter)));
      groups.forEach((g, gi) => {
        for (const o of [g, ...g.tags]) {
          objects++;
          counts[o.sync.wecom] = (counts[o.sync.wecom] || 0) + 1;
          counts[o.sync.mall] = (counts[o.sync.mall] || 0) + 1;
        }
        if (!visible.includes(g)) return;
        const open = !state.collapsed.has(g.id) || !!filter;
        rows.push(h('tr', { class: 'group-row', dataset: { kind: 'group', id: g.id, name: g.name } },
          h('td', { class: 'name', title: 'hub id ' + g.id },
            h('button', {
              class: 'caret', 'aria-label': open ? 'Fold' : 'Unfold', 'aria-expanded': String(open),
              onclick: () => { if (open) state.collapsed.add(g.id); else state.collapsed.delete(g.id); render(); },
            }, open ? '▼' : '▶'),
            g.name, h('span', { class: 'tag-count' }, plural(g.tags.length, 'tag'))),
          h('td', { class: 'num' }, g.order),
          sideCell(g, 'wecom'), sideCell(g, 'mall'),
          h('td', { class: 'actions' },
            h('button', { class: 'icon-btn', title: 'Add a tag to this group', onclick: () => newTag(g) }, '+ Tag'),
            h('button', { class: 'icon-btn', title: 'Move up', 'aria-label': 'Move group up', disabled: gi === 0, onclick: () => swap(groups, gi, gi - 1, 'tag-groups') }, '↑'),
            h('button', { class: 'icon-btn', title: 'Move down', 'aria-label': 'Move group down', disabled: gi === groups.length - 1, onclick: () => swap(groups, gi, gi + 1, 'tag-groups') }, '↓'),
            h('button', { class: 'icon-btn', onclick: () => editGroup(g) }, 'Edit'),
            h('button', { class: 'icon-btn danger', onclick: () => deleteGroup(g) }, 'Delete'))));
        if (!open) return;
        g.tags.forEach((t, ti) => {
          if (filter && !g.name.toLowerCase().includes(filter) && !t.name.toLowerCase().includes(filter)) return;
          rows.push(h('tr', { class: 'tag-row', dataset: { kind: 'tag', id: t.id, name: t.name, group: g.name } },
            h('td', { class: 'name', title: 'hub id ' + t.id }, t.name),
            h('td', { class: 'num' }, t.order),
            sideCell(t, 'wecom'), sideCell(t, 'mall'),
            h('td', { class: 'actions' },
              h('button', { class: 'icon-btn', title: 'Move up', 'aria-label': 'Move tag up', disabled: ti === 0, onclick: () => swap(g.tags, ti, ti - 1, 'tags') }, '↑'),
              h('button', { class: 'icon-btn', title: 'Move down', 'aria-label': 'Move tag down', disabled: ti === g.tags.length - 1, onclick: () => swap(g.tags, ti, ti + 1, 'tags') }, '↓'),
              h('button', { class: 'icon-btn', onclick: () => editTag(g, t) }, 'Edit'),
              h('button', { class: 'icon-btn danger', onclick: () => deleteTag(t) }, 'Delete'))));
        });
      });
      clear(tbody).append(...rows);
      if (!groups.length) {
        tbody.append(h('tr', {}, h('td', { colspan: 5 },
          h('div', { class: 'empty' }, h('b', {}, 'No tag groups yet'),
            'Create one here, or in WeCom or the mall: it shows up here as soon as tagsync hears of it.'))));
      }
      const tags = groups.reduce((n, g) => n + g.tags.length, 0);
      const problems = [];
      if (counts.pending) problems.push(h('span', {}, h('b', {}, counts.pending), ' pending'));
      if (counts.failed) problems.push(h('span', {}, h('b', {}, counts.failed), ' failed'));
      append(clear(summary), [
        plural(groups.length, 'group'), ' · ', plural(tags, 'tag'),
        objects === 0 ? '' : [' · ', problems.length ? problems.flatMap((p, i) => (i ? [', ', p] : [p])) : 'all carried to both sides'],
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

    function newGroup() {
      openDialog({
        title: 'New tag group',
        fields: [
          { name: 'name', label: 'Name', required: true, placeholder: 'e.g. 客户等级' },
          { name: 'order', label: 'Order', type: 'number', hint: 'Optional. Larger comes first.' },
          { name: 'tags', label: 'Tags', type: 'textarea', placeholder: 'One per line', hint: 'Optional. WeCom keeps no empty groups: the group reaches WeCom with its first tag.' },
        ],
        submit: 'Create group',
        onSubmit: async (v) => {
          const tags = v.tags.split('\n').map((s) => s.trim()).filter(Boolean).map((name) => ({ name }));
          const g = await api('POST', tpath('/tag-groups'), { name: v.name.trim(), order: optOrder(v.order), tags });
          toast(`Group “${g.name}” created`);
          await reload();
          flash(g.id);
        },
      });
    }
    function newTag(g) {
      openDialog({
        title: `New tag in “${g.name}”`,
        fields: [
          { name: 'name', label: 'Name', required: true },
          { name: 'order', label: 'Order', type: 'number', hint: 'Optional. Larger comes first.' },
        ],
        submit: 'Create tag',
        onSubmit: async (v) => {
          const t = await api('POST', tpath('/tags'), { group_id: g.id, name: v.name.trim(), order: optOrder(v.order) });
          toast(`Tag “${t.name}” created`);
          state.collapsed.delete(g.id);
          await reload();
          flash(t.id);
        },
      });
    }
    function changed(v, obj) {
      const patch = {};
      if (v.name.trim() !== obj.name) patch.name = v.name.trim();
      if (v.order !== '' && Number(v.order) !== obj.order) patch.order = Number(v.order);
      return patch;
    }
    const readOnlyNote = (obj) => (obj.sync.wecom === 'read_only'
      ? 'This one was made in WeCom outside tagsync, which lets only its creator edit it: a rename reaches the hub and the mall, and WeCom keeps its own name.'
      : null);
    function editGroup(g) {
      openDialog({
        title: 'Edit group',
        fields: [
          { name: 'name', label: 'Name', value: g.name, required: true },
          { name: 'order', label: 'Order', type: 'number', value: g.order },
        ],
        note: readOnlyNote(g),
        onSubmit: async (v) => {
          const patch = changed(v, g);
          if (!Object.keys(patch).length) return;
          await api('PATCH', tpath('/tag-groups/' + encodeURIComponent(g.id)), patch);
          toast('Group saved');
          await reload();
          flash(g.id);
        },
      });
    }
    function editTag(g, t) {
      openDialog({
        title: 'Edit tag',
        fields: [
          { name: 'name', label: 'Name', value: t.name, required: true },
          { name: 'order', label: 'Order', type: 'number', value: t.order },
          { name: 'group_id', label: 'Group', type: 'select', value: g.id, options: groups.map((x) => ({ value: x.id, label: x.name })),
            hint: 'Moving a tag keeps it on every customer; in WeCom, which cannot move tags, it is re-created in the new group.' },
        ],
        note: readOnlyNote(t),
        onSubmit: async (v) => {
          const patch = changed(v, t);
          if (v.group_id !== g.id) patch.group_id = v.group_id;
          if (!Object.keys(patch).length) return;
          await api('PATCH', tpath('/tags/' + encodeURIComponent(t.id)), patch);
          toast(patch.group_id ? 'Tag moved' : 'Tag saved');
          if (patch.group_id) state.collapsed.delete(patch.group_id);
          await reload();
          flash(t.id);
        },
      });
    }
    function deleteGroup(g) {
      confirmDialog({
        title: `Delete group “${g.name}”?`,
        message: `The group and its ${plural(g.tags.length, 'tag')} are deleted in the hub, WeCom and the mall, and taken off every customer and member.`,
        submit: 'Delete group', danger: true,
        onSubmit: async () => {
          await api('DELETE', tpath('/tag-groups/' + encodeURIComponent(g.id)));
          toast(`Group “${g.name}” deleted`);
          await reload();
        },
      });
    }
    function deleteTag(t) {
      confirmDialog({
        title: `Delete tag “${t.name}”?`,
        message: 'It is deleted in the hub, WeCom and the mall, and taken off every customer and member.',
        submit: 'Delete tag', danger: true,
        onSubmit: async () => {
          await api('DELETE', tpath('/tags/' + encodeURIComponent(t.id)));
          toast(`Tag “${t.name}” deleted`);
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
        toast(e.message, 'error');
      }
    }

    render();
    state.refresh = reload;
  }

  // ---- page: members --------------------------------------------------------------------

  async function pageMembers(main, arg, gen) {
    const input = h('input', { type: 'text', name: 'member', placeholder: 'Mall member id, e.g. m_14', value: arg || '', 'aria-label': 'Mall member id', spellcheck: 'false' });
    const result = h('div', { class: 'stack' });
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, 'Members')),
      h('p', { class: 'page-sub' },
        "Look up a mall member to see its tags and edit them. A change reaches the member in the mall and every salesperson's relation with the WeCom customer it is bound to."),
      h('form', {
        class: 'card inline-form', onsubmit: (ev) => {
          ev.preventDefault();
          const id = input.value.trim();
          if (id) go('members', id);
        },
      }, input, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Look up')),
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
      if (current(gen)) result.append(h('div', { class: 'card empty' }, h('b', {}, `No member “${arg}”`), 'tagsync has not seen this mall member: check the id, or wait for the mall to report it.'));
      return;
    }
    if (!current(gen)) return;

    const names = () => tagIndex(groups);
    const chips = (ids) => {
      const idx = names();
      if (!ids.length) return h('span', { class: 'muted' }, 'no tags');
      return ids.map((id) => {
        const t = idx.get(id);
        return h('span', { class: 'chip', title: 'hub id ' + id }, t ? [h('small', {}, t.group + ' /'), t.name] : id);
      });
    };

    function render() {
      clear(result);
      const view = h('div', { class: 'card' },
        h('div', { class: 'member-head' },
          h('h2', {}, 'Member ', h('span', { class: 'mono', style: 'font-size:16px' }, member.member_id)),
          member.external_userid
            ? h('span', { class: 'badge plain' }, 'bound to WeCom customer ', h('span', { class: 'mono' }, member.external_userid))
            : h('span', { class: 'badge plain' }, 'not bound to a WeCom customer'),
          h('span', { class: 'spacer', style: 'flex:1' }),
          h('button', { class: 'btn btn-primary', onclick: edit }, 'Edit tags')),
        h('h3', { style: 'margin-top:16px' }, 'Tags'),
        h('div', { dataset: { testid: 'member-tags' } }, chips(member.tag_ids)));
      const relations = h('div', { class: 'card flush' },
        h('div', { style: 'padding:14px 20px 6px' }, h('h2', {}, 'In WeCom, per salesperson')),
        member.relations.length
          ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Salesperson (userid)'), h('th', {}, 'Tags on the customer'))),
            h('tbody', {}, member.relations.map((r) => h('tr', {}, h('td', { class: 'mono' }, r.userid), h('td', {}, chips(r.tag_ids))))))
          : h('div', { class: 'empty' }, member.external_userid ? 'No salesperson follows this customer.' : 'The member is not bound to a WeCom customer.'));
      result.append(view, relations);
    }

    function edit() {
      state.editing = true;
      const had = new Set(member.tag_ids);
      const form = h('form', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Edit tags of ', h('span', { class: 'mono' }, member.member_id))),
        h('div', { class: 'tag-picker' },
          groups.map((g) => h('fieldset', {}, h('legend', {}, g.name),
            g.tags.length ? g.tags.map((t) => h('label', {},
              h('input', { type: 'checkbox', value: t.id, checked: had.has(t.id) }), t.name)) : h('span', { class: 'muted' }, 'no tags')))),
        h('div', { class: 'buttons', style: 'display:flex;gap:8px;justify-content:flex-end;margin-top:16px' },
          h('button', { type: 'button', class: 'btn', onclick: () => { state.editing = false; render(); } }, 'Cancel'),
          h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save tags')));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const checked = new Set([...form.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value));
        const add = [...checked].filter((id) => !had.has(id));
        const remove = [...had].filter((id) => !checked.has(id));
        state.editing = false;
        if (!add.length && !remove.length) return render();
        try {
          await api('POST', tpath(`/members/${encodeURIComponent(member.member_id)}/tags`), { add, remove });
          toast(`Saved: ${plural(add.length, 'tag')} added, ${remove.length} removed; carrying to WeCom and the mall`);
          await reload();
        } catch (e) {
          toast(e.message, 'error');
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

  const SCOPES = { library: 'Sync tags', members: 'Sync member tags', all: 'Sync everything' };
  const scopeLabel = (s) => SCOPES[s] || s;

  // Starts a run and shows it; 409 (a run is going) shows the running one instead.
  async function startRun(scope) {
    try {
      const { run_id } = await api('POST', tpath('/sync'), { scope });
      go('sync', run_id);
    } catch (e) {
      if (e.status === 409) {
        toast('A sync of this tenant is already running: showing it');
        const running = await runningRun();
        go('sync', running ? running.run_id : null);
      } else if (e.status === 501) {
        toast('This server does not offer manual syncs yet (501)', 'error');
      } else {
        toast(e.message, 'error');
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

  // Counter names are `{what}.{how}.{side}` (e.g. `tags.renamed.wecom`).
  const SIDE_WORDS = { wecom: 'in WeCom', mall: 'in the mall', hub: 'in the hub' };
  function counterLabel(key) {
    const parts = String(key).split('.');
    const words = parts.map((p, i) => (i > 0 && SIDE_WORDS[p] ? SIDE_WORDS[p] : p.replace(/_/g, ' ')));
    const text = words.join(' ');
    return text.charAt(0).toUpperCase() + text.slice(1);
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
            ? keys.map((k) => h('tr', {}, h('td', { title: k }, counterLabel(k)), h('td', { class: 'num' }, num(counts[k]))))
            : h('tr', {}, h('td', { class: 'muted', colspan: 2 }, 'none')))));
    };
    const found = Object.keys(run.drift || {}).length;
    const repaired = Object.keys(run.repaired || {}).length;
    if (!found && !repaired) {
      return h('div', { class: 'empty', dataset: { testid: 'run-report' } }, run.status === 'running'
        ? 'Nothing found yet.'
        : [h('b', {}, 'No drift'), 'All three sides already agreed.']);
    }
    return h('div', { class: 'report-grid', dataset: { testid: 'run-report' } },
      table('Drift found', run.drift, 'drift'),
      table('Repaired', run.repaired, 'repaired'));
  }

  // What the run left alone and why: counts of skips, and matches it would not guess.
  function skippedList(run) {
    const skipped = Object.entries(run.skipped || {});
    const ambiguous = run.ambiguous || [];
    if (!skipped.length && !ambiguous.length) return null;
    return h('div', { style: 'margin-top:16px' },
      h('h3', {}, 'Left for you to decide'),
      skipped.length ? h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Skipped'), h('th', { class: 'num' }, 'Count'))),
        h('tbody', {}, skipped.map(([k, v]) => h('tr', {}, h('td', { title: k }, counterLabel(k)), h('td', { class: 'num' }, v))))) : null,
      ambiguous.length ? h('ul', { class: 'ambiguous' }, ambiguous.map((a) => h('li', {}, a))) : null);
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
        h('h2', {}, scopeLabel(run.scope)),
        h('span', { class: 'badge ' + run.status }, run.status),
        h('span', { class: 'spacer' }),
        h('span', { class: 'id' }, run.run_id)),
      bar,
      h('div', { class: 'run-meta' },
        h('span', {}, 'Pages ', h('b', {}, known ? `${done} / ${known}` : done)),
        h('span', {}, 'Compared ', h('b', {}, p.entities_compared ?? 0)),
        h('span', {}, 'Started ', h('b', {}, fmtTime(run.started_at))),
        h('span', {}, run.status === 'running' ? 'Running for ' : 'Took ', h('b', {}, duration(run.started_at, run.finished_at)))),
      run.error ? h('p', { class: 'form-error' }, run.error) : null,
      h('h3', { style: 'margin-top:18px' }, 'Report'),
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
    }, scopeLabel(scope));
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, 'Manual sync')),
      h('p', { class: 'page-sub' }, 'Compare WeCom, the mall and the hub now and repair whatever events missed. The nightly run does the same for every tenant.'),
      notice,
      h('div', { class: 'actions-row' },
        h('div', { class: 'card action-card' },
          h('div', { class: 'text' }, h('b', {}, 'Sync tags'), h('span', {}, 'Tag groups and tags: names, order, groups, deletions.')),
          button('library', true)),
        h('div', { class: 'card action-card' },
          h('div', { class: 'text' }, h('b', {}, 'Sync member tags'), h('span', {}, 'Which tags every bound member and customer carries.')),
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
        h('div', { style: 'padding:14px 20px 6px' }, h('h2', {}, 'Recent runs')),
        runs.length
          ? h('table', {},
            h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'What'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Found'), h('th', { class: 'num' }, 'Repaired'), h('th', {}, 'Took'))),
            h('tbody', {}, runs.map((r) => {
              const sum = (m) => Object.values(m || {}).reduce((n, v) => n + (Number(v) || 0), 0);
              return h('tr', {},
                h('td', { class: 'nowrap' }, h('a', { href: link('sync', r.run_id) }, fmtTime(r.started_at))),
                h('td', {}, scopeLabel(r.scope), ' ', h('span', { class: 'side ' + (r.origin || 'operator') }, r.origin === 'system' ? 'nightly' : r.origin || 'operator')),
                h('td', {}, h('span', { class: 'badge ' + r.status }, r.status)),
                h('td', { class: 'num' }, sum(r.drift)), h('td', { class: 'num' }, sum(r.repaired)),
                h('td', { class: 'nowrap' }, r.status === 'running' ? '…' : duration(r.started_at, r.finished_at)));
            })))
          : h('div', { class: 'empty' }, 'No runs yet.')));
    }

    // A run being watched is polled quickly until it ends; the page timer does the rest.
    async function watch(runId) {
      for (;;) {
        let run;
        try {
          run = await api('GET', tpath('/sync/' + encodeURIComponent(runId)));
        } catch (e) {
          if (!current(gen)) return;
          clear(panel).append(h('p', { class: 'form-error' }, e.status === 404 ? `No run ${runId}.` : e.message));
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
        notice.append(h('p', { class: 'notice' }, 'This server does not offer manual syncs yet: it answered 501 Not Implemented. Events are still carried as they arrive.'));
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
      if (!v.length) return 'none';
      const items = v.slice(0, 8).map((x) => fmtValue(x, idx));
      return [items.flatMap((x, i) => (i ? [', ', x] : [x])), v.length > 8 ? ` … (${v.length})` : ''];
    }
    if (typeof v === 'object') return Object.keys(v).length ? '{…}' : '—';
    // Epoch milliseconds (the mall's `occurred_at` in recorded events).
    if (typeof v === 'number' && v > 1e12 && v < 1e13) return fmtTime(new Date(v).toISOString());
    const str = String(v);
    const known = idx.get(str);
    if (known) return h('span', { title: str }, known.name);
    if (LONG_ID.test(str)) return h('span', { class: 'mono', title: str }, str.slice(0, 8) + '…');
    return str;
  }
  // Fields that are bookkeeping rather than the change itself.
  // (An event's whole body is in the cell's tooltip.)
  const QUIET_KEYS = new Set(['id', 'errors', 'sync', 'version', 'created_at', 'updated_at', 'body', 'side']);
  const KEY_LABEL = { group_id: 'group', tag_ids: 'tags', wecom_id: 'WeCom id', mall_id: 'mall id' };
  const keyLabel = (k) => KEY_LABEL[k] || String(k).replace(/_/g, ' ');

  function pairs(obj, idx) {
    const keys = Object.keys(obj).filter((k) => !QUIET_KEYS.has(k) && obj[k] !== null && obj[k] !== undefined);
    return keys.map((k) => h('span', { class: 'pair' }, h('span', { class: 'muted' }, keyLabel(k) + ' '), fmtValue(obj[k], idx)));
  }

  function describeChange(before, after, idx) {
    const isObj = (x) => x && typeof x === 'object' && !Array.isArray(x);
    if (isObj(before) && isObj(after)) {
      const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
        .filter((k) => !QUIET_KEYS.has(k) && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
      if (!keys.length) return h('span', { class: 'faint' }, 'no visible change');
      return keys.map((k) => h('span', { class: 'pair' }, h('span', { class: 'muted' }, keyLabel(k) + ' '),
        h('s', { class: 'faint' }, fmtValue(before[k], idx)), ' → ', fmtValue(after[k], idx)));
    }
    if (isObj(after)) return pairs(after, idx);
    if (after !== null && after !== undefined) return fmtValue(after, idx);
    if (isObj(before)) return [h('span', { class: 'muted' }, 'was '), pairs(before, idx)];
    if (before !== null && before !== undefined) return [h('span', { class: 'muted' }, 'was '), fmtValue(before, idx)];
    return '';
  }

  function describeEntity(entity, idx) {
    const [kind, ...rest] = String(entity).split(':');
    const id = rest.join(':');
    const known = idx.get(id);
    if (known) return [humanize(kind) + ' ', h('b', {}, known.name)];
    return [humanize(kind) + ' ', h('span', { class: 'mono' }, id || entity)];
  }

  async function pageAudit(main, _arg, gen) {
    let entries = [];
    let cursor = null;
    let pages = 1;
    let filter = '';
    const idx = tagIndex(await loadLibrary());
    const tbody = h('tbody');
    const more = h('button', { class: 'btn', onclick: () => loadMore() }, 'Load older entries');
    const search = h('input', { type: 'search', class: 'search', placeholder: 'Filter', 'aria-label': 'Filter entries', oninput: () => { filter = search.value.trim().toLowerCase(); render(); } });
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, 'Audit log'), h('span', { class: 'spacer' }), search),
      h('p', { class: 'page-sub' }, 'Every operator action and every change applied on a side, newest first. Side: where it was applied; origin: who caused it.'),
      h('div', { class: 'card flush' },
        h('table', { class: 'audit' },
          h('colgroup', {}, h('col', { style: 'width:158px' }), h('col', { style: 'width:92px' }), h('col', { style: 'width:200px' }),
            h('col', { style: 'width:22%' }), h('col'), h('col', { style: 'width:110px' })),
          h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Side'), h('th', {}, 'Action'), h('th', {}, 'Entity'), h('th', {}, 'Change'), h('th', {}, 'Origin'))),
          tbody)),
      h('div', { style: 'margin-top:12px' }, more),
    ]);

    function render() {
      const shown = entries.filter((e) => !filter || [e.action, e.entity, e.side, e.origin, JSON.stringify(e.after), JSON.stringify(e.before)]
        .some((s) => String(s).toLowerCase().includes(filter)));
      clear(tbody).append(...shown.map((e) => h('tr', {},
        h('td', { class: 'nowrap', title: e.at }, fmtTime(e.at)),
        h('td', {}, h('span', { class: 'side ' + e.side }, e.side)),
        h('td', { class: 'nowrap' }, h('code', {}, e.action)),
        h('td', { class: 'entity', title: e.entity }, describeEntity(e.entity, idx)),
        h('td', { class: 'change', title: e.after && e.after.body ? JSON.stringify(e.after.body, null, 1) : null }, describeChange(e.before, e.after, idx)),
        h('td', {}, h('span', { class: 'side ' + e.origin }, e.origin)))));
      if (!shown.length) tbody.append(h('tr', {}, h('td', { colspan: 6 }, h('div', { class: 'empty' }, entries.length ? 'Nothing matches the filter.' : 'Nothing recorded yet.'))));
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
    // Only the first page refreshes itself: older pages stay as loaded.
    state.refresh = async () => {
      if (pages > 1) return;
      const page = await api('GET', tpath('/audit?limit=100'));
      if (!current(gen)) return;
      entries = page.entries;
      cursor = page.next_cursor;
      render();
    };
  }

  // ---- page: dead letters ---------------------------------------------------------------

  function describeJob(d, idx) {
    const job = d.job || {};
    const name = (id) => (idx.get(id) ? idx.get(id).name : null);
    switch (d.kind) {
      case 'sync_tag': return ['Carry tag ', h('b', {}, name(job.tag) || job.tag)];
      case 'sync_group': return ['Carry group ', h('b', {}, name(job.group) || job.group)];
      case 'sync_member': return ['Carry the tags of member ', h('b', { class: 'mono' }, job.member)];
      case 'inbound': {
        const ev = job.event || {};
        if (ev.side === 'mall') return ['Mall event ', h('code', {}, ev.event_type)];
        if (ev.side === 'wecom_tag') return ['WeCom tag event ', h('code', {}, ev.change)];
        if (ev.side === 'wecom_contact') return ['WeCom contact event ', h('code', {}, ev.change)];
        return 'Inbound event';
      }
      case 'probe': return ['Diagnostic probe', job.note ? ` (${job.note})` : ''];
      default: return d.kind || 'unreadable job';
    }
  }

  async function pageDeadLetters(main, _arg, gen) {
    let letters = [];
    let idx = tagIndex(await loadLibrary());
    const selected = new Set();
    const tbody = h('tbody');
    const body = h('div');
    const redriveSel = h('button', { class: 'btn', onclick: () => redrive([...selected]) }, 'Redrive selected');
    const redriveAll = h('button', { class: 'btn btn-primary', onclick: () => redrive(null) }, 'Redrive all');
    const all = h('input', {
      type: 'checkbox', 'aria-label': 'Select all',
      onchange: () => { for (const d of letters) (all.checked ? selected.add(d.message_id) : selected.delete(d.message_id)); render(); },
    });
    append(main, [
      h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters'), h('span', { class: 'spacer' }), redriveSel, redriveAll),
      h('p', { class: 'page-sub' }, 'Jobs that failed for good, or on every try, are parked here with their last error. Fix the cause (a permission, a trusted IP, a token), then send them back to the queue.'),
      body,
    ]);
    const table = h('div', { class: 'card flush' },
      h('table', {},
        h('thead', {}, h('tr', {}, h('th', { style: 'width:1%' }, all), h('th', {}, 'Parked'), h('th', {}, 'Job'), h('th', {}, 'Last error'), h('th', { class: 'num' }, 'Tries'))),
        tbody));

    function render() {
      for (const id of [...selected]) if (!letters.some((d) => d.message_id === id)) selected.delete(id);
      clear(body);
      redriveAll.disabled = !letters.length;
      redriveSel.disabled = !selected.size;
      redriveSel.textContent = selected.size ? `Redrive selected (${selected.size})` : 'Redrive selected';
      if (!letters.length) {
        body.append(h('div', { class: 'card empty', dataset: { testid: 'no-dead-letters' } }, h('b', {}, 'No dead letters'), 'Every job of this tenant was applied or is still on its way.'));
        return;
      }
      all.checked = selected.size === letters.length;
      clear(tbody).append(...letters.map((d) => {
        const box = h('input', {
          type: 'checkbox', 'aria-label': 'Select', checked: selected.has(d.message_id),
          onchange: () => { if (box.checked) selected.add(d.message_id); else selected.delete(d.message_id); render(); },
        });
        return h('tr', { dataset: { kind: d.kind || '' } },
          h('td', {}, box),
          h('td', { class: 'nowrap', title: d.parked_at || '' }, d.parked_at ? fmtTime(d.parked_at) : '—'),
          h('td', {}, describeJob(d, idx), h('div', { class: 'id' }, 'job ', d.job_id || d.message_id)),
          h('td', { class: 'error-text', style: 'font-size:13px' }, d.error),
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
        const res = await api('POST', tpath('/dead-letters:redrive'), ids ? { message_ids: ids } : undefined);
        toast(`${plural(res.redriven, 'job')} sent back to the queue`);
        selected.clear();
        await reload();
        await refreshDeadCount();
      } catch (e) {
        toast(e.message, 'error');
      }
    }
    await reload();
    state.refresh = reload;
  }

  // ---- start ----------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('#login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = $('#token').value.trim();
      const button = ev.target.querySelector('button');
      button.disabled = true;
      try {
        await signIn(token);
        $('#token').value = '';
      } catch (e) {
        state.token = null;
        showLogin(e.status === 401 ? 'That token was refused.' : e.message);
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

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (!saved) return showLogin();
    signIn(saved).catch((e) => {
      state.token = null;
      showLogin(e.status === 401 ? 'The saved token was refused. Sign in again.' : e.message);
    });
  });
})();
