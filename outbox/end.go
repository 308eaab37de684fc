package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"sitesync.example/gateway"
)

// Ending an entry whose outcome ERP5 can no longer tell (docs/DESIGN.md §6, operator
// commands): an uncertain entry, or a held one that was sent, whose receiver is gone (stock
// mode now, or the receiver uninstalled) has no results query to settle it. The operator
// checks ERP5 and says what happened: applied (the entry is done) or lost (the write is
// queued again as a new entry — invariant 6: never the same key with another payload).

// uncertainError refuses an operator action on an uncertain entry, saying what settles it and
// how to end it when nothing can.
func uncertainError(e *Entry, action string) error {
	return gateway.ReasonErrorf(gateway.ECONFLICT, "state",
		"entry %d is uncertain (sent, outcome unknown) and cannot be %s: ERP5's results query settles it when the receiver answers; "+
			"if the receiver is gone, check the document at ERP5 and end it with `gateway outbox resolve %d --assume-applied|--assume-lost`",
		e.Seq, action, e.Seq)
}

// Resolvable reports whether an operator may end e by assumption: it was sent and its outcome
// is unknown (uncertain, or held after a send), or it is held because ERP5 holds another
// payload under its key (seq_reused: releasing it would only ask ERP5 again).
func Resolvable(e *Entry) bool {
	return e.State == StateUncertain || e.State == StateHeld && (e.Frozen() || strings.HasPrefix(e.HeldReason, "seq_reused"))
}

// checkResolvable returns the entry seq inside tx if it may be ended by assumption.
func checkResolvable(ctx context.Context, tx *sql.Tx, seq int64) (*Entry, error) {
	e, err := getForUpdate(ctx, tx, seq)
	if err != nil {
		return nil, err
	}
	if !Resolvable(e) {
		return nil, gateway.ReasonErrorf(gateway.ECONFLICT, "state",
			"entry %d is %s; only an uncertain entry, or a held one that was sent or answered seq_reused, can be resolved as applied or lost", seq, e.State)
	}
	return e, nil
}

// CheckResolvable returns entry seq if the operator may end it by assumption.
func CheckResolvable(ctx context.Context, tx *sql.Tx, seq int64) (*Entry, error) {
	return checkResolvable(ctx, tx, seq)
}

// AssumeLost ends entry seq (uncertain, or held after a send) as never applied: it becomes
// superseded by a new entry with the same write — new seq under the running epoch, the old
// order key (it keeps its place before its document's later entries), the same peer and write
// key (a receiver that did apply it answers the first result, applying nothing twice) — which
// is sent as any new entry. The replica keeps the write. It returns the new seq.
func AssumeLost(ctx context.Context, tx *sql.Tx, seq int64, running, siteID string, now time.Time) (int64, error) {
	e, err := checkResolvable(ctx, tx, seq)
	if err != nil {
		return 0, err
	}
	if running == "" {
		return 0, fmt.Errorf("outbox assume lost %d: no running epoch", seq)
	}
	n := &Entry{Op: e.Op, DocID: e.DocID, PortalType: e.PortalType, ParentID: e.ParentID, Fields: e.Fields, Base: e.Base,
		Transition: e.Transition, Comment: e.Comment, Peer: e.Peer, Key: e.Key, Epoch: running, SiteID: siteID,
		OrderKey: e.OrderKey, State: StatePending}
	if n.SiteID == "" {
		n.SiteID = e.SiteID
	}
	newSeq, err := Enqueue(ctx, tx, n, now)
	if err != nil {
		return 0, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE outbox SET state = 'superseded', open = 0, superseded_by = ?, held_reason = '',
		next_attempt_at = NULL, last_error = ?, updated_at = ? WHERE seq = ?`,
		newSeq, fmt.Sprintf("resolved by the operator: assumed lost, queued again as %d", newSeq), FormatTime(now), seq)
	if err != nil {
		return 0, fmt.Errorf("outbox assume lost %d: %w", seq, err)
	}
	return newSeq, nil
}

// RefusalError explains why an entry in its state cannot be acted on (action: "retried",
// "dropped"…) and what the operator can do instead; allowed names the states that can.
func RefusalError(e *Entry, action, allowed string) error {
	switch e.State {
	case StateUncertain:
		return uncertainError(e, action)
	case StateHeld:
		return gateway.ReasonErrorf(gateway.ECONFLICT, "state",
			"entry %d is held (%s) and cannot be %s: release it first (`gateway outbox release %d`)", e.Seq, heldWhy(e), action, e.Seq)
	case StateInflight:
		return gateway.ReasonErrorf(gateway.ECONFLICT, "state",
			"entry %d is being sent right now and cannot be %s; look again when its answer is in", e.Seq, action)
	}
	if IsFinal(e.State) {
		return gateway.ReasonErrorf(gateway.ECONFLICT, "state", "entry %d is %s: it has ended and cannot be %s", e.Seq, e.State, action)
	}
	return stateError(e, action, allowed)
}

func heldWhy(e *Entry) string {
	if e.HeldReason != "" {
		return e.HeldReason
	}
	return "held by operator"
}

// ReceiverGone reports whether e waits for a receiver that is gone: it was sent to ERP5's
// batch receiver, its outcome is unknown (uncertain, or held after the send), and the uplink
// runs in stock mode (uplinkMode "stock": no receiver answers, so no results query will ever
// settle it). The operator ends it with resolve --assume-applied|--assume-lost.
func ReceiverGone(e *Entry, uplinkMode string) bool {
	return uplinkMode == ModeStock && e.Mode == ModeBatch && Resolvable(e)
}
