// list.js — a portal type's searchable list: a jIO query box, a field to search in, filters on
// fields with a fixed set of values, sorting, paging with total_rows, and each document's
// upstream state. The list refreshes when the gateway says documents changed.

import {t, lang, typeName, reasonText, relativeTime} from '/strings.js';
import {h, replace, debounce, docHash, listHash, newHash, formatValue, quote, newID} from '/dom.js';
import {labelOf, relationOf, fieldOf, formatDate, formatNumber, parseDate, naturalCompare, stateTitle, RELATIVE_URL} from '/erp5.js';

/** PREFERRED_COLUMNS are the columns of known portal types, the first being the link. */
export const PREFERRED_COLUMNS = {
  'Person': ['title', 'email', 'reference'],
  'Organisation': ['title', 'corporate_name', 'default_address_city', 'email'],
  'Product': ['title', 'reference', 'quantity_unit', 'base_price'],
  'Sale Order': ['title', 'reference', 'destination', 'start_date', 'simulation_state'],
  'Sale Order Line': ['title', 'resource', 'quantity', 'quantity_unit'],
};
const MAX_COLUMNS = 5;
const PAGE_SIZES = [20, 50, 100];
const DEFAULT_SIZE = 20;
// NATURAL_MAX: up to this many matches, a list sorted by a text column is sorted here, in
// natural order ("Commande 2" before "Commande 185"); beyond, in the gateway's text order.
const NATURAL_MAX = 500;
// DATE_KEYS are compared as dates by the gateway (query.date_keys) and shown as dates.
const DATE_KEYS = new Set(['modification_date', 'creation_date', 'start_date', 'stop_date', 'birthday']);

/** readableFn returns whether the role reads a field of a describe entry. */
export function readableFn(info) {
  const all = info.readable.includes('*');
  return (f) => f === 'portal_type' || all || info.readable.includes(f);
}

// columnsFor picks the list's columns: the preferred ones the role reads, else the title and
// the first schema fields it reads.
function columnsFor(info) {
  const readable = readableFn(info);
  const schema = Object.keys((info.schema && info.schema.fields) || {});
  // A preferred column is the property ERP5's form shows it with (email → default_email_text).
  const formProps = info.form && info.form.fields ? Object.values(info.form.fields).map((f) => f.property).filter(Boolean) : [];
  const inForm = (c) => (formProps.includes(c) ? c : formProps.find((p) => p === `default_${c}_text` || p === `default_${c}` || p.endsWith('_' + c)) || c);
  let cols = [...new Set((PREFERRED_COLUMNS[info.portal_type] || []).map((c) => (formProps.length ? inForm(c) : c)))].filter(readable);
  if (!cols.length && formProps.length) cols = ['title', ...formProps.filter((p) => p !== 'title' && !/_list$/.test(p))].filter(readable);
  if (!cols.length) cols = ['title', ...schema.filter((f) => f !== 'title')].filter(readable);
  if (!cols.includes('title') && readable('title')) cols.unshift('title');
  return cols.slice(0, MAX_COLUMNS);
}

/** ListView is the list page of one portal type. */
export class ListView {
  constructor(app, type, params) {
    this.app = app;
    this.session = app.session;
    this.type = type;
    this.info = app.typeInfo(type);
    this.seq = 0;
    this.rows = [];
    this.refresh = debounce(() => this.load(), 250);
    this.typing = debounce(() => this.search(), 350);
    const title = typeName(type, 'title');
    app.setPage(title, [{label: title, href: listHash(type)}]);
    if (!this.info || !this.info.methods.includes('allDocs')) {
      this.el = h('section', {class: 'panel'}, h('h1', {tabindex: '-1'}, title), h('p', {class: 'alert err', role: 'alert'}, t('denied', {message: reasonText('denied', '')})));
      return;
    }
    this.readable = readableFn(this.info);
    this.columns = columnsFor(this.info);
    const fields = (this.info.schema && this.info.schema.fields) || {};
    this.enums = Object.entries(fields).filter(([f, fs]) => fs.enum && fs.enum.length && this.readable(f)).map(([f, fs]) => ({field: f, values: fs.enum}));
    this.sortable = [...new Set([...this.columns, ...Object.keys(fields).filter(this.readable)])];
    this.inFields = this.sortable.filter((f) => !fields[f] || ['string', 'list', 'date', undefined].includes(fields[f].type));
    this.st = {
      q: params.get('q') || '',
      in: this.inFields.includes(params.get('in')) ? params.get('in') : '',
      sort: this.sortable.includes(params.get('sort')) ? params.get('sort') : (this.columns[0] || ''),
      dir: params.get('dir') === 'descending' ? 'descending' : 'ascending',
      page: Math.max(1, parseInt(params.get('page'), 10) || 1),
      size: PAGE_SIZES.includes(parseInt(params.get('size'), 10)) ? parseInt(params.get('size'), 10) : DEFAULT_SIZE,
      filters: {},
    };
    for (const e of this.enums) {
      const v = params.get('f.' + e.field);
      if (v !== null && e.values.map(String).includes(v)) this.st.filters[e.field] = v;
    }
    this.el = this.build(title);
    this.load();
  }

  build(title) {
    const canPost = this.info.methods.includes('post');
    const qID = newID('q');
    this.q = h('input', {id: qID, type: 'search', name: 'q', value: this.st.q, autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': `${qID}-hint ${qID}-err`, 'aria-keyshortcuts': '/', enterkeyhint: 'search',
      oninput: () => this.typing()});
    this.qErr = h('p', {id: `${qID}-err`, class: 'field-error', hidden: true});
    const select = (label, name, options, value, onchange) => {
      const id = newID(name);
      return h('div', {class: 'field compact'},
        h('label', {for: id}, label),
        h('select', {id, name, onchange}, options.map(([v, text]) => h('option', {value: v, selected: String(v) === String(value)}, text))));
    };
    const tools = h('div', {class: 'tools'},
      select(t('searchIn'), 'in', [['', t('anyField')], ...this.inFields.map((f) => [f, labelOf(this.info, f)])], this.st.in,
        (e) => { this.st.in = e.target.value; this.search(); }),
      this.enums.map((e) => select(labelOf(this.info, e.field), 'f-' + e.field, [['', t('anyValue')], ...e.values.map((v) => [v, this.valueText(e.field, v)])],
        this.st.filters[e.field] || '', (ev) => {
          if (ev.target.value) this.st.filters[e.field] = ev.target.value;
          else delete this.st.filters[e.field];
          this.search();
        })),
      select(t('sortBy'), 'sort', this.sortable.flatMap((f) => [[f + ':ascending', t('sortOption', {field: labelOf(this.info, f), order: t('ascending')})],
        [f + ':descending', t('sortOption', {field: labelOf(this.info, f), order: t('descending')})]]), this.st.sort + ':' + this.st.dir, (e) => {
        [this.st.sort, this.st.dir] = e.target.value.split(':');
        this.search();
      }),
      select(t('pageSize'), 'size', PAGE_SIZES.map((n) => [n, String(n)]), this.st.size, (e) => { this.st.size = parseInt(e.target.value, 10); this.search(); }));

    const form = h('form', {class: 'search', role: 'search', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.typing.cancel(); this.search(); }},
      h('div', {class: 'field search-field'},
        h('label', {for: qID}, t('search')),
        h('div', {class: 'row'}, this.q,
          h('button', {type: 'submit', class: 'primary'}, t('searchButton'))),
        h('p', {id: `${qID}-hint`, class: 'hint'}, t('searchHint')),
        this.qErr),
      tools);

    this.summary = h('p', {class: 'summary', 'aria-live': 'polite'}, t('loading'));
    this.headCells = new Map();
    const headRow = h('tr', {}, this.columns.map((c) => {
      const th = h('th', {scope: 'col'}, h('button', {type: 'button', class: 'sort', onclick: () => this.sortBy(c)}, labelOf(this.info, c), h('span', {class: 'arrow', 'aria-hidden': 'true'})));
      this.headCells.set(c, th);
      return th;
    }), h('th', {scope: 'col'}, t('headOffice')));
    this.tbody = h('tbody');
    this.table = h('table', {class: 'rows'}, h('caption', {class: 'visually-hidden'}, title), h('thead', {}, headRow), this.tbody);
    this.prev = h('button', {type: 'button', class: 'secondary', onclick: () => this.go(-1)}, '‹ ' + t('previous'));
    this.next = h('button', {type: 'button', class: 'secondary', onclick: () => this.go(1)}, t('next') + ' ›');
    this.pageInfo = h('span', {class: 'page-info'});
    this.pager = h('nav', {class: 'pager', 'aria-label': t('pages')}, this.prev, this.pageInfo, this.next);
    this.empty = h('div', {class: 'empty', hidden: true});

    return h('section', {class: 'list'},
      h('div', {class: 'page-head'},
        h('h1', {tabindex: '-1'}, title),
        canPost ? h('a', {class: 'button primary', href: newHash(this.type), 'aria-keyshortcuts': 'n'}, t('newDoc', {type: typeName(this.type, 'one')})) : null),
      form,
      this.summary,
      h('div', {class: 'table-wrap'}, this.table),
      this.empty,
      this.pager,
      h('p', {class: 'hint keys'}, t('keyboardHint')));
  }

  // query builds the jIO query: the portal type, the search text (in one field or as typed),
  // and the filters.
  query() {
    const parts = [`portal_type:${quote(this.type)}`];
    const text = this.st.q.trim();
    if (text) {
      if (this.st.in) parts.push(`${this.st.in}:${quote('%' + text + '%')}`);
      else parts.push(`(${text})`);
    }
    for (const [f, v] of Object.entries(this.st.filters)) parts.push(`${f}:=${quote(v)}`);
    return parts.join(' AND ');
  }

  // naturalSort: the list is sorted by a text column (not a date, a number or a state).
  naturalSort() {
    const c = this.st.sort;
    if (!c || DATE_KEYS.has(c)) return false;
    const f = fieldOf(this.info, c);
    if (f && /DateTime|Float|Integer/.test(f.type)) return false;
    const fs = this.info.schema && this.info.schema.fields && this.info.schema.fields[c];
    return !fs || fs.type === 'string';
  }

  search() {
    this.st.q = this.q.value;
    this.st.page = 1;
    this.load();
  }

  sortBy(c) {
    if (this.st.sort === c) this.st.dir = this.st.dir === 'ascending' ? 'descending' : 'ascending';
    else {
      this.st.sort = c;
      this.st.dir = 'ascending';
    }
    const sel = this.el.querySelector('select[name=sort]');
    if (sel) sel.value = c + ':' + this.st.dir;
    this.load();
  }

  go(delta) {
    this.st.page = Math.max(1, this.st.page + delta);
    this.load().then(() => this.table.scrollIntoView({block: 'nearest'}));
  }

  // saveState puts the list's state in the address, so that a reload or a link keeps it.
  saveState() {
    const p = {};
    if (this.st.q) p.q = this.st.q;
    if (this.st.in) p.in = this.st.in;
    if (this.st.sort && this.st.sort !== this.columns[0]) p.sort = this.st.sort;
    if (this.st.dir !== 'ascending') p.dir = this.st.dir;
    if (this.st.page > 1) p.page = String(this.st.page);
    if (this.st.size !== DEFAULT_SIZE) p.size = String(this.st.size);
    for (const [f, v] of Object.entries(this.st.filters)) p['f.' + f] = v;
    const hash = listHash(this.type, p);
    this.app.replaceHash(hash);
  }

  async load() {
    const seq = ++this.seq;
    const s = this.session;
    this.saveState();
    if (!s.open) {
      this.summary.textContent = t('notConnectedRead');
      return;
    }
    this.table.setAttribute('aria-busy', 'true');
    const skip = (this.st.page - 1) * this.st.size;
    let res;
    try {
      res = await s.allDocs({
        query: this.query(),
        sort_on: this.st.sort ? [[this.st.sort, this.st.dir]] : [],
        limit: [skip, this.st.size],
        select_list: this.columns,
      });
    } catch (err) {
      if (seq !== this.seq) return;
      this.table.removeAttribute('aria-busy');
      if (err.status === 400 && this.st.q.trim()) {
        this.qErr.textContent = t('queryError', {message: err.message.replace(/^query:\s*/, '')});
        this.qErr.hidden = false;
        this.q.setAttribute('aria-invalid', 'true');
        this.summary.textContent = '';
      } else if (err.reason === 'disconnected' || err.reason === 'closed') {
        this.summary.textContent = t('notConnectedRead');
      } else {
        this.summary.textContent = t('listError', {message: reasonText(err.reason, err.message)});
      }
      return;
    }
    if (seq !== this.seq) return;
    if (this.naturalSort() && res.total_rows > res.rows.length && res.total_rows <= NATURAL_MAX) {
      // Text sorts in natural order here: every match's columns, sorted, then the page.
      try {
        const all = await s.allDocs({query: this.query(), limit: [0, res.total_rows], select_list: this.columns.includes(this.st.sort) ? this.columns : [...this.columns, this.st.sort]});
        if (seq !== this.seq) return;
        const dir = this.st.dir === 'descending' ? -1 : 1;
        all.rows.sort((a, b) => dir * naturalCompare((a.value || {})[this.st.sort], (b.value || {})[this.st.sort]));
        res = {...all, rows: all.rows.slice(skip, skip + this.st.size)};
      } catch {
        // The gateway's order is still an order.
      }
    } else if (this.naturalSort()) {
      const dir = this.st.dir === 'descending' ? -1 : 1;
      res.rows.sort((a, b) => dir * naturalCompare((a.value || {})[this.st.sort], (b.value || {})[this.st.sort]));
    }
    this.qErr.hidden = true;
    this.q.removeAttribute('aria-invalid');
    this.table.removeAttribute('aria-busy');
    // Past the last page (rows removed, a smaller page size): go to the last page.
    if (res.rows.length === 0 && res.total_rows > 0 && skip >= res.total_rows) {
      this.st.page = Math.max(1, Math.ceil(res.total_rows / this.st.size));
      this.load();
      return;
    }
    this.rows = res.rows;
    this.total = res.total_rows;
    this.freshAt = res.fresh_at || null;
    this.render(skip);
    this.loadReasons(seq);
  }

  render(skip) {
    const total = this.total;
    const from = total ? skip + 1 : 0;
    const to = skip + this.rows.length;
    this.summary.textContent = t('showing', {from, to, total}) +
      (this.freshAt ? ' · ' + t('listFresh', {time: relativeTime(this.freshAt)}) : '');
    for (const [c, th] of this.headCells) {
      if (c === this.st.sort) th.setAttribute('aria-sort', this.st.dir);
      else th.removeAttribute('aria-sort');
      th.querySelector('.arrow').textContent = c === this.st.sort ? (this.st.dir === 'ascending' ? ' ▲' : ' ▼') : '';
    }
    replace(this.tbody, this.rows.map((row) => this.renderRow(row)));
    const pages = Math.max(1, Math.ceil(total / this.st.size));
    this.pageInfo.textContent = t('pageOf', {page: this.st.page, pages});
    this.prev.disabled = this.st.page <= 1;
    this.next.disabled = this.st.page >= pages;
    this.pager.hidden = pages <= 1;
    const filtered = this.st.q.trim() || Object.keys(this.st.filters).length;
    this.table.hidden = this.rows.length === 0;
    this.empty.hidden = this.rows.length !== 0;
    if (!this.rows.length) {
      const canPost = this.info.methods.includes('post');
      const reached = this.reached();
      this.reachedShown = reached;
      const what = filtered ? t('noneMatch') : reached ? t('noneYet', {type: typeName(this.type, 'other')}) : t('notReached', {type: typeName(this.type, 'other')});
      replace(this.empty, h('p', {}, what),
        !filtered && canPost ? h('a', {class: 'button primary', href: newHash(this.type)}, t('newDoc', {type: typeName(this.type, 'one')})) : null);
    }
  }

  // valueText names a value of a field with a fixed set of values: ERP5's item or state title.
  valueText(field, v) {
    const wf = this.info.workflow;
    if (wf && field === wf.state_field) return stateTitle(this.info, v);
    const f = fieldOf(this.info, field);
    const it = f && Array.isArray(f.items) ? f.items.find((i) => String(i[1]) === String(v)) : null;
    return it ? String(it[0]) : formatValue(v, {lang});
  }

  // cell shows a value as ERP5 does: a related document's title, a date or number in the
  // browser's locale, a workflow state's title, a list item's label.
  cell(c, val) {
    const none = t('none');
    if (val === undefined || val === null || val === '') return none;
    const info = this.info;
    const f = fieldOf(info, c);
    const wf = info.workflow;
    if (wf && c === wf.state_field) return stateTitle(info, val);
    if ((relationOf(info, c) || (typeof val === 'string' && RELATIVE_URL.test(val))) && typeof val === 'string') {
      const known = this.app.titles.known(val);
      if (known !== undefined) return known === null ? val : known;
      const span = h('span', {class: 'related'}, '…');
      this.app.titles.title(val).then((title) => { span.textContent = title === null ? val : title; });
      return span;
    }
    if ((f && f.type === 'DateTimeField') || DATE_KEYS.has(c)) return formatDate(val, f ? f.date_only === true : false) || String(val);
    if (f && Array.isArray(f.items)) {
      const it = f.items.find((i) => String(i[1]) === String(val));
      if (it) return String(it[0]);
    }
    if (typeof val === 'number') return formatNumber(val, {precision: f && Number.isInteger(f.precision) ? f.precision : undefined});
    if (typeof val === 'string' && /\d{2}:\d{2}/.test(val) && parseDate(val)) return formatDate(val);
    return formatValue(val, {lang, yes: t('yes'), none});
  }

  // reached: the downlink has heard from ERP5 for this type's scope (scopes are named after
  // their portal type; where none is, any scope heard from counts).
  reached() {
    const fresh = this.app.status && this.app.status.fresh_at;
    if (!fresh) return !!this.freshAt;
    const keys = Object.keys(fresh);
    if (keys.includes(this.type)) return true;
    return keys.length > 0 && !keys.some((k) => this.app.types && this.app.types.has(k));
  }

  renderRow(row) {
    const v = row.value || {};
    const cells = this.columns.map((c, i) => {
      const label = labelOf(this.info, c);
      if (i === 0) {
        const text = v[c] === undefined || v[c] === null || v[c] === '' ? row.id : this.cell(c, v[c]);
        return h('td', {'data-label': label, class: 'primary-cell'}, h('a', {href: docHash(row.id)}, text));
      }
      const val = v[c];
      return h('td', {'data-label': label, class: typeof val === 'number' ? 'num' : null}, this.cell(c, val));
    });
    const tr = h('tr', {'data-id': row.id, class: this.updated && this.updated.has(row.id) ? 'updated' : null},
      cells, h('td', {'data-label': t('headOffice'), class: 'sync-cell'}, h('div', {}, syncBadge(row.sync))));
    // The whole row opens the document for a mouse or a finger; the keyboard uses the link.
    tr.addEventListener('click', (e) => {
      if (e.target.closest('a, button') || (window.getSelection && String(window.getSelection()))) return;
      location.hash = docHash(row.id);
    });
    return tr;
  }

  // loadReasons fetches why rejected or conflicting rows are so (the sync method).
  async loadReasons(seq) {
    const ids = this.rows.filter((r) => r.sync === 'dead' || r.sync === 'conflict').map((r) => r.id);
    if (!ids.length) return;
    let states;
    try {
      states = (await this.session.sync(ids)).states;
    } catch {
      return; // the badge alone still says it
    }
    if (seq !== this.seq) return;
    for (const id of ids) {
      const st = states[id];
      const tr = [...this.tbody.rows].find((r) => r.dataset.id === id);
      if (!st || !tr) continue;
      const cell = tr.querySelector('.sync-cell');
      replace(cell, h('div', {}, syncBadge(st.state), st.reason ? h('span', {class: 'reason'}, st.reason) : null));
    }
  }

  changed(detail) {
    this.updated = new Set([...(detail.ids || []), ...Object.values(detail.renamed || {})]);
    this.refresh();
  }

  reconnected() {
    this.load();
  }

  status() {
    if (!this.empty.hidden && this.rows.length === 0 && this.reachedShown !== this.reached()) this.refresh();
    // Uploads change rows' states: refresh when the outbox counts move.
    const key = JSON.stringify(this.app.status && this.app.status.outbox);
    if (this.lastOutbox !== undefined && key !== this.lastOutbox) this.refresh();
    this.lastOutbox = key;
  }

  key(e) {
    if (e.key === '/') {
      this.q.focus();
      this.q.select();
      return true;
    }
    if ((e.key === 'n' || e.key === 'N') && this.info && this.info.methods.includes('post')) {
      location.hash = newHash(this.type);
      return true;
    }
    return false;
  }

  destroy() {
    this.refresh.cancel();
    this.typing.cancel();
    this.seq++;
  }
}

/** syncBadge shows a document's upstream state (the sync method's state). */
export function syncBadge(state) {
  const known = ['synced', 'pending', 'dead', 'conflict'].includes(state) ? state : 'pending';
  return h('span', {class: 'badge sync-' + known}, t('syncStates.' + known));
}
