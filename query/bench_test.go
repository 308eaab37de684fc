package query_test

import (
	"testing"

	"sitesync.example/gateway/query"
)

// benchQuery is a typical form query: a read scope ANDed with the user's filters.
const benchQuery = `portal_type:("Sale Order" OR "Sale Order Line") AND simulation_state:(confirmed OR started) ` +
	`delivery.start_date:>="2017-09-01" title:%cement% NOT reference:SO-2016-% quantity:>10`

func BenchmarkParse(b *testing.B) {
	b.SetBytes(int64(len(benchQuery)))
	for b.Loop() {
		if _, err := query.Parse(benchQuery); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	q, err := query.Parse(benchQuery)
	if err != nil {
		b.Fatal(err)
	}
	doc := mustDoc(b, `{"portal_type":"Sale Order","simulation_state":"confirmed",
		"delivery.start_date":"2017-09-06","title":"Portland Cement 50kg","reference":"SO-2017-0042",
		"quantity":25,"description":"twenty five bags, delivered to the north gate","tags":["a","b","c"]}`)
	if !query.Match(q, doc, []string{"delivery.start_date"}) {
		b.Fatal("benchmark document must match")
	}
	for b.Loop() {
		query.Match(q, doc, []string{"delivery.start_date"})
	}
}

func BenchmarkMatchFullText(b *testing.B) {
	q, err := query.Parse(`cement north`)
	if err != nil {
		b.Fatal(err)
	}
	doc := mustDoc(b, `{"portal_type":"Sale Order","title":"Portland Cement 50kg","reference":"SO-2017-0042",
		"quantity":25,"description":"twenty five bags, delivered to the north gate"}`)
	for b.Loop() {
		query.Match(q, doc, nil)
	}
}

func BenchmarkLike(b *testing.B) {
	s := "twenty five bags of Portland cement, delivered to the north gate before noon"
	for b.Loop() {
		query.Like("%north%noon", s)
	}
}
