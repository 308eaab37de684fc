package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/control"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/sqlite"
)

// runPeers runs the command line in-process and returns stdout, stderr and the exit status.
func runPeers(tb testing.TB, argv ...string) (string, string, int) {
	tb.Helper()
	return runDocs(tb, "", argv...)
}

var linkRE = regexp.MustCompile(`^(https?://[^ ]+)/pair#code=([A-Za-z0-9_-]{11,})$`)

func TestPeersInvite(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	t.Run("OK", func(t *testing.T) {
		out, errOut, code := runPeers(t, "--data-dir", dir, "peers", "invite", "till-1", "--role", "clerk", "--ttl", "2h")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(out, "\n")
		m := linkRE.FindStringSubmatch(lines[0])
		if m == nil {
			t.Fatalf("first line %q is not a pairing link", lines[0])
		}
		// Listening on 0.0.0.0:8080 (the default), the link names a real address of this host.
		u, _ := url.Parse(m[1])
		if u.Port() != "8080" || net.ParseIP(u.Hostname()) == nil || net.ParseIP(u.Hostname()).IsUnspecified() {
			t.Errorf("link host %q", u.Host)
		}
		if !strings.Contains(out, `peer "till-1" (role clerk)`) || !strings.Contains(out, "▀") {
			t.Errorf("no description or QR code in:\n%s", out)
		}
		// The code pairs once.
		db, err := sqlite.Open(context.Background(), filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		p, _, err := sqlite.NewPeerService(db).RedeemInvite(context.Background(), m[2])
		if err != nil || p.Name != "till-1" || p.Role != "clerk" {
			t.Fatalf("redeem: %+v %v", p, err)
		}
	})
	t.Run("PublicURL", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "gateway.yaml")
		if err := os.WriteFile(cfg, []byte("lan:\n  public_url: https://gateway.site.example/app/\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runPeers(t, "--config", cfg, "--data-dir", dir, "peers", "invite", "till-2", "--role", "clerk", "--no-qr")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.HasPrefix(out, "https://gateway.site.example/app/pair#code=") || strings.Contains(out, "▀") {
			t.Errorf("output %q", out)
		}
	})
	t.Run("ErrPaired", func(t *testing.T) {
		_, errOut, code := runPeers(t, "--data-dir", dir, "peers", "invite", "till-1", "--role", "clerk")
		if code != 1 || !strings.Contains(errOut, `peer "till-1" is already paired`) {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		for _, argv := range [][]string{
			{"peers", "invite", "x"},
			{"peers", "invite", "x", "--role", "clerk", "--ttl", "0s"},
			{"peers", "invite", "has space", "--role", "clerk"},
			{"peers", "invite", "--role", "clerk"},
			{"peers", "invite", "x", "--role", "no-such-role"},
		} {
			_, errOut, code := runPeers(t, append([]string{"--data-dir", dir}, argv...)...)
			if code != 2 || errOut == "" {
				t.Errorf("%v: exit %d (%s), want 2", argv, code, errOut)
			}
		}
	})
}

func TestPeersLsAndRevoke_WithoutServe(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	out, _, code := runPeers(t, "--data-dir", dir, "peers", "ls", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty ls: exit %d %q", code, out)
	}
	pairPeer(t, dir, "till-1", "clerk")
	out, _, _ = runPeers(t, "--data-dir", dir, "peers", "ls")
	if !strings.Contains(out, "till-1") || !strings.Contains(out, "not running") || !strings.Contains(out, "-- 1 peer;") {
		t.Errorf("table:\n%s", out)
	}
	out, errOut, code := runPeers(t, "--data-dir", dir, "peers", "revoke", "till-1")
	if code != 0 || !strings.Contains(out, "revoked till-1 (the gateway is not running)") {
		t.Errorf("revoke: exit %d %q %q", code, out, errOut)
	}
	_, errOut, code = runPeers(t, "--data-dir", dir, "peers", "revoke", "nobody")
	if code != 1 || !strings.Contains(errOut, `no peer is named "nobody"`) {
		t.Errorf("revoke unknown: exit %d %q", code, errOut)
	}
	out, _, _ = runPeers(t, "--data-dir", dir, "peers", "ls", "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("revoked peer still listed: %s", out)
	}
}

func TestPeersThroughControlSocket(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A running LAN server whose control handler answers on data_dir/gateway.sock, as serve
	// wires it.
	svc := lan.ServiceFunc(func(context.Context, gateway.Actor, string, json.RawMessage) (any, error) {
		return map[string]int{}, nil
	})
	srv := lan.NewServer(lan.Config{Listen: "127.0.0.1:0"}, sqlite.NewPeerService(db), svc)
	srv.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv.RevocationPoll = time.Hour // only the control socket can close the channel in time
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(ctx)
	ctl := control.NewServer(filepath.Join(dir, "gateway.sock"))
	ctl.Logger = srv.Logger
	ctl.Handle("/peers/", srv.ControlHandler())
	if err := ctl.Open(); err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	out, errOut, code := runPeers(t, "--data-dir", dir, "peers", "invite", "till-1", "--role", "clerk", "--no-qr")
	if code != 0 {
		t.Fatalf("invite: %s", errOut)
	}
	m := linkRE.FindStringSubmatch(strings.Split(out, "\n")[0])
	creds, err := client.Pair(ctx, nil, srv.URL(), m[2])
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, srv.URL(), client.Options{Token: creds.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pairPeer(t, dir, "till-2", "manager")

	var list []map[string]any
	peersEventually(t, 2*time.Second, func() bool {
		out, _, _ = runPeers(t, "--data-dir", dir, "peers", "ls", "-o", "json")
		list = nil
		json.Unmarshal([]byte(out), &list)
		return len(list) == 2 && list[0]["last_seen"] != nil
	})
	want := map[string]bool{"name": true, "role": true, "created_at": true, "last_seen": true, "online": true, "address": true}
	for k := range list[0] {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
	}
	if len(list[0]) != len(want) {
		t.Errorf("keys: %v", list[0])
	}
	if list[0]["name"] != "till-1" || list[0]["online"] != true || list[0]["address"] != "127.0.0.1" {
		t.Errorf("till-1: %v", list[0])
	}
	if list[1]["name"] != "till-2" || list[1]["online"] != false || list[1]["last_seen"] != nil {
		t.Errorf("till-2: %v", list[1])
	}
	if _, err := time.Parse(time.RFC3339, list[0]["created_at"].(string)); err != nil || !strings.HasSuffix(list[0]["created_at"].(string), "Z") {
		t.Errorf("created_at %v is not RFC 3339 UTC", list[0]["created_at"])
	}

	out, errOut, code = runPeers(t, "--data-dir", dir, "peers", "revoke", "till-1")
	if code != 0 || !strings.Contains(out, "closed 1 open channel") {
		t.Fatalf("revoke: exit %d %q %q", code, out, errOut)
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("the revoked peer's channel is still open a second later")
	}
	_, err = client.Dial(ctx, srv.URL(), client.Options{Token: creds.Token})
	var se *client.SignalError
	if !errors.As(err, &se) || se.Reason != "revoked" {
		t.Errorf("hello after revoke: %v", err)
	}
}

// pairPeer invites and redeems a peer directly in the database.
func pairPeer(tb testing.TB, dir, name, role string) {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, sqlite.FileName))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	s := sqlite.NewPeerService(db)
	code, err := s.CreateInvite(context.Background(), name, role, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	if _, _, err := s.RedeemInvite(context.Background(), code); err != nil {
		tb.Fatal(err)
	}
}

func peersEventually(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
