// steps.js — the sale-order story's steps, run inside the web app's page by both browser
// drivers (chromedp for Chromium in story_test.go, puppeteer-core for Firefox in
// firefox.mjs). Each step acts as a clerk does (types part of a name, picks a suggestion,
// clicks), waits for what the page shows, and returns what it saw. Evaluating this file
// defines window.story; it is idempotent.
(() => {
  if (window.story) return;
  const STEP = 20000;
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
  const text = (el) => (el ? el.innerText.replace(/\s+/g, ' ').trim() : '');

  // wait polls fn until it returns something truthy.
  async function wait(what, fn, ms = STEP) {
    const t0 = Date.now();
    let last;
    for (;;) {
      try {
        last = await fn();
      } catch (e) {
        last = undefined;
      }
      if (last) return last;
      if (Date.now() - t0 > ms) throw new Error('timed out waiting for ' + what + ' (on ' + location.hash + '): ' + text($('main')).slice(0, 300) + ' … ' + text($('.listbox')).slice(0, 600));
      await new Promise((r) => setTimeout(r, 30));
    }
  }

  // type sets a control's text as typing does (input, then change).
  function type(el, value) {
    el.focus();
    el.value = value;
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
  }

  async function go(hash, ready) {
    if (location.hash !== hash) location.hash = hash;
    return wait(hash, ready);
  }

  // pickStart types part of a name into a relation field (scope: a CSS selector of the
  // field's container) and waits for the suggestion for id; the list stays open.
  async function pickStart(scope, part, id) {
    const field = await wait(scope, () => $(scope));
    const input = $('input.relation-input', field);
    if (!input) throw new Error('no relation picker in ' + scope);
    type(input, part);
    const t0 = performance.now();
    await wait(`a suggestion ${id} for "${part}"`, () => $(`.suggestion[data-id="${CSS.escape(id)}"]`, field));
    return {suggestions: $$('.suggestion[data-id]', field).map((li) => li.dataset.id), ms: performance.now() - t0};
  }

  // pickChoose chooses the suggestion for id, as a click does.
  async function pickChoose(scope, id) {
    const field = $(scope);
    const option = $(`.suggestion[data-id="${CSS.escape(id)}"]`, field);
    option.dispatchEvent(new MouseEvent('mousedown', {bubbles: true, cancelable: true}));
    await wait('the choice', () => $('.suggestions', field).hidden);
    return $('input.relation-input', field).value;
  }

  window.story = {
    wait,

    async paired() {
      const m = await import('/gateway.js');
      await wait('pairing', () => m.storedCredentials());
      await wait('the connection', () => /Connected as/.test(text($('#state'))));
      return true;
    },

    pickStart,
    pickChoose,

    // newOrder opens the create form of a sale order and types its title.
    async newOrder(title) {
      await go('#/new/Sale%20Order', () => $('.doc-form [data-field=destination] input.relation-input'));
      type($('.doc-form [data-field=title] input'), title);
      return {labels: $$('.doc-form .field label').map(text), groups: $$('.doc-form .group').map((g) => g.dataset.group)};
    },

    // setDate types a day into the form's first date control; returns the field and control.
    async setDate(day) {
      const date = $('.doc-form input[type=date]') || $('.doc-form input[type=datetime-local]');
      if (!date) return {field: '', type: ''};
      type(date, date.type === 'date' ? day : day + 'T00:00');
      return {field: date.closest('.field').dataset.field, type: date.type};
    },

    // create submits a create form and waits for the new document's form.
    async create() {
      $('.doc-form button[type=submit]').click();
      await wait('the new document', () => location.hash.startsWith('#/doc/') && $('.doc-form .field'));
      return decodeURIComponent(location.hash.slice('#/doc/'.length));
    },

    // addLineStart types part of a product's name in the order's add-line row.
    async addLineStart(part, id) {
      await wait('the add-line row', () => $('.listbox .add-line'));
      return pickStart('.listbox .add-line [data-field=resource]', part, id);
    },

    // addLineFinish chooses the product, types the quantity and adds the line.
    async addLineFinish(id, quantity) {
      const box = $('.listbox .add-line');
      const before = $$('.listbox tbody tr').length;
      const title = await pickChoose('.listbox .add-line [data-field=resource]', id);
      type($('[data-field=quantity] input', box), String(quantity));
      $('button[type=submit]', box).click();
      try {
        await wait('the new line in the list', () => $$('.listbox tbody tr').length === before + 1);
      } catch (e) {
        const order = decodeURIComponent(location.hash.slice('#/doc/'.length));
        const all = await window.app.session.allDocs({query: 'portal_type:"Sale Order Line"', limit: [0, 400], select_list: ['parent_relative_url', 'resource', 'quantity']});
        throw new Error(e.message + ' | order ' + order + ' | lines: ' + JSON.stringify(all.rows.filter((r) => !/^sale_order_module\/\d+\/\d+$/.test(r.id) || (r.value.parent_relative_url || '').includes(order)).slice(0, 5)) + ' ' + all.total_rows);
      }
      return title;
    },

    // lines returns the order's lines as shown (header, rows, total).
    async lines(count) {
      await wait(`${count} lines with their products`, () => $$('.listbox tbody tr').length === count && !text($('.listbox tbody')).includes('…'));
      return {
        head: $$('.listbox thead th').map(text),
        rows: $$('.listbox tbody tr').map((tr) => $$('td', tr).map(text)),
        total: text($('.listbox tfoot')),
      };
    },

    // workflow returns the state shown and the transitions offered.
    async workflow() {
      return {
        state: text($('.state-chip')),
        buttons: $$('.actions .buttons button').map(text),
        notes: $$('.actions .alert').map(text),
      };
    },

    // openLine opens the order's i-th line from its listbox; returns the link back shown.
    async openLine(i) {
      const a = await wait('the line links', () => $$('.listbox tbody tr a.line-link')[i]);
      a.click();
      await wait("the line's form", () => $('.doc-form [data-field=quantity] input') && $('.parent-link') && !text($('.parent-link')).includes('_module/'));
      return {parent: text($('.parent-link')), product: $('.doc-form [data-field=resource] input').value};
    },

    // saveField types a value into a field of the open form and saves it.
    async saveField(field, value) {
      type($(`.doc-form [data-field="${field}"] input`), String(value));
      $('.doc-form button[type=submit]').click();
      await wait('saved', () => /Saved/.test(text($('.save-state'))));
      return true;
    },

    // backToParent follows the link back to the document this one is part of.
    async backToParent() {
      $('.parent-link').click();
      await wait('the order and its lines', () => $('.listbox tbody tr') && !text($('.listbox tbody')).includes('…'));
      return true;
    },

    // workflowNote waits for a note of the workflow section that mentions word.
    async workflowNote(word) {
      await wait(`a workflow note with "${word}"`, () => $$('.actions .alert').some((n) => text(n).includes(word)));
      return this.workflow();
    },

    async act(title) {
      const b = await wait(`the ${title} button`, () => $$('.actions .buttons button').find((x) => text(x) === title && !x.disabled));
      const before = text($('.state-chip'));
      b.click();
      // The state shown moves: "pending: …" until ERP5 answers (or already its new state).
      await wait(`${title} shown as pending`, () => text($('.state-chip')) !== before);
      return this.workflow();
    },

    async waitState(title, ms = 60000) {
      await wait(`the state ${title}`, () => text($('.state-chip')) === title, ms);
      return this.workflow();
    },

    // open shows a document's form and returns its labels once ready.
    async open(id) {
      await go('#/doc/' + id.split('/').map(encodeURIComponent).join('/'), () => $('.doc-form .field') && !$$('.doc-form input').some((i) => i.value === '…'));
      return {labels: $$('.doc-form .field label').map(text)};
    },

    // show scrolls an element to the top of the screen, for a screenshot.
    async show(sel) {
      const el = await wait(sel, () => $(sel));
      el.scrollIntoView({block: 'start'});
      window.scrollBy(0, -16);
      return true;
    },

    async label(field) {
      return text($(`.doc-form [data-field="${field}"] label`));
    },

    // timeForm measures the time from navigation to a shown form (every field filled): the
    // condition is checked on every change of the page, so the figure is not a polling step.
    async timeForm(id) {
      location.hash = '#/';
      await wait('home', () => $('.home'));
      const shown = () => $('.doc-form .field') && !$$('.doc-form input').some((i) => i.value === '…') &&
        !($('.listbox') && /Loading|…/.test(text($('.listbox'))));
      return new Promise((resolve, reject) => {
        const t0 = performance.now();
        const obs = new MutationObserver(() => {
          if (shown()) {
            obs.disconnect();
            clearTimeout(timer);
            resolve(performance.now() - t0);
          }
        });
        const timer = setTimeout(() => { obs.disconnect(); reject(new Error('the form of ' + id + ' was not shown')); }, STEP);
        obs.observe(document.body, {childList: true, subtree: true, characterData: true, attributes: true});
        location.hash = '#/doc/' + id.split('/').map(encodeURIComponent).join('/');
      });
    },
  };
})();
