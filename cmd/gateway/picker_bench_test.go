package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/sqlite"
)

// The relation picker's search, as the web app issues it (lan/web/relation.js pickerQuery):
// allDocs within the field's portal types by its catalog index, a LIKE on part of the name,
// ten suggestions sorted by the index, over the data channel to a gateway whose replica holds
// pickerDocs documents. The figure is the round trip a clerk waits for after a pause in
// typing (the page adds its debounce, 150 ms, before it).

const pickerDocs = 100_000

var (
	pickerFirst = strings.Fields(`Ana Bruno Carla Daniel Eva Fábio Gabriela Hugo Inês João Karina Luís Marta Nuno Olga
		Paulo Rui Sofia Tiago Vasco Wanda Xavier Yara Zacarias Amélia Bernardo Clara Duarte Elisa Filipe Moussa Awa
		Ibrahima Fatou Mamadou Aïssatou Cheikh Khady Ousmane Mariama`)
	pickerLast = strings.Fields(`Lima Costa Mendes Sousa Rocha Nunes Pinto Alves Carvalho Ferreira Teixeira Moreira
		Ribeiro Gomes Martins Lopes Santos Barbosa Cardoso Correia Dias Fonseca Pires Reis Machado Vieira Diop Ndiaye
		Fall Sow Ba Diallo Faye Cissé Traoré Koné`)
	pickerOrg = strings.Fields(`Transportes Mina Oficina Construções Agro Farmácia Serviços Comércio Indústria Pescas
		Minerais Logística Energia Cimentos Madeiras`)
	pickerProduct = strings.Fields(`helmet cable gloves diesel cement pump valve drill bolt nut pipe hose filter battery
		tyre belt bearing sensor switch lamp`)
	// pickerTyped are what clerks type: parts of names, of various selectivity.
	pickerTyped = []string{"mar", "lima", "sou", "ndiaye", "trans", "agro lda", "ana c", "xyz", "ferr", "mina"}
)

// pickerCorpus writes the replica: people, organisations and products with realistic names.
func pickerCorpus(tb testing.TB, dir string) {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(13, 1))
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	var buf bytes.Buffer
	for i := range pickerDocs {
		var id string
		doc := map[string]any{"reference": fmt.Sprintf("R-%06d", i)}
		switch i % 3 {
		case 0:
			id = fmt.Sprintf("person_module/%d", i)
			doc["portal_type"], doc["title"] = "Person", pick(pickerFirst)+" "+pick(pickerLast)
		case 1:
			id = fmt.Sprintf("organisation_module/%d", i)
			doc["portal_type"], doc["title"] = "Organisation", pick(pickerOrg)+" "+pick(pickerLast)+" Lda"
		default:
			id = fmt.Sprintf("product_module/%d", i)
			doc["portal_type"], doc["title"] = "Product", fmt.Sprintf("%s %s %d", pick(pickerProduct), pick(pickerLast), r.IntN(100))
		}
		b, _ := json.Marshal(map[string]any{"id": id, "doc": doc})
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if _, err := db.Import(ctx, &buf, sqlite.ImportOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// pickerQuery is lan/web/relation.js's pickerQuery.
func pickerQuery(portalTypes []string, index, text string) string {
	var q []string
	for _, pt := range portalTypes {
		q = append(q, fmt.Sprintf("%q", pt))
	}
	types := strings.Join(q, " OR ")
	if len(q) > 1 {
		types = "(" + types + ")"
	}
	return fmt.Sprintf("portal_type:%s AND %s:%q", types, index, "%"+text+"%")
}

// BenchmarkPickerSuggestions measures the picker's allDocs round trip over the data channel
// (p50 and p99 in ms), against a get's round trip in the same run as the baseline.
func BenchmarkPickerSuggestions(b *testing.B) {
	dir := b.TempDir()
	pickerCorpus(b, dir)
	g := startWebGateway(b, dir)
	ctx := context.Background()
	code, err := sqlite.NewPeerService(g.s.DB).CreateInvite(ctx, "bench-1", "supervisor", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	creds, err := client.Pair(ctx, nil, g.s.URL(), code)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.Dial(ctx, g.s.URL(), client.Options{Token: creds.Token})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	run := func(b *testing.B, call func(i int) (string, any)) {
		var lat []time.Duration
		i := 0
		for b.Loop() {
			method, params := call(i)
			i++
			start := time.Now()
			if _, err := c.CallRaw(ctx, method, params); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	for _, c := range []struct {
		name  string
		types []string
	}{{"customer", []string{"Organisation", "Person"}}, {"product", []string{"Product"}}} {
		b.Run(c.name, func(b *testing.B) {
			run(b, func(i int) (string, any) {
				return "allDocs", map[string]any{
					"query":       pickerQuery(c.types, "title", pickerTyped[i%len(pickerTyped)]),
					"limit":       []int{0, 10},
					"sort_on":     [][]string{{"title", "ascending"}},
					"select_list": []string{"title", "portal_type"},
				}
			})
		})
	}
	// The same search unsorted: what sorting the matches by title costs.
	b.Run("customer-unsorted", func(b *testing.B) {
		run(b, func(i int) (string, any) {
			return "allDocs", map[string]any{
				"query":       pickerQuery([]string{"Organisation", "Person"}, "title", pickerTyped[i%len(pickerTyped)]),
				"limit":       []int{0, 10},
				"select_list": []string{"title", "portal_type"},
			}
		})
	})
	// For reference, what the index of property values (doc_keys) answers for the same LIKE
	// on titles, ten suggestions, read in SQL from the same file: what a search that uses it
	// for a contains-match, rather than reading every candidate document, could cost.
	b.Run("doc_keys-reference", func(b *testing.B) {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?mode=ro")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		var lat []time.Duration
		i := 0
		for b.Loop() {
			text := pickerTyped[i%len(pickerTyped)]
			i++
			start := time.Now()
			rows, err := db.Query(`SELECT k.doc FROM doc_keys k JOIN doc_keys t ON t.doc = k.doc AND t.key = 'portal_type' AND t.value IN ('Organisation', 'Person')
				WHERE k.key = 'title' AND k.value LIKE ? ORDER BY k.value LIMIT 10`, "%"+text+"%")
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
			}
			rows.Close()
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	})
	b.Run("get-baseline", func(b *testing.B) {
		run(b, func(i int) (string, any) {
			return "get", map[string]string{"id": fmt.Sprintf("person_module/%d", 3*(i%1000))}
		})
	})
}
