package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// obWaits reports whether e's next attempt means anything: only a pending or deferred entry
// waits for a try (a held, uncertain, dead or conflict one shows none).
func obWaits(e *outbox.Entry) bool {
	return e.State == outbox.StatePending || e.State == outbox.StateDeferred
}

// obNextTry is the NEXT-TRY column.
func obNextTry(e *outbox.Entry, now time.Time) string {
	if e.NextAttemptAt.IsZero() || !obWaits(e) {
		return "-"
	}
	if d := e.NextAttemptAt.Sub(now); d > 0 {
		return "in " + obAge(d)
	}
	return "now"
}

// receiverGoneNote is what an entry whose receiver is gone shows.
func receiverGoneNote(seq int64) string {
	return fmt.Sprintf("the receiver is gone: check at ERP5, then `outbox resolve %d --assume-applied|--assume-lost`", seq)
}

// entryNote is the LAST-ERROR column: a held entry's reason beside its last error, and what to
// do with an entry whose receiver is gone (uplinkMode is the uplink's mode as last recorded).
func entryNote(e *outbox.Entry, uplinkMode string) string {
	note := e.LastError
	if e.State == outbox.StateHeld {
		why := e.HeldReason
		if why == "" {
			why = "held by operator"
		}
		if note != "" && note != why {
			note = why + "; last error: " + note
		} else {
			note = why
		}
	}
	if outbox.ReceiverGone(e, uplinkMode) {
		note = receiverGoneNote(e.Seq) + "; " + note
	}
	return note
}

// uplinkMode returns the uplink's mode as the running serve or its last recorded status says
// ("" when unknown).
func (m *Main) uplinkMode(ctx context.Context, db *sqlite.DB) string {
	raw, err := db.Meta(ctx, MetaUplinkStatus)
	if err != nil || raw == "" {
		return ""
	}
	var saved savedStatus
	if json.Unmarshal([]byte(raw), &saved) != nil {
		return ""
	}
	return saved.Status.Mode
}

// resolveAssumed ends entry seq as applied or lost, after a warning and (unless yes) the
// operator's confirmation.
func (m *Main) resolveAssumed(ctx context.Context, seq int64, assume, erp5ID string, yes bool) error {
	db, err := m.openWriteDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	e, err := db.OutboxEntry(ctx, seq)
	if err != nil {
		return err
	}
	if !outbox.Resolvable(e) {
		return fmt.Errorf("resolve %d: entry is %s; only an uncertain entry, or a held one that was sent, can be resolved as applied or lost", seq, e.State)
	}
	fmt.Fprintf(m.Stdout, "entry %d (%s, %s %s, %d attempts, %s mode): %s\n", e.Seq, e.State, e.Op, e.DocID, e.Attempts,
		obDash(e.Mode), obDash(obOneLine(e.LastError)))
	fmt.Fprintf(m.Stdout, "WARNING: this entry was sent and ERP5 may hold it; nothing will ask ERP5 again. Check %s at ERP5 first.\n", e.DocID)
	switch assume {
	case sqlite.AssumeApplied:
		fmt.Fprintln(m.Stdout, "Assumed applied: the entry ends as done; the replica keeps the write.")
	case sqlite.AssumeLost:
		fmt.Fprintln(m.Stdout, "Assumed lost: the same write is queued again as a new entry (it is sent again); the replica keeps it.")
	}
	if !yes && !m.askYes(fmt.Sprintf("Resolve entry %d as %s?", seq, assume)) {
		return errOutboxNotConfirmed
	}
	res, err := db.ResolveAssumed(ctx, seq, assume, erp5ID, operatorActor())
	if err != nil {
		return err
	}
	if res.NewSeq != 0 {
		fmt.Fprintf(m.Stdout, "entry %d: assumed lost, queued again as entry %d; %s\n", seq, res.NewSeq, m.serveNote(ctx))
	} else {
		fmt.Fprintf(m.Stdout, "entry %d: assumed applied, done\n", seq)
	}
	return nil
}

// receiverGoneSeqs returns the entries whose receiver is gone while the uplink runs in mode
// (none unless mode is stock), at most 1,000.
func receiverGoneSeqs(ctx context.Context, db *sqlite.DB, mode string) ([]int64, error) {
	if mode != outbox.ModeStock {
		return nil, nil
	}
	list, _, err := db.OutboxList(ctx, outbox.Filter{States: []string{outbox.StateUncertain, outbox.StateHeld}, Limit: 1000})
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, e := range list {
		if outbox.ReceiverGone(e, mode) {
			out = append(out, e.Seq)
		}
	}
	return out, nil
}
