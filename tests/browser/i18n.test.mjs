// The console's message table against its code: every key the page uses exists in both
// languages, the languages agree key for key and placeholder for placeholder, no key is
// unused, the Chinese is Chinese, and no English text is left in app.js or index.html.
//
//   cd tests/browser && npm ci && node --test i18n.test.mjs     (infra/browser-test.sh runs it)
//
// app.js is parsed with acorn, so the checks look at real string literals, not at text that
// happens to look like one.
//
// What counts as English left in app.js (a heuristic, stated so it can be argued with):
// a string literal is text when it holds a Capitalised word or two words of letters (`Sign
// in`, `no tags`), or, where it reaches the page (a child of h(), a toast, a textContent, a
// title/placeholder/aria-label/label/hint/message/submit/note), any word at all; a template
// piece is text when it holds any word (`${n} min ago`).
// Not text: keys (the first argument of t/tn/has/label), object keys, class and style values,
// CSS selectors, console output, directives, and tokens with digits, `_`, `-`, `.`, `:` or
// `/` in them (ids, codes, paths). A lone lower-case word that reaches the page through a
// variable (`return 'never'`) passes for a code here: the browser tests add the other half,
// in Chinese the rendered pages show no English outside values marked translate="no".

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as acorn from 'acorn';
import { LATIN_OK } from './latin.mjs';

const CONSOLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../shared/console');
const APP_JS = fs.readFileSync(path.join(CONSOLE, 'app.js'), 'utf8');
const INDEX = fs.readFileSync(path.join(CONSOLE, 'index.html'), 'utf8');
const TABLE = JSON.parse(fs.readFileSync(path.join(CONSOLE, 'messages.json'), 'utf8'));
const LANGS = ['zh-CN', 'en'];

// LATIN_OK: the Latin words the Chinese messages may hold; language names (`lang.*`) and
// `code` are exempt.
// Latin words app.js may hold in a literal: the HTTP auth scheme.
const CODE_WORDS = new Set(['Bearer']);

// ---- the table ----------------------------------------------------------------------------

const placeholders = (msg) => {
  const forms = typeof msg === 'object' ? Object.values(msg) : [msg];
  const names = new Set();
  for (const f of forms) {
    // `…` is code: braces there are shown, not filled in.
    for (const m of f.replace(/`[^`]*`/g, '').matchAll(/\{(\w+)\}/g)) names.add(m[1]);
  }
  return [...names].sort();
};

test('both languages have exactly the same keys', () => {
  const [zh, en] = LANGS.map((l) => Object.keys(TABLE[l]).sort());
  assert.deepEqual(Object.keys(TABLE).sort(), [...LANGS].sort(), 'the table holds zh-CN and en, nothing else');
  assert.deepEqual(zh.filter((k) => !en.includes(k)), [], 'keys only zh-CN has');
  assert.deepEqual(en.filter((k) => !zh.includes(k)), [], 'keys only en has');
});

test('every message has the same placeholders in both languages, and counted ones an "other" form', () => {
  const bad = [];
  for (const key of Object.keys(TABLE.en)) {
    const [zh, en] = LANGS.map((l) => TABLE[l][key]);
    if (JSON.stringify(placeholders(zh)) !== JSON.stringify(placeholders(en))) {
      bad.push(`${key}: zh-CN {${placeholders(zh)}} but en {${placeholders(en)}}`);
    }
    for (const [lang, msg] of [['zh-CN', zh], ['en', en]]) {
      if (typeof msg === 'string') {
        if (!msg.trim()) bad.push(`${key} (${lang}) is empty`);
        continue;
      }
      if (!msg || typeof msg !== 'object' || typeof msg.other !== 'string') {
        bad.push(`${key} (${lang}) is neither a string nor {one?, other}`);
      } else if (!placeholders(msg).includes('count')) {
        bad.push(`${key} (${lang}) has plural forms but no {count}`);
      }
    }
  }
  assert.deepEqual(bad, []);
});

test('the Chinese messages contain no English words but the kept terms', () => {
  const bad = [];
  for (const [key, msg] of Object.entries(TABLE['zh-CN'])) {
    if (key.startsWith('lang.')) continue;
    const forms = typeof msg === 'object' ? Object.values(msg) : [msg];
    for (const f of forms) {
      const text = f.replace(/`[^`]*`/g, '').replace(/\{\w+\}/g, '');
      for (const w of text.match(/[A-Za-z]{2,}/g) || []) if (!LATIN_OK.has(w)) bad.push(`${key}: ${w}`);
    }
  }
  assert.deepEqual(bad, []);
});

// ---- app.js -------------------------------------------------------------------------------

const AST = acorn.parse(APP_JS, { ecmaVersion: 'latest', sourceType: 'script', locations: true });

// Every node with its ancestors (nearest last).
function walk(node, visit, ancestors = []) {
  if (!node || typeof node.type !== 'string') return;
  visit(node, ancestors);
  const next = ancestors.concat([node]);
  for (const [k, v] of Object.entries(node)) {
    if (k === 'loc') continue;
    if (Array.isArray(v)) for (const c of v) walk(c, visit, next);
    else if (v && typeof v.type === 'string') walk(v, visit, next);
  }
}

const callee = (call) => {
  const c = call.callee;
  if (c.type === 'Identifier') return c.name;
  if (c.type === 'MemberExpression' && !c.computed) return c.property.name;
  return null;
};
const calleeObject = (call) => (call.callee.type === 'MemberExpression' && call.callee.object.type === 'Identifier' ? call.callee.object.name : null);
const isString = (n) => n.type === 'Literal' && typeof n.value === 'string';
const where = (n) => `app.js:${n.loc.start.line}`;

// Keys: what t/tn/has take first, the group of label/labelNode, and what `.dataset.i18n =` gets.
const KEY_FUNCTIONS = new Set(['t', 'tn', 'has']);
const keysUsed = new Set();
const prefixesUsed = new Set();
const keyProblems = [];
const keyNodes = new Set(); // literals that are keys, not text

// The functions that make the lookups take keys as variables; their callers are checked.
const I18N_CORE = new Set(['message', 'tn', 't', 'label', 'labelNode']);
const isDatasetKey = (n) => n.type === 'MemberExpression' && !n.computed && n.property.name === 'i18n' &&
  n.object.type === 'MemberExpression' && n.object.property.name === 'dataset';

// A key read from the markup's data-i18n* attributes (checked with index.html).
const isMarkupKey = (n) => isDatasetKey(n) || (n.type === 'CallExpression' && callee(n) === 'getAttribute');

function readKey(arg) {
  if (isMarkupKey(arg)) {
    // `el.dataset.i18n`, `el.getAttribute('data-i18n-…')`: index.html's keys, or values
    // checked where app.js assigns them.
  } else if (isString(arg)) {
    keysUsed.add(arg.value);
    keyNodes.add(arg);
  } else if (arg.type === 'ConditionalExpression') {
    readKey(arg.consequent);
    readKey(arg.alternate);
  } else if (arg.type === 'BinaryExpression' && arg.operator === '+' && isString(arg.left) && arg.left.value.endsWith('.')) {
    // A code the server sends, looked up under a fixed prefix.
    prefixesUsed.add(arg.left.value);
    keyNodes.add(arg.left);
  } else {
    keyProblems.push(`${where(arg)}: a message key must be a literal (or 'prefix.' + code)`);
  }
}

walk(AST, (node, ancestors) => {
  if (node.type === 'CallExpression' && node.callee.type === 'Identifier') {
    const name = node.callee.name;
    const inCore = ancestors.some((a) => a.type === 'FunctionDeclaration' && I18N_CORE.has(a.id.name));
    if (KEY_FUNCTIONS.has(name) && node.arguments.length && !inCore) readKey(node.arguments[0]);
    if ((name === 'label' || name === 'labelNode') && node.arguments.length && !inCore) {
      const group = node.arguments[0];
      if (isString(group)) {
        prefixesUsed.add(group.value + '.');
        keyNodes.add(group);
      } else {
        keyProblems.push(`${where(group)}: label() takes a literal group`);
      }
    }
  }
  if (node.type === 'AssignmentExpression' && isDatasetKey(node.left)) readKey(node.right);
});
for (const m of INDEX.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)) keysUsed.add(m[1]);

test('every key app.js and index.html use exists in the table, and every key in the table is used', () => {
  assert.deepEqual(keyProblems, [], 'keys the check cannot follow');
  const table = Object.keys(TABLE.en);
  assert.ok(keysUsed.size > 100, `found the keys in use (${keysUsed.size})`);
  assert.deepEqual([...keysUsed].filter((k) => !table.includes(k)).sort(), [], 'keys used but missing from the table');
  for (const p of prefixesUsed) assert.ok(table.some((k) => k.startsWith(p)), `no message under ${p}`);
  const unused = table.filter((k) => !keysUsed.has(k) && ![...prefixesUsed].some((p) => k.startsWith(p)));
  assert.deepEqual(unused, [], 'keys in the table nothing uses');
});

// ---- English left in the code -------------------------------------------------------------

// A token that is a word of letters (possibly with sentence punctuation around it), or a
// Capitalised hyphenated one (`Customer-tag`; lower-case ones are class names).
const WORD = /^[("'“]*([A-Za-z]{2,}|[A-Z][a-z]+(?:-[a-z]+)+)[.,:;!?)"'”]*$/;
function words(text) {
  return text.split(/\s+/).map((tok) => (tok.match(WORD) || [])[1]).filter((w) => w && !CODE_WORDS.has(w));
}
const looksLikeText = (text) => {
  const ws = words(text);
  return ws.length >= 2 || ws.some((w) => /^[A-Z][a-z]/.test(w));
};

// Calls whose literal arguments are code, by position (`*`: all of them).
const CODE_ARGS = {
  h: [0], data: [0, 1], $: ['*'], querySelector: ['*'], querySelectorAll: ['*'], closest: ['*'],
  add: ['*'], remove: ['*'], toggle: ['*'], contains: ['*'], addEventListener: ['*'], setAttribute: [0],
  getAttribute: ['*'], getItem: ['*'], setItem: ['*'], removeItem: ['*'], fetch: ['*'], api: ['*'],
  tpath: ['*'], link: ['*'], go: ['*'], startRun: ['*'], split: ['*'], join: ['*'], replace: ['*'],
  startsWith: ['*'], endsWith: ['*'], includes: ['*'], has: ['*'], get: ['*'], set: ['*'],
  padStart: ['*'], ApiError: [0, 1], Error: ['*'], DateTimeFormat: ['*'], escape: ['*'],
};
// Properties whose values are code.
const CODE_PROPS = new Set(['class', 'style', 'type', 'name', 'role', 'dataset', 'for', 'href', 'method',
  'autocomplete', 'spellcheck', 'translate', 'lang', 'year', 'month', 'day', 'hour', 'minute', 'second', 'block']);
// Properties whose values reach the page as text.
const TEXT_PROPS = new Set(['title', 'placeholder', 'aria-label', 'alt', 'label', 'hint', 'message', 'submit', 'note']);
// Calls whose arguments reach the page as text, by position (`*`: all of them).
const TEXT_CALLS = { toast: [0], append: ['*'], createTextNode: ['*'] };

const propName = (p) => (p.key.type === 'Identifier' ? p.key.name : String(p.key.value));

function classify(node, ancestors) {
  // Walk out through the expressions that pass a value on unchanged or glue it to others.
  let child = node;
  let inText = false;
  for (let i = ancestors.length - 1; i >= 0; i--) {
    const a = ancestors[i];
    if (a.type === 'ExpressionStatement' && a.directive) return 'code';
    if (a.type === 'Property') {
      if (a.key === child && !a.computed) return 'code';
      const name = propName(a);
      if (CODE_PROPS.has(name)) return 'code';
      if (TEXT_PROPS.has(name)) inText = true;
      break;
    }
    if (a.type === 'CallExpression' || a.type === 'NewExpression') {
      if (a.callee.type === 'MemberExpression' && calleeObject(a) === 'console') return 'code';
      const name = a.type === 'NewExpression' ? a.callee.name : callee(a);
      const pos = a.arguments.indexOf(child);
      if (pos < 0) break; // the callee itself
      const code = CODE_ARGS[name];
      if (code && (code.includes('*') || code.includes(pos))) return 'code';
      const text = TEXT_CALLS[name];
      if ((name === 'h' && pos >= 2) || (name === 'data' && pos === 2) || (text && (text.includes('*') || text.includes(pos)))) inText = true;
      break;
    }
    if (a.type === 'AssignmentExpression') {
      if (a.left.type === 'MemberExpression' && !a.left.computed && ['textContent', 'title', 'placeholder'].includes(a.left.property.name)) inText = true;
      break;
    }
    if (a.type === 'SwitchCase' || (a.type === 'BinaryExpression' && a.operator !== '+')) return 'code';
    if (!['BinaryExpression', 'ConditionalExpression', 'TemplateLiteral', 'ArrayExpression', 'LogicalExpression', 'TemplateElement'].includes(a.type)) break;
    child = a;
  }
  return inText ? 'text-sink' : 'other';
}

test('no English text is left in app.js', () => {
  const found = [];
  walk(AST, (node, ancestors) => {
    let text;
    if (isString(node) && !keyNodes.has(node)) text = node.value;
    else if (node.type === 'TemplateElement') text = node.value.cooked;
    else return;
    const kind = classify(node, ancestors);
    if (kind === 'code') return;
    // A template's pieces around values are text as soon as they hold a word (code templates
    // are paths, selectors and styles).
    const flagged = looksLikeText(text) || ((kind === 'text-sink' || node.type === 'TemplateElement') && words(text).length > 0);
    if (flagged) found.push(`${where(node)}: ${JSON.stringify(text)}`);
  });
  assert.deepEqual(found, [], 'put these in messages.json and look them up with t()');
});

test('the English check finds English where it would reach the page (the check itself)', () => {
  // The same rules over a few lines that must be flagged and a few that must not.
  const sample = `
    h('p', {}, 'no tags');                 // flagged: words as a child
    toast('Saved');                        // flagged
    h('input', { placeholder: 'Filter' }); // flagged
    const x = 'Sign in';                   // flagged: a Capitalised word anywhere
    h('div', { class: 'card empty' }, t('a.b'));
    $('input, textarea, select');
    const y = 'content-type';
    console.error('no message here');
  `;
  const ast = acorn.parse(sample, { ecmaVersion: 'latest', locations: true });
  const hits = [];
  walk(ast, (node, ancestors) => {
    if (!isString(node)) return;
    if (node.value === 'a.b') return;
    const kind = classify(node, ancestors);
    if (kind !== 'code' && (looksLikeText(node.value) || (kind === 'text-sink' && words(node.value).length))) hits.push(node.value);
  });
  assert.deepEqual(hits, ['no tags', 'Saved', 'Filter', 'Sign in']);
});

// ---- index.html ---------------------------------------------------------------------------

test('index.html has no text of its own but the two notes shown before the table loads, in both languages', () => {
  const VOID = new Set(['meta', 'link', 'input', 'br', 'img']);
  const stack = [];
  const found = [];
  const html = INDEX.replace(/<!--[\s\S]*?-->/g, '');
  const exempt = () => stack.some((e) => e.translateNo || e.tag === 'noscript' || e.tag === 'title' || e.id === 'boot-error');
  for (const m of html.matchAll(/<(\/?)([a-zA-Z0-9]+)([^>]*)>|([^<]+)/g)) {
    const [, close, tag, attrs, text] = m;
    if (text !== undefined) {
      if (!exempt() && words(text).length) found.push(`text ${JSON.stringify(text.trim())}`);
      continue;
    }
    if (close) {
      while (stack.length && stack.pop().tag !== tag.toLowerCase());
      continue;
    }
    const el = {
      tag: tag.toLowerCase(),
      id: (attrs.match(/\bid="([^"]*)"/) || [])[1],
      translateNo: /\btranslate="no"/.test(attrs),
    };
    for (const a of ['title', 'placeholder', 'aria-label', 'alt']) {
      const v = (attrs.match(new RegExp(`\\s${a}="([^"]*)"`)) || [])[1];
      if (v && words(v).length && !exempt()) found.push(`${a}=${JSON.stringify(v)} on <${el.tag}>`);
    }
    if (!VOID.has(el.tag) && !attrs.trim().endsWith('/')) stack.push(el);
  }
  assert.deepEqual(found, [], 'give these elements a data-i18n key');
  for (const id of ['boot-error']) {
    const note = INDEX.match(new RegExp(`id="${id}"[^>]*>([\\s\\S]*?)</p>`))[1];
    assert.match(note, /[\u4e00-\u9fff]/, `#${id} has its Chinese`);
    assert.match(note, /[A-Za-z]{3,} [a-z]{3,}/, `#${id} has its English`);
  }
});
