// form.js — the create and edit forms, generated from describe: one labelled control per
// field (by the schema's type), required marks, read-only fields, the gateway's validation
// messages on their fields, the workflow transitions the role may run, and the document's
// upstream state. What the user types is kept (per tab) until it is saved, across reloads and
// dropped connections.

import {t, lang, typeName, fieldLabel, fieldHints, fieldError, transitionLabel, reasonText} from '/strings.js';
import {h, replace, debounce, docHash, listHash, newHash, formatValue, newID} from '/dom.js';
import {readableFn, syncBadge} from '/list.js';

// FIELD_ORDER puts the fields people look for first; others follow in the schema's order,
// then by name.
const FIELD_ORDER = ['title', 'first_name', 'last_name', 'corporate_name', 'reference', 'email', 'default_address_city',
  'destination', 'resource', 'quantity', 'quantity_unit', 'price', 'base_price', 'start_date', 'stop_date', 'birthday',
  'simulation_state', 'validation_state'];
// Fields never shown as fields: the type is the page's subject, the parent its place.
const HIDDEN = new Set(['portal_type', 'parent_relative_url']);
// Fields shown last, read-only whatever the role: ERP5 sets them.
const LAST = ['creation_date', 'modification_date'];
// KNOWN_TRANSITIONS are offered when the role may run any transition ("*").
const KNOWN_TRANSITIONS = {
  'Sale Order': ['plan_action', 'order_action', 'confirm_action', 'cancel_action', 'deliver_action'],
  'Person': ['validate_action', 'invalidate_action'],
  'Organisation': ['validate_action', 'invalidate_action'],
  'Product': ['validate_action', 'invalidate_action'],
};
// CHILD_TYPES are created inside a document of the parent type.
const CHILD_TYPES = {'Sale Order': 'Sale Order Line'};
const DRAFT_PREFIX = 'gateway.draft:';
const SYNC_POLL = 4000; // ms between sync checks while the document waits for head office

const NUMBER_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

function fieldOrder(names, schemaNames) {
  const rank = (f) => {
    const i = FIELD_ORDER.indexOf(f);
    if (i >= 0) return i;
    const l = LAST.indexOf(f);
    if (l >= 0) return 10000 + l;
    const s = schemaNames.indexOf(f);
    return s >= 0 ? 1000 + s : 5000;
  };
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

// kindOf returns how a field is edited: its schema type, else what its value looks like.
function kindOf(fs, value) {
  if (fs && fs.enum && fs.enum.length) return 'enum';
  if (fs && fs.type) return fs.type;
  if (typeof value === 'number') return 'number';
  if (typeof value === 'boolean') return 'boolean';
  if (Array.isArray(value)) return 'list';
  return 'string';
}

// toRaw writes a value as the text its control holds.
function toRaw(v, kind) {
  if (v === null || v === undefined) return kind === 'boolean' ? 'false' : '';
  if (kind === 'boolean') return v === true ? 'true' : 'false';
  if (kind === 'list') return Array.isArray(v) ? v.join('\n') : String(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// fromRaw reads a control's text back as a value; null when empty. A number that does not
// parse is sent as typed, so that the gateway's validation names the problem on the field.
function fromRaw(raw, kind, fs) {
  if (kind === 'boolean') return raw === 'true';
  const s = kind === 'list' ? raw : raw.trim();
  if (s === '') return null;
  switch (kind) {
    case 'number':
    case 'integer':
      return NUMBER_RE.test(s) ? Number(s) : s;
    case 'list': {
      const items = s.split('\n').map((x) => x.trim()).filter((x) => x !== '');
      return items.length ? items : null;
    }
    case 'enum': {
      const match = fs.enum.find((e) => String(e) === s);
      return match === undefined ? s : match;
    }
    default:
      return s;
  }
}

/** FormView is a document's form (id given) or a create form (type given). */
export class FormView {
  constructor(app, {type = '', id = '', params = new URLSearchParams()} = {}) {
    this.app = app;
    this.session = app.session;
    this.id = id || null;
    this.type = type;
    this.parent = params.get('parent') || '';
    this.doc = null;
    this.widgets = new Map();
    this.saving = false;
    this.destroyed = false;
    this.syncState = null;
    this.flash = app.takeFlash();
    this.el = h('section', {class: 'doc'});
    this.saveDraft = debounce(() => this.storeDraft(), 300);
    if (this.id) {
      app.setPage(this.id, [{label: this.id, href: docHash(this.id)}]);
      replace(this.el, h('h1', {tabindex: '-1'}, this.id), h('p', {class: 'muted', role: 'status'}, t('loading')));
      this.load();
    } else {
      this.build();
    }
  }

  get draftKey() {
    return DRAFT_PREFIX + (this.id ? 'doc:' + this.id : 'new:' + this.type + (this.parent ? ':' + this.parent : ''));
  }

  // load reads the document and its upstream state, then builds the form.
  async load() {
    const s = this.session;
    if (!s.open) {
      if (!this.doc) this.showProblem(t('notConnectedRead'), 'muted');
      return;
    }
    let doc;
    try {
      doc = await s.get(this.id);
    } catch (err) {
      if (this.destroyed || this.doc) return;
      if (err.reason === 'disconnected' || err.reason === 'closed') this.showProblem(t('notConnectedRead'), 'muted');
      else if (err.status === 404) this.showProblem(t('docNotFound'), 'err');
      else this.showProblem(t('docError', {message: reasonText(err.reason, err.message)}), 'err');
      return;
    }
    if (this.destroyed) return;
    const first = !this.doc;
    this.doc = doc;
    this.type = doc.portal_type || this.type;
    if (first) this.build();
    else this.refreshValues();
    this.refreshSync();
  }

  showProblem(text, cls) {
    replace(this.el, h('h1', {tabindex: '-1'}, this.id || typeName(this.type, 'title')), h('p', {class: 'alert ' + cls, role: cls === 'err' ? 'alert' : 'status'}, text));
  }

  // fields lists the form's fields: [{name, fs, editable}].
  fields() {
    const info = this.info;
    const schema = (info.schema && info.schema.fields) || {};
    const schemaNames = Object.keys(schema);
    const readable = readableFn(info);
    const canWrite = info.methods.includes(this.id ? 'put' : 'post');
    const writeAll = info.writable.includes('*');
    const writable = (f) => canWrite && !LAST.includes(f) && (writeAll || info.writable.includes(f));
    const names = new Set(schemaNames);
    if (!writeAll) info.writable.forEach((f) => names.add(f));
    if (this.doc) Object.keys(this.doc).forEach((f) => names.add(f));
    const out = [];
    for (const f of fieldOrder(names, schemaNames)) {
      if (HIDDEN.has(f) || f.startsWith('_')) continue;
      const editable = writable(f);
      if (this.id) {
        // Shown when editable, or when readable and part of this type (its schema or the document).
        if (!editable && !(readable(f) && (schema[f] || (this.doc && f in this.doc)))) continue;
      } else if (!editable) {
        continue;
      }
      out.push({name: f, fs: schema[f] || null, editable});
    }
    return out;
  }

  build() {
    const app = this.app;
    this.info = app.typeInfo(this.type);
    const title = typeName(this.type, 'title');
    const heading = this.id ? (this.doc && this.doc.title ? String(this.doc.title) : this.id) : t('newDoc', {type: typeName(this.type, 'one')});
    app.setPage(heading, [{label: title, href: listHash(this.type)}, {label: heading, href: ''}]);
    if (!this.info) {
      replace(this.el, h('h1', {tabindex: '-1'}, heading), h('p', {class: 'alert err', role: 'alert'}, t('denied', {message: reasonText('denied', '')})));
      return;
    }
    const canSave = this.info.methods.includes(this.id ? 'put' : 'post');
    this.badge = h('span', {class: 'head-badge'});
    this.syncPanel = h('div', {class: 'sync-panel', 'aria-live': 'polite', hidden: !this.id});
    this.summary = h('div', {class: 'form-alert', role: 'alert', tabindex: '-1', hidden: true});
    this.draftNote = h('div', {class: 'note', hidden: true});
    this.changedNote = h('div', {class: 'note', role: 'status', hidden: true});
    this.saveState = h('span', {class: 'save-state', role: 'status'});
    this.widgets = new Map();
    const fieldList = this.fields();
    const controls = fieldList.map((f) => this.widget(f));
    this.submit = canSave ? h('button', {type: 'submit', class: 'primary', 'aria-keyshortcuts': 'Control+S'}, this.id ? t('save') : t('create')) : null;
    this.form = h('form', {class: 'doc-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); },
      oninput: () => this.edited(), onchange: () => this.edited()},
      this.summary, this.draftNote, this.changedNote,
      this.parent ? h('p', {class: 'muted'}, fieldLabel('parent_relative_url') + ': ', h('a', {href: docHash(this.parent)}, this.parent)) : null,
      controls.length ? h('div', {class: 'fields'}, controls) : h('p', {class: 'muted'}, t('noFields')),
      h('div', {class: 'form-actions'}, this.submit,
        h('a', {class: 'button secondary', href: listHash(this.type)}, t('cancel')),
        this.saveState),
      canSave ? h('p', {class: 'hint keys'}, t('saveShortcut')) : null);
    const flash = this.flash ? h('p', {class: 'alert ' + this.flash.kind, role: 'status'}, this.flash.text) : null;
    this.flash = null;
    // A save of this form made before a reload may still be on its way: no second one.
    if (this.submit && this.session.pendingMeta().some((m) => m && m.draft === this.draftKey)) {
      this.submit.disabled = true;
      this.waitingRestored = true;
      this.saveState.textContent = this.session.open ? t('saving') : t('savingOffline');
    }
    replace(this.el,
      h('div', {class: 'page-head'}, h('h1', {tabindex: '-1'}, heading), this.badge),
      flash,
      this.syncPanel,
      this.form,
      this.id ? this.actionsSection() : null,
      this.id ? this.children() : null,
      this.id ? this.meta() : null);
    this.restoreDraft();
  }

  // widget builds one field: label (with required / read-only marks), control, hint, error.
  widget({name, fs, editable}) {
    const id = newID('f-' + name.replace(/[^A-Za-z0-9_-]/g, '_'));
    const value = this.doc ? this.doc[name] : undefined;
    const kind = kindOf(fs, value);
    const required = !!(fs && fs.required);
    const hintText = editable ? fieldHints[name] || (kind === 'list' ? t('listHint') : '') : '';
    const describedBy = [hintText ? id + '-hint' : '', id + '-err'].filter(Boolean).join(' ');
    const raw = toRaw(value, kind);
    let control;
    if (!editable) {
      const text = value === undefined ? t('none') : formatValue(value, {lang, yes: t('yes'), none: t('none')});
      control = h('input', {id, type: 'text', readonly: true, value: text, class: 'readonly', 'aria-describedby': describedBy});
    } else if (kind === 'enum') {
      control = h('select', {id, name, required, 'aria-describedby': describedBy},
        h('option', {value: ''}, required ? '' : t('none')),
        fs.enum.map((v) => h('option', {value: String(v)}, formatValue(v, {lang}))));
      // A stored value the schema does not list still shows.
      if (raw && !fs.enum.map(String).includes(raw)) control.append(h('option', {value: raw}, raw));
      control.value = raw;
    } else if (kind === 'boolean') {
      control = h('input', {id, name, type: 'checkbox', checked: value === true, 'aria-describedby': describedBy});
    } else if (kind === 'list') {
      control = h('textarea', {id, name, rows: 3, required, 'aria-describedby': describedBy, value: raw});
    } else {
      const attrs = {id, name, required, 'aria-describedby': describedBy, value: raw, autocomplete: 'off'};
      if (kind === 'number' || kind === 'integer') {
        attrs.type = 'text';
        attrs.inputmode = kind === 'integer' ? 'numeric' : 'decimal';
      } else if (kind === 'date' && (raw === '' || DATE_RE.test(raw))) {
        attrs.type = 'date';
      } else if (name === 'email') {
        attrs.type = 'email';
        attrs.autocapitalize = 'off';
        attrs.spellcheck = 'false';
      } else {
        attrs.type = 'text';
      }
      if (fs && fs.max_length && kind === 'string') attrs.maxlength = fs.max_length;
      control = h('input', attrs);
    }
    const err = h('p', {id: id + '-err', class: 'field-error', hidden: true});
    const label = h('label', {for: id}, fieldLabel(name),
      required && editable ? h('span', {class: 'tag req'}, t('required')) : null,
      !editable ? h('span', {class: 'tag ro'}, t('readOnly')) : null);
    const wrap = h('div', {class: 'field' + (kind === 'boolean' ? ' check' : '') + (editable ? '' : ' is-readonly'), 'data-field': name},
      kind === 'boolean' && editable ? [control, label] : [label, control],
      hintText ? h('p', {id: id + '-hint', class: 'hint'}, hintText) : null,
      err);
    this.widgets.set(name, {name, fs, kind, editable, control, err, wrap, original: raw});
    return wrap;
  }

  raw(w) {
    return w.kind === 'boolean' && w.editable ? (w.control.checked ? 'true' : 'false') : w.control.value;
  }

  setRaw(w, raw) {
    if (w.kind === 'boolean' && w.editable) w.control.checked = raw === 'true';
    else w.control.value = raw;
  }

  get dirty() {
    for (const w of this.widgets.values()) {
      if (w.editable && this.raw(w) !== w.original) return true;
    }
    return false;
  }

  edited() {
    this.saveDraft();
  }

  // Drafts: what the user typed, per tab (sessionStorage), until it is saved or discarded.
  storeDraft() {
    if (this.destroyed || this.done || !this.form) return;
    const values = {};
    let any = false;
    for (const w of this.widgets.values()) {
      if (!w.editable) continue;
      const raw = this.raw(w);
      values[w.name] = raw;
      if (raw !== w.original) any = true;
    }
    try {
      if (any) sessionStorage.setItem(this.draftKey, JSON.stringify({values, at: Date.now()}));
      else sessionStorage.removeItem(this.draftKey);
    } catch {
      // Storage full or refused: the form still holds the values.
    }
  }

  clearDraft(key = this.draftKey) {
    try {
      sessionStorage.removeItem(key);
    } catch {
      // nothing kept
    }
  }

  restoreDraft() {
    let d = null;
    try {
      d = JSON.parse(sessionStorage.getItem(this.draftKey));
    } catch {
      d = null;
    }
    if (!d || !d.values) return;
    let restored = false;
    for (const [name, raw] of Object.entries(d.values)) {
      const w = this.widgets.get(name);
      if (w && w.editable && typeof raw === 'string' && raw !== this.raw(w)) {
        this.setRaw(w, raw);
        restored = true;
      }
    }
    if (!restored || this.waitingRestored) return;
    replace(this.draftNote, h('span', {}, t('restoredDraft')), ' ',
      h('button', {type: 'button', class: 'link', onclick: () => this.discardDraft()}, t('discardDraft')));
    this.draftNote.hidden = false;
  }

  discardDraft() {
    this.clearDraft();
    for (const w of this.widgets.values()) if (w.editable) this.setRaw(w, w.original);
    this.draftNote.hidden = true;
    this.clearErrors();
    const first = [...this.widgets.values()].find((w) => w.editable);
    if (first) first.control.focus();
  }

  // refreshValues shows a newer version of the document: in place when nothing was typed,
  // else behind a note, so that typing is never lost.
  refreshValues() {
    if (!this.form) return;
    const names = this.fields().map((f) => f.name).join(',');
    const sameFields = names === [...this.widgets.keys()].join(',');
    const moved = !sameFields || [...this.widgets.values()].some((w) => toRaw(this.doc[w.name], w.kind) !== w.original);
    if (!moved) return; // nothing new (a reconnect, our own save): leave the form as it is
    if (this.dirty) {
      replace(this.changedNote, h('span', {}, t('changedElsewhere')), ' ',
        h('button', {type: 'button', class: 'link', onclick: () => this.loadTheirs()}, t('loadTheirs')));
      this.changedNote.hidden = false;
      return;
    }
    if (!sameFields) {
      this.build();
      return;
    }
    for (const w of this.widgets.values()) {
      const v = this.doc[w.name];
      const raw = toRaw(v, w.kind);
      w.original = raw;
      if (w.editable) this.setRaw(w, raw);
      else w.control.value = v === undefined ? t('none') : formatValue(v, {lang, yes: t('yes'), none: t('none')});
    }
    const heading = this.doc.title ? String(this.doc.title) : this.id;
    const h1 = this.el.querySelector('h1');
    if (h1 && h1.textContent !== heading) {
      h1.textContent = heading;
      this.app.setPage(heading, [{label: typeName(this.type, 'title'), href: listHash(this.type)}, {label: heading, href: ''}]);
    }
  }

  loadTheirs() {
    this.clearDraft();
    for (const w of this.widgets.values()) if (w.editable) this.setRaw(w, w.original);
    this.changedNote.hidden = true;
    this.draftNote.hidden = true;
    this.refreshValues();
  }

  clearErrors() {
    this.summary.hidden = true;
    this.summary.replaceChildren();
    for (const w of this.widgets.values()) {
      w.err.hidden = true;
      w.err.textContent = '';
      w.control.removeAttribute('aria-invalid');
      w.wrap.classList.remove('invalid');
    }
  }

  // save sends the form: a post of the filled fields, or a merge-patch of the changed ones.
  async save() {
    if (this.saving || this.waitingRestored || !this.form || !this.submit) return;
    this.clearErrors();
    this.changedNote.hidden = true;
    const values = {};
    for (const w of this.widgets.values()) {
      if (!w.editable) continue;
      const raw = this.raw(w);
      if (this.id) {
        if (raw !== w.original) values[w.name] = fromRaw(raw, w.kind, w.fs);
      } else {
        const v = fromRaw(raw, w.kind, w.fs);
        if (v !== null && !(w.kind === 'boolean' && v === false)) values[w.name] = v;
      }
    }
    if (this.id && Object.keys(values).length === 0) {
      this.saveState.textContent = t('nothingChanged');
      return;
    }
    const s = this.session;
    const draftKey = this.draftKey;
    this.saving = true;
    this.submit.disabled = true;
    this.form.setAttribute('aria-busy', 'true');
    const showWaiting = () => {
      if (this.saving) this.saveState.textContent = s.open ? t('saving') : t('savingOffline');
    };
    showWaiting();
    s.addEventListener('state', showWaiting);
    let res;
    // The draft and the route travel with the write, for a reload that resends it.
    const meta = {draft: draftKey, route: location.hash};
    try {
      if (this.id) {
        res = await s.put(this.id, values, undefined, {meta});
      } else {
        const doc = {portal_type: this.type, ...values};
        if (this.parent) doc.parent_relative_url = this.parent;
        res = await s.post(doc, undefined, {meta});
      }
    } catch (err) {
      if (!this.destroyed) this.showErrors(err);
      return;
    } finally {
      s.removeEventListener('state', showWaiting);
      this.saving = false;
      if (this.submit) this.submit.disabled = false;
      if (this.form) this.form.removeAttribute('aria-busy');
    }
    this.clearDraft(draftKey);
    if (this.destroyed) return;
    if (!this.id) {
      this.done = true; // the create form's values are saved: nothing to keep
      this.saveDraft.cancel();
      this.app.flash = {text: t('created'), kind: 'ok'};
      location.hash = docHash(res.id);
      return;
    }
    for (const w of this.widgets.values()) if (w.editable) w.original = this.raw(w);
    this.draftNote.hidden = true;
    this.saveState.textContent = t('saved');
    this.load();
  }

  showErrors(err) {
    this.saveState.textContent = '';
    const fields = err.fields || {};
    const items = [];
    // In the form's order, so that the summary reads like the form.
    const order = [...this.widgets.keys()];
    const pos = (f) => (order.indexOf(f) < 0 ? order.length : order.indexOf(f));
    for (const [f, msg] of Object.entries(fields).sort((a, b) => pos(a[0]) - pos(b[0]))) {
      const text = fieldError(f, String(msg));
      const w = this.widgets.get(f);
      if (w) {
        w.err.textContent = text;
        w.err.hidden = false;
        w.control.setAttribute('aria-invalid', 'true');
        w.wrap.classList.add('invalid');
        items.push(h('li', {}, h('a', {href: '#' + w.control.id, onclick: (e) => { e.preventDefault(); w.control.focus(); }}, text)));
      } else {
        items.push(h('li', {}, text));
      }
    }
    // Whole-document checks come in the message only, joined with the field messages.
    if (err.status === 400 && err.message) {
      for (const part of err.message.split('; ')) {
        if (!Object.keys(fields).some((f) => part.startsWith(f + ' '))) items.push(h('li', {}, part));
      }
    }
    let lead;
    if (items.length && err.status === 400) lead = t('fixFields', {count: items.length});
    else if (err.status === 403) lead = t('denied', {message: err.message});
    else lead = t('saveFailed', {message: reasonText(err.reason, err.message)});
    replace(this.summary, h('p', {}, h('strong', {}, lead)), items.length && err.status !== 403 ? h('ul', {}, items) : null);
    this.summary.hidden = false;
    this.summary.focus();
  }

  // Upstream state.
  async refreshSync() {
    clearTimeout(this.syncTimer);
    if (!this.id || !this.session.open || this.destroyed) return;
    let st;
    try {
      st = (await this.session.sync([this.id])).states[this.id];
    } catch {
      return;
    }
    if (this.destroyed || !st) return;
    this.syncState = st;
    this.renderSync();
    if (st.state === 'pending') this.syncTimer = setTimeout(() => this.refreshSync(), SYNC_POLL);
  }

  renderSync() {
    const st = this.syncState;
    if (!st || !this.syncPanel) return;
    const state = ['synced', 'pending', 'dead', 'conflict'].includes(st.state) ? st.state : 'pending';
    const link = this.app.status && this.app.status.link ? this.app.status.link.state : '';
    let text = t('syncExplain.' + state, {reason: st.reason || ''});
    if (state === 'pending' && link === 'down') text = t('syncExplain.pendingLinkDown');
    replace(this.badge, syncBadge(state));
    replace(this.syncPanel, h('p', {}, syncBadge(state), ' ', text, st.seq ? h('span', {class: 'muted'}, ' (' + t('entry', {seq: st.seq}) + ')') : null));
    this.syncPanel.className = 'sync-panel sync-' + state;
    this.syncPanel.hidden = false;
  }

  // Workflow transitions the role may run on this type.
  actionsSection() {
    const info = this.info;
    if (!info.methods.includes('action')) return null;
    const list = info.transitions.includes('*') ? KNOWN_TRANSITIONS[this.type] || [] : info.transitions;
    if (!list.length) return null;
    const cid = newID('comment');
    this.comment = h('input', {id: cid, type: 'text', autocomplete: 'off'});
    this.actionResult = h('p', {class: 'action-result', role: 'status'});
    this.actionButtons = list.map((tr) => h('button', {type: 'button', class: 'secondary', onclick: () => this.runAction(tr)}, transitionLabel(tr)));
    return h('section', {class: 'actions', 'aria-labelledby': cid + '-h'},
      h('h2', {id: cid + '-h'}, t('actions')),
      h('div', {class: 'field'}, h('label', {for: cid}, t('actionComment')), this.comment),
      h('div', {class: 'buttons'}, this.actionButtons),
      this.actionResult);
  }

  async runAction(tr) {
    const label = transitionLabel(tr);
    for (const b of this.actionButtons) b.disabled = true;
    this.actionResult.className = 'action-result';
    this.actionResult.textContent = t('actionRunning', {action: label});
    try {
      await this.session.action(this.id, tr, {comment: this.comment.value.trim()});
      if (this.destroyed) return;
      this.actionResult.className = 'action-result ok';
      this.actionResult.textContent = t('actionDone', {action: label});
      this.comment.value = '';
      this.load();
    } catch (err) {
      if (this.destroyed) return;
      const why = err.status === 403 ? t('denied', {message: err.message}) : reasonText(err.reason, err.message);
      this.actionResult.className = 'action-result err';
      this.actionResult.textContent = t('actionFailed', {action: label, message: why});
    } finally {
      for (const b of this.actionButtons) b.disabled = false;
    }
  }

  // children offers to add a child document (a line to an order) when the role may.
  children() {
    const child = CHILD_TYPES[this.type];
    const ci = child && this.app.typeInfo(child);
    if (!ci || !ci.methods.includes('post')) return null;
    return h('p', {}, h('a', {class: 'button secondary', href: newHash(child) + '?parent=' + encodeURIComponent(this.id)}, t('newDoc', {type: typeName(child, 'one')})));
  }

  meta() {
    const local = /(^|\/)local-[^/]+$/.test(this.id);
    return h('dl', {class: 'meta'},
      h('dt', {}, t('typeLabel')), h('dd', {}, this.type),
      h('dt', {}, t('documentId')), h('dd', {}, h('code', {}, this.id), local ? h('span', {class: 'muted'}, ' — ' + t('localId')) : null));
  }

  // Events from the app.
  changed(detail) {
    if (!this.id) return;
    const renamed = detail.renamed || {};
    if (renamed[this.id]) {
      const old = this.draftKey;
      this.id = renamed[this.id];
      try {
        const d = sessionStorage.getItem(old);
        if (d) sessionStorage.setItem(this.draftKey, d);
        sessionStorage.removeItem(old);
      } catch {
        // drafts are a convenience
      }
      this.app.replaceHash(docHash(this.id));
      this.load();
      return;
    }
    // Our own save notifies us too: its answer reloads the form.
    if (this.saving || !(detail.ids || []).includes(this.id)) return;
    this.load();
  }

  reconnected() {
    if (this.id) this.load();
  }

  // restored: a save made before a reload (perhaps of this form) got its answer.
  restored(meta) {
    if (!meta || meta.draft !== this.draftKey) return;
    this.waitingRestored = false;
    if (this.submit) this.submit.disabled = false;
    this.saveState.textContent = t('saved');
    for (const w of this.widgets.values()) if (w.editable) this.setRaw(w, w.original);
    this.draftNote.hidden = true;
    if (this.id) this.load();
  }

  // forget drops what this form holds: its values were saved elsewhere.
  forget() {
    this.done = true;
    this.saveDraft.cancel();
  }

  status() {
    if (this.syncState) this.renderSync();
    const key = JSON.stringify(this.app.status && this.app.status.outbox);
    if (this.lastOutbox !== undefined && key !== this.lastOutbox) this.refreshSync();
    this.lastOutbox = key;
  }

  destroy() {
    if (!this.done) this.saveDraft.flush();
    this.saveDraft.cancel();
    this.destroyed = true;
    clearTimeout(this.syncTimer);
  }
}
