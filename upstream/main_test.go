package upstream

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"sitesync.example/gateway/erp5sim"
)

func TestMain(m *testing.M) {
	warmERP5Sim()
	os.Exit(m.Run())
}

// warmERP5Sim makes erp5sim's shared zstd encoder and decoder initialise outside any synctest
// bubble: they make their channels on first use, and channels made inside one bubble cannot
// be used from another.
func warmERP5Sim() {
	sim := erp5sim.New(erp5sim.Options{Logger: discardLogger()})
	body, err := Compress(EncodingZstd, []byte(`{"gateway":"warm","epoch":"e","entries":[]}`))
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest(http.MethodPost, sim.SitePath()+"/"+BatchPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", EncodingZstd)
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Encoding") != EncodingZstd {
		panic(fmt.Sprintf("warm erp5sim: HTTP %d %q: %s", rec.Code, rec.Header().Get("Content-Encoding"), rec.Body.String()))
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
