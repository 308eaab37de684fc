package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
)

// The sale-order story in real browsers, against the demo (gateway, ERP5 double, simulated
// link) started in this process: a clerk creates a sale order choosing the customer by
// typing part of its name, adds three lines by product name with quantities, sees the lines
// and their total, is offered only the transitions ERP5 lists for the order's state,
// confirms it; the double then holds the order with its relations as relative URLs and
// three lines under it. The steps run inside the page (testdata/story/steps.js), driven by
// chromedp here and by puppeteer-core in Firefox (firefox_test.go).

// storyLink is a quick link: the story is about the forms, not the satellite.
var storyLink = linksim.Config{Up: 50_000_000, Down: 50_000_000, Delay: 5 * time.Millisecond}

// storyDay is the day chosen in the order's date control.
const storyDay = "2026-12-24"

// storyPlan is what the story types and chooses, picked from the double's data so that each
// typed part of a name finds the wanted document among the picker's ten suggestions.
type storyPlan struct {
	Title        string        `json:"title"`
	CustomerID   string        `json:"customerID"`
	CustomerPart string        `json:"customerPart"`
	Lines        []storyLine   `json:"lines"`
	Day          string        `json:"day"`
	Relabel      storyRelabel  `json:"relabel"`
	Stock        bool          `json:"stock"`
	Timeouts     time.Duration `json:"-"`
}

type storyLine struct {
	ProductID   string  `json:"productID"`
	ProductPart string  `json:"productPart"`
	Quantity    float64 `json:"quantity"`
}

type storyRelabel struct {
	Field string `json:"field"` // the data-field of the relabelled field on the order form
	Title string `json:"title"` // its new label
}

// namePart returns a part of title (at least four letters) that at most max-1 other titles
// of the candidates contain, lower-cased; "" when none.
func namePart(title string, others []string, max int) string {
	low := strings.ToLower(title)
	runes := []rune(low)
	for n := 5; n <= len(runes); n++ {
		for i := 0; i+n <= len(runes); i++ {
			part := string(runes[i : i+n])
			if strings.TrimSpace(part) != part || strings.Count(part, " ") > 1 {
				continue
			}
			hits := 0
			for _, o := range others {
				if strings.Contains(strings.ToLower(o), part) {
					hits++
				}
			}
			if hits <= max {
				return part
			}
		}
	}
	return ""
}

// planStory picks a customer and three products of the double.
func planStory(tb testing.TB, sim *erp5sim.Server, stock bool) storyPlan {
	tb.Helper()
	var orgs, people, products []*erp5sim.Document
	for _, d := range sim.Documents() {
		switch d.PortalType {
		case "Organisation":
			orgs = append(orgs, d)
		case "Person":
			people = append(people, d)
		case "Product":
			products = append(products, d)
		}
	}
	title := func(d *erp5sim.Document) string { s, _ := d.Properties["title"].(string); return s }
	titles := func(ds ...[]*erp5sim.Document) []string {
		var out []string
		for _, l := range ds {
			for _, d := range l {
				out = append(out, title(d))
			}
		}
		return out
	}
	sort.Slice(orgs, func(i, j int) bool { return orgs[i].ID < orgs[j].ID })
	sort.Slice(products, func(i, j int) bool { return products[i].ID < products[j].ID })
	p := storyPlan{Title: "Story order " + time.Now().UTC().Format("150405"), Day: storyDay, Stock: stock,
		Relabel: storyRelabel{Field: "destination", Title: "Customer (relabelled at head office)"}}
	for _, o := range orgs {
		if part := namePart(title(o), titles(orgs, people), 8); part != "" {
			p.CustomerID, p.CustomerPart = o.ID, part
			break
		}
	}
	for i, pr := range products {
		if len(p.Lines) == 3 {
			break
		}
		if part := namePart(title(pr), titles(products), 8); part != "" {
			p.Lines = append(p.Lines, storyLine{ProductID: pr.ID, ProductPart: part, Quantity: float64(2 + 3*i)})
		}
	}
	if p.CustomerID == "" || len(p.Lines) != 3 {
		tb.Fatalf("the double's data has no customer or three products to find by name: %+v", p)
	}
	return p
}

// startStoryDemo runs the demo with a quick link, a supervisor's invite, and its data.
func startStoryDemo(tb testing.TB, stock bool) *Demo {
	tb.Helper()
	d, _ := startTestDemo(tb, DemoOptions{Seed: 11, Docs: 300, Stock: stock, Link: storyLink, Role: "supervisor"})
	return d
}

// storySteps is the in-page story (testdata/story/steps.js).
func storySteps(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "story", "steps.js"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// storyShots is the screenshot folder: GATEWAY_SCREENSHOTS, else a temporary one.
func storyShots(tb testing.TB) string {
	if dir := os.Getenv("GATEWAY_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		return dir
	}
	return tb.TempDir()
}

// call runs one story step in the page: steps.js, then window.story.<call>.
func (p *webPage) call(tb testing.TB, steps, call string, v any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 90*time.Second)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](steps+";\nwindow.story."+call, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("%s: story.%s: %v\n%s", p.name, call, err, p.describe())
	}
	if v != nil {
		if err := json.Unmarshal(res, v); err != nil {
			tb.Fatalf("%s: decode %s: %v", p.name, res, err)
		}
	}
}

func jsArgs(args ...any) string {
	var parts []string
	for _, a := range args {
		b, _ := json.Marshal(a)
		parts = append(parts, string(b))
	}
	return strings.Join(parts, ", ")
}

// storyWorkflow is what the order's page shows of its workflow.
type storyWorkflow struct {
	State   string   `json:"state"`
	Buttons []string `json:"buttons"`
	Notes   []string `json:"notes"`
}

// wantTransitions returns ERP5's titles of the transitions the describe result lists for a
// type's state (the supervisor may run any).
func wantTransitions(tb testing.TB, sim *erp5sim.Server, portalType, state string) []string {
	tb.Helper()
	wf := sim.Workflow(portalType)
	if wf == nil {
		tb.Fatalf("the double has no workflow for %s", portalType)
	}
	out := []string{}
	for _, st := range wf.States {
		if st.ID == state {
			for _, tr := range st.Transitions {
				out = append(out, wf.Titles[tr])
			}
		}
	}
	return out
}

// checkOrderAtERP5 waits until the double holds the order (found by title) with the chosen
// customer as a relative URL, the day chosen, and three lines under it with their products
// and quantities; returns the order's id at ERP5.
func checkOrderAtERP5(tb testing.TB, d *Demo, p storyPlan, dateField string) string {
	tb.Helper()
	var order *erp5sim.Document
	var lines []*erp5sim.Document
	waitUntil(tb, 90*time.Second, "the order and its three lines at ERP5", func() bool {
		order, lines = nil, nil
		for _, doc := range d.Sim.Documents() {
			if doc.PortalType == "Sale Order" && doc.Properties["title"] == p.Title {
				order = doc
			}
		}
		if order == nil {
			return false
		}
		filled := 0
		for _, doc := range d.Sim.Documents() {
			if doc.PortalType == "Sale Order Line" && strings.HasPrefix(doc.ID, order.ID+"/") {
				lines = append(lines, doc)
				if doc.Properties["resource"] != nil && doc.Properties["quantity"] != nil {
					filled++
				}
			}
		}
		// Stock ERP5 creates a line, then edits it: wait for both.
		return len(lines) == 3 && filled == 3
	})
	if got := order.Properties["destination"]; got != p.CustomerID {
		tb.Errorf("order's destination at ERP5 = %v, want %s", got, p.CustomerID)
	}
	if dateField != "" {
		v, _ := order.Properties[dateField].(string)
		if !strings.Contains(v, "24 Dec 2026") && !strings.HasPrefix(v, "2026-12-24") && !strings.HasPrefix(v, "2026/12/24") {
			tb.Errorf("order's %s at ERP5 = %q, want the day chosen (24 Dec 2026)", dateField, v)
		}
	}
	var got, want []string
	for _, l := range lines {
		// ERP5 may answer a quantity as a number or as its text ("5.0").
		q, _ := strconv.ParseFloat(fmt.Sprint(l.Properties["quantity"]), 64)
		got = append(got, fmt.Sprintf("%v×%v", l.Properties["resource"], q))
	}
	for _, l := range p.Lines {
		want = append(want, fmt.Sprintf("%s×%v", l.ProductID, l.Quantity))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		tb.Errorf("lines at ERP5 = %v, want %v", got, want)
	}
	return order.ID
}

// TestStory_Chromium is the sale-order story in Debian's Chromium, with the receiver at head
// office (every step, confirmation included) and against stock ERP5 (the order and its lines;
// the page says, before any click, that workflow actions need the receiver).
func TestStory_Chromium(t *testing.T) {
	steps := storySteps(t)
	shots := storyShots(t)
	for _, mode := range []struct {
		name  string
		stock bool
	}{{"receiver", false}, {"stock", true}} {
		t.Run(mode.name, func(t *testing.T) {
			d := startStoryDemo(t, mode.stock)
			plan := planStory(t, d.Sim, mode.stock)
			browser := startChromium(t)
			tab := openTab(t, browser, "chromium "+mode.name, true)
			defer tab.checkProblems(t)
			shot := func(name string, show ...string) {
				if len(show) > 0 {
					tab.call(t, steps, "show("+jsArgs(show[0])+")", nil)
				}
				switch {
				case !mode.stock:
					tab.screenshot(t, shots, "story-"+name, "")
				case strings.HasPrefix(name, "5-"):
					// In stock mode the page differs only in what it says of the workflow.
					tab.screenshot(t, shots, "story-stock-"+name, "")
				default:
					tab.screenshot(t, t.TempDir(), name, "")
				}
			}
			tab.do(t, "open the invite", chromedp.Navigate(d.Invite))
			tab.call(t, steps, "paired()", nil)

			// The create form: ERP5's groups and labels; the customer by part of its name.
			var form struct {
				Labels []string `json:"labels"`
				Groups []string `json:"groups"`
			}
			tab.call(t, steps, "newOrder("+jsArgs(plan.Title)+")", &form)
			for _, want := range []string{"Client", "Order Date", "Order State"} {
				if !slices.ContainsFunc(form.Labels, func(l string) bool { return strings.HasPrefix(l, want) }) {
					t.Errorf("create form labels %v lack ERP5's %q", form.Labels, want)
				}
			}
			if strings.Join(form.Groups, ",") != "left,right,center,bottom" {
				t.Errorf("create form groups = %v, want ERP5's left,right,center,bottom", form.Groups)
			}
			var picked struct {
				Suggestions []string `json:"suggestions"`
			}
			tab.call(t, steps, "pickStart("+jsArgs(".doc-form [data-field=destination]", plan.CustomerPart, plan.CustomerID)+")", &picked)
			shot("1-customer-picker", ".doc")
			var customerTitle string
			tab.call(t, steps, "pickChoose("+jsArgs(".doc-form [data-field=destination]", plan.CustomerID)+")", &customerTitle)
			if want, _ := d.Sim.Document(plan.CustomerID).Properties["title"].(string); customerTitle != want {
				t.Errorf("customer shown as %q, want its title %q", customerTitle, want)
			}
			var date struct{ Field, Type string }
			tab.call(t, steps, "setDate("+jsArgs(plan.Day)+")", &date)
			if date.Type != "date" {
				t.Errorf("the order's first date control is %q (%s), want a date control", date.Type, date.Field)
			}
			shot("2-new-order", ".doc")
			var id string
			tab.call(t, steps, "create()", &id)

			// Three lines by product name and quantity; the lines and their total on the order.
			for i, l := range plan.Lines {
				tab.call(t, steps, "addLineStart("+jsArgs(l.ProductPart, l.ProductID)+")", nil)
				if i == 0 {
					shot("3-product-picker", ".listbox")
				}
				tab.call(t, steps, "addLineFinish("+jsArgs(l.ProductID, l.Quantity)+")", nil)
			}
			var lines struct {
				Head  []string   `json:"head"`
				Rows  [][]string `json:"rows"`
				Total string     `json:"total"`
			}
			tab.call(t, steps, "lines(3)", &lines)
			if !slices.Contains(lines.Head, "Product") || !slices.Contains(lines.Head, "Quantity") || !slices.Contains(lines.Head, "Total") {
				t.Errorf("lines' columns = %v, want ERP5's Product, Quantity, Total", lines.Head)
			}
			for i, l := range plan.Lines {
				want, _ := d.Sim.Document(l.ProductID).Properties["title"].(string)
				if i >= len(lines.Rows) || !slices.Contains(lines.Rows[i], want) {
					t.Errorf("line %d = %v, want the product %q", i, lines.Rows, want)
				}
			}
			if !strings.HasPrefix(lines.Total, "Total") {
				t.Errorf("lines' total row = %q", lines.Total)
			}
			shot("4-order-lines", ".listbox")
			if !mode.stock {
				// A line opens from the order, links back to it, and is edited there.
				var line struct{ Parent, Product string }
				tab.call(t, steps, "openLine(0)", &line)
				want, _ := d.Sim.Document(plan.Lines[0].ProductID).Properties["title"].(string)
				if line.Parent != plan.Title || line.Product != want {
					t.Errorf("the first line shows %+v, want part of %q with the product %q", line, plan.Title, want)
				}
				shot("4b-order-line", ".doc")
				plan.Lines[0].Quantity++
				tab.call(t, steps, "saveField('quantity', "+jsArgs(plan.Lines[0].Quantity)+")", nil)
				tab.call(t, steps, "backToParent()", nil)
				tab.call(t, steps, "lines(3)", &lines)
				if len(lines.Rows) == 0 || !slices.Contains(lines.Rows[0], fmt.Sprintf("%.2f", plan.Lines[0].Quantity)) {
					t.Errorf("after the edit the first line = %v, want quantity %.2f", lines.Rows, plan.Lines[0].Quantity)
				}
			}
			if !mode.stock {
				// On a tablet held upright the groups stack in one column.
				tab.do(t, "a tablet, upright", chromedp.EmulateViewport(800, 1180, chromedp.EmulateTouch))
				var cols struct{ Left, Right float64 }
				tab.eval(t, `({Left: document.querySelector('.group-left').getBoundingClientRect().left, Right: document.querySelector('.group-right').getBoundingClientRect().left})`, &cols)
				if cols.Left != cols.Right {
					t.Errorf("on a tablet the left and right groups start at %v and %v: want one column", cols.Left, cols.Right)
				}
				shot("9-tablet-order", ".doc-form")
				tab.do(t, "back to the desktop", chromedp.EmulateViewport(webWidth, webHeight))
				tab.eval(t, `({Left: document.querySelector('.group-left').getBoundingClientRect().left, Right: document.querySelector('.group-right').getBoundingClientRect().left})`, &cols)
				if cols.Left >= cols.Right {
					t.Errorf("on a desktop the left and right groups start at %v and %v: want side by side", cols.Left, cols.Right)
				}
			}

			// Workflow: only what ERP5 lists for a draft order.
			var wf storyWorkflow
			if mode.stock {
				tab.call(t, steps, "workflowNote('receiver')", &wf)
			} else {
				tab.call(t, steps, "workflow()", &wf)
			}
			draft := wantTransitions(t, d.Sim, "Sale Order", "draft")
			if mode.stock {
				if len(wf.Notes) == 0 || !strings.Contains(strings.Join(wf.Notes, " "), "receiver") {
					t.Errorf("stock mode: no word that workflow actions need the receiver: %+v", wf)
				}
				shot("5-workflow-needs-receiver", ".page-head")
			} else {
				if !slices.Equal(wf.Buttons, draft) {
					t.Errorf("draft order offers %v, want ERP5's %v", wf.Buttons, draft)
				}
				shot("5-workflow-draft", ".page-head")
			}
			orderID := checkOrderAtERP5(t, d, plan, date.Field)
			if mode.stock {
				return
			}
			// Confirm: pending until ERP5 answers, then Confirmed with nothing more to offer.
			tab.call(t, steps, "act('Confirm')", &wf)
			if !strings.Contains(wf.State, "pending: Confirm") && wf.State != "Confirmed" {
				t.Errorf("after Confirm the state shows %q", wf.State)
			}
			shot("6-confirm-pending", ".page-head")
			waitUntil(t, 60*time.Second, "the order confirmed at ERP5", func() bool {
				doc := d.Sim.Document(orderID)
				return doc != nil && doc.Properties["simulation_state"] == "confirmed"
			})
			if dl := d.Server.Downlink; dl != nil {
				dl.SyncNow()
			}
			tab.call(t, steps, "open("+jsArgs(orderID)+")", nil)
			tab.call(t, steps, "waitState('Confirmed')", &wf)
			if want := wantTransitions(t, d.Sim, "Sale Order", "confirmed"); !slices.Equal(wf.Buttons, want) {
				t.Errorf("confirmed order offers %v, want ERP5's %v", wf.Buttons, want)
			}
			shot("7-confirmed", ".page-head")

			// A field relabelled at head office shows its new label once the gateway has
			// learned the form again: the status notification's forms_hash changes and the
			// open page describes again, with no reload.
			if err := relabelAtERP5(d, "Sale Order", plan.Relabel.Field, plan.Relabel.Title); err != nil {
				t.Fatal(err)
			}
			tab.call(t, steps, "wait('the new label', () => document.querySelector('.doc-form [data-field=\""+plan.Relabel.Field+"\"] label')?.innerText.startsWith("+jsArgs(plan.Relabel.Title)+"), 60000)", nil)
			shot("8-relabelled", ".doc")

			// The orders' list speaks ERP5 too: ERP5's labels, customers' titles, formatted dates.
			tab.do(t, "the orders", chromedp.Navigate(d.Server.URL()+"#/list/Sale%20Order?q="+strings.ReplaceAll(plan.Title, " ", "%20")))
			tab.wait(t, "the order in the list", `(() => { const b = document.querySelector('table.rows tbody'); return b && b.innerText.includes(`+jsArgs(plan.Title)+`) && !b.innerText.includes('…'); })()`)
			var list struct{ Head, Row string }
			tab.eval(t, `({Head: document.querySelector('table.rows thead').innerText, Row: document.querySelector('table.rows tbody tr').innerText})`, &list)
			customer, _ := d.Sim.Document(plan.CustomerID).Properties["title"].(string)
			if !strings.Contains(list.Row, customer) || strings.Contains(list.Row, "_module/") || !strings.Contains(list.Row, "2026") || !strings.Contains(list.Row, "Confirmed") {
				t.Errorf("the order's row = %q: want its customer's title %q, its date and its state's title", list.Row, customer)
			}
			if !strings.Contains(list.Head, plan.Relabel.Title) || !strings.Contains(list.Head, "Order Date") {
				t.Errorf("the list's columns = %q: want ERP5's labels", list.Head)
			}
			shot("10-orders-list")
		})
	}
}

// relabelAtERP5 gives the field of a type's form that shows prop a new title at the double,
// as a head-office change would, and asks the downlink to refresh now.
func relabelAtERP5(d *Demo, portalType, prop, title string) error {
	f := d.Sim.Form(portalType)
	if f == nil {
		return fmt.Errorf("the double has no form for %s", portalType)
	}
	id := ""
	for fid, ff := range f.Fields {
		if ff.Property == prop {
			id = fid
		}
	}
	if id == "" {
		return fmt.Errorf("the %s form has no field for %s", portalType, prop)
	}
	if err := d.Sim.SetFieldTitle(portalType, id, title); err != nil {
		return err
	}
	if dl := d.Server.Downlink; dl != nil {
		dl.RefreshForms()
	}
	return nil
}
