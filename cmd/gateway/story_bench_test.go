package main

import (
	"slices"
	"testing"

	"github.com/chromedp/chromedp"
)

// BenchmarkWebFormShown measures, in Chromium with performance.now(), the time from a
// navigation to a document's form shown with every field filled (related titles resolved,
// an order's lines listed), on the demo's data: a sale order with its lines and a person,
// in turn. The baseline, measured in the same page, is one `get` round trip.
func BenchmarkWebFormShown(b *testing.B) {
	d, _ := startTestDemo(b, DemoOptions{Seed: 5, Docs: 3000, Link: storyLink, Role: "supervisor"})
	var order, person string
	for _, doc := range d.Sim.Documents() {
		switch {
		case doc.PortalType == "Sale Order" && order == "":
			order = doc.ID
		case doc.PortalType == "Person" && person == "":
			person = doc.ID
		}
	}
	steps := storySteps(b)
	browser := startChromium(b)
	tab := openTab(b, browser, "bench", true)
	tab.do(b, "open the invite", chromedp.Navigate(d.Invite))
	tab.call(b, steps, "paired()", nil)
	for _, c := range []struct{ name, id string }{{"sale-order", order}, {"person", person}} {
		b.Run(c.name, func(b *testing.B) {
			tab.call(b, steps, "open("+jsArgs(c.id)+")", nil) // warm: the modules and the describe result
			var ms, base, lines []float64
			for b.Loop() {
				var v float64
				tab.call(b, steps, "timeForm("+jsArgs(c.id)+")", &v)
				ms = append(ms, v)
				tab.eval(b, `(async () => { const t0 = performance.now(); await app.session.get(`+jsArgs(c.id)+`); return performance.now() - t0; })()`, &v)
				base = append(base, v)
				tab.eval(b, `(async () => { const t0 = performance.now(); await app.session.allDocs({query: 'parent_relative_url:'+JSON.stringify(`+jsArgs(c.id)+`)+' AND portal_type:"Sale Order Line"', limit: [0, 500], select_list: ['title', 'resource', 'quantity', 'price']}); return performance.now() - t0; })()`, &v)
				lines = append(lines, v)
			}
			slices.Sort(ms)
			slices.Sort(base)
			b.ReportMetric(ms[len(ms)/2], "form-p50-ms")
			b.ReportMetric(ms[len(ms)*95/100], "form-p95-ms")
			slices.Sort(lines)
			b.ReportMetric(base[len(base)/2], "get-p50-ms")
			b.ReportMetric(lines[len(lines)/2], "lines-query-p50-ms")
		})
	}
}
