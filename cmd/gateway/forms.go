package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/rpc"
	"sitesync.example/gateway/sqlite"
	"sitesync.example/gateway/upstream"
)

// formStore is upstream.FormStore over the database (the two packages' identical types are
// converted here, as for downlinkReplica).
type formStore struct {
	*sqlite.DB
}

var _ upstream.FormStore = formStore{}

func (f formStore) LearnedForms(ctx context.Context) ([]upstream.StoredForm, error) {
	rows, err := f.DB.LearnedForms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]upstream.StoredForm, len(rows))
	for i, r := range rows {
		out[i] = upstream.StoredForm(r)
	}
	return out, nil
}

func (f formStore) SetLearnedForms(ctx context.Context, forms []upstream.StoredForm) error {
	rows := make([]sqlite.LearnedForm, len(forms))
	for i, r := range forms {
		rows[i] = sqlite.LearnedForm(r)
	}
	return f.DB.SetLearnedForms(ctx, rows)
}

// relatedFromReplica gives the uplink the text and catalog uid of a related document from
// the replica (the stock downlink stores each document's uid), so a stock put of a relation
// names exactly that document.
func relatedFromReplica(db *sqlite.DB) func(ctx context.Context, id, index string) (upstream.Related, bool) {
	return func(ctx context.Context, id, index string) (upstream.Related, bool) {
		doc, err := db.GetDocument(ctx, id)
		if err != nil {
			return upstream.Related{}, false
		}
		body, err := sqlite.DecodeObject(doc.Body)
		if err != nil {
			return upstream.Related{}, false
		}
		text, _ := body[index].(string)
		uid := ""
		switch v := body["uid"].(type) {
		case string:
			uid = v
		case interface{ String() string }:
			uid = v.String()
		}
		return upstream.Related{Text: text, UID: uid}, uid != ""
	}
}

// upstreamMode names the uplink's mode as describe and status report it.
func upstreamMode(mode string) string {
	switch mode {
	case upstream.ModeBatch:
		return rpc.UpstreamReceiver
	case upstream.ModeStock:
		return rpc.UpstreamStock
	}
	return rpc.UpstreamUnknown
}

// formsLines takes an export's forms records (a line starting {"forms":) out of a JSON Lines
// stream, replacing each by a blank line (the import skips blank lines, so line numbers
// stay right), and hands them to take.
type formsLines struct {
	br   *bufio.Reader
	take func(line []byte) error
	buf  []byte
	err  error
}

func newFormsLines(r io.Reader, take func(line []byte) error) *formsLines {
	return &formsLines{br: bufio.NewReaderSize(r, 1<<16), take: take}
}

func (f *formsLines) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		line, err := f.br.ReadBytes('\n')
		if t := bytes.TrimSpace(line); bytes.HasPrefix(t, []byte(`{"forms"`)) {
			if terr := f.take(t); terr != nil {
				return 0, terr
			}
			line = []byte("\n")
		}
		f.buf, f.err = line, err
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// formsImporter collects an export's forms records and stores them after the import.
type formsImporter struct {
	now   time.Time
	forms []upstream.StoredForm
}

func (fi *formsImporter) take(line []byte) error {
	rows, err := upstream.ParseFormsExport(line, fi.now)
	if err != nil {
		return gateway.Errorf(gateway.EINVALID, "%v", err)
	}
	fi.forms = append(fi.forms, rows...)
	return nil
}

// store saves the collected forms.
func (fi *formsImporter) store(ctx context.Context, db *sqlite.DB) error {
	if len(fi.forms) == 0 {
		return nil
	}
	return formStore{db}.SetLearnedForms(ctx, fi.forms)
}
