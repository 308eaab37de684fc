// relation.js — the relation picker of ERP5's RelationStringField: the input shows the related
// document's title; typing searches the replica (allDocs within the field's portal types by
// its catalog index, ten suggestions, debounced); choosing one keeps its relative URL; emptying
// the input clears the relation; a link opens the related document.

import {t} from '/strings.js';
import {h, replace, debounce, docHash, quote, newID} from '/dom.js';

/** PICKER_LIMIT is how many suggestions a search shows. */
export const PICKER_LIMIT = 10;
/** PICKER_DELAY is the pause in typing (ms) before a search. */
export const PICKER_DELAY = 150;

/** pickerQuery is the allDocs query the picker issues for typed text. */
export function pickerQuery(portalTypes, index, text) {
  const types = portalTypes.length ? (portalTypes.length === 1 ? quote(portalTypes[0]) : '(' + portalTypes.map(quote).join(' OR ') + ')') : '';
  const like = quote('%' + text + '%');
  return (types ? `portal_type:${types} AND ` : '') + `${index}:${like}`;
}

/**
 * RelationPicker is one relation control. value is the relative URL ('' for none); onchange
 * is called when the user picks or clears. titles is the app's Titles cache.
 */
export class RelationPicker {
  constructor({id, session, titles, portalTypes, catalogIndex = 'title', required = false, describedBy = '', onchange = () => {}}) {
    this.session = session;
    this.titles = titles;
    this.portalTypes = portalTypes || [];
    this.index = catalogIndex || 'title';
    this.onchange = onchange;
    this.value = '';
    this.seq = 0;
    this.active = -1;
    this.options = [];
    const listID = newID('rel-list');
    this.input = h('input', {id, type: 'text', autocomplete: 'off', spellcheck: 'false', required, role: 'combobox',
      'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': listID, 'aria-describedby': describedBy,
      class: 'relation-input', placeholder: t('relationPlaceholder'),
      oninput: () => this.typed(), onkeydown: (e) => this.key(e), onblur: () => setTimeout(() => this.blurred(), 150)});
    this.list = h('ul', {id: listID, role: 'listbox', class: 'suggestions', hidden: true});
    this.link = h('a', {class: 'relation-link', hidden: true}, t('openRelated'));
    this.status = h('span', {class: 'visually-hidden', role: 'status'});
    this.el = h('div', {class: 'relation'}, h('div', {class: 'row'}, this.input, this.link), this.list, this.status);
    this.search = debounce(() => this.run(), PICKER_DELAY);
  }

  /** set shows a relation (a relative URL, '' for none) without calling onchange. */
  set(url) {
    this.value = url || '';
    this.shown = '';
    this.input.value = '';
    this.updateLink();
    if (!this.value) return;
    const known = this.titles.known(this.value);
    if (known !== undefined) {
      this.input.value = this.shown = known === null ? this.value : known;
      return;
    }
    this.input.value = this.shown = '…';
    const want = this.value;
    this.titles.title(want).then((title) => {
      if (this.value !== want) return;
      if (this.input.value === '…') this.input.value = title === null ? want : title;
      this.shown = this.input.value;
    });
  }

  updateLink() {
    this.link.hidden = !this.value;
    if (this.value) this.link.href = docHash(this.value);
  }

  typed() {
    const text = this.input.value.trim();
    if (text === '') {
      // Emptying the field clears the relation.
      this.close();
      if (this.value) {
        this.value = '';
        this.updateLink();
        this.onchange();
      }
      return;
    }
    this.search();
  }

  async run() {
    const text = this.input.value.trim();
    if (!text || text === this.shown) return;
    const seq = ++this.seq;
    let res;
    try {
      res = await this.session.allDocs({query: pickerQuery(this.portalTypes, this.index, text), limit: [0, PICKER_LIMIT],
        sort_on: [[this.index, 'ascending']], select_list: [...new Set([this.index, 'title', 'portal_type'])]});
    } catch (err) {
      if (seq !== this.seq) return;
      this.showOptions([], t('relationError', {message: err.message}));
      return;
    }
    if (seq !== this.seq) return;
    const rows = res.rows.map((r) => {
      const v = r.value || {};
      const title = v.title || v[this.index] || r.id;
      this.titles.remember(r.id, title, v.portal_type);
      return {id: r.id, title: String(title), detail: this.portalTypes.length > 1 ? v.portal_type : ''};
    });
    this.showOptions(rows, rows.length ? '' : t('relationNone', {text}));
  }

  showOptions(rows, message) {
    this.options = rows;
    this.active = rows.length ? 0 : -1;
    replace(this.list,
      rows.map((r, i) => h('li', {role: 'option', id: this.list.id + '-' + i, class: 'suggestion', 'data-id': r.id, 'aria-selected': i === 0 ? 'true' : 'false',
        onmousedown: (e) => { e.preventDefault(); this.choose(i); }},
      r.title, r.detail ? h('span', {class: 'muted'}, ' · ' + r.detail) : null)),
      message ? h('li', {class: 'suggestion none', 'aria-disabled': 'true'}, message) : null);
    this.list.hidden = false;
    this.input.setAttribute('aria-expanded', 'true');
    this.status.textContent = rows.length ? t('relationCount', {count: rows.length}) : message;
    this.mark();
  }

  mark() {
    [...this.list.querySelectorAll('[role=option]')].forEach((li, i) => li.setAttribute('aria-selected', i === this.active ? 'true' : 'false'));
    if (this.active >= 0) this.input.setAttribute('aria-activedescendant', this.list.id + '-' + this.active);
    else this.input.removeAttribute('aria-activedescendant');
  }

  choose(i) {
    const r = this.options[i];
    if (!r) return;
    this.value = r.id;
    this.input.value = this.shown = r.title;
    this.updateLink();
    this.close();
    this.onchange();
  }

  close() {
    this.seq++;
    this.search.cancel();
    this.list.hidden = true;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
  }

  key(e) {
    if (this.list.hidden) {
      if (e.key === 'ArrowDown' && this.input.value.trim()) {
        this.search.flush();
        e.preventDefault();
      }
      return;
    }
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      if (!this.options.length) return;
      this.active = (this.active + (e.key === 'ArrowDown' ? 1 : -1) + this.options.length) % this.options.length;
      this.mark();
      e.preventDefault();
    } else if (e.key === 'Enter') {
      if (this.active >= 0) {
        this.choose(this.active);
        e.preventDefault();
      }
    } else if (e.key === 'Escape') {
      this.close();
      this.input.value = this.shown;
      e.preventDefault();
    }
  }

  // blurred puts back the related title when the user leaves text that names nothing chosen.
  blurred() {
    if (document.activeElement === this.input) return;
    this.close();
    if (this.input.value.trim() && this.input.value !== this.shown) {
      this.input.value = this.shown;
    }
  }

  destroy() {
    this.close();
  }
}
