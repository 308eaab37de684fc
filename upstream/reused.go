package upstream

import (
	"encoding/json"
	"fmt"

	"sitesync.example/gateway/outbox"
)

// checkStoredHashes turns every stored result of a results query that belongs to another
// payload into seq_reused (docs/DESIGN.md §6, Identity): ERP5 holds a result under the
// (epoch, seq) of rows, and the hash ERP5 stored differs from the row's own (for a row never
// claimed here, the hash its claim would give it). Such an answer is
// never "done": settleResults holds the entry, pauses the uplink and raises the alarm. What
// ERP5 holds is kept in the entry's answer for the operator. A receiver that returns no
// hash cannot be checked for a row that was sent; its result is taken as it is.
func checkStoredHashes(rows map[int64]*outbox.Entry, res []Result) []Result {
	out := make([]Result, len(res))
	for i, r := range res {
		out[i] = r
		e := rows[r.Seq]
		if e == nil {
			continue
		}
		switch r.Status {
		case StatusOK, StatusConflict, StatusRejected:
		default:
			continue
		}
		own := e.Hash
		if own == "" {
			// Never claimed here (a database file copied back from before its send): the
			// hash its claim gives it.
			if c, err := outbox.Canonical(e); err == nil {
				own = outbox.Hash(c)
			}
		}
		var why string
		switch {
		case r.Hash == "" && e.Hash == "":
			why = "ERP5 holds a result under this key, but this entry was never sent and ERP5 gave no hash to compare"
		case r.Hash != "" && r.Hash != own:
			why = fmt.Sprintf("ERP5 holds another payload under this key (hash %.12s…, this entry's %.12s…)", r.Hash, own)
		default:
			continue
		}
		raw := r.Raw
		if len(raw) == 0 {
			raw, _ = json.Marshal(r)
		}
		out[i] = Result{Seq: r.Seq, Status: StatusSeqReused, Reason: "seq_reused: " + why,
			Raw: json.RawMessage(fmt.Sprintf(`{"status":"seq_reused","erp5_holds":%s}`, raw))}
	}
	return out
}
