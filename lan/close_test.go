package lan_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/sqlite"
)

// TestCloseAfterFailedOpen: a server whose Open failed (its port taken) closes without a
// panic, as the caller's cleanup does.
func TestCloseAfterFailedOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := lan.NewServer(lan.Config{Listen: ln.Addr().String()}, sqlite.NewPeerService(db), newMemService())
	s.Logger = testLogger()
	if err := s.Open(context.Background()); err == nil {
		t.Fatal("Open on a taken port succeeded")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close after a failed Open: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
