package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig_Example(t *testing.T) {
	cfg, err := ReadConfigFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SiteID != ExampleSiteID {
		t.Errorf("site_id = %q", cfg.SiteID)
	}
	if len(cfg.Upstream.Scopes) != 5 || cfg.Upstream.Scopes[3].Name != "Sale Order" {
		t.Errorf("scopes = %+v", cfg.Upstream.Scopes)
	}
	if time.Duration(cfg.Outbox.KeepDone) != 720*time.Hour {
		t.Errorf("keep_done = %v", cfg.Outbox.KeepDone)
	}
	if err := cfg.ValidateUplink(); err == nil || !strings.Contains(err.Error(), "site_id") {
		t.Errorf("example site_id accepted for the uplink: %v", err)
	}
}

func TestParseConfig_Expand(t *testing.T) {
	t.Setenv("GW_TEST_PW", `p$5"x`)
	cfg, err := ParseConfig(strings.NewReader(`
site_id: depot-7
upstream:
  auth: {password: "${GW_TEST_PW}", user: "$${LITERAL}"}
  modules: {Person: "${GW_TEST_UNSET}x"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Upstream.Auth.Password, `p$5"x`; got != want {
		t.Errorf("password = %q, want %q", got, want)
	}
	if got, want := cfg.Upstream.Auth.User, "${LITERAL}"; got != want {
		t.Errorf("user = %q, want %q", got, want)
	}
	if got, want := cfg.Upstream.Modules["Person"], "x"; got != want {
		t.Errorf("module = %q, want %q", got, want)
	}
	// Defaults survive a partial file.
	if cfg.LAN.Listen != "0.0.0.0:8080" || cfg.Log.Level != "info" {
		t.Errorf("defaults lost: %+v", cfg.LAN)
	}
}

func TestParseConfig_Errors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"lan: {enrollment: maybe}", "lan.enrollment"},
		{"upstream: {protocol: carrier-pigeon}", "upstream.protocol"},
		{"nosuchkey: 1", "nosuchkey"},
		{"outbox: {keep_done: forever}", "duration"},
		{"lan: {tls: {cert: a.pem}}", "lan.tls"},
		{"log: {level: loud}", "log.level"},
		{"upstream: {scopes: [{fields: [a]}]}", "upstream.scopes[0].portal_type"},
	}
	for _, tt := range tests {
		_, err := ParseConfig(strings.NewReader(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want mention of %q", tt.yaml, err, tt.want)
		}
	}
}

func TestMain_ConfigSelection(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// No file, no flag: built-in defaults, --data-dir honoured.
	m := NewMain()
	var out, errb bytes.Buffer
	m.Stdout, m.Stderr = &out, &errb
	if err := m.Run(context.Background(), []string{"--data-dir", filepath.Join(dir, "d"), "version"}); err != nil {
		t.Fatal(err)
	}
	if m.Config.DataDir != filepath.Join(dir, "d") {
		t.Errorf("data dir = %q", m.Config.DataDir)
	}
	// A missing file named explicitly is an error.
	m = NewMain()
	m.Stdout, m.Stderr = &out, &errb
	err := m.Run(context.Background(), []string{"--config", "nope.yaml", "version"})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing --config file: err = %v", err)
	}
	// ./gateway.yaml is read when present.
	if err := os.WriteFile(DefaultConfigPath, []byte("data_dir: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m = NewMain()
	m.Stdout, m.Stderr = &out, &errb
	if err := m.Run(context.Background(), []string{"version"}); err != nil {
		t.Fatal(err)
	}
	if m.Config.DataDir != "from-file" {
		t.Errorf("data dir = %q, want from-file", m.Config.DataDir)
	}
}

func TestMain_UsageExitCodes(t *testing.T) {
	var b bytes.Buffer
	for _, argv := range [][]string{{"nosuch"}, {"version", "extra"}, {"--nosuchflag"}} {
		m := NewMain()
		m.Stdout, m.Stderr = &b, &b
		err := m.Run(context.Background(), argv)
		if code := exitCode(&b, err); code != 2 {
			t.Errorf("%v: exit %d, want 2 (err %v)", argv, code, err)
		}
	}
}
