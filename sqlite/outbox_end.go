package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
)

// Assumptions an operator can make about an entry whose outcome ERP5 cannot tell anymore.
const (
	AssumeApplied = "applied"
	AssumeLost    = "lost"
)

// Resolved is what ResolveAssumed did.
type Resolved struct {
	// Entry is the entry as it was.
	Entry *outbox.Entry
	// NewSeq is the entry queued again (assumed lost).
	NewSeq int64
}

// ResolveAssumed ends entry seq — uncertain, or held after a send — by the operator's word
// when no results query can settle it (the receiver is gone, or stock mode): assumed applied,
// it is done as if ERP5 had answered ok (a post needs the id ERP5 gave its document, which
// renames the local document as an answer would); assumed lost, it is superseded by a new
// entry with the same write, queued under the running epoch in its place (invariant 6), and
// the replica keeps the write. An audit line records the assumption with the entry.
func (db *DB) ResolveAssumed(ctx context.Context, seq int64, assume, erp5ID, actor string) (*Resolved, error) {
	var e *outbox.Entry
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		e, err = outbox.CheckResolvable(ctx, tx, seq)
		return err
	})
	if err != nil {
		return nil, err
	}
	canon, _ := outbox.Canonical(e)
	res := &Resolved{Entry: e}
	switch assume {
	case AssumeLost:
		err = db.writeTx(ctx, func(tx *sql.Tx) error {
			now := db.Now()
			running, err := epochTx(ctx, tx, now)
			if err != nil {
				return err
			}
			if res.NewSeq, err = outbox.AssumeLost(ctx, tx, seq, running, db.SiteID, now); err != nil {
				return err
			}
			return auditTx(ctx, tx, now, actor, "resolve", fmt.Sprintf("entry %d (%s, %s %s) assumed lost: queued again as %d; was %s",
				seq, e.State, e.Op, e.DocID, res.NewSeq, canon))
		})
		return res, err
	case AssumeApplied:
		id := e.DocID
		if e.Op == outbox.OpPost {
			if erp5ID == "" || outbox.IsLocalID(erp5ID) {
				return nil, gateway.Errorf(gateway.EINVALID,
					"entry %d is a post: to assume it applied, give the id ERP5 gave the document (--id module/N); or assume it lost", seq)
			}
			id = erp5ID
		} else if erp5ID != "" && erp5ID != e.DocID {
			return nil, gateway.Errorf(gateway.EINVALID, "--id is for a post; entry %d is a %s of %s", seq, e.Op, e.DocID)
		}
		raw, _ := json.Marshal(map[string]any{"seq": seq, "status": outbox.ResultOK, "id": id, "assumed": "applied", "by": actor})
		rep, err := db.Settle(ctx, []outbox.Result{{Seq: seq, Status: outbox.ResultOK, ID: id, Raw: raw}})
		if err != nil {
			return nil, err
		}
		if len(rep.Settled) != 1 || rep.Settled[0].State != outbox.StateDone {
			return nil, gateway.ReasonErrorf(gateway.ECONFLICT, "state", "entry %d changed meanwhile; look at it again", seq)
		}
		err = db.writeTx(ctx, func(tx *sql.Tx) error {
			now := db.Now()
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET last_error = ?, held_reason = '', updated_at = ? WHERE seq = ?`,
				"resolved by the operator: assumed applied", FormatTime(now), seq); err != nil {
				return err
			}
			return auditTx(ctx, tx, now, actor, "resolve", fmt.Sprintf("entry %d (%s, %s %s) assumed applied at ERP5 as %s; was %s",
				seq, e.State, e.Op, e.DocID, id, canon))
		})
		return res, err
	}
	return nil, gateway.Errorf(gateway.EINVALID, "assume %q: want applied or lost", assume)
}
