package sqlite_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
)

// The benchmarks' corpus: benchDocs documents of three portal types, built once and kept in
// the system's temporary directory, named by a hash of the documents' migration and the
// generator's version (bump it when a later migration changes documents or doc_keys), so that
// repeated runs skip the build. Open applies any newer migration to the cached file.
const (
	benchDocs          = 100_000
	benchCorpusVersion = 1
)

// schemaHash hashes the documents' migration.
func schemaHash(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("migration/0002_documents.sql")
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6])
}

var benchWords = strings.Fields(`alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu
	nu xi omicron pi rho sigma tau upsilon phi chi psi omega Éric Ñandú straße Zoë Ågård Łódź
	Müller Dupont Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent`)

var benchPortalTypes = []string{"Person", "Organisation", "Product"}

// benchRecords writes n import records, numbered from first, to w.
func benchRecords(w *bytes.Buffer, first, n int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	word := func() string { return benchWords[r.IntN(len(benchWords))] }
	for i := first; i < first+n; i++ {
		pt := benchPortalTypes[i%len(benchPortalTypes)]
		doc := map[string]any{
			"portal_type":       pt,
			"reference":         fmt.Sprintf("REF-%06d", i),
			"title":             word() + " " + word() + " " + word(),
			"description":       strings.Repeat(word()+" ", 12),
			"first_name":        word(),
			"email":             strings.ToLower(word()) + fmt.Sprint(i) + "@example.org",
			"modification_date": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).Format("2006-01-02 15:04:05"),
			"quantity":          r.IntN(1000),
			"price":             json.Number(fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100))),
			"categories":        []string{"region/" + word(), "group/" + word()},
		}
		body, _ := json.Marshal(doc)
		fmt.Fprintf(w, `{"id":"%s_module/%d","doc":%s}`+"\n", strings.ToLower(pt), i, body)
	}
}

var (
	corpusOnce sync.Once
	corpusPath string
	corpusErr  error
)

// benchCorpus returns the corpus database, building it on first use.
func benchCorpus(b *testing.B) *sqlite.DB {
	b.Helper()
	hash := schemaHash(b)
	corpusOnce.Do(func() {
		corpusPath = filepath.Join(os.TempDir(), fmt.Sprintf("gateway-bench-corpus-v%d-%s", benchCorpusVersion, hash), sqlite.FileName)
		if corpusErr = os.MkdirAll(filepath.Dir(corpusPath), 0o755); corpusErr != nil {
			return
		}
		if _, err := os.Stat(corpusPath); err == nil {
			return
		}
		tmp := corpusPath + fmt.Sprintf(".build-%d", os.Getpid())
		db := sqlite.NewDB(tmp)
		db.Synchronous = "off"
		if corpusErr = db.Open(context.Background()); corpusErr != nil {
			return
		}
		var buf bytes.Buffer
		benchRecords(&buf, 0, benchDocs, 42)
		if _, corpusErr = db.Import(context.Background(), &buf, sqlite.ImportOptions{}); corpusErr != nil {
			db.Close()
			return
		}
		if _, corpusErr = db.Writer().Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); corpusErr != nil {
			db.Close()
			return
		}
		if corpusErr = db.Close(); corpusErr != nil {
			return
		}
		os.Remove(tmp + "-wal")
		os.Remove(tmp + "-shm")
		corpusErr = os.Rename(tmp, corpusPath)
	})
	if corpusErr != nil {
		b.Fatal(corpusErr)
	}
	db, err := sqlite.Open(context.Background(), corpusPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkQuery_PortalTypeAndReference is the form's lookup: `portal_type:"X" AND
// reference:"Y"` over 100k documents, answered from doc_keys.
func BenchmarkQuery_PortalTypeAndReference(b *testing.B) {
	db := benchCorpus(b)
	ctx := context.Background()
	var qs []query.Query
	for i := range 100 {
		n := (i * 997) % benchDocs
		qs = append(qs, mustParse(b, fmt.Sprintf(`portal_type:"%s" AND reference:"REF-%06d"`, benchPortalTypes[n%3], n)))
	}
	for i := 0; b.Loop(); i++ {
		res, err := db.Query(ctx, qs[i%len(qs)], query.Options{IncludeDocs: true})
		if err != nil {
			b.Fatal(err)
		}
		if res.TotalRows != 1 {
			b.Fatalf("total_rows = %d, want 1", res.TotalRows)
		}
	}
}

// BenchmarkQuery_TitleLike is a keyed LIKE scan over 100k documents: `title:"%ric%"`, first
// page of 20.
func BenchmarkQuery_TitleLike(b *testing.B) {
	db := benchCorpus(b)
	ctx := context.Background()
	q := mustParse(b, `title:"%ric%"`)
	var total int
	for b.Loop() {
		res, err := db.Query(ctx, q, query.Options{Count: 20, IncludeDocs: true})
		if err != nil {
			b.Fatal(err)
		}
		total = res.TotalRows
	}
	if total == 0 || total == benchDocs {
		b.Fatalf("total_rows = %d: the benchmark measures nothing useful", total)
	}
	b.ReportMetric(float64(total), "matches")
}

// BenchmarkQuery_PortalTypeSorted lists one portal type (a third of the corpus), sorted by
// modification date, first page of 20.
func BenchmarkQuery_PortalTypeSorted(b *testing.B) {
	db := benchCorpus(b)
	ctx := context.Background()
	q := mustParse(b, `portal_type:"Person"`)
	opts := query.Options{Count: 20, SortOn: []query.SortKey{{Key: "modification_date", Descending: true}},
		DateKeys: []string{"modification_date"}, SelectList: []string{"title", "reference"}}
	for b.Loop() {
		res, err := db.Query(ctx, q, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.TotalRows != benchDocs/3+1 {
			b.Fatalf("total_rows = %d", res.TotalRows)
		}
	}
}

// BenchmarkImport imports 20k documents (JSON Lines) into a new database in one transaction,
// with synchronous=full, and reports documents per second.
func BenchmarkImport(b *testing.B) {
	const n = 20_000
	var src bytes.Buffer
	benchRecords(&src, 0, n, 7)
	ctx := context.Background()
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), sqlite.FileName))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		st, err := db.Import(ctx, bytes.NewReader(src.Bytes()), sqlite.ImportOptions{})
		elapsed += time.Since(start)
		if err != nil || st.Committed != n {
			b.Fatalf("import: %+v, %v", st, err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "docs/s")
}
