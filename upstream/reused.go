package upstream

import (
	"encoding/json"
	"fmt"

	"sitesync.example/gateway/outbox"
)

// checkStoredHashes turns every stored result of a results query that belongs to another
// payload into seq_reused (docs/DESIGN.md §6, Identity), so that it is never "done":
// settleResults holds the entry, pauses the uplink and raises the alarm; what ERP5 holds is
// kept in the entry's answer for the operator.
//
// An entry that was sent is frozen: ERP5 holding another hash under its key holds another
// payload. An entry never sent from this database (a backup or a copy taken before its send)
// has no bytes to compare for sure: the same write may have reached ERP5 folded into a merged
// entry, whose hash ERP5 stores for every seq it covers. Its hash is the one its claim would
// give it; when ERP5's differs, the answer is another write's only when it names another
// document (a merge folds one document's writes) or, for a create, another portal type.
// A receiver that returns no hash cannot be checked; its result is taken as it is.
func checkStoredHashes(rows map[int64]*outbox.Entry, res []Result) []Result {
	out := make([]Result, len(res))
	for i, r := range res {
		out[i] = r
		e := rows[r.Seq]
		if e == nil || r.Hash == "" {
			continue
		}
		switch r.Status {
		case StatusOK, StatusConflict, StatusRejected:
		default:
			continue
		}
		own := e.Hash
		if !e.Frozen() {
			if c, err := outbox.Canonical(e); err == nil {
				own = outbox.Hash(c)
			}
		}
		if r.Hash == own || (e.Hash != "" && r.Hash == e.Hash) {
			continue
		}
		if !e.Frozen() && !otherWrite(e, r) {
			continue // possibly folded into a merged entry of the same document
		}
		raw := r.Raw
		if len(raw) == 0 {
			raw, _ = json.Marshal(r)
		}
		out[i] = Result{Seq: r.Seq, Status: StatusSeqReused,
			Reason: fmt.Sprintf("seq_reused: ERP5 holds another payload under this key (hash %.12s…, this entry's %.12s…)", r.Hash, own),
			Raw:    json.RawMessage(fmt.Sprintf(`{"status":"seq_reused","erp5_holds":%s}`, raw))}
	}
	return out
}

// otherWrite reports whether a stored result r certainly belongs to a write other than e:
// it names another document, or (e a create, whose document ERP5 numbers) another portal
// type.
func otherWrite(e *outbox.Entry, r Result) bool {
	if e.Op != outbox.OpPost {
		// A local id (a document created here) may have been numbered by ERP5 since.
		return r.ID != "" && r.ID != e.DocID && !outbox.IsLocalID(e.DocID)
	}
	var st struct {
		PortalType string `json:"portal_type"`
	}
	if len(r.State) > 0 && json.Unmarshal(r.State, &st) == nil && st.PortalType != "" {
		return st.PortalType != e.PortalType
	}
	return false
}
