// form.js — a document's form as ERP5 shows it (erp5.js builds the field model from the
// learned form, else from the policy schema): ERP5's groups side by side, its titles, help,
// required marks and read-only fields; the listbox of sub-documents (an order's lines); the
// workflow transitions ERP5 lists for the document's state that the role may run; and the
// document's upstream state. What the user types is kept (per tab) until it is saved, across
// reloads and dropped connections.

import {t, typeName, fieldError, reasonText} from '/strings.js';
import {h, replace, debounce, docHash, listHash, newHash, newID} from '/dom.js';
import {syncBadge} from '/list.js';
import {formModel, stateTitle, transitionTitle, transitionsFor, RELATIVE_URL} from '/erp5.js';
import {makeWidget, toRaw} from '/fields.js';
import {ListBox} from '/listbox.js';

const DRAFT_PREFIX = 'gateway.draft:';
const SYNC_POLL = 4000; // ms between sync checks while the document waits for head office

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
    this.listboxes = [];
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
    // The outbox as it was when this version was read: a later move reloads it (status).
    const outboxSeen = JSON.stringify(this.app.status && this.app.status.outbox);
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
    if (this.app.status) this.lastOutbox = outboxSeen;
    this.type = doc.portal_type || this.type;
    if (first) this.build();
    else this.refreshValues();
    this.refreshSync();
  }

  showProblem(text, cls) {
    replace(this.el, h('h1', {tabindex: '-1'}, this.id || typeName(this.type, 'title')), h('p', {class: 'alert ' + cls, role: cls === 'err' ? 'alert' : 'status'}, text));
  }

  // model is the form's field model: ERP5's groups of fields.
  model() {
    return formModel(this.info, {doc: this.doc, method: this.id ? 'put' : 'post'});
  }

  build() {
    const app = this.app;
    this.info = app.typeInfo(this.type);
    const title = typeName(this.type, 'title');
    const heading = this.heading();
    app.setPage(heading, [{label: title, href: listHash(this.type)}, {label: heading, href: ''}]);
    if (!this.info) {
      replace(this.el, h('h1', {tabindex: '-1'}, heading), h('p', {class: 'alert err', role: 'alert'}, t('denied', {message: reasonText('denied', '')})));
      return;
    }
    for (const lb of this.listboxes) if (lb.destroy) lb.destroy();
    for (const w of this.widgets.values()) if (w.picker) w.picker.destroy();
    const canSave = this.info.methods.includes(this.id ? 'put' : 'post');
    this.badge = h('span', {class: 'head-badge'});
    this.syncPanel = h('div', {class: 'sync-panel', 'aria-live': 'polite', hidden: !this.id});
    this.summary = h('div', {class: 'form-alert', role: 'alert', tabindex: '-1', hidden: true});
    this.draftNote = h('div', {class: 'note', hidden: true});
    this.changedNote = h('div', {class: 'note', role: 'status', hidden: true});
    this.saveState = h('span', {class: 'save-state', role: 'status'});
    this.widgets = new Map();
    this.listboxes = [];
    const model = this.model();
    this.shape = JSON.stringify(model.groups.map((g) => g.fields.map((f) => f.id + (f.editable ? '+' : ''))));
    const ctx = {session: this.session, titles: app.titles, doc: this.doc, onchange: () => this.edited()};
    const boxes = [];
    const groups = model.groups.map((g) => {
      const items = [];
      for (const m of g.fields) {
        if (m.type === 'ListBox') {
          // A listbox lists sub-documents: it has its own form, after this one.
          if (this.id) boxes.push(m);
          else items.push(h('p', {class: 'muted field'}, h('strong', {}, m.title), ' — ', t('linesAfterCreate')));
          continue;
        }
        const w = makeWidget(m, ctx);
        this.widgets.set(m.prop || m.id, w);
        items.push(w.wrap);
      }
      return items.length ? h('div', {class: 'group group-' + g.id.replace(/[^A-Za-z0-9_-]/g, '_'), 'data-group': g.id}, items) : null;
    }).filter(Boolean);
    this.submit = canSave ? h('button', {type: 'submit', class: 'primary', 'aria-keyshortcuts': 'Control+S'}, this.id ? t('save') : t('create')) : null;
    this.form = h('form', {class: 'doc-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); },
      oninput: () => this.edited(), onchange: () => this.edited()},
      this.summary, this.draftNote, this.changedNote,
      this.parentLine(),
      groups.length ? h('div', {class: 'groups' + (model.learned ? ' learned' : '')}, groups) : h('p', {class: 'muted'}, t('noFields')),
      h('div', {class: 'form-actions'}, this.submit,
        h('a', {class: 'button secondary', href: this.parentOf() ? docHash(this.parentOf()) : listHash(this.type)}, this.parentOf() ? t('backToParent') : t('cancel')),
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
    this.listboxes = boxes.map((m) => new ListBox(this, m));
    this.workflowEl = this.id ? h('section', {class: 'actions', 'aria-live': 'polite'}) : null;
    replace(this.el,
      h('div', {class: 'page-head'}, h('h1', {tabindex: '-1'}, heading), this.stateChip = h('span', {class: 'state-chip', hidden: true}), this.badge),
      flash,
      this.syncPanel,
      this.workflowEl,
      this.form,
      this.listboxes.map((lb) => lb.el),
      this.id ? this.children() : null,
      this.id ? this.meta() : null);
    this.renderWorkflow();
    this.restoreDraft();
  }

  heading() {
    if (!this.id) return t('newDoc', {type: typeName(this.type, 'one')});
    if (this.doc && this.doc.title) return String(this.doc.title);
    // No title (an order's line): its type and number, as ERP5 lists it.
    const one = typeName(this.type, 'one');
    return one.charAt(0).toUpperCase() + one.slice(1) + ' ' + this.id.split('/').pop();
  }

  // parentOf is the document this one is part of (an order for a line), '' when none.
  parentOf() {
    const p = this.doc ? this.doc.parent_relative_url : this.parent;
    return typeof p === 'string' && RELATIVE_URL.test(p) ? p : '';
  }

  parentLine() {
    const p = this.parentOf();
    if (!p) return null;
    const a = h('a', {href: docHash(p), class: 'parent-link'}, p);
    this.app.titles.title(p).then((title) => { if (title) a.textContent = title; });
    return h('p', {class: 'parent'}, t('partOf') + ' ', a);
  }

  get dirty() {
    for (const w of this.widgets.values()) {
      if (w.editable && w.raw() !== w.original) return true;
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
      const raw = w.raw();
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
      if (w && w.editable && typeof raw === 'string' && raw !== w.raw()) {
        w.setRaw(raw);
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
    for (const w of this.widgets.values()) if (w.editable) w.setRaw(w.original);
    this.draftNote.hidden = true;
    this.clearErrors();
    const first = [...this.widgets.values()].find((w) => w.editable);
    if (first) first.control.focus();
  }

  // refreshValues shows a newer version of the document: in place when nothing was typed,
  // else behind a note, so that typing is never lost.
  refreshValues() {
    if (!this.form) return;
    const shape = JSON.stringify(this.model().groups.map((g) => g.fields.map((f) => f.id + (f.editable ? '+' : ''))));
    const sameFields = shape === this.shape;
    const moved = !sameFields || [...this.widgets.values()].some((w) => toRaw(w.m, this.doc[w.m.prop]) !== w.original);
    this.renderWorkflow();
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
      const v = this.doc[w.m.prop];
      const raw = toRaw(w.m, v);
      w.original = raw;
      if (w.editable) w.setRaw(raw);
      else if (w.show) w.show(v);
    }
    this.changedNote.hidden = true;
    const heading = this.heading();
    const h1 = this.el.querySelector('h1');
    if (h1 && h1.textContent !== heading) {
      h1.textContent = heading;
      this.app.setPage(heading, [{label: typeName(this.type, 'title'), href: listHash(this.type)}, {label: heading, href: ''}]);
    }
  }

  loadTheirs() {
    this.clearDraft();
    for (const w of this.widgets.values()) if (w.editable) w.setRaw(w.original);
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
      const raw = w.raw();
      if (this.id) {
        if (raw !== w.original) values[w.name] = w.value();
      } else {
        const v = w.value();
        if (v !== null && !(w.m.type === 'CheckBoxField' && v === false)) values[w.name] = v;
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
    for (const w of this.widgets.values()) if (w.editable) w.original = w.raw();
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
      const w = this.widgets.get(f);
      const text = fieldError(f, String(msg), w ? w.m.title : undefined);
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
    this.renderWorkflow();
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

  // renderWorkflow shows the document's state (ERP5's title, "pending: Confirm" while a
  // transition waits for head office, ERP5's message when it refused one) and the
  // transitions ERP5 lists for that state which the role may run.
  renderWorkflow() {
    const el = this.workflowEl;
    const info = this.info;
    if (!el || !info || !this.doc) return;
    const wf = info.workflow;
    const st = this.syncState;
    const state = wf ? this.doc[wf.state_field] : undefined;
    const pending = st && st.state === 'pending' && st.transition ? st.transition : '';
    const refused = st && st.state === 'dead' && st.reason ? st.reason : '';
    if (this.stateChip) {
      const title = state !== undefined && state !== null && state !== '' ? stateTitle(info, state) : '';
      this.stateChip.textContent = title ? (pending ? t('statePending', {state: title, action: transitionTitle(info, pending)}) : title) : '';
      this.stateChip.hidden = !title;
    }
    const offered = transitionsFor(info, this.doc);
    const stock = this.app.upstreamMode === 'stock';
    const hasWorkflow = !!wf || info.transitions.length > 0;
    if (!info.methods.includes('action') || !hasWorkflow || (!stock && !offered.list.length && !pending && !refused && !offered.unknown)) {
      el.hidden = true;
      el.replaceChildren();
      return;
    }
    el.hidden = false;
    const key = JSON.stringify([offered, pending, refused, stock, this.actionBusy || false]);
    if (key === this.workflowKey) return;
    this.workflowKey = key;
    const cid = this.commentID || (this.commentID = newID('comment'));
    const keep = this.comment ? this.comment.value : '';
    this.comment = h('input', {id: cid, type: 'text', autocomplete: 'off', value: keep, disabled: stock});
    if (!this.actionResult) this.actionResult = h('p', {class: 'action-result', role: 'status'});
    this.actionButtons = offered.list.map((tr) => h('button', {type: 'button', class: 'secondary', 'data-transition': tr.name,
      disabled: stock || !!pending || this.actionBusy, onclick: () => this.runAction(tr)}, tr.title));
    replace(el,
      h('h2', {}, t('actions')),
      stock ? h('p', {class: 'alert warn stock-note'}, t('stockWorkflow')) : null,
      pending ? h('p', {class: 'alert pending-note'}, t('transitionPending', {action: transitionTitle(info, pending)})) : null,
      refused ? h('p', {class: 'alert err refused-note'}, t('transitionRefused', {message: refused})) : null,
      offered.unknown && !stock ? h('p', {class: 'muted'}, t('stateUnknown', {state: String(offered.state || '')})) : null,
      offered.list.length ? [
        h('div', {class: 'field'}, h('label', {for: cid}, t('actionComment')), this.comment),
        h('div', {class: 'buttons'}, this.actionButtons)] : (offered.unknown || stock ? null : h('p', {class: 'muted'}, t('noTransitions'))),
      this.actionResult);
  }

  async runAction(tr) {
    const label = tr.title;
    this.actionBusy = true;
    for (const b of this.actionButtons) b.disabled = true;
    this.actionResult.className = 'action-result';
    this.actionResult.textContent = t('actionRunning', {action: label});
    try {
      await this.session.action(this.id, tr.name, {comment: this.comment.value.trim()});
      if (this.destroyed) return;
      this.actionResult.className = 'action-result ok';
      this.actionResult.textContent = t('actionDone', {action: label});
      this.comment.value = '';
      this.actionBusy = false;
      this.load();
    } catch (err) {
      if (this.destroyed) return;
      const why = err.status === 403 ? t('denied', {message: err.message}) : reasonText(err.reason, err.message);
      this.actionResult.className = 'action-result err';
      this.actionResult.textContent = t('actionFailed', {action: label, message: why});
    } finally {
      this.actionBusy = false;
      this.workflowKey = '';
      this.renderWorkflow();
    }
  }

  // children offers to add a child document (a line to an order) when the role may.
  children() {
    if (this.listboxes.length) return null;
    const child = {'Sale Order': 'Sale Order Line'}[this.type];
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
      for (const lb of this.listboxes) lb.changed();
      return;
    }
    const ids = detail.ids || [];
    if (ids.some((x) => x !== this.id)) for (const lb of this.listboxes) lb.changed();
    // Our own save notifies us too: its answer reloads the form.
    if (this.saving || !ids.includes(this.id)) return;
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
    for (const w of this.widgets.values()) if (w.editable) w.setRaw(w.original);
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
    this.renderWorkflow(); // the upstream mode may have become known
    const key = JSON.stringify(this.app.status && this.app.status.outbox);
    if (this.lastOutbox !== undefined && key !== this.lastOutbox) {
      this.refreshSync();
      // The outbox moved (an upload settled, the operator resolved a conflict from the
      // command line): the document may have changed without a notification for it. load
      // shows it in place unless the user is typing (then behind a note).
      if (this.id && !this.saving) this.load();
    }
    this.lastOutbox = key;
  }

  destroy() {
    if (!this.done) this.saveDraft.flush();
    this.saveDraft.cancel();
    this.destroyed = true;
    clearTimeout(this.syncTimer);
  }
}
