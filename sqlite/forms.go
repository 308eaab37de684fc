package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
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
