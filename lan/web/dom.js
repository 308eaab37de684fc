// dom.js — small DOM helpers for the site web app (no framework, no build step).

// Properties set as properties rather than attributes, so that they reflect what the user sees.
const PROPS = new Set(['value', 'checked', 'selected', 'textContent', 'indeterminate']);

/**
 * h creates an element: h('a', {href: '#', class: 'button', onclick: f}, 'text', child…).
 * Attributes that are null, undefined or false are left out; true sets an empty attribute;
 * on* keys add event listeners; children may be strings, nodes, arrays, null or false.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** append adds children (strings, nodes, arrays; null and false are skipped) to el. */
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** replace empties el and appends children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** debounce returns f delayed until ms have passed without another call; .cancel() drops it. */
export function debounce(f, ms) {
  let timer = null;
  const d = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      f(...args);
    }, ms);
  };
  d.cancel = () => clearTimeout(timer);
  d.flush = (...args) => {
    clearTimeout(timer);
    timer = null;
    f(...args);
  };
  return d;
}

let uid = 0;
/** newID returns a unique element id with the given prefix. */
export function newID(prefix = 'id') {
  uid++;
  return `${prefix}-${uid}`;
}

/** isTyping reports whether a key event comes from a place where keys are text. */
export function isTyping(e) {
  const el = e.target;
  if (!el || !el.tagName) return false;
  const tag = el.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || el.isContentEditable;
}

/** docHash returns the route of a document's form. */
export function docHash(id) {
  return '#/doc/' + id.split('/').map(encodeURIComponent).join('/');
}

/** listHash returns the route of a portal type's list, with optional parameters. */
export function listHash(type, params) {
  const qs = params ? new URLSearchParams(params).toString() : '';
  return '#/list/' + encodeURIComponent(type) + (qs ? '?' + qs : '');
}

/** newHash returns the route of a portal type's create form. */
export function newHash(type) {
  return '#/new/' + encodeURIComponent(type);
}

/** formatValue shows a stored value as text. */
export function formatValue(v, {lang = 'en', yes = 'Yes', none = '—'} = {}) {
  if (v === null || v === undefined || v === '') return none;
  if (typeof v === 'number') return v.toLocaleString(lang);
  if (typeof v === 'boolean') return v ? yes : none;
  if (Array.isArray(v)) return v.length ? v.map((x) => formatValue(x, {lang, yes, none})).join(', ') : none;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** quote writes a jIO quoted string: "…" with " escaped. */
export function quote(s) {
  return '"' + String(s).replace(/"/g, '\\"') + '"';
}
