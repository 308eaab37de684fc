// Command gateway is the site sync gateway: it serves the site's browsers over WebRTC data
// channels from a local SQLite replica and drains a durable outbox to ERP5 over a slow link.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"sitesync.example/gateway/sqlite"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

// constructors are the subcommands; each file registers its own in init.
var constructors []func(m *Main) *cobra.Command

// register adds a subcommand constructor; called from init functions.
func register(f func(m *Main) *cobra.Command) { constructors = append(constructors, f) }

// Main is one run of the command line. Tests build one with NewMain and call Run.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// ConfigPath and DataDir are the global flags.
	ConfigPath string
	DataDir    string

	// Config is loaded by LoadConfig before a subcommand runs.
	Config Config
	Logger *slog.Logger

	// UpstreamDial, when set, opens the connections to ERP5 instead of the network: `gateway
	// demo` and `gateway bench` carry them across a simulated satellite link (linksim).
	UpstreamDial func(ctx context.Context, network, addr string) (net.Conn, error)

	root *cobra.Command
	// afterOpenDB, when set, sees the database OpenDB opened (tests fill the disk with it).
	afterOpenDB func(*sqlite.DB)
}

// NewMain returns a Main wired to the process's standard streams.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
}

// UsageError is a command line the program cannot act on; it exits 2.
type UsageError struct{ Err error }

// Error implements error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// usagef returns a *UsageError with a formatted message.
func usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// args wraps a cobra argument validator so that its failures are usage errors.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return &UsageError{err}
		}
		return nil
	}
}

// Command builds the root command with every registered subcommand.
func (m *Main) Command() *cobra.Command {
	root := &cobra.Command{
		Use:   "gateway",
		Short: "Site sync gateway: offline-first ERP5 for a site behind a satellite link",
		Long: `gateway keeps a remote site working when its only line to head office is a slow,
costly satellite link. Browsers on the LAN talk to it over WebRTC data channels; it answers
from a local SQLite replica, queues writes in a durable outbox and delivers them to ERP5
exactly once.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return m.LoadConfig(cmd)
		},
	}
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	root.PersistentFlags().StringVar(&m.ConfigPath, "config", "", "configuration file (default ./gateway.yaml if it exists, else built-in defaults)")
	root.PersistentFlags().StringVar(&m.DataDir, "data-dir", "", "data directory (overrides data_dir)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{err} })
	cmds := make([]*cobra.Command, 0, len(constructors))
	for _, f := range constructors {
		cmds = append(cmds, f(m))
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	m.root = root
	return root
}

// Run parses args (without the program name) and runs the command.
func (m *Main) Run(ctx context.Context, argv []string) error {
	root := m.Command()
	root.SetArgs(argv)
	err := root.ExecuteContext(ctx)
	if err != nil && isCobraUsage(err) {
		return &UsageError{err}
	}
	return err
}

// isCobraUsage recognises the errors cobra returns for an unknown command or flag.
func isCobraUsage(err error) bool {
	var ue *UsageError
	if errors.As(err, &ue) {
		return false
	}
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.HasPrefix(s, "unknown shorthand flag") || strings.Contains(s, "required flag")
}

// LoadConfig reads the configuration named by --config, else ./gateway.yaml when it exists,
// else the built-in defaults, applies --data-dir and sets up logging.
func (m *Main) LoadConfig(cmd *cobra.Command) error {
	var err error
	switch {
	case m.ConfigPath != "":
		m.Config, err = ReadConfigFile(m.ConfigPath)
	default:
		if _, statErr := os.Stat(DefaultConfigPath); statErr == nil {
			m.Config, err = ReadConfigFile(DefaultConfigPath)
		} else {
			m.Config = DefaultConfig()
		}
	}
	if err != nil {
		return err
	}
	if m.DataDir != "" {
		m.Config.DataDir = m.DataDir
	}
	m.Logger = newLogger(m.Stderr, m.Config.Log)
	return nil
}

// newLogger returns the slog logger the configuration asks for.
func newLogger(w io.Writer, c LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// DBPath is the database file inside the data directory.
func (m *Main) DBPath() string { return filepath.Join(m.Config.DataDir, sqlite.FileName) }

// SocketPath is the running server's control socket inside the data directory.
func (m *Main) SocketPath() string { return filepath.Join(m.Config.DataDir, "gateway.sock") }

// OpenDB opens the database in the data directory; the caller closes it. A data directory
// that does not exist is an error naming it (a mistyped --data-dir must not make an empty
// database); commands that make a site's database use CreateDB.
func (m *Main) OpenDB(ctx context.Context) (*sqlite.DB, error) {
	if _, err := os.Stat(m.Config.DataDir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no data directory %s (data_dir, or --data-dir): is it the right one? `gateway serve` makes it", m.Config.DataDir)
	}
	return m.CreateDB(ctx)
}

// CreateDB opens the database in the data directory, making the directory and the database
// when they do not exist; the caller closes it.
func (m *Main) CreateDB(ctx context.Context) (*sqlite.DB, error) {
	db := sqlite.NewDB(m.DBPath())
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	if m.afterOpenDB != nil {
		m.afterOpenDB(db)
	}
	return db, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	err := m.Run(ctx, os.Args[1:])
	os.Exit(exitCode(m.Stderr, err))
}

// exitCode prints err and returns the process's exit status: 0, 2 for usage errors, else 1.
func exitCode(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(w, "gateway:", err)
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(w, "Run 'gateway --help' for usage.")
		return 2
	}
	return 1
}
