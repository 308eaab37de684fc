package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

func init() { register(newDocsCommand) }

// docsSubcommands are further `gateway docs` subcommands, added by other files from their
// init functions: docsSubcommands = append(docsSubcommands, newDocsPutCommand).
var docsSubcommands []func(m *Main) *cobra.Command

// newDocsCommand builds `gateway docs`, the operator's shell onto the replica (docs/DESIGN.md §9).
func newDocsCommand(m *Main) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "docs",
		Short: "Read, query, import and export the replica's documents",
		Long: `Work on the replica's documents directly in the database file. Reads (get, query,
export) see what the gateway serves; import seeds the replica, offline, from an ERP5 export.`,
	}
	cmd.AddCommand(newDocsGetCommand(m), newDocsQueryCommand(m), newDocsImportCommand(m), newDocsExportCommand(m))
	for _, f := range docsSubcommands {
		cmd.AddCommand(f(m))
	}
	return cmd
}

func newDocsGetCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Print a document's JSON body",
		Long: `Print the body of the live document ID (a relative URL) exactly as stored, on one
line. A local id the gateway handed out finds the document under the ERP5 id it became.`,
		Example: `  gateway docs get person_module/20`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			db, err := m.OpenDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			d, err := db.GetDocument(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(m.Stdout, "%s\n", d.Body)
			return err
		},
	}
}

// docsQueryFlags are the options of `docs query`.
type docsQueryFlags struct {
	sortOn      []string
	limit       string
	selectList  []string
	includeDocs bool
	dateKeys    []string
	output      string
}

func newDocsQueryCommand(m *Main) *cobra.Command {
	var f docsQueryFlags
	cmd := &cobra.Command{
		Use:   "query [QUERY...]",
		Short: "Run a jIO query over the replica",
		Long: `Run an allDocs query over the replica's live documents, as the gateway answers a
browser (without a role's scope). The arguments are joined with spaces into one jIO query
(docs/DESIGN.md appendix D); none lists every document, in the order they were first stored.

-o table (the default) prints the ids and the selected fields; -o json prints exactly
{"total_rows": N, "rows": [{"id": …, "value": {…}, "doc": {…}}]}, where total_rows counts the
matches before --limit and doc comes with --include-docs.`,
		Example: `  gateway docs query 'portal_type:"Person" AND title:%dupont%' --select title,email
  gateway docs query portal_type:Person --sort-on modification_date:descending --limit 20 -o json
  gateway docs query 'start_date:>="2024-05"' --date-key start_date --include-docs`,
		RunE: func(cmd *cobra.Command, a []string) error {
			q, opts, err := f.parse(m, cmd, a)
			if err != nil {
				return err
			}
			db, err := m.OpenDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := db.Query(cmd.Context(), q, opts)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return writeQueryJSON(m.Stdout, res)
			}
			return writeQueryTable(m.Stdout, res, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.sortOn, "sort-on", nil, "sort by `KEY[:ascending|descending]` (repeat for ties)")
	fl.StringVar(&f.limit, "limit", "", "at most `N` rows, or SKIP,N: skip SKIP rows then at most N (N 0: no cap)")
	fl.StringSliceVar(&f.selectList, "select", nil, "show these fields (`F1,F2`) in each row's value")
	fl.BoolVar(&f.includeDocs, "include-docs", false, "include each document's body")
	fl.StringArrayVar(&f.dateKeys, "date-key", nil, "also compare and sort `KEY` as a date (adds to query.date_keys)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	return cmd
}

// parse checks the flags and the query; its errors are usage errors.
func (f *docsQueryFlags) parse(m *Main, cmd *cobra.Command, a []string) (query.Query, query.Options, error) {
	var opts query.Options
	if f.output != "table" && f.output != "json" {
		return nil, opts, usagef("-o %q: want table or json", f.output)
	}
	q, err := parseQueryArgs(a)
	if err != nil {
		return nil, opts, err
	}
	for _, s := range f.sortOn {
		key, dir, ok := cutLast(s, ":")
		if !ok {
			key, dir = s, "ascending"
		}
		if dir != "ascending" && dir != "descending" {
			return nil, opts, usagef("--sort-on %q: the direction must be ascending or descending", s)
		}
		if key == "" {
			return nil, opts, usagef("--sort-on %q: no key", s)
		}
		opts.SortOn = append(opts.SortOn, query.SortKey{Key: key, Descending: dir == "descending"})
	}
	if f.limit != "" {
		if opts.Skip, opts.Count, err = parseLimit(f.limit); err != nil {
			return nil, opts, err
		}
	}
	if cmd.Flags().Changed("select") {
		opts.SelectList = append([]string{}, f.selectList...)
	}
	opts.IncludeDocs = f.includeDocs
	opts.DateKeys = dateKeys(m, f.dateKeys)
	return q, opts, nil
}

// dateKeys returns the configuration's date keys plus extra ones.
func dateKeys(m *Main, extra []string) []string {
	keys := slices.Clone(m.Config.Query.DateKeys)
	for _, k := range extra {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	m.Config.Query.DateKeys = keys
	return keys
}

// parseQueryArgs parses the arguments, joined with spaces, as one jIO query; none is nil
// (every document).
func parseQueryArgs(a []string) (query.Query, error) {
	s := strings.TrimSpace(strings.Join(a, " "))
	if s == "" {
		return nil, nil
	}
	q, err := query.Parse(s)
	if err != nil {
		return nil, usagef("parse query: %v", err)
	}
	return q, nil
}

// cutLast splits s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// parseLimit reads --limit N (count N) or --limit SKIP,N.
func parseLimit(s string) (skip, count int, err error) {
	num := func(x string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil || n < 0 {
			return 0, usagef("--limit %q: want N or SKIP,N with whole numbers", s)
		}
		return n, nil
	}
	if a, b, ok := strings.Cut(s, ","); ok {
		if skip, err = num(a); err != nil {
			return 0, 0, err
		}
		count, err = num(b)
		return skip, count, err
	}
	count, err = num(s)
	return 0, count, err
}

// writeQueryJSON prints {"total_rows": N, "rows": [{"id": …, "value": {…}, "doc": {…}}]},
// values and docs as stored.
func writeQueryJSON(w io.Writer, res *sqlite.QueryResult) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"total_rows": %d, "rows": [`, res.TotalRows)
	for i, r := range res.Rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`{"id": `)
		writeJSONString(&b, r.ID)
		b.WriteString(`, "value": `)
		b.Write(r.Value)
		if r.Doc != nil {
			b.WriteString(`, "doc": `)
			b.Write(r.Doc)
		}
		b.WriteByte('}')
	}
	b.WriteString("]}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// writeJSONString writes s as a JSON string without HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	b.Truncate(b.Len() - 1)
}

// writeQueryTable prints one line per row: the id, the selected fields (strings bare, other
// values as JSON) and, with include_docs, the body; then a count.
func writeQueryTable(w io.Writer, res *sqlite.QueryResult, opts query.Options) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var keys []string
	for _, k := range opts.SelectList {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	header := append([]string{"ID"}, keys...)
	if opts.IncludeDocs {
		header = append(header, "DOC")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range res.Rows {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r.Value, &fields); err != nil {
			return fmt.Errorf("row %s: %w", r.ID, err)
		}
		line := []string{r.ID}
		for _, k := range keys {
			line = append(line, cell(fields[k]))
		}
		if opts.IncludeDocs {
			line = append(line, string(r.Doc))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "(%d of %d rows)\n", len(res.Rows), res.TotalRows)
	return err
}

// cell shows a JSON value in a table: a string bare (tabs and newlines as spaces), anything
// else as its JSON text, a missing value empty.
func cell(raw json.RawMessage) string {
	if raw == nil {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, s)
	}
	return string(raw)
}

func newDocsImportCommand(m *Main) *cobra.Command {
	var chunk int
	var enqueue, setCursors bool
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Seed the replica from JSON Lines or a JSON array of documents",
		Long: `Store documents in the replica from FILE (or standard input for -): JSON Lines, or
one JSON array, of records {"id": RELATIVE_URL, "doc": {…}}, optionally with "version" (ERP5's
version of the document: doc is then taken as its last known ERP5 state) and
"modification_date". A record whose id exists replaces that document. The import only seeds
the replica: nothing is queued for ERP5, unless --enqueue: then each record is also queued as a
write (a local id as a post, any other id as a put of all its fields), for data entered
offline elsewhere that ERP5 has never seen.

With --set-cursors the import seeds a new site from an ERP5 export carried by hand: each
record's doc is ERP5's state, "version" is ERP5's modification time at full precision and
"modification_date" (RFC 822 or ISO 8601) its date; a line {"forms": {"types": […]}} (the
answer of the receiver's forms request) carries ERP5's view forms and workflows, which are
learned as the downlink would learn them; every scope of upstream.scopes is marked
complete, positioned at its newest record, so the first sync over the satellite fetches only
what changed since the export. A scope without a dated record is not positioned.

Everything is stored in one transaction, so a bad record (reported with its line number)
leaves the replica as it was; --chunk N commits every N documents instead, keeping the chunks
before a failure. A running gateway's writes wait while a transaction is open, so chunks also
let it breathe during a long import. Progress goes to standard error.`,
		Example: `  gateway docs import erp5-export.jsonl
  zcat export.jsonl.gz | gateway docs import - --chunk 10000`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if chunk < 0 {
				return usagef("--chunk %d: want 0 (one transaction) or more", chunk)
			}
			if setCursors && enqueue {
				return usagef("--set-cursors seeds ERP5's own state; it does not go with --enqueue")
			}
			var seeder *upstream.CursorSeeder
			if setCursors {
				var err error
				if seeder, err = upstream.NewCursorSeeder(m.scopes(), dateKeys(m, nil)); err != nil {
					return err
				}
			}
			var r io.Reader = m.Stdin
			if a[0] != "-" {
				f, err := os.Open(a[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			open := m.CreateDB
			if enqueue {
				open = m.openWriteDB
			}
			db, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			opts := sqlite.ImportOptions{Chunk: chunk}
			if enqueue {
				opts.Enqueue = db.EnqueueImported
			}
			if seeder != nil {
				opts.Enqueue = func(_ context.Context, _ *sql.Tx, rec sqlite.ImportRecord) error {
					return seeder.Observe(rec.ID, rec.PortalType, rec.Doc, rec.Version, rec.ModificationDate)
				}
			}
			var forms *formsImporter
			if seeder != nil {
				// An export may carry ERP5's forms (a {"forms": …} line): they are learned too.
				forms = &formsImporter{now: time.Now()}
				r = newFormsLines(r, forms.take)
			}
			start := time.Now()
			rate := func(n int) float64 { return float64(n) / max(time.Since(start).Seconds(), 1e-9) }
			// Progress while it runs; the summary below is the one final line (Import's last
			// Progress call, after the last document, would repeat it).
			opts.Progress = func(s sqlite.ImportStats) {
				if s.Documents%sqlite.DefaultProgressEvery == 0 {
					fmt.Fprintf(m.Stderr, "importing: %d documents so far (%d committed, %.0f/s)\n", s.Documents, s.Committed, rate(s.Documents))
				}
			}
			st, err := db.Import(cmd.Context(), r, opts)
			if err == nil && enqueue {
				m.wakeServe(cmd.Context())
			}
			if err == nil && seeder != nil {
				if err = forms.store(cmd.Context(), db); err == nil && len(forms.forms) > 0 {
					fmt.Fprintf(m.Stdout, "learned the forms of %d portal types\n", len(forms.forms))
				}
			}
			if err == nil && seeder != nil {
				if err = db.SetSyncCursors(cmd.Context(), toSyncCursors(seeder.Cursors())); err == nil {
					for _, ss := range seeder.Stats() {
						fmt.Fprintf(m.Stdout, "scope %s: %d documents, position %s\n", ss.Scope, ss.Records, cmp.Or(ss.Position, "none (no dated record)"))
					}
				}
			}
			if err != nil {
				if st.Committed > 0 {
					fmt.Fprintf(m.Stderr, "%d documents were committed before the error\n", st.Committed)
				}
				return fmt.Errorf("import %s: %w", a[0], err)
			}
			_, err = fmt.Fprintf(m.Stdout, "imported %d documents (%d new, %d replaced) in %s (%.0f/s)\n",
				st.Documents, st.Created, st.Replaced, time.Since(start).Round(time.Millisecond), rate(st.Documents))
			return err
		},
	}
	cmd.Flags().IntVar(&chunk, "chunk", 0, "commit every `N` documents (0: all or nothing)")
	cmd.Flags().BoolVar(&setCursors, "set-cursors", false, "the records are an ERP5 export: position the downlink's scopes after them")
	cmd.Flags().BoolVar(&enqueue, "enqueue", false, "also queue every record for ERP5 (default: seed the replica only)")
	return cmd
}

func newDocsExportCommand(m *Main) *cobra.Command {
	var extraDateKeys []string
	cmd := &cobra.Command{
		Use:   "export [QUERY...]",
		Short: "Print documents as JSON Lines that docs import reads back",
		Long: `Print the replica's live documents matching QUERY (all without one), in the order
they were first stored, one record {"id": …, "doc": {…}} per line, with "version" when the
document is as ERP5 last sent it.`,
		Example: `  gateway docs export > replica.jsonl
  gateway docs export 'portal_type:"Sale Order"' | gzip > orders.jsonl.gz`,
		RunE: func(cmd *cobra.Command, a []string) error {
			q, err := parseQueryArgs(a)
			if err != nil {
				return err
			}
			db, err := m.OpenDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.Export(cmd.Context(), m.Stdout, q, dateKeys(m, extraDateKeys))
			return err
		},
	}
	cmd.Flags().StringArrayVar(&extraDateKeys, "date-key", nil, "also compare `KEY` as a date (adds to query.date_keys)")
	return cmd
}
