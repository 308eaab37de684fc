// erp5.js — what ERP5's forms mean, for the site web app: the field model a form is built
// from (ERP5's learned view form, else the policy schema with human labels), ERP5's dates
// (RFC 822 text) in the browser's locale and back, related documents' titles (resolved in
// batches, cached), and the natural order of titles. See docs/DESIGN.md §6 for the describe
// result these read.

// ---------------------------------------------------------------------------------------------
// Labels

// LABELS are the human names of common ERP5 properties, for types with no learned form.
const LABELS = {
  default_email_text: 'Email',
  default_email_coordinate_text: 'Email',
  default_telephone_text: 'Telephone',
  default_fax_text: 'Fax',
  default_address_city: 'City',
  default_address_street_address: 'Address',
  default_address_zip_code: 'Postal Code',
  default_address_region: 'Region',
  ean13_code: 'EAN13 Code',
  parent_relative_url: 'Parent',
  portal_type: 'Type',
  simulation_state: 'State',
  validation_state: 'State',
  quantity_unit: 'Quantity Unit',
  base_price: 'Base Price',
  total_price: 'Total',
  resource_title: 'Product',
  modification_date: 'Modification Date',
  creation_date: 'Creation Date',
};
const UPPER = new Set(['id', 'url', 'vat', 'ean13', 'gtin', 'sku', 'iban', 'bic']);

/** humanLabel names an ERP5 property as ERP5 labels its fields: default_email_text → Email. */
export function humanLabel(prop) {
  if (LABELS[prop]) return LABELS[prop];
  let s = String(prop).replace(/^(my|your)_/, '').replace(/^default_/, '').replace(/_(text|value|list|title)$/, '');
  s = s.replace(/_action$/, '');
  const words = s.split(/[_\s-]+/).filter(Boolean).map((w) => (UPPER.has(w) ? w.toUpperCase() : w[0].toUpperCase() + w.slice(1)));
  return words.length ? words.join(' ') : String(prop);
}

// ---------------------------------------------------------------------------------------------
// Dates

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const RFC822 = /^(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*(GMT|UTC|UT|Z|[+-]\d{4})?$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * parseDate reads ERP5's RFC 822 text (or ISO 8601) as {date, y, m, d, hasTime}: the instant,
 * and the day as written (for date-only fields, which keep the day whatever the zone). null
 * when the text is not a date.
 */
export function parseDate(s) {
  if (typeof s !== 'string') return null;
  const t = s.trim();
  let y, mo, d, hh = 0, mi = 0, ss = 0, zone = null, hasTime = false;
  let m = RFC822.exec(t);
  if (m) {
    d = +m[1];
    mo = MONTHS.findIndex((x) => x.toLowerCase() === m[2].toLowerCase());
    if (mo < 0) return null;
    y = +m[3];
    if (m[4] !== undefined) {
      hasTime = true;
      hh = +m[4];
      mi = +m[5];
      ss = m[6] ? +m[6] : 0;
    }
    zone = m[7] || 'Z';
  } else if ((m = ISO.exec(t))) {
    y = +m[1];
    mo = +m[2] - 1;
    d = +m[3];
    if (m[4] !== undefined) {
      hasTime = true;
      hh = +m[4];
      mi = +m[5];
      ss = m[6] ? +m[6] : 0;
    }
    zone = m[7] || null;
  } else {
    return null;
  }
  let date;
  if (zone === null) {
    date = new Date(y, mo, d, hh, mi, ss); // no zone: the browser's
  } else {
    let off = 0;
    if (/^[+-]/.test(zone)) {
      const z = zone.replace(':', '');
      off = (z[0] === '-' ? -1 : 1) * (parseInt(z.slice(1, 3), 10) * 60 + parseInt(z.slice(3, 5), 10));
    }
    date = new Date(Date.UTC(y, mo, d, hh, mi, ss) - off * 60000);
  }
  if (!Number.isFinite(date.getTime())) return null;
  return {date, y, m: mo + 1, d, hasTime};
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** rfc822 writes an instant as ERP5's RFC 822 text in the browser's zone offset. */
export function rfc822(date) {
  const off = -date.getTimezoneOffset();
  const sign = off < 0 ? '-' : '+';
  const a = Math.abs(off);
  return `${DAYS[date.getDay()]}, ${pad(date.getDate())} ${MONTHS[date.getMonth()]} ${date.getFullYear()} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${sign}${pad(Math.floor(a / 60))}${pad(a % 60)}`;
}

/** dateInput returns what a date (date only) or datetime-local control holds for a stored date. */
export function dateInput(v, dateOnly) {
  const p = parseDate(v);
  if (!p) return '';
  if (dateOnly) return `${p.y}-${pad(p.m)}-${pad(p.d)}`;
  const d = p.date;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** fromDateInput turns a control's text back into ERP5's RFC 822 text (null when empty). */
export function fromDateInput(raw, dateOnly) {
  const s = String(raw || '').trim();
  if (!s) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?/.exec(s);
  if (!m) return s; // as typed: the gateway names the problem
  const date = dateOnly || m[4] === undefined ? new Date(+m[1], +m[2] - 1, +m[3]) : new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  return rfc822(date);
}

/** formatDate shows a stored date in the browser's locale and zone ("" when not a date). */
export function formatDate(v, dateOnly = false) {
  const p = parseDate(v);
  if (!p) return '';
  if (dateOnly || !p.hasTime) {
    return new Date(p.y, p.m - 1, p.d).toLocaleDateString(undefined, {year: 'numeric', month: 'short', day: 'numeric'});
  }
  return p.date.toLocaleString(undefined, {year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'});
}

// ---------------------------------------------------------------------------------------------
// Numbers

/** formatNumber shows a number in the browser's locale, with a Float field's precision and %. */
export function formatNumber(v, {precision, percent = false} = {}) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return v === null || v === undefined ? '' : String(v);
  const x = percent ? v * 100 : v;
  const opts = Number.isInteger(precision) && precision >= 0 ? {minimumFractionDigits: precision, maximumFractionDigits: precision} : {maximumFractionDigits: 6};
  return x.toLocaleString(undefined, opts) + (percent ? ' %' : '');
}

// ---------------------------------------------------------------------------------------------
// Natural order

const collator = typeof Intl !== 'undefined' ? new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'}) : null;

/** naturalCompare orders texts as people do: "Commande 2" before "Commande 185". */
export function naturalCompare(a, b) {
  const x = a === null || a === undefined ? '' : String(a);
  const y = b === null || b === undefined ? '' : String(b);
  return collator ? collator.compare(x, y) : (x < y ? -1 : x > y ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------
// Relations

/** RELATIVE_URL matches a relative URL of an ERP5 document: organisation_module/12. */
export const RELATIVE_URL = /^[a-z][a-z0-9_]*_module\/[^\s]+$/;

// FALLBACK_RELATIONS are relation properties of common types, for types with no learned form.
const FALLBACK_RELATIONS = {
  destination: {portal_types: ['Organisation', 'Person'], catalog_index: 'title'},
  destination_section: {portal_types: ['Organisation', 'Person'], catalog_index: 'title'},
  source: {portal_types: ['Organisation', 'Person'], catalog_index: 'title'},
  source_section: {portal_types: ['Organisation', 'Person'], catalog_index: 'title'},
  resource: {portal_types: ['Product'], catalog_index: 'title'},
  price_currency: {portal_types: ['Currency'], catalog_index: 'title'},
  career_subordination: {portal_types: ['Organisation'], catalog_index: 'title'},
  subordination: {portal_types: ['Organisation'], catalog_index: 'title'},
};

/**
 * Titles resolves related documents' relative URLs to their titles: asked ids are gathered
 * for a moment and read in one batch of gets; answers are cached for the page's life (a
 * `changed` notification drops the ids it names).
 */
export class Titles {
  constructor(session) {
    this.session = session;
    this.cache = new Map(); // id → {title, portal_type} | null (unreadable)
    this.waiting = new Map(); // id → [resolve]
    this.timer = null;
  }

  /** known returns a cached title, or undefined. */
  known(id) {
    const e = this.cache.get(id);
    return e === undefined ? undefined : e ? e.title : null;
  }

  /** title resolves to the document's title (its id when it has none, null when unreadable). */
  title(id) {
    if (!id) return Promise.resolve(null);
    if (this.cache.has(id)) return Promise.resolve(this.known(id));
    return new Promise((resolve) => {
      if (!this.waiting.has(id)) this.waiting.set(id, []);
      this.waiting.get(id).push(resolve);
      if (!this.timer) this.timer = setTimeout(() => this.flush(), 0);
    });
  }

  /** remember stores what a search already returned. */
  remember(id, title, portalType) {
    this.cache.set(id, {title: title || id, portal_type: portalType || ''});
  }

  forget(ids) {
    for (const id of ids || []) this.cache.delete(id);
  }

  async flush() {
    this.timer = null;
    const batch = new Map(this.waiting);
    this.waiting.clear();
    const ids = [...batch.keys()];
    let answers = [];
    try {
      answers = await this.session.batch(ids.map((id) => ({method: 'get', params: {id}})));
    } catch {
      answers = ids.map(() => ({error: true}));
    }
    ids.forEach((id, i) => {
      const a = answers[i] || {};
      if (a.result) this.remember(id, a.result.title ? String(a.result.title) : id, a.result.portal_type);
      else if (a.error && a.error.status === 404) this.cache.set(id, null);
      const t = a.result ? this.known(id) : (a.error && a.error.status === 404 ? null : id);
      for (const r of batch.get(id)) r(t);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The field model

// SCHEMA_TYPES map a policy schema type to the ERP5 field type a form shows it with.
const SCHEMA_TYPES = {string: 'StringField', number: 'FloatField', integer: 'IntegerField', boolean: 'CheckBoxField', date: 'DateTimeField', list: 'LinesField'};
// FALLBACK_ORDER puts the fields people look for first when no form is known.
const FALLBACK_ORDER = ['title', 'first_name', 'last_name', 'corporate_name', 'reference', 'email', 'default_email_text',
  'default_address_city', 'destination', 'resource', 'quantity', 'quantity_unit', 'price', 'base_price', 'start_date', 'stop_date',
  'birthday', 'simulation_state', 'validation_state'];
const FALLBACK_LAST = ['creation_date', 'modification_date'];
const NEVER_FIELDS = new Set(['portal_type', 'parent_relative_url']);
/** KNOWN_TYPES are the ERP5 field types the form renders; others are shown read-only. */
export const KNOWN_TYPES = new Set(['StringField', 'TextAreaField', 'EmailField', 'IntegerField', 'FloatField', 'CheckBoxField',
  'DateTimeField', 'ListField', 'RadioField', 'MultiListField', 'MultiCheckBoxField', 'LinesField', 'PasswordField',
  'RelationStringField', 'MultiRelationStringField', 'ListBox']);

function readableFn(info) {
  const all = info.readable.includes('*');
  return (f) => f === 'portal_type' || all || info.readable.includes(f);
}

/** relationOf returns the relation facts of a type's property: {portal_types, catalog_index} or null. */
export function relationOf(info, prop) {
  const form = info && info.form;
  if (form && form.fields) {
    for (const f of Object.values(form.fields)) {
      if (f.property === prop && /RelationStringField$/.test(f.type)) return {portal_types: f.portal_types || [], catalog_index: f.catalog_index || 'title', multiple: /^Multi/.test(f.type)};
    }
    return null;
  }
  return FALLBACK_RELATIONS[prop] || null;
}

/** labelOf returns the label of a type's property: its form field's title, else a human label. */
export function labelOf(info, prop) {
  const form = info && info.form;
  if (form && form.fields) {
    for (const f of Object.values(form.fields)) {
      if (f.property === prop && f.title) return f.title;
    }
  }
  return humanLabel(prop);
}

/** fieldOf returns a type's form field for a property (null when none). */
export function fieldOf(info, prop) {
  const form = info && info.form;
  if (!form || !form.fields) return null;
  for (const f of Object.values(form.fields)) if (f.property === prop) return f;
  return null;
}

/**
 * formModel builds the fields of a create (doc null) or edit form for a describe entry:
 * {learned, groups: [{id, fields: [model]}]}. A model is {id, prop, type, title, description,
 * required, editable, known, items, dateOnly, precision, percent, portalTypes, catalogIndex,
 * multiple, allowJump, columns, listboxTypes, fs}. editable is what the page lets the user
 * change: ERP5's flag, the role's writable fields, and never the workflow's state field.
 */
export function formModel(info, {doc = null, method = 'put'} = {}) {
  const schema = (info.schema && info.schema.fields) || {};
  const canWrite = info.methods.includes(method);
  const writeAll = info.writable.includes('*');
  const stateField = info.workflow && info.workflow.state_field;
  const readable = readableFn(info);
  const writable = (p) => canWrite && !!p && p !== stateField && !FALLBACK_LAST.includes(p) && !NEVER_FIELDS.has(p) && (writeAll || info.writable.includes(p));
  const form = info.form;
  if (form && Array.isArray(form.groups)) {
    const groups = [];
    for (const g of form.groups) {
      const fields = [];
      for (const id of g.fields || []) {
        const f = form.fields && form.fields[id];
        if (!f) continue;
        const prop = f.property || '';
        if (prop && !readable(prop) && !writable(prop) && f.type !== 'ListBox') continue;
        const known = KNOWN_TYPES.has(f.type);
        const m = {
          id, prop, type: f.type, known,
          title: f.title || humanLabel(prop || id),
          description: f.description || '',
          required: f.required === true,
          editable: known && f.type !== 'ListBox' && f.editable === true && writable(prop),
          items: Array.isArray(f.items) ? f.items : null,
          dateOnly: f.date_only === true,
          precision: Number.isInteger(f.precision) ? f.precision : null,
          percent: typeof f.input_style === 'string' && f.input_style.includes('%'),
          portalTypes: f.portal_types || [],
          catalogIndex: f.catalog_index || 'title',
          multiple: f.multiple === true || /^Multi/.test(f.type),
          allowJump: f.allow_jump !== false,
          columns: f.column_list || null,
          listboxTypes: f.listbox_portal_types || [],
          fs: schema[prop] || null,
        };
        // The workflow's state shows as ERP5 names it (Draft, not draft).
        if (prop && prop === stateField && info.workflow.states) {
          m.items = Object.entries(info.workflow.states).map(([id, st]) => [st.title || humanLabel(id), id]);
          m.type = 'ListField';
          m.editable = false;
        }
        fields.push(m);
      }
      if (fields.length) groups.push({id: g.id, fields});
    }
    return {learned: true, groups};
  }
  // No form learned: the policy schema, the role's writable fields and the document's own.
  const names = new Set(Object.keys(schema));
  if (!writeAll) info.writable.forEach((f) => names.add(f));
  if (doc) Object.keys(doc).forEach((f) => names.add(f));
  const schemaNames = Object.keys(schema);
  const rank = (f) => {
    const i = FALLBACK_ORDER.indexOf(f);
    if (i >= 0) return i;
    const l = FALLBACK_LAST.indexOf(f);
    if (l >= 0) return 10000 + l;
    const s = schemaNames.indexOf(f);
    return s >= 0 ? 1000 + s : 5000;
  };
  const fields = [];
  for (const prop of [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))) {
    if (NEVER_FIELDS.has(prop) || prop.startsWith('_')) continue;
    const fs = schema[prop] || null;
    const editable = writable(prop);
    if (!editable && !(readable(prop) && (fs || (doc && prop in doc)))) continue;
    const value = doc ? doc[prop] : undefined;
    const rel = FALLBACK_RELATIONS[prop];
    let type;
    if (rel) type = 'RelationStringField';
    else if (fs && fs.enum && fs.enum.length) type = 'ListField';
    else if (fs && SCHEMA_TYPES[fs.type]) type = SCHEMA_TYPES[fs.type];
    else if (/_date$|^birthday$/.test(prop) || (typeof value === 'string' && parseDate(value) && /\d{4}/.test(value) && /[:]|\d{4}-\d{2}-\d{2}/.test(value))) type = 'DateTimeField';
    else if (typeof value === 'number') type = 'FloatField';
    else if (typeof value === 'boolean') type = 'CheckBoxField';
    else if (Array.isArray(value)) type = 'LinesField';
    else if (/email/.test(prop)) type = 'EmailField';
    else type = 'StringField';
    fields.push({
      id: 'my_' + prop, prop, type, known: true,
      title: humanLabel(prop), description: '',
      required: !!(fs && fs.required), editable,
      items: fs && fs.enum ? fs.enum.map((v) => [String(v), v]) : null,
      dateOnly: type === 'DateTimeField' && (prop === 'birthday' || (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value))),
      precision: null, percent: false,
      portalTypes: rel ? rel.portal_types : [], catalogIndex: rel ? rel.catalog_index : 'title',
      multiple: false, allowJump: true, columns: null, listboxTypes: [], fs,
    });
  }
  return {learned: false, groups: fields.length ? [{id: 'center', fields}] : []};
}

/** stateTitle returns ERP5's title of a workflow state (the state's id when unknown). */
export function stateTitle(info, state) {
  const wf = info && info.workflow;
  const s = wf && wf.states && wf.states[state];
  return s && s.title ? s.title : (state ? humanLabel(state) : '');
}

/** transitionTitle returns ERP5's title of a transition, looked up in every state. */
export function transitionTitle(info, name) {
  const wf = info && info.workflow;
  if (wf && wf.states) {
    for (const s of Object.values(wf.states)) {
      const tr = (s.transitions || []).find((x) => x.name === name);
      if (tr && tr.title) return tr.title;
    }
  }
  return humanLabel(String(name).replace(/_action$/, ''));
}

/**
 * transitionsFor returns the transitions offered for a document: those ERP5 lists for its
 * state, which the role's policy allows too ([{name, title}]); {unknown: true} when the
 * workflow is incomplete and the state was never seen.
 */
export function transitionsFor(info, doc) {
  if (!info.methods.includes('action')) return {list: []};
  const allowed = (name) => info.transitions.includes('*') || info.transitions.includes(name);
  const wf = info.workflow;
  if (!wf) {
    // Nothing learned: only what the policy names, never "any".
    return {list: info.transitions.filter((n) => n !== '*').map((name) => ({name, title: transitionTitle(info, name)})), unlearned: true};
  }
  const state = doc ? doc[wf.state_field] : undefined;
  const st = wf.states && wf.states[state];
  if (!st) return {list: [], unknown: true, state};
  return {list: (st.transitions || []).filter((tr) => allowed(tr.name)).map((tr) => ({name: tr.name, title: tr.title || transitionTitle(info, tr.name)})), state};
}

/** listboxField returns a type's ListBox field model facts (null when its form has none). */
export function listboxOf(info) {
  const form = info && info.form;
  if (!form || !form.fields) return null;
  for (const [id, f] of Object.entries(form.fields)) {
    if (f.type === 'ListBox') return {id, ...f};
  }
  return null;
}
