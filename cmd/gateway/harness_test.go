package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sitesync.example/gateway/lan/client"
	"sitesync.example/gateway/lan/wire"
	"sitesync.example/gateway/sqlite"
)

// relOptions adjust the in-process gateway relStart runs.
type relOptions struct {
	// Policy is a policy file; "" is the embedded example policy.
	Policy string
	// Enrollment is lan.enrollment ("" is invite).
	Enrollment string
	// Log receives the gateway's log at debug level (nil: discarded).
	Log io.Writer
	// Configure changes the configuration last.
	Configure func(*Config)
	// AfterOpenDB sees the database as soon as it is open.
	AfterOpenDB func(*sqlite.DB)
}

// relStart runs a gateway in this process on loopback, like mustStartServer, with
// options, and stops it at the end of the test.
func relStart(tb testing.TB, dataDir string, o relOptions) *Server {
	tb.Helper()
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.Config = DefaultConfig()
	m.Config.DataDir = dataDir
	m.Config.Policy = o.Policy
	m.Config.LAN.Listen = "127.0.0.1:0"
	m.Config.LAN.WebRTC.UDPPort = 0
	if o.Enrollment != "" {
		m.Config.LAN.Enrollment = o.Enrollment
	}
	if o.Configure != nil {
		o.Configure(&m.Config)
	}
	w := o.Log
	if w == nil {
		w = io.Discard
	}
	m.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m.afterOpenDB = o.AfterOpenDB
	s, err := m.StartServer(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// relStray waits for the next response that answers no pending call (what SendText and
// SendBinary provoke).
func relStray(tb testing.TB, c *client.Client, within time.Duration) (wire.Response, bool) {
	tb.Helper()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case r := <-c.Strays():
		return r, true
	case <-c.Done():
		tb.Fatalf("the channel closed: %v", c.Err())
	case <-t.C:
	}
	return wire.Response{}, false
}

// relBuffer is a bytes.Buffer safe for a logger's and a process's concurrent writes.
type relBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *relBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *relBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// relBuild builds the gateway binary into a temporary directory of the test.
func relBuild(tb testing.TB) string {
	tb.Helper()
	pkg, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(tb.TempDir(), "gateway")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = pkg
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// relServe is `gateway serve` running as a child process.
type relServe struct {
	cmd  *exec.Cmd
	URL  string
	done chan struct{}
	err  error // Wait's, once done is closed
}

// relStartServe runs `gateway --config cfg serve` and waits until it prints the URL it
// serves. Its standard error goes to logs.
func relStartServe(tb testing.TB, bin, workDir, cfg string, env []string, logs io.Writer) *relServe {
	tb.Helper()
	cmd := exec.Command(bin, "--config", cfg, "serve")
	cmd.Dir = workDir
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=single"), env...)
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &relServe{cmd: cmd, done: make(chan struct{})}
	url := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "gateway serving at "); ok {
				select {
				case url <- u:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.URL = <-url:
	case <-p.done:
		tb.Fatalf("gateway serve exited before serving: %v", p.err)
	case <-time.After(30 * time.Second):
		p.kill()
		tb.Fatal("gateway serve did not start in 30s")
	}
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *relServe) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *relServe) stop(tb testing.TB) {
	tb.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
		tb.Fatal("gateway serve did not stop on SIGTERM within 30s")
	}
	if p.err != nil {
		tb.Errorf("gateway serve exited with %v after SIGTERM", p.err)
	}
}

// relWriteFile writes a test file, failing the test on error.
func relWriteFile(tb testing.TB, path, text string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
}
