package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"sitesync.example/gateway/outbox"
)

// LearnedForm is one row of learned_forms: what the downlink learned of a portal type's view
// form and workflow (docs/DESIGN.md §3, describe).
type LearnedForm struct {
	PortalType string
	// Form and Workflow are JSON objects, nil when none is known.
	Form, Workflow json.RawMessage
	// Hash identifies Form and Workflow (hex SHA-256).
	Hash string
	// Tag is ERP5's identification of its answer, sent back on the next refresh.
	Tag string
	// LearnedAt is when Hash last changed; CheckedAt when ERP5 was last asked. A zero
	// LearnedAt keeps the stored one when the hash is unchanged.
	LearnedAt, CheckedAt time.Time
}

// LearnedForms returns every learned portal type, sorted by name.
func (db *DB) LearnedForms(ctx context.Context) ([]LearnedForm, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT portal_type, form, workflow, hash, tag, learned_at, checked_at
		FROM learned_forms ORDER BY portal_type`)
	if err != nil {
		return nil, fmt.Errorf("learned forms: %w", err)
	}
	defer rows.Close()
	var out []LearnedForm
	for rows.Next() {
		var f LearnedForm
		var form, wf sql.NullString
		var learned, checked string
		if err := rows.Scan(&f.PortalType, &form, &wf, &f.Hash, &f.Tag, &learned, &checked); err != nil {
			return nil, fmt.Errorf("learned forms: %w", err)
		}
		if form.Valid {
			f.Form = json.RawMessage(form.String)
		}
		if wf.Valid {
			f.Workflow = json.RawMessage(wf.String)
		}
		f.LearnedAt, _ = ParseTime(learned)
		f.CheckedAt, _ = ParseTime(checked)
		out = append(out, f)
	}
	return out, rows.Err()
}

// SetLearnedForms stores learned portal types in one transaction. A row whose hash is
// unchanged keeps its learned_at and form, and takes the new tag and checked_at.
func (db *DB) SetLearnedForms(ctx context.Context, forms []LearnedForm) error {
	for _, f := range forms {
		if f.PortalType == "" || f.Hash == "" {
			return fmt.Errorf("set learned forms: a row without portal type or hash")
		}
		for _, raw := range []json.RawMessage{f.Form, f.Workflow} {
			if raw != nil && !json.Valid(raw) {
				return fmt.Errorf("set learned forms %s: the form or workflow is not JSON", f.PortalType)
			}
		}
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.Now()
		for _, f := range forms {
			learned, checked := f.LearnedAt, f.CheckedAt
			if learned.IsZero() {
				learned = now
			}
			if checked.IsZero() {
				checked = now
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO learned_forms (portal_type, form, workflow, hash, tag, learned_at, checked_at)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
				ON CONFLICT (portal_type) DO UPDATE SET
					form = CASE WHEN learned_forms.hash = excluded.hash THEN learned_forms.form ELSE excluded.form END,
					workflow = CASE WHEN learned_forms.hash = excluded.hash THEN learned_forms.workflow ELSE excluded.workflow END,
					learned_at = CASE WHEN learned_forms.hash = excluded.hash THEN learned_forms.learned_at ELSE excluded.learned_at END,
					hash = excluded.hash, tag = excluded.tag, checked_at = excluded.checked_at`,
				f.PortalType, nullJSON(f.Form), nullJSON(f.Workflow), f.Hash, f.Tag, FormatTime(learned), FormatTime(checked))
			if err != nil {
				return fmt.Errorf("set learned form %s: %w", f.PortalType, FormatError(err))
			}
		}
		return nil
	})
}

func nullJSON(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// FormsHash identifies every learned form and workflow at once (describe's and status's
// forms_hash): it changes whenever one of them does; "" when nothing is learned.
func (db *DB) FormsHash(ctx context.Context) (string, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT portal_type, hash FROM learned_forms ORDER BY portal_type`)
	if err != nil {
		return "", fmt.Errorf("forms hash: %w", err)
	}
	defer rows.Close()
	h := sha256.New()
	n := 0
	for rows.Next() {
		var pt, hash string
		if err := rows.Scan(&pt, &hash); err != nil {
			return "", fmt.Errorf("forms hash: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%s\n", pt, hash)
		n++
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("forms hash: %w", err)
	}
	if n == 0 {
		return "", nil
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// StateSamples returns, for a portal type, the smallest id of the replica's documents known
// to ERP5 for each value of stateField (a missing state is ""); with stateField "" one
// document under key "". The downlink traverses them to learn each state's transitions.
func (db *DB) StateSamples(ctx context.Context, portalType, stateField string) (map[string]string, error) {
	out := map[string]string{}
	if stateField == "" {
		var id string
		err := db.reader.QueryRowContext(ctx, `SELECT id FROM documents WHERE portal_type = ? AND deleted = 0
			AND upstream_version IS NOT NULL ORDER BY id LIMIT 1`, portalType).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("state samples: %w", err)
		}
		out[""] = id
		return out, nil
	}
	if !isIdentifier(stateField) {
		return nil, fmt.Errorf("state samples: %q is not a property name", stateField)
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT coalesce(json_extract(body, '$.`+stateField+`'), ''), min(id)
		FROM documents WHERE portal_type = ? AND deleted = 0 AND upstream_version IS NOT NULL GROUP BY 1`, portalType)
	if err != nil {
		return nil, fmt.Errorf("state samples: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st any
		var id string
		if err := rows.Scan(&st, &id); err != nil {
			return nil, fmt.Errorf("state samples: %w", err)
		}
		if s, ok := st.(string); ok {
			out[s] = id
		}
	}
	return out, rows.Err()
}

// isIdentifier reports whether s is a plain property name (letters, digits, underscores).
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// PendingTransitions returns, for each id with an open workflow action in the outbox, the
// transition of the earliest one (what the app shows as "pending: Confirm"). Ids are
// resolved through id_map first; the answer is keyed by the ids as given.
func (db *DB) PendingTransitions(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for _, id := range ids {
		to, err := resolveID(ctx, db.reader, id)
		if err != nil {
			return nil, err
		}
		entries, err := outbox.OpenEntries(ctx, db.reader, to)
		if err != nil {
			return nil, fmt.Errorf("pending transitions: %w", err)
		}
		for _, e := range entries {
			if e.Op == outbox.OpAction && e.Transition != "" {
				out[id] = e.Transition
				break
			}
		}
	}
	return out, nil
}
