package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
	"sitesync.example/gateway/sqlite"
)

// replicaAdapter is the Replica over *sqlite.DB: the conversions cmd/gateway makes too.
type replicaAdapter struct {
	*sqlite.DB
}

func (r replicaAdapter) SyncCursors(ctx context.Context) (map[string]ScopeCursor, error) {
	m, err := r.DB.SyncCursors(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ScopeCursor, len(m))
	for k, c := range m {
		out[k] = ScopeCursor(c)
	}
	return out, nil
}

func (r replicaAdapter) SetSyncCursors(ctx context.Context, cs []ScopeCursor) error {
	list := make([]sqlite.SyncCursor, len(cs))
	for i, c := range cs {
		list[i] = sqlite.SyncCursor(c)
	}
	return r.DB.SetSyncCursors(ctx, list)
}

func (r replicaAdapter) ApplyPull(ctx context.Context, pages []ScopePage) (*PullReport, error) {
	list := make([]sqlite.PullPage, len(pages))
	for i, p := range pages {
		rows := make([]sqlite.PullRow, len(p.Rows))
		for j, row := range p.Rows {
			rows[j] = sqlite.PullRow(row)
		}
		list[i] = sqlite.PullPage{Scope: p.Scope, PortalType: p.PortalType, Fields: p.Fields, Rows: rows,
			Gone: p.Gone, AtLeast: p.AtLeast}
		if p.Cursor != nil {
			c := sqlite.SyncCursor(*p.Cursor)
			list[i].Cursor = &c
		}
	}
	rep, err := r.DB.ApplyPull(ctx, list)
	if err != nil {
		return nil, err
	}
	out := PullReport(*rep)
	return &out, nil
}

var _ Replica = replicaAdapter{}

// recordingReplica records every page applied and every changed notification.
type recordingReplica struct {
	Replica
	mu      sync.Mutex
	rows    map[string]int // id → rows received
	total   int
	pages   int
	fail    func(pages []ScopePage) error
	changed [][]string
}

func (r *recordingReplica) ApplyPull(ctx context.Context, pages []ScopePage) (*PullReport, error) {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(pages); err != nil {
			return nil, err
		}
	}
	rep, err := r.Replica.ApplyPull(ctx, pages)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pages {
		for _, row := range p.Rows {
			r.rows[row.ID]++
			r.total++
		}
	}
	r.pages++
	return rep, nil
}

func (r *recordingReplica) onChanged(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changed = append(r.changed, ids)
}

// reset forgets what was recorded.
func (r *recordingReplica) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows, r.total, r.pages, r.changed = map[string]int{}, 0, 0, nil
}

func (r *recordingReplica) received() (rows map[string]int, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.rows), r.total
}

// changedIDs returns every id notified since the last reset, sorted, without repeats.
func (r *recordingReplica) changedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ids := range r.changed {
		out = append(out, ids...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dlEnv is the downlink against the ERP5 double over the simulated satellite link, with the
// replica in a real database file.
type dlEnv struct {
	t      testing.TB
	store  *testStore
	rec    *recordingReplica
	link   *linksim.Link
	sim    *erp5sim.Server
	srv    *http.Server
	client *Client
	meter  *Meter
	dl     *Downlink
	up     *Uplink
	logs   *logBuffer
	// ignore are ids checkReplica leaves out.
	ignore map[string]bool
}

func newDLEnv(t testing.TB, cfg linksim.Config, opts erp5sim.Options, scopes ...Scope) *dlEnv {
	t.Helper()
	e := &dlEnv{t: t, logs: &logBuffer{}}
	e.store = openTestStore(t)
	e.rec = &recordingReplica{Replica: replicaAdapter{e.store.DB}, rows: map[string]int{}}
	e.link = linksim.New(cfg)
	opts.Tokens = []string{"tok"}
	opts.Logger = discardLogger()
	e.sim = erp5sim.New(opts)
	e.srv = &http.Server{Handler: e.sim}
	go e.srv.Serve(e.link)
	e.meter = &Meter{}
	e.client = &Client{
		URL:        "http://erp5.test" + e.sim.SitePath() + "/",
		HTTPClient: &http.Client{Transport: NewTransport(TransportConfig{DialContext: e.link.DialContext, Meter: e.meter})},
		Auth:       Auth{Token: "tok"},
	}
	e.dl = &Downlink{Client: e.client, Replica: e.rec, Scopes: scopes, Gateway: "site-a", Meter: e.meter,
		Logger: e.logs.logger(), OnChanged: e.rec.onChanged}
	t.Cleanup(func() {
		e.dl.Close(context.Background())
		if e.up != nil {
			e.up.Close(context.Background())
		}
		e.srv.Close()
		e.link.Close()
		for _, c := range e.link.Conns() {
			c.Close()
		}
		e.client.HTTPClient.Transport.(*http.Transport).CloseIdleConnections()
	})
	return e
}

// open opens the uplink if there is one, then the downlink, as serve does: the client's
// exchanges reach the downlink (the uplink's Open wraps OnExchange, which must not change
// while requests run), and the downlink's hooks read an open uplink.
func (e *dlEnv) open() {
	e.t.Helper()
	if e.client.OnExchange == nil {
		e.client.OnExchange = e.dl.ObserveExchange
	}
	if e.up != nil {
		if err := e.up.Open(context.Background()); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.dl.Open(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// withUplink adds an uplink on the same client, database and meter (opened by open), and lets
// the downlink follow it (busy, mode).
func (e *dlEnv) withUplink() {
	e.t.Helper()
	e.up = &Uplink{Client: e.client, Store: e.store, Meter: e.meter, Logger: discardLogger()}
	e.dl.UplinkBusy = e.up.Busy
	e.dl.Mode = func() (string, *Capability) {
		st := e.up.Status()
		return st.Mode, st.Capability
	}
}

// complete reports whether every scope finished its initial sync.
func (e *dlEnv) complete() bool {
	for _, s := range e.dl.Progress() {
		if !s.Complete {
			return false
		}
	}
	return true
}

// settle waits until a pull that starts after now has finished: a SyncNow, then an idle
// downlink whose last pull is later.
func (e *dlEnv) settle(what string) {
	e.t.Helper()
	before := time.Now()
	e.dl.SyncNow()
	waitFor(e.t, 6*time.Hour, what, func() bool {
		st := e.dl.Status()
		return st.State == "idle" && st.LastPull.After(before)
	})
}

// personFields are the ten fields the tests replicate of a Person.
var personFields = []string{"title", "first_name", "last_name", "reference", "default_email_text",
	"default_telephone_text", "function", "subordination", "start_date", "validation_state"}

var (
	firstNames = []string{"Aïcha", "Jean", "Marie", "Kofi", "Amadou", "Fatou", "Pierre", "Nadia", "Omar", "Léa",
		"Moussa", "Awa", "Ibrahim", "Claire", "Sékou", "Mariam", "Paul", "Kadiatou", "Yacouba", "Sophie"}
	lastNames = []string{"Diallo", "Martin", "Traoré", "Bernard", "Koné", "Dubois", "Sow", "Moreau", "Ba", "Petit",
		"Keïta", "Coulibaly", "Camara", "Durand", "Sangaré", "Lefèvre", "Touré", "Girard", "Cissé", "Mercier"}
	functions = []string{"engineer", "driver", "geologist", "storekeeper", "accountant", "manager", "mechanic",
		"electrician", "nurse", "cook", "guard", "surveyor"}
)

// persons returns n Person documents with the ten replicated fields, modified about an hour
// apart before ref (every tenth in the same second as the one before).
func persons(n int, ref time.Time) []*erp5sim.Document {
	rng := rand.New(rand.NewPCG(uint64(n), 42))
	out := make([]*erp5sim.Document, n)
	for i := range n {
		f, l := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		state := "validated"
		if rng.IntN(5) == 0 {
			state = "draft"
		}
		props := map[string]any{
			"title": f + " " + l, "first_name": f, "last_name": l, "reference": fmt.Sprintf("P%06d", i+1),
			"default_email_text":     fmt.Sprintf("%s.%s%d@example.org", strings.ToLower(l), strings.ToLower(f[:1]), rng.IntN(10000)),
			"default_telephone_text": fmt.Sprintf("+223 %02d %02d %02d %02d", rng.IntN(100), rng.IntN(100), rng.IntN(100), rng.IntN(100)),
			"function":               functions[rng.IntN(len(functions))],
			"subordination":          fmt.Sprintf("organisation_module/%d", 1+rng.IntN(800)),
			"start_date":             ref.Add(-time.Duration(rng.IntN(5000)) * 24 * time.Hour).Truncate(24 * time.Hour).Format(time.RFC1123Z),
			"validation_state":       state,
		}
		// About an hour apart, and every tenth document in the second of the one before.
		mod := ref.Add(-time.Duration(n-i) * 53 * time.Minute)
		if i%10 == 1 {
			mod = out[i-1].ModificationDate.Add(250 * time.Millisecond)
		}
		out[i] = &erp5sim.Document{ID: fmt.Sprintf("person_module/%d", i+1), PortalType: "Person",
			Properties: props, CreationDate: mod.Add(-time.Hour), ModificationDate: mod}
	}
	return out
}

// expected is a document as the replica must hold it: portal_type and the scope's fields,
// absent ones left out.
func expected(d *erp5sim.Document, fields []string) map[string]any {
	out := map[string]any{"portal_type": d.PortalType}
	for _, f := range fields {
		if v, ok := d.Properties[f]; ok && v != nil {
			out[f] = v
		}
	}
	return out
}

// checkReplica asserts that the replica holds exactly the double's documents for which in
// is true, each with the scope's fields, among the replica's documents of portalType.
func (e *dlEnv) checkReplica(portalType string, fields []string, in func(*erp5sim.Document) bool) {
	e.t.Helper()
	for _, p := range e.replicaDiff(portalType, fields, in) {
		e.t.Error(p)
	}
}

// replicaDiff lists how the replica differs from the double's documents for which in is true.
func (e *dlEnv) replicaDiff(portalType string, fields []string, in func(*erp5sim.Document) bool) []string {
	t := e.t
	t.Helper()
	ctx := context.Background()
	want := map[string]map[string]any{}
	for _, d := range e.sim.Documents() {
		if d.PortalType == portalType && in(d) && !e.ignore[d.ID] {
			want[d.ID] = expected(d, fields)
		}
	}
	ids, err := e.store.ReplicaIDs(ctx, portalType)
	if err != nil {
		t.Fatal(err)
	}
	var out, extra []string
	for _, id := range ids {
		if _, ok := want[id]; !ok && !e.ignore[id] {
			extra = append(extra, id)
		}
	}
	if len(extra) > 0 {
		out = append(out, fmt.Sprintf("%d documents in the replica that ERP5 has not in scope: %v", len(extra), head(extra)))
	}
	var missing, wrong []string
	keys := slices.Sorted(maps.Keys(want))
	for _, id := range keys {
		doc, err := e.store.GetDocument(ctx, id)
		if err != nil {
			missing = append(missing, id)
			continue
		}
		got, _ := sqlite.DecodeObject(doc.Body)
		// Pulled documents carry their container (offline-seeded ones as the export had
		// them), and stock pulls the catalog uid a relation edit names.
		if p, ok := got["parent_relative_url"]; ok {
			if want := id[:strings.LastIndexByte(id, '/')]; p != want {
				wrong = append(wrong, fmt.Sprintf("%s: parent_relative_url %v, want %s", id, p, want))
			}
			delete(got, "parent_relative_url")
		}
		if u, ok := got["uid"]; ok {
			if _, isNum := u.(json.Number); !isNum {
				wrong = append(wrong, fmt.Sprintf("%s: uid %v is not a number", id, u))
			}
			delete(got, "uid")
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want[id])
		if string(a) != string(b) {
			wrong = append(wrong, fmt.Sprintf("%s: %s, want %s", id, a, b))
		}
	}
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("%d of %d documents missing from the replica: %v", len(missing), len(want), head(missing)))
	}
	if len(wrong) > 0 {
		out = append(out, fmt.Sprintf("%d documents differ: %v", len(wrong), head(wrong)))
	}
	return out
}

func head(s []string) []string {
	sort.Strings(s)
	if len(s) > 5 {
		return append(s[:5:5], "…")
	}
	return s
}

func all(*erp5sim.Document) bool { return true }
