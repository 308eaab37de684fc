// listbox.js — ERP5's ListBox inside a form: the sub-documents of the open document (an
// order's lines) with ERP5's columns — a relation column shows the related document's title,
// a total column is quantity × price when the line has none — their sum, a way to open each,
// and a row to add one (posted with parent_relative_url = the open document).

import {t, reasonText} from '/strings.js';
import {h, replace, docHash, newHash, quote, newID} from '/dom.js';
import {formModel, relationOf, formatNumber, fieldOf} from '/erp5.js';
import {makeWidget, display} from '/fields.js';

function lineTotal(v) {
  if (typeof v.total_price === 'number') return v.total_price;
  if (typeof v.quantity === 'number' && typeof v.price === 'number') return v.quantity * v.price;
  return null;
}

/** ListBox is the listbox section of a document's form. */
export class ListBox {
  constructor(view, m) {
    this.view = view;
    this.app = view.app;
    this.session = view.session;
    this.m = m;
    this.childType = (m.listboxTypes && m.listboxTypes[0]) || '';
    this.child = this.childType ? this.app.typeInfo(this.childType) : null;
    this.columns = (m.columns && m.columns.length ? m.columns : [['title', 'Title']]).map(([c, title]) => {
      const rel = this.child && c.endsWith('_title') ? relationOf(this.child, c.slice(0, -6)) : null;
      return {c, title: title || c, rel: rel ? c.slice(0, -6) : null, field: this.child ? fieldOf(this.child, rel ? c.slice(0, -6) : c) : null};
    });
    this.seq = 0;
    const hid = newID('lb');
    this.tbody = h('tbody');
    this.tfoot = h('tfoot');
    this.summary = h('p', {class: 'muted', role: 'status'}, t('loading'));
    this.table = h('table', {class: 'rows lines'},
      h('caption', {class: 'visually-hidden'}, m.title),
      h('thead', {}, h('tr', {}, this.columns.map((col) => h('th', {scope: 'col', class: this.numeric(col) ? 'num' : null}, col.title)))),
      this.tbody, this.tfoot);
    this.adder = this.addRow();
    this.el = h('section', {class: 'listbox', 'aria-labelledby': hid, 'data-field': m.id},
      h('h2', {id: hid}, m.title),
      this.summary,
      this.wrap = h('div', {class: 'table-wrap', hidden: true}, this.table),
      this.adder);
    this.load();
  }

  // parent is the open document: its id changes when head office numbers a new one.
  get parent() {
    return this.view.id;
  }

  // linkColumn is the column whose cell opens the line: its product (or title), else the first.
  linkColumn() {
    const i = this.columns.findIndex((col) => col.rel || col.c === 'title');
    return i >= 0 ? i : 0;
  }

  numeric(col) {
    return ['quantity', 'price', 'total_price', 'total_quantity'].includes(col.c) || (col.field && /Float|Integer/.test(col.field.type));
  }

  // addRow: one editable row of the child type's form fields that the columns show (a product
  // picker, a quantity), posted as a new sub-document.
  addRow() {
    const ci = this.child;
    if (!ci || !ci.methods.includes('post')) return null;
    const model = formModel(ci, {method: 'post'});
    const byProp = new Map(model.groups.flatMap((g) => g.fields).map((f) => [f.prop, f]));
    this.addWidgets = [];
    for (const col of this.columns) {
      const f = byProp.get(col.rel || col.c);
      // The row asks what a line needs: its relations, amounts, and any required field.
      if (!f || !f.editable || !(col.rel || f.required || f.type === 'FloatField')) continue;
      const w = makeWidget({...f, title: col.title, description: ''}, {session: this.session, titles: this.app.titles, doc: null,
        onchange: () => this.picked(w)});
      w.wrap.classList.add('compact');
      this.addWidgets.push(w);
    }
    if (!this.addWidgets.length) {
      return h('p', {}, h('a', {class: 'button secondary', href: newHash(this.childType) + '?parent=' + encodeURIComponent(this.parent)}, t('addLine')));
    }
    this.addError = h('p', {class: 'field-error', role: 'alert', hidden: true});
    this.addButton = h('button', {type: 'submit', class: 'secondary'}, t('addLine'));
    return h('form', {class: 'add-line', novalidate: true, 'aria-label': t('addLine'), onsubmit: (e) => { e.preventDefault(); this.add(); },
      oninput: (e) => { for (const w of this.addWidgets) if (w.control === e.target) w.proposed = false; }},
      h('div', {class: 'add-fields'}, this.addWidgets.map((w) => w.wrap), h('div', {class: 'field compact add-button'}, this.addButton)),
      this.addError,
      h('p', {class: 'hint'}, h('a', {href: newHash(this.childType) + '?parent=' + encodeURIComponent(this.parent)}, t('addLineFull'))));
  }

  // picked: a product chosen in the add row proposes its base price as the line's price
  // (the clerk may change it; head office prices the order in the end).
  picked(w) {
    const price = this.addWidgets.find((x) => x.m.prop === 'price');
    if (!price || !w.picker || !w.picker.value || (price.raw() !== '' && !price.proposed)) return;
    const id = w.picker.value;
    this.pricing = this.session.get(id).then((doc) => {
      if (w.picker.value !== id || (price.raw() !== '' && !price.proposed)) return;
      if (typeof doc.base_price === 'number') {
        price.setRaw(String(doc.base_price));
        price.proposed = true; // a later product may replace it, until the clerk types one
      }
    }, () => {});
    return this.pricing;
  }

  async add() {
    if (this.adding) return;
    await this.pricing; // a product's proposed price, still on its way
    const doc = {portal_type: this.childType, parent_relative_url: this.parent};
    for (const w of this.addWidgets) {
      w.err.hidden = true;
      const v = w.value();
      if (v !== null) doc[w.m.prop] = v;
    }
    this.adding = true;
    this.addButton.disabled = true;
    this.addError.hidden = true;
    try {
      await this.session.post(doc, undefined, {meta: {route: location.hash}});
    } catch (err) {
      const fields = err.fields || {};
      const msgs = [];
      for (const w of this.addWidgets) {
        if (fields[w.m.prop]) {
          w.err.textContent = `${w.m.title}: ${fields[w.m.prop]}`;
          w.err.hidden = false;
        }
      }
      for (const [f, msg] of Object.entries(fields)) if (!this.addWidgets.some((w) => w.m.prop === f)) msgs.push(`${f}: ${msg}`);
      if (!Object.keys(fields).length) msgs.push(reasonText(err.reason, err.message));
      this.addError.textContent = msgs.length ? t('lineNotAdded', {message: msgs.join('; ')}) : '';
      this.addError.hidden = !msgs.length;
      return;
    } finally {
      this.adding = false;
      this.addButton.disabled = false;
    }
    for (const w of this.addWidgets) {
      w.setRaw(w.m.type === 'CheckBoxField' ? 'false' : '');
      w.proposed = false;
    }
    if (this.addWidgets[0]) this.addWidgets[0].control.focus();
    this.load();
  }

  async load() {
    const seq = ++this.seq;
    if (!this.child || !this.child.methods.includes('allDocs')) {
      this.summary.textContent = t('denied', {message: reasonText('denied', '')});
      this.wrap.hidden = true;
      return;
    }
    const props = new Set(['title', 'quantity', 'price', 'total_price']);
    for (const col of this.columns) props.add(col.rel || col.c);
    let res;
    try {
      res = await this.session.allDocs({query: `parent_relative_url:${quote(this.parent)} AND portal_type:${quote(this.childType)}`,
        limit: [0, 500], select_list: [...props]});
    } catch (err) {
      if (seq === this.seq) this.summary.textContent = t('listError', {message: reasonText(err.reason, err.message)});
      return;
    }
    if (seq !== this.seq) return;
    this.rows = res.rows;
    let sum = 0;
    let summed = false;
    replace(this.tbody, res.rows.map((row) => {
      const v = row.value || {};
      const total = lineTotal(v);
      if (total !== null) {
        sum += total;
        summed = true;
      }
      return h('tr', {'data-id': row.id}, this.columns.map((col, i) => {
        let cell;
        if (col.rel) {
          const a = h('span', {}, '…');
          const url = v[col.rel];
          if (url) this.app.titles.title(String(url)).then((title) => { a.textContent = title === null ? String(url) : title; });
          else a.textContent = t('none');
          cell = a;
        } else if (col.c === 'total_price') {
          cell = total === null ? t('none') : formatNumber(total, {precision: 2});
        } else if (col.field) {
          cell = display(col.field, v[col.c], this.app.titles);
        } else {
          const x = v[col.c];
          cell = typeof x === 'number' ? formatNumber(x) : (x === undefined || x === null || x === '' ? t('none') : String(x));
        }
        const content = i === this.linkColumn() ? h('a', {href: docHash(row.id), class: 'line-link'}, cell) : cell;
        return h('td', {'data-label': col.title, class: this.numeric(col) ? 'num' : null}, content);
      }));
    }));
    const totalCol = this.columns.findIndex((col) => col.c === 'total_price');
    replace(this.tfoot, summed && totalCol >= 0 ? h('tr', {class: 'sum'}, this.columns.map((col, i) => h(i === 0 ? 'th' : 'td',
      {class: i === totalCol ? 'num' : null, 'data-label': i === totalCol ? col.title : null, scope: i === 0 ? 'row' : null},
      i === 0 ? t('linesTotal') : i === totalCol ? formatNumber(sum, {precision: 2}) : ''))) : null);
    this.wrap.hidden = !res.rows.length;
    this.summary.textContent = res.rows.length ? t('linesCount', {count: res.rows.length}) : t('noLines');
    this.total = summed ? sum : null;
  }

  changed() {
    this.load();
  }
}
