// Package erp5sim is a test double of ERP5 speaking the protocol of docs/DESIGN.md appendices A and B: the stock
// HATEOAS interface (site root with RFC 6570 entry points, traverse with a view form, Base_edit,
// newContent, raw_search) and the sync gateway's batch receiver (capability, batch,
// results, changes), with documents in memory, a settable clock, delayed indexing, faults
// on demand and counters.
//
// A Server is an http.Handler. Serve it with httptest, or across a simulated satellite link
// with package linksim (in virtual time under testing/synctest). The receiver's semantics
// are the same as the Python receiver core in erp5/ (erp5/README.md), and both replay the
// test vectors in erp5/testdata.
package erp5sim

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sitesync.example/gateway/query"
)

// Defaults.
const (
	DefaultSitePath      = "/erp5/web_site_module/hateoas"
	DefaultMaxEntries    = 1000
	DefaultMaxBatchBytes = 1 << 20 // compressed; ~1,000 ERP5-like entries take ~75 KB
	DefaultRetentionDays = 90
	DefaultSearchLimit   = 10 // ERP5 returns 10 rows when a search has no limit
	DefaultChangesLimit  = 100
	MaxChangesLimit      = 1000
)

// Routes are the URLs of the HATEOAS entry points, relative to the site: a path and fixed
// query parameters. Edit contains "{relative_url}". Clients must read them from the site
// root and from each form, never build them.
type Routes struct {
	Traverse, Search, Add, Bulk, Edit string
}

// DefaultRoutes are ERP5's own URLs.
var DefaultRoutes = Routes{
	Traverse: "ERP5Document_getHateoas?mode=traverse",
	Search:   "ERP5Document_getHateoas?mode=search",
	Add:      "ERP5Document_getHateoas?mode=newContent",
	Bulk:     "ERP5Document_getHateoas?mode=bulk",
	Edit:     "{relative_url}/Base_edit",
}

// OddRoutes are deliberately unusual URLs, like those of jIO's own test double
// (`lets?add=somedocument`, `azertytrea?f=g`): a client that builds URLs by hand fails.
var OddRoutes = Routes{
	Traverse: "azertytrea?f=g",
	Search:   "find/everything?s=1",
	Add:      "lets?add=somedocument",
	Bulk:     "bulky?b=2",
	Edit:     "odd_edit/{relative_url}/save?e=3",
}

// Options configure a Server. The zero value is a receiver-enabled double without
// authentication, on DefaultSitePath with DefaultRoutes.
type Options struct {
	// SitePath is the HATEOAS web site's path; default DefaultSitePath.
	SitePath string
	// Routes are the entry points' URLs; default DefaultRoutes.
	Routes Routes
	// Users (login → password) and Tokens (X-ACCESS-TOKEN values) are the accepted
	// credentials. With neither, no authentication is asked.
	Users  map[string]string
	Tokens []string
	// Now is the clock; default time.Now (virtual under synctest). See Clock.
	Now func() time.Time
	// IndexLag delays when searches and the changes query see an edit, as ERP5's
	// asynchronous catalog does.
	IndexLag time.Duration
	// Stock turns the receiver off: its URLs answer 404 (stock-only ERP5).
	Stock bool
	// Encodings the receiver accepts, in preference order; default ["zstd", "gzip"].
	Encodings []string
	// MaxEntries and MaxBatchBytes bound a batch (413 above them); RetentionDays is
	// advertised. Defaults DefaultMaxEntries, DefaultMaxBatchBytes, DefaultRetentionDays.
	MaxEntries    int
	MaxBatchBytes int
	RetentionDays int
	// Seed and Docs, when Docs > 0, load Generate(Seed, Docs) at start.
	Seed int64
	Docs int
	// Logger receives one line per request at debug level; default slog.Default().
	Logger *slog.Logger
	// BoolFlags renders the form fields' editable, hidden and required flags as JSON
	// booleans, as jIO's fixtures write them, instead of ERP5's 1 and 0.
	BoolFlags bool
	// JioView makes view=jio_view render the view form too, as on an ERP5 whose types carry
	// OfficeJS's jio_view action; a generic ERP5 has none. Views are more view names that
	// render it.
	JioView bool
	Views   []string
	// GzipHAL compresses HATEOAS answers with gzip for a request that accepts it, as a front
	// end with compression does (the receiver's answers follow the request's encoding).
	GzipHAL bool
}

// Server is the ERP5 double. Create it with New; it is safe for concurrent use.
type Server struct {
	opts      Options
	now       func() time.Time
	sitePath  string
	routes    parsedRoutes
	encodings []string
	log       *slog.Logger

	mu        sync.Mutex
	receiver  bool
	docs      map[string]*Document // by relative URL
	uids      map[string]int64
	nextUID   int64
	catalog   map[int64]*catalogEntry // by uid: what searches see
	pending   []indexJob
	serial    int64 // index serial, the changes query's cursor
	qdocs     []query.Doc
	qdirty    bool
	records   map[string]*record // receiver dedupe: entry keys and write keys
	own       map[string]string  // gateway\x00id → version this gateway's last change produced
	log_      []Change
	faults    []*Fault
	faultFn   func(r *http.Request, ep Endpoint) *Fault
	stats     Stats
	readOnly  map[string]bool
	lastID    map[string]int          // per container: the highest numeric id stored
	forms     map[string]*FormDef     // view forms by portal type (replaced whole on change)
	workflows map[string]*WorkflowDef // workflow graphs by portal type
}

type catalogEntry struct {
	uid     int64
	id      string
	body    map[string]any
	state   map[string]any
	version string
	pt      string
	serial  int64
}

type indexJob struct {
	uid int64
	at  time.Time
	doc *Document // snapshot at the change
}

// New returns a double with opts.
func New(opts Options) *Server {
	s := &Server{
		opts:      opts,
		now:       opts.Now,
		sitePath:  strings.TrimSuffix(cmp.Or(opts.SitePath, DefaultSitePath), "/"),
		log:       cmp.Or(opts.Logger, slog.Default()),
		receiver:  !opts.Stock,
		docs:      map[string]*Document{},
		uids:      map[string]int64{},
		catalog:   map[int64]*catalogEntry{},
		records:   map[string]*record{},
		own:       map[string]string{},
		readOnly:  map[string]bool{},
		lastID:    map[string]int{},
		stats:     newStats(),
		forms:     defaultForms(),
		workflows: defaultWorkflows(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	routes := opts.Routes
	if routes == (Routes{}) {
		routes = DefaultRoutes
	}
	s.routes = parseRoutes(routes)
	s.encodings = opts.Encodings
	if s.encodings == nil {
		s.encodings = []string{"zstd", "gzip"}
	}
	if s.opts.MaxEntries <= 0 {
		s.opts.MaxEntries = DefaultMaxEntries
	}
	if s.opts.MaxBatchBytes <= 0 {
		s.opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if s.opts.RetentionDays <= 0 {
		s.opts.RetentionDays = DefaultRetentionDays
	}
	if opts.Docs > 0 {
		s.Load(Generate(opts.Seed, opts.Docs, s.now()))
	}
	return s
}

// SetReceiver turns the batch receiver on or off (off: its URLs answer 404, as on a stock
// ERP5).
func (s *Server) SetReceiver(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.receiver = on
}

// SitePath returns the HATEOAS site's path, without a trailing slash.
func (s *Server) SitePath() string { return s.sitePath }

// Load stores documents as they are (dates included) and indexes them at once, whatever
// IndexLag says. A document with an existing id replaces it.
func (s *Server) Load(docs []*Document) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range docs {
		d = d.clone()
		if d.Properties == nil {
			d.Properties = map[string]any{}
		}
		if d.CreationDate.IsZero() {
			d.CreationDate = d.ModificationDate
		}
		d.ModificationDate = d.ModificationDate.Truncate(time.Microsecond)
		s.docs[d.ID] = d
		uid := s.uidLocked(d.ID)
		if d.ReadOnly {
			s.readOnly[d.ID] = true
		}
		s.indexNowLocked(uid, d)
	}
}

// Documents returns a copy of every document, sorted by id.
func (s *Server) Documents() []*Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Document, 0, len(s.docs))
	for _, d := range s.docs {
		out = append(out, d.clone())
	}
	slices.SortFunc(out, func(a, b *Document) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Document returns a copy of the document with relative URL id, or nil.
func (s *Server) Document(id string) *Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.docs[id]; ok {
		return d.clone()
	}
	return nil
}

// SetReadOnly makes a document read-only for the stock interface (no `_actions.put`, 403
// on Base_edit) or editable again.
func (s *Server) SetReadOnly(id string, ro bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readOnly[id] = ro
	if d, ok := s.docs[id]; ok {
		d.ReadOnly = ro
	}
}

// Reindex makes every pending change visible to searches now, as if the catalog caught up.
func (s *Server) Reindex() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.pending {
		s.indexNowLocked(j.uid, j.doc)
	}
	s.pending = nil
}

// Edit changes properties as a head-office user would: the version is bumped and the
// change reaches the catalog after IndexLag. A nil value clears a property.
func (s *Server) Edit(id string, props map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if !ok {
		return fmt.Errorf("edit %s: no such document", id)
	}
	nd := d.clone()
	if err := editProps(nd, props); err != nil {
		return fmt.Errorf("edit %s: %w", id, err)
	}
	s.commitLocked(d, nd, Change{Via: ViaHeadOffice, Op: "put", Fields: props})
	return nil
}

// Create adds a document as a head-office user would and returns its id.
func (s *Server) Create(portalType, parent string, props map[string]any) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nd, err := s.newDocLocked(portalType, parent)
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if err := editProps(nd, props); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	s.commitLocked(nil, nd, Change{Via: ViaHeadOffice, Op: "post", Fields: props})
	return nd.ID, nil
}

// Transition runs a workflow transition as a head-office user would.
func (s *Server) Transition(id, transition string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if !ok {
		return fmt.Errorf("transition %s: no such document", id)
	}
	nd := d.clone()
	if err := doTransition(nd, transition); err != nil {
		return fmt.Errorf("transition %s: %w", id, err)
	}
	s.commitLocked(d, nd, Change{Via: ViaHeadOffice, Op: "action", Transition: transition})
	return nil
}

// Via says where a change came from.
type Via string

// Sources of changes.
const (
	ViaHeadOffice Via = "head_office" // Server.Edit, Create, Transition
	ViaStock      Via = "stock"       // Base_edit, newContent
	ViaReceiver   Via = "receiver"    // an applied batch entry
)

// Change is one committed change of a document, in commit order.
type Change struct {
	N          int // 1-based position in the log
	Via        Via
	User       string // the authenticated user, if any
	Gateway    string // receiver entries only
	Epoch      string
	Seq        int64
	Covers     []int64
	Peer, Key  string
	Op         string // post, put, remove, action
	ID         string // the document's id after the change
	Fields     map[string]any
	Transition string
	Version    string
	At         time.Time
}

// Changes returns every committed change, in order.
func (s *Server) Changes() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log_)
}

// Applied returns the receiver entries of gateway applied under epoch ("" for every epoch),
// in application order: each acknowledged write must appear exactly once (itself or as one
// of an entry's Covers), and a document's entries in seq order.
func (s *Server) Applied(gateway, epoch string) []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Change
	for _, c := range s.log_ {
		if c.Via == ViaReceiver && c.Gateway == gateway && (epoch == "" || c.Epoch == epoch) {
			out = append(out, c)
		}
	}
	return out
}

// uidLocked returns the catalog uid of a relative URL, allocating one, and keeps the
// container's id counter up to date.
func (s *Server) uidLocked(id string) int64 {
	if u, ok := s.uids[id]; ok {
		return u
	}
	s.noteIDLocked(id)
	s.nextUID++
	s.uids[id] = s.nextUID
	return s.nextUID
}

// noteIDLocked raises the container's id counter to a numeric id stored in it.
func (s *Server) noteIDLocked(id string) {
	if n, err := strconv.Atoi(lastSegment(id)); err == nil && strconv.Itoa(n) == lastSegment(id) && n > s.lastID[parentOf(id)] {
		s.lastID[parentOf(id)] = n
	}
}

// newDocLocked creates (without storing) a document in parent with ERP5's next id: the
// container's counter plus one. The counter follows the highest numeric id ever stored in
// the container, so ids are never reused, even after a rename.
func (s *Server) newDocLocked(ptName, parent string) (*Document, error) {
	if ptName == "" {
		return nil, &valueError{"portal_type", "portal_type is required"}
	}
	if parent == "" {
		return nil, &valueError{"parent_relative_url", "parent_relative_url is required"}
	}
	if !isModule(parent) {
		if _, ok := s.docs[parent]; !ok {
			return nil, &valueError{"parent_relative_url", "no container " + parent}
		}
	}
	next := s.lastID[parent] + 1
	return &Document{
		ID:         parent + "/" + strconv.Itoa(next),
		PortalType: ptName,
		Properties: map[string]any{portalType(ptName).StateVar: "draft"},
	}, nil
}

// commitLocked stores nd (replacing old, nil for a creation), bumps its version when it
// changed, schedules indexing and logs the change. It returns the stored document.
func (s *Server) commitLocked(old, nd *Document, c Change) *Document {
	changed := old == nil || old.ID != nd.ID || !propsEqual(old.Properties, nd.Properties)
	if changed {
		s.bumpLocked(nd)
	}
	if old != nil && old.ID != nd.ID {
		uid := s.uids[old.ID]
		delete(s.docs, old.ID)
		delete(s.uids, old.ID)
		s.uids[nd.ID] = uid
		s.noteIDLocked(nd.ID)
	}
	s.docs[nd.ID] = nd
	if s.readOnly[nd.ID] {
		nd.ReadOnly = true
	}
	uid := s.uidLocked(nd.ID)
	if changed {
		s.scheduleIndexLocked(uid, nd)
	}
	c.N = len(s.log_) + 1
	c.ID = nd.ID
	c.Version = nd.Version()
	c.At = nd.ModificationDate
	s.log_ = append(s.log_, c)
	return nd
}

// bumpLocked sets d's modification date to now at microsecond precision, strictly after its
// previous one so versions of one document never repeat, even when the clock stands still.
// Each modifying step (an edit, a transition) bumps once, as each leaves a workflow history
// entry in ERP5.
func (s *Server) bumpLocked(d *Document) {
	t := s.now().Truncate(time.Microsecond)
	prev := d.ModificationDate
	if !t.After(prev) {
		t = prev.Add(time.Microsecond)
	}
	d.ModificationDate = t
	if d.CreationDate.IsZero() {
		d.CreationDate = t
	}
}

func propsEqual(a, b map[string]any) bool {
	for k, v := range a {
		if w, ok := b[k]; !ok || !strictEqual(v, w) {
			return false
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return false
		}
	}
	return true
}

// strictEqual compares stored values exactly ("" differs from nil here: clearing a
// property is a change).
func strictEqual(a, b any) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if sa, ok := a.(string); ok {
		sb, ok := b.(string)
		return ok && sa == sb
	}
	if _, ok := b.(string); ok {
		return false
	}
	return valuesEqual(a, b)
}

func (s *Server) scheduleIndexLocked(uid int64, d *Document) {
	if s.opts.IndexLag <= 0 {
		s.indexNowLocked(uid, d)
		return
	}
	s.pending = append(s.pending, indexJob{uid: uid, at: s.now().Add(s.opts.IndexLag), doc: d.clone()})
}

func (s *Server) indexNowLocked(uid int64, d *Document) {
	s.serial++
	s.catalog[uid] = &catalogEntry{uid: uid, id: d.ID, body: d.catalogBody(uid), state: d.state(), version: d.Version(), pt: d.PortalType, serial: s.serial}
	s.qdirty = true
}

// catchUpLocked indexes the changes whose lag has passed.
func (s *Server) catchUpLocked() {
	now := s.now()
	i := 0
	for ; i < len(s.pending) && !s.pending[i].at.After(now); i++ {
		s.indexNowLocked(s.pending[i].uid, s.pending[i].doc)
	}
	s.pending = s.pending[i:]
}

// queryDocsLocked returns the catalog as query documents, by uid.
func (s *Server) queryDocsLocked() []query.Doc {
	s.catchUpLocked()
	if s.qdirty || s.qdocs == nil {
		entries := make([]*catalogEntry, 0, len(s.catalog))
		for _, e := range s.catalog {
			entries = append(entries, e)
		}
		slices.SortFunc(entries, func(a, b *catalogEntry) int { return cmp.Compare(a.uid, b.uid) })
		s.qdocs = make([]query.Doc, len(entries))
		for i, e := range entries {
			s.qdocs[i] = query.Doc{ID: e.id, Body: e.body}
		}
		s.qdirty = false
	}
	return s.qdocs
}

// ServeHTTP routes a request, applying any fault scheduled for its endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep, rel := s.route(r)
	// The double's clock dates its answers, so clients can measure their skew against it.
	w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	body := &countingReader{r: r.Body}
	r.Body = body
	f := s.takeFault(r, ep)
	rec := newRecorder()
	handled := false
	process := func() {
		handled = true
		if code := s.authenticate(r); code != 0 {
			rec.Header().Set("WWW-Authenticate", `Basic realm="Zope"`)
			rec.WriteHeader(code)
			return
		}
		s.dispatch(rec, r, ep, rel)
		if s.opts.GzipHAL {
			gzipHAL(r, rec)
		}
	}
	n := s.serveWithFault(w, r, ep, f, rec, process)
	s.count(ep, body.n, n, handled, rec.status)
	s.log.Debug("erp5sim", "method", r.Method, "url", r.URL.String(), "endpoint", ep, "status", rec.status, "fault", f != nil)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, ep Endpoint, rel string) {
	switch ep {
	case EndpointRoot:
		s.handleRoot(w, r)
	case EndpointTraverse:
		s.handleTraverse(w, r)
	case EndpointSearch:
		s.handleSearch(w, r)
	case EndpointAdd:
		s.handleAdd(w, r)
	case EndpointBulk:
		s.handleBulk(w, r)
	case EndpointEdit:
		s.handleEdit(w, r, rel)
	case EndpointCapability, EndpointBatch, EndpointResults, EndpointChanges, EndpointForms:
		s.mu.Lock()
		on := s.receiver
		s.mu.Unlock()
		if !on {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		switch ep {
		case EndpointCapability:
			s.handleCapability(w, r)
		case EndpointBatch:
			s.handleBatch(w, r)
		case EndpointResults:
			s.handleResults(w, r)
		case EndpointChanges:
			s.handleChanges(w, r)
		case EndpointForms:
			s.handleForms(w, r)
		}
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// authenticate returns 0 when the request carries valid credentials (or none are
// configured), else 401.
func (s *Server) authenticate(r *http.Request) int {
	if len(s.opts.Users) == 0 && len(s.opts.Tokens) == 0 {
		return 0
	}
	if tok := r.Header.Get("X-ACCESS-TOKEN"); tok != "" && slices.Contains(s.opts.Tokens, tok) {
		return 0
	}
	if u, p, ok := r.BasicAuth(); ok && s.userOK(u, p) {
		return 0
	}
	if c, err := r.Cookie("__ac"); err == nil {
		v := strings.Trim(c.Value, `"`)
		if un, err := url.QueryUnescape(v); err == nil {
			v = un
		}
		if raw, err := base64.StdEncoding.DecodeString(v); err == nil {
			if u, p, ok := strings.Cut(string(raw), ":"); ok && s.userOK(u, p) {
				return 0
			}
		}
	}
	return http.StatusUnauthorized
}

func (s *Server) userOK(u, p string) bool {
	want, ok := s.opts.Users[u]
	return ok && want == p
}

// user returns the login of an authenticated request, "" if none.
func (s *Server) user(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	return ""
}

// Endpoint names a group of URLs, for faults and counters.
type Endpoint string

// Endpoints.
const (
	EndpointRoot       Endpoint = "root"
	EndpointTraverse   Endpoint = "traverse"
	EndpointSearch     Endpoint = "search"
	EndpointAdd        Endpoint = "add"
	EndpointBulk       Endpoint = "bulk"
	EndpointEdit       Endpoint = "edit"
	EndpointCapability Endpoint = "capability"
	EndpointBatch      Endpoint = "batch"
	EndpointResults    Endpoint = "results"
	EndpointChanges    Endpoint = "changes"
	EndpointNotFound   Endpoint = "not_found"
)

// Receiver script names (docs/DESIGN.md appendix B), found by acquisition under the site.
const (
	CapabilityScript = "ERP5Site_getSyncGatewayCapability"
	BatchScript      = "ERP5Site_receiveSyncGatewayBatch"
	ResultsScript    = "ERP5Site_getSyncGatewayResults"
	ChangesScript    = "ERP5Site_getSyncGatewayChanges"
)

type route struct {
	path  string
	fixed url.Values
}

func (rt route) matchQuery(q url.Values) bool {
	for k, vs := range rt.fixed {
		if !slices.Equal(q[k], vs) {
			return false
		}
	}
	return true
}

type parsedRoutes struct {
	traverse, search, add, bulk route
	editPrefix, editSuffix      string
	editFixed                   url.Values
}

func parseRoute(s string) route {
	p, q, _ := strings.Cut(s, "?")
	v, _ := url.ParseQuery(q)
	return route{path: p, fixed: v}
}

func parseRoutes(r Routes) parsedRoutes {
	e := parseRoute(r.Edit)
	pre, suf, ok := strings.Cut(e.path, "{relative_url}")
	if !ok {
		panic("erp5sim: Routes.Edit lacks {relative_url}")
	}
	return parsedRoutes{
		traverse: parseRoute(r.Traverse), search: parseRoute(r.Search),
		add: parseRoute(r.Add), bulk: parseRoute(r.Bulk),
		editPrefix: pre, editSuffix: suf, editFixed: e.fixed,
	}
}

// route finds the endpoint of a request and, for Base_edit, the document's relative URL.
func (s *Server) route(r *http.Request) (Endpoint, string) {
	p := r.URL.Path
	if p == s.sitePath || p == s.sitePath+"/" {
		return EndpointRoot, ""
	}
	rel, ok := strings.CutPrefix(p, s.sitePath+"/")
	if !ok {
		return EndpointNotFound, ""
	}
	q := r.URL.Query()
	switch rel {
	case CapabilityScript:
		return EndpointCapability, ""
	case BatchScript:
		return EndpointBatch, ""
	case ResultsScript:
		return EndpointResults, ""
	case ChangesScript:
		return EndpointChanges, ""
	case FormsScript:
		return EndpointForms, ""
	}
	for _, c := range []struct {
		rt route
		ep Endpoint
	}{{s.routes.traverse, EndpointTraverse}, {s.routes.search, EndpointSearch}, {s.routes.add, EndpointAdd}, {s.routes.bulk, EndpointBulk}} {
		if rel == c.rt.path && c.rt.matchQuery(q) {
			return c.ep, ""
		}
	}
	if mid, ok := strings.CutPrefix(rel, s.routes.editPrefix); ok {
		if id, ok := strings.CutSuffix(mid, s.routes.editSuffix); ok && id != "" && (route{fixed: s.routes.editFixed}).matchQuery(q) {
			return EndpointEdit, id
		}
	}
	return EndpointNotFound, ""
}

// baseURL is the absolute URL of the site, without a trailing slash.
func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + s.sitePath
}

func (s *Server) href(r *http.Request, rt route) string {
	u := s.baseURL(r) + "/" + rt.path
	if len(rt.fixed) > 0 {
		u += "?" + rt.fixed.Encode()
	}
	return u
}

// template returns an RFC 6570 template for a route with the given variables.
func (s *Server) template(r *http.Request, rt route, vars string) string {
	op := "?"
	if len(rt.fixed) > 0 {
		op = "&"
	}
	return s.href(r, rt) + "{" + op + vars + "}"
}

func (s *Server) editHref(r *http.Request, id string) string {
	u := s.baseURL(r) + "/" + s.routes.editPrefix + id + s.routes.editSuffix
	if len(s.routes.editFixed) > 0 {
		u += "?" + s.routes.editFixed.Encode()
	}
	return u
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
