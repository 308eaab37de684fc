package sqlite_test

import (
	"context"
	"database/sql"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/sqlite"
)

func TestPeerService_CreateInvite(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		s := sqlite.NewPeerService(db)
		code, err := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// At least 64 bits of randomness in [A-Za-z0-9_-]: 11 base64url characters.
		if !regexp.MustCompile(`^[A-Za-z0-9_-]{11,}$`).MatchString(code) {
			t.Errorf("code %q is not ≥ 11 characters of [A-Za-z0-9_-]", code)
		}
		other, err := s.CreateInvite(ctx, "till-2", "clerk", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if other == code {
			t.Error("two invites got the same code")
		}
		// Only the hash is stored.
		var n int
		if err := db.Reader().QueryRow(`SELECT count(*) FROM invites WHERE code_hash = ? OR code_hash = ?`, code, other).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Error("a code is stored in clear")
		}
		if err := db.Reader().QueryRow(`SELECT count(*) FROM invites WHERE code_hash = ?`, sqlite.HashSecret(code)).Scan(&n); err != nil || n != 1 {
			t.Errorf("hashed code rows = %d (%v), want 1", n, err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		s := sqlite.NewPeerService(MustOpenDB(t))
		for _, tc := range []struct{ name, role string }{{"", "clerk"}, {"has space", "clerk"}, {"ok", ""}, {"ok", "a/b"}} {
			if _, err := s.CreateInvite(ctx, tc.name, tc.role, time.Hour); gateway.ErrorCode(err) != gateway.EINVALID {
				t.Errorf("CreateInvite(%q, %q) = %v, want EINVALID", tc.name, tc.role, err)
			}
		}
		if _, err := s.CreateInvite(ctx, "ok", "clerk", 0); gateway.ErrorCode(err) != gateway.EINVALID {
			t.Errorf("zero ttl: %v, want EINVALID", err)
		}
	})
	t.Run("ErrPeerExists", func(t *testing.T) {
		s := sqlite.NewPeerService(MustOpenDB(t))
		mustPair(t, s, "till-1", "clerk")
		_, err := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		if gateway.ErrorCode(err) != gateway.ECONFLICT {
			t.Fatalf("invite for a paired name: %v, want ECONFLICT", err)
		}
		// Once revoked, the name may be paired again.
		if err := s.RevokePeer(ctx, "till-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateInvite(ctx, "till-1", "manager", time.Hour); err != nil {
			t.Fatal(err)
		}
	})
}

// mustPair invites and redeems a peer and returns its token.
func mustPair(tb testing.TB, s *sqlite.PeerService, name, role string) string {
	tb.Helper()
	code, err := s.CreateInvite(context.Background(), name, role, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	_, token, err := s.RedeemInvite(context.Background(), code)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

func TestPeerService_RedeemInvite(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		s := sqlite.NewPeerService(db)
		code, err := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p, token, err := s.RedeemInvite(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != "till-1" || p.Role != "clerk" {
			t.Errorf("peer = %+v", p)
		}
		if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(token) {
			t.Errorf("token %q is not 256 bits of base64url", token)
		}
		var stored string
		if err := db.Reader().QueryRow(`SELECT token_hash FROM peers WHERE name = 'till-1'`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored == token || stored != sqlite.HashSecret(token) {
			t.Errorf("stored token %q is not the token's hash", stored)
		}
		got, err := s.FindPeerByToken(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "till-1" || got.Role != "clerk" || got.CreatedAt.IsZero() {
			t.Errorf("FindPeerByToken = %+v", got)
		}
	})
	t.Run("ErrUsed", func(t *testing.T) {
		s := sqlite.NewPeerService(MustOpenDB(t))
		code, _ := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		if _, _, err := s.RedeemInvite(ctx, code); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.RedeemInvite(ctx, code)
		if gateway.ErrorCode(err) != gateway.EUNAUTHORIZED || gateway.ErrorReason(err) != "used" {
			t.Errorf("second redeem: %v, want unauthorized/used", err)
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		db := MustOpenDB(t)
		s := sqlite.NewPeerService(db)
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		db.Now = func() time.Time { return now }
		code, _ := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		now = now.Add(time.Hour)
		_, _, err := s.RedeemInvite(ctx, code)
		if gateway.ErrorCode(err) != gateway.EUNAUTHORIZED || gateway.ErrorReason(err) != "expired" {
			t.Errorf("redeem after ttl: %v, want unauthorized/expired", err)
		}
	})
	t.Run("ErrUnknown", func(t *testing.T) {
		s := sqlite.NewPeerService(MustOpenDB(t))
		_, _, err := s.RedeemInvite(ctx, "not-a-code")
		if gateway.ErrorReason(err) != gateway.EUNAUTHORIZED {
			t.Errorf("unknown code: %v, want unauthorized", err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Many redeemers race for one code: exactly one wins.
		s := sqlite.NewPeerService(MustOpenDB(t))
		code, _ := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { _, _, errs[i] = s.RedeemInvite(ctx, code) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if gateway.ErrorReason(err) != "used" {
				t.Errorf("loser: %v, want used", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d redeems succeeded, want 1", ok)
		}
	})
	t.Run("ErrNameTakenMeanwhile", func(t *testing.T) {
		s := sqlite.NewPeerService(MustOpenDB(t))
		first, _ := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		second, _ := s.CreateInvite(ctx, "till-1", "clerk", time.Hour)
		if _, _, err := s.RedeemInvite(ctx, first); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.RedeemInvite(ctx, second); gateway.ErrorCode(err) != gateway.ECONFLICT {
			t.Errorf("second invite for a paired name: %v, want ECONFLICT", err)
		}
	})
}

func TestPeerService_RevokePeer(t *testing.T) {
	ctx := context.Background()
	s := sqlite.NewPeerService(MustOpenDB(t))
	token := mustPair(t, s, "till-1", "clerk")
	other := mustPair(t, s, "till-2", "clerk")
	if err := s.RevokePeer(ctx, "till-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindPeerByToken(ctx, token); gateway.ErrorReason(err) != "revoked" {
		t.Errorf("revoked token: %v, want revoked", err)
	}
	if _, err := s.FindPeerByToken(ctx, other); err != nil {
		t.Errorf("other peer: %v", err)
	}
	if err := s.RevokePeer(ctx, "till-1"); err != nil {
		t.Errorf("second revoke: %v", err)
	}
	if err := s.RevokePeer(ctx, "nobody"); gateway.ErrorCode(err) != gateway.ENOTFOUND {
		t.Errorf("revoke unknown: %v, want ENOTFOUND", err)
	}
	gone, err := s.RevokedPeers(ctx, []string{"till-1", "till-2", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone, []string{"till-1", "nobody"}) {
		t.Errorf("RevokedPeers = %v, want [till-1 nobody]", gone)
	}
	peers, err := s.FindPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].Name != "till-2" {
		t.Errorf("FindPeers = %+v, want till-2 only", peers)
	}
	// Re-pairing a revoked name gives it a new token; the old one stays refused.
	fresh := mustPair(t, s, "till-1", "manager")
	if p, err := s.FindPeerByToken(ctx, fresh); err != nil || p.Role != "manager" {
		t.Errorf("re-paired: %+v, %v", p, err)
	}
	if _, err := s.FindPeerByToken(ctx, token); gateway.ErrorCode(err) != gateway.EUNAUTHORIZED {
		t.Errorf("old token after re-pair: %v, want EUNAUTHORIZED", err)
	}
}

func TestPeerService_EnrollAndTouch(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	s := sqlite.NewPeerService(db)
	p, token, err := s.EnrollPeer(ctx, "clerk")
	if err != nil {
		t.Fatal(err)
	}
	if p.Role != "clerk" || sqlite.ValidatePeerName("name", p.Name) != nil {
		t.Errorf("enrolled %+v", p)
	}
	q, _, err := s.EnrollPeer(ctx, "clerk")
	if err != nil {
		t.Fatal(err)
	}
	if q.Name == p.Name {
		t.Error("two enrollments got one name")
	}
	seen := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.TouchPeer(ctx, p.Name, "10.0.0.7", seen); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindPeerByToken(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastSeen.Equal(seen) || got.Address != "10.0.0.7" {
		t.Errorf("after touch: %+v", got)
	}
	peers, err := s.FindPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 {
		t.Fatalf("FindPeers = %d peers, want 2", len(peers))
	}
	var never sql.NullString
	if err := db.Reader().QueryRow(`SELECT last_seen FROM peers WHERE name = ?`, q.Name).Scan(&never); err != nil || never.Valid {
		t.Errorf("untouched last_seen = %v (%v), want NULL", never, err)
	}
}
