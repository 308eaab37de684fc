package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"sitesync.example/gateway"
)

// Sizes of the secrets pairing hands out. A code is typed or scanned once and lives for hours,
// so 128 bits is ample (docs/DESIGN.md §3 asks for at least 64); a token is the peer's long-lived
// credential and gets 256 bits.
const (
	inviteCodeBytes = 16
	tokenBytes      = 32
	// MaxPeerNameLength is the longest peer name or role accepted, in bytes.
	MaxPeerNameLength = 64
	// DefaultInviteTTL is how long an invite code stays redeemable unless told otherwise.
	DefaultInviteTTL = 24 * time.Hour
)

// PeerService stores paired peers and their one-time pairing codes in the database. Codes and
// tokens are kept only as SHA-256 hashes: a stolen database file pairs no one.
type PeerService struct {
	db *DB
}

// NewPeerService returns a PeerService on db.
func NewPeerService(db *DB) *PeerService { return &PeerService{db: db} }

// ValidatePeerName reports whether s may name a peer or a role: 1 to MaxPeerNameLength bytes
// of [A-Za-z0-9_.@-]. Names travel in logs, outbox rows and ERP5's history, so no spaces.
func ValidatePeerName(what, s string) error {
	if s == "" {
		return gateway.Errorf(gateway.EINVALID, "%s is empty", what)
	}
	if len(s) > MaxPeerNameLength {
		return gateway.Errorf(gateway.EINVALID, "%s is longer than %d bytes", what, MaxPeerNameLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '@') {
			return gateway.Errorf(gateway.EINVALID, "%s %q has a character outside [A-Za-z0-9_.@-]", what, s)
		}
	}
	return nil
}

// HashSecret returns the stored form of a code or token: hex SHA-256.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// randomSecret returns n random bytes in unpadded base64url ([A-Za-z0-9_-]).
func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateInvite stores a one-time pairing code for a new peer name with role, redeemable until
// ttl has passed, and returns the code. It fails with ECONFLICT when an unrevoked peer already
// has the name, and EINVALID for a bad name, role or ttl.
func (s *PeerService) CreateInvite(ctx context.Context, name, role string, ttl time.Duration) (string, error) {
	if err := ValidatePeerName("peer name", name); err != nil {
		return "", err
	}
	if err := ValidatePeerName("role", role); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", gateway.Errorf(gateway.EINVALID, "invite ttl must be positive")
	}
	code := randomSecret(inviteCodeBytes)
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if active, err := peerActive(ctx, tx, name); err != nil {
			return err
		} else if active {
			return gateway.ReasonErrorf(gateway.ECONFLICT, "peer_exists", "peer %q is already paired; revoke it first or choose another name", name)
		}
		now := s.db.Now()
		_, err := tx.ExecContext(ctx, `INSERT INTO invites (code_hash, name, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			HashSecret(code), name, role, FormatTime(now), FormatTime(now.Add(ttl)))
		return FormatError(err)
	})
	if err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	return code, nil
}

// peerActive reports whether an unrevoked peer named name exists.
func peerActive(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM peers WHERE name = ? AND revoked_at IS NULL`, name).Scan(&n)
	return n > 0, err
}

// RedeemInvite spends a pairing code: in one transaction it marks the code used and stores the
// peer it names with a new token, which it returns (only its hash is kept). A code works once.
// Errors: EUNAUTHORIZED with reason "unauthorized" (unknown code), "used" or "expired";
// ECONFLICT when an unrevoked peer took the name since the invite was made. A revoked peer of
// the same name is replaced.
func (s *PeerService) RedeemInvite(ctx context.Context, code string) (gateway.Peer, string, error) {
	var peer gateway.Peer
	token := randomSecret(tokenBytes)
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		now := s.db.Now()
		hash := HashSecret(code)
		err := tx.QueryRowContext(ctx, `UPDATE invites SET used_at = ?
			WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
			RETURNING name, role`, FormatTime(now), hash, FormatTime(now)).Scan(&peer.Name, &peer.Role)
		if errors.Is(err, sql.ErrNoRows) {
			return inviteRefusal(ctx, tx, hash)
		} else if err != nil {
			return err
		}
		if active, err := peerActive(ctx, tx, peer.Name); err != nil {
			return err
		} else if active {
			return gateway.ReasonErrorf(gateway.ECONFLICT, "peer_exists", "peer %q is already paired", peer.Name)
		}
		peer.CreatedAt = now.UTC()
		_, err = tx.ExecContext(ctx, `INSERT INTO peers (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET role = excluded.role, token_hash = excluded.token_hash,
				created_at = excluded.created_at, last_seen = NULL, address = '', revoked_at = NULL`,
			peer.Name, peer.Role, HashSecret(token), FormatTime(now))
		return FormatError(err)
	})
	if err != nil {
		return gateway.Peer{}, "", fmt.Errorf("redeem invite: %w", err)
	}
	return peer, token, nil
}

// inviteRefusal explains why no redeemable invite has the code hash.
func inviteRefusal(ctx context.Context, tx *sql.Tx, hash string) error {
	var used sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT used_at FROM invites WHERE code_hash = ?`, hash).Scan(&used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return gateway.ReasonErrorf(gateway.EUNAUTHORIZED, gateway.EUNAUTHORIZED, "this pairing code is not valid")
	case err != nil:
		return err
	case used.Valid:
		return gateway.ReasonErrorf(gateway.EUNAUTHORIZED, "used", "this pairing code has already been used; ask for a new invite")
	default:
		return gateway.ReasonErrorf(gateway.EUNAUTHORIZED, "expired", "this pairing code has expired; ask for a new invite")
	}
}

// EnrollPeer creates a peer with role and a generated name ("guest-" and random characters)
// for open enrollment, and returns it with its new token.
func (s *PeerService) EnrollPeer(ctx context.Context, role string) (gateway.Peer, string, error) {
	if err := ValidatePeerName("role", role); err != nil {
		return gateway.Peer{}, "", err
	}
	token := randomSecret(tokenBytes)
	for range 5 {
		now := s.db.Now()
		peer := gateway.Peer{Name: "guest-" + strings.ToLower(randomSecret(6)), Role: role, CreatedAt: now.UTC()}
		res, err := s.db.Writer().ExecContext(ctx, `INSERT INTO peers (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, peer.Name, peer.Role, HashSecret(token), FormatTime(now))
		if err != nil {
			return gateway.Peer{}, "", fmt.Errorf("enroll peer: %w", FormatError(err))
		}
		// A name clash (vanishingly rare) inserts nothing; try another name.
		if n, _ := res.RowsAffected(); n == 1 {
			return peer, token, nil
		}
	}
	return gateway.Peer{}, "", fmt.Errorf("enroll peer: no free name")
}

// FindPeerByToken returns the unrevoked peer that holds token. Errors: EUNAUTHORIZED with
// reason "unauthorized" for an unknown token and "revoked" for a revoked peer's.
func (s *PeerService) FindPeerByToken(ctx context.Context, token string) (gateway.Peer, error) {
	row := s.db.Reader().QueryRowContext(ctx, `SELECT name, role, created_at, coalesce(last_seen, ''), address, revoked_at
		FROM peers WHERE token_hash = ?`, HashSecret(token))
	var (
		p       gateway.Peer
		revoked sql.NullString
	)
	err := scanPeer(row, &p, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return gateway.Peer{}, gateway.ReasonErrorf(gateway.EUNAUTHORIZED, gateway.EUNAUTHORIZED, "this browser is not paired with the gateway")
	case err != nil:
		return gateway.Peer{}, fmt.Errorf("find peer: %w", err)
	case revoked.Valid:
		return gateway.Peer{}, gateway.ReasonErrorf(gateway.EUNAUTHORIZED, "revoked", "access for %q has been revoked", p.Name)
	}
	return p, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanPeer reads name, role, created_at, last_seen, address, revoked_at.
func scanPeer(row scanner, p *gateway.Peer, revoked *sql.NullString) error {
	var created, seen string
	if err := row.Scan(&p.Name, &p.Role, &created, &seen, &p.Address, revoked); err != nil {
		return err
	}
	var err error
	if p.CreatedAt, err = ParseTime(created); err != nil {
		return err
	}
	p.LastSeen, err = ParseTime(seen)
	return err
}

// RevokePeer invalidates the token of the peer named name: from now on its hello is refused
// with reason "revoked". Revoking a revoked peer again changes nothing. ENOTFOUND when no peer
// has the name.
func (s *PeerService) RevokePeer(ctx context.Context, name string) error {
	res, err := s.db.Writer().ExecContext(ctx, `UPDATE peers SET revoked_at = coalesce(revoked_at, ?) WHERE name = ?`,
		s.db.NowText(), name)
	if err != nil {
		return fmt.Errorf("revoke peer: %w", FormatError(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return gateway.Errorf(gateway.ENOTFOUND, "no peer is named %q", name)
	}
	return nil
}

// FindPeers returns the unrevoked peers by name. Online is always false: only the running
// server knows which are connected.
func (s *PeerService) FindPeers(ctx context.Context) ([]gateway.Peer, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT name, role, created_at, coalesce(last_seen, ''), address, revoked_at
		FROM peers WHERE revoked_at IS NULL ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("find peers: %w", err)
	}
	defer rows.Close()
	var peers []gateway.Peer
	for rows.Next() {
		var (
			p       gateway.Peer
			revoked sql.NullString
		)
		if err := scanPeer(rows, &p, &revoked); err != nil {
			return nil, fmt.Errorf("find peers: %w", err)
		}
		peers = append(peers, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find peers: %w", err)
	}
	return peers, nil
}

// TouchPeer records that the peer named name was seen at the given time from address.
func (s *PeerService) TouchPeer(ctx context.Context, name, address string, at time.Time) error {
	_, err := s.db.Writer().ExecContext(ctx, `UPDATE peers SET last_seen = ?, address = ? WHERE name = ?`,
		FormatTime(at), address, name)
	if err != nil {
		return fmt.Errorf("touch peer: %w", FormatError(err))
	}
	return nil
}

// RevokedPeers returns those of names that are revoked or no longer exist, so that a running
// server can close their channels when another process revoked them.
func (s *PeerService) RevokedPeers(ctx context.Context, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	active := make(map[string]bool, len(names))
	// SQLite allows 32766 parameters; chunk well below it.
	for start := 0; start < len(names); start += 500 {
		chunk := names[start:min(start+500, len(names))]
		args := make([]any, len(chunk))
		for i, n := range chunk {
			args[i] = n
		}
		q := `SELECT name FROM peers WHERE revoked_at IS NULL AND name IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`
		rows, err := s.db.Reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("revoked peers: %w", err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("revoked peers: %w", err)
			}
			active[n] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("revoked peers: %w", err)
		}
	}
	var gone []string
	for _, n := range names {
		if !active[n] {
			gone = append(gone, n)
		}
	}
	return gone, nil
}
