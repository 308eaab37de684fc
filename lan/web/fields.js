// fields.js — one control per ERP5 field type (erp5.js's field model): what the control holds
// as text (raw, kept in drafts), the stored value it shows, and the value a save sends.

import {t, messages} from '/strings.js';
import {h, docHash, newID} from '/dom.js';
import {dateInput, fromDateInput, formatDate, formatNumber, parseDate, humanLabel, RELATIVE_URL} from '/erp5.js';
import {RelationPicker} from '/relation.js';

const NUMBER_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** hintFor says what a valid value looks like, exactly as the gateway's schema checks it. */
export function hintFor(m) {
  const fs = m.fs;
  const parts = [];
  if (m.type === 'LinesField' || m.type === 'MultiListField') parts.push(m.items ? '' : t('listHint'));
  if (m.percent) parts.push(t('percentHint'));
  if (fs && fs.pattern && !/RelationStringField$/.test(m.type)) {
    const known = messages.patterns[fs.pattern];
    parts.push(known || t('patternHint', {pattern: fs.pattern}));
  }
  if (fs && fs.max_length && !m.items) parts.push(t('maxLengthHint', {n: fs.max_length}));
  return parts.filter(Boolean).join(' ');
}

/** toRaw writes a stored value as the text a field's control holds. */
export function toRaw(m, v) {
  if (v === null || v === undefined) return m.type === 'CheckBoxField' ? 'false' : '';
  switch (m.type) {
    case 'CheckBoxField':
      return v === true || v === 1 || v === '1' ? 'true' : 'false';
    case 'DateTimeField':
      return dateInput(v, m.dateOnly) || String(v);
    case 'FloatField':
    case 'IntegerField':
      if (typeof v === 'number' && m.percent) return String(+(v * 100).toPrecision(12));
      return String(v);
    case 'LinesField':
    case 'MultiListField':
    case 'MultiCheckBoxField':
    case 'MultiRelationStringField':
      return Array.isArray(v) ? v.join('\n') : String(v);
    default:
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
}

/** fromRaw reads a control's text back as the value to store; null when empty. */
export function fromRaw(m, raw) {
  if (m.type === 'CheckBoxField') return raw === 'true';
  const s = String(raw).trim();
  if (s === '') return null;
  switch (m.type) {
    case 'FloatField':
    case 'IntegerField': {
      if (!NUMBER_RE.test(s)) return s; // as typed: the gateway's check names the problem
      const n = Number(s);
      return m.percent ? +(n / 100).toPrecision(12) : n;
    }
    case 'DateTimeField':
      return fromDateInput(s, m.dateOnly);
    case 'LinesField':
    case 'MultiListField':
    case 'MultiCheckBoxField':
    case 'MultiRelationStringField': {
      const items = s.split('\n').map((x) => x.trim()).filter(Boolean);
      return items.length ? items : null;
    }
    case 'ListField':
    case 'RadioField': {
      const match = (m.items || []).find((it) => String(it[1]) === s);
      return match ? match[1] : s;
    }
    default:
      return s;
  }
}

/** display shows a stored value as read-only text, as the field's type reads it. */
export function display(m, v, titles) {
  if (v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length)) return t('none');
  switch (m.type) {
    case 'DateTimeField':
      return formatDate(v, m.dateOnly) || String(v);
    case 'FloatField':
    case 'IntegerField':
      return typeof v === 'number' ? formatNumber(v, {precision: m.precision, percent: m.percent}) : String(v);
    case 'CheckBoxField':
      return v === true || v === 1 || v === '1' ? t('yes') : t('no');
    case 'ListField':
    case 'RadioField':
    case 'MultiListField':
    case 'MultiCheckBoxField': {
      const label = (x) => {
        const it = (m.items || []).find((i) => String(i[1]) === String(x));
        return it ? it[0] : String(x);
      };
      return Array.isArray(v) ? v.map(label).join(', ') : label(v);
    }
    default:
      // A workflow state no learned workflow names: its id in words (draft → Draft).
      if (typeof v === 'string' && m.prop && /_state$/.test(m.prop)) return humanLabel(v);
      if (Array.isArray(v)) return v.map((x) => (titles && RELATIVE_URL.test(x) && titles.known(x)) || String(x)).join(', ');
      if (typeof v === 'object') return JSON.stringify(v);
      if (typeof v === 'number') return formatNumber(v);
      if (typeof v === 'string' && parseDate(v) && /\d{2}:\d{2}/.test(v)) return formatDate(v);
      return String(v);
  }
}

/**
 * makeWidget builds one field: label (ERP5's title, required and read-only marks), control,
 * help (ERP5's description), hint (the schema's checks), error. ctx: {session, titles, doc,
 * onchange}. The widget has raw(), setRaw(raw), value() and original.
 */
export function makeWidget(m, ctx) {
  const id = newID('f-' + m.id.replace(/[^A-Za-z0-9_-]/g, '_'));
  let value = ctx.doc && m.prop ? ctx.doc[m.prop] : undefined;
  // ERP5 computes a line's total: quantity × price when the document does not carry it.
  if (m.prop === 'total_price' && value === undefined && ctx.doc && typeof ctx.doc.quantity === 'number' && typeof ctx.doc.price === 'number') {
    value = ctx.doc.quantity * ctx.doc.price;
  }
  const hint = m.editable ? hintFor(m) : '';
  const describedBy = [m.description ? id + '-help' : '', hint ? id + '-hint' : '', id + '-err'].filter(Boolean).join(' ');
  const w = {m, name: m.prop, editable: m.editable, original: toRaw(m, value)};
  let control;
  let body;
  const relation = m.type === 'RelationStringField' || m.type === 'MultiRelationStringField';
  if (relation && !m.multiple) {
    if (m.editable) {
      const picker = new RelationPicker({id, session: ctx.session, titles: ctx.titles, portalTypes: m.portalTypes,
        catalogIndex: m.catalogIndex, required: m.required, describedBy, onchange: ctx.onchange});
      picker.set(w.original);
      w.picker = picker;
      control = picker.input;
      body = picker.el;
      w.raw = () => picker.value;
      w.setRaw = (raw) => picker.set(raw);
    } else {
      control = h('input', {id, type: 'text', readonly: true, class: 'readonly', 'aria-describedby': describedBy});
      const link = h('a', {class: 'relation-link', hidden: true}, t('openRelated'));
      w.show = (v) => {
        control.value = v ? '…' : t('none');
        link.hidden = !v || !RELATIVE_URL.test(String(v));
        if (!v) return;
        link.href = docHash(String(v));
        ctx.titles.title(String(v)).then((title) => { control.value = title === null ? String(v) : title; });
      };
      w.show(value);
      body = h('div', {class: 'relation'}, h('div', {class: 'row'}, control, link));
      w.raw = () => w.original;
      w.setRaw = () => {};
    }
  } else if (relation) {
    // Several related documents: their titles, each a link; edited as relative URLs, one a line.
    const links = h('ul', {class: 'relation-list'});
    const fill = (v) => {
      links.replaceChildren();
      for (const url of Array.isArray(v) ? v : v ? [v] : []) {
        const a = h('a', {href: docHash(String(url))}, '…');
        ctx.titles.title(String(url)).then((title) => { a.textContent = title === null ? String(url) : title; });
        links.append(h('li', {}, a));
      }
      if (!links.children.length) links.append(h('li', {class: 'muted'}, t('none')));
    };
    fill(value);
    w.show = fill;
    if (m.editable) {
      control = h('textarea', {id, rows: 2, 'aria-describedby': describedBy, value: w.original});
      body = h('div', {}, links, control);
      w.raw = () => control.value;
      w.setRaw = (raw) => { control.value = raw; };
    } else {
      control = h('span', {id, tabindex: '-1'});
      body = h('div', {}, links);
      w.raw = () => w.original;
      w.setRaw = () => {};
    }
  } else if (!m.editable) {
    const text = m.known ? display(m, value, ctx.titles) : (value === undefined || value === null ? t('none') : display({type: ''}, value, ctx.titles));
    control = m.type === 'TextAreaField'
      ? h('textarea', {id, readonly: true, class: 'readonly', rows: 3, value: text, 'aria-describedby': describedBy})
      : h('input', {id, type: 'text', readonly: true, class: 'readonly', value: text, 'aria-describedby': describedBy});
    body = control;
    w.raw = () => w.original;
    w.setRaw = () => {};
    w.show = (v) => { control.value = m.known ? display(m, v, ctx.titles) : display({type: ''}, v, ctx.titles); };
  } else {
    const attrs = {id, name: m.prop, required: m.required, 'aria-describedby': describedBy, autocomplete: 'off'};
    switch (m.type) {
      case 'TextAreaField':
        control = h('textarea', {...attrs, rows: 4, value: w.original});
        break;
      case 'LinesField':
        control = h('textarea', {...attrs, rows: 3, value: w.original});
        break;
      case 'CheckBoxField':
        control = h('input', {...attrs, type: 'checkbox', checked: w.original === 'true'});
        break;
      case 'ListField':
      case 'RadioField': {
        const items = (m.items || []).filter((it) => Array.isArray(it) && String(it[1]) !== '');
        control = h('select', attrs, h('option', {value: ''}, m.required ? t('choose') : t('none')),
          items.map(([label, v]) => h('option', {value: String(v)}, String(label))));
        // A stored value the items do not list still shows.
        if (w.original && !items.some((it) => String(it[1]) === w.original)) control.append(h('option', {value: w.original}, w.original));
        control.value = w.original;
        break;
      }
      case 'MultiListField':
      case 'MultiCheckBoxField': {
        const items = (m.items || []).filter((it) => Array.isArray(it) && String(it[1]) !== '');
        control = h('select', {...attrs, multiple: true, size: Math.min(6, Math.max(2, items.length))},
          items.map(([label, v]) => h('option', {value: String(v)}, String(label))));
        const set = (raw) => {
          const vals = raw.split('\n');
          for (const o of control.options) o.selected = vals.includes(o.value);
        };
        set(w.original);
        w.raw = () => [...control.selectedOptions].map((o) => o.value).join('\n');
        w.setRaw = set;
        break;
      }
      case 'DateTimeField':
        control = h('input', {...attrs, type: m.dateOnly ? 'date' : 'datetime-local', value: w.original});
        break;
      case 'IntegerField':
        control = h('input', {...attrs, type: 'text', inputmode: 'numeric', value: w.original});
        break;
      case 'FloatField':
        control = h('input', {...attrs, type: 'text', inputmode: 'decimal', value: w.original});
        break;
      case 'EmailField':
        control = h('input', {...attrs, type: 'email', autocapitalize: 'off', spellcheck: 'false', value: w.original});
        break;
      case 'PasswordField':
        control = h('input', {...attrs, type: 'password', value: w.original});
        break;
      default:
        control = h('input', {...attrs, type: 'text', value: w.original, maxlength: m.fs && m.fs.max_length ? m.fs.max_length : null});
    }
    body = m.percent ? h('div', {class: 'row unit'}, control, h('span', {class: 'unit-sign', 'aria-hidden': 'true'}, '%')) : control;
    if (!w.raw) {
      w.raw = m.type === 'CheckBoxField' ? () => (control.checked ? 'true' : 'false') : () => control.value;
      w.setRaw = m.type === 'CheckBoxField' ? (raw) => { control.checked = raw === 'true'; } : (raw) => { control.value = raw; };
    }
  }
  w.control = control;
  w.value = () => fromRaw(m, w.raw());
  w.err = h('p', {id: id + '-err', class: 'field-error', hidden: true});
  const label = h('label', {for: id}, m.title,
    m.required && m.editable ? h('span', {class: 'tag req'}, t('required')) : null,
    !m.editable ? h('span', {class: 'tag ro'}, t('readOnly')) : null);
  const check = m.type === 'CheckBoxField' && m.editable;
  w.wrap = h('div', {class: 'field' + (check ? ' check' : '') + (m.editable ? '' : ' is-readonly'), 'data-field': m.prop || m.id, 'data-type': m.type},
    check ? [control, label] : [label, body],
    m.description ? h('p', {id: id + '-help', class: 'help'}, m.description) : null,
    hint ? h('p', {id: id + '-hint', class: 'hint'}, hint) : null,
    w.err);
  return w;
}
