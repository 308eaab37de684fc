package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"os"
	"path/filepath"
	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/linksim"
	"slices"
	"strings"
	"testing"
)

// TestExampleConfigAlone: config.example.yaml copied alone into an empty directory is read
// (no policy file beside it: the embedded one), its scopes cover every type the example
// policy offers a role, and serve refuses its site_id saying what to set, before anything
// is made and without a word about ${ERP5_PASSWORD}.
func TestExampleConfigAlone(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	t.Chdir(work)
	relWriteFile(t, filepath.Join(work, "gateway.yaml"), string(raw))
	cfg, err := ReadConfigFile("gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain()
	m.Config = cfg
	m.Logger = newLogger(&bytes.Buffer{}, cfg.Log)
	pol, err := m.loadPolicy(cfg.Policy)
	if err != nil {
		t.Fatalf("the example's policy alone: %v", err)
	}
	var scoped []string
	for _, s := range cfg.Upstream.Scopes {
		scoped = append(scoped, s.PortalType)
	}
	for _, role := range pol.Roles() {
		for _, ti := range pol.Describe(role) {
			if ti.PortalType != "*" && !slices.Contains(scoped, ti.PortalType) {
				t.Errorf("the example policy offers %s to %s; the example scopes %v lack it", ti.PortalType, role, scoped)
			}
		}
	}
	t.Setenv("ERP5_PASSWORD", "")
	os.Unsetenv("ERP5_PASSWORD")
	_, errOut, code := runMain(t, "--data-dir", filepath.Join(work, "data"), "serve", "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "set site_id to this site's own name") {
		t.Errorf("serve with the example site_id: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(work, "data")); err == nil {
		t.Error("the refused serve made the data directory")
	}
	if strings.Contains(errOut, "ERP5_PASSWORD") {
		t.Errorf("serve refused before talking to ERP5 warned about the password: %q", errOut)
	}
	// An operator command that does not talk to ERP5 does not warn either.
	if _, errOut, _ := runMain(t, "--data-dir", work, "peers", "ls"); strings.Contains(errOut, "ERP5_PASSWORD") {
		t.Errorf("peers ls warned about the password: %q", errOut)
	}
}

// TestNoDataDirectory: a command that reads, run with a data directory that does not exist,
// says so and makes nothing.
func TestNoDataDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := filepath.Join(t.TempDir(), "typo")
	for _, argv := range [][]string{{"outbox", "ls"}, {"docs", "get", "person_module/1"}, {"peers", "ls"}, {"backup", filepath.Join(t.TempDir(), "b.db")}} {
		_, errOut, code := runMain(t, append([]string{"--data-dir", dir}, argv...)...)
		if code != 1 || !strings.Contains(errOut, "no data directory "+dir) {
			t.Errorf("%v: exit %d %q", argv, code, errOut)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Fatalf("%v made the data directory", argv)
		}
	}
}

// TestConfigErrorsSpeakYAML: a misspelt key is named as the file spells it, with its section.
func TestConfigErrorsSpeakYAML(t *testing.T) {
	for in, want := range map[string]string{
		"siteid: x\n":              `unknown key "siteid"`,
		"lan:\n  listn: x\n":       `unknown key "listn" in lan`,
		"upstream:\n  scopes: 3\n": "upstream",
	} {
		_, err := ParseConfig(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "main.") {
			t.Errorf("%q: %v, want %q and no Go type", in, err, want)
		}
	}
}

// TestDemoAgain: `gateway demo --data-dir DIR` runs again on the directory a first demo left.
func TestDemoAgain(t *testing.T) {
	dir := t.TempDir()
	for run := range 2 {
		m := NewMain()
		m.Stdout, m.Stderr = io.Discard, io.Discard
		m.Config = DefaultConfig()
		m.Config.DataDir = dir
		d, err := m.StartDemo(context.Background(), DemoOptions{Seed: 3, Docs: 30, Listen: "127.0.0.1:0", Link: linksim.Thuraya, LogLevel: slog.LevelError})
		if err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		if d.Invite == "" {
			t.Fatalf("run %d printed no invite", run+1)
		}
		// The browser pairs with the invite, as the demo's user does.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		code := d.Invite[strings.Index(d.Invite, "#code=")+len("#code="):]
		if _, err := client.Pair(ctx, http.DefaultClient, d.Server.URL(), code); err != nil {
			t.Fatalf("run %d: pair: %v", run+1, err)
		}
		err = d.Close(ctx)
		cancel()
		if err != nil {
			t.Fatalf("run %d: close: %v", run+1, err)
		}
	}
}
