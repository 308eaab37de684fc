package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// webFormsChecks runs in the page: the web app's ERP5 helpers (erp5.js, fields.js) on a
// describe entry of the contract's shape; it returns the failed checks.
const webFormsChecks = `(async () => {
  const e = await import('/erp5.js');
  const f = await import('/fields.js');
  const bad = [];
  const eq = (what, got, want) => { if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(what + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want)); };

  // Dates: ERP5's RFC 822 text, read and written; a date-only field keeps its day.
  const p = e.parseDate('Tue, 23 Dec 2025 23:04:34 +0100');
  eq('RFC 822 instant', p.date.toISOString(), '2025-12-23T22:04:34.000Z');
  eq('date-only day', e.dateInput('Wed, 24 Dec 2026 00:00:00 +0300', true), '2026-12-24');
  const day = e.fromDateInput('2026-12-24', true);
  eq('date written back', /^Thu, 24 Dec 2026 00:00:00 [+-]\d{4}$/.test(day), true);
  eq('date round trip', e.dateInput(day, true), '2026-12-24');
  const dt = e.fromDateInput('2026-03-05T14:30', false);
  eq('date and time round trip', e.dateInput(dt, false), '2026-03-05T14:30');
  eq('not a date', e.parseDate('banana'), null);

  // Labels with ERP5's conventions, never raw property names.
  eq('email label', e.humanLabel('default_email_text'), 'Email');
  eq('telephone label', e.humanLabel('default_telephone_text'), 'Telephone');
  eq('ean label', e.humanLabel('ean13_code'), 'EAN13 Code');
  eq('title case', e.humanLabel('source_section'), 'Source Section');

  // Natural order.
  eq('natural order', ['Commande 185', 'Commande 2', 'commande 10'].sort(e.naturalCompare), ['Commande 2', 'commande 10', 'Commande 185']);

  // The policy stays the authority over ERP5's form.
  const info = {
    portal_type: 'Thing', methods: ['get', 'put', 'post', 'action'], transitions: ['confirm_action', 'cancel_action'],
    readable: ['*'], writable: ['title', 'state', 'ro', 'gadget', 'when', 'ratio'],
    schema: {fields: {title: {type: 'string', max_length: 10}, code: {type: 'string', pattern: '^[A-Za-z0-9_.-]+$'}}},
    form: {groups: [{id: 'left', fields: ['my_title', 'my_code', 'my_ro', 'my_gadget']}, {id: 'right', fields: ['my_state', 'my_when', 'my_ratio', 'my_missing']}],
      fields: {
        my_title: {type: 'StringField', title: 'Name', description: 'What people call it', required: true, editable: true, property: 'title'},
        my_code: {type: 'StringField', title: 'Code', required: false, editable: true, property: 'code'},
        my_ro: {type: 'StringField', title: 'Fixed', editable: false, property: 'ro'},
        my_gadget: {type: 'MatrixBox', title: 'Matrix', editable: true, property: 'gadget'},
        my_state: {type: 'StringField', title: 'State', editable: true, property: 'state'},
        my_when: {type: 'DateTimeField', title: 'When', editable: true, property: 'when', date_only: true},
        my_ratio: {type: 'FloatField', title: 'Ratio', editable: true, property: 'ratio', precision: 1, input_style: '-12.5%'},
      }},
    workflow: {state_field: 'state', complete: true, states: {
      draft: {title: 'Draft', transitions: [{name: 'plan_action', title: 'Plan'}, {name: 'confirm_action', title: 'Confirm'}]},
      confirmed: {title: 'Confirmed', transitions: []}}},
  };
  const m = e.formModel(info, {doc: {title: 'x', state: 'draft', gadget: [[1, 2]]}, method: 'put'});
  const fields = Object.fromEntries(m.groups.flatMap((g) => g.fields).map((x) => [x.id, x]));
  eq('groups', m.groups.map((g) => g.id), ['left', 'right']);
  eq('only fields in the form', Object.keys(fields), ['my_title', 'my_code', 'my_ro', 'my_gadget', 'my_state', 'my_when', 'my_ratio']);
  eq('ERP5 title as label', fields.my_title.title, 'Name');
  eq('editable and writable', fields.my_title.editable, true);
  eq('not writable by the role', fields.my_code.editable, false);
  eq('ERP5 says not editable', fields.my_ro.editable, false);
  eq('unknown type read-only', [fields.my_gadget.editable, fields.my_gadget.known], [false, false]);
  eq('state field never editable', fields.my_state.editable, false);
  eq('state shown with its title', f.display(fields.my_state, 'draft'), 'Draft');
  eq('unknown type value shown', f.display({type: ''}, [[1, 2]]), '1,2');
  eq('percent shows x100', f.toRaw(fields.my_ratio, 0.25), '25');
  eq('percent stores /100', f.fromRaw(fields.my_ratio, '12.5'), 0.125);
  eq('date-only field', [fields.my_when.dateOnly, f.fromRaw(fields.my_when, '2026-12-24').includes('24 Dec 2026 00:00:00')], [true, true]);
  eq('hint of the schema as enforced', f.hintFor({...fields.my_code, editable: true}), 'Letters, digits, dots, dashes and underscores only (no spaces).');
  eq('max length hint', f.hintFor(fields.my_title), 'At most 10 characters.');
  eq('transitions of the state, within the policy', e.transitionsFor(info, {state: 'draft'}).list.map((x) => x.title), ['Confirm']);
  eq('none once confirmed', e.transitionsFor(info, {state: 'confirmed'}).list, []);
  eq('unknown state offers nothing', e.transitionsFor(info, {state: 'weird'}), {list: [], unknown: true, state: 'weird'});
  const create = e.formModel(info, {method: 'post'});
  eq('create form shows the edit form fields', create.groups.flatMap((g) => g.fields).map((x) => x.id), Object.keys(fields));

  // No form learned: the policy schema with human labels.
  const plain = e.formModel({...info, form: null, workflow: null, schema: {fields: {default_email_text: {type: 'string'}, start_date: {type: 'date'}}}}, {method: 'post'});
  eq('fallback labels', plain.groups[0].fields.filter((x) => x.prop.includes('_')).map((x) => x.title), ['Email', 'Start Date']);
  eq('fallback: only what the policy names', e.transitionsFor({...info, workflow: null}, {}).list.map((x) => x.name), ['confirm_action', 'cancel_action']);
  return bad;
})()`

// TestWebForms_Helpers checks, in Chromium, how the web app reads ERP5's forms: dates, labels,
// natural order, and the policy's authority over the form (read-only fields, transitions per
// state); and that the gateway serves a favicon.
func TestWebForms_Helpers(t *testing.T) {
	g := startWebGateway(t, t.TempDir())
	resp, err := http.Get(g.s.URL() + "favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
		t.Errorf("/favicon.ico: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	tab := openTab(t, startChromium(t), "helpers", true)
	tab.do(t, "open the app", chromedp.Navigate(g.s.URL()+"status"))
	var bad []string
	tab.eval(t, webFormsChecks, &bad)
	for _, b := range bad {
		t.Error(b)
	}
}
