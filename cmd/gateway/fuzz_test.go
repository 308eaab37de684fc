package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v4"
)

// FuzzParseConfig feeds the configuration parser: it never panics; a configuration it
// accepts is valid and survives being written back out and read again; a refusal of a value
// names its key.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	// ${HOME} rather than the unset ${ERP5_PASSWORD}, whose warning would clutter the log.
	f.Add(bytes.ReplaceAll(example, []byte("${ERP5_PASSWORD}"), []byte("${HOME}")))
	for _, s := range []string{
		"", "data_dir: /var/lib/gateway\n", "site_id: mine-7\nupstream:\n  url: https://erp5.example/\n  protocol: batch\n",
		"lan: {enrollment: open, default_role: clerk, webrtc: {udp_port: 70000}}\n",
		"outbox: {keep_done: 90s}\n", "outbox: {keep_done: forever}\n", "log: {level: loud}\n",
		"upstream:\n  auth: {password: \"$${NOT_EXPANDED}x$5\"}\n", "upstream: {scopes: [{portal_type: \"\"}]}\n",
		"unknown_key: 1\n", "data_dir: [1, 2]\n", "a: &a [*a]\n", "--- \n...\n", "\t", "lan: {tls: {cert: x}}\n",
		"upstream: {modules: {Person: people_module}, daily_budget: -1}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(bytes.NewReader(data))
		if err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) && ce.Field == "" {
				t.Fatalf("a value error without its key: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a configuration that does not validate: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if bytes.Contains(out, []byte("${")) {
			return // would be expanded again
		}
		back, err := ParseConfig(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("the configuration written back does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalConfig(cfg), normalConfig(back)) {
			t.Fatalf("round trip changed the configuration:\n%+v\n%+v", cfg, back)
		}
	})
}

// normalConfig makes nil and empty collections compare equal.
func normalConfig(c Config) Config {
	if len(c.Upstream.Modules) == 0 {
		c.Upstream.Modules = nil
	}
	if len(c.Upstream.Scopes) == 0 {
		c.Upstream.Scopes = nil
	}
	for i := range c.Upstream.Scopes {
		if len(c.Upstream.Scopes[i].Fields) == 0 {
			c.Upstream.Scopes[i].Fields = nil
		}
	}
	if len(c.Query.DateKeys) == 0 {
		c.Query.DateKeys = nil
	}
	if len(c.LAN.WebRTC.Interfaces) == 0 {
		c.LAN.WebRTC.Interfaces = nil
	}
	return c
}
