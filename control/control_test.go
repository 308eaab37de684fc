package control_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"sitesync.example/gateway/control"
)

func TestServerClient(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gateway.sock")
	c := control.NewClient(path)
	if ok, err := c.Running(ctx); ok || err != nil {
		t.Fatalf("no server: running %v, %v", ok, err)
	}
	if handled, err := c.Wake(ctx, control.WakeUplink); handled || err != nil {
		t.Fatalf("wake without server: %v %v", handled, err)
	}
	// A stale socket file left by a killed process is replaced.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := control.NewServer(path)
	var woken atomic.Int32
	s.HandleWake(control.WakeUplink, func() { woken.Add(1) })
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != control.SocketMode {
		t.Errorf("socket mode %v, %v", fi.Mode(), err)
	}
	if ok, err := c.Running(ctx); !ok || err != nil {
		t.Fatalf("running %v, %v", ok, err)
	}
	if handled, err := c.Wake(ctx, control.WakeUplink); !handled || err != nil || woken.Load() != 1 {
		t.Fatalf("wake: %v %v (woken %d)", handled, err, woken.Load())
	}
	if handled, err := c.Wake(ctx, "nothing"); !handled || err == nil {
		t.Errorf("wake of an unknown name: %v %v", handled, err)
	}
	// A second server on the same socket is refused.
	if err := control.NewServer(path).Open(); !errors.Is(err, control.ErrRunning) {
		t.Errorf("second server: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("socket file left after Close")
	}
	if ok, _ := c.Running(ctx); ok {
		t.Error("still running after Close")
	}
}
