package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"sitesync.example/gateway"
)

// DefaultConfigPath is read when --config is not given and the file exists.
const DefaultConfigPath = "gateway.yaml"

// Config is the gateway's configuration file (docs/DESIGN.md §10). Every key is documented in
// config.example.yaml.
type Config struct {
	DataDir  string         `yaml:"data_dir"`
	SiteID   string         `yaml:"site_id"`
	Policy   string         `yaml:"policy"`
	LAN      LANConfig      `yaml:"lan"`
	Upstream UpstreamConfig `yaml:"upstream"`
	Query    QueryConfig    `yaml:"query"`
	Outbox   OutboxConfig   `yaml:"outbox"`
	Log      LogConfig      `yaml:"log"`

	// UnsetEnv names the ${NAME} variables the file uses that the environment lacks (they
	// became empty); a command that talks to ERP5 warns about them.
	UnsetEnv []string `yaml:"-"`
}

// LANConfig is the `lan:` section: the browsers' side.
type LANConfig struct {
	Listen      string       `yaml:"listen"`
	PublicURL   string       `yaml:"public_url"`
	Enrollment  string       `yaml:"enrollment"`
	DefaultRole string       `yaml:"default_role"`
	TLS         TLSConfig    `yaml:"tls"`
	WebRTC      WebRTCConfig `yaml:"webrtc"`
}

// TLSConfig names a certificate and key for the LAN listener; both empty means plain HTTP.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// WebRTCConfig is where the data channels' UDP (and ICE-TCP) port listens.
type WebRTCConfig struct {
	Listen      string   `yaml:"listen"`
	UDPPort     int      `yaml:"udp_port"`
	TCPFallback bool     `yaml:"tcp_fallback"`
	Interfaces  []string `yaml:"interfaces"`
}

// UpstreamConfig is the `upstream:` section: ERP5 and the satellite link.
type UpstreamConfig struct {
	URL         string            `yaml:"url"`
	Auth        AuthConfig        `yaml:"auth"`
	Protocol    string            `yaml:"protocol"`
	View        string            `yaml:"view"`
	Modules     map[string]string `yaml:"modules"`
	Scopes      []ScopeConfig     `yaml:"scopes"`
	DailyBudget int64             `yaml:"daily_budget"`
	CostPerMB   float64           `yaml:"cost_per_mb"`
}

// AuthConfig is how the gateway authenticates to ERP5.
type AuthConfig struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	Cookie   string `yaml:"cookie"`
}

// ScopeConfig is one set of documents the downlink replicates.
type ScopeConfig struct {
	Name       string   `yaml:"name"`
	PortalType string   `yaml:"portal_type"`
	Query      string   `yaml:"query"`
	Fields     []string `yaml:"fields"`
}

// QueryConfig tunes the query language.
type QueryConfig struct {
	DateKeys []string `yaml:"date_keys"`
}

// OutboxConfig tunes the outbox.
type OutboxConfig struct {
	KeepDone Duration `yaml:"keep_done"`
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Duration is a time.Duration written as Go writes it ("720h", "90s").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 720h or 90s)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ExampleSiteID is the site_id of config.example.yaml; the uplink refuses it.
const ExampleSiteID = "example-site"

// DefaultConfig returns the built-in configuration.
func DefaultConfig() Config {
	return Config{
		DataDir: "./data",
		Policy:  "",
		LAN: LANConfig{
			Listen:      "0.0.0.0:8080",
			Enrollment:  "invite",
			DefaultRole: "clerk",
			WebRTC:      WebRTCConfig{UDPPort: 50000, TCPFallback: true},
		},
		Upstream: UpstreamConfig{
			Protocol: "auto",
			View:     "view",
			Modules:  gateway.DefaultModules(),
			Scopes: []ScopeConfig{
				{Name: "Person", PortalType: "Person", Fields: []string{"title", "first_name", "last_name", "default_email_text", "reference"}},
			},
			CostPerMB: 5.0,
		},
		Query:  QueryConfig{DateKeys: []string{"modification_date", "creation_date", "start_date", "stop_date", "birthday"}},
		Outbox: OutboxConfig{KeepDone: Duration(720 * time.Hour)},
		Log:    LogConfig{Level: "info", Format: "text"},
	}
}

// ConfigError is a configuration value that is wrong; Field names its key.
type ConfigError struct {
	Field string
	Err   error
}

// Error implements error.
func (e *ConfigError) Error() string { return fmt.Sprintf("config: %s: %v", e.Field, e.Err) }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// ReadConfigFile reads the file at path over the defaults.
func ReadConfigFile(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := ParseConfig(f)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads YAML from r over the defaults, then expands ${NAME} in every string value
// ($${ stands for a literal ${). Unknown keys are errors.
func ParseConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	buf, err := io.ReadAll(r)
	if err != nil {
		return cfg, err
	}
	if len(bytes.TrimSpace(buf)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(buf))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config: %s", yamlKeyNames(err.Error()))
		}
	}
	var unset []string
	expandStrings(reflect.ValueOf(&cfg).Elem(), &unset)
	cfg.UnsetEnv = unset
	return cfg, cfg.Validate()
}

// configSections names the file's section of each configuration type, for error messages.
var configSections = map[string]string{
	"Config": "", "LANConfig": "lan", "TLSConfig": "lan.tls", "WebRTCConfig": "lan.webrtc",
	"UpstreamConfig": "upstream", "AuthConfig": "upstream.auth", "ScopeConfig": "upstream.scopes[]",
	"QueryConfig": "query", "OutboxConfig": "outbox", "LogConfig": "log",
}

var (
	unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type main\.(\w+)`)
	goTypeRE       = regexp.MustCompile(`into \S*main\.(\w+)`)
)

// yamlKeyNames rewrites the YAML decoder's messages in the file's words: an unknown key by
// its section, never Go's type names.
func yamlKeyNames(msg string) string {
	msg = unknownFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := unknownFieldRE.FindStringSubmatch(m)
		if sec := configSections[sub[2]]; sec != "" {
			return fmt.Sprintf("unknown key %q in %s", sub[1], sec)
		}
		return fmt.Sprintf("unknown key %q", sub[1])
	})
	msg = goTypeRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := goTypeRE.FindStringSubmatch(m)
		if sec, ok := configSections[sub[1]]; ok && sec != "" {
			return "into the " + sec + " section"
		}
		return "into the configuration"
	})
	msg = strings.Replace(msg, "construct errors: ", "", 1)
	return strings.Replace(msg, "yaml: ", "", 1)
}

// expandStrings replaces ${NAME} in every string reachable from v, adding the names the
// environment lacks to unset.
func expandStrings(v reflect.Value, unset *[]string) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(expandEnv(v.String(), unset))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			expandStrings(v.Field(i), unset)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			expandStrings(v.Index(i), unset)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.String {
				v.SetMapIndex(k, reflect.ValueOf(expandEnv(e.String(), unset)))
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			expandStrings(v.Elem(), unset)
		}
	}
}

// ExpandEnv replaces ${NAME} with the environment variable NAME; "$${" is a literal "${". An
// unset variable becomes empty, with a warning. A "$" not followed by "{" is kept, so
// passwords with "$5" survive.
func ExpandEnv(s string) string {
	var unset []string
	s = expandEnv(s, &unset)
	for _, name := range unset {
		slog.Warn("config names an unset environment variable; using empty", "name", name)
	}
	return s
}

// expandEnv is ExpandEnv adding the unset names to unset instead of warning.
func expandEnv(s string, unset *[]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				b.WriteString(s[i:])
				i = len(s)
				continue
			}
			name := s[i+2 : i+2+end]
			val, ok := os.LookupEnv(name)
			if !ok && !slices.Contains(*unset, name) {
				*unset = append(*unset, name)
			}
			b.WriteString(val)
			i += 3 + end
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// Validate checks values that would otherwise fail later and far from the file.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return &ConfigError{"data_dir", errors.New("must not be empty")}
	}
	switch c.LAN.Enrollment {
	case "invite", "open":
	default:
		return &ConfigError{"lan.enrollment", fmt.Errorf("%q is not invite or open", c.LAN.Enrollment)}
	}
	if (c.LAN.TLS.Cert == "") != (c.LAN.TLS.Key == "") {
		return &ConfigError{"lan.tls", errors.New("cert and key go together")}
	}
	if c.LAN.WebRTC.UDPPort < 0 || c.LAN.WebRTC.UDPPort > 65535 {
		return &ConfigError{"lan.webrtc.udp_port", fmt.Errorf("%d is not a port", c.LAN.WebRTC.UDPPort)}
	}
	switch c.Upstream.Protocol {
	case "auto", "batch", "stock":
	default:
		return &ConfigError{"upstream.protocol", fmt.Errorf("%q is not auto, batch or stock", c.Upstream.Protocol)}
	}
	if c.Upstream.View == "" {
		c.Upstream.View = "view"
	}
	if strings.ContainsAny(c.Upstream.View, " /?&#%") {
		return &ConfigError{"upstream.view", fmt.Errorf("%q is not an ERP5 action or form id", c.Upstream.View)}
	}
	for i, s := range c.Upstream.Scopes {
		if s.PortalType == "" {
			return &ConfigError{fmt.Sprintf("upstream.scopes[%d].portal_type", i), errors.New("must not be empty")}
		}
		if s.Name == "" {
			c.Upstream.Scopes[i].Name = s.PortalType
		}
	}
	if c.Upstream.DailyBudget < 0 {
		return &ConfigError{"upstream.daily_budget", errors.New("must not be negative")}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return &ConfigError{"log.level", fmt.Errorf("%q is not debug, info, warn or error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &ConfigError{"log.format", fmt.Errorf("%q is not text or json", c.Log.Format)}
	}
	return nil
}

// ValidateStart checks what serve needs beyond Validate: config.example.yaml's site_id is
// refused, so that a copied example is not run as a real site.
func (c *Config) ValidateStart() error {
	if c.SiteID == ExampleSiteID {
		return &ConfigError{"site_id", fmt.Errorf("%q is config.example.yaml's value: set site_id to this site's own name at ERP5 (or leave it empty to run without the uplink)", ExampleSiteID)}
	}
	return nil
}

// ValidateUplink checks what the uplink needs beyond Validate: a real site id.
func (c *Config) ValidateUplink() error {
	switch c.SiteID {
	case "":
		return &ConfigError{"site_id", errors.New("required for the uplink: this site's name at ERP5")}
	case ExampleSiteID:
		return &ConfigError{"site_id", fmt.Errorf("%q is the example value; set this site's own name", ExampleSiteID)}
	}
	if c.Upstream.URL == "" {
		return &ConfigError{"upstream.url", errors.New("required for the uplink")}
	}
	return nil
}
