package upstream

import (
	"encoding/json"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/query"
)

// CursorSeeder sets the scopes' cursors from an offline import (`gateway docs import
// --set-cursors`), so that the first sync after seeding a site from an ERP5 export fetches
// only what changed since the export. It watches the import's records: a record counts for
// every scope whose portal type it has and whose query its document matches, with its
// "modification_date" (else its "version"). Each scope's cursor is then the greatest
// (modification date, id) of its records, marked complete (the export is taken as the whole
// scope: a document of it the replica lacks is not at ERP5 either) and fresh as of that
// date.
//
// ERP5's receiver cursor is opaque and cannot be derived from an export: it is left empty.
// With the receiver, the first changes query then asks only for documents modified since
// the seeded date less the overlap window (the date is ANDed with the scope's query), and
// keeps that condition for the life of the cursor; in stock mode the search starts there.
// A scope without any dated record gets no cursor: its first sync pulls it whole.
type CursorSeeder struct {
	scopes   []*seedScope
	dateKeys []string
}

type seedScope struct {
	Scope
	def   string
	query query.Query
	date  time.Time
	id    string
	count int
}

// NewCursorSeeder returns a seeder for scopes; dateKeys are the keys the scopes' queries
// compare as dates (query.date_keys).
func NewCursorSeeder(scopes []Scope, dateKeys []string) (*CursorSeeder, error) {
	s := &CursorSeeder{dateKeys: dateKeys}
	for _, sc := range scopes {
		if err := sc.Validate(); err != nil {
			return nil, err
		}
		q, _ := query.Parse(sc.Query)
		s.scopes = append(s.scopes, &seedScope{Scope: sc, def: sc.definition(), query: q})
	}
	return s, nil
}

// Observe takes one imported record: its id, portal type, document and the optional
// "version" and "modification_date" of its line.
func (s *CursorSeeder) Observe(id, portalType string, doc json.RawMessage, version, modificationDate string) error {
	date := modificationDate
	if date == "" {
		date = version
	}
	t, ok := parseERP5Date(date)
	if date != "" && !ok {
		return gateway.Errorf(gateway.EINVALID, "%s: unreadable modification_date %q", id, date)
	}
	var body map[string]any
	for _, sc := range s.scopes {
		if sc.PortalType != portalType {
			continue
		}
		if sc.query != nil {
			if body == nil {
				var err error
				if body, err = outbox.DecodeObject(doc); err != nil {
					return gateway.Errorf(gateway.EINVALID, "%s: the document is not a JSON object", id)
				}
			}
			if !query.Match(sc.query, body, s.dateKeys) {
				continue
			}
		}
		sc.count++
		if !ok {
			continue
		}
		t = t.Truncate(time.Second)
		if c := t.Compare(sc.date); c > 0 || c == 0 && id > sc.id {
			sc.date, sc.id = t, id
		}
	}
	return nil
}

// SeedStats is what the seeder saw of one scope.
type SeedStats struct {
	Scope string `json:"scope"`
	// Records counts the records in the scope; Position is its greatest (modification date,
	// id), "" when none was dated (the scope gets no cursor).
	Records  int    `json:"records"`
	Position string `json:"position,omitempty"`
}

// Stats returns what the seeder saw, per scope.
func (s *CursorSeeder) Stats() []SeedStats {
	out := make([]SeedStats, 0, len(s.scopes))
	for _, sc := range s.scopes {
		st := SeedStats{Scope: sc.Name, Records: sc.count}
		if sc.id != "" {
			st.Position = formatRFC822(sc.date) + " " + sc.id
		}
		out = append(out, st)
	}
	return out
}

// Cursors returns the cursors to store (Replica.SetSyncCursors), for the scopes that saw a
// dated record.
func (s *CursorSeeder) Cursors() []ScopeCursor {
	var out []ScopeCursor
	for _, sc := range s.scopes {
		if sc.id == "" {
			continue
		}
		pos := position{Def: sc.def, Date: formatRFC822(sc.date), ID: sc.id,
			AsOf: sc.date.UTC().Format(time.RFC3339Nano)}
		out = append(out, ScopeCursor{Scope: sc.Name, Cursor: pos.text(), Complete: true, FreshAt: sc.date})
	}
	return out
}
